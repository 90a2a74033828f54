//! `confab serve`: rooms, presence, relay and ringing calls over WebSocket (axum).
//!
//! One task per connection reads frames, enforces size and rate limits and hands
//! parsed messages to the [`Hub`]. The hub's state sits behind one short-held
//! mutex and never awaits: it only pushes pre-serialised frames into each
//! client's bounded outbound queue, so one slow client can't stall a room.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc, watch};

use super::ice::IceConfig;
use super::protocol::{
    CallEndReason, ClientMessage, ErrorCode, LeaveReason, MediaState, Member, PROTOCOL_VERSION,
    ProtocolViolation, RoomInfo, ServerMessage, Welcome, validate_name, validate_room,
};
use super::tls::{self, TlsConfig, TlsListener};

/// Prefix of the private rooms created for accepted calls; clients can't create them.
pub const PRIVATE_ROOM_PREFIX: &str = "call:";
/// Frames above this are refused by the WebSocket layer itself (connection closed, 1009).
const HARD_FRAME_LIMIT: usize = 1 << 20;
const OUTBOUND_QUEUE: usize = 512;
const MAX_CAPACITY: usize = 1000;

/// WebSocket close codes the server uses.
pub mod close_code {
    /// Rate limit exceeded for too long (flood).
    pub const POLICY: u16 = 1008;
    /// Server full, or this client fell too far behind reading.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// No frame (not even a pong) within the heartbeat timeout.
    pub const GOING_AWAY: u16 = 1001;
}

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
}

/// A running server; dropping it does not stop it, [`Server::shutdown`] does.
pub struct Server {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    hub: Arc<Hub>,
    stop: Option<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

impl Server {
    /// Binds and starts serving in the background.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Self::start_with(config, Router::new()).await
    }

    /// Like [`Server::start`], merging extra routes (e.g. the web client).
    pub async fn start_with(config: ServerConfig, extra: Router) -> Result<Server, ServerError> {
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
        let listener = bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let secure = match tls {
            Some((listen, acceptor)) => Some(TlsListener::new(bind(listen).await?, acceptor)?),
            None => None,
        };
        let tls_addr = secure.as_ref().map(|l| l.addr());
        let hub = Hub::new(config);
        let app = router(hub.clone()).merge(extra);
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let plain = axum::serve(listener, app.clone()).with_graceful_shutdown(until_stopped());
        let task = match secure {
            None => tokio::spawn(plain.into_future()),
            Some(l) => {
                let secure = axum::serve(l, app).with_graceful_shutdown(until_stopped());
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
            hub,
            stop: Some(stop),
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
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

/// The signaling routes: `/ws`, `/healthz`, `/metrics`, and the web client at `/`.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .with_state(hub)
        .merge(super::web::router())
}

async fn ws_handler(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    // Small buffers: tungstenite's 128 KiB defaults cost over a gigabyte at 10k clients.
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| connection(hub, socket))
}

async fn metrics_handler(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        hub.metrics_snapshot().prometheus(),
    )
}

enum Outbound {
    Text(Utf8Bytes),
    Ping,
    Close(u16, &'static str),
}

struct ClientEntry {
    name: String,
    room: Option<String>,
    state: MediaState,
    call: Option<String>,
    tx: mpsc::Sender<Outbound>,
    kick: Arc<Notify>,
}

struct Room {
    members: Vec<String>,
    password: Option<String>,
    capacity: Option<usize>,
    /// For a private call room: the only two ids that may join; empty once the call ended.
    private: Option<Vec<String>>,
}

#[derive(PartialEq)]
enum CallPhase {
    Ringing,
    Accepted,
}

struct Call {
    caller: String,
    callee: String,
    phase: CallPhase,
}

#[derive(Default)]
struct HubState {
    clients: HashMap<String, ClientEntry>,
    rooms: HashMap<String, Room>,
    calls: HashMap<String, Call>,
}

#[derive(Default)]
struct Metrics {
    connections_total: AtomicU64,
    messages_received: AtomicU64,
    messages_relayed: AtomicU64,
    errors: Mutex<HashMap<ErrorCode, u64>>,
}

/// Counters exported at `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub connections: usize,
    pub connections_total: u64,
    pub rooms: usize,
    pub calls: usize,
    pub messages_received: u64,
    pub messages_relayed: u64,
    pub errors: Vec<(ErrorCode, u64)>,
}

impl MetricsSnapshot {
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "confab_connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections.to_string(),
        );
        metric(
            "confab_connections_total",
            "counter",
            "WebSocket connections accepted.",
            self.connections_total.to_string(),
        );
        metric(
            "confab_rooms",
            "gauge",
            "Rooms with at least one member.",
            self.rooms.to_string(),
        );
        metric(
            "confab_calls",
            "gauge",
            "Ringing or accepted calls.",
            self.calls.to_string(),
        );
        metric(
            "confab_messages_received_total",
            "counter",
            "Client messages received.",
            self.messages_received.to_string(),
        );
        metric(
            "confab_messages_relayed_total",
            "counter",
            "Relay payloads delivered.",
            self.messages_relayed.to_string(),
        );
        let _ = writeln!(
            s,
            "# HELP confab_errors_total Errors sent to clients, by code.\n# TYPE confab_errors_total counter"
        );
        for code in ErrorCode::ALL {
            let n = self
                .errors
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(s, "confab_errors_total{{code=\"{code}\"}} {n}");
        }
        s
    }
}

/// Shared server state: who is connected, rooms, calls.
pub struct Hub {
    config: ServerConfig,
    state: Mutex<HubState>,
    metrics: Metrics,
}

impl Hub {
    pub fn new(config: ServerConfig) -> Arc<Hub> {
        Arc::new(Hub {
            config,
            state: Mutex::new(HubState::default()),
            metrics: Metrics::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // A panic while holding the lock is a bug, but the state is still consistent
        // enough to keep serving everyone else.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let st = self.lock();
        let mut errors: Vec<_> = self
            .metrics
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        errors.sort_by_key(|(c, _)| c.as_str());
        MetricsSnapshot {
            connections: st.clients.len(),
            connections_total: self.metrics.connections_total.load(Ordering::Relaxed),
            rooms: st.rooms.len(),
            calls: st.calls.len(),
            messages_received: self.metrics.messages_received.load(Ordering::Relaxed),
            messages_relayed: self.metrics.messages_relayed.load(Ordering::Relaxed),
            errors,
        }
    }

    fn count_error(&self, code: ErrorCode) {
        *self
            .metrics
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    fn kick_all(&self) {
        for c in self.lock().clients.values() {
            c.kick.notify_one();
        }
    }

    fn register(&self, tx: mpsc::Sender<Outbound>, kick: Arc<Notify>) -> Option<String> {
        let mut st = self.lock();
        if st.clients.len() >= self.config.max_clients {
            return None;
        }
        let id = loop {
            let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            if !st.clients.contains_key(&id) {
                break id;
            }
        };
        st.clients.insert(
            id.clone(),
            ClientEntry {
                name: String::new(),
                room: None,
                state: MediaState::default(),
                call: None,
                tx,
                kick,
            },
        );
        self.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    fn send_to(&self, st: &HubState, id: &str, frame: &Utf8Bytes) {
        if let Some(c) = st.clients.get(id) {
            push(c, Outbound::Text(frame.clone()));
        }
    }

    fn reply(&self, st: &HubState, id: &str, msg: &ServerMessage) {
        self.send_to(st, id, &Utf8Bytes::from(msg.to_json()));
    }

    fn broadcast(&self, st: &HubState, room: &str, except: &str, msg: &ServerMessage) {
        let Some(r) = st.rooms.get(room) else { return };
        let frame = Utf8Bytes::from(msg.to_json());
        for m in r.members.iter().filter(|m| *m != except) {
            self.send_to(st, m, &frame);
        }
    }

    /// Sends an error to one client and counts it.
    fn refuse(&self, id: &str, v: ProtocolViolation) {
        self.count_error(v.code);
        let st = self.lock();
        self.reply(&st, id, &v.into_message());
    }

    fn handle(self: &Arc<Self>, id: &str, msg: ClientMessage) {
        self.metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        let request = msg.type_name();
        if let Err(mut v) = self.dispatch(id, msg) {
            v.request.get_or_insert_with(|| request.to_string());
            self.refuse(id, v);
        }
    }

    fn dispatch(self: &Arc<Self>, id: &str, msg: ClientMessage) -> Result<(), ProtocolViolation> {
        match msg {
            ClientMessage::Join {
                room,
                name,
                password,
                capacity,
                state,
            } => self.join(
                id,
                &room,
                &name,
                password,
                capacity,
                state.unwrap_or_default(),
            ),
            ClientMessage::Leave => {
                let mut st = self.lock();
                let room = st.clients.get(id).and_then(|c| c.room.clone());
                let Some(room) = room else {
                    return Err(not_joined());
                };
                self.leave_room(&mut st, id, LeaveReason::Left);
                self.reply(&st, id, &ServerMessage::Left { room });
                Ok(())
            }
            ClientMessage::Relay { to, payload } => self.relay(id, &to, &payload.to_string()),
            ClientMessage::MediaState { state } => {
                let mut st = self.lock();
                let entry = st.clients.get_mut(id).ok_or_else(not_joined)?;
                let room = entry.room.clone().ok_or_else(not_joined)?;
                entry.state = state;
                let msg = ServerMessage::MediaState {
                    id: id.to_string(),
                    state,
                };
                self.broadcast(&st, &room, id, &msg);
                Ok(())
            }
            ClientMessage::CallInvite { to, metadata } => self.call_invite(id, &to, metadata),
            ClientMessage::CallAccept { call_id } => self.call_accept(id, &call_id),
            ClientMessage::CallDecline { call_id, reason } => {
                if let Some(r) = &reason
                    && r.chars().count() > super::protocol::MAX_REASON_CHARS
                {
                    return Err(ProtocolViolation::new(
                        ErrorCode::BadMessage,
                        "reason is too long",
                    ));
                }
                self.call_end_by(id, &call_id, EndRequest::Decline(reason))
            }
            ClientMessage::CallCancel { call_id } => {
                self.call_end_by(id, &call_id, EndRequest::Cancel)
            }
            ClientMessage::CallHangup { call_id } => {
                self.call_end_by(id, &call_id, EndRequest::Hangup)
            }
            ClientMessage::ListRooms => {
                let st = self.lock();
                let mut rooms: Vec<RoomInfo> = st
                    .rooms
                    .iter()
                    .filter(|(_, r)| r.private.is_none())
                    .map(|(name, r)| RoomInfo {
                        name: name.clone(),
                        members: r.members.len(),
                        capacity: r.capacity,
                        locked: r.password.is_some(),
                    })
                    .collect();
                rooms.sort_by(|a, b| a.name.cmp(&b.name));
                self.reply(&st, id, &ServerMessage::Rooms { rooms });
                Ok(())
            }
            ClientMessage::Ping { nonce } => {
                let st = self.lock();
                self.reply(&st, id, &ServerMessage::Pong { nonce });
                Ok(())
            }
        }
    }

    fn join(
        &self,
        id: &str,
        room: &str,
        name: &str,
        password: Option<String>,
        capacity: Option<usize>,
        state: MediaState,
    ) -> Result<(), ProtocolViolation> {
        let name = validate_name(name)?;
        let room = validate_room(room)?;
        if let Some(c) = capacity
            && !(2..=MAX_CAPACITY).contains(&c)
        {
            return Err(ProtocolViolation::new(
                ErrorCode::InvalidCapacity,
                format!("capacity must be between 2 and {MAX_CAPACITY}"),
            ));
        }
        let mut st = self.lock();
        let st = &mut *st;
        let entry = st.clients.get(id).ok_or_else(not_joined)?;
        if let Some(current) = &entry.room {
            return Err(ProtocolViolation::new(
                ErrorCode::AlreadyJoined,
                format!("already in room {current:?}; leave first"),
            ));
        }
        match st.rooms.get(&room) {
            Some(r) => {
                if let Some(allowed) = &r.private {
                    if !allowed.iter().any(|a| a == id) {
                        return Err(private_room());
                    }
                } else if r.password.is_some() && r.password != password {
                    return Err(ProtocolViolation::new(
                        ErrorCode::WrongPassword,
                        "wrong or missing password for this room",
                    ));
                }
                if r.capacity.is_some_and(|c| r.members.len() >= c) {
                    return Err(ProtocolViolation::new(
                        ErrorCode::RoomFull,
                        "the room is full",
                    ));
                }
            }
            None => {
                if room.starts_with(PRIVATE_ROOM_PREFIX) {
                    return Err(private_room());
                }
                if st.rooms.len() >= self.config.max_rooms {
                    return Err(ProtocolViolation::new(
                        ErrorCode::TooManyRooms,
                        "the server has no room for another room",
                    ));
                }
                st.rooms.insert(
                    room.clone(),
                    Room {
                        members: Vec::new(),
                        password: password.filter(|p| !p.is_empty()),
                        capacity,
                        private: None,
                    },
                );
            }
        }
        let r = st
            .rooms
            .get_mut(&room)
            .expect("room exists or was just created");
        let members: Vec<Member> = r
            .members
            .iter()
            .filter_map(|m| {
                st.clients.get(m).map(|c| Member {
                    id: m.clone(),
                    name: c.name.clone(),
                    state: c.state,
                })
            })
            .collect();
        r.members.push(id.to_string());
        let entry = st.clients.get_mut(id).expect("checked above");
        entry.room = Some(room.clone());
        entry.name = name.clone();
        entry.state = state;
        let welcome = ServerMessage::Welcome(Welcome {
            protocol: PROTOCOL_VERSION,
            id: id.to_string(),
            room: room.clone(),
            members,
            ice_servers: self.config.ice.servers_for(id),
            heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
        });
        self.reply(st, id, &welcome);
        let joined = ServerMessage::PeerJoined {
            member: Member {
                id: id.to_string(),
                name,
                state,
            },
        };
        self.broadcast(st, &room, id, &joined);
        Ok(())
    }

    /// Removes `id` from its room (if any), telling the others why.
    fn leave_room(&self, st: &mut HubState, id: &str, reason: LeaveReason) {
        let Some(room) = st.clients.get_mut(id).and_then(|c| c.room.take()) else {
            return;
        };
        let mut now_empty = false;
        let mut was_private = false;
        if let Some(r) = st.rooms.get_mut(&room) {
            r.members.retain(|m| m != id);
            now_empty = r.members.is_empty();
            was_private = r.private.is_some();
        }
        self.broadcast(
            st,
            &room,
            id,
            &ServerMessage::PeerLeft {
                id: id.to_string(),
                reason,
            },
        );
        if now_empty {
            st.rooms.remove(&room);
        }
        // A ringing call belongs to the room it was placed in.
        if let Some(call_id) = st.clients.get(id).and_then(|c| c.call.clone()) {
            let ringing = st
                .calls
                .get(&call_id)
                .is_some_and(|c| c.phase == CallPhase::Ringing);
            let in_this_call_room = was_private && room == private_room_name(&call_id);
            if ringing {
                self.end_call(
                    st,
                    &call_id,
                    CallEndReason::Cancelled,
                    Some("left the room".into()),
                );
            } else if in_this_call_room {
                self.end_call(
                    st,
                    &call_id,
                    CallEndReason::Hangup,
                    Some("left the call".into()),
                );
            }
        }
    }

    /// Relays a payload given as JSON text. The frame is assembled around the
    /// client's bytes: relay is the hot path, and re-serialising it would cost more
    /// than everything else the server does per message.
    fn relay(&self, id: &str, to: &str, payload: &str) -> Result<(), ProtocolViolation> {
        let st = self.lock();
        let room = st
            .clients
            .get(id)
            .and_then(|c| c.room.as_ref())
            .ok_or_else(not_joined)?;
        let target = self.target(&st, id, to, room)?;
        // Member ids are hex, so `from` needs no escaping.
        let frame = format!(r#"{{"type":"relay","from":"{id}","payload":{payload}}}"#);
        push(target, Outbound::Text(Utf8Bytes::from(frame)));
        self.metrics
            .messages_relayed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Resolves a member id that must be in `room` and is not the sender.
    fn target<'a>(
        &self,
        st: &'a HubState,
        from: &str,
        to: &str,
        room: &str,
    ) -> Result<&'a ClientEntry, ProtocolViolation> {
        if to == from {
            return Err(ProtocolViolation::new(
                ErrorCode::SelfTarget,
                "cannot address yourself",
            ));
        }
        let target = st.clients.get(to).ok_or_else(|| {
            ProtocolViolation::new(ErrorCode::UnknownPeer, format!("no member with id {to:?}"))
        })?;
        if target.room.as_deref() != Some(room) {
            return Err(ProtocolViolation::new(
                ErrorCode::PeerNotInRoom,
                format!("{to:?} is not in your room"),
            ));
        }
        Ok(target)
    }

    fn call_invite(
        self: &Arc<Self>,
        id: &str,
        to: &str,
        metadata: String,
    ) -> Result<(), ProtocolViolation> {
        if metadata.len() > super::protocol::MAX_METADATA_BYTES {
            return Err(ProtocolViolation::new(
                ErrorCode::InvalidMetadata,
                format!(
                    "metadata is longer than {} bytes",
                    super::protocol::MAX_METADATA_BYTES
                ),
            ));
        }
        let mut st = self.lock();
        let caller = st.clients.get(id).ok_or_else(not_joined)?;
        let room = caller.room.clone().ok_or_else(not_joined)?;
        let from_name = caller.name.clone();
        if caller.call.is_some() {
            return Err(ProtocolViolation::new(
                ErrorCode::Busy,
                "you are already in a call",
            ));
        }
        let callee = self.target(&st, id, to, &room)?;
        if callee.call.is_some() {
            return Err(ProtocolViolation::new(
                ErrorCode::Busy,
                format!("{to:?} is in another call"),
            ));
        }
        let call_id = format!("{:016x}", rand::random::<u64>());
        st.calls.insert(
            call_id.clone(),
            Call {
                caller: id.to_string(),
                callee: to.to_string(),
                phase: CallPhase::Ringing,
            },
        );
        for party in [id, to] {
            if let Some(c) = st.clients.get_mut(party) {
                c.call = Some(call_id.clone());
            }
        }
        self.reply(
            &st,
            id,
            &ServerMessage::CallRinging {
                call_id: call_id.clone(),
                to: to.to_string(),
            },
        );
        self.reply(
            &st,
            to,
            &ServerMessage::CallIncoming {
                call_id: call_id.clone(),
                from: id.to_string(),
                from_name,
                metadata,
            },
        );
        let hub = Arc::downgrade(self);
        let timeout = self.config.ring_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(hub) = hub.upgrade() {
                let mut st = hub.lock();
                if st
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.phase == CallPhase::Ringing)
                {
                    hub.end_call(&mut st, &call_id, CallEndReason::Timeout, None);
                }
            }
        });
        Ok(())
    }

    fn call_accept(&self, id: &str, call_id: &str) -> Result<(), ProtocolViolation> {
        let mut st = self.lock();
        let call = st
            .calls
            .get_mut(call_id)
            .ok_or_else(|| unknown_call(call_id))?;
        if call.callee != id {
            return Err(ProtocolViolation::new(
                ErrorCode::NotCallee,
                "only the callee can accept",
            ));
        }
        if call.phase != CallPhase::Ringing {
            return Err(unknown_call(call_id));
        }
        call.phase = CallPhase::Accepted;
        let caller = call.caller.clone();
        let room = private_room_name(call_id);
        st.rooms.insert(
            room.clone(),
            Room {
                members: Vec::new(),
                password: None,
                capacity: Some(2),
                private: Some(vec![caller.clone(), id.to_string()]),
            },
        );
        for (party, peer) in [(&caller, id), (&id.to_string(), caller.as_str())] {
            let msg = ServerMessage::CallAccepted {
                call_id: call_id.to_string(),
                room: room.clone(),
                peer: peer.to_string(),
            };
            self.reply(&st, party, &msg);
        }
        Ok(())
    }

    fn call_end_by(
        &self,
        id: &str,
        call_id: &str,
        req: EndRequest,
    ) -> Result<(), ProtocolViolation> {
        let mut st = self.lock();
        let call = st.calls.get(call_id).ok_or_else(|| unknown_call(call_id))?;
        let is_caller = call.caller == id;
        if !is_caller && call.callee != id {
            return Err(unknown_call(call_id));
        }
        let ringing = call.phase == CallPhase::Ringing;
        let (reason, detail) = match req {
            EndRequest::Decline(_) if is_caller => {
                return Err(ProtocolViolation::new(
                    ErrorCode::NotCallee,
                    "only the callee can decline; the caller cancels",
                ));
            }
            EndRequest::Cancel if !is_caller => {
                return Err(ProtocolViolation::new(
                    ErrorCode::NotCaller,
                    "only the caller can cancel; the callee declines",
                ));
            }
            EndRequest::Decline(_) | EndRequest::Cancel if !ringing => {
                return Err(ProtocolViolation::new(
                    ErrorCode::UnknownCall,
                    "the call was already answered; hang up instead",
                ));
            }
            EndRequest::Decline(reason) => (CallEndReason::Declined, reason),
            EndRequest::Cancel => (CallEndReason::Cancelled, None),
            EndRequest::Hangup if ringing && is_caller => (CallEndReason::Cancelled, None),
            EndRequest::Hangup if ringing => (CallEndReason::Declined, None),
            EndRequest::Hangup => (CallEndReason::Hangup, None),
        };
        self.end_call(&mut st, call_id, reason, detail);
        Ok(())
    }

    /// Ends a call, tells both parties, and closes its private room to newcomers.
    fn end_call(
        &self,
        st: &mut HubState,
        call_id: &str,
        reason: CallEndReason,
        detail: Option<String>,
    ) {
        let Some(call) = st.calls.remove(call_id) else {
            return;
        };
        let msg = ServerMessage::CallEnded {
            call_id: call_id.to_string(),
            reason,
            detail,
        };
        for party in [&call.caller, &call.callee] {
            if let Some(c) = st.clients.get_mut(party.as_str())
                && c.call.as_deref() == Some(call_id)
            {
                c.call = None;
            }
            self.reply(st, party, &msg);
        }
        let room_name = private_room_name(call_id);
        if let Some(room) = st.rooms.get_mut(&room_name) {
            room.private = Some(Vec::new());
            // Nobody made it in (or everyone left): the room goes with the call.
            if room.members.is_empty() {
                st.rooms.remove(&room_name);
            }
        }
    }

    fn disconnect(&self, id: &str, reason: LeaveReason) {
        let mut st = self.lock();
        // End the call first so the other party hears "disconnected", not "cancelled".
        if let Some(call_id) = st.clients.get(id).and_then(|c| c.call.clone()) {
            self.end_call(&mut st, &call_id, CallEndReason::Disconnected, None);
        }
        self.leave_room(&mut st, id, reason);
        st.clients.remove(id);
    }
}

enum EndRequest {
    Decline(Option<String>),
    Cancel,
    Hangup,
}

fn private_room_name(call_id: &str) -> String {
    format!("{PRIVATE_ROOM_PREFIX}{call_id}")
}

fn not_joined() -> ProtocolViolation {
    ProtocolViolation::new(ErrorCode::NotJoined, "join a room first")
}

fn private_room() -> ProtocolViolation {
    ProtocolViolation::new(
        ErrorCode::PrivateRoom,
        "this room belongs to a call between two other members",
    )
}

fn unknown_call(call_id: &str) -> ProtocolViolation {
    ProtocolViolation::new(ErrorCode::UnknownCall, format!("no such call {call_id:?}"))
}

/// Queues a frame for one client; a client whose queue is full is disconnected
/// rather than buffered without bound.
fn push(c: &ClientEntry, out: Outbound) {
    if c.tx.try_send(out).is_err() {
        c.kick.notify_one();
    }
}

/// A well-formed relay, parsed without building a tree of its payload.
/// Anything else (including a malformed relay) takes the general path, which
/// also produces the precise error.
#[derive(serde::Deserialize)]
struct FastRelay<'a> {
    #[serde(rename = "type")]
    kind: std::borrow::Cow<'a, str>,
    to: String,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

impl<'a> FastRelay<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str::<FastRelay>(text)
            .ok()
            .filter(|r| r.kind == "relay")
    }
}

/// Token bucket for one connection.
struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimit {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn connection(hub: Arc<Hub>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let kick = Arc::new(Notify::new());
    let Some(id) = hub.register(tx.clone(), kick.clone()) else {
        hub.count_error(ErrorCode::ServerFull);
        let msg =
            ProtocolViolation::new(ErrorCode::ServerFull, "the server is full").into_message();
        let _ = sink.send(Message::Text(msg.to_json().into())).await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close_code::TRY_AGAIN_LATER,
                reason: "server full".into(),
            })))
            .await;
        return;
    };
    tracing::debug!(%id, "connected");

    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(32);
        // Everything already queued goes out with one flush (one syscall, not one per frame).
        while rx.recv_many(&mut batch, 32).await > 0 {
            for out in batch.drain(..) {
                let res = match out {
                    Outbound::Text(t) => sink.feed(Message::Text(t)).await,
                    Outbound::Ping => sink.feed(Message::Ping(Default::default())).await,
                    Outbound::Close(code, reason) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                };
                if res.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let cfg = &hub.config;
    let mut limit = RateLimit::new(cfg.rate_per_sec, cfg.rate_burst);
    let mut flood = 0u32;
    let mut last_seen = Instant::now();
    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break LeaveReason::Disconnected };
                last_seen = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        hub.refuse(&id, ProtocolViolation::new(
                            ErrorCode::BinaryUnsupported,
                            "binary frames are not part of the protocol; send JSON text",
                        ));
                        continue;
                    }
                    Message::Close(_) => break LeaveReason::Left,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if !limit.take() {
                    flood += 1;
                    if flood > cfg.flood_close_after {
                        let _ = tx.try_send(Outbound::Close(close_code::POLICY, "rate limit exceeded"));
                        break LeaveReason::Disconnected;
                    }
                    hub.refuse(&id, ProtocolViolation::new(
                        ErrorCode::RateLimited,
                        format!("more than {} messages per second; message dropped", cfg.rate_per_sec),
                    ));
                    continue;
                }
                flood = 0;
                if text.len() > cfg.max_message_bytes {
                    hub.refuse(&id, ProtocolViolation::new(
                        ErrorCode::TooLarge,
                        format!("message of {} bytes exceeds {} bytes", text.len(), cfg.max_message_bytes),
                    ));
                    continue;
                }
                if let Some(relay) = FastRelay::parse(text.as_str()) {
                    hub.metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                    if let Err(mut v) = hub.relay(&id, &relay.to, relay.payload.get()) {
                        v.request = Some("relay".into());
                        hub.refuse(&id, v);
                    }
                    continue;
                }
                match ClientMessage::parse(text.as_str()) {
                    Ok(msg) => hub.handle(&id, msg),
                    Err(v) => hub.refuse(&id, v),
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > cfg.heartbeat_timeout {
                    let _ = tx.try_send(Outbound::Close(close_code::GOING_AWAY, "heartbeat timeout"));
                    break LeaveReason::TimedOut;
                }
                if tx.try_send(Outbound::Ping).is_err() {
                    break LeaveReason::Disconnected;
                }
            }
            _ = kick.notified() => {
                let _ = tx.try_send(Outbound::Close(close_code::TRY_AGAIN_LATER, "disconnected by server"));
                break LeaveReason::Disconnected;
            }
        }
    };
    tracing::debug!(%id, ?reason, "connection ended");
    hub.disconnect(&id, reason);
    drop(tx);
    // Finish the closing handshake: read until the client's close frame so that
    // unread bytes don't turn our close into a TCP reset that eats the close frame.
    // A dead peer must not hold the task, hence the bound.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = writer.await;
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Random but plausible client messages: known types, fields drawn from a
    /// small pool of ids, rooms and call ids so that they often hit real state.
    fn random_message(rng: &mut impl Rng, ids: &[String], calls: &[String]) -> String {
        let pick = |rng: &mut dyn rand::RngCore, pool: &[String]| -> String {
            if pool.is_empty() || rng.random_ratio(1, 5) {
                format!("{:x}", rng.random::<u16>())
            } else {
                pool[rng.random_range(0..pool.len())].clone()
            }
        };
        let room = ["a", "b", "call:x", "", " "][rng.random_range(0..5)];
        let msg = match rng.random_range(0..12) {
            0 => {
                serde_json::json!({"type":"join","room":room,"name":"n","capacity":rng.random_range(0..5)})
            }
            1 => serde_json::json!({"type":"leave"}),
            2 => serde_json::json!({"type":"relay","to":pick(rng, ids),"payload":{"x":1}}),
            3 => {
                serde_json::json!({"type":"media_state","state":{"audio_muted":rng.random::<bool>()}})
            }
            4 => serde_json::json!({"type":"call_invite","to":pick(rng, ids),"metadata":"m"}),
            5 => serde_json::json!({"type":"call_accept","call_id":pick(rng, calls)}),
            6 => serde_json::json!({"type":"call_decline","call_id":pick(rng, calls),"reason":"r"}),
            7 => serde_json::json!({"type":"call_cancel","call_id":pick(rng, calls)}),
            8 => serde_json::json!({"type":"call_hangup","call_id":pick(rng, calls)}),
            9 => serde_json::json!({"type":"list_rooms"}),
            10 => serde_json::json!({"type":"ping","nonce":rng.random::<u32>()}),
            _ => serde_json::json!({"type":"join","room":room,"name":"n","password":"p"}),
        };
        let mut text = msg.to_string();
        // Sometimes corrupt a byte: the parser must refuse, never panic.
        if rng.random_ratio(1, 10) && !text.is_empty() {
            let i = rng.random_range(0..text.len());
            if text.is_char_boundary(i) && text.is_char_boundary(i + 1) {
                text.replace_range(i..i + 1, "\u{1}");
            }
        }
        text
    }

    #[tokio::test]
    async fn random_traffic_never_panics_and_never_relays_across_rooms() {
        let hub = Hub::new(ServerConfig {
            ring_timeout: Duration::from_millis(50),
            ..ServerConfig::default()
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut clients = Vec::new();
        for _ in 0..12 {
            let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
            let id = hub.register(tx, Arc::new(Notify::new())).unwrap();
            clients.push((id, rx));
        }
        let ids: Vec<String> = clients.iter().map(|(id, _)| id.clone()).collect();
        let mut calls: Vec<String> = Vec::new();
        for step in 0..20_000 {
            let who = rng.random_range(0..clients.len());
            let text = random_message(&mut rng, &ids, &calls);
            let id = clients[who].0.clone();
            if let Some(relay) = FastRelay::parse(&text) {
                let _ = hub.relay(&id, &relay.to, relay.payload.get());
            } else if let Ok(msg) = ClientMessage::parse(&text) {
                hub.handle(&id, msg);
            }
            // Drain every queue, checking that relays only come from roommates.
            for (me, rx) in clients.iter_mut() {
                while let Ok(out) = rx.try_recv() {
                    let Outbound::Text(t) = out else { continue };
                    let Ok(msg) = serde_json::from_str::<ServerMessage>(t.as_str()) else {
                        panic!("server sent invalid JSON: {t}");
                    };
                    match msg {
                        ServerMessage::Relay { from, .. } => {
                            let st = hub.lock();
                            let mine = st.clients.get(me.as_str()).and_then(|c| c.room.clone());
                            let theirs = st.clients.get(&from).and_then(|c| c.room.clone());
                            assert_eq!(mine, theirs, "relay crossed rooms at step {step}");
                        }
                        ServerMessage::CallRinging { call_id, .. } => calls.push(call_id),
                        _ => {}
                    }
                }
            }
            if step % 5000 == 4999 {
                // Some leave for good mid-way; the rest must carry on.
                let (gone, _) = clients.remove(0);
                hub.disconnect(&gone, LeaveReason::Disconnected);
            }
        }
        let st = hub.lock();
        for (name, room) in &st.rooms {
            assert!(!room.members.is_empty(), "empty room {name} left behind");
            for m in &room.members {
                assert_eq!(
                    st.clients.get(m).and_then(|c| c.room.as_deref()),
                    Some(name.as_str())
                );
            }
        }
    }
}
