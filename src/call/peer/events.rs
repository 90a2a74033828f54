//! State shared between the [`Peer`](super::Peer) handle, the webrtc-rs callbacks, our
//! interceptor and the reader tasks; the connection's event handler and the chat reader.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::feedback::SenderFeedback;
use super::receive::{MEDIA_QUEUE, RemoteReader};
use super::types::{ConnectionState, KeyframeRequester, KeyframeWanted, MediaKind, PeerEvent};

/// State shared between the handle, the webrtc-rs callbacks, our interceptor and tasks.
pub(super) struct Shared {
    pub(super) events: mpsc::UnboundedSender<PeerEvent>,
    /// Our video SSRCs (primary) -> track id, for keyframe requests.
    pub(super) local_video_ssrcs: Mutex<HashMap<u32, (String, KeyframeWanted)>>,
    pub(super) remote: Mutex<HashMap<String, RemoteEntry>>,
    /// Feedback about our outbound streams, by primary SSRC. 0.21.1 never feeds inbound RTCP
    /// into its stats accumulator (`process_read_rtcp_for_stats` is dead code), so its
    /// outbound nack/pli/fir counts and remote-inbound (RR) stats stay zero; we count here.
    pub(super) feedback: Mutex<HashMap<u32, SenderFeedback>>,
    /// Packets the remote says it sent, by its SSRC, from its latest sender report (the
    /// same dead code leaves 0.21's remote-outbound stats empty).
    pub(super) sender_reports: Mutex<HashMap<u32, u64>>,
    pub(super) dc_open: AtomicBool,
    pub(super) closed: AtomicBool,
    /// DTLS/SRTP is up and the connection not failed: media written before this would
    /// only be dropped by the core.
    pub(super) may_send: Arc<AtomicBool>,
    /// The congestion controller's latest estimate (bit/s, as `f64` bits; 0 before one).
    pub(super) send_estimate: AtomicU64,
    /// The controller has estimated: the remote gives transport-wide feedback.
    pub(super) estimated: AtomicBool,
    /// FEC's shared counters and the path's loss (`fec.rs`).
    pub(super) fec: Arc<super::fec::Repair>,
    /// We let a negotiation-needed event pass without an offer (it would have settled
    /// nothing). webrtc-rs then still counts a negotiation as under way and stays silent
    /// on the next local change until the connection next returns to stable, so the next
    /// local change asks for one itself.
    pub(super) offer_skipped: AtomicBool,
    /// Packets that came as repairs, for the receive stage (`nack.rs`).
    pub(super) repaired: super::nack::Repaired,
}

pub(super) struct RemoteEntry {
    pub(super) track: Arc<dyn TrackRemote>,
    pub(super) kind: MediaKind,
    pub(super) abort: Option<AbortHandle>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Shared {
    pub(super) fn emit(&self, event: PeerEvent) {
        // The receiver may be gone during teardown; nothing to do then.
        let _ = self.events.send(event);
    }

    pub(super) fn end_all_remote_tracks(&self) {
        let ids: Vec<String> = self.remote.locked().keys().cloned().collect();
        for id in ids {
            self.end_remote_track(&id);
        }
    }

    /// Removes a remote track once, emitting `RemoteTrackEnded` once.
    pub(super) fn end_remote_track(&self, track_id: &str) {
        let entry = self.remote.locked().remove(track_id);
        if let Some(entry) = entry {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
            self.emit(PeerEvent::RemoteTrackEnded {
                track_id: track_id.to_owned(),
            });
        }
    }
}

pub(super) struct Handler {
    pub(super) shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_negotiation_needed(&self) {
        self.shared.emit(PeerEvent::NegotiationNeeded);
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => self.shared.emit(PeerEvent::LocalCandidate(init.into())),
            Err(err) => tracing::warn!("cannot serialise local candidate: {err}"),
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = match state {
            RTCPeerConnectionState::New => ConnectionState::New,
            RTCPeerConnectionState::Connecting => ConnectionState::Connecting,
            RTCPeerConnectionState::Connected => ConnectionState::Connected,
            RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
            RTCPeerConnectionState::Failed => ConnectionState::Failed,
            RTCPeerConnectionState::Closed => ConnectionState::Closed,
            _ => return,
        };
        // Media keeps flowing while disconnected: that state is only ICE hearing nothing for
        // a while (an outage, a lost consent check), and stopping would keep the other side
        // from hearing anything either; the link's return must find video already on it.
        self.shared.may_send.store(
            matches!(
                state,
                ConnectionState::Connected | ConnectionState::Disconnected
            ),
            Ordering::Relaxed,
        );
        self.shared.emit(PeerEvent::ConnectionState(state));
        // Disconnected may recover; these do not, and no track event will ever come.
        if matches!(state, ConnectionState::Failed | ConnectionState::Closed) {
            self.shared.end_all_remote_tracks();
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let track_id = track.track_id().await;
        let stream_id = track.stream_id().await;
        let kind = match track.kind().await {
            RtpCodecKind::Video => MediaKind::Video,
            _ => MediaKind::Audio,
        };
        let (tx, rx) = mpsc::channel(MEDIA_QUEUE);
        let (keyframe_tx, keyframe_requests) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        // Registered before the reader starts, so its end is always reported exactly once.
        self.shared.remote.locked().insert(
            track_id.clone(),
            RemoteEntry {
                track: Arc::clone(&track),
                kind,
                abort: None,
                dropped: Arc::clone(&dropped),
            },
        );
        self.shared.emit(PeerEvent::RemoteTrack {
            track_id: track_id.clone(),
            stream_id,
            kind,
            media: rx,
            keyframes: KeyframeRequester(keyframe_tx),
        });
        let reader = RemoteReader {
            track,
            track_id: track_id.clone(),
            kind,
            tx,
            dropped,
            keyframe_requests,
            shared: Arc::clone(&self.shared),
        };
        let handle = tokio::spawn(reader.run());
        if let Some(entry) = self.shared.remote.locked().get_mut(&track_id) {
            entry.abort = Some(handle.abort_handle());
        }
    }
}

pub(super) async fn read_chat(chat: Arc<dyn DataChannel>, shared: Arc<Shared>) {
    while let Some(event) = chat.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                shared.dc_open.store(true, Ordering::Release);
                shared.emit(PeerEvent::DataOpen);
            }
            DataChannelEvent::OnMessage(msg) => {
                shared.emit(PeerEvent::Data(
                    String::from_utf8_lossy(&msg.data).into_owned(),
                ));
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    shared.dc_open.store(false, Ordering::Release);
}
