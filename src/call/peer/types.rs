//! What a [`Peer`](super::Peer) is configured with and reports: plain data.

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCSdpType, RTCSessionDescription};

use crate::call::error::{CallError, Result};

/// One ICE server (STUN or TURN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServerConfig {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Which candidates ICE may use, as the browser's `iceTransportPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceTransport {
    /// Direct, through NATs, or relayed: whatever works best.
    #[default]
    All,
    /// Only through a TURN relay: the other side never learns our addresses.
    Relay,
}

impl std::str::FromStr for IceTransport {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "relay" => Ok(Self::Relay),
            _ => Err(format!("ICE transport must be all or relay, not {s:?}")),
        }
    }
}

/// How to build a [`Peer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    pub ice_servers: Vec<IceServerConfig>,
    pub ice_transport: IceTransport,
    /// Local UDP bind addresses. Tests use `127.0.0.1:0`; a wildcard expands to every
    /// non-loopback interface.
    pub bind_addrs: Vec<String>,
    /// Send-side bandwidth estimation (GCC over transport-wide feedback): where the estimate
    /// starts and the most it may reach, in bit/s.
    pub start_bitrate_bps: u32,
    pub max_bitrate_bps: u32,
    /// Offer FlexFEC for video (the remote decides whether it is used), and give
    /// retransmissions and repair packets transport-wide numbers: towards confab peers,
    /// not Janus.
    pub fec: bool,
}

impl PeerConfig {
    /// The send estimate's bounds and where it starts, in bit/s.
    pub(crate) fn estimate_bounds(&self) -> (f64, f64, f64) {
        let (min, max) = (MIN_ESTIMATE_BPS, self.max_bitrate_bps.max(MIN_ESTIMATE_BPS));
        let start = self.start_bitrate_bps.clamp(min, max);
        (f64::from(min), f64::from(start), f64::from(max))
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            ice_transport: IceTransport::All,
            bind_addrs: vec!["0.0.0.0:0".to_owned()],
            start_bitrate_bps: 1_500_000,
            max_bitrate_bps: 3_000_000,
            fec: true,
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
    /// webrtc-rs names no m-section (`sdpMid: ""`); under BUNDLE a candidate belongs to
    /// the bundle's transport, which is the first section's: say so as browsers read it
    /// (no `sdpMid`, `sdpMLineIndex` 0) rather than with a mid no section has.
    fn from(c: RTCIceCandidateInit) -> Self {
        let unnamed = c.sdp_mid.as_deref() == Some("");
        Self {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid.filter(|m| !m.is_empty()),
            sdp_mline_index: if unnamed {
                Some(c.sdp_mline_index.unwrap_or(0))
            } else {
                c.sdp_mline_index
            },
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
    pub(super) fn to_rtc(&self) -> Result<RTCSessionDescription> {
        Ok(match self.sdp_type {
            SdpType::Offer => RTCSessionDescription::offer(self.sdp.clone())?,
            SdpType::Answer => RTCSessionDescription::answer(self.sdp.clone())?,
            SdpType::Pranswer => RTCSessionDescription::pranswer(self.sdp.clone())?,
            SdpType::Rollback => RTCSessionDescription::rollback(None)?,
        })
    }

    pub(super) fn from_rtc(d: &RTCSessionDescription) -> Result<Self> {
        let sdp_type = match d.sdp_type {
            RTCSdpType::Offer => SdpType::Offer,
            RTCSdpType::Answer => SdpType::Answer,
            RTCSdpType::Pranswer => SdpType::Pranswer,
            RTCSdpType::Rollback => SdpType::Rollback,
            other => return Err(CallError::Negotiation(format!("sdp type {other:?}"))),
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
pub struct RemoteAccessUnit {
    /// Annex-B, 4-byte start codes (the depacketizer's output form).
    pub data: Bytes,
    pub rtp_timestamp: u32,
    /// When the packet with the marker bit arrived.
    pub arrival: Instant,
    /// When its first packet arrived (not later for the unit's own size).
    pub first_arrival: Instant,
    /// False if a sequence gap or a malformed packet hit this AU (a PLI was sent).
    pub complete: bool,
    /// Intact, but whole AUs before it were lost: decodable if they were pictures
    /// nothing refers to (the decode stage checks; no PLI was sent).
    pub after_gap: bool,
    /// A packet of it came as a repair: it is late for the loss, not the path.
    pub repaired: bool,
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
    Video(RemoteAccessUnit),
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
        /// Where the decoder asks for a keyframe (sent as a PLI by the receive stage).
        keyframes: KeyframeRequester,
    },
    RemoteTrackEnded {
        track_id: String,
    },
    /// The remote sent PLI or FIR for one of our video tracks; the track's
    /// [`KeyframeWanted`] is already set (this is for the record).
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
    /// Inbound: packets the sender says it sent, by its last RTCP SR (0 before one).
    pub sender_packets_sent: u64,
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
    /// The selected candidate pair's types, local then remote ("host", "srflx", "prflx",
    /// "relay"): how the media actually travels.
    pub path: Option<(String, String)>,
    /// The port of that pair's local candidate (for a host candidate, our socket's).
    pub local_port: Option<u16>,
    /// FEC repair packets sent, and media packets they rebuilt here.
    pub fec_sent: u64,
    pub fec_recovered: u64,
    /// Repair packets sent per media packet now (0 on a clean path or without FEC).
    pub fec_share: f64,
}

/// Asks the receive stage of one remote track for a keyframe: it sends the PLI, rate
/// limited together with the ones it sends for incomplete access units itself.
#[derive(Debug, Clone)]
pub struct KeyframeRequester(pub(super) mpsc::UnboundedSender<()>);

impl KeyframeRequester {
    /// False once the track has ended.
    pub fn request(&self) -> bool {
        self.0.send(()).is_ok()
    }
}

/// Set the moment the remote asks (PLI or FIR) for a keyframe of a video track we send;
/// the encoder feeding that track takes it before its next frame. One hop: the RTCP tap
/// inside the webrtc-rs core writes it, the encode thread reads it.
#[derive(Debug, Clone, Default)]
pub struct KeyframeWanted(Arc<AtomicBool>);

impl KeyframeWanted {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a keyframe was wanted since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_without_a_mid_names_the_bundles_first_section() {
        let init = RTCIceCandidateInit {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some(String::new()),
            sdp_mline_index: Some(0),
            username_fragment: None,
            ..Default::default()
        };
        let c = IceCandidate::from(init.clone());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json.get("sdpMid"), None, "{json}");
        assert_eq!(json["sdpMLineIndex"], 0);
        // A real mid passes unchanged.
        let named = IceCandidate::from(RTCIceCandidateInit {
            sdp_mid: Some("1".into()),
            sdp_mline_index: None,
            ..init
        });
        assert_eq!(
            (named.sdp_mid.as_deref(), named.sdp_mline_index),
            (Some("1"), None)
        );
    }
}
