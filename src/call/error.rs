//! The one error type at the `call` module boundary.

use thiserror::Error;

/// Errors from the call transport (`peer`) and negotiation layers.
#[derive(Debug, Error)]
pub enum PeerError {
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
    /// A description arrived that the negotiation state machine cannot apply.
    #[error("negotiation: {0}")]
    Negotiation(String),
}

/// Alias used throughout `call`.
pub type CallError = PeerError;

/// Result alias for `call`.
pub type Result<T, E = PeerError> = std::result::Result<T, E>;
