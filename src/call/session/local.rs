//! Local media: capture stages per source, their tracks on each peer, encoder rates and stats.

use crate::media::VideoSource;

use super::*;
use crate::call::encode::VideoCapture;
use crate::call::peer::{ConnectionState, Peer};
use crate::call::rate::{self, VideoRates};
use crate::call::slow_peers::of_group;

/// A peer that gives transport-wide feedback has its first estimate this soon after it
/// connects.
const FEEDBACK_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

impl Engine {
    /// Starts capturing a new local video track and adds it to every connection.
    pub(super) async fn start_video(
        &self,
        role: TrackRole,
        src: Box<dyn VideoSource>,
    ) -> VideoCapture {
        let mut encoding = self.config.video;
        // Simulcast only through an SFU.
        let mut layers = if self.sfu.is_some() {
            self.config.simulcast_layers.max(1)
        } else {
            1
        };
        if role == TrackRole::Screen {
            encoding.fps = self.config.screen_fps;
            layers = 1;
        }
        let cap = VideoCapture::start(
            role,
            src,
            encoding,
            layers,
            self.fail_tx.clone(),
            self.sink.clone(),
        );
        for (id, peer) in self.sending_connections() {
            self.attach(&cap, &peer, &id, role).await;
        }
        cap
    }

    /// Every connection our tracks go on, by the id their senders are kept under: one
    /// per member in a mesh, the publisher connection in an SFU room.
    pub(super) fn sending_connections(&self) -> Vec<(String, Peer)> {
        let mut all: Vec<(String, Peer)> = self
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), p.peer.clone()))
            .collect();
        all.extend(
            self.sfu_publisher()
                .map(|p| (super::sfu::PUBLISHER.to_owned(), p)),
        );
        all
    }

    /// The connection kept under `id` (see `sending_connections`).
    pub(super) fn connection(&self, id: &str) -> Option<Peer> {
        match self.peers.get(id) {
            Some(p) => Some(p.peer.clone()),
            None if id == super::sfu::PUBLISHER => self.sfu_publisher(),
            None => None,
        }
    }

    /// Adds a local video track to one connection and feeds it from `cap`.
    pub(super) async fn attach(
        &self,
        cap: &VideoCapture,
        peer: &Peer,
        peer_id: &str,
        role: TrackRole,
    ) {
        let track = self.local_track_id(role);
        // Layers go to the SFU only; a member in a mesh takes the largest.
        let asks = cap.keyframe_wanted_by(peer_id);
        let added = if cap.layers > 1 && peer_id == super::sfu::PUBLISHER {
            peer.add_simulcast_video_track(&track, role.as_str(), &asks, cap.layers)
                .await
        } else {
            peer.add_video_track_for(&track, role.as_str(), &asks).await
        };
        match added {
            Ok(s) => cap.fanout.add(peer_id, s),
            Err(e) => self.emit(Event::Error(format!("{role} track: {e}"))),
        }
    }

    /// Track ids carry our member id (webrtc-rs routes RTCP by track id, so ours must
    /// not equal the remote's) and a share number (a re-added id is never announced again).
    pub(super) fn local_track_id(&self, role: TrackRole) -> String {
        if role == TrackRole::Screen {
            format!("{}-{role}-{}", self.me, self.local.screen_shares)
        } else {
            format!("{}-{role}", self.me)
        }
    }

    /// Sets every encoder afresh: a new one starts at the configured bitrate (and a new
    /// camera without a small stream), and a new ceiling changes what the estimate allows.
    pub(super) fn reset_rates(&mut self) {
        self.local.rates = None;
        if let Some(c) = &self.local.camera {
            c.set_small_stream(None);
        }
        self.local.small_rate = None;
        self.apply_rates();
    }

    /// Sets the encoders from the peers' bandwidth estimates: the slowest peer's, but
    /// in a mesh a peer far slower than the others gets a small stream of its own.
    pub(super) fn apply_rates(&mut self) {
        // The configured rate is the largest simulcast layer's; the smaller ones come on
        // top of it when the link has room for them.
        let layers = self.local.camera.as_ref().map_or(1, |c| c.layers);
        let ceiling = crate::call::simulcast::total_for_top(self.config.video.bitrate_bps, layers);
        let sharing = self.local.screen.is_some();
        // Not beside simulcast (Janus sends each their layer) nor a shared screen (the
        // camera is small then anyway).
        let estimates = &self.local.estimates;
        let slow = &mut self.local.slow;
        if layers > 1 || sharing || self.sfu.is_some() {
            slow.update(&[]);
        } else {
            slow.update(estimates);
        }
        let audio = self.config.audio_bitrate_bps;
        let rates = rate::allocate(&of_group(estimates, slow, false), audio, ceiling, sharing);
        let small = slow
            .any()
            .then(|| rate::allocate(&of_group(estimates, slow, true), audio, ceiling, false))
            .map(|r| r.camera.min(rates.camera));
        // Each encoder keeps its last setting unless the new one differs enough.
        let pick = |new: u32, old: Option<u32>| match old {
            Some(o) if !rate::worth_changing(o, new) => o,
            _ => new,
        };
        let old = self.local.rates;
        let applied = VideoRates {
            camera: pick(rates.camera, old.map(|r| r.camera)),
            screen: pick(rates.screen, old.map(|r| r.screen)),
        };
        if let Some(c) = &self.local.camera
            && old.is_none_or(|o| o.camera != applied.camera)
        {
            tracing::debug!(bps = applied.camera, "camera bitrate");
            c.set_bitrate(applied.camera);
        }
        if let Some(c) = &self.local.screen
            && old.is_none_or(|o| o.screen != applied.screen)
        {
            tracing::debug!(bps = applied.screen, "screen bitrate");
            c.set_bitrate(applied.screen);
        }
        self.local.rates = Some(applied);
        let small = small.map(|new| pick(new, self.local.small_rate));
        if small != self.local.small_rate {
            if let Some(c) = &self.local.camera {
                tracing::debug!(bps = ?small, "camera's small stream");
                c.set_small_stream(small);
            }
            self.local.small_rate = small;
        }
        self.route_small_stream();
    }

    /// Moves each peer onto the camera stream its link takes, from that stream's next
    /// keyframe (asked for now).
    fn route_small_stream(&self) {
        let Some(c) = &self.local.camera else { return };
        for (peer, _) in c.fanout.snapshot() {
            let small = self.local.slow.is_slow(&peer);
            if c.fanout.send_small(&peer, small) {
                tracing::info!(%peer, small, "camera stream for this peer");
                if small {
                    c.request_small_keyframe();
                } else {
                    c.request_keyframe();
                }
            }
        }
    }

    /// Follows the estimates between stats ticks: a narrowing link must reach the encoder
    /// within a fraction of a second, not at the next report.
    pub(super) fn follow_estimates(&mut self) {
        self.local.estimates = self
            .peers
            .iter()
            .filter(|(_, p)| limits_the_rate(p.connection, p.connected_after.is_some()))
            // One connected a while without feedback has only its start rate: the
            // encoders follow the others, or the ceiling.
            .filter(|(_, p)| {
                p.peer.estimated()
                    || p.connected_after
                        .is_none_or(|c| p.created.elapsed() < c + FEEDBACK_WITHIN)
            })
            .filter_map(|(id, p)| Some((id.clone(), p.peer.media_estimate()?)))
            // In an SFU room the one uplink is to Janus.
            .chain(
                self.sfu_estimate()
                    .map(|e| (super::sfu::PUBLISHER.to_owned(), e)),
            )
            .collect();
        self.apply_rates();
        self.expect_audio_loss();
    }

    /// Tells Opus the loss the worst connected peer (or Janus, for what we publish)
    /// reports on our audio.
    fn expect_audio_loss(&mut self) {
        let publisher = self.sfu_audio_loss();
        let worst = self
            .peers
            .values()
            .filter(|p| p.connection == ConnectionState::Connected)
            .filter_map(|p| p.peer.audio_loss())
            .chain(publisher)
            .reduce(f64::max);
        let now = std::time::Instant::now();
        if let Some(percent) = self.local.audio_loss.update(now, worst)
            && let Some(mic) = &self.local.mic
        {
            tracing::debug!(percent, "Opus expects this loss");
            mic.set_expected_loss(percent);
        }
    }

    /// Tells the user when they speak into a muted microphone (and when they stopped).
    pub(super) fn watch_muted_speech(&mut self) {
        let heard = self.local.mic.as_ref().and_then(|m| m.take_heard_dbfs());
        let muted = self.local.state.audio_muted;
        if let Some(speaking) =
            self.local
                .muted_speech
                .update(muted, heard, std::time::Instant::now())
        {
            self.emit(Event::SpeakingWhileMuted(speaking));
        }
    }

    pub(super) async fn report_stats(&mut self) {
        if self.sfu.is_some() {
            return self.report_sfu_stats().await;
        }
        let mut out = Vec::with_capacity(self.peers.len());
        for (id, p) in &self.peers {
            let transport = p.peer.stats().await;
            let mut s = self.stats.sample(
                id,
                &p.name,
                p.connection,
                p.connected_after,
                &transport,
                &p.remote_tracks,
                self.local.camera.as_ref().map(|c| &*c.counters),
                self.local.mic.as_ref().map(|c| &*c.counters),
            );
            s.ice_restarts = p.reconnect.restarts();
            s.small_stream = self
                .local
                .camera
                .as_ref()
                .is_some_and(|c| c.fanout.sends_small(id));
            out.push(s);
        }
        self.emit(Event::Stats(out));
    }
}

/// Whether a peer's estimate limits the encoders: while connected; while disconnected,
/// since media still goes to it (ICE heard nothing for a while, as on a link that
/// overflows: without its estimate the encoders would climb to the ceiling into that
/// very link); and while it connects for the first time, since it is sent its first
/// pictures as soon as it connects.
fn limits_the_rate(state: ConnectionState, ever_connected: bool) -> bool {
    match state {
        ConnectionState::Connected | ConnectionState::Disconnected => true,
        ConnectionState::New | ConnectionState::Connecting => !ever_connected,
        ConnectionState::Failed | ConnectionState::Closed => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_whose_link_overflows_into_disconnected_still_limits_the_encoders() {
        assert!(limits_the_rate(ConnectionState::Connected, true));
        assert!(limits_the_rate(ConnectionState::Disconnected, true));
        assert!(limits_the_rate(ConnectionState::Connecting, false));
        assert!(!limits_the_rate(ConnectionState::Connecting, true));
        assert!(!limits_the_rate(ConnectionState::Failed, true));
        assert!(!limits_the_rate(ConnectionState::Closed, true));
    }
}
