//! Talking to a selective forwarding unit: Janus's VideoRoom plugin. `janus.rs` is the
//! Janus API client (session, keepalive, handles, transactions), `videoroom.rs` the
//! messages (pure), `simulcast.rs` the simulcast messages, `layers.rs` the choice of
//! a layer per feed and `downlink.rs` the subscriber's own downlink estimate (all pure), `launch.rs` a Janus process of our own (benches,
//! tests). The call engine's SFU mode (`call/session/sfu.rs`) drives them.

pub mod downlink;
pub mod janus;
pub mod launch;
pub mod layers;
pub mod rooms;
pub mod simulcast;
pub mod videoroom;

pub use janus::{Handle, Janus, News, Reply};
pub use launch::{LaunchError, LocalJanus};
pub use rooms::JanusRooms;
pub use videoroom::{Jsep, Publisher, RoomEvent, SubStream};

/// Where to take a call's media instead of a mesh: a Janus WebSocket URL and a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuTarget {
    /// `ws://HOST:PORT` of Janus's WebSocket transport.
    pub url: String,
    /// VideoRoom room number; created (H.264 + Opus) when it does not exist and has no
    /// pin (a room the server made has one and exists already).
    pub room: u64,
    /// What joining the room takes.
    pub pin: Option<String>,
    /// Janus's `apisecret`.
    pub api_secret: Option<String>,
}

impl SfuTarget {
    /// The room everyone in confab room `name` meets in: a stable hash (FNV-1a), within
    /// what Janus's JSON numbers carry exactly, never 0.
    pub fn for_room(url: &str, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            url: url.to_owned(),
            room: (h & ((1 << 52) - 1)).max(1),
            pin: None,
            api_secret: None,
        }
    }
}

/// Everything that goes wrong talking to Janus.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("cannot reach Janus at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("Janus error {code}: {reason}")]
    Janus { code: i64, reason: String },
    #[error("VideoRoom error {code}: {reason}")]
    Plugin { code: i64, reason: String },
    #[error("Janus said something unexpected: {0}")]
    Protocol(String),
    #[error("no reply from Janus to {0}")]
    Timeout(String),
    #[error("the connection to Janus closed")]
    Closed,
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confab_room_always_maps_to_the_same_videoroom() {
        let a = SfuTarget::for_room("ws://j", "standup");
        assert_eq!(a, SfuTarget::for_room("ws://j", "standup"));
        assert_ne!(a.room, SfuTarget::for_room("ws://j", "standup2").room);
        assert!(a.room > 0 && a.room < 1 << 53);
    }
}
