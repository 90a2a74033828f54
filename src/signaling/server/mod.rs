//! `confab serve`: rooms, presence, relay and ringing calls over WebSocket (axum).
//!
//! One task per connection reads frames, enforces size and rate limits and hands
//! parsed messages to the [`Hub`]. The hub's state sits behind one short-held
//! mutex and never awaits: it only pushes pre-serialised frames into each
//! client's bounded outbound queue, so one slow client can't stall a room.

use std::time::Duration;

mod accept;
mod calls;
mod connection;
mod echo;
#[cfg(test)]
mod fuzz;
mod hub;
mod join;
mod listener;
mod metrics;
mod outbox;
mod resume;
mod sfu;
mod snapshot;
mod stun;
mod turn;
mod turn_stream;

use calls::*;
use connection::*;
use echo::*;
use hub::*;
use join::Create;
use metrics::*;
use outbox::*;
use resume::*;
use sfu::*;

pub use echo::{EchoConfig, EchoJob, EchoService};
pub use hub::Hub;
pub use listener::{Server, ServerConfig, ServerError};
pub use metrics::MetricsSnapshot;
pub use sfu::{DEFAULT_MESH_MAX, SfuConfig, SfuJob, SfuService};
pub use turn::{TurnRelay, TurnRelayConfig, TurnTls};

/// Frames above this are refused by the WebSocket layer itself (connection closed, 1009).
const HARD_FRAME_LIMIT: usize = 1 << 20;
const OUTBOUND_QUEUE: usize = 512;
/// The most bytes queued for one client: one that stops reading is cut off here rather
/// than holding the server's memory (a room's burst of descriptions is far below it).
const OUTBOUND_BYTES: usize = 1 << 20;
/// A write (or flush) to one client that takes longer ends its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CAPACITY: usize = 1000;

/// WebSocket close codes the server uses.
pub mod close_code {
    /// Rate limit exceeded for too long (flood).
    pub const POLICY: u16 = 1008;
    /// Server full, or this client fell too far behind reading.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// No frame (not even a pong) within the heartbeat timeout.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame or message over the hard limit of 1 MiB.
    pub const TOO_BIG: u16 = 1009;
}
