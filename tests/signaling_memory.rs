//! What hostile clients cost `confab serve` in memory, measured on the process itself:
//! members that stop reading while others relay to them, and clients that send big
//! messages and never read the errors. The cost stays bounded while they do it and is
//! given back once they are gone.

mod support;

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::json;
use support::{Raw, STEP, small_window};

struct Serve {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    url: String,
}

async fn serve() -> Serve {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-per-ip",
            "0",
            "--no-stun",
        ])
        .args(["--rate-limit", "100000", "--rate-burst", "100000"])
        // Members whose socket dropped are otherwise kept, queue and all, for 30 s.
        .args(["--resume-grace-secs", "0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = support::first_line_url(child.stdout.take().unwrap()).await;
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    Serve { child, addr, url }
}

impl Serve {
    fn rss_mib(&self) -> f64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    /// A gauge from the server's `/metrics`.
    async fn metric(&self, name: &str) -> f64 {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let body = support::http_get(tcp, "x", "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    }

    /// Waits (bounded) until the server holds no connection and no queued byte.
    async fn idle(&self) {
        let deadline = tokio::time::Instant::now() + STEP * 2;
        loop {
            let open = self.metric("confab_connections").await;
            let queued = self.metric("confab_outbound_bytes").await;
            if open == 0.0 && queued == 0.0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{open} connections, {queued} bytes still held"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_readers_and_writers_cost_bounded_memory_that_is_given_back() {
    let srv = serve().await;
    let baseline = srv.rss_mib();

    // Eight members stop reading while a roommate relays 60 KB blobs at each.
    let blob = "x".repeat(60_000);
    let mut pairs = Vec::new();
    for i in 0..8 {
        let room = format!("r{i}");
        let sender = {
            let mut c = Raw::connect_url(&srv.url).await;
            c.join(json!({"type":"join","room":room,"name":"sender"}))
                .await;
            c
        };
        let sleeper = small_window(srv.addr, &srv.url, &room, "sleeper").await;
        pairs.push((sender, sleeper));
    }
    for (sender, sleeper) in &mut pairs {
        for _ in 0..400 {
            sender.relay(&sleeper.id, json!({ "blob": blob })).await;
        }
    }
    // Four clients send 65 KB messages of an unknown type and never read the errors.
    let mut writers = Vec::new();
    for _ in 0..4 {
        let mut w = small_window(srv.addr, &srv.url, "w", "writer").await;
        let junk = json!({ "type": "t".repeat(65_000) }).to_string();
        for _ in 0..500 {
            w.send_text(&junk).await;
        }
        writers.push(w);
    }
    // The senders' own echoes (peer_left of their sleeper, errors) show the server has
    // worked through what was sent.
    for (sender, sleeper) in &mut pairs {
        let left = tokio::time::timeout(STEP, async {
            loop {
                let m = sender.recv().await;
                if m["type"] == "peer_left" && m["id"] == sleeper.id.as_str() {
                    break;
                }
            }
        })
        .await;
        assert!(left.is_ok(), "a sleeper was never cut off");
    }
    let during = srv.rss_mib();
    println!("RSS: {baseline:.1} MiB at start, {during:.1} MiB under attack");
    // Unbounded, this held ~200 MB of relays (8 x 400 x 60 KB) and ~60 MB of echoed types.
    assert!(
        during - baseline < 64.0,
        "{during:.1} MiB under attack from {baseline:.1}"
    );

    for w in &mut writers {
        while let Some(Some(_)) = w.ws.next().now_or_never() {}
    }
    drop(writers);
    drop(pairs);
    srv.idle().await;
    // Memory is given back to the system once the server has had a moment to trim.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut after = srv.rss_mib();
    while after - baseline > 16.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = srv.rss_mib();
    }
    println!("RSS after they left: {after:.1} MiB");
    assert!(
        after - baseline <= 16.0,
        "{after:.1} MiB kept after everyone left (started at {baseline:.1})"
    );
}
