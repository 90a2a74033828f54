//! `confab bench signaling`: N WebSocket clients in M rooms relay timestamped
//! messages to each other; prints clients held, relays per second, latency and
//! the server's RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::signaling::protocol::{ClientMessage, ServerMessage};

use super::BenchError;

#[derive(Debug, Clone, clap::Args)]
pub struct SignalingBenchArgs {
    /// WebSocket clients to open.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Rooms to spread them over.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Length of the measured phase.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Relay messages each client sends per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Use this server instead of starting `confab serve` as a child process.
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SignalingBenchReport {
    pub clients_requested: usize,
    pub clients_held: usize,
    pub connect_failures: usize,
    pub relayed: u64,
    pub relayed_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Relays that arrived at a member of another room: must be 0.
    pub cross_room: u64,
    pub errors_received: u64,
    /// Error codes received, with counts.
    pub error_codes: std::collections::BTreeMap<String, u64>,
    pub server_rss_mib: Option<f64>,
    pub connect_seconds: f64,
}

impl std::fmt::Display for SignalingBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "clients held        {} / {} ({} failed to connect, {:.1} s to connect and join)",
            self.clients_held, self.clients_requested, self.connect_failures, self.connect_seconds
        )?;
        writeln!(
            f,
            "messages relayed    {} ({:.0} /s)",
            self.relayed, self.relayed_per_sec
        )?;
        writeln!(
            f,
            "relay latency       p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.latency_p50_ms, self.latency_p99_ms, self.latency_max_ms
        )?;
        writeln!(f, "cross-room          {}", self.cross_room)?;
        writeln!(
            f,
            "errors received     {} {:?}",
            self.errors_received, self.error_codes
        )?;
        match self.server_rss_mib {
            Some(rss) => writeln!(f, "server RSS          {rss:.1} MiB"),
            None => writeln!(f, "server RSS          unknown (external server)"),
        }
    }
}

/// Runs the benchmark and prints the report.
pub async fn signaling(args: SignalingBenchArgs) -> Result<SignalingBenchReport, BenchError> {
    let report = run_signaling(args).await?;
    print!("{report}");
    Ok(report)
}

/// Runs the benchmark, returning figures without printing.
pub async fn run_signaling(args: SignalingBenchArgs) -> Result<SignalingBenchReport, BenchError> {
    if args.clients == 0 || args.rooms == 0 || args.rooms > args.clients {
        return Err(BenchError::Args("need 1 <= rooms <= clients".into()));
    }
    raise_nofile_limit(args.clients as u64 * 2 + 256);
    let mut child = None;
    let url = match &args.url {
        Some(u) => u.clone(),
        None => {
            let (c, url) = spawn_server(args.clients).await?;
            child = Some(c);
            url
        }
    };
    let result = drive(&args, &url).await;
    let rss = child.as_ref().and_then(|c| c.id()).and_then(rss_mib);
    if let Some(mut c) = child {
        let _ = c.kill().await;
    }
    let mut report = result?;
    report.server_rss_mib = rss;
    Ok(report)
}

#[derive(Default)]
struct ClientOutcome {
    held: bool,
    latencies_us: Vec<u32>,
    cross_room: u64,
    errors: std::collections::BTreeMap<String, u64>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sink = futures::stream::SplitSink<Ws, Message>;

/// A joined client's sending half, handed to its room's driver.
struct Member {
    id: String,
    sink: Sink,
}

/// Only what the bench reads of a server frame; the payload is its own.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    payload: Option<Stamp>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(serde::Deserialize)]
struct Stamp {
    t: u64,
    room: u64,
}

async fn drive(args: &SignalingBenchArgs, url: &str) -> Result<SignalingBenchReport, BenchError> {
    let base = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (go_tx, go_rx) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(128));
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    // One sending task per room rather than a timer per client: the load generator
    // shares the two cores with the server and must stay light.
    let mut rooms = Vec::with_capacity(args.rooms);
    let mut drivers = Vec::with_capacity(args.rooms);
    for room in 0..args.rooms {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Member>();
        rooms.push(tx);
        let offset = period.mul_f64((room % 97) as f64 / 97.0);
        drivers.push(tokio::spawn(room_driver(
            room,
            rx,
            base,
            period,
            offset,
            go_rx.clone(),
            stop_rx.clone(),
        )));
    }
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let room = i % args.rooms;
        let url = url.to_string();
        let connecting = connecting.clone();
        let joined_tx = joined_tx.clone();
        let members = rooms[room].clone();
        let stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            client(i, room, &url, base, connecting, joined_tx, members, stop_rx).await
        }));
    }
    drop(rooms);
    drop(joined_tx);
    let mut failures = 0;
    for _ in 0..args.clients {
        match joined_rx.recv().await {
            Some(true) => {}
            Some(false) => failures += 1,
            None => break,
        }
    }
    let connect_seconds = base.elapsed().as_secs_f64();
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let _ = stop_tx.send(true);
    let mut all = Vec::new();
    let mut report = SignalingBenchReport {
        clients_requested: args.clients,
        connect_failures: failures,
        connect_seconds,
        ..Default::default()
    };
    for t in tasks {
        let o = t.await.unwrap_or_default();
        report.clients_held += usize::from(o.held);
        report.cross_room += o.cross_room;
        for (code, n) in o.errors {
            report.errors_received += n;
            *report.error_codes.entry(code).or_default() += n;
        }
        all.extend(o.latencies_us);
    }
    for d in drivers {
        drop(d.await);
    }
    all.sort_unstable();
    report.relayed = all.len() as u64;
    report.relayed_per_sec = all.len() as f64 / args.seconds;
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    report.latency_p50_ms = pct(0.50);
    report.latency_p99_ms = pct(0.99);
    report.latency_max_ms = all.last().map_or(0.0, |us| *us as f64 / 1000.0);
    Ok(report)
}

/// Every `period`, each member of the room relays a timestamp to the next member.
async fn room_driver(
    room: usize,
    mut joined: tokio::sync::mpsc::UnboundedReceiver<Member>,
    base: Instant,
    period: Duration,
    offset: Duration,
    mut go: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Member> {
    let mut members = Vec::new();
    // The channel closes once every client of the room has joined or failed.
    while let Some(m) = joined.recv().await {
        members.push(m);
    }
    let _ = go.wait_for(|g| *g).await;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                let n = members.len();
                for i in 0..n {
                    if n < 2 { break; }
                    let to = members[(i + 1) % n].id.clone();
                    let t = base.elapsed().as_micros() as u64;
                    let text = format!(
                        r#"{{"type":"relay","to":"{to}","payload":{{"t":{t},"room":{room}}}}}"#
                    );
                    let _ = members[i].sink.send(Message::Text(text.into())).await;
                }
            }
        }
    }
    // Handed back, not closed: a close now would reach clients still counting as held.
    members
}

#[allow(clippy::too_many_arguments)]
async fn client(
    index: usize,
    room: usize,
    url: &str,
    base: Instant,
    connecting: Arc<Semaphore>,
    joined: tokio::sync::mpsc::UnboundedSender<bool>,
    members: tokio::sync::mpsc::UnboundedSender<Member>,
    mut stop: watch::Receiver<bool>,
) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    let permit = connecting.acquire_owned().await;
    let ws = tokio_tungstenite::connect_async(url).await;
    let Ok((mut ws, _)) = ws else {
        let _ = joined.send(false);
        return out;
    };
    let join = ClientMessage::Join {
        room: format!("bench-{room}"),
        name: format!("c{index}"),
        password: None,
        capacity: None,
        state: None,
        sfu: false,
        broadcast: false,
        role: None,
    };
    let text = serde_json::to_string(&join).expect("serialisable");
    let welcome = async {
        ws.send(Message::Text(text.into())).await.ok()?;
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(t) = frame
                && let Ok(ServerMessage::Welcome(w)) = serde_json::from_str(t.as_str())
            {
                return Some(w);
            }
        }
        None
    }
    .await;
    drop(permit);
    let Some(welcome) = welcome else {
        let _ = joined.send(false);
        return out;
    };
    let (sink, mut stream) = ws.split();
    let _ = members.send(Member {
        id: welcome.id,
        sink,
    });
    drop(members);
    let _ = joined.send(true);
    out.held = true;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { out.held = false; break };
                let t = match frame {
                    Message::Text(t) => t,
                    // Closed by the server (e.g. as a slow reader): not held.
                    Message::Close(_) => { out.held = false; break }
                    _ => continue,
                };
                let Ok(msg) = serde_json::from_str::<Incoming>(t.as_str()) else { continue };
                match msg.kind.as_ref() {
                    "relay" => {
                        let Some(stamp) = msg.payload else { continue };
                        if stamp.room != room as u64 {
                            out.cross_room += 1;
                        }
                        let now = base.elapsed().as_micros() as u64;
                        out.latencies_us.push(now.saturating_sub(stamp.t).min(u32::MAX as u64) as u32);
                    }
                    "error" => {
                        *out.errors.entry(msg.code.unwrap_or_default()).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

async fn spawn_server(clients: usize) -> Result<(tokio::process::Child, String), BenchError> {
    use tokio::io::AsyncBufReadExt;
    let exe = super::confab_binary()?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-clients",
            &(clients + 100).to_string(),
            "--max-rooms",
            &(clients + 100).to_string(),
            "--rate-limit",
            "1000",
            "--rate-burst",
            "1000",
            // Every simulated client comes from 127.0.0.1.
            "--max-per-ip",
            "0",
            "--no-stun",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(BenchError::Io)?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| BenchError::Server("the server did not start within 10 s".into()))?
        .map_err(BenchError::Io)?
        .ok_or_else(|| BenchError::Server("the server exited at start".into()))?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .ok_or_else(|| BenchError::Server(format!("unexpected server output: {line}")))?
        .to_string();
    // Keep reading what else it prints, so it never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Many sockets need many descriptors; raise the soft limit toward the hard one.
pub(crate) fn raise_nofile_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
