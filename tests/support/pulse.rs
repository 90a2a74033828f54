//! A virtual sound card for tests: a PulseAudio daemon with a null sink `vspk` (the
//! speaker) and a FIFO source `vmic` (the microphone), a real-time tone writer for
//! the FIFO and a recorder of the sink's monitor (`.ci/deps.sh audio` installs
//! pulseaudio, pulseaudio-utils and libasound2-plugins).
//!
//! The null sink renders 2 s ahead while no client asks it for less latency, and a
//! stream that connects meanwhile is not read until that block has "played": a new
//! speaker stream gets no callbacks for up to 2 s (no error: cpal's ALSA worker just
//! waits in poll, and cpal's native PulseAudio host waits the same). Hardware sinks
//! rewind for a new stream instead. [`Recorder`] asks for 10 ms, so once it delivers
//! audio the sink renders in 10 ms steps and a speaker opened after that plays at once.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const RATE: u32 = 48_000;

/// The daemon's command line: everything in `run` (its XDG_RUNTIME_DIR and HOME),
/// no configuration files read (`-n`), anonymous clients, `vmic` fed from `fifo`.
pub fn daemon_command(run: &Path, fifo: &Path) -> Command {
    let mut c = Command::new("pulseaudio");
    c.args([
        "-n",
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--use-pid-file=no",
    ])
    .args(["--realtime=no", "--high-priority=no"])
    .arg("-L")
    .arg("module-native-protocol-unix auth-anonymous=1")
    .arg("-L")
    .arg("module-null-sink sink_name=vspk")
    .arg("-L")
    .arg(format!(
        "module-pipe-source source_name=vmic file={} format=s16le rate={RATE} channels=1",
        fifo.display()
    ))
    .env("XDG_RUNTIME_DIR", run)
    .env("HOME", run)
    .stdout(Stdio::null());
    c
}

/// The server address clients use for a daemon started with `run` as its runtime dir.
pub fn server_address(run: &Path) -> String {
    format!("unix:{}", run.join("pulse/native").display())
}

/// Makes a child die with the thread that spawned it, even if the test is killed.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until `server` answers and makes vspk / vmic the defaults (what ALSA's
/// `default` and `pulse` devices open). Panics with the daemon's log after 15 s.
pub fn wait_ready(server: &str, log: &Path) {
    if let Err(e) = Command::new("pactl").arg("--version").output() {
        panic!("cannot run pactl: {e} (.ci/deps.sh audio installs pulseaudio-utils)");
    }
    let t0 = Instant::now();
    while !quiet(Command::new("pactl").args(["--server", server, "info"])) {
        if t0.elapsed() > Duration::from_secs(15) {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("pulseaudio did not come up in 15 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (what, name) in [("set-default-sink", "vspk"), ("set-default-source", "vmic")] {
        assert!(
            quiet(Command::new("pactl").args(["--server", server, what, name])),
            "pactl {what} {name}"
        );
    }
}

/// A daemon of this test's own, killed on drop.
pub struct Pulse {
    child: Child,
    pub fifo: PathBuf,
    pub server: String,
    dir: tempfile::TempDir,
}

impl Pulse {
    pub fn start() -> Pulse {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("mic.fifo");
        let log = dir.path().join("pulse.log");
        let child = die_with_parent(&mut daemon_command(dir.path(), &fifo))
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run pulseaudio: {e} (.ci/deps.sh audio installs it)")
            });
        let server = server_address(dir.path());
        let pulse = Pulse {
            child,
            fifo,
            server,
            dir,
        };
        wait_ready(&pulse.server, &log);
        pulse
    }

    /// The environment a client of this daemon needs (libpulse, the ALSA pulse plugin).
    pub fn client_env(&self) -> [(&'static str, std::ffi::OsString); 2] {
        [
            ("PULSE_SERVER", self.server.clone().into()),
            ("XDG_RUNTIME_DIR", self.dir.path().into()),
        ]
    }

    pub fn recorder(&self, source: &str) -> Recorder {
        Recorder::start(source, Some(&self.server))
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a sine into a pipe source's FIFO in real time, 10 ms at a time, as a
/// sound card would deliver it, until dropped.
pub struct ToneWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ToneWriter {
    pub fn start(fifo: &Path, freq: f32, amplitude: f32) -> ToneWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let (fifo, stop2) = (fifo.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let t0 = Instant::now();
            let mut i = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                let pcm: Vec<u8> = sine(freq, i, 480, amplitude)
                    .iter()
                    .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
                    .collect();
                if f.write_all(&pcm).is_err() {
                    break;
                }
                i += 480;
                let due = t0 + Duration::from_micros(i as u64 * 1_000_000 / RATE as u64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        });
        ToneWriter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ToneWriter {
    /// Stops the writer without waiting for it: with no one recording, the daemon stops
    /// reading the FIFO and a write blocks until the daemon is gone (then it fails).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take();
    }
}

/// `n` samples of a sine at 48 kHz starting at sample `start`.
pub fn sine(freq: f32, start: usize, n: usize, amplitude: f32) -> Vec<f32> {
    (start..start + n)
        .map(|i| (std::f32::consts::TAU * freq * i as f32 / RATE as f32).sin() * amplitude)
        .collect()
}

/// Records a PulseAudio source (e.g. `vspk.monitor`) as 48 kHz mono with `parec`,
/// asking for 10 ms of latency (see the module comment); killed on drop.
pub struct Recorder {
    child: Child,
    samples: Arc<Mutex<Vec<f32>>>,
    reader: Option<JoinHandle<()>>,
}

impl Recorder {
    /// `server`: None for the one in the environment.
    pub fn start(source: &str, server: Option<&str>) -> Recorder {
        let mut cmd = Command::new("parec");
        if let Some(s) = server {
            cmd.args(["--server", s]);
        }
        let mut child = die_with_parent(
            cmd.args(["-d", source, "--raw", "--format=s16le", "--channels=1"])
                .arg(format!("--rate={RATE}"))
                .arg("--latency-msec=10"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run parec: {e} (.ci/deps.sh audio installs it)"));
        let mut out = child.stdout.take().unwrap();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut odd: Option<u8> = None;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut bytes: Vec<u8> = odd.take().into_iter().collect();
                bytes.extend_from_slice(&buf[..n]);
                if bytes.len() % 2 == 1 {
                    odd = bytes.pop();
                }
                sink.lock().unwrap().extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0),
                );
            }
        });
        Recorder {
            child,
            samples,
            reader: Some(reader),
        }
    }

    /// Samples recorded so far.
    pub fn len(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Waits until `n` samples were recorded; panics after `within`.
    pub fn wait_for(&self, n: usize, within: Duration) {
        let t0 = Instant::now();
        while self.len() < n {
            assert!(
                t0.elapsed() < within,
                "recorded {} of {n} samples in {within:?}",
                self.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops recording; everything recorded.
    pub fn stop(mut self) -> Vec<f32> {
        self.finish();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }

    fn finish(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Amplitude of the `freq` component of `pcm` (Goertzel) and the share of the
/// signal's power it makes up (1 for a pure tone, 0 for silence).
pub fn tone(pcm: &[f32], freq: f32) -> (f32, f32) {
    if pcm.is_empty() {
        return (0.0, 0.0);
    }
    let w = std::f64::consts::TAU * freq as f64 / RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in pcm {
        let s0 = *x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    let n = pcm.len() as f64;
    let amplitude = 2.0 * power.sqrt() / n;
    let mean_square = pcm.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / n;
    let share = if mean_square > 0.0 {
        (amplitude * amplitude / 2.0 / mean_square).min(1.0)
    } else {
        0.0
    };
    (amplitude as f32, share as f32)
}

/// Which `block`-sample pieces of `pcm` carry `freq` at `min_amplitude` or more and
/// mostly that (at least `min_share` of their power).
pub fn tone_blocks(
    pcm: &[f32],
    freq: f32,
    block: usize,
    min_amplitude: f32,
    min_share: f32,
) -> Vec<bool> {
    pcm.chunks_exact(block)
        .map(|b| {
            let (a, share) = tone(b, freq);
            a >= min_amplitude && share >= min_share
        })
        .collect()
}
