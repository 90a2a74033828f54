//! Browser guests: Debian's Chromium, driven by playwright-core (`tests/browser/guest.mjs`),
//! joins through the page the signaling server serves. The browser's fake camera plays a
//! y4m of confab's barcoded frames and its fake microphone a tone, so both directions are
//! checked by content, not just by counts.
//!
//! Needs `/usr/bin/chromium` and `npm ci --prefix tests/browser` (`make test` does both);
//! without them these tests fail and say so.

use super::files::{write_wav, write_y4m};
use super::from;
use super::internet::Ns;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use confab::headless::{HeadlessOptions, Report};
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const GUEST_TONE_HZ: f32 = 1000.0;

/// Two Chromiums at once are all this 2-core machine takes; tests run one at a time.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

pub fn require_browser() {
    // RUST_LOG=... shows the headless peers' logs in a failing test's output (the page's
    // side: CONFAB_GUEST_DEBUG, see guest.mjs).
    super::test_logs();
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`.ci/deps.sh browser`, which `make test` runs)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (`make test` does)"
    );
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub video: PathBuf,
    pub audio: PathBuf,
}

pub fn fixture(seconds: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (video, audio) = (dir.path().join("camera.y4m"), dir.path().join("tone.wav"));
    write_y4m(&video, 320, 240, 20, (20 * seconds) as u32);
    write_wav(&audio, GUEST_TONE_HZ, 5.0, 48_000, 1);
    Fixture { dir, video, audio }
}

/// Starts one Chromium guest; its JSON result comes from [`guest_result`].
pub fn spawn_guest(
    fx: &Fixture,
    page_url: &str,
    seconds: f64,
    actions: Value,
) -> tokio::process::Child {
    spawn_guest_with(fx, page_url, seconds, actions, json!({}))
}

/// [`spawn_guest`] with more settings for guest.mjs (e.g. `trust_spki`).
pub fn spawn_guest_with(
    fx: &Fixture,
    page_url: &str,
    seconds: f64,
    actions: Value,
    extra: Value,
) -> tokio::process::Child {
    spawn_guest_in(None, fx, page_url, seconds, actions, extra)
}

/// [`spawn_guest_with`] in network namespace `ns` (a home of a simulated internet).
pub fn spawn_guest_in(
    ns: Option<&Ns>,
    fx: &Fixture,
    page_url: &str,
    seconds: f64,
    actions: Value,
    extra: Value,
) -> tokio::process::Child {
    let profile = tempfile::Builder::new()
        .prefix("chromium-")
        .tempdir_in(fx.dir.path())
        .unwrap()
        .keep();
    let mut cfg = json!({
        "url": page_url,
        "user_data_dir": profile,
        "video": fx.video,
        "audio": fx.audio,
        "seconds": seconds,
        "actions": actions,
        "chromium": CHROMIUM,
    });
    if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        cfg.extend(extra.clone());
    }
    let mut node = match ns {
        Some(ns) => ns.command("node"),
        None => tokio::process::Command::new("node"),
    };
    node.arg(browser_dir().join("guest.mjs"))
        .arg(cfg.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (install nodejs: `.ci/deps.sh browser`)")
}

pub async fn guest_result(child: tokio::process::Child) -> Value {
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the guest finishes within 90 s")
        .unwrap();
    checked_result(
        out.status,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

/// A guest started with `watch` in its settings: its `{"event": …}` lines arrive as it
/// prints them, so a test can act when the pages got somewhere, not after a guess.
pub struct WatchedGuest {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    printed: Vec<String>,
}

impl WatchedGuest {
    pub fn new(mut child: tokio::process::Child) -> Self {
        use tokio::io::AsyncBufReadExt;
        let out = child.stdout.take().expect("the guest's stdout is piped");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut out = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(line)) = out.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            printed: Vec::new(),
        }
    }

    /// The next `{"event": what}` line, or `Value::Null` when the guest finished first
    /// (its result then tells why); within 90 s.
    pub async fn event(&mut self, what: &str) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(90), async {
            while let Some(line) = self.lines.recv().await {
                self.printed.push(line.clone());
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v["event"] == what => return v,
                    Ok(v) if v.get("errors").is_some() => return Value::Null,
                    _ => {}
                }
            }
            Value::Null
        })
        .await;
        next.unwrap_or_else(|_| panic!("no {what:?} from the guest in 90 s: {:?}", self.printed))
    }

    /// Writes `line` to the guest (`mark`, `done`); a guest that already finished is not
    /// listening, and its result says why.
    pub async fn tell(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
        }
    }

    pub async fn result(mut self) -> Value {
        // A guest still waiting to be told something finishes when its input ends.
        drop(self.child.stdin.take());
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = tokio::time::timeout(Duration::from_secs(90), err.read_to_string(&mut stderr))
                .await;
        }
        let status = tokio::time::timeout(Duration::from_secs(90), self.child.wait())
            .await
            .expect("the guest finishes within 90 s")
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.printed.push(line);
        }
        checked_result(status, &self.printed.join("\n"), &stderr)
    }
}

fn checked_result(status: std::process::ExitStatus, stdout: &str, stderr: &str) -> Value {
    let v: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("guest printed no result\nstdout: {stdout}\nstderr: {stderr}"));
    assert!(
        status.success(),
        "guest failed: {:#}\nstderr: {stderr}",
        v["errors"]
    );
    // Opening a link is not joining: the page waited, form filled in, for the click.
    let before = &v["before_click"];
    assert_eq!(before["joined"], false, "the link alone joined: {before}");
    assert_eq!(before["form_shown"], true, "{before}");
    assert!(
        before["room"].as_str().is_some_and(|r| !r.is_empty())
            && before["name"].as_str().is_some_and(|n| !n.is_empty()),
        "the link's room and name fill the form: {before}"
    );
    v
}

pub fn page_url(srv: &confab::signaling::Server, room: &str, name: &str) -> String {
    format!(
        "http://{}/?room={room}&name={name}&audio=raw",
        srv.local_addr()
    )
}

pub fn hal(url: &str, room: &str, seconds: f64) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, room, "hal");
    o.seconds = seconds;
    o.tone_hz = 440.0;
    o.size = (640, 480);
    o.bitrate_bps = 800_000;
    o.bind_addrs = vec!["127.0.0.1:0".into()];
    o
}

/// What a page received from `name`, while connected or after it left.
pub fn page_peer<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["peers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(snapshot["closed_peers"].as_array().unwrap())
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("the page has no peer {name}: {snapshot:#}"))
}

/// The headless peer got the guest's camera (barcodes in order) and, unless the guest
/// muted (the analyser measures the tone at the end), its tone.
pub fn assert_headless_got_guest(report: &Report, guest: &str, min_frames: u64, tone: bool) {
    let got = from(report, guest);
    let v = &got.video;
    assert!(v.frames_decoded >= min_frames, "from {guest}: {got:#?}");
    assert_eq!((v.width, v.height), (320, 240), "{v:?}");
    assert!(v.ids_in_order, "{guest}'s barcode ids out of order: {v:?}");
    assert!(
        v.ids_read as f64 >= 0.95 * v.frames_decoded as f64,
        "barcodes read: {v:?}"
    );
    let au = &got.audio;
    assert!(au.packets_received >= 150, "{au:?}");
    if !tone {
        return;
    }
    let tone = au.tone_hz.expect("the guest's tone measured");
    assert!(
        (tone - GUEST_TONE_HZ).abs() < 5.0,
        "heard {tone} Hz from {guest}"
    );
}

/// The page decoded `from`'s frames: barcode ids read from its canvas, in order.
pub fn assert_page_got_frames(snapshot: &Value, from: &str, min_frames: u64) {
    let p = page_peer(snapshot, from);
    let cam = &p["camera"];
    let frames = cam["frames"].as_u64().unwrap_or(0);
    assert!(frames >= min_frames, "page got from {from}: {p:#}");
    assert_eq!(cam["ids_in_order"], true, "{p:#}");
    assert!(
        cam["ids_read"].as_u64().unwrap() as f64 >= 0.9 * frames as f64,
        "{p:#}"
    );
    assert!(!p["no_common_video_codec"].as_bool().unwrap(), "{p:#}");
}

/// A plain HTTP/1.1 GET (no client crate needed for this): lower-cased head, body.
pub async fn http_get(srv: &confab::signaling::Server, path: &str) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(srv.local_addr())
        .await
        .unwrap();
    let text = super::http_get(tcp, &srv.local_addr().to_string(), path).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_lowercase(), body.to_string())
}

/// Until the server's counters show the page in (30 s at most): the server reports no
/// event for a join, so its metrics are read every 20 ms.
pub async fn until_page_joined(
    srv: &confab::signaling::Server,
    joined: impl Fn(&confab::signaling::MetricsSnapshot) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !joined(&srv.metrics()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never joined"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
