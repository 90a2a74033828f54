//! Test calls: `test_call` opens a private room with a key, and the server's echo peer
//! (a call engine, plugged in through [`EchoService`]: the server itself knows nothing
//! of media) joins it on a connection of its own and sends back what it receives.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::signaling::protocol::{ECHO_ROOM_PREFIX, ErrorCode, ProtocolViolation, ServerMessage};

/// What runs the echo peers: `confab::echo` (the call engine), or a test's stand-in.
pub trait EchoService: Send + Sync + 'static {
    /// Starts an echo peer for `job`; it must join `job.room` with `job.password`, leave
    /// when the room is left, and drop `job` when it is gone (that frees its place).
    fn start(&self, job: EchoJob);
}

/// How many echo peers may run at once, and what runs them.
#[derive(Clone)]
pub struct EchoConfig {
    pub service: Arc<dyn EchoService>,
    /// Each echo peer decodes and encodes a video stream: a core's share each.
    pub max_sessions: usize,
}

impl std::fmt::Debug for EchoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoConfig")
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

/// One echo peer's errand. Holding it holds a place among `max_sessions`.
pub struct EchoJob {
    /// The server's own WebSocket URL, through loopback when it listens everywhere.
    pub server_url: String,
    pub room: String,
    pub password: String,
    /// Where the echo's media sockets bind: the address the server listens on.
    pub bind: IpAddr,
    _place: Place,
}

/// A place among `max_sessions`; giving it back also closes the room if the echo never
/// made it in (nobody else can open it).
struct Place {
    active: Arc<AtomicUsize>,
    hub: std::sync::Weak<Hub>,
    room: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(hub) = self.hub.upgrade() {
            let mut st = hub.lock();
            if st
                .rooms
                .get(&self.room)
                .is_some_and(|r| r.members.is_empty())
            {
                st.rooms.remove(&self.room);
            }
        }
    }
}

/// The hub's side: the service, where the server is, the places taken.
pub(super) struct Echo {
    config: EchoConfig,
    listen: SocketAddr,
    active: Arc<AtomicUsize>,
}

impl Echo {
    pub(super) fn new(config: EchoConfig, listen: SocketAddr) -> Self {
        Self {
            config,
            listen,
            active: Arc::default(),
        }
    }

    /// Echo peers running now.
    pub(super) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    fn take_place(&self, hub: &Arc<Hub>, room: &str) -> Option<Place> {
        let max = self.config.max_sessions;
        self.active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Place {
                active: self.active.clone(),
                hub: Arc::downgrade(hub),
                room: room.to_string(),
            })
    }
}

/// Where a local client reaches a server listening on `listen`.
fn loopback_of(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl Hub {
    pub(super) fn test_call(self: &Arc<Self>, id: &str) -> Result<(), ProtocolViolation> {
        let Some(echo) = &self.echo else {
            return Err(ProtocolViolation::new(
                ErrorCode::EchoUnavailable,
                "this server offers no test call (it runs without --echo)",
            ));
        };
        let mut st = self.lock();
        let entry = st.clients.get(id).ok_or_else(not_joined)?;
        if let Some(room) = &entry.room {
            return Err(ProtocolViolation::new(
                ErrorCode::AlreadyJoined,
                format!("already in room {room:?}; leave first"),
            ));
        }
        if st.rooms.len() >= self.config.max_rooms {
            return Err(ProtocolViolation::new(
                ErrorCode::TooManyRooms,
                "the server has no room for another room",
            ));
        }
        let room = format!("{ECHO_ROOM_PREFIX}{:016x}", rand::random::<u64>());
        let Some(place) = echo.take_place(self, &room) else {
            return Err(ProtocolViolation::new(
                ErrorCode::ServerFull,
                format!(
                    "the server runs {} test calls already; try again in a minute",
                    echo.config.max_sessions
                ),
            ));
        };
        let password = new_token();
        st.rooms.insert(
            room.clone(),
            Room {
                members: Vec::new(),
                password: Some(password.clone()),
                capacity: 2,
                // Nobody by id: the key lets the caller and the echo in.
                private: Some(Vec::new()),
                failed_joins: Default::default(),
                sfu: Default::default(),
                broadcast: false,
            },
        );
        let reply = ServerMessage::TestCall {
            room: room.clone(),
            password: password.clone(),
        };
        self.reply(&st, id, &reply);
        drop(st);
        let own = loopback_of(echo.listen);
        echo.config.service.start(EchoJob {
            server_url: format!("ws://{own}/ws"),
            room,
            password,
            bind: own.ip(),
            _place: place,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_reaches_a_server_that_listens_everywhere_through_loopback() {
        let any: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        assert_eq!(
            loopback_of(any),
            "127.0.0.1:8787".parse::<SocketAddr>().unwrap()
        );
        let any6: SocketAddr = "[::]:8787".parse().unwrap();
        assert_eq!(
            loopback_of(any6),
            "[::1]:8787".parse::<SocketAddr>().unwrap()
        );
        let lan: SocketAddr = "10.0.0.2:8787".parse().unwrap();
        assert_eq!(loopback_of(lan), lan);
    }
}

#[cfg(test)]
mod specs {
    use std::sync::Mutex;

    use tokio::sync::{Notify, mpsc};

    use super::*;
    use crate::signaling::protocol::{ClientMessage, MediaState};

    /// Keeps the jobs it is given, as a running echo would.
    #[derive(Default)]
    struct Jobs(Mutex<Vec<EchoJob>>);

    impl EchoService for Jobs {
        fn start(&self, job: EchoJob) {
            self.0.lock().unwrap().push(job);
        }
    }

    fn hub_with_echo(max_sessions: usize) -> (Arc<Hub>, Arc<Jobs>) {
        let jobs = Arc::new(Jobs::default());
        let config = ServerConfig {
            echo: Some(EchoConfig {
                service: jobs.clone(),
                max_sessions,
            }),
            ..ServerConfig::default()
        };
        let listen = "0.0.0.0:8787".parse().unwrap();
        (Hub::with_services(config, None, Some(listen)), jobs)
    }

    fn connect(hub: &Hub) -> (String, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let outbox = Outbox::new(tx, Arc::new(Notify::new()), Arc::default());
        (hub.register(outbox, None, None).unwrap(), rx)
    }

    fn last_message(rx: &mut mpsc::Receiver<Queued>) -> ServerMessage {
        let mut last = None;
        while let Ok(q) = rx.try_recv() {
            if let Outbound::Text(t) = q.out {
                last = Some(serde_json::from_str(t.as_str()).unwrap());
            }
        }
        last.expect("the server answered")
    }

    fn join(hub: &Arc<Hub>, id: &str, room: &str, password: Option<&str>) {
        hub.handle(
            id,
            ClientMessage::Join {
                room: room.into(),
                name: id.into(),
                password: password.map(str::to_string),
                capacity: None,
                state: Some(MediaState::default()),
                sfu: false,
                broadcast: false,
                role: None,
            },
        );
    }

    fn error_code(msg: ServerMessage) -> ErrorCode {
        match msg {
            ServerMessage::Error { code, .. } => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_test_call_opens_a_keyed_room_that_the_echo_and_the_caller_join() {
        let (hub, jobs) = hub_with_echo(4);
        let (ada, mut ada_rx) = connect(&hub);
        hub.handle(&ada, ClientMessage::TestCall);
        let ServerMessage::TestCall { room, password } = last_message(&mut ada_rx) else {
            panic!("no test_call answer");
        };
        let job = jobs.0.lock().unwrap().pop().expect("an echo was started");
        assert_eq!(
            (job.room.as_str(), job.password.as_str()),
            (&*room, &*password)
        );
        assert_eq!(job.server_url, "ws://127.0.0.1:8787/ws");

        let (echo, mut echo_rx) = connect(&hub);
        join(&hub, &echo, &job.room, Some(&job.password));
        assert!(matches!(
            last_message(&mut echo_rx),
            ServerMessage::Welcome(_)
        ));
        join(&hub, &ada, &room, Some(&password));
        assert!(matches!(
            last_message(&mut ada_rx),
            ServerMessage::Welcome(_)
        ));
    }

    #[test]
    fn nobody_else_gets_into_a_test_call_and_nobody_lists_it() {
        let (hub, _jobs) = hub_with_echo(4);
        let (ada, mut ada_rx) = connect(&hub);
        hub.handle(&ada, ClientMessage::TestCall);
        let ServerMessage::TestCall { room, .. } = last_message(&mut ada_rx) else {
            panic!("no test_call answer");
        };
        let (eve, mut eve_rx) = connect(&hub);
        join(&hub, &eve, &room, None);
        assert_eq!(
            error_code(last_message(&mut eve_rx)),
            ErrorCode::PrivateRoom
        );
        join(&hub, &eve, &room, Some("guess"));
        assert_eq!(
            error_code(last_message(&mut eve_rx)),
            ErrorCode::PrivateRoom
        );
        assert!(
            hub.room_page(None).0.is_empty(),
            "a test call is not listed"
        );
        // Nor can one make a room that looks like one.
        join(&hub, &eve, "echo:mine", None);
        assert_eq!(
            error_code(last_message(&mut eve_rx)),
            ErrorCode::PrivateRoom
        );
    }

    #[test]
    fn test_calls_are_bounded_and_a_finished_echo_frees_its_place_and_room() {
        let (hub, jobs) = hub_with_echo(1);
        let (ada, mut ada_rx) = connect(&hub);
        let (bob, mut bob_rx) = connect(&hub);
        hub.handle(&ada, ClientMessage::TestCall);
        assert!(matches!(
            last_message(&mut ada_rx),
            ServerMessage::TestCall { .. }
        ));
        hub.handle(&bob, ClientMessage::TestCall);
        assert_eq!(error_code(last_message(&mut bob_rx)), ErrorCode::ServerFull);
        assert_eq!(hub.metrics_snapshot().test_calls, 1);

        // The echo never joined (say it could not connect): its room goes with it.
        jobs.0.lock().unwrap().clear();
        assert_eq!(hub.metrics_snapshot().test_calls, 0);
        assert!(hub.read().rooms.is_empty());
        hub.handle(&bob, ClientMessage::TestCall);
        assert!(matches!(
            last_message(&mut bob_rx),
            ServerMessage::TestCall { .. }
        ));
    }

    #[test]
    fn without_echo_peers_a_test_call_is_refused_with_the_reason() {
        let hub = Hub::new(ServerConfig::default());
        let (ada, mut ada_rx) = connect(&hub);
        hub.handle(&ada, ClientMessage::TestCall);
        assert_eq!(
            error_code(last_message(&mut ada_rx)),
            ErrorCode::EchoUnavailable
        );
    }
}
