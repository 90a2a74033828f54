//! Test calls: the server's echo peer sends back what it receives, so a caller sees and
//! hears itself through the real path (signaling, ICE, both codecs, both ways).

mod support;

use std::process::Stdio;
use std::time::Duration;

use confab::echo::{ECHO_NAME, EchoPeers};
use confab::headless::{self, HeadlessOptions};

fn caller(url: &str, tone_hz: f32, seconds: f64) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, "unused", "Ada");
    o.test_call = true;
    o.seconds = seconds;
    o.tone_hz = tone_hz;
    o.bind_addrs = vec!["127.0.0.1:0".into()];
    o.chat = Some("can you hear me?".into());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gets_its_own_pictures_sound_and_chat_back_with_the_round_trip() {
    let srv = support::server_with(|c| c.echo = Some(EchoPeers::config(2))).await;
    let report = headless::run(caller(&srv.ws_url(), 660.0, 5.0))
        .await
        .unwrap();

    assert!(report.room.starts_with("echo:"), "{}", report.summary());
    assert_eq!(report.peers.len(), 1, "{}", report.summary());
    let echo = &report.peers[0];
    assert_eq!(echo.name, ECHO_NAME);
    // The echo has no source of its own: every barcode read is one of ours, back.
    let v = &echo.video;
    assert!(v.ids_read >= 60, "{}", report.summary());
    assert!(v.ids_in_order, "{}", report.summary());
    // Frame ids count our camera's 30 fps slots from the start.
    assert!(
        f64::from(v.last_id.unwrap()) <= report.seconds * 30.0 + 1.0,
        "ids back are ids we sent: {}",
        report.summary()
    );
    let tone = echo.audio.tone_hz.expect("sound came back");
    assert!((tone - 660.0).abs() < 15.0, "our 660 Hz tone, got {tone}");
    assert_eq!(echo.chat, ["can you hear me?"]);
    let rt = report.round_trip_ms.as_ref().expect("a round trip");
    assert!(
        rt.p50 > 0.0 && rt.p50 <= rt.p95,
        "round trip {rt:?} from our own clock"
    );

    // The caller left: so does the echo, and its place is free again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while srv.metrics().test_calls > 0 || srv.metrics().rooms > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the echo stayed after its caller left: {:?}",
            srv.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_offers_test_calls_only_with_serve_echo() {
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-stun", "--echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = support::first_line_url(serve.stdout.take().unwrap()).await;
    let test_call = [
        "headless",
        "--server",
        &url,
        "--test-call",
        "--bind",
        "127.0.0.1",
    ];
    let out = run_cli(&[&test_call[..], &["--seconds", "2"]].concat()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["peers"][0]["name"], ECHO_NAME, "{report:#}");
    assert!(
        report["round_trip_ms"]["p50"].as_f64().is_some(),
        "{report:#}"
    );

    // A server without echo peers says so.
    let plain = support::server().await;
    let plain_url = plain.ws_url();
    let out = run_cli(&[
        "headless",
        "--server",
        &plain_url,
        "--test-call",
        "--seconds",
        "2",
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("echo_unavailable") && err.contains("--echo"),
        "{err}"
    );
}
