//! The mesh: one peer connection per remote member, and what each reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::signaling::protocol::Member;

use super::*;
use crate::call::decode::{DecodeInput, RecvCounters, spawn_decoder};
use crate::call::negotiation::{Negotiator, Signal};
use crate::call::peer::{ConnectionState, Peer, PeerConfig, PeerEvent};
use crate::call::sink::BarcodeProbe;

/// Where a peer's send estimate starts, at most (Chromium starts at 300 kbit/s): a 720p
/// keyframe at the configured 2.5 Mbit/s lost most of itself in a 500 kbit/s link's
/// buffer, the next ones too, and the first picture came after 2 s. confab peers probe
/// up from here within a second or so (`peer/probe.rs`); browsers, which take no FEC to
/// probe with, climb 40 % a second.
const MESH_START_BPS: u32 = 500_000;

impl Engine {
    /// Creates the connection to a member and adds our tracks; negotiation
    /// starts from the negotiation-needed event that follows.
    pub(super) async fn add_peer(&mut self, m: Member) {
        if let Some(sfu) = &mut self.sfu {
            // Media comes through the SFU; the member's feed is found by its display.
            sfu.members.insert(m.id, m.name);
            return;
        }
        if self.viewer && m.viewer {
            // Neither of us sends: nothing to connect for.
            self.unconnected.insert(m.id, m.name);
            return;
        }
        let video = self.config.video.bitrate_bps;
        let audio = self.config.audio_bitrate_bps;
        let config = PeerConfig {
            ice_servers: self.ice.clone(),
            ice_transport: self.config.ice_transport,
            bind_addrs: self.config.bind_addrs.clone(),
            start_bitrate_bps: video.saturating_add(audio).min(MESH_START_BPS),
            // Room for a screen share beside the camera.
            max_bitrate_bps: video.saturating_mul(2).saturating_add(audio),
            fec: true,
        };
        let (peer, mut rx) = match Peer::new(config).await {
            Ok(p) => p,
            Err(e) => {
                self.emit(Event::Error(format!("cannot call {}: {e}", m.name)));
                return;
            }
        };
        self.serial += 1;
        let serial = self.serial;
        let (tx, id) = (self.peer_tx.clone(), m.id.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((id.clone(), serial, ev)).is_err() {
                    break;
                }
            }
        });
        // Audio first: the first m-section of our offers is the BUNDLE tag, and Opus is
        // what every peer takes. A peer without our video codec rejects a video section;
        // were that the first one, Chromium moves the bundle to a new transport when it
        // recycles the rejected m-line (e.g. for a screen share), which needs a new DTLS
        // session that webrtc-rs never starts: the connection would hang in "connecting".
        if let Some(c) = &self.local.mic {
            let id = self.local_track_id(TrackRole::Microphone);
            match peer.add_audio_track(&id, TrackRole::Camera.as_str()).await {
                Ok(s) => c.fanout.add(&m.id, s),
                Err(e) => self.emit(Event::Error(format!("microphone track: {e}"))),
            }
        }
        if let Some(c) = &self.local.camera {
            self.attach(c, &peer, &m.id, TrackRole::Camera).await;
        }
        if let Some(c) = &self.local.screen {
            self.attach(c, &peer, &m.id, TrackRole::Screen).await;
        }
        // Polite side: the lower id. Both sides agree without talking.
        let polite = self.me < m.id;
        self.peers.insert(
            m.id.clone(),
            RemotePeer {
                serial,
                name: m.name,
                state: m.state,
                peer,
                negotiator: Negotiator::new(polite),
                connection: ConnectionState::New,
                reconnect: Reconnect::new(polite),
                created: Instant::now(),
                connected_after: None,
                chat: ChatLink::default(),
                remote_tracks: HashMap::new(),
                track_roles: HashMap::new(),
            },
        );
        // Its start rate sets the encoders before its first picture (a keyframe at the
        // ceiling's size would overflow a narrow link).
        self.follow_estimates();
    }

    /// Restarts ICE towards every member whose path has been gone long enough.
    pub(super) async fn restart_lost_paths(&mut self) {
        let now = Instant::now();
        let mut offers = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if !p.reconnect.poll(now) {
                continue;
            }
            tracing::info!(peer = %id, restart = p.reconnect.restarts(), "restarting ICE");
            if let Some(out) = restart_ice(id, p, now).await {
                offers.push((id.clone(), out));
            }
        }
        for (id, out) in offers {
            self.relay(&id, out);
        }
    }

    /// `id` asked for an ICE restart (it is the polite side of the pair): our offer
    /// still waiting for an answer may have gone with its dead signaling link, so it
    /// goes again; without one, a restart offer goes.
    pub(super) async fn restart_asked(&mut self, id: &str) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        let out = match p.negotiator.pending_offer() {
            Some(offer) => Some(vec![offer]),
            None => {
                tracing::info!(peer = %id, "restarting ICE: asked");
                restart_ice(id, p, Instant::now()).await
            }
        };
        if let Some(out) = out {
            self.relay(id, out);
        }
    }

    pub(super) async fn remove_peer(&mut self, id: &str) {
        if let Some(sfu) = &mut self.sfu {
            sfu.members.remove(id);
        }
        if let Some(p) = self.peers.remove(id) {
            for c in [&self.local.camera, &self.local.screen]
                .into_iter()
                .flatten()
            {
                c.fanout.remove(id);
            }
            if let Some(c) = &self.local.mic {
                c.fanout.remove(id);
            }
            let _ = p.peer.close().await;
            self.stats.forget(id);
        }
    }

    pub(super) async fn close_all_peers(&mut self) {
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        for id in ids {
            self.remove_peer(&id).await;
        }
    }

    pub(super) fn relay(&self, to: &str, signals: Vec<Signal>) {
        for s in signals {
            match serde_json::to_value(&s) {
                Ok(v) => {
                    if self.client.relay(to, v).is_err() {
                        self.emit(Event::Error("signaling client stopped".into()));
                    }
                }
                Err(e) => tracing::error!("signal not serialisable: {e}"),
            }
        }
    }

    pub(super) async fn on_peer_event(&mut self, id: &str, serial: u64, ev: PeerEvent) {
        if id == super::sfu::PUBLISHER || id == super::sfu::SUBSCRIBER {
            return self.on_sfu_peer_event(id, ev).await;
        }
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        if p.serial != serial {
            return; // from a connection we already replaced
        }
        match ev {
            PeerEvent::LocalCandidate(c) => {
                self.relay(id, vec![Signal::Candidate { candidate: c }])
            }
            PeerEvent::NegotiationNeeded => match p.negotiator.on_negotiation_needed(&p.peer).await
            {
                Ok(out) => self.relay(id, out),
                Err(e) => self.emit(Event::Error(format!("negotiation with {id}: {e}"))),
            },
            PeerEvent::ConnectionState(s) => {
                p.connection = s;
                let was_interrupted = p.reconnect.interrupted();
                p.reconnect.on_state(s, Instant::now());
                let interrupted = p.reconnect.interrupted();
                let first = s == ConnectionState::Connected && p.connected_after.is_none();
                if first {
                    p.connected_after = Some(p.created.elapsed());
                }
                // A fresh receiver, or one back from an outage, needs a picture now, not
                // at the next periodic IDR.
                if first || (was_interrupted && !interrupted) {
                    for c in [&self.local.camera, &self.local.screen]
                        .into_iter()
                        .flatten()
                    {
                        c.request_keyframe();
                    }
                }
                if interrupted && !was_interrupted {
                    // Whatever took the media path may have taken the signaling link too.
                    self.client.probe();
                }
                if interrupted != was_interrupted {
                    self.emit(Event::PeerReconnecting {
                        id: id.to_string(),
                        reconnecting: interrupted,
                    });
                }
                self.emit(Event::Connection {
                    id: id.to_string(),
                    state: s,
                });
            }
            PeerEvent::DataOpen => {
                let hello = p.chat.opened();
                send_frames(p, id, vec![hello]).await;
            }
            PeerEvent::Data(text) => {
                let (send, said) = p.chat.received(&text);
                send_frames(p, id, send).await;
                match said {
                    Received::Chat(text) => {
                        let name = p.name.clone();
                        self.emit(Event::Chat {
                            from: id.to_string(),
                            name,
                            text,
                        });
                    }
                    Received::Nothing => {}
                    Received::Unknown(e) => tracing::debug!(%id, "unknown data message: {e}"),
                }
            }
            PeerEvent::RemoteTrack {
                track_id,
                stream_id,
                kind,
                media,
                keyframes,
            } => {
                let role = TrackRole::of_remote(&track_id, &stream_id, kind);
                let counters = decode_remote(&self.sink, &self.kf_tx, id, role, media, keyframes);
                p.remote_tracks.insert(track_id.clone(), (kind, counters));
                p.track_roles.insert(track_id.clone(), role);
                self.emit(Event::TrackAdded {
                    peer: id.to_string(),
                    track: role,
                    kind,
                });
            }
            PeerEvent::RemoteTrackEnded { track_id } => {
                p.remote_tracks.remove(&track_id);
                if let Some(role) = p.track_roles.remove(&track_id) {
                    self.emit(Event::TrackRemoved {
                        peer: id.to_string(),
                        track: role,
                    });
                }
            }
            // The track's encoder was told directly (`KeyframeWanted`).
            PeerEvent::KeyframeRequested { .. } => {}
        }
    }
}

/// Starts the decode thread of member `id`'s `role` track, feeding `sink` through the
/// barcode probe; returns the track's receive counters. (A function of the fields it
/// needs, so that a caller may hold its peer's state meanwhile.)
pub(super) fn decode_remote(
    sink: &Arc<dyn MediaSink>,
    idr_seen: &mpsc::UnboundedSender<(String, TrackRole, u64)>,
    id: &str,
    role: TrackRole,
    media: mpsc::Receiver<crate::call::peer::RemoteMedia>,
    keyframes: crate::call::peer::KeyframeRequester,
) -> Arc<RecvCounters> {
    let counters = Arc::new(RecvCounters::default());
    spawn_decoder(DecodeInput {
        peer_id: id.to_string(),
        role,
        media,
        keyframes,
        sink: BarcodeProbe::wrap(sink.clone(), counters.clone()),
        counters: counters.clone(),
        idr_seen: idr_seen.clone(),
    });
    counters
}

/// An ICE restart towards `p`: the offer to send, if one was made.
async fn restart_ice(id: &str, p: &mut RemotePeer, now: Instant) -> Option<Vec<Signal>> {
    if let Err(e) = p.peer.restart_ice().await {
        tracing::warn!(peer = %id, "ICE restart: {e}");
        return None;
    }
    match p.negotiator.reoffer_at(&p.peer, now).await {
        Ok(out) => Some(out),
        Err(e) => {
            tracing::warn!(peer = %id, "ICE restart offer: {e}");
            None
        }
    }
}
