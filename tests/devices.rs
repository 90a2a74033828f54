//! Real devices on a virtual machine: a PulseAudio daemon with a null sink and a FIFO
//! microphone, an Xvfb screen, both started here (see .ci/deps.sh, group `audio`).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use confab::media::device::{
    AudioProcessor, CameraSource, MicrophoneSource, ScreenSource, Speaker, list_cameras,
    list_microphones, list_screens, list_speakers,
};
use confab::media::{AudioSource, MediaError, VideoSource, dominant_frequency, level_dbfs};
use support::pulse::{self, Recorder, ToneWriter, daemon_command};

struct Env {
    fifo: PathBuf,
    display: String,
}

/// The daemons' directory: `Env` is a static, never dropped, so it goes at exit.
static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_run_dir() {
    if let Some(dir) = RUN_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts the daemons once, before any test touches ALSA or X (ALSA reads its
/// configuration, which routes `default` to a running PulseAudio, only once).
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let run = tempfile::tempdir().unwrap().keep();
        RUN_DIR.set(run.clone()).unwrap();
        // SAFETY: registers a plain function; it runs once, as the process exits.
        unsafe { libc::atexit(remove_run_dir) };
        let fifo = run.join("mic.fifo");
        let (tx, rx) = mpsc::channel();
        let (run2, fifo2) = (run.clone(), fifo.clone());
        // The children die with the thread that spawned them (PDEATHSIG), so that
        // thread lives as long as the test process.
        std::thread::spawn(move || {
            let pulse = spawn(
                daemon_command(&run2, &fifo2)
                    .stderr(std::fs::File::create(run2.join("pulse.log")).unwrap()),
            );
            // Xvfb picks a free display itself and prints its number once it listens: no
            // clash with a display (or a stale lock) someone else left.
            let mut xvfb = pulse::die_with_parent(
                Command::new("Xvfb")
                    .args([
                        "-displayfd",
                        "1",
                        "-screen",
                        "0",
                        "640x480x24",
                        "-nolisten",
                        "tcp",
                        // Without it the server resets when its last client leaves and
                        // drops a connection that arrives meanwhile (CI met it).
                        "-noreset",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(std::fs::File::create(run2.join("xvfb.log")).unwrap()),
            )
            .spawn();
            let display = xvfb.as_mut().ok().and_then(|x| {
                let mut line = String::new();
                BufReader::new(x.stdout.take()?).read_line(&mut line).ok()?;
                Some(format!(":{}", line.trim()))
            });
            tx.send((pulse.is_ok(), display)).unwrap();
            loop {
                std::thread::park();
            }
        });
        let (pulse_ok, display) = rx.recv().unwrap();
        assert!(
            pulse_ok,
            "cannot run pulseaudio (.ci/deps.sh audio installs it)"
        );
        let display =
            display.expect("cannot run Xvfb (.ci/deps.sh audio installs xvfb), see its log");
        let server = pulse::server_address(&run);
        // SAFETY: set once, while every other test of this binary waits in `env()`.
        unsafe {
            std::env::set_var("PULSE_SERVER", &server);
            std::env::set_var("DISPLAY", &display);
        }
        pulse::wait_ready(&server, &run.join("pulse.log"));
        wait_for(&run, "xvfb.log", || {
            quiet(Command::new("xsetroot").args(["-solid", "black"]))
        });
        Env { fifo, display }
    })
}

fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    pulse::die_with_parent(cmd).stdout(Stdio::null()).spawn()
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(dir: &Path, log: &str, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        if t0.elapsed() > Duration::from_secs(15) {
            let log = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            panic!("daemon did not come up in 15 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn listing_never_panics_and_a_missing_camera_is_a_device_error() {
    env();
    let cameras = list_cameras();
    let has_video_node = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false);
    if !has_video_node {
        assert!(cameras.is_empty(), "{cameras:?}");
        match CameraSource::open(0, 640, 480, 30) {
            Err(MediaError::Device(msg)) => {
                assert!(
                    msg.contains("camera 0") && msg.contains("cannot open"),
                    "{msg}"
                )
            }
            Err(e) => panic!("want a device error, got {e}"),
            Ok(c) => panic!("opened {}", c.describe()),
        }
    }
    let mics = list_microphones().expect("the PulseAudio card is listed");
    let speakers = list_speakers().expect("the PulseAudio card is listed");
    assert!(
        mics.iter().any(|d| d.default_rate > 0 && d.channels > 0),
        "{mics:?}"
    );
    for list in [&mics, &speakers] {
        assert!(list.iter().any(|d| d.id == "pulse"), "{list:?}");
    }
    println!("microphones {mics:?}\nspeakers {speakers:?}");
    let screens = list_screens();
    assert_eq!(screens.len(), 1, "{screens:?}");
    assert_eq!((screens[0].width, screens[0].height), (640, 480));
}

/// Run in a child process without DISPLAY (the environment is process-wide).
#[test]
fn no_display_child() {
    if std::env::var_os("CONFAB_NO_DISPLAY_CHILD").is_none() {
        return;
    }
    assert!(list_screens().is_empty());
    match ScreenSource::open(0, 10.0) {
        Err(MediaError::Device(msg)) => assert!(msg.contains("no display"), "{msg}"),
        Err(e) => panic!("want a device error, got {e}"),
        Ok(s) => panic!("opened {}", s.describe()),
    }
}

#[test]
fn without_a_display_screens_are_empty_and_opening_is_a_device_error() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_display_child", "--nocapture"])
        .env("CONFAB_NO_DISPLAY_CHILD", "1")
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
fn a_tone_in_the_virtual_microphone_comes_out_at_1_khz() {
    let env = env();
    let mut mic = MicrophoneSource::open(None).expect("open the default microphone");
    // Fed in real time, 10 ms at a time, as a sound card would.
    let writer = ToneWriter::start(&env.fifo, 1000.0, 0.5);
    let mut frames = Vec::new();
    let t0 = Instant::now();
    for _ in 0..75 {
        frames.push(mic.next_frame().expect("microphone frame"));
    }
    let took = t0.elapsed();
    drop(writer);
    assert!(frames.iter().all(|f| f.samples.len() == 960));
    // 1.5 s of audio arrives in about real time, not in a burst.
    assert!(took > Duration::from_millis(1200), "{took:?}");
    let last: Vec<f32> = frames[50..]
        .iter()
        .flat_map(|f| f.samples.clone())
        .collect();
    let f = dominant_frequency(&last, 48_000);
    let level = level_dbfs(&last);
    println!(
        "{}: {f:.1} Hz at {level:.1} dBFS, {took:?} for 1.5 s",
        mic.describe()
    );
    assert!((f - 1000.0).abs() < 15.0, "{f} Hz");
    assert!(level > -15.0, "{level} dBFS");
    let now = confab::media::now_us();
    let last_us = frames.last().unwrap().capture_us;
    assert!(
        last_us <= now && now - last_us < 500_000,
        "capture_us {last_us} vs now {now}"
    );
    assert!(frames.windows(2).all(|w| w[1].capture_us > w[0].capture_us));
}

#[test]
fn a_tone_pushed_to_the_speaker_is_heard_on_the_sink_monitor() {
    env();
    // Recording first puts the null sink into 10 ms steps (see support::pulse): its
    // first samples mean a speaker opened now is read at once.
    let recorder = Recorder::start("vspk.monitor", None);
    recorder.wait_for(4_800, Duration::from_secs(10));
    let speaker = Speaker::open(None).expect("open the default speaker");
    let start = recorder.len();
    let t0 = Instant::now();
    let mut peak_level = 0.0f32;
    // 1.5 s of 700 Hz at half scale, 20 ms at a time in real time, as decoded audio arrives.
    for k in 0..75usize {
        speaker.push(
            "alice",
            &pulse::sine(700.0, k * 960, 960, 0.5),
            confab::media::Arrival::at(confab::media::now_us()),
        );
        if k > 10 {
            peak_level = peak_level.max(speaker.level("alice").unwrap());
        }
        let due = t0 + Duration::from_millis(20 * (k as u64 + 1));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    // 2 s of recording from the first push: the tone and its tail.
    recorder.wait_for(start + 96_000, Duration::from_secs(10));
    let played = speaker.played_frames();
    let error = speaker.error();
    let pcm = recorder.stop();
    let heard = &pcm[start..start + 96_000];
    // 20 ms blocks that are the tone at about its level (0.5) and little else.
    let blocks = pulse::tone_blocks(heard, 700.0, 960, 0.4, 0.9);
    let onset_ms = blocks.iter().position(|b| *b).map(|i| i * 20);
    let tone_ms = blocks.iter().filter(|b| **b).count() * 20;
    let onset = onset_ms.unwrap_or(0) * 48;
    let body = &heard[onset..(onset + 57_600).min(heard.len())];
    let (f, level) = (dominant_frequency(body, 48_000), level_dbfs(body));
    println!(
        "{}: tone heard {onset_ms:?} ms after the first push, for {tone_ms} ms, {f:.1} Hz at \
         {level:.1} dBFS; ring level {peak_level:.2}; {played} frames played; buffer {:?}",
        speaker.describe(),
        speaker.buffer_stats("alice")
    );
    // Jitter buffer (60 ms) + device buffer (40 ms) + server: well under the 2 s a
    // stream waits on an idle null sink.
    assert!(onset_ms.is_some_and(|ms| ms < 400), "onset {onset_ms:?} ms");
    // All of it, allowing a block or two lost at either edge.
    assert!(
        tone_ms >= 1_400,
        "only {tone_ms} ms of the 1.5 s tone heard"
    );
    assert!((f - 700.0).abs() < 5.0, "{f} Hz");
    // A 0.5 sine is -9 dBFS: played at unity gain.
    assert!((level + 9.0).abs() < 1.5, "{level} dBFS");
    // RMS of a 0.5 sine is 0.35.
    assert!(peak_level > 0.3 && peak_level < 0.4, "{peak_level}");
    assert!(played >= 72_000, "{played} frames played");
    assert!(error.is_none(), "{error:?}");
}

#[test]
fn goertzel_measures_one_tone() {
    let pcm = pulse::sine(700.0, 0, 960, 0.5);
    let (a, share) = pulse::tone(&pcm, 700.0);
    assert!((a - 0.5).abs() < 0.01 && share > 0.99, "{a} {share}");
    let (a, share) = pulse::tone(&pcm, 1000.0);
    assert!(a < 0.01 && share < 0.01, "{a} {share}");
    assert_eq!(pulse::tone(&[0.0; 960], 700.0), (0.0, 0.0));
    let half: Vec<f32> = pcm[..480].iter().copied().chain([0.0; 480]).collect();
    assert!(pulse::tone_blocks(&half, 700.0, 960, 0.4, 0.9) == [false]);
}

#[test]
fn the_screen_source_sees_what_was_drawn() {
    let env = env();
    let mut screen = ScreenSource::open(0, 20.0).expect("open screen 0");
    // BT.601 limited range: red is (81, 90, 240), blue is (41, 240, 110).
    for (colour, want) in [("#ff0000", (81, 90, 240)), ("#0000ff", (41, 240, 110))] {
        assert!(quiet(Command::new("xsetroot").args([
            "-display",
            &env.display,
            "-solid",
            colour
        ])));
        let f = screen.next_frame().expect("screen frame");
        assert_eq!((f.width, f.height), (640, 480));
        let mean = |p: &[u8]| p.iter().map(|v| *v as u64).sum::<u64>() / p.len() as u64;
        let got = (mean(&f.y), mean(&f.u), mean(&f.v));
        let close = |a: u64, b: u64| a.abs_diff(b) <= 3;
        assert!(
            close(got.0, want.0) && close(got.1, want.1) && close(got.2, want.2),
            "{colour}: YUV {got:?}, want {want:?}"
        );
        assert!(
            f.y.iter().all(|v| v.abs_diff(want.0 as u8) <= 3),
            "{colour}: uneven picture"
        );
    }
    // Paced: 10 more frames at 20 fps take about half a second.
    let t0 = Instant::now();
    for _ in 0..10 {
        screen.next_frame().unwrap();
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

/// Near end = the far end's echo, 40 ms late and 6 dB down, with no near-end talk.
fn echo_run(processor: &mut AudioProcessor, feed_reference: bool) -> f32 {
    let mut seed = 12345u32;
    let mut noise = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    // Speech-like far end: noise bursts at a syllable rate, which NS does not remove.
    let n = 48_000 * 10;
    let far: Vec<f32> = (0..n)
        .map(|i| {
            let syllable = ((i as f32 / 48_000.0) * 4.0 * std::f32::consts::PI)
                .sin()
                .max(0.0);
            noise() * syllable * 0.6
        })
        .collect();
    let delay = 48 * 40;
    let near: Vec<f32> = (0..n)
        .map(|i| {
            if i >= delay {
                far[i - delay] * 0.5
            } else {
                0.0
            }
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for (f, m) in far.chunks(480).zip(near.chunks(480)) {
        if feed_reference {
            processor.process_render(f).unwrap();
        }
        let mut block = m.to_vec();
        processor.process_capture(&mut block).unwrap();
        out.extend(block);
    }
    // After 6 s of convergence.
    let tail = 48_000 * 6;
    level_dbfs(&near[tail..]) - level_dbfs(&out[tail..])
}

#[test]
fn echo_cancellation_removes_a_delayed_echo_and_can_be_turned_off() {
    let mut aec = AudioProcessor::new().unwrap();
    let with_reference = echo_run(&mut aec, true);
    let mut ns_only = AudioProcessor::new().unwrap();
    let without_reference = echo_run(&mut ns_only, false);
    let mut off = AudioProcessor::new().unwrap();
    // The switch is shared by clones (the speaker holds one, the microphone another).
    off.clone().set_enabled(false);
    let bypassed = echo_run(&mut off, true);
    println!(
        "echo reduced by {with_reference:.1} dB (NS alone, no reference: {without_reference:.1} dB; off: {bypassed:.1} dB)"
    );
    assert!(with_reference >= 10.0, "{with_reference} dB");
    assert!(with_reference - without_reference >= 6.0);
    assert!(bypassed.abs() < 0.01, "{bypassed} dB");
}
