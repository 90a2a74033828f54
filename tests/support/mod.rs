//! Shared test harness: an in-process signaling server on an ephemeral loopback
//! port and raw WebSocket clients that speak protocol v1 by hand.
#![allow(dead_code)]

use std::time::Duration;

use confab::signaling::{Server, ServerConfig};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub const STEP: Duration = Duration::from_secs(5);

pub async fn server() -> Server {
    server_with(|_| {}).await
}

/// A server that floods quickly: half a message a second, bursts of 5, closed after 20
/// refusals in a row. A client's join takes one token, so 4 more frames pass, 20 are
/// refused and the next one closes the connection.
pub async fn flooding_server() -> Server {
    server_with(|c| {
        c.rate_per_sec = 0.5;
        c.rate_burst = 5.0;
        c.flood_close_after = 20;
    })
    .await
}

pub async fn server_with(tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    tweak(&mut cfg);
    Server::start(cfg).await.expect("server starts")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-driven protocol client.
pub struct Raw {
    pub ws: Ws,
    pub id: String,
}

impl Raw {
    pub async fn connect(server: &Server) -> Raw {
        Raw::connect_url(&server.ws_url()).await
    }

    pub async fn connect_url(url: &str) -> Raw {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Raw {
            ws,
            id: String::new(),
        }
    }

    /// Connects and joins `room`, returning the client with its id set.
    pub async fn joined(server: &Server, room: &str, name: &str) -> Raw {
        let mut c = Raw::connect(server).await;
        let w = c.join(json!({"type":"join","room":room,"name":name})).await;
        c.id = w["id"].as_str().unwrap().to_string();
        c
    }

    pub async fn join(&mut self, msg: Value) -> Value {
        self.send(msg).await;
        let w = self.expect("welcome").await;
        self.id = w["id"].as_str().unwrap().to_string();
        w
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::Text(s.to_string().into()))
            .await
            .expect("send");
    }

    /// Next protocol message (pings and pongs skipped), failing after 5 s.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(STEP).await
    }

    /// Next protocol message, failing after `wait` without one.
    pub async fn recv_within(&mut self, wait: Duration) -> Value {
        loop {
            let frame = tokio::time::timeout(wait, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("a message within {wait:?}"))
                .expect("connection open")
                .expect("frame ok");
            match frame {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("server sends JSON");
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Next message, which must be of type `ty`.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let m = self.recv().await;
        assert_eq!(m["type"], ty, "expected {ty}, got {m}");
        m
    }

    pub async fn expect_error(&mut self, code: &str) -> Value {
        let m = self.expect("error").await;
        assert_eq!(m["code"], code, "{m}");
        assert!(m["message"].as_str().is_some_and(|s| !s.is_empty()));
        m
    }

    /// Proves nothing else is queued for us: a ping's pong must be the next message.
    pub async fn expect_nothing_pending(&mut self) {
        let nonce = rand_nonce();
        self.send(json!({"type":"ping","nonce":nonce})).await;
        let m = self.recv().await;
        assert_eq!(
            m,
            json!({"type":"pong","nonce":nonce}),
            "something arrived before the pong"
        );
    }

    /// Reads until the server closes: its close code, and how many `rate_limited` errors
    /// came first.
    pub async fn until_closed(&mut self) -> (u16, usize) {
        let mut limited = 0;
        loop {
            match tokio::time::timeout(STEP, self.ws.next()).await.unwrap() {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    limited += usize::from(v["code"] == "rate_limited");
                }
                Some(Ok(Message::Close(frame))) => {
                    return (frame.map_or(0, |f| u16::from(f.code)), limited);
                }
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn relay(&mut self, to: &str, payload: Value) {
        self.send(json!({"type":"relay","to":to,"payload":payload}))
            .await;
    }
}

/// A client whose socket takes in only a few kilobytes: once it stops reading, what the
/// server writes to it backs up at once.
pub async fn small_window(addr: std::net::SocketAddr, url: &str, room: &str, name: &str) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket handshake");
    let mut c = Raw {
        ws,
        id: String::new(),
    };
    c.join(json!({"type":"join","room":room,"name":name})).await;
    c
}

/// One `GET path` with `Host: host` on `tcp`, `Connection: close`: the whole answer, head
/// and body (panics if the server has not finished it within [`STEP`]).
pub async fn http_get(mut tcp: tokio::net::TcpStream, host: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut got))
        .await
        .expect("the answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// What headless report `r` says it received from the peer called `name`.
pub fn from<'a>(r: &'a confab::headless::Report, name: &str) -> &'a confab::headless::PeerReport {
    r.peers
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{} has no report for {name}: {r:#?}", r.name))
}

/// Per second from `t` on, to the last second before the run ended (when the others
/// leave too): frames per second `me` decoded from `other`.
pub fn fps_from(me: &confab::headless::Report, other: &str, t: f64) -> Vec<f64> {
    from(me, other)
        .stats_timeline
        .iter()
        .filter(|s| s.t >= t && s.t <= me.seconds - 1.0)
        .map(|s| s.stats.video_in_fps)
        .collect()
}

fn rand_nonce() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
pub mod aiortc;
pub mod browser;
pub mod engine;
pub mod files;
pub mod internet;
pub mod janus;
pub mod logs;
pub mod proxy;
pub mod pulse;
pub mod xvfb;

/// A self-signed certificate for 127.0.0.1, made with openssl.
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    self_signed_for(dir, "127.0.0.1")
}

/// A self-signed certificate for the address `ip`.
pub fn self_signed_for(
    dir: &std::path::Path,
    ip: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=confab test"])
        .args(["-addext", &format!("subjectAltName=IP:{ip}")])
        // An end-entity certificate (openssl's default CA:TRUE is refused as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl made a certificate");
    (cert, key)
}

/// What Chromium's `--ignore-certificate-errors-spki-list` takes for this certificate:
/// the base64 SHA-256 of its public key.
pub fn spki_sha256_base64(cert: &std::path::Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | openssl base64 -A",
        )
        .arg("sh")
        .arg(cert)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The URL a `confab serve` prints first ("confab signaling server on ws://…/ws"); its
/// output is drained from then on, so the server never blocks writing it.
pub async fn first_line_url(stdout: tokio::process::ChildStdout) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server starts")
        .unwrap()
        .expect("the server prints its URL");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    first.rsplit(' ').next().unwrap().to_string()
}

/// `confab headless` in `room` of the server at `url` as `name`, on loopback, quiet but
/// for errors (piped), killed when dropped; `extra` options after.
pub fn headless_command(
    url: &str,
    room: &str,
    name: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"));
    c.args(["headless", "--server", url, "--room", room, "--name", name])
        .args(["--bind", "127.0.0.1"])
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

/// RUST_LOG=... shows the engines' logs in a failing test's output (once per process).
pub fn test_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A loopback TCP port nobody listens on: bound, then closed.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The reports of headless runs started together, in the order given.
pub async fn reports(
    runs: Vec<
        tokio::task::JoinHandle<Result<confab::headless::Report, confab::headless::HeadlessError>>,
    >,
) -> Vec<confab::headless::Report> {
    let mut out = Vec::new();
    for r in runs {
        out.push(r.await.unwrap().expect("headless run"));
    }
    out
}
