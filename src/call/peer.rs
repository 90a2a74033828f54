//! One WebRTC `PeerConnection` to one remote member (webrtc-rs 0.21).
//!
//! Everything the connection reports goes out through one unbounded event channel, so the
//! driver task of webrtc-rs (which runs our handler callbacks) never waits on the engine/UI.
//! Received media goes out per remote track through its own bounded channel; when a consumer
//! falls behind, units are dropped (counted) rather than stalling the connection.
//!
//! Findings about webrtc/rtc 0.21.1 that shaped this module:
//! - RTX: negotiated only if a `video/rtx` codec with `apt=` is registered (the default codec
//!   set does; a custom set must) *and* the track's encoding declares an RTX SSRC. We do both:
//!   offers carry `a=ssrc-group:FID`, the NACK responder retransmits on RTX, the receiver
//!   de-encapsulates it. Video packets behind a gap wait (`reorder`) for the retransmission
//!   before depacketizing; only a gap still open after the wait flags the AU incomplete.
//! - A track-backed m-section lists only the track's own codec; we set codec preferences so
//!   both H.264 Constrained Baseline spellings (42e01f, 42001f) are offered.
//! - Rollback: supported (`RTCSessionDescription::rollback`) but never implicit — a remote
//!   offer in `have-local-offer` is an error — so `negotiation` rolls back explicitly.
//! - negotiationneeded: fired by the core per W3C (only when stable, re-checked on return to
//!   stable). Creating the data channel fires it too, so both sides offer at start.
//! - No signaling-state getter: derived from the pending descriptions.
//! - Sender RTCP: inbound RTCP ends at the interceptor chain unless an interceptor marks it for
//!   the application, and a local track's `poll` holds its lock across the wait (it would stall
//!   a rebind). So PLI/FIR/NACK/RR are tapped in our own interceptor, inside the core, on arrival.
//! - Remote track end: the core emits no track-close event, neither on renegotiation nor on
//!   close. We end tracks ourselves: on each applied remote description whose m-sections no
//!   longer send them, on Failed/Closed, and on `close()`. The driver never forgets a remote
//!   track id, so a removed track id re-added later does not fire `on_track`: use fresh ids.
//! - Stats: `get_stats` has per-SSRC outbound packets/bytes/retransmissions and inbound
//!   packets/bytes/lost/jitter/NACK-PLI-FIR *sent*, plus candidate-pair RTT and bytes. It never
//!   processes *received* RTCP (`process_read_rtcp_for_stats` is dead code), so outbound
//!   NACK/PLI/FIR counts and remote-inbound loss/jitter/RTT are zero there; we count them in
//!   the tap and compute RTT from RR LSR/DLSR. No bandwidth estimate by default: we add GCC
//!   (see `interceptors`); its estimate shows as the outbound streams' `target_bitrate`.
//! - Codecs per kind are settled by the first remote m-section of that kind, for good: if it
//!   has none of ours (a browser offering only VP8), every later offer or answer with one of
//!   our senders of that kind fails (`ErrSenderWithNoCodecs`). Such a section is rejected
//!   (port 0) only for a transceiver without a sender, and a rejected section carries no
//!   direction, so a recvonly transceiver behind it asks to renegotiate after every
//!   exchange, forever. We take such tracks off and set those transceivers inactive
//!   (`drop_unusable_media`).
//! - Answers always say `a=setup:active`, renegotiations included, even where we are the DTLS
//!   server; browsers refuse that as a role change. The copy we hand out keeps the role
//!   (the DTLS session itself never changes), see `create_answer`.
//! - `close()` sends nothing the remote notices: it sees Disconnected after ~5 s of silence
//!   (ICE consent); the engine should also learn of a departure via signaling.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    CongestionControlBuilder, Gcc, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet,
    Slot, StreamInfo, TaggedPacket, TwccSenderBuilder,
};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry, StatsSelector,
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RtpSender};

use super::error::{PeerError, Result};
use super::reorder::{self, Reorder};

/// H.264 payload types: (profile-level-id, primary PT, RTX PT). Both Constrained Baseline
/// spellings, because fmtp matching compares the profile bytes (see platform notes).
const H264_CODECS: [(&str, u8, u8); 2] = [("42e01f", 102, 103), ("42001f", 106, 107)];
const OPUS_PT: u8 = 111;
/// Per remote track; ~3 s of 30 fps video or 10 s of 20 ms audio before we drop.
const MEDIA_QUEUE: usize = 512;
/// NACKs for missing packets go out this often; video behind a gap waits for the
/// retransmission as long as the round trip allows (`reorder::wait_for`).
const NACK_INTERVAL: Duration = Duration::from_millis(20);
/// Do not flood the sender with PLIs while a burst of loss lasts.
const AUTO_PLI_INTERVAL: Duration = Duration::from_millis(200);
/// Label of the single chat channel. Negotiated out of band with a fixed id so both sides
/// have it whoever offers first.
pub const CHAT_LABEL: &str = "chat";
const CHAT_STREAM_ID: u16 = 0;

/// One ICE server (STUN or TURN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServerConfig {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// How to build a [`Peer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    pub ice_servers: Vec<IceServerConfig>,
    /// Local UDP bind addresses. Tests use `127.0.0.1:0`; a wildcard expands to every
    /// non-loopback interface.
    pub bind_addrs: Vec<String>,
    /// Send-side bandwidth estimation (GCC over transport-wide feedback): where the estimate
    /// starts and the most it may reach, in bit/s.
    pub start_bitrate_bps: u32,
    pub max_bitrate_bps: u32,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            bind_addrs: vec!["0.0.0.0:0".to_owned()],
            start_bitrate_bps: 1_500_000,
            max_bitrate_bps: 3_000_000,
        }
    }
}

impl PeerConfig {
    /// Loopback only, no STUN: what tests want.
    pub fn loopback() -> Self {
        Self {
            bind_addrs: vec!["127.0.0.1:0".to_owned()],
            ..Self::default()
        }
    }
}

/// The estimate never goes below this: under it a video call is not worth having.
pub const MIN_ESTIMATE_BPS: u32 = 100_000;

/// A trickle ICE candidate, in the browser's `RTCIceCandidateInit` JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        default,
        rename = "sdpMLineIndex",
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

impl From<RTCIceCandidateInit> for IceCandidate {
    fn from(c: RTCIceCandidateInit) -> Self {
        Self {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

impl From<IceCandidate> for RTCIceCandidateInit {
    fn from(c: IceCandidate) -> Self {
        RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        }
    }
}

/// SDP type, spelled as browsers spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

/// An SDP offer/answer as carried in a `Signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    pub sdp_type: SdpType,
    pub sdp: String,
}

impl SessionDescription {
    fn to_rtc(&self) -> Result<RTCSessionDescription> {
        Ok(match self.sdp_type {
            SdpType::Offer => RTCSessionDescription::offer(self.sdp.clone())?,
            SdpType::Answer => RTCSessionDescription::answer(self.sdp.clone())?,
            SdpType::Pranswer => RTCSessionDescription::pranswer(self.sdp.clone())?,
            SdpType::Rollback => RTCSessionDescription::rollback(None)?,
        })
    }

    fn from_rtc(d: &RTCSessionDescription) -> Result<Self> {
        let sdp_type = match d.sdp_type {
            RTCSdpType::Offer => SdpType::Offer,
            RTCSdpType::Answer => SdpType::Answer,
            RTCSdpType::Pranswer => SdpType::Pranswer,
            RTCSdpType::Rollback => SdpType::Rollback,
            other => return Err(PeerError::Negotiation(format!("sdp type {other:?}"))),
        };
        Ok(Self {
            sdp_type,
            sdp: d.sdp.clone(),
        })
    }
}

/// W3C signaling state, derived from the pending descriptions (0.21 has no getter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalingState {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
}

/// Connection state as the engine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl ConnectionState {
    /// The call to this member is over or broken.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Disconnected | Self::Failed | Self::Closed)
    }
}

/// Media kind of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediaKind {
    Video,
    Audio,
}

/// One reassembled H.264 access unit.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Annex-B, 4-byte start codes (the depacketizer's output form).
    pub data: Bytes,
    pub rtp_timestamp: u32,
    /// When the packet with the marker bit arrived.
    pub arrival: Instant,
    /// False if a sequence gap or a malformed packet hit this AU (a PLI was sent).
    pub complete: bool,
}

/// One Opus packet.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    pub data: Bytes,
    /// For gap detection / concealment in the decoder.
    pub sequence_number: u16,
    pub rtp_timestamp: u32,
    pub arrival: Instant,
}

/// What a remote track's channel yields.
#[derive(Debug, Clone)]
pub enum RemoteMedia {
    Video(VideoFrame),
    Audio(AudioPacket),
}

/// Everything a [`Peer`] reports.
#[derive(Debug)]
pub enum PeerEvent {
    /// Trickle ICE: send to the remote as a `Signal::Candidate`.
    LocalCandidate(IceCandidate),
    ConnectionState(ConnectionState),
    /// Run the negotiator (it creates and sends an offer if still needed).
    NegotiationNeeded,
    DataOpen,
    Data(String),
    RemoteTrack {
        track_id: String,
        stream_id: String,
        kind: MediaKind,
        media: mpsc::Receiver<RemoteMedia>,
    },
    RemoteTrackEnded {
        track_id: String,
    },
    /// The remote sent PLI or FIR for one of our video tracks: encode an IDR now.
    KeyframeRequested {
        track_id: String,
    },
}

/// Per-track counters from the 0.21 stats API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackStats {
    pub track_id: String,
    pub kind: Option<MediaKind>,
    pub ssrc: u32,
    pub bytes_sent: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub packets_received: u64,
    /// Inbound: our count; outbound: as reported by the remote in RTCP RR.
    pub packets_lost: i64,
    pub nack_sent: u64,
    pub nack_received: u64,
    pub pli_sent: u64,
    pub pli_received: u64,
    pub fir_sent: u64,
    pub fir_received: u64,
    /// Seconds (inbound: ours; outbound: the remote's, from RR).
    pub jitter: f64,
    /// RTX retransmissions sent (outbound) or received (inbound).
    pub retransmitted_packets: u64,
    /// Units this layer dropped because the consumer was slow.
    pub dropped_by_consumer: u64,
    /// Outbound only: from RR LSR/DLSR (computed here; 0.21 reports none).
    pub rtt: Option<Duration>,
}

/// Snapshot of [`Peer::stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStats {
    pub outbound: Vec<TrackStats>,
    pub inbound: Vec<TrackStats>,
    /// ICE candidate-pair STUN round-trip time, if 0.21 has measured one.
    pub rtt: Option<Duration>,
    pub transport_bytes_sent: u64,
    pub transport_bytes_received: u64,
    /// What the bandwidth estimator says may be sent to this peer now (bit/s), once it
    /// has had feedback.
    pub send_estimate_bps: Option<f64>,
}

// ---------------------------------------------------------------------------------------------

/// State shared between the handle, the webrtc-rs callbacks, our interceptor and tasks.
struct Shared {
    events: mpsc::UnboundedSender<PeerEvent>,
    /// Our video SSRCs (primary) -> track id, for keyframe requests.
    local_video_ssrcs: Mutex<HashMap<u32, String>>,
    remote: Mutex<HashMap<String, RemoteEntry>>,
    /// Feedback about our outbound streams, by primary SSRC. 0.21.1 never feeds inbound RTCP
    /// into its stats accumulator (`process_read_rtcp_for_stats` is dead code), so its
    /// outbound nack/pli/fir counts and remote-inbound (RR) stats stay zero; we count here.
    feedback: Mutex<HashMap<u32, SenderFeedback>>,
    dc_open: AtomicBool,
    closed: AtomicBool,
    /// DTLS/SRTP is up: media written before this would only be dropped by the core.
    connected: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SenderFeedback {
    nack: u64,
    pli: u64,
    fir: u64,
    packets_lost: i64,
    /// RTP timestamp units.
    jitter: u32,
    rtt: Option<Duration>,
}

/// Round-trip time from a reception report (RFC 3550 §6.4.1), using the wall clock the SR
/// interceptor also uses for its NTP timestamps.
fn rtt_from_report(report: &ReceptionReport) -> Option<Duration> {
    if report.last_sender_report == 0 {
        return None;
    }
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let secs = (unix.as_secs() + 2_208_988_800) as u32;
    let frac = ((u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let now_mid = (secs << 16) | (frac >> 16);
    let rtt = now_mid
        .wrapping_sub(report.last_sender_report)
        .wrapping_sub(report.delay);
    // 1/65536 s units; anything beyond 10 s is clock trouble, not a path.
    (rtt < 10 << 16).then(|| Duration::from_secs_f64(f64::from(rtt) / 65_536.0))
}

struct RemoteEntry {
    track: Arc<dyn TrackRemote>,
    kind: MediaKind,
    abort: Option<AbortHandle>,
    dropped: Arc<AtomicU64>,
}

impl Shared {
    /// The longest round trip the remote's reports show for our streams (None before any).
    fn rtt(&self) -> Option<Duration> {
        let feedback = self.feedback.lock().unwrap_or_else(|e| e.into_inner());
        feedback.values().filter_map(|f| f.rtt).max()
    }

    fn emit(&self, event: PeerEvent) {
        // The receiver may be gone during teardown; nothing to do then.
        let _ = self.events.send(event);
    }

    fn on_feedback(&self, ssrc: u32, f: impl FnOnce(&mut SenderFeedback)) {
        let mut map = self.feedback.lock().expect("feedback poisoned");
        f(map.entry(ssrc).or_default());
    }

    fn on_reception_reports(&self, reports: &[ReceptionReport]) {
        for r in reports {
            // total_lost is a signed 24-bit field.
            let lost = ((r.total_lost << 8) as i32 >> 8) as i64;
            let rtt = rtt_from_report(r);
            self.on_feedback(r.ssrc, |fb| {
                fb.packets_lost = lost;
                fb.jitter = r.jitter;
                if rtt.is_some() {
                    fb.rtt = rtt;
                }
            });
        }
    }

    fn end_all_remote_tracks(&self) {
        let ids: Vec<String> = self
            .remote
            .lock()
            .expect("remote map poisoned")
            .keys()
            .cloned()
            .collect();
        for id in ids {
            self.end_remote_track(&id);
        }
    }

    fn keyframe_requested_for_ssrc(&self, ssrc: u32) {
        let track_id = self
            .local_video_ssrcs
            .lock()
            .expect("ssrc map poisoned")
            .get(&ssrc)
            .cloned();
        if let Some(track_id) = track_id {
            self.emit(PeerEvent::KeyframeRequested { track_id });
        }
    }

    /// Removes a remote track once, emitting `RemoteTrackEnded` once.
    fn end_remote_track(&self, track_id: &str) {
        let entry = self
            .remote
            .lock()
            .expect("remote map poisoned")
            .remove(track_id);
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

/// Taps inbound PLI/FIR on its way through the core, so `KeyframeRequested` is emitted the
/// moment the packet is processed. Passes everything through unchanged.
struct KeyframeRequestTap {
    shared: Arc<Shared>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    self.shared.on_feedback(pli.media_ssrc, |fb| fb.pli += 1);
                    self.shared.keyframe_requested_for_ssrc(pli.media_ssrc);
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    for entry in &fir.fir {
                        self.shared.on_feedback(entry.ssrc, |fb| fb.fir += 1);
                        self.shared.keyframe_requested_for_ssrc(entry.ssrc);
                    }
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    self.shared.on_feedback(nack.media_ssrc, |fb| fb.nack += 1);
                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    self.shared.on_reception_reports(&rr.reports);
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    self.shared.on_reception_reports(&sr.reports);
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Handler {
    shared: Arc<Shared>,
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
        self.shared
            .connected
            .store(state == ConnectionState::Connected, Ordering::Relaxed);
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
        let dropped = Arc::new(AtomicU64::new(0));
        // Registered before the reader starts, so its end is always reported exactly once.
        self.shared
            .remote
            .lock()
            .expect("remote map poisoned")
            .insert(
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
        });
        let reader = RemoteReader {
            track,
            track_id: track_id.clone(),
            kind,
            tx,
            dropped,
            shared: Arc::clone(&self.shared),
        };
        let handle = tokio::spawn(reader.run());
        if let Some(entry) = self
            .shared
            .remote
            .lock()
            .expect("remote map poisoned")
            .get_mut(&track_id)
        {
            entry.abort = Some(handle.abort_handle());
        }
    }
}

/// Reads one remote track: reassembles H.264 AUs or forwards Opus packets.
struct RemoteReader {
    track: Arc<dyn TrackRemote>,
    track_id: String,
    kind: MediaKind,
    tx: mpsc::Sender<RemoteMedia>,
    dropped: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

/// AU reassembly state for one video stream, fed in sequence order by [`Reorder`]: a packet
/// older than the newest one seen is dropped, and any sequence gap left marks the AU
/// incomplete, which the reader answers with a PLI.
#[derive(Default)]
struct AuAssembler {
    depacketizer: H264Packet,
    buf: BytesMut,
    timestamp: Option<u32>,
    next_seq: Option<u16>,
    broken: bool,
}

/// One reassembled AU: (Annex-B data, RTP timestamp, complete).
type Assembled = (Bytes, u32, bool);

impl AuAssembler {
    /// Feeds one packet; returns the AUs it closed (by marker bit or by a timestamp change).
    fn push(&mut self, seq: u16, ts: u32, marker: bool, payload: &Bytes) -> Vec<Assembled> {
        let mut out = Vec::new();
        let mut gap = false;
        if let Some(expected) = self.next_seq {
            let delta = seq.wrapping_sub(expected);
            if delta >= 0x8000 {
                return out; // late or duplicate
            }
            gap = delta != 0;
        }
        self.next_seq = Some(seq.wrapping_add(1));
        // A new timestamp before a marker: the previous AU lost its tail.
        if self.timestamp.is_some_and(|t| t != ts) && !self.buf.is_empty() {
            out.extend(self.finish(false));
            gap = true;
        }
        if gap {
            // The lost packets may have belonged to this AU as well.
            self.broken = true;
            // A half-collected FU-A must not be glued onto unrelated fragments.
            self.depacketizer = H264Packet::default();
        }
        self.timestamp = Some(ts);
        match self.depacketizer.depacketize(payload) {
            Ok(bytes) => self.buf.extend_from_slice(&bytes),
            Err(_) => self.broken = true,
        }
        if marker {
            out.extend(self.finish(true));
        }
        out
    }

    fn finish(&mut self, tail_seen: bool) -> Option<Assembled> {
        let complete = tail_seen && !self.broken;
        let data = std::mem::take(&mut self.buf).freeze();
        self.broken = false;
        self.depacketizer = H264Packet::default();
        (!data.is_empty()).then(|| (data, self.timestamp.unwrap_or(0), complete))
    }
}

impl RemoteReader {
    async fn run(self) {
        let mut au = AuAssembler::default();
        let mut reorder = Reorder::new(reorder::DEFAULT_WAIT);
        let mut last_pli: Option<Instant> = None;
        let mut wait_set = Instant::now();
        loop {
            // The round trip changes slowly: look again once a second.
            if wait_set.elapsed() >= Duration::from_secs(1) {
                wait_set = Instant::now();
                reorder.set_wait(reorder::wait_for(self.shared.rtt(), NACK_INTERVAL));
            }
            let deadline = reorder.deadline();
            let event = tokio::select! {
                e = self.track.poll() => e,
                // A gap that no retransmission filled in time: go on without it.
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()),
                    if deadline.is_some() =>
                {
                    let released = reorder.expire(Instant::now());
                    self.assemble(&mut au, released, &mut last_pli).await;
                    continue;
                }
            };
            let Some(event) = event else { break };
            match event {
                TrackRemoteEvent::OnRtpPacket(pkt) => {
                    let arrival = Instant::now();
                    match self.kind {
                        MediaKind::Audio => self.deliver(RemoteMedia::Audio(AudioPacket {
                            data: pkt.payload.clone(),
                            sequence_number: pkt.header.sequence_number,
                            rtp_timestamp: pkt.header.timestamp,
                            arrival,
                        })),
                        MediaKind::Video => {
                            let seq = pkt.header.sequence_number;
                            let released = reorder.push(seq, (pkt, arrival), arrival);
                            self.assemble(&mut au, released, &mut last_pli).await;
                        }
                    }
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
        if reorder.skipped() + reorder.late() > 0 {
            tracing::debug!(
                track = %self.track_id,
                skipped = reorder.skipped(),
                late = reorder.late(),
                "reordering gave up on packets"
            );
        }
        self.shared.end_remote_track(&self.track_id);
    }

    /// Depacketizes in-order video packets and delivers the AUs they complete; an AU with a
    /// hole asks the sender for a keyframe (rate-limited).
    async fn assemble(
        &self,
        au: &mut AuAssembler,
        packets: Vec<(u16, (rtc::rtp::Packet, Instant))>,
        last_pli: &mut Option<Instant>,
    ) {
        for (seq, (pkt, arrival)) in packets {
            let frames = au.push(seq, pkt.header.timestamp, pkt.header.marker, &pkt.payload);
            for (data, rtp_timestamp, complete) in frames {
                if !complete && last_pli.is_none_or(|t| t.elapsed() >= AUTO_PLI_INTERVAL) {
                    *last_pli = Some(Instant::now());
                    if let Err(err) = send_pli(&*self.track).await {
                        tracing::debug!("auto PLI failed: {err}");
                    }
                }
                self.deliver(RemoteMedia::Video(VideoFrame {
                    data,
                    rtp_timestamp,
                    arrival,
                    complete,
                }));
            }
        }
    }

    fn deliver(&self, media: RemoteMedia) {
        if self.tx.try_send(media).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send_pli(track: &dyn TrackRemote) -> Result<()> {
    let Some(media_ssrc) = track.ssrcs().await.first().copied() else {
        return Err(PeerError::NotNegotiated(track.track_id().await));
    };
    track
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        })])
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// A local track we send. Cheap to clone; usable from any task.
#[derive(Clone)]
pub struct LocalTrack {
    inner: Arc<LocalTrackInner>,
}

struct LocalTrackInner {
    track_id: String,
    kind: MediaKind,
    ssrc: u32,
    track: Arc<TrackLocalStaticSample>,
    /// `None` if the track was never put on the connection (see `detached`).
    rtp_sender: Option<Arc<dyn RtpSender>>,
    payload_type: OnceLock<u8>,
    connected: Arc<AtomicBool>,
    /// Off the connection because the remote takes no codec of its kind: it never sends.
    detached: AtomicBool,
}

impl std::fmt::Debug for LocalTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrack")
            .field("track_id", &self.inner.track_id)
            .field("kind", &self.inner.kind)
            .field("ssrc", &self.inner.ssrc)
            .finish()
    }
}

impl LocalTrack {
    pub fn track_id(&self) -> &str {
        &self.inner.track_id
    }

    pub fn kind(&self) -> MediaKind {
        self.inner.kind
    }

    pub fn ssrc(&self) -> u32 {
        self.inner.ssrc
    }

    /// Whether negotiation has associated this track, so `send` can work (once connected).
    pub async fn is_negotiated(&self) -> bool {
        self.payload_type().await.is_ok()
    }

    /// The negotiated payload type; unknown until the sender is associated by negotiation.
    async fn payload_type(&self) -> Result<u8> {
        let not_yet = || PeerError::NotNegotiated(self.inner.track_id.clone());
        if self.inner.detached.load(Ordering::Relaxed) {
            return Err(not_yet());
        }
        if let Some(pt) = self.inner.payload_type.get() {
            return Ok(*pt);
        }
        let Some(rtp_sender) = &self.inner.rtp_sender else {
            return Err(not_yet());
        };
        if rtp_sender.transport().await?.is_none() {
            return Err(not_yet());
        }
        let mime = match self.inner.kind {
            MediaKind::Video => MIME_TYPE_H264,
            MediaKind::Audio => MIME_TYPE_OPUS,
        };
        let params = rtp_sender.get_parameters().await?;
        let pt = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type)
            .ok_or_else(not_yet)?;
        Ok(*self.inner.payload_type.get_or_init(|| pt))
    }

    async fn send_sample(&self, data: &[u8], duration: Duration) -> Result<()> {
        if !self.inner.connected.load(Ordering::Relaxed) {
            return Err(PeerError::NotConnected);
        }
        let pt = self.payload_type().await?;
        let now = Instant::now();
        let sample = Sample {
            data: Bytes::copy_from_slice(data),
            duration,
            ..Sample::new(now)
        };
        self.inner
            .track
            .sample_writer(self.inner.ssrc, pt)
            .write_sample(&sample)
            .await?;
        Ok(())
    }
}

/// Sends H.264 on one local video track.
#[derive(Clone, Debug)]
pub struct VideoTrackSender(LocalTrack);

impl VideoTrackSender {
    /// Sends one whole Annex-B access unit (SPS/PPS before each IDR). Fails with
    /// `NotNegotiated` before the track is negotiated; callers may just drop the frame then.
    pub async fn send(&self, annexb_access_unit: &[u8], duration: Duration) -> Result<()> {
        self.0.send_sample(annexb_access_unit, duration).await
    }
}

impl std::ops::Deref for VideoTrackSender {
    type Target = LocalTrack;
    fn deref(&self) -> &LocalTrack {
        &self.0
    }
}

impl AsRef<LocalTrack> for VideoTrackSender {
    fn as_ref(&self) -> &LocalTrack {
        &self.0
    }
}

/// Sends Opus on one local audio track.
#[derive(Clone, Debug)]
pub struct AudioTrackSender(LocalTrack);

impl AudioTrackSender {
    /// Sends one Opus packet; `duration` must be its real length (20 ms typically).
    pub async fn send(&self, opus_packet: &[u8], duration: Duration) -> Result<()> {
        self.0.send_sample(opus_packet, duration).await
    }
}

impl std::ops::Deref for AudioTrackSender {
    type Target = LocalTrack;
    fn deref(&self) -> &LocalTrack {
        &self.0
    }
}

impl AsRef<LocalTrack> for AudioTrackSender {
    fn as_ref(&self) -> &LocalTrack {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------------

/// One connection to one remote member. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    chat: Arc<dyn DataChannel>,
    shared: Arc<Shared>,
    local_tracks: Arc<Mutex<HashMap<String, LocalTrack>>>,
    /// Per kind, once known: whether the remote's first m-section of that kind listed a
    /// codec we take (see `drop_unusable_media`).
    codec_verdicts: Arc<Mutex<HashMap<MediaKind, bool>>>,
    /// Our DTLS role once the first exchange settled it: true for client (`setup:active`).
    dtls_client: Arc<Mutex<Option<bool>>>,
    /// The last answer as handed out (DTLS role kept) and as webrtc-rs created it.
    answer_as_created: Arc<Mutex<Option<(String, String)>>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").finish_non_exhaustive()
    }
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

fn h264_codec(profile_level_id: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile_level_id}"
        ),
        rtcp_feedback: vec![
            feedback("nack", ""),
            feedback("nack", "pli"),
            feedback("ccm", "fir"),
        ],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// webrtc-rs's default chain (NACK generator and responder, RR/SR, TWCC receiver), with
/// NACKs sent every 20 ms instead of 100 so a retransmission lands well inside the
/// reorder wait, plus send-side congestion control: GCC fed by the remote's
/// transport-wide feedback. No pacer: 0.21's paces at exactly the estimate in one-packet
/// bursts, which would spread a keyframe over hundreds of milliseconds.
fn interceptors(me: &mut MediaEngine, config: &PeerConfig) -> Result<Registry> {
    for parameter in ["", "pli"] {
        me.register_feedback(
            RTCPFeedback {
                typ: "nack".into(),
                parameter: parameter.into(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                // A few attempts; the reorder wait gives up on the gap anyway.
                .with_max_nacks_per_packet(5)
                .build(),
        );
    configure_simulcast_extension_headers(me)?;
    // Registers transport-cc feedback and its header extension, and reports what we receive.
    let registry = configure_twcc_receiver_only(registry, me)?;
    let max = f64::from(config.max_bitrate_bps.max(MIN_ESTIMATE_BPS));
    let start = f64::from(config.start_bitrate_bps).clamp(f64::from(MIN_ESTIMATE_BPS), max);
    let registry = registry
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(Gcc::new(start, f64::from(MIN_ESTIMATE_BPS), max))
                .build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build());
    Ok(configure_rtcp_reports(registry))
}

fn media_engine() -> Result<MediaEngine> {
    let mut me = MediaEngine::default();
    for (profile, pt, rtx_pt) in H264_CODECS {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: h264_codec(profile),
                payload_type: pt,
            },
            RtpCodecKind::Video,
        )?;
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RTX.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: format!("apt={pt}"),
                    rtcp_feedback: vec![],
                },
                payload_type: rtx_pt,
            },
            RtpCodecKind::Video,
        )?;
    }
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    Ok(me)
}

/// Resolving browsers' `.local` candidates needs a multicast socket; where none can
/// be had (no multicast route, e.g. a namespace with only `lo`) we go without mDNS
/// instead of failing every connection.
fn mdns_mode() -> MulticastDnsMode {
    static MODE: OnceLock<MulticastDnsMode> = OnceLock::new();
    *MODE.get_or_init(|| match rtc::mdns::MulticastSocket::new().into_std() {
        Ok(_) => MulticastDnsMode::QueryOnly,
        Err(e) => {
            tracing::info!("mDNS off: no multicast socket ({e})");
            MulticastDnsMode::Disabled
        }
    })
}

impl Peer {
    /// Builds the connection and its "chat" channel. Events arrive on the returned receiver,
    /// which the caller must keep draining (it is unbounded).
    pub async fn new(config: PeerConfig) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>)> {
        let (events, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events,
            local_video_ssrcs: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            feedback: Mutex::new(HashMap::new()),
            dc_open: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            connected: Arc::new(AtomicBool::new(false)),
        });

        let mut me = media_engine()?;
        let registry = interceptors(&mut me, &config)?;
        // Application-most slot, after every interceptor that reads RTCP.
        let registry = registry.with(
            Slot::from(14_000),
            KeyframeRequestTap {
                shared: Arc::clone(&shared),
                read_queue: VecDeque::new(),
                write_queue: VecDeque::new(),
            },
        );

        let ice_servers = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .build();

        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(mdns_mode())
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(setting_engine)
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                shared: Arc::clone(&shared),
            }))
            .with_runtime(Arc::new(webrtc::runtime::TokioRuntime))
            .with_udp_addrs(config.bind_addrs.clone())
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let chat = pc
            .create_data_channel(
                CHAT_LABEL,
                Some(RTCDataChannelInit {
                    ordered: true,
                    negotiated: Some(CHAT_STREAM_ID),
                    ..Default::default()
                }),
            )
            .await?;
        tokio::spawn(read_chat(Arc::clone(&chat), Arc::clone(&shared)));

        Ok((
            Self {
                pc,
                chat,
                shared,
                local_tracks: Arc::new(Mutex::new(HashMap::new())),
                codec_verdicts: Arc::new(Mutex::new(HashMap::new())),
                dtls_client: Arc::new(Mutex::new(None)),
                answer_as_created: Arc::new(Mutex::new(None)),
            },
            events_rx,
        ))
    }

    fn new_sample_track(
        kind: MediaKind,
        track_id: &str,
        stream_id: &str,
    ) -> Result<(Arc<TrackLocalStaticSample>, u32)> {
        let ssrc: u32 = rand::random();
        let (codec, rtc_kind, rtx) = match kind {
            MediaKind::Video => (
                h264_codec(H264_CODECS[0].0),
                RtpCodecKind::Video,
                Some(RTCRtpRtxParameters {
                    ssrc: rand::random(),
                }),
            ),
            MediaKind::Audio => (opus_codec(), RtpCodecKind::Audio, None),
        };
        let track = MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            rtc_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rtx,
                    ..Default::default()
                },
                active: true,
                codec,
                ..Default::default()
            }],
        );
        Ok((
            Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?),
            ssrc,
        ))
    }

    fn ensure_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(PeerError::Closed);
        }
        Ok(())
    }

    async fn add_track(
        &self,
        kind: MediaKind,
        track_id: &str,
        stream_id: &str,
    ) -> Result<LocalTrack> {
        self.ensure_open()?;
        let (track, ssrc) = Self::new_sample_track(kind, track_id, stream_id)?;
        if kind == MediaKind::Video {
            // Before add_track, so a PLI can never race ahead of the mapping.
            self.shared
                .local_video_ssrcs
                .lock()
                .expect("ssrc map poisoned")
                .insert(ssrc, track_id.to_owned());
        }
        // A kind the remote takes no codec of would only make every later offer fail.
        let unusable = self.kind_unusable(kind);
        let rtp_sender = if unusable {
            tracing::info!(
                track_id,
                "the remote takes no {kind:?} codec of ours: not sending"
            );
            None
        } else {
            let rtp_sender = self
                .pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            if kind == MediaKind::Video {
                self.offer_all_h264_profiles(&rtp_sender).await?;
            }
            Some(rtp_sender)
        };
        let local = LocalTrack {
            inner: Arc::new(LocalTrackInner {
                track_id: track_id.to_owned(),
                kind,
                ssrc,
                track,
                rtp_sender,
                payload_type: OnceLock::new(),
                connected: Arc::clone(&self.shared.connected),
                detached: AtomicBool::new(unusable),
            }),
        };
        self.local_tracks
            .lock()
            .expect("local tracks poisoned")
            .insert(track_id.to_owned(), local.clone());
        Ok(local)
    }

    /// 0.21 narrows a track's m-section to the track's own codec; we packetize both
    /// Constrained Baseline spellings identically, so offer both (browsers match either).
    async fn offer_all_h264_profiles(&self, rtp_sender: &Arc<dyn RtpSender>) -> Result<()> {
        let prefs: Vec<RTCRtpCodecParameters> = H264_CODECS
            .iter()
            .map(|(profile, pt, _)| RTCRtpCodecParameters {
                rtp_codec: h264_codec(profile),
                payload_type: *pt,
            })
            .collect();
        for t in self.pc.get_transceivers().await {
            if t.sender().await?.is_some_and(|s| s.id() == rtp_sender.id()) {
                t.set_codec_preferences(prefs).await?;
                break;
            }
        }
        Ok(())
    }

    /// Adds a local H.264 track (triggers renegotiation).
    pub async fn add_video_track(
        &self,
        track_id: &str,
        stream_id: &str,
    ) -> Result<VideoTrackSender> {
        Ok(VideoTrackSender(
            self.add_track(MediaKind::Video, track_id, stream_id)
                .await?,
        ))
    }

    /// Adds a local Opus track (triggers renegotiation).
    pub async fn add_audio_track(
        &self,
        track_id: &str,
        stream_id: &str,
    ) -> Result<AudioTrackSender> {
        Ok(AudioTrackSender(
            self.add_track(MediaKind::Audio, track_id, stream_id)
                .await?,
        ))
    }

    /// Stops sending a local track (triggers renegotiation; the remote then sees
    /// `RemoteTrackEnded`).
    pub async fn remove_track<S: AsRef<LocalTrack>>(&self, sender: &S) -> Result<()> {
        let local = sender.as_ref();
        if !local.inner.detached.swap(true, Ordering::AcqRel)
            && let Some(rtp_sender) = &local.inner.rtp_sender
        {
            self.pc.remove_track(rtp_sender).await?;
        }
        self.local_tracks
            .lock()
            .expect("local tracks poisoned")
            .remove(local.track_id());
        self.shared
            .local_video_ssrcs
            .lock()
            .expect("ssrc map poisoned")
            .remove(&local.ssrc());
        Ok(())
    }

    /// Sends a PLI for a remote video track.
    pub async fn request_keyframe(&self, track_id: &str) -> Result<()> {
        self.ensure_open()?;
        let track = self
            .shared
            .remote
            .lock()
            .expect("remote map poisoned")
            .get(track_id)
            .map(|e| Arc::clone(&e.track))
            .ok_or_else(|| PeerError::UnknownTrack(track_id.to_owned()))?;
        send_pli(&*track).await
    }

    /// Sends a chat message (ordered, reliable).
    pub async fn send_data(&self, text: &str) -> Result<()> {
        self.ensure_open()?;
        if !self.shared.dc_open.load(Ordering::Acquire) {
            return Err(PeerError::DataChannelNotOpen);
        }
        self.chat.send_text(text).await?;
        Ok(())
    }

    /// Closes the connection; remote tracks end, `Closed` is reported.
    pub async fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.pc.close().await;
        // The driver is stopped by close(), so its own Closed callback never runs.
        self.shared
            .emit(PeerEvent::ConnectionState(ConnectionState::Closed));
        self.shared.end_all_remote_tracks();
        result?;
        Ok(())
    }

    /// Statistics from the 0.21 stats report, keyed by track.
    pub async fn stats(&self) -> PeerStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut stats = PeerStats::default();

        let locals: HashMap<u32, LocalTrack> = self
            .local_tracks
            .lock()
            .expect("local tracks poisoned")
            .values()
            .map(|t| (t.ssrc(), t.clone()))
            .collect();
        let feedback = self
            .shared
            .feedback
            .lock()
            .expect("feedback poisoned")
            .clone();
        for out in report.outbound_rtp_streams() {
            let ssrc = out.sent_rtp_stream_stats.rtp_stream_stats.ssrc;
            let local = locals.get(&ssrc);
            let fb = feedback.get(&ssrc).copied().unwrap_or_default();
            let clock = match local.map(|l| l.kind()) {
                Some(MediaKind::Audio) => 48_000.0,
                _ => 90_000.0,
            };
            stats.outbound.push(TrackStats {
                track_id: local.map(|l| l.track_id().to_owned()).unwrap_or_default(),
                kind: local.map(|l| l.kind()),
                ssrc,
                bytes_sent: out.sent_rtp_stream_stats.bytes_sent,
                packets_sent: out.sent_rtp_stream_stats.packets_sent,
                packets_lost: fb.packets_lost,
                nack_received: fb.nack,
                pli_received: fb.pli,
                fir_received: fb.fir,
                jitter: f64::from(fb.jitter) / clock,
                rtt: fb.rtt,
                retransmitted_packets: out.retransmitted_packets_sent,
                ..Default::default()
            });
            // One estimate for the connection, copied onto every outbound stream.
            if out.target_bitrate > 0.0 {
                stats.send_estimate_bps = Some(out.target_bitrate);
            }
        }
        let remotes: HashMap<String, (MediaKind, u64)> = self
            .shared
            .remote
            .lock()
            .expect("remote map poisoned")
            .iter()
            .map(|(id, e)| (id.clone(), (e.kind, e.dropped.load(Ordering::Relaxed))))
            .collect();
        for inb in report.inbound_rtp_streams() {
            let rs = &inb.received_rtp_stream_stats;
            let remote = remotes.get(&inb.track_identifier);
            stats.inbound.push(TrackStats {
                track_id: inb.track_identifier.clone(),
                kind: remote.map(|r| r.0),
                ssrc: rs.rtp_stream_stats.ssrc,
                bytes_received: inb.bytes_received,
                packets_received: rs.packets_received,
                packets_lost: rs.packets_lost,
                nack_sent: inb.nack_count as u64,
                pli_sent: inb.pli_count as u64,
                fir_sent: inb.fir_count as u64,
                jitter: rs.jitter,
                retransmitted_packets: inb.retransmitted_packets_received,
                dropped_by_consumer: remote.map_or(0, |r| r.1),
                ..Default::default()
            });
        }
        for pair in report.candidate_pairs() {
            if pair.nominated || stats.rtt.is_none() {
                if pair.current_round_trip_time > 0.0 {
                    stats.rtt = Some(Duration::from_secs_f64(pair.current_round_trip_time));
                }
                stats.transport_bytes_sent = pair.bytes_sent;
                stats.transport_bytes_received = pair.bytes_received;
            }
        }
        stats
    }

    // --- primitives for `negotiation` -----------------------------------------------------

    pub async fn create_offer(&self) -> Result<SessionDescription> {
        self.drop_unusable_media().await?;
        SessionDescription::from_rtc(&self.pc.create_offer(None).await?)
    }

    /// webrtc-rs answers `a=setup:active` every time, also on a connection where it is
    /// already the DTLS server; browsers refuse that as a role change ("Failed to set SSL
    /// role"). A renegotiation answer therefore states the role already established. Only
    /// the copy handed out changes: webrtc-rs keeps its DTLS session whatever its own
    /// answer says, and `set_local_description` applies the answer as it was created.
    pub async fn create_answer(&self) -> Result<SessionDescription> {
        self.drop_unusable_media().await?;
        let answer = SessionDescription::from_rtc(&self.pc.create_answer(None).await?)?;
        let Some(client) = *self.dtls_client.lock().expect("dtls role poisoned") else {
            return Ok(answer);
        };
        let kept = with_dtls_setup(&answer.sdp, if client { "active" } else { "passive" });
        if kept == answer.sdp {
            return Ok(answer);
        }
        *self.answer_as_created.lock().expect("answer poisoned") = Some((kept.clone(), answer.sdp));
        Ok(SessionDescription {
            sdp_type: SdpType::Answer,
            sdp: kept,
        })
    }

    pub async fn set_local_description(&self, desc: &SessionDescription) -> Result<()> {
        let mut desc = desc.clone();
        if desc.sdp_type == SdpType::Answer {
            let created = self
                .answer_as_created
                .lock()
                .expect("answer poisoned")
                .take();
            if let Some((handed_out, created)) = created
                && handed_out == desc.sdp
            {
                desc.sdp = created;
            }
        }
        self.pc.set_local_description(desc.to_rtc()?).await?;
        if desc.sdp_type == SdpType::Answer {
            // Our first answer sets our role; webrtc-rs plays the one it states.
            self.note_dtls_role(&desc.sdp, true);
        }
        Ok(())
    }

    /// Records our DTLS role from the first answer applied, ours or the remote's.
    fn note_dtls_role(&self, answer_sdp: &str, ours: bool) {
        let mut role = self.dtls_client.lock().expect("dtls role poisoned");
        if role.is_some() {
            return;
        }
        let setup = answer_sdp
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=setup:"));
        *role = match setup {
            Some("active") => Some(ours),
            Some("passive") => Some(!ours),
            _ => None,
        };
    }

    /// Applies a remote offer or answer, and notes for each media kind it shows for the
    /// first time whether that kind can be negotiated at all (see `drop_unusable_media`).
    pub async fn set_remote_description(&self, desc: &SessionDescription) -> Result<()> {
        self.pc.set_remote_description(desc.to_rtc()?).await?;
        if desc.sdp_type == SdpType::Answer {
            self.note_dtls_role(&desc.sdp, false);
        }
        if matches!(desc.sdp_type, SdpType::Offer | SdpType::Answer) {
            self.note_codec_verdicts(&desc.sdp);
            self.reconcile_remote_tracks(&desc.sdp);
        }
        Ok(())
    }

    /// A kind (audio, video) whose first remote m-section lists no codec we take can never
    /// be negotiated on this connection: webrtc-rs 0.21 settles a kind's codecs from that
    /// first section for good, and from then on any sender of that kind fails every offer
    /// and answer with `ErrSenderWithNoCodecs` — the answer to a browser guest that offers
    /// only VP8, say. So before each offer or answer, our tracks of such a kind leave the
    /// connection and its transceivers go inactive: their m-sections are rejected (port 0)
    /// and the rest negotiates. Done here rather than when the verdict comes, because
    /// changing transceivers asks for one more negotiation round, which is only free when
    /// we are about to negotiate anyway (an extra offer right after our first one is
    /// answered holds up webrtc-rs's ICE checks by a second).
    async fn drop_unusable_media(&self) -> Result<()> {
        if !self
            .codec_verdicts
            .lock()
            .expect("verdicts poisoned")
            .values()
            .any(|usable| !usable)
        {
            return Ok(());
        }
        self.detach_unusable_tracks().await?;
        let remote = self.pc.remote_description().await.map(|d| d.sdp);
        self.park_unusable_transceivers(remote.as_deref().unwrap_or_default())
            .await
    }

    /// Records the verdict for each kind seen for the first time.
    fn note_codec_verdicts(&self, remote_sdp: &str) {
        let mut verdicts = self.codec_verdicts.lock().expect("verdicts poisoned");
        for (kind, usable) in first_sections_usable(remote_sdp) {
            verdicts.entry(kind).or_insert_with(|| {
                if !usable {
                    tracing::info!("the remote has no {kind:?} codec we take");
                }
                usable
            });
        }
    }

    fn kind_unusable(&self, kind: MediaKind) -> bool {
        self.codec_verdicts
            .lock()
            .expect("verdicts poisoned")
            .get(&kind)
            .is_some_and(|usable| !usable)
    }

    /// Takes our tracks of unusable kinds off the connection (their transceivers stay,
    /// without a sender, and are parked).
    async fn detach_unusable_tracks(&self) -> Result<()> {
        let tracks: Vec<LocalTrack> = self
            .local_tracks
            .lock()
            .expect("local tracks poisoned")
            .values()
            .filter(|t| self.kind_unusable(t.kind()))
            .cloned()
            .collect();
        for t in tracks {
            if t.inner.detached.swap(true, Ordering::AcqRel) {
                continue;
            }
            let Some(rtp_sender) = &t.inner.rtp_sender else {
                continue;
            };
            tracing::info!(track_id = t.track_id(), "not sending: no codec in common");
            let mut transceiver = None;
            for tr in self.pc.get_transceivers().await {
                if tr
                    .sender()
                    .await?
                    .is_some_and(|s| s.id() == rtp_sender.id())
                {
                    transceiver = Some(tr);
                    break;
                }
            }
            self.pc.remove_track(rtp_sender).await?;
            if let Some(tr) = transceiver {
                tr.set_direction(RTCRtpTransceiverDirection::Inactive)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sets every transceiver whose m-section is of an unusable kind to inactive. Its
    /// section is rejected and carries no direction, and webrtc-rs would otherwise compare
    /// that missing direction with the transceiver's (recvonly) after every exchange and
    /// ask to renegotiate forever; inactive matches the rejection (at most one more round).
    async fn park_unusable_transceivers(&self, remote_sdp: &str) -> Result<()> {
        let kinds = section_kinds(remote_sdp);
        for tr in self.pc.get_transceivers().await {
            let Some(mid) = tr.mid().await? else {
                continue;
            };
            let unusable = kinds
                .iter()
                .any(|(m, kind)| *m == mid && self.kind_unusable(*kind));
            if unusable && tr.direction().await? != RTCRtpTransceiverDirection::Inactive {
                tr.set_direction(RTCRtpTransceiverDirection::Inactive)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn add_ice_candidate(&self, candidate: IceCandidate) -> Result<()> {
        self.pc.add_ice_candidate(candidate.into()).await?;
        Ok(())
    }

    pub async fn has_remote_description(&self) -> bool {
        self.pc.remote_description().await.is_some()
    }

    pub async fn signaling_state(&self) -> SignalingState {
        if self.pc.pending_local_description().await.is_some() {
            SignalingState::HaveLocalOffer
        } else if self.pc.pending_remote_description().await.is_some() {
            SignalingState::HaveRemoteOffer
        } else {
            SignalingState::Stable
        }
    }

    /// The local SDP currently in effect (for diagnostics and tests).
    pub async fn local_sdp(&self) -> Option<String> {
        self.pc.local_description().await.map(|d| d.sdp)
    }

    /// Ends every remote track the remote no longer sends (0.21 emits no such event).
    fn reconcile_remote_tracks(&self, remote_sdp: &str) {
        let sending = sending_track_ids(remote_sdp);
        let gone: Vec<String> = self
            .shared
            .remote
            .lock()
            .expect("remote map poisoned")
            .keys()
            .filter(|id| !sending.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.shared.end_remote_track(&id);
        }
    }
}

/// The SDP with every `a=setup:active|passive` saying `setup` instead.
fn with_dtls_setup(sdp: &str, setup: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            let bare = line.trim_end();
            if bare == "a=setup:active" || bare == "a=setup:passive" {
                format!("a=setup:{setup}{}", &line[bare.len()..])
            } else {
                line.to_owned()
            }
        })
        .collect()
}

/// The audio and video m-sections of an SDP: their kind and their lines after the m-line.
fn media_sections(sdp: &str) -> impl Iterator<Item = (MediaKind, std::str::Lines<'_>)> {
    sdp.split("\nm=").skip(1).filter_map(|section| {
        let mut lines = section.lines();
        let kind = match lines.next()?.split_whitespace().next()? {
            "video" => MediaKind::Video,
            "audio" => MediaKind::Audio,
            _ => return None,
        };
        Some((kind, lines))
    })
}

/// Per kind, whether the SDP's first m-section of that kind lists a codec we take (by
/// name, as webrtc-rs falls back to: H.264 for video, Opus for audio).
fn first_sections_usable(sdp: &str) -> Vec<(MediaKind, bool)> {
    let mut out: Vec<(MediaKind, bool)> = Vec::new();
    for (kind, mut lines) in media_sections(sdp) {
        if out.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let ours = match kind {
            MediaKind::Video => "h264",
            MediaKind::Audio => "opus",
        };
        let usable = lines.any(|l| {
            l.trim_end()
                .strip_prefix("a=rtpmap:")
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|encoding| encoding.split('/').next())
                .is_some_and(|name| name.eq_ignore_ascii_case(ours))
        });
        out.push((kind, usable));
    }
    out
}

/// (mid, kind) of the SDP's audio and video m-sections.
fn section_kinds(sdp: &str) -> Vec<(String, MediaKind)> {
    media_sections(sdp)
        .filter_map(|(kind, mut lines)| {
            lines
                .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
                .map(|mid| (mid, kind))
        })
        .collect()
}

/// Track ids (from `a=msid`) of the m-sections in which the SDP's author sends media.
fn sending_track_ids(sdp: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for section in sdp.split("\nm=").skip(1) {
        let mut lines = section.lines();
        let port_zero = lines
            .next()
            .and_then(|m| m.split_whitespace().nth(1))
            .is_some_and(|port| port == "0");
        let mut sends = true;
        let mut track = None;
        for line in lines {
            let line = line.trim_end();
            match line {
                "a=recvonly" | "a=inactive" => sends = false,
                _ => {
                    if let Some(msid) = line.strip_prefix("a=msid:") {
                        track = msid.split_whitespace().nth(1).map(str::to_owned);
                    }
                }
            }
        }
        if sends
            && !port_zero
            && let Some(track) = track
        {
            ids.insert(track);
        }
    }
    ids
}

async fn read_chat(chat: Arc<dyn DataChannel>, shared: Arc<Shared>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msid_parsing_follows_direction() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=sendrecv\r\na=msid:s a\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=recvonly\r\na=msid:s b\r\n\
                   m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=msid:s c\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\na=sendonly\r\na=msid:s d\r\n";
        let ids = sending_track_ids(sdp);
        assert_eq!(
            ids,
            HashSet::from(["a".to_owned(), "d".to_owned()]),
            "only sending, non-rejected sections count"
        );
    }

    #[test]
    fn assembler_flags_gaps_and_accepts_clean_aus() {
        let mut a = AuAssembler::default();
        let nal = Bytes::from_static(&[0x65, 1, 2, 3]);
        let f = a.push(10, 1000, true, &nal);
        assert_eq!(f.len(), 1);
        assert!(f[0].2, "clean AU is complete");
        assert_eq!(&f[0].0[..], &[0, 0, 0, 1, 0x65, 1, 2, 3]);
        // seq 11 lost
        let f = a.push(12, 4000, true, &nal);
        assert!(!f[0].2, "AU after a gap is incomplete");
        // a late retransmission of 11 is ignored
        let f = a.push(11, 2000, true, &nal);
        assert!(f.is_empty());
        // marker lost: the next timestamp closes the old AU as incomplete
        let f = a.push(13, 5000, false, &nal);
        assert!(f.is_empty());
        let f = a.push(15, 6000, true, &nal);
        assert_eq!(f.len(), 2);
        assert!(!f[0].2 && f[0].1 == 5000);
    }

    /// A Chromium-like description (trimmed) of the given (m-line, mid, attributes).
    fn chromium_sdp(sections: &[(&str, &str, &[&str])]) -> String {
        let mut sdp =
            String::from("v=0\r\no=- 5329716900689024032 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        let bundled: Vec<&str> = sections
            .iter()
            .filter(|(m, ..)| !m.contains(" 0 "))
            .map(|(_, mid, _)| *mid)
            .collect();
        sdp += &format!(
            "a=group:BUNDLE {}\r\na=msid-semantic: WMS s\r\n",
            bundled.join(" ")
        );
        for (mline, mid, attrs) in sections {
            sdp += &format!(
                "m={mline}\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:sG5q\r\na=ice-pwd:oDDK9wAg/vRqOZjHjYpNEHJ9\r\n\
                 a=fingerprint:sha-256 B1:6F:B4:3A:64:4A:AF:CE:EC:FC:50:C2:74:BC:FA:A7:BE:79:1C:96:56:89:64:9E:B6:A9:90:81:A4:8C:2C:68\r\n\
                 a=mid:{mid}\r\na=rtcp-mux\r\n"
            );
            for a in *attrs {
                sdp += &format!("{a}\r\n");
            }
        }
        sdp
    }

    const AUDIO: &[&str] = &[
        "a=setup:actpass",
        "a=sendrecv",
        "a=msid:s a",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=ssrc:11 cname:c",
    ];
    const VP8: &[&str] = &[
        "a=setup:actpass",
        "a=sendrecv",
        "a=msid:s v",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc-group:FID 21 22",
        "a=ssrc:21 cname:c",
        "a=ssrc:22 cname:c",
    ];
    const DATA: &[&str] = &["a=setup:actpass", "a=sctp-port:5000"];

    fn section<'a>(sdp: &'a str, mid: &str) -> &'a str {
        sdp.split("\nm=")
            .find(|s| s.contains(&format!("a=mid:{mid}\r")))
            .unwrap_or_else(|| panic!("no m-section {mid} in {sdp}"))
    }

    async fn peer_with_camera_and_mic() -> (Peer, VideoTrackSender, AudioTrackSender) {
        let (peer, _events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let mic = peer.add_audio_track("me-mic", "camera").await.unwrap();
        let camera = peer.add_video_track("me-camera", "camera").await.unwrap();
        (peer, camera, mic)
    }

    #[test]
    fn codec_verdicts_come_from_the_first_section_of_each_kind() {
        let vp8_first = chromium_sdp(&[
            ("audio 9 UDP/TLS/RTP/SAVPF 111 0", "0", AUDIO),
            ("video 9 UDP/TLS/RTP/SAVPF 96 97", "1", VP8),
            (
                "video 9 UDP/TLS/RTP/SAVPF 102",
                "3",
                &["a=rtpmap:102 H264/90000"],
            ),
            ("application 9 UDP/DTLS/SCTP webrtc-datachannel", "2", DATA),
        ]);
        assert_eq!(
            first_sections_usable(&vp8_first),
            [(MediaKind::Audio, true), (MediaKind::Video, false)]
        );
        assert_eq!(
            section_kinds(&vp8_first),
            [
                ("0".to_owned(), MediaKind::Audio),
                ("1".to_owned(), MediaKind::Video),
                ("3".to_owned(), MediaKind::Video),
            ]
        );
        // A rejected section lists no codec at all.
        let rejected = chromium_sdp(&[("video 0 UDP/TLS/RTP/SAVPF 0", "0", &[])]);
        assert_eq!(
            first_sections_usable(&rejected),
            [(MediaKind::Video, false)]
        );
    }

    /// A browser offering only VP8 first: the answer rejects its video section and keeps
    /// audio and data (0.21 alone fails with `ErrSenderWithNoCodecs`), and later offers
    /// and video tracks do not fail either.
    #[tokio::test]
    async fn a_vp8_only_offer_gets_an_answer_with_its_video_rejected() {
        let (peer, camera, mic) = peer_with_camera_and_mic().await;
        let offer = chromium_sdp(&[
            ("audio 9 UDP/TLS/RTP/SAVPF 111 0", "0", AUDIO),
            ("video 9 UDP/TLS/RTP/SAVPF 96 97", "1", VP8),
            ("application 9 UDP/DTLS/SCTP webrtc-datachannel", "2", DATA),
        ]);
        peer.set_remote_description(&SessionDescription {
            sdp_type: SdpType::Offer,
            sdp: offer,
        })
        .await
        .unwrap();
        let answer = peer.create_answer().await.expect("an answer");
        peer.set_local_description(&answer).await.unwrap();
        assert!(
            section(&answer.sdp, "1").starts_with("video 0 "),
            "{}",
            answer.sdp
        );
        assert!(
            section(&answer.sdp, "0").contains("opus/48000/2"),
            "{}",
            answer.sdp
        );
        assert!(section(&answer.sdp, "2").starts_with("application 9 "));
        assert!(
            answer.sdp.contains("a=group:BUNDLE 0 2\r"),
            "{}",
            answer.sdp
        );
        assert!(mic.is_negotiated().await);
        assert!(!camera.is_negotiated().await);

        let screen = peer.add_video_track("me-screen-1", "screen").await.unwrap();
        let offer = peer.create_offer().await.expect("a later offer");
        assert!(
            section(&offer.sdp, "1").starts_with("video 0 "),
            "{}",
            offer.sdp
        );
        assert!(!offer.sdp.contains("H264"), "{}", offer.sdp);
        assert!(!screen.is_negotiated().await);
        peer.close().await.unwrap();
    }

    /// Our offer first, answered by a browser that rejects our video: later offers and
    /// answers leave video out instead of failing.
    #[tokio::test]
    async fn an_answer_rejecting_our_video_leaves_later_negotiations_working() {
        let (peer, camera, _mic) = peer_with_camera_and_mic().await;
        let offer = peer.create_offer().await.unwrap();
        peer.set_local_description(&offer).await.unwrap();
        let answer = chromium_sdp(&[
            (
                "audio 9 UDP/TLS/RTP/SAVPF 111",
                "0",
                &[&AUDIO[..5], &AUDIO[6..]].concat(),
            ),
            (
                "video 0 UDP/TLS/RTP/SAVPF 0",
                "1",
                &["a=setup:active", "a=sendrecv"],
            ),
            ("application 9 UDP/DTLS/SCTP webrtc-datachannel", "2", DATA),
        ])
        .replace("a=setup:actpass", "a=setup:active");
        peer.set_remote_description(&SessionDescription {
            sdp_type: SdpType::Answer,
            sdp: answer,
        })
        .await
        .unwrap();
        assert!(!camera.is_negotiated().await);
        let offer = peer.create_offer().await.expect("a later offer");
        assert!(
            section(&offer.sdp, "1").starts_with("video 0 "),
            "{}",
            offer.sdp
        );
        peer.close().await.unwrap();
    }

    /// We offered and the browser answered `active` (we are the DTLS server): our answer to
    /// its next offer says `passive`, not webrtc-rs's `active`, and still applies.
    #[tokio::test]
    async fn a_renegotiation_answer_keeps_the_dtls_role() {
        let (peer, _events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let _mic = peer.add_audio_track("me-mic", "camera").await.unwrap();
        let offer = peer.create_offer().await.unwrap();
        peer.set_local_description(&offer).await.unwrap();
        let sections = |setup: &'static str| {
            let audio: Vec<&str> = [setup]
                .into_iter()
                .chain(AUDIO[1..].iter().copied())
                .collect();
            chromium_sdp(&[
                ("audio 9 UDP/TLS/RTP/SAVPF 111 0", "0", &audio),
                (
                    "application 9 UDP/DTLS/SCTP webrtc-datachannel",
                    "1",
                    &[setup, "a=sctp-port:5000"],
                ),
            ])
        };
        for (sdp_type, setup) in [
            (SdpType::Answer, "a=setup:active"),
            (SdpType::Offer, "a=setup:actpass"),
        ] {
            peer.set_remote_description(&SessionDescription {
                sdp_type,
                sdp: sections(setup),
            })
            .await
            .unwrap();
        }
        let answer = peer.create_answer().await.unwrap();
        assert!(answer.sdp.contains("a=setup:passive"), "{}", answer.sdp);
        assert!(!answer.sdp.contains("a=setup:active"), "{}", answer.sdp);
        peer.set_local_description(&answer).await.unwrap();
        assert_eq!(peer.signaling_state().await, SignalingState::Stable);
        peer.close().await.unwrap();
    }

    #[test]
    fn dtls_setup_is_rewritten_in_place() {
        let sdp = "v=0\r\na=setup:active\r\nm=audio 9 x 0\r\na=setup:passive\r\na=setupx\r\n";
        assert_eq!(
            with_dtls_setup(sdp, "passive"),
            "v=0\r\na=setup:passive\r\nm=audio 9 x 0\r\na=setup:passive\r\na=setupx\r\n"
        );
    }
}
