//! The desktop app end to end under Xvfb: a headless peer sends the synthetic
//! pattern, the app (started with --join) draws it, and the barcode is read back
//! from real screenshots of the screen, so the pixels really crossed the network.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use confab::call::{CAMERA_TRACK, ConnectionState, Event, SCREEN_TRACK};
use confab::headless::{self, HeadlessOptions};
use confab::media::barcode;
use support::engine::{TestPeer, synthetic};
use tokio::io::{AsyncBufReadExt, BufReader};

const SCREEN: (usize, usize) = (1280, 720);

/// A virtual X display; Xvfb picks a free number and reports it when ready.
struct Xvfb {
    // Held so the display lives as long as the test (killed on drop).
    _child: tokio::process::Child,
    display: String,
}

impl Xvfb {
    async fn start() -> Xvfb {
        let mut child = tokio::process::Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{}x{}x24", SCREEN.0, SCREEN.1))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Xvfb is installed (make test installs it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let n = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("Xvfb ready within 20 s")
            .unwrap()
            .expect("Xvfb printed its display number");
        Xvfb {
            _child: child,
            display: format!(":{}", n.trim()),
        }
    }

    /// The whole screen as RGBA.
    async fn screenshot(&self, dir: &std::path::Path) -> Vec<u8> {
        let path = dir.join("shot.rgba");
        let status = tokio::process::Command::new("import")
            .args(["-display", &self.display, "-window", "root", "-depth", "8"])
            .arg(format!("rgba:{}", path.display()))
            .status()
            .await
            .expect("imagemagick's import is installed");
        assert!(status.success());
        let px = std::fs::read(path).unwrap();
        assert_eq!(px.len(), SCREEN.0 * SCREEN.1 * 4);
        px
    }
}

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
        Event::TrackAdded { peer, track, .. } if *peer == app_id && track == SCREEN_TRACK => {
            Some(())
        }
        _ => None,
    })
    .await;
    // Stats tick every second: wait for decoded screen frames.
    for tick in 0.. {
        let screen = peer.analyzer.video(&app_id, SCREEN_TRACK);
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
        peer.analyzer.video(&app_id, CAMERA_TRACK).frames_decoded,
        0,
        "the app has no camera: the frames came from the screen track"
    );

    let stop_pressed = peer.seen.len();
    press(&x, "ctrl+shift+s").await;
    peer.until("the screen track removed", |e| match e {
        Event::TrackRemoved { peer, track } if *peer == app_id && track == SCREEN_TRACK => Some(()),
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
