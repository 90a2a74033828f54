//! Signaling client: one background task owns the WebSocket; the application
//! holds a cheap [`SignalingClient`] handle and reads [`ClientEvent`]s.
//!
//! When the link drops after a join, the task reconnects with exponential
//! backoff and resumes the same member with the welcome's token (messages sent
//! meanwhile go out then); if the server no longer keeps it, it joins the same room
//! with the same name and password as a new member. Either way it reports
//! [`ClientEvent::Reconnected`] with the new welcome (`resumed` tells which).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{
    ClientMessage, ErrorCode, MediaState, ProtocolViolation, RoomInfo, ServerMessage, Welcome,
};

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the server refused: {0}")]
    Refused(ProtocolViolation),
    #[error("not connected to the signaling server")]
    NotConnected,
    #[error("the signaling client was closed")]
    Closed,
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
}

/// Where the server's echo peer waits for a test call: join `room` with `password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCallRoom {
    pub room: String,
    pub password: String,
}

/// What to join; kept by the client so a reconnect can join again.
#[derive(Debug, Clone, Default)]
pub struct JoinParams {
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    pub capacity: Option<usize>,
    pub state: MediaState,
    /// Ask for an SFU room, if this join creates it.
    pub sfu: bool,
    /// Create a broadcast room, if this join creates it.
    pub broadcast: bool,
    pub role: Option<crate::signaling::protocol::Role>,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub reconnect: bool,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long to wait for an answer (welcome, room list).
    pub request_timeout: Duration,
    /// Extra certificates (PEM) to trust for `wss://` besides the public roots: a private
    /// CA or a self-signed server. Defaults to `$CONFAB_CA_FILE`.
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            reconnect: true,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ca_file: std::env::var_os("CONFAB_CA_FILE").map(PathBuf::from),
        }
    }
}

/// Everything the application hears from the client task.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A server message that was not the answer to a pending request.
    Message(ServerMessage),
    /// The link dropped; the next attempt comes after `retry_in` (None: giving up).
    Disconnected {
        reason: String,
        retry_in: Option<Duration>,
    },
    /// A join succeeded (also answered to `join`). Marks the point in the event
    /// stream where the new room begins: earlier room events belong to the old one.
    Joined(Welcome),
    /// Back on line and rejoined; everyone in `welcome.members` is (re)discovered.
    Reconnected(Welcome),
    /// Back on line, but the room would not take us again.
    RejoinFailed(ProtocolViolation),
    /// The client task ended (after `close`, or when reconnecting is off).
    Closed,
}

enum Command {
    Send(ClientMessage),
    Join(JoinParams, oneshot::Sender<Result<Welcome, SignalingError>>),
    Leave(oneshot::Sender<Result<(), SignalingError>>),
    ListRooms(oneshot::Sender<Result<Vec<RoomInfo>, SignalingError>>),
    TestCall(oneshot::Sender<Result<TestCallRoom, SignalingError>>),
    /// Check that the link still carries anything (see [`SignalingClient::probe`]).
    Probe,
    Close,
}

/// How long a probed link has to show life before it counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Handle to the client task. Clone it freely.
#[derive(Clone)]
pub struct SignalingClient {
    cmd: mpsc::UnboundedSender<Command>,
    timeout: Duration,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl SignalingClient {
    /// Connects (the first attempt must succeed) and starts the client task.
    pub async fn connect(
        url: &str,
        options: ClientOptions,
    ) -> Result<(SignalingClient, mpsc::UnboundedReceiver<ClientEvent>), SignalingError> {
        let ws = open(url, options.ca_file.as_deref()).await?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let timeout = options.request_timeout;
        let task = Task {
            url: url.to_string(),
            options,
            cmd: cmd_rx,
            events: ev_tx,
            joined: None,
            resume_token: None,
            offline: VecDeque::new(),
            pending_join: None,
            pending_leave: None,
            pending_rooms: VecDeque::new(),
            pending_test_call: None,
            heartbeat: Duration::from_secs(15),
        };
        tokio::spawn(task.run(ws));
        Ok((
            SignalingClient {
                cmd: cmd_tx,
                timeout,
            },
            ev_rx,
        ))
    }

    /// Joins a room and returns the welcome.
    pub async fn join(&self, params: JoinParams) -> Result<Welcome, SignalingError> {
        self.request(|tx| Command::Join(params, tx)).await
    }

    pub async fn leave(&self) -> Result<(), SignalingError> {
        self.request(Command::Leave).await
    }

    pub async fn list_rooms(&self) -> Result<Vec<RoomInfo>, SignalingError> {
        self.request(Command::ListRooms).await
    }

    /// Asks for a test call (the server must run echo peers) and returns where to join.
    pub async fn test_call(&self) -> Result<TestCallRoom, SignalingError> {
        self.request(Command::TestCall).await
    }

    /// Sends without waiting; errors come back as `ClientEvent::Message(Error)`.
    pub fn send(&self, msg: ClientMessage) -> Result<(), SignalingError> {
        self.cmd
            .send(Command::Send(msg))
            .map_err(|_| SignalingError::Closed)
    }

    pub fn relay(&self, to: &str, payload: serde_json::Value) -> Result<(), SignalingError> {
        self.send(ClientMessage::Relay {
            to: to.to_string(),
            payload,
        })
    }

    pub fn set_media_state(&self, state: MediaState) -> Result<(), SignalingError> {
        self.send(ClientMessage::MediaState { state })
    }

    pub fn close(&self) {
        let _ = self.cmd.send(Command::Close);
    }

    /// The link may be dead without knowing it (this host's address changed, say: TCP
    /// finds out only after its retransmissions time out, or the server's heartbeat in
    /// 15 s): ping the server, and reconnect (resuming) unless something comes back
    /// within 1.5 s.
    pub fn probe(&self) {
        let _ = self.cmd.send(Command::Probe);
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, SignalingError>>) -> Command,
    ) -> Result<T, SignalingError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .map_err(|_| SignalingError::Closed)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SignalingError::Closed),
            Err(_) => Err(SignalingError::Timeout(self.timeout)),
        }
    }
}

async fn open(url: &str, ca_file: Option<&Path>) -> Result<Ws, SignalingError> {
    let failed = |reason: String| SignalingError::Connect {
        url: url.to_string(),
        reason,
    };
    let connector = if url.starts_with("wss://") {
        Some(Connector::Rustls(
            super::tls::client_config(ca_file).map_err(failed)?,
        ))
    } else {
        None
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(ws)
}

struct Task {
    url: String,
    options: ClientOptions,
    cmd: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// Set once a join succeeded; a reconnect joins with it again.
    joined: Option<JoinParams>,
    /// From the last welcome: takes our member back after a lost connection.
    resume_token: Option<String>,
    /// What the application sent while the link was down, for a resumed member.
    offline: VecDeque<ClientMessage>,
    pending_join: Option<(JoinParams, oneshot::Sender<Result<Welcome, SignalingError>>)>,
    pending_leave: Option<oneshot::Sender<Result<(), SignalingError>>>,
    pending_rooms: VecDeque<oneshot::Sender<Result<Vec<RoomInfo>, SignalingError>>>,
    pending_test_call: Option<oneshot::Sender<Result<TestCallRoom, SignalingError>>>,
    heartbeat: Duration,
}

enum LinkEnd {
    Closed,
    Lost(String),
}

impl Task {
    async fn run(mut self, mut ws: Ws) {
        let mut backoff = self.options.backoff_min;
        loop {
            match self.serve(&mut ws).await {
                LinkEnd::Closed => break,
                LinkEnd::Lost(reason) => {
                    self.fail_pending();
                    if !(self.options.reconnect && self.joined.is_some()) {
                        let _ = self.events.send(ClientEvent::Disconnected {
                            reason,
                            retry_in: None,
                        });
                        break;
                    }
                    let mut reason = reason;
                    ws = loop {
                        let delay = jitter(backoff);
                        let _ = self.events.send(ClientEvent::Disconnected {
                            reason: reason.clone(),
                            retry_in: Some(delay),
                        });
                        if self.wait_or_close(delay).await {
                            let _ = self.events.send(ClientEvent::Closed);
                            return;
                        }
                        backoff = (backoff * 2).min(self.options.backoff_max);
                        match open(&self.url, self.options.ca_file.as_deref()).await {
                            Ok(ws) => break ws,
                            Err(e) => reason = e.to_string(),
                        }
                    };
                    match self.rejoin(&mut ws).await {
                        Ok(welcome) => {
                            backoff = self.options.backoff_min;
                            let _ = self.events.send(ClientEvent::Reconnected(welcome));
                        }
                        Err(SignalingError::Refused(v)) => {
                            self.joined = None;
                            let _ = self.events.send(ClientEvent::RejoinFailed(v));
                        }
                        Err(_) => continue,
                    }
                }
            }
        }
        let _ = ws.close(None).await;
        self.fail_pending();
        let _ = self.events.send(ClientEvent::Closed);
    }

    /// Sleeps `delay` while still answering commands; true if the app closed us.
    async fn wait_or_close(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                cmd = self.cmd.recv() => match cmd {
                    None | Some(Command::Close) => return true,
                    Some(Command::Join(_, tx)) => { let _ = tx.send(Err(SignalingError::NotConnected)); }
                    Some(Command::Leave(tx)) => {
                        // Leaving while offline: just don't rejoin.
                        self.joined = None;
                        let _ = tx.send(Ok(()));
                    }
                    Some(Command::ListRooms(tx)) => { let _ = tx.send(Err(SignalingError::NotConnected)); }
                    Some(Command::TestCall(tx)) => { let _ = tx.send(Err(SignalingError::NotConnected)); }
                    // Already reconnecting.
                    Some(Command::Probe) => {}
                    Some(Command::Send(m)) => {
                        // Bounded: what a resumed call needs is the last few signals.
                        if self.offline.len() == OFFLINE_QUEUE {
                            self.offline.pop_front();
                        }
                        self.offline.push_back(m);
                    }
                }
            }
        }
    }

    /// Back into the room after a lost connection: as the same member if the server still
    /// keeps it (`resume`), else by joining again (a new member id).
    async fn rejoin(&mut self, ws: &mut Ws) -> Result<Welcome, SignalingError> {
        let params = self.joined.clone().ok_or(SignalingError::NotConnected)?;
        if let Some(token) = self.resume_token.take() {
            match self
                .request_welcome(ws, &ClientMessage::Resume { token })
                .await
            {
                Ok(w) => {
                    for m in std::mem::take(&mut self.offline) {
                        send(ws, &m)
                            .await
                            .map_err(|_| SignalingError::NotConnected)?;
                    }
                    return Ok(self.welcomed(w));
                }
                Err(SignalingError::Refused(v)) => {
                    tracing::info!("could not resume ({v}); joining again");
                }
                Err(e) => return Err(e),
            }
        }
        // A new member: what was meant for the old one's peers is void.
        self.offline.clear();
        let w = self.request_welcome(ws, &join_message(&params)).await?;
        Ok(self.welcomed(w))
    }

    /// Keeps what a welcome says for later: the heartbeat and the resume token.
    fn welcomed(&mut self, w: Welcome) -> Welcome {
        self.heartbeat = Duration::from_millis(w.heartbeat_ms.max(100));
        self.resume_token = w.resume_token.clone();
        w
    }

    /// Sends `msg` and waits for the welcome (or the error) that answers it.
    async fn request_welcome(
        &mut self,
        ws: &mut Ws,
        msg: &ClientMessage,
    ) -> Result<Welcome, SignalingError> {
        send(ws, msg)
            .await
            .map_err(|_| SignalingError::NotConnected)?;
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| SignalingError::Timeout(self.options.request_timeout))?;
            let Some(Ok(Message::Text(text))) = frame else {
                if matches!(frame, Some(Ok(_))) {
                    continue;
                }
                return Err(SignalingError::NotConnected);
            };
            match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(ServerMessage::Welcome(w)) => return Ok(w),
                Ok(ServerMessage::Error { code, message, .. }) => {
                    return Err(SignalingError::Refused(ProtocolViolation::new(
                        code, message,
                    )));
                }
                _ => continue,
            }
        }
    }

    /// Runs one connected link until it ends.
    async fn serve(&mut self, ws: &mut Ws) -> LinkEnd {
        let mut last_seen = Instant::now();
        let mut probe: Option<Instant> = None;
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                cmd = self.cmd.recv() => {
                    let Some(cmd) = cmd else { return LinkEnd::Closed };
                    let msg = match cmd {
                        Command::Close => return LinkEnd::Closed,
                        Command::Probe => {
                            probe.get_or_insert(Instant::now() + PROBE_TIMEOUT);
                            // A dead link may not even take the ping.
                            let ping = ws.send(Message::Ping(Default::default()));
                            match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                                Ok(Ok(())) => continue,
                                Ok(Err(e)) => return LinkEnd::Lost(e.to_string()),
                                Err(_) => return LinkEnd::Lost("the server stopped answering".into()),
                            }
                        }
                        Command::Send(m) => m,
                        Command::Join(params, tx) => {
                            if self.pending_join.is_some() {
                                let _ = tx.send(Err(SignalingError::Refused(ProtocolViolation::new(
                                    ErrorCode::AlreadyJoined, "a join is already in progress"))));
                                continue;
                            }
                            let m = join_message(&params);
                            self.pending_join = Some((params, tx));
                            m
                        }
                        Command::Leave(tx) => {
                            self.pending_leave = Some(tx);
                            ClientMessage::Leave
                        }
                        Command::ListRooms(tx) => {
                            self.pending_rooms.push_back(tx);
                            ClientMessage::ListRooms { after: None }
                        }
                        Command::TestCall(tx) => {
                            // A newer request replaces one still unanswered.
                            self.pending_test_call = Some(tx);
                            ClientMessage::TestCall
                        }
                    };
                    if let Err(e) = send(ws, &msg).await {
                        return LinkEnd::Lost(e);
                    }
                }
                frame = ws.next() => {
                    last_seen = Instant::now();
                    probe = None;
                    match frame {
                        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                            Ok(msg) => self.route(msg),
                            Err(e) => tracing::warn!("unparseable server message: {e}"),
                        },
                        Some(Ok(Message::Close(frame))) => {
                            return LinkEnd::Lost(frame.map_or_else(
                                || "closed by server".to_string(),
                                |f| format!("closed by server: {} {}", u16::from(f.code), f.reason),
                            ));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return LinkEnd::Lost(e.to_string()),
                        None => return LinkEnd::Lost("connection closed".into()),
                    }
                }
                _ = check.tick() => {
                    if last_seen.elapsed() > self.heartbeat * 3 {
                        return LinkEnd::Lost("no heartbeat from the server".into());
                    }
                    if probe.is_some_and(|p| Instant::now() >= p) {
                        return LinkEnd::Lost("the server stopped answering".into());
                    }
                }
            }
        }
    }

    /// Answers pending requests; everything else goes to the application.
    fn route(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::Welcome(w) if self.pending_join.is_some() => {
                let (params, tx) = self.pending_join.take().expect("checked");
                let w = self.welcomed(w);
                self.joined = Some(params);
                let _ = self.events.send(ClientEvent::Joined(w.clone()));
                let _ = tx.send(Ok(w));
            }
            ServerMessage::Error {
                code,
                message,
                request,
            } if request.as_deref() == Some("join") && self.pending_join.is_some() => {
                let (_, tx) = self.pending_join.take().expect("checked");
                let _ = tx.send(Err(SignalingError::Refused(ProtocolViolation::new(
                    code, message,
                ))));
            }
            ServerMessage::Error {
                code,
                message,
                request,
            } if request.as_deref() == Some("leave") && self.pending_leave.is_some() => {
                let tx = self.pending_leave.take().expect("checked");
                let _ = tx.send(Err(SignalingError::Refused(ProtocolViolation::new(
                    code, message,
                ))));
            }
            ServerMessage::Left { .. } if self.pending_leave.is_some() => {
                self.joined = None;
                let _ = self.pending_leave.take().expect("checked").send(Ok(()));
            }
            ServerMessage::TestCall { room, password } if self.pending_test_call.is_some() => {
                let tx = self.pending_test_call.take().expect("checked");
                let _ = tx.send(Ok(TestCallRoom { room, password }));
            }
            ServerMessage::Error {
                code,
                message,
                request,
            } if request.as_deref() == Some("test_call") && self.pending_test_call.is_some() => {
                let tx = self.pending_test_call.take().expect("checked");
                let _ = tx.send(Err(SignalingError::Refused(ProtocolViolation::new(
                    code, message,
                ))));
            }
            ServerMessage::Rooms { rooms, .. } if !self.pending_rooms.is_empty() => {
                let tx = self.pending_rooms.pop_front().expect("checked");
                let _ = tx.send(Ok(rooms));
            }
            other => {
                let _ = self.events.send(ClientEvent::Message(other));
            }
        }
    }

    fn fail_pending(&mut self) {
        if let Some((_, tx)) = self.pending_join.take() {
            let _ = tx.send(Err(SignalingError::NotConnected));
        }
        if let Some(tx) = self.pending_leave.take() {
            let _ = tx.send(Err(SignalingError::NotConnected));
        }
        for tx in self.pending_rooms.drain(..) {
            let _ = tx.send(Err(SignalingError::NotConnected));
        }
        if let Some(tx) = self.pending_test_call.take() {
            let _ = tx.send(Err(SignalingError::NotConnected));
        }
    }
}

fn join_message(p: &JoinParams) -> ClientMessage {
    ClientMessage::Join {
        room: p.room.clone(),
        name: p.name.clone(),
        password: p.password.clone(),
        capacity: p.capacity,
        state: Some(p.state),
        sfu: p.sfu,
        broadcast: p.broadcast,
        role: p.role,
    }
}

async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<(), String> {
    let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| e.to_string())
}

/// Messages kept while the link is down.
const OFFLINE_QUEUE: usize = 256;

/// Spreads reconnects of many clients after a server restart (±20 %).
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + rand::random::<f64>() * 0.4)
}
