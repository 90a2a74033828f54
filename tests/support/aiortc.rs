//! An independent WebRTC peer: aiortc (Python), driven by `tests/interop/peer.py`, which
//! speaks confab's protocol as docs/PROTOCOL.md describes it. It sends a y4m of barcoded
//! frames and a tone, and records what it receives, so both directions are checked by
//! content.
//!
//! Needs the venv `tests/interop/.venv` (`make interop-deps`, which `make test` runs).
//! `CONFAB_AIORTC_LOG=1` prints the aiortc side's log.

use super::files::{write_wav, write_y4m};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

pub const AIORTC_TONE_HZ: f32 = 1000.0;
pub const AIORTC_SIZE: (usize, usize) = (320, 240);
pub const AIORTC_FPS: usize = 20;

/// One call at a time: setup times are measured, and the machine has two cores.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn python() -> PathBuf {
    interop_dir().join(".venv/bin/python")
}

/// The venv is there and its packages installed (the set-up script's stamp).
pub fn require_aiortc() {
    super::test_logs();
    let stamp = interop_dir().join(".venv/installed");
    assert!(
        python().exists() && stamp.exists(),
        "the aiortc venv is missing ({}): run `make interop-deps` (or `make test`, which does), \
         which runs tests/interop/setup.sh",
        interop_dir().join(".venv").display()
    );
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub video: PathBuf,
    pub audio: PathBuf,
}

impl Fixture {
    pub fn new(seconds: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (video, audio) = (dir.path().join("camera.y4m"), dir.path().join("tone.wav"));
        let (w, h) = AIORTC_SIZE;
        write_y4m(&video, w, h, AIORTC_FPS, (AIORTC_FPS * seconds) as u32);
        write_wav(&audio, AIORTC_TONE_HZ, 5.0, 48_000, 1);
        Fixture { dir, video, audio }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A running aiortc peer.
pub struct Aiortc {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Aiortc {
    /// `extra`: more of peer.py's flags (`--offer-if-impolite`, `--want-impolite`).
    pub fn spawn(
        fx: &Fixture,
        ws_url: &str,
        room: &str,
        seconds: f64,
        chat: &str,
        extra: &[&str],
    ) -> Aiortc {
        let mut child = tokio::process::Command::new(python())
            .arg(interop_dir().join("peer.py"))
            .args(["--server", ws_url, "--room", room, "--name", "aio"])
            .arg("--video")
            .arg(&fx.video)
            .arg("--audio")
            .arg(&fx.audio)
            .arg("--out")
            .arg(fx.out())
            .args([
                "--chat",
                chat,
                "--seconds",
                &seconds.to_string(),
                "--loopback",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the venv's python runs");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            s
        });
        Aiortc {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for its welcome: returns its member id.
    pub async fn joined(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .expect("aiortc joins within 30 s")
            .unwrap();
        let Some(line) = line else {
            let err = (&mut self.stderr).await.unwrap();
            panic!("aiortc ended before joining:\n{err}");
        };
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "joined", "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Waits for the end: its result line (and its log, for failures).
    pub async fn result(mut self) -> (Value, String) {
        let mut last = None;
        let read = async {
            while let Some(l) = self.stdout.next_line().await.unwrap() {
                last = Some(l);
            }
            self.child.wait().await.unwrap()
        };
        let status = tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("aiortc finishes within 60 s");
        let log = self.stderr.await.unwrap();
        let v: Value = last
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_else(|| panic!("aiortc printed no result:\n{log}"));
        assert!(status.success(), "aiortc failed: {v:#}\n{log}");
        if std::env::var_os("CONFAB_AIORTC_LOG").is_some() {
            eprintln!("{log}\n{v:#}");
        }
        (v, log)
    }
}

/// One recorded frame: its luma plane and when it arrived.
pub struct LumaFrame {
    pub width: usize,
    pub height: usize,
    pub at_us: u64,
    pub luma: Vec<u8>,
}

/// Reads peer.py's `video.luma`.
pub fn read_luma(path: &Path) -> Vec<LumaFrame> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 20 && &rest[..4] == b"LUMA", "bad luma file");
        let u32_at = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().unwrap()) as usize;
        let (width, height) = (u32_at(4), u32_at(8));
        let at_us = u64::from_le_bytes(rest[12..20].try_into().unwrap());
        let end = 20 + width * height;
        frames.push(LumaFrame {
            width,
            height,
            at_us,
            luma: rest[20..end].to_vec(),
        });
        rest = &rest[end..];
    }
    frames
}

/// The first channel of peer.py's `audio.wav`, as floats, and its rate.
pub fn read_audio(path: &Path) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let ch = spec.channels as usize;
    let samples: Vec<f32> = r
        .samples::<i16>()
        .step_by(ch)
        .map(|s| s.unwrap() as f32 / i16::MAX as f32)
        .collect();
    (samples, spec.sample_rate)
}
