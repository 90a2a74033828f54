//! The desktop app end to end under Xvfb: a headless peer sends the synthetic
//! pattern, the app (started with --join) draws it, and the barcode is read back
//! from real screenshots of the screen, so the pixels really crossed the network.

mod support;

use std::process::Stdio;
use std::time::Duration;

use confab::headless::{self, HeadlessOptions};
use confab::media::barcode;
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

    let mut app = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "--server", &url, "--room", "desk", "--name", "Desk", "--join",
        ])
        .args(["--camera", "none", "--microphone", "none"])
        .env("DISPLAY", &x.display)
        .env("XDG_CONFIG_HOME", dir.path())
        .env("RUST_LOG", "confab::ui::layout=debug,error")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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
