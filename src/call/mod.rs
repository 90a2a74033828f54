//! The call engine. `session` takes commands and reports events; it keeps one `peer`
//! (a WebRTC connection) per member, negotiated by `negotiation`. The media path runs
//! through one file per stage: `encode` (a thread per local source) -> `send` (fan-out to
//! every peer's track) -> network (`peer`) -> `peer/receive` with `reorder` ->
//! `peer/assemble` (depacketize) -> `decode` (a thread per remote track) -> `sink`.
//! `rate` sets the encoders from the bandwidth estimates, `stats` reports.

mod audio_loss;
mod decode;
mod encode;
mod error;
mod frame_timing;
mod ladder;
pub(crate) mod layered;
mod muted_speech;
mod negotiation;
mod peer;
mod quality;
mod rate;
mod reconnect;
mod reorder;
mod send;
mod session;
pub mod simulcast;
mod sink;
mod slow_peers;
mod small_stream;
mod stats;
mod track;
mod tunnel;

pub use encode::VideoEncoding;
pub use error::CallError;
pub use negotiation::{NegotiationStats, Negotiator, SdpEndpoint, Signal};
pub use peer::{
    AudioPacket, AudioTrackSender, ConnectionState, IceCandidate, IceServerConfig, IceTransport,
    KeyframeRequester, KeyframeWanted, LocalTrack, MediaKind, Peer, PeerConfig, PeerEvent,
    PeerStats, RemoteAccessUnit, RemoteMedia, SdpType, SessionDescription, SignalingState,
    TrackStats, VideoTrackSender,
};
pub use quality::{Gap, VideoQuality, VideoSecond};
pub use session::{CallConfig, CallHandle, Command, DataMessage, Event, LocalMedia, start};
pub use sink::{AudioInfo, FrameInfo, MediaSink, NullSink};
pub use stats::{PeerCallStats, SentTotals};
pub use track::TrackRole;
