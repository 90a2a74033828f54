//! Calls across a simulated internet (tests/support/internet.rs): homes behind NAT
//! routers, the signaling server and its STUN responder on the "internet". Each call
//! is two `confab headless` processes, one per home; both must decode the other's
//! frames in order, and the report says which path the media took.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::internet::{Home, Internet, Nat, RELAY_IP, SERVER_IP, TURN_PORT};
use support::logs::{await_line, rest_of, stderr_lines, until_serving};

/// `confab serve` on the internet, STUN included, plus `extra` options; killed when
/// dropped.
async fn serve(net: &Internet, extra: &[&str]) -> tokio::process::Child {
    let mut child = net
        .net
        .command(env!("CARGO_BIN_EXE_confab"))
        // 443: what even a firewall home can reach.
        .args(["serve", "--listen", &format!("{SERVER_IP}:443")])
        .args(["--stun-listen", &format!("{SERVER_IP}:3478")])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_serving(&mut child).await;
    child
}

/// A headless peer in `home` for `seconds`, its report written to `report`.
fn peer(
    home: &Home,
    name: &str,
    seconds: f64,
    report: &Path,
    extra: &[&str],
) -> tokio::process::Command {
    let mut c = home.host.command(env!("CARGO_BIN_EXE_confab"));
    c.args(["headless", "--server", &format!("ws://{SERVER_IP}:443/ws")])
        .args(["--room", "internet", "--name", name])
        .args(["--seconds", &seconds.to_string(), "--size", "320x240"])
        .args(["--report", report.to_str().unwrap()])
        .args(extra)
        // CONFAB_PEER_LOG=rtc_ice=debug shows what ICE tried.
        .env(
            "RUST_LOG",
            std::env::var("CONFAB_PEER_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// What `report`'s owner received from `other`: frames decoded in order, and the path.
fn received_from<'a>(report: &'a Value, other: &str) -> &'a Value {
    let peers = report["peers"].as_array().expect("peers");
    let p = peers
        .iter()
        .find(|p| p["name"] == other)
        .unwrap_or_else(|| panic!("{} has nothing from {other}: {report:#}", report["name"]));
    let v = &p["video"];
    assert!(
        v["frames_decoded"].as_u64().unwrap_or(0) >= 60,
        "{} decoded too little from {other}: {p:#}",
        report["name"]
    );
    assert_eq!(v["ids_in_order"], true, "{p:#}");
    p
}

/// Runs a call between two homes: both reports, or both processes' errors. `a_extra`
/// are more options for ann, `env` more environment for both.
async fn try_call(
    a: &Home,
    b: &Home,
    a_extra: &[&str],
    env: &[(&str, &str)],
) -> Result<(Value, Value), String> {
    // Two calls at a time: each is two encoding, decoding processes, and a machine with
    // two cores running all of this file's calls at once starves them of frames.
    static CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _slot = CALLS.acquire().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let pa = peer(a, "ann", 6.0, &ra, a_extra)
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let pb = peer(b, "bob", 6.0, &rb, &[])
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let (oa, ob) = tokio::join!(pa.wait_with_output(), pb.wait_with_output());
    let (oa, ob) = (oa.unwrap(), ob.unwrap());
    if !(oa.status.success() && ob.status.success()) {
        return Err(format!(
            "ann: {}\nbob: {}",
            String::from_utf8_lossy(&oa.stderr),
            String::from_utf8_lossy(&ob.stderr)
        ));
    }
    Ok((read_report(&ra), read_report(&rb)))
}

async fn call(a: &Home, b: &Home, a_extra: &[&str]) -> (Value, Value) {
    try_call(a, b, a_extra, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn call_with_env(a: &Home, b: &Home, env: &[(&str, &str)]) -> (Value, Value) {
    try_call(a, b, &[], env)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The path media took to `report`'s owner from `other` ("srflx -> prflx" and the like),
/// after checking the frames arrived.
fn path_from(report: &Value, other: &str) -> String {
    let p = received_from(report, other);
    let path = p["last_stats"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("{} <- {other}: {path}", report["name"]);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_homes_behind_cone_nats_call_directly_through_the_servers_stun() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Cone), net.home(Nat::Cone));
    let _server = serve(&net, &[]).await;
    let (ra, rb) = call(&a, &b, &[]).await;
    for (report, other) in [(&ra, "bob"), (&rb, "ann")] {
        // Neither home's private address is reachable from the other: the pair that
        // carried media joins the routers' public mappings, which STUN revealed.
        let path = path_from(report, other);
        assert!(
            path.contains("srflx") || path.contains("prflx"),
            "{} reached {other} over {path:?}",
            report["name"]
        );
        assert!(
            !path.contains("host -> host") && !path.contains("relay"),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_symmetric_homes_cannot_connect_without_a_relay() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Symmetric), net.home(Nat::Symmetric));
    // STUN alone: each side's public port differs per destination, so no check ever
    // arrives where the other expects it. (This proves the simulated NAT is symmetric.)
    let _server = serve(&net, &[]).await;
    let err = try_call(&a, &b, &[], &[])
        .await
        .expect_err("two symmetric NATs connected without a relay");
    assert!(err.contains("no media arrived"), "{err}");
}

/// The call went through a TURN relay: one side sends from its relayed address (the
/// other may know that address only from the checks it received, as prflx). Returns
/// ann's and bob's paths.
fn assert_relayed(ra: &Value, rb: &Value) -> (String, String) {
    let (pa, pb) = (path_from(ra, "bob"), path_from(rb, "ann"));
    assert!(
        pa.starts_with("relay") || pb.starts_with("relay"),
        "ann <- bob over {pa:?}, bob <- ann over {pb:?}: no relay"
    );
    (pa, pb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_symmetric_homes_call_through_the_servers_own_turn_relay() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Symmetric), net.home(Nat::Symmetric));
    let turn = format!("{RELAY_IP}:{TURN_PORT}");
    let _server = serve(&net, &["--turn-listen", &turn]).await;
    let (ra, rb) = call(&a, &b, &[]).await;
    assert_relayed(&ra, &rb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_symmetric_homes_call_through_coturn_with_the_servers_credentials() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Symmetric), net.home(Nat::Symmetric));
    let secret = "coturn-shared-secret";
    let _coturn = net.coturn(RELAY_IP, secret, None);
    net.net.wait_listening(TURN_PORT);
    let url = format!("turn:{RELAY_IP}:{TURN_PORT}?transport=udp");
    let _server = serve(&net, &["--turn", &url, "--turn-secret", secret]).await;
    let (ra, rb) = call(&a, &b, &[]).await;
    assert_relayed(&ra, &rb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_peer_is_reached_only_through_the_relay_even_behind_cone_nats() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Cone), net.home(Nat::Cone));
    let turn = format!("{RELAY_IP}:{TURN_PORT}");
    let _server = serve(&net, &["--turn-listen", &turn]).await;
    // Cone NATs connect directly (the first test); ann forbids it.
    let (ra, rb) = call(&a, &b, &["--ice-transport", "relay"]).await;
    let (ann, _) = assert_relayed(&ra, &rb);
    assert!(ann.starts_with("relay"), "ann sends over {ann:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_that_lets_only_tcp_443_out_calls_through_the_servers_relay_over_tcp() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Firewall), net.home(Nat::Symmetric));
    let turn = format!("{RELAY_IP}:443");
    let _server = serve(&net, &["--turn-listen", &turn]).await;
    let (ra, rb) = call(&a, &b, &[]).await;
    // No UDP leaves ann's home: only her relay, allocated over TCP, can carry media.
    let (ann, _) = assert_relayed(&ra, &rb);
    assert!(ann.starts_with("relay"), "ann sends over {ann:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_that_lets_only_tcp_443_out_calls_through_coturn_over_tls() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Firewall), net.home(Nat::Cone));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed_for(dir.path(), RELAY_IP);
    let secret = "coturn-shared-secret";
    let _coturn = net.coturn(RELAY_IP, secret, Some((&cert, &key)));
    net.net.wait_listening(443);
    let urls = [
        format!("turn:{RELAY_IP}:{TURN_PORT}?transport=udp"),
        format!("turns:{RELAY_IP}:443?transport=tcp"),
    ];
    let _server = serve(
        &net,
        &[
            "--turn",
            &urls[0],
            "--turn",
            &urls[1],
            "--turn-secret",
            secret,
        ],
    )
    .await;
    // The certificate is our own: both peers trust it as the operator's CA.
    let ca = cert.to_str().unwrap();
    let (ra, rb) = call_with_env(&a, &b, &[("CONFAB_CA_FILE", ca)]).await;
    let (ann, _) = assert_relayed(&ra, &rb);
    assert!(ann.starts_with("relay"), "ann sends over {ann:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_whose_address_changes_mid_call_is_reached_again_through_an_ice_restart() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Cone), net.home(Nat::Cone));
    let _server = serve(&net, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let log =
        std::env::var("CONFAB_PEER_LOG").unwrap_or_else(|_| "error,confab::headless=info".into());
    let log = log.as_str();
    let mut pa = peer(&a, "ann", 14.0, &ra, &[])
        .env("RUST_LOG", log)
        .spawn()
        .unwrap();
    let mut pb = peer(&b, "bob", 14.0, &rb, &[])
        .env("RUST_LOG", log)
        .spawn()
        .unwrap();
    let (mut ann_log, mut bob_log) = (stderr_lines(&mut pa), stderr_lines(&mut pb));
    // Mid-call: pictures flow both ways.
    await_line(&mut ann_log, "first keyframe").await;
    await_line(&mut bob_log, "first keyframe").await;
    // Ann's router loses its uplink and comes back 3 s later with another address: the
    // path the call used, and ann's signaling connection, are gone for good.
    a.unplug();
    tokio::time::sleep(Duration::from_secs(3)).await;
    net.readdress(&a, 7);
    let back_us = confab::media::now_us();
    let (ann_rest, bob_rest) = (rest_of(ann_log), rest_of(bob_log));
    let (oa, ob) = tokio::join!(pa.wait(), pb.wait());
    let (ann_log, bob_log) = (ann_rest.await.unwrap(), bob_rest.await.unwrap());
    println!("ann:\n{ann_log}\nbob:\n{bob_log}");
    assert!(oa.unwrap().success(), "ann: {ann_log}");
    assert!(ob.unwrap().success(), "bob: {bob_log}");
    let (ra, rb) = (read_report(&ra), read_report(&rb));
    for (report, other) in [(&ra, "bob"), (&rb, "ann")] {
        let p = received_from(report, other);
        // Either still there or gone at the end of the call, never dropped by the server.
        let left = p["left"].as_str().unwrap_or("Left");
        assert_eq!(
            left, "Left",
            "{other} dropped from {}'s call",
            report["name"]
        );
        assert!(
            p["last_stats"]["ice_restarts"].as_u64().unwrap_or(0) >= 1,
            "{} never restarted ICE: {:#}",
            report["name"],
            p["last_stats"]
        );
        // The freeze the outage caused ends within 2 s of the uplink's return.
        let gaps = p["video"]["quality"]["gaps"].as_array().unwrap();
        let resumed = gaps
            .iter()
            .filter_map(|g| g["ended_us"].as_u64())
            .find(|&end| end > back_us)
            .unwrap_or_else(|| panic!("no gap after the outage: {gaps:?}"));
        let late_ms = (resumed - back_us) / 1000;
        println!(
            "{} <- {other}: video back {late_ms} ms after the uplink",
            report["name"]
        );
        assert!(
            late_ms < 2000,
            "{} <- {other}: {late_ms} ms",
            report["name"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_that_lets_only_tcp_443_out_calls_through_the_servers_relay_over_tls() {
    let mut net = Internet::new();
    let (a, b) = (net.home(Nat::Firewall), net.home(Nat::Symmetric));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed_for(dir.path(), RELAY_IP);
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let turn = format!("{RELAY_IP}:{TURN_PORT}");
    let turns = format!("{RELAY_IP}:443");
    let _server = serve(
        &net,
        &[
            "--turn-listen",
            &turn,
            "--turn-tls-listen",
            &turns,
            "--tls-cert",
            cert_s,
            "--tls-key",
            key_s,
        ],
    )
    .await;
    // Only the TLS relay is on port 443; the certificate is the operator's own, which
    // both peers trust.
    let (ra, rb) = call_with_env(&a, &b, &[("CONFAB_CA_FILE", cert_s)]).await;
    let (ann, _) = assert_relayed(&ra, &rb);
    assert!(ann.starts_with("relay"), "ann sends over {ann:?}");
}
