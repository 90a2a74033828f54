//! Local media: capture stages per source, their tracks on each peer, encoder rates and stats.

use crate::media::VideoSource;

use super::*;
use crate::call::encode::VideoCapture;
use crate::call::peer::{ConnectionState, Peer};
use crate::call::rate::{self, VideoRates};

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
        let added = if cap.layers > 1 && peer_id == super::sfu::PUBLISHER {
            peer.add_simulcast_video_track(&track, role.as_str(), cap.keyframe_wanted(), cap.layers)
                .await
        } else {
            peer.add_video_track_for(&track, role.as_str(), cap.keyframe_wanted())
                .await
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

    /// Sets every encoder afresh: a new one starts at the configured bitrate, and a new
    /// ceiling changes what the estimate allows.
    pub(super) fn reset_rates(&mut self) {
        self.local.rates = None;
        self.apply_rates();
    }

    /// Sets the encoders from the slowest peer's bandwidth estimate.
    pub(super) fn apply_rates(&mut self) {
        // The configured rate is the largest simulcast layer's; the smaller ones come on
        // top of it when the link has room for them.
        let layers = self.local.camera.as_ref().map_or(1, |c| c.layers);
        let ceiling = crate::call::simulcast::total_for_top(self.config.video.bitrate_bps, layers);
        let rates = rate::allocate(
            &self.local.estimates,
            self.config.audio_bitrate_bps,
            ceiling,
            self.local.screen.is_some(),
        );
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
    }

    /// Follows the estimates between stats ticks: a narrowing link must reach the encoder
    /// within a fraction of a second, not at the next report.
    pub(super) fn follow_estimates(&mut self) {
        self.local.estimates = self
            .peers
            .values()
            .filter(|p| p.connection == ConnectionState::Connected)
            .filter_map(|p| p.peer.media_estimate())
            // In an SFU room the one uplink is to Janus.
            .chain(self.sfu_estimate())
            .collect();
        self.apply_rates();
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
            out.push(s);
        }
        self.emit(Event::Stats(out));
    }
}
