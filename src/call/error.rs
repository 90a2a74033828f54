//! The one error type at the `call` module boundary.

use thiserror::Error;

/// Everything that can go wrong in a call: signaling, the peer connections and their
/// negotiation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The signaling server could not be reached or refused us.
    #[error("signaling: {0}")]
    Signaling(#[from] crate::signaling::SignalingError),
    /// An error reported by webrtc-rs (`webrtc`/`rtc` share one error type).
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// A signal or candidate could not be (de)serialised.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The track is not negotiated yet (no payload type / not bound), so media was not sent.
    #[error("track {0} is not negotiated yet")]
    NotNegotiated(String),
    /// No track with this id on this peer.
    #[error("unknown track {0}")]
    UnknownTrack(String),
    /// The data channel is not open yet.
    #[error("data channel is not open")]
    DataChannelNotOpen,
    /// Media can't be sent before the connection is up.
    #[error("peer connection is not connected yet")]
    NotConnected,
    /// The connection has been closed.
    #[error("peer connection is closed")]
    Closed,
    /// The SFU (Janus) could not be reached or refused a request.
    #[error("sfu: {0}")]
    Sfu(#[from] crate::sfu::SfuError),
    /// A description arrived that the negotiation state machine cannot apply.
    #[error("negotiation: {0}")]
    Negotiation(String),
}

/// Result alias for `call`.
pub type Result<T, E = CallError> = std::result::Result<T, E>;
