//! The signaling server is killed mid-call and started again: the call's media, which
//! flows peer to peer, never stops, and both members come back as themselves (the
//! server kept its rooms in `--state-file`). Chat, which travels peer to peer too, is
//! typed during the outage and arrives. A room whose media goes through Janus keeps its
//! VideoRoom. Run under `.ci/netns` (Janus adds an interface).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod support;

use serde_json::Value;
use support::janus::Janus;
use support::logs::{await_line, rest_of, stderr_lines, until_serving};
use tokio::io::{AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// `confab serve` on `addr`, keeping its state in `state`; up once it says where. Its
/// log (piped) says when it has written the state.
async fn serve(addr: &str, state: &Path) -> Child {
    serve_with(addr, state, &[]).await
}

async fn serve_with(addr: &str, state: &Path, extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--listen", addr, "--no-stun", "--state-file"])
        .arg(state)
        .args(extra)
        .env(
            "RUST_LOG",
            "warn,confab::signaling::server::snapshot=debug,confab::sfu::rooms=info",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_serving(&mut child).await;
    child
}

fn peer(addr: &str, name: &str, report: &Path) -> Child {
    peer_with(addr, name, report, &["--bind", "127.0.0.1"])
}

fn peer_with(addr: &str, name: &str, report: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["headless", "--server", &format!("ws://{addr}/ws")])
        .args(["--room", "restart", "--name", name, "--seconds", "10"])
        .args(["--size", "320x240"])
        .args(extra)
        .arg("--report")
        .arg(report)
        .arg("--chat-stdin")
        .env(
            "RUST_LOG",
            "error,confab::headless=info,confab::call::session=info",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_goes_on_while_the_server_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let addr = free_addr();
    let mut server = serve(&addr, &state).await;
    let mut server_log = stderr_lines(&mut server);
    let (ra, rb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let (mut pa, mut pb) = (peer(&addr, "ann", &ra), peer(&addr, "bob", &rb));
    let (mut ann_log, mut bob_log) = (stderr_lines(&mut pa), stderr_lines(&mut pb));
    await_line(&mut ann_log, "first keyframe").await;
    await_line(&mut bob_log, "first keyframe").await;

    // A crash: no goodbye to anyone (after the state has been written: what changed in
    // the last 100 ms before a crash is lost). Down for 1.5 s, then the same server again.
    await_line(&mut server_log, "state written: 2 members").await;
    server.kill().await.unwrap();
    // Ann types while the server is down.
    await_line(&mut ann_log, "signaling link lost").await;
    let mut keys = pa.stdin.take().unwrap();
    keys.write_all(b"typed while the server was down\n")
        .await
        .unwrap();
    await_line(&mut ann_log, "chat sent").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut server = serve(&addr, &state).await;
    let _server_log = rest_of(stderr_lines(&mut server));
    // Both come back as themselves.
    let (ra, rb) = both_back((pa, ann_log, &ra), (pb, bob_log, &rb)).await;
    for (report, other) in [(&ra, "bob"), (&rb, "ann")] {
        let name = &report["name"];
        // One peer of that name: it never left and came back as someone new.
        let peers: Vec<&Value> = report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == other)
            .collect();
        assert_eq!(
            peers.len(),
            1,
            "{name} met {other} more than once: {report:#}"
        );
        let p = peers[0];
        assert_eq!(p["left"].as_str().unwrap_or("Left"), "Left", "{p:#}");
        let v = &p["video"];
        assert_eq!(v["ids_in_order"], true, "{p:#}");
        assert!(
            v["frames_decoded"].as_u64().unwrap() >= 150,
            "{name}: {v:#}"
        );
        // The picture never stopped for the outage.
        let longest = v["quality"]["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["ms"].as_f64())
            .fold(0.0, f64::max);
        assert!(longest < 500.0, "{name} <- {other}: a {longest} ms gap");
    }
    let ann_in_bobs = rb["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ann");
    assert_eq!(
        ann_in_bobs.unwrap()["chat"],
        serde_json::json!(["typed while the server was down"]),
        "bob's report: {rb:#}"
    );
}

/// Waits until both peers say they resumed as themselves and their runs end well;
/// returns their reports.
async fn both_back(
    (a, mut a_log, a_report): (Child, Lines<BufReader<ChildStderr>>, &Path),
    (b, mut b_log, b_report): (Child, Lines<BufReader<ChildStderr>>, &Path),
) -> (Value, Value) {
    await_line(&mut a_log, "signaling link back, same member").await;
    await_line(&mut b_log, "signaling link back, same member").await;
    let (mut a, mut b) = (a, b);
    let (a_rest, b_rest) = (rest_of(a_log), rest_of(b_log));
    let (oa, ob) = tokio::join!(a.wait(), b.wait());
    let (a_log, b_log) = (a_rest.await.unwrap(), b_rest.await.unwrap());
    assert!(oa.unwrap().success(), "{}: {a_log}", a_report.display());
    assert!(ob.unwrap().success(), "{}: {b_log}", b_report.display());
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    (read(a_report), read(b_report))
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The longest gap between pictures `report` shows from `other`, after the first.
fn longest_gap(report: &Value, other: &str) -> f64 {
    report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == other)
        .flat_map(|p| {
            p["video"]["quality"]["gaps"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|g| g["ms"].as_f64())
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sfu_room_keeps_its_videoroom_across_a_server_restart() {
    let janus = Janus::start();
    let sfu = format!("janus={}", janus.url());
    let bind = janus.bind_addr();
    let bind = bind.trim_end_matches(":0");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let addr = free_addr();
    let args = ["--sfu", sfu.as_str()];
    let mut server = serve_with(&addr, &state, &args).await;
    let mut server_log = stderr_lines(&mut server);
    let (ra, rb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let mut pa = peer_with(&addr, "ann", &ra, &["--bind", bind, "--ask-sfu"]);
    let mut ann_log = stderr_lines(&mut pa);
    await_line(&mut ann_log, "media moves to the SFU").await;
    let mut pb = peer_with(&addr, "bob", &rb, &["--bind", bind]);
    let mut bob_log = stderr_lines(&mut pb);
    await_line(&mut ann_log, "first keyframe").await;
    await_line(&mut bob_log, "first keyframe").await;

    // A crash (after the state has been written), down for 1.5 s, the same server again.
    await_line(&mut server_log, "state written: 2 members").await;
    server.kill().await.unwrap();
    await_line(&mut ann_log, "signaling link lost").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut server = serve_with(&addr, &state, &args).await;
    let mut server_log = stderr_lines(&mut server);
    await_line(
        &mut server_log,
        "the VideoRoom from before the restart is still there",
    )
    .await;
    let _server_log = rest_of(server_log);
    let (ra, rb) = both_back((pa, ann_log, &ra), (pb, bob_log, &rb)).await;
    for (report, other) in [(ra, "bob"), (rb, "ann")] {
        let name = &report["name"];
        // Through the SFU all along: never moved to a mesh and back.
        assert_eq!(
            report["media"],
            serde_json::json!(["sfu"]),
            "{name}: {report:#}"
        );
        let p = report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == other)
            .unwrap_or_else(|| panic!("{name} never met {other}"));
        let v = &p["video"];
        assert_eq!(v["ids_in_order"], true, "{p:#}");
        assert!(
            v["frames_decoded"].as_u64().unwrap() >= 150,
            "{name}: {v:#}"
        );
        let longest = longest_gap(&report, other);
        assert!(longest < 500.0, "{name} <- {other}: a {longest} ms gap");
    }
}
