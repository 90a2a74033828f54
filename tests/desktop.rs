//! The desktop app end to end under Xvfb: a headless peer sends the synthetic
//! pattern, the app (started with --join) draws it, and the barcode is read back
//! from real screenshots of the screen, so the pixels really crossed the network.
//! With a virtual sound card (PulseAudio), a tone goes from the app's microphone to
//! a headless peer and the peer's tone comes out of the app's speaker.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use confab::call::{ConnectionState, Event, TrackRole};
use confab::headless::{self, HeadlessOptions};
use confab::media::{barcode, dominant_frequency, level_dbfs};
use support::engine::{TestPeer, synthetic};
use support::pulse::{self, Pulse, ToneWriter};
use support::xvfb::{SCREEN, Xvfb};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The desktop app joining `room` at once, with no camera or microphone, logging
/// where it draws remote tiles.
fn start_app(x: &Xvfb, config: &Path, url: &str, room: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["--server", url, "--room", room, "--name", "Desk", "--join"])
        .args(["--camera", "none", "--microphone", "none"])
        .env("DISPLAY", &x.display)
        .env("XDG_CONFIG_HOME", config)
        .env("RUST_LOG", "confab::ui::layout=debug,error")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Types a key combination into the app's window, as a person would.
async fn press(x: &Xvfb, keys: &str) {
    let status = tokio::process::Command::new("xdotool")
        .args([
            "search",
            "--sync",
            "--name",
            "^confab$",
            "windowfocus",
            "--sync",
        ])
        .args(["key", "--clearmodifiers", keys])
        .env("DISPLAY", &x.display)
        .status()
        .await
        .expect("xdotool is installed (make test installs it)");
    assert!(status.success(), "xdotool {keys}");
}

/// Parses `remote tile peer=.. x=.. y=.. w=.. h=..` from the app's log.
fn tile_rect(line: &str) -> Option<(usize, usize, usize, usize)> {
    if !line.contains("remote tile") {
        return None;
    }
    let field = |k: &str| -> Option<usize> {
        let v = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))?;
        v.parse::<f32>().ok().map(|f| f.round() as usize)
    };
    Some((field("x")?, field("y")?, field("w")?, field("h")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_draws_a_remote_peers_frames_and_their_ids_advance_on_screen() {
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start().await;
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut o = HeadlessOptions::new(&url, "desk", "alice");
    o.seconds = 30.0;
    o.bind_addrs = vec!["127.0.0.1:0".into()];
    let peer = tokio::spawn(headless::run(o));

    let mut app = start_app(&x, dir.path(), &url, "desk");
    let mut log = BufReader::new(app.stderr.take().unwrap()).lines();
    // The app logs where it drew the remote camera tile once it has a frame.
    let (tx, ty, tw, th) = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let line = log.next_line().await.unwrap().expect("the app is running");
            if let Some(r) = tile_rect(&line) {
                return r;
            }
        }
    })
    .await
    .expect("a remote tile drawn within 40 s");
    assert!(
        tw > 100 && th > 75 && tx + tw <= SCREEN.0 && ty + th <= SCREEN.1,
        "{tx} {ty} {tw} {th}"
    );

    let read = |px: &[u8]| barcode::read_rgba_region(px, SCREEN.0, tx, ty, tw, th);
    // The first screenshot may precede the first painted frame by a moment.
    let mut first = None;
    for _ in 0..20 {
        first = read(&x.screenshot(dir.path()).await);
        if first.is_some() {
            break;
        }
    }
    let first = first.expect("a barcode in the remote tile");
    tokio::time::sleep(Duration::from_secs(1)).await; // the spec: two shots a second apart
    let second = read(&x.screenshot(dir.path()).await).expect("a barcode a second later");
    assert!(
        second.frame_id > first.frame_id + 10,
        "frame ids advance on screen: {} then {}",
        first.frame_id,
        second.frame_id
    );
    let _ = app.kill().await;
    peer.abort();
    drop(x);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_shares_its_screen_at_the_screens_size_and_stopping_removes_the_track() {
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start().await;
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut peer = TestPeer::join(&url, "screen", "watcher", synthetic(320, 240, 440.0)).await;
    let _app = start_app(&x, dir.path(), &url, "screen");
    let app_id = peer
        .until("the app joins", |e| match e {
            Event::PeerJoined { id, .. } => Some(id.clone()),
            _ => None,
        })
        .await;
    peer.until("connected to the app", |e| match e {
        Event::Connection { id, state }
            if *id == app_id && *state == ConnectionState::Connected =>
        {
            Some(())
        }
        _ => None,
    })
    .await;

    press(&x, "ctrl+shift+s").await;
    peer.until("the screen track", |e| match e {
        Event::TrackAdded { peer, track, .. } if *peer == app_id && *track == TrackRole::Screen => {
            Some(())
        }
        _ => None,
    })
    .await;
    // Stats tick every second: wait for decoded screen frames.
    for tick in 0.. {
        let screen = peer.analyzer.video(&app_id, TrackRole::Screen);
        if screen.frames_decoded >= 5 {
            assert_eq!((screen.width, screen.height), SCREEN, "the whole X screen");
            break;
        }
        assert!(tick < 20, "no screen frames decoded: {screen:?}");
        peer.until("a stats tick", |e| {
            matches!(e, Event::Stats(_)).then_some(())
        })
        .await;
    }
    assert_eq!(
        peer.analyzer
            .video(&app_id, TrackRole::Camera)
            .frames_decoded,
        0,
        "the app has no camera: the frames came from the screen track"
    );

    let stop_pressed = peer.seen.len();
    press(&x, "ctrl+shift+s").await;
    peer.until("the screen track removed", |e| match e {
        Event::TrackRemoved { peer, track } if *peer == app_id && *track == TrackRole::Screen => {
            Some(())
        }
        _ => None,
    })
    .await;
    let cleared = |e: &Event| match e {
        Event::PeerMediaState { id, state } if *id == app_id && !state.screen_sharing => Some(()),
        _ => None,
    };
    if !peer.seen[stop_pressed..]
        .iter()
        .any(|e| cleared(e).is_some())
    {
        peer.until("the sharing mark cleared", cleared).await;
    }
}

/// Tones of the two ends: the app's (virtual) microphone and the headless peer.
const MIC_HZ: f32 = 440.0;
const PEER_HZ: f32 = 1000.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_sends_its_microphone_and_plays_the_peer_on_its_speaker() {
    let dir = tempfile::tempdir().unwrap();
    // One PulseAudio daemon for this test: vmic is fed MIC_HZ, vspk is recorded.
    let pulse = Pulse::start();
    let _mic = ToneWriter::start(&pulse.fifo, MIC_HZ, 0.5);
    let recorder = pulse.recorder("vspk.monitor");
    // Its first samples mean the null sink renders in short steps (support::pulse).
    recorder.wait_for(4_800, Duration::from_secs(10));
    let x = Xvfb::start().await;
    let srv = support::server().await;
    let url = srv.ws_url();

    let mut app = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "--server", &url, "--room", "tones", "--name", "Desk", "--join",
        ])
        .args(["--camera", "none", "--microphone", "pulse"])
        .env("DISPLAY", &x.display)
        .env("XDG_CONFIG_HOME", dir.path())
        .envs(pulse.client_env())
        .env(
            "RUST_LOG",
            "warn,webrtc=error,rtc=error,confab::ui::bridge=info",
        )
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Forward the app's log (so its pipe never fills) and keep it for failures.
    let (log_tx, mut log) = tokio::sync::mpsc::unbounded_channel();
    let mut lines = BufReader::new(app.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    // The app logs the devices it opened when it joins.
    tokio::time::timeout(Duration::from_secs(40), async {
        while !(seen
            .iter()
            .any(|l: &String| l.contains("playing through speaker"))
            && seen
                .iter()
                .any(|l| l.contains("sending audio from microphone")))
        {
            match log.recv().await {
                Some(line) => seen.push(line),
                None => panic!("the app exited:\n{}", seen.join("\n")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the app did not join within 40 s:\n{}", seen.join("\n")));

    let report_path = dir.path().join("peer.json");
    let peer = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "headless", "--server", &url, "--room", "tones", "--name", "peer",
        ])
        .args(["--video", "none", "--audio", "synthetic", "--seconds", "10"])
        .args(["--tone-hz", &PEER_HZ.to_string(), "--bind", "127.0.0.1"])
        .arg("--report")
        .arg(&report_path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(40), peer.wait_with_output())
        .await
        .expect("the headless peer ends within 40 s")
        .unwrap();
    let _ = app.kill().await;
    while let Ok(line) = log.try_recv() {
        seen.push(line);
    }
    let app_log = seen.join("\n");
    assert!(
        out.status.success(),
        "headless: {}\napp:\n{app_log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcm = recorder.stop();

    // The app's microphone, as the peer received it (measured over its last 2 s).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let from_app = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Desk")
        .unwrap_or_else(|| panic!("no audio from the app: {report:#}\napp:\n{app_log}"));
    let audio = &from_app["audio"];
    let got_hz = audio["tone_hz"].as_f64().unwrap_or(0.0) as f32;
    let got_db = audio["level_dbfs"].as_f64().unwrap_or(-120.0) as f32;

    // The peer's tone, as the app played it: 100 ms blocks that are mostly PEER_HZ.
    let block = 4_800;
    let blocks = pulse::tone_blocks(&pcm, PEER_HZ, block, 0.15, 0.6);
    let tone_s = blocks.iter().filter(|b| **b).count() as f32 * 0.1;
    // The second with the most of it, for its frequency and level.
    let best = (0..blocks.len().saturating_sub(10))
        .max_by_key(|i| blocks[*i..i + 10].iter().filter(|b| **b).count())
        .unwrap_or(0);
    let second = &pcm[best * block..((best + 10) * block).min(pcm.len())];
    let (heard_hz, heard_db) = (dominant_frequency(second, 48_000), level_dbfs(second));
    for line in seen.iter().filter(|l| l.contains("confab::")) {
        println!("app: {line}");
    }
    println!(
        "peer received {got_hz:.1} Hz at {got_db:.1} dBFS ({} packets); speaker played \
         {PEER_HZ} Hz for {tone_s:.1} s of {:.1} s recorded, {heard_hz:.1} Hz at {heard_db:.1} dBFS",
        audio["packets_received"],
        pcm.len() as f32 / 48_000.0
    );
    // Noise suppression (on with echo cancellation) takes a steady tone for noise and
    // lowers it by about 19 dB (-9 dBFS in, about -28 out); silence would be -120.
    assert!(
        (got_hz - MIC_HZ).abs() <= 5.0 && got_db > -40.0,
        "the peer got {got_hz} Hz at {got_db} dBFS: {audio:#}\napp:\n{app_log}"
    );
    assert!(
        tone_s >= 5.0,
        "the speaker played the peer's tone for {tone_s:.1} s\napp:\n{app_log}"
    );
    assert!(
        (heard_hz - PEER_HZ).abs() <= 5.0 && heard_db > -20.0,
        "the speaker played {heard_hz} Hz at {heard_db} dBFS"
    );
    drop(x);
}

/// Someone starting the app from a terminal on a machine where ALSA finds no sound card
/// (here the card ALSA_CARD names does not exist) sees the app's own log, not alsa-lib's
/// and JACK's chatter from the device scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_shows_the_apps_log_and_not_the_sound_librarys_chatter() {
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start().await;
    let mut app = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .env("DISPLAY", &x.display)
        .env("XDG_CONFIG_HOME", dir.path())
        .env("ALSA_CARD", "confab-no-such-card")
        .env("RUST_LOG", "info,confab::ui::choices=debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(app.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The lobby scans the devices at start and logs what it found.
    tokio::time::timeout(Duration::from_secs(40), async {
        while !seen.iter().any(|l: &String| l.contains("devices:")) {
            match lines.next_line().await.unwrap() {
                Some(line) => seen.push(line),
                None => panic!("the app exited:\n{}", seen.join("\n")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no device scan logged:\n{}", seen.join("\n")));
    let _ = app.kill().await;
    let log = seen.join("\n");
    assert!(
        log.contains("signaling server listening"),
        "the app's own log: {log}"
    );
    assert!(
        !log.contains("ALSA lib") && !log.contains("jack server"),
        "library noise on the terminal:\n{log}"
    );
}

/// Asked to quit (SIGTERM, what a session manager sends at logout), the app closes its
/// window and leaves the call first: the others see it leave at once, not after the
/// server's resume grace for a link that dropped (30 s of a frozen tile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_asked_to_quit_leaves_the_call_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start().await;
    let srv = support::server().await;
    let mut bob = support::Raw::joined(&srv, "bye", "bob").await;
    let mut app = start_app(&x, dir.path(), &srv.ws_url(), "bye");
    // The window opens and joins at its own pace (a debug build under Xvfb).
    let desk = loop {
        let m = bob.recv_within(Duration::from_secs(60)).await;
        if m["type"] == "peer_joined" {
            break m;
        }
    };
    let desk = &desk["member"];
    assert_eq!(desk["name"], "Desk");

    let pid = app.id().expect("the app is running") as libc::pid_t;
    // SAFETY: a signal to the child this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let left = loop {
        let m = bob.recv().await;
        if m["type"] == "peer_left" {
            break m;
        }
    };
    assert_eq!(left["id"], desk["id"]);
    assert_eq!(left["reason"], "left", "{left}");
    let status = tokio::time::timeout(Duration::from_secs(10), app.wait())
        .await
        .expect("the app ends after leaving")
        .unwrap();
    assert!(status.success(), "the app ended with {status}");
    drop(x);
}
