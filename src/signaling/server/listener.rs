//! The listeners (plain and TLS) and the routes they serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tokio::sync::watch;

use super::*;
use crate::signaling::ice::IceConfig;
use crate::signaling::tls::{self, TlsConfig};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub max_rooms: usize,
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// Rate-limited messages in a row before the connection is closed.
    pub flood_close_after: u32,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub ring_timeout: Duration,
    pub ice: IceConfig,
    /// A second, TLS listener (HTTPS/WSS) with the same routes and the same rooms.
    pub tls: Option<TlsConfig>,
    /// Web origins besides the server's own whose pages may open `/ws` (`*`: any).
    pub allowed_origins: Vec<String>,
    /// Whether other hosts may connect at all (off: loopback only); see [`Server::set_lan_open`].
    pub lan_open: bool,
    /// Connections one address may hold at once (0: no cap).
    pub max_per_ip: usize,
    /// Request headers must arrive within this; an idle HTTP connection is closed after it.
    pub header_timeout: Duration,
    /// The capacity of a room whose creator named none.
    pub default_capacity: usize,
    /// Serve `/metrics` to other hosts too (off: loopback only).
    pub public_metrics: bool,
    /// Answer STUN binding requests here (UDP) and name this responder first in every
    /// welcome's ICE servers.
    pub stun_listen: Option<SocketAddr>,
    /// Run a TURN relay (UDP) and name it in every welcome, with credentials from
    /// `ice.turn_secret` (a random one when none is set).
    pub turn_relay: Option<TurnRelayConfig>,
    /// Keep rooms and members here, so that a restarted server takes them back (see
    /// `snapshot.rs`).
    pub state_file: Option<std::path::PathBuf>,
    /// How long a member whose connection was lost stays in its room, resumable (zero:
    /// it leaves at once).
    pub resume_grace: Duration,
    /// Offer test calls (`test_call`) with these echo peers.
    pub echo: Option<EchoConfig>,
    /// Take big rooms' media (and rooms whose creator asks) through this SFU.
    pub sfu: Option<SfuConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            max_clients: 20_000,
            max_rooms: 5_000,
            max_message_bytes: 64 * 1024,
            rate_per_sec: 100.0,
            rate_burst: 200.0,
            flood_close_after: 100,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            ring_timeout: Duration::from_secs(30),
            ice: IceConfig::default(),
            tls: None,
            allowed_origins: Vec::new(),
            lan_open: true,
            max_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            default_capacity: 50,
            public_metrics: false,
            stun_listen: None,
            turn_relay: None,
            state_file: None,
            resume_grace: Duration::from_secs(30),
            echo: None,
            sfu: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server stopped with an error: {0}")]
    Serve(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Turn(String),
    #[error("cannot answer STUN on {addr}: {source}")]
    Stun {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server; dropping it does not stop it, [`Server::shutdown`] does.
pub struct Server {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stun_addr: Option<SocketAddr>,
    turn_addr: Option<SocketAddr>,
    hub: Arc<Hub>,
    gate: Arc<accept::Gate>,
    stop: Option<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

impl Server {
    /// Binds and starts serving in the background.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Self::start_with(config, Router::new()).await
    }

    /// Like [`Server::start`], merging extra routes (e.g. the web client).
    pub async fn start_with(
        mut config: ServerConfig,
        extra: Router,
    ) -> Result<Server, ServerError> {
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        // Certificate problems surface before anything listens.
        let tls = match &config.tls {
            Some(t) => Some((
                t.listen,
                tls::acceptor(&t.cert, &t.key).map_err(ServerError::Tls)?,
            )),
            None => None,
        };
        accept::raise_open_file_limit();
        let listener = bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let secure = match tls {
            Some((listen, acceptor)) => Some((bind(listen).await?, acceptor)),
            None => None,
        };
        let tls_addr = match &secure {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let stun_socket = match config.stun_listen {
            Some(addr) => Some(
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|source| ServerError::Stun { addr, source })?,
            ),
            None => None,
        };
        let stun_addr = match &stun_socket {
            Some(s) => Some(s.local_addr()?),
            None => None,
        };
        let relay = match &config.turn_relay {
            Some(relay) => {
                let secret = config
                    .ice
                    .turn_secret
                    .get_or_insert_with(random_secret)
                    .clone();
                let relay = TurnRelay::start(relay, &secret)
                    .await
                    .map_err(ServerError::Turn)?;
                // Ours first: the relay nearest to the server.
                config.ice.turn.splice(0..0, relay.urls());
                Some(relay)
            }
            None => None,
        };
        let turn_addr = relay.as_ref().map(TurnRelay::local_addr);
        let gate = accept::Gate::new(config.lan_open, config.max_per_ip);
        let limits = accept::HttpLimits {
            header_timeout: config.header_timeout,
        };
        let state_file = config.state_file.clone();
        let hub = Hub::with_services(config, stun_addr, Some(addr));
        if let Some(path) = &state_file {
            match hub.restore(path) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!("{n} members kept from before a restart, awaiting their resume")
                }
                Err(e) => tracing::warn!("not taking back the server's state: {e}"),
            }
        }
        let app = router(hub.clone()).merge(extra);
        let (stop, stopped) = watch::channel(false);
        let serve = |listener, tls| {
            accept::serve(
                listener,
                tls,
                app.clone(),
                gate.clone(),
                limits.clone(),
                stopped.clone(),
            )
        };
        if let Some(path) = state_file {
            tokio::spawn(snapshot::keep(hub.clone(), path, stopped.clone()));
        }
        if let Some(socket) = stun_socket {
            tokio::spawn(stun::serve(socket, gate.clone(), stopped.clone()));
        }
        if let Some(relay) = relay {
            let mut stop = stopped.clone();
            tokio::spawn(async move {
                accept::stopped(&mut stop).await;
                relay.close().await;
            });
        }
        let plain = serve(listener, None);
        let task = match secure {
            None => tokio::spawn(plain),
            Some((l, acceptor)) => {
                let secure = serve(l, Some(acceptor));
                tokio::spawn(async move {
                    let (a, b) = tokio::join!(plain, secure);
                    a.and(b)
                })
            }
        };
        tracing::info!(%addr, tls = ?tls_addr, "signaling server listening");
        Ok(Server {
            addr,
            tls_addr,
            stun_addr,
            turn_addr,
            hub,
            gate,
            stop: Some(stop),
            task,
        })
    }

    /// Opens the server to other hosts, or closes it to all but this machine. Connections
    /// already open stay.
    pub fn set_lan_open(&self, open: bool) {
        self.gate.set_lan_open(open);
    }

    pub fn lan_open(&self) -> bool {
        self.gate.lan_open()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The STUN responder's address, when there is one.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun_addr
    }

    /// The TURN relay's address, when there is one.
    pub fn turn_addr(&self) -> Option<SocketAddr> {
        self.turn_addr
    }

    /// The TLS listener's address, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.hub.metrics_snapshot()
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.hub.kick_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        match (&mut self.task).await {
            Ok(r) => r.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }

    /// Waits until the server stops by itself (it normally never does).
    pub async fn wait(mut self) -> Result<(), ServerError> {
        match (&mut self.task).await {
            Ok(r) => r.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }
}

/// A secret for a relay nobody configured one for: only this process hands out its
/// credentials.
fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signaling routes: `/ws`, `/healthz`, `/metrics`, and the web client at `/`.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .with_state(hub)
        .merge(crate::signaling::web::router())
}

async fn ws_handler(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    slot: Option<Extension<Arc<accept::Slot>>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    State(hub): State<Arc<Hub>>,
) -> Response {
    let ip = peer.map(|Extension(ConnectInfo(p))| p.ip().to_canonical());
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &hub.config.allowed_origins) {
        tracing::info!(?origin, "WebSocket from a foreign origin refused");
        let why =
            "pages from this origin may not use this server (see `confab serve --allow-origin`)";
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let host_owned = host.map(str::to_string);
    // Small buffers: tungstenite's 128 KiB defaults cost over a gigabyte at 10k clients.
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| async move {
            // The WebSocket holds its address's connection slot while it lives.
            let _slot = slot;
            connection(hub, socket, ip, host_owned).await
        })
}

async fn metrics_handler(
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    State(hub): State<Arc<Hub>>,
) -> Response {
    let local = peer.is_some_and(|Extension(ConnectInfo(p))| p.ip().to_canonical().is_loopback());
    if !local && !hub.config.public_metrics {
        let why = "metrics are served to this machine only (see `confab serve --public-metrics`)\n";
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        hub.metrics_snapshot().prometheus(),
    )
        .into_response()
}

/// Whether a WebSocket upgrade may proceed: native clients send no `Origin`; a browser
/// page may if it came from this server (its origin names the `Host` it asked) or from an
/// origin on the allow-list. Anything else is a page on another site driving a user's
/// browser at this server.
fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn only_native_clients_the_servers_own_pages_and_listed_origins_may_connect() {
        let host = Some("192.168.1.5:8787");
        let none: &[String] = &[];
        assert!(origin_allowed(None, host, none), "native client");
        assert!(origin_allowed(Some("http://192.168.1.5:8787"), host, none));
        assert!(origin_allowed(Some("https://192.168.1.5:8787"), host, none));
        assert!(!origin_allowed(Some("http://evil.example"), host, none));
        assert!(!origin_allowed(Some("http://192.168.1.5:9999"), host, none));
        assert!(!origin_allowed(Some("null"), host, none));
        assert!(!origin_allowed(Some("http://192.168.1.5:8787"), None, none));
        let listed = ["https://meet.example.org/".to_string()];
        assert!(origin_allowed(
            Some("https://meet.example.org"),
            host,
            &listed
        ));
        assert!(!origin_allowed(
            Some("http://meet.example.org"),
            host,
            &listed
        ));
        assert!(origin_allowed(
            Some("http://anything"),
            host,
            &["*".to_string()]
        ));
    }
}
