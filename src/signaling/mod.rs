//! Signaling: protocol v1 (`protocol`), the server behind `confab serve`
//! (`server`), the browser guest page it serves (`web`) and the client library
//! every other part uses (`client`); `tls` serves all of it over HTTPS/WSS too.

mod client;
mod ice;
pub mod protocol;
mod server;
pub(crate) mod tls;
pub(crate) mod turn_frame;
mod web;

pub use client::{
    ClientEvent, ClientOptions, JoinParams, SignalingClient, SignalingError, TestCallRoom,
};
pub use ice::{IceConfig, turn_credentials};
pub use server::{
    DEFAULT_MESH_MAX, EchoConfig, EchoJob, EchoService, MetricsSnapshot, Server, ServerConfig,
    ServerError, SfuConfig, SfuJob, SfuService, TurnRelayConfig, TurnTls,
};
pub use tls::TlsConfig;
/// The browser guest page's routes (`/`, its scripts and style), for a server of one's own.
pub use web::router as web_router;
