//! `confab headless` as a user runs it: file sources, ringing between two
//! processes, a JSON report, and a failing exit code when nothing arrives.

mod support;

use support::files::{write_wav, write_y4m};

use std::path::Path;

fn headless(url: &str, name: &str, extra: &[&str], report: &Path) -> tokio::process::Command {
    let mut c = support::headless_command(url, "cli", name, extra);
    c.args(["--report", report.to_str().unwrap()]);
    c
}

/// Runs bob (`bob_args`) and ada (`ada_args`) in one room until both exit, checks both
/// succeeded and returns bob's report.
async fn ada_and_bob(
    url: &str,
    dir: &Path,
    ada_args: &[&str],
    bob_args: &[&str],
) -> serde_json::Value {
    let (ra, rb) = (dir.join("a.json"), dir.join("b.json"));
    let b = headless(url, "bob", bob_args, &rb).spawn().unwrap();
    let a = headless(url, "ada", ada_args, &ra).spawn().unwrap();
    let (a, b) = (
        a.wait_with_output().await.unwrap(),
        b.wait_with_output().await.unwrap(),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    serde_json::from_slice(&std::fs::read(&rb).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_reach_a_peer_that_answers_a_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (video, audio) = (dir.path().join("in.y4m"), dir.path().join("in.wav"));
    write_y4m(&video, 320, 240, 30, 90);
    write_wav(&audio, 1000.0, 2.0, 44_100, 2);
    let srv = support::server().await;
    let url = srv.ws_url();
    let video_arg = format!("y4m:{}", video.display());
    let audio_arg = format!("wav:{}", audio.display());
    let ada = [
        "--video",
        &video_arg,
        "--audio",
        &audio_arg,
        "--call",
        "bob",
        "--seconds",
        "5",
    ];
    let report = ada_and_bob(&url, dir.path(), &ada, &["--auto-answer", "--seconds", "5"]).await;
    assert!(
        report["room"].as_str().unwrap().starts_with("call:"),
        "bob ended in the private call room: {report:#}"
    );
    let from_ada = &report["peers"][0];
    assert_eq!(from_ada["name"], "ada");
    let v = &from_ada["video"];
    assert!(v["frames_decoded"].as_u64().unwrap() >= 30, "{v:#}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    // The file loops (ids restart), so order is checked within the first pass only by the
    // barcode reader having read ids at all.
    assert!(v["ids_read"].as_u64().unwrap() >= 30, "{v:#}");
    let tone = from_ada["audio"]["tone_hz"].as_f64().unwrap();
    assert!(
        (tone - 1000.0).abs() < 5.0,
        "heard {tone} Hz from the wav file"
    );
    for key in ["connect_ms", "first_frame_ms"] {
        assert!(from_ada[key].as_u64().is_some(), "{key} in {from_ada:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_arrives_beside_the_camera_at_its_own_size() {
    let dir = tempfile::tempdir().unwrap();
    let srv = support::server().await;
    let url = srv.ws_url();
    let ada = ["--share-screen", "synthetic", "--seconds", "5"];
    let report = ada_and_bob(&url, dir.path(), &ada, &["--seconds", "5"]).await;
    let from_ada = &report["peers"][0];
    let (camera, screen) = (&from_ada["video"], &from_ada["screen"]);
    // The camera's 640x480 or a rung of its ladder below it: its estimate starts low
    // and, on a busy machine, may not have climbed back in 5 s.
    let (w, h) = (
        camera["width"].as_u64().unwrap_or(0),
        camera["height"].as_u64().unwrap_or(0),
    );
    assert!(
        (160..=640).contains(&w) && w * 3 == h * 4,
        "camera at {w}x{h}: {camera:#}"
    );
    assert_eq!(
        (screen["width"].as_u64(), screen["height"].as_u64()),
        (Some(1280), Some(720))
    );
    // The screen's frames are read back from their pixels, in order.
    assert!(screen["ids_read"].as_u64().unwrap() >= 20, "{screen:#}");
    assert_eq!(screen["ids_in_order"], true, "{screen:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_nobody_to_talk_to_exits_with_failure_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let srv = support::server().await;
    let out = headless(
        &srv.ws_url(),
        "alone",
        &["--seconds", "1"],
        &dir.path().join("r.json"),
    )
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no media arrived"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["peers"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_before_connecting() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "headless",
            "--server",
            "ws://127.0.0.1:1/ws",
            "--size",
            "641x480",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--size"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["headless", "--server", "ws://127.0.0.1:1/ws"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_loopback_run_prints_no_warnings_from_the_webrtc_stack() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .arg("loopback")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    // Its own report is still there.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("loopback call OK"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_given_on_the_command_line_reaches_the_other_peer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = support::server().await;
    let url = srv.ws_url();
    let (ra, rb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let text = "hello from the command line";
    let a = headless(&url, "ann", &["--seconds", "4", "--chat", text], &ra)
        .spawn()
        .unwrap();
    let b = headless(&url, "bob", &["--seconds", "4"], &rb)
        .spawn()
        .unwrap();
    let (a, b) = tokio::join!(a.wait_with_output(), b.wait_with_output());
    assert!(a.unwrap().status.success() && b.unwrap().status.success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&rb).unwrap()).unwrap();
    let from_ann = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ann")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(from_ann["chat"], serde_json::json!([text]));
}
