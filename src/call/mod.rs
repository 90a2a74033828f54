//! The call engine: `session` (commands in, events out), `peer` (one WebRTC
//! connection per member), `negotiation` (perfect negotiation), `pipeline`
//! (capture/encode and decode stages around the network), `stats`.

pub mod error;
pub mod negotiation;
pub mod peer;
mod pipeline;
mod rate;
mod reorder;
mod session;
mod stats;

pub use error::{CallError, PeerError};
pub use negotiation::{NegotiationStats, Negotiator, SdpEndpoint, Signal};
pub use peer::{
    AudioTrackSender, ConnectionState, IceCandidate, IceServerConfig, LocalTrack, MediaKind, Peer,
    PeerConfig, PeerEvent, PeerStats, RemoteMedia, SdpType, SessionDescription, TrackStats,
    VideoTrackSender,
};
pub use pipeline::{AudioInfo, FrameInfo, MediaSink, NullSink, VideoEncoding};
pub use session::{
    CAMERA_TRACK, CallConfig, CallHandle, Command, DataMessage, EngineError, Event, LocalMedia,
    MIC_TRACK, SCREEN_TRACK, start,
};
pub use stats::{PeerCallStats, SentTotals};
