//! The call engine. `peer`: one WebRTC connection per remote member; `negotiation`: perfect
//! negotiation over it; `error`: the module's one error type.

pub mod error;
pub mod negotiation;
pub mod peer;

pub use error::{CallError, PeerError};
pub use negotiation::{NegotiationStats, Negotiator, SdpEndpoint, Signal};
pub use peer::{
    AudioTrackSender, ConnectionState, IceCandidate, IceServerConfig, LocalTrack, MediaKind, Peer,
    PeerConfig, PeerEvent, PeerStats, RemoteMedia, SdpType, SessionDescription, TrackStats,
    VideoTrackSender,
};
