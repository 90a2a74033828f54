//! `confab headless --record`: a two-person call recorded into one file, checked from
//! the file alone with Debian's ffprobe/ffmpeg: its duration, size and codecs, the
//! barcodes of both people's pictures read back from their tiles in the grid, both
//! tones in the mixed sound; and a recorder killed mid-call leaves a file that plays.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use confab::media::barcode;
use confab::record::compose::{fit, grid};

const W: usize = 1280;
const H: usize = 720;
/// The tones each side's synthetic microphone plays.
const ADA_HZ: f64 = 440.0;
const BOB_HZ: f64 = 1000.0;

/// One recorded call at a time: each is several encoding processes on a 2-core machine,
/// and a recorder starved of CPU drops frames (which these tests would count).
static ONE_CALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn headless(url: &str, name: &str, extra: &[&str]) -> tokio::process::Command {
    support::headless_command(url, "rec", name, extra)
}

fn tool(name: &str, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} (Debian's ffmpeg, .ci/deps.sh test): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ffprobe's view: duration (s), then (codec, width, height) per stream.
fn probe(file: &Path) -> (f64, Vec<(String, u64, u64)>) {
    let json = tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name,width,height",
            "-of",
            "json",
            file.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let duration = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    let streams = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap().to_string(),
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    (duration, streams)
}

/// Every picture's luma plane, as decoded by ffmpeg (each frame as stored).
fn luma_frames(file: &Path) -> Vec<Vec<u8>> {
    let raw = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            file.to_str().unwrap(),
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
    );
    assert_eq!(raw.len() % (W * H), 0);
    raw.chunks(W * H).map(<[u8]>::to_vec).collect()
}

/// The sound, decoded to 48 kHz mono.
fn samples(file: &Path) -> Vec<f32> {
    let raw = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            file.to_str().unwrap(),
            "-map",
            "0:a",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-",
        ],
    );
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The amplitude of the `hz` sine in `x` (a single-bin DFT).
fn amplitude(x: &[f32], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 48_000.0;
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &s) in x.iter().enumerate() {
        re += f64::from(s) * (w * n as f64).cos();
        im += f64::from(s) * (w * n as f64).sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

/// The frame ids read from one tile across the recording (None where unreadable).
fn ids_in_tile(frames: &[Vec<u8>], tile: usize, tiles: usize) -> Vec<Option<u32>> {
    // Both sides send 640x480 pictures; the grid fits them into their cells.
    let r = fit(640, 480, grid(tiles, W, H)[tile]);
    frames
        .iter()
        .map(|y| barcode::read(&y[r.y * W + r.x..], r.w, r.h, W).map(|b| b.frame_id))
        .collect()
}

/// Ids read, in file order: checks they never go back, returns (count, first, last).
fn in_order(name: &str, ids: &[Option<u32>]) -> (usize, u32, u32) {
    let read: Vec<u32> = ids.iter().flatten().copied().collect();
    assert!(read.len() > 1, "{name}: no barcode read");
    for w in read.windows(2) {
        assert!(w[0] <= w[1], "{name}: id {} after {}", w[1], w[0]);
    }
    (read.len(), read[0], *read.last().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_holds_everyones_pictures_in_order_and_both_voices() {
    let _one = ONE_CALL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("call.mp4");
    let report = dir.path().join("ada.json");
    let srv = support::server().await;
    let url = srv.ws_url();
    // Ada records at 30 fps with a 440 Hz tone; Bob sends 15 fps and 1000 Hz, so the
    // two tiles are told apart by how fast their ids climb.
    let bob = headless(
        &url,
        "bob",
        &["--seconds", "10", "--fps", "15", "--tone-hz", "1000"],
    )
    .spawn()
    .unwrap();
    let ada = headless(
        &url,
        "ada",
        &[
            "--seconds",
            "10",
            "--fps",
            "30",
            "--tone-hz",
            "440",
            "--record",
            file.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    let (a, b) = (
        ada.wait_with_output().await.unwrap(),
        bob.wait_with_output().await.unwrap(),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["recording"]["path"], file.to_str().unwrap(), "{r:#}");
    assert_eq!(r["recording"]["error"], serde_json::Value::Null, "{r:#}");

    let (duration, streams) = probe(&file);
    assert!(
        (9.0..=11.0).contains(&duration),
        "a 10 s call recorded as {duration} s"
    );
    assert_eq!(
        streams,
        [("h264".to_string(), 1280, 720), ("opus".to_string(), 0, 0)]
    );

    // The pictures: Ada's own tile first, Bob's beside it, each read back in order.
    let frames = luma_frames(&file);
    assert!(frames.len() >= 120, "{} frames in 10 s", frames.len());
    let (ada_ids, bob_ids) = (ids_in_tile(&frames, 0, 2), ids_in_tile(&frames, 1, 2));
    let (ada_read, ada_first, ada_last) = in_order("ada", &ada_ids);
    let (bob_read, bob_first, bob_last) = in_order("bob", &bob_ids);
    assert!(
        ada_read * 10 >= frames.len() * 9,
        "ada's tile read in {ada_read} of {} frames",
        frames.len()
    );
    assert!(
        bob_read * 10 >= frames.len() * 7,
        "bob's tile read in {bob_read} of {} frames (he connects after a moment)",
        frames.len()
    );
    // Over the frames where both were read, Ada's ids climb twice as fast as Bob's.
    let both: Vec<(u32, u32)> = ada_ids
        .iter()
        .zip(&bob_ids)
        .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
        .collect();
    let (first, last) = (both[0], both[both.len() - 1]);
    let ratio = f64::from(last.0 - first.0) / f64::from(last.1 - first.1);
    assert!(
        (1.6..=2.4).contains(&ratio),
        "ada {ada_first}..{ada_last}, bob {bob_first}..{bob_last}: ratio {ratio}"
    );

    // The sound: both tones, mixed, in the middle of the call; nothing in between.
    let pcm = samples(&file);
    assert!(pcm.len() >= 9 * 48_000, "{} samples", pcm.len());
    let middle = &pcm[3 * 48_000..7 * 48_000];
    let (ada_a, bob_a, none) = (
        amplitude(middle, ADA_HZ),
        amplitude(middle, BOB_HZ),
        amplitude(middle, 700.0),
    );
    assert!(
        ada_a > 0.15 && bob_a > 0.15 && none < 0.02,
        "440 Hz {ada_a:.3}, 1000 Hz {bob_a:.3}, 700 Hz {none:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_killed_mid_call_leaves_a_file_that_plays_to_its_last_seconds() {
    let _one = ONE_CALL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("killed.mp4");
    let srv = support::server().await;
    let url = srv.ws_url();
    let _bob = headless(&url, "bob", &["--seconds", "60"]).spawn().unwrap();
    let mut ada = headless(
        &url,
        "ada",
        &["--seconds", "60", "--record", file.to_str().unwrap()],
    )
    .spawn()
    .unwrap();
    // The file appears when the recording starts; wait until ffprobe finds 6 s in it.
    let deadline = Instant::now() + Duration::from_secs(40);
    while !file.exists() {
        assert!(Instant::now() < deadline, "no recording started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "the recording does not grow");
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration", "-of"])
            .args(["default=nw=1:nk=1", file.to_str().unwrap()])
            .output()
            .unwrap();
        let seen: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0);
        if seen >= 6.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ada.start_kill().unwrap(); // SIGKILL: nothing is finished or flushed
    let ran = started.elapsed().as_secs_f64();
    let status = ada.wait().await.unwrap();
    assert!(!status.success(), "killed");

    let (duration, streams) = probe(&file);
    assert!(
        duration >= ran - 3.0 && duration <= ran + 1.0,
        "recorded for {ran:.1} s before the kill, {duration} s play"
    );
    let codecs: Vec<&str> = streams.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(codecs, ["h264", "opus"]);
    // Everything in it decodes.
    assert!(luma_frames(&file).len() as f64 >= (duration - 1.0) * 10.0);
}

/// The duration ffprobe finds in `file` so far (0 while it has none).
fn seconds_in(file: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of"])
        .args(["default=nw=1:nk=1", file.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_joining_and_leaving_comes_and_goes_in_the_recording() {
    let _one = ONE_CALL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.mp4");
    let srv = support::server().await;
    let url = srv.ws_url();
    let bob = headless(
        &url,
        "bob",
        &["--seconds", "16", "--fps", "15", "--tone-hz", "1000"],
    )
    .spawn()
    .unwrap();
    let ada = headless(
        &url,
        "ada",
        &["--seconds", "16", "--record", file.to_str().unwrap()],
    )
    .spawn()
    .unwrap();
    // Carol comes once 3 s are recorded, for 5 s, smaller and with her own tone.
    let deadline = Instant::now() + Duration::from_secs(40);
    while seconds_in(&file) < 3.0 {
        assert!(Instant::now() < deadline, "the recording does not grow");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let carol = headless(
        &url,
        "carol",
        &[
            "--seconds",
            "5",
            "--fps",
            "10",
            "--size",
            "320x240",
            "--tone-hz",
            "1600",
        ],
    )
    .output()
    .await
    .unwrap();
    assert!(
        carol.status.success(),
        "{}",
        String::from_utf8_lossy(&carol.stderr)
    );
    let (a, b) = (
        ada.wait_with_output().await.unwrap(),
        bob.wait_with_output().await.unwrap(),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));

    // Each frame is told by which grid its tiles read in: 2 tiles, or 3 with Carol's.
    let frames = luma_frames(&file);
    let two = [ids_in_tile(&frames, 0, 2), ids_in_tile(&frames, 1, 2)];
    let three = [
        ids_in_tile(&frames, 0, 3),
        ids_in_tile(&frames, 1, 3),
        ids_in_tile(&frames, 2, 3),
    ];
    let layout: Vec<u8> = (0..frames.len())
        .map(|i| {
            if three.iter().all(|t| t[i].is_some()) {
                3
            } else if two.iter().all(|t| t[i].is_some()) {
                2
            } else {
                0
            }
        })
        .collect();
    let with_carol: Vec<usize> = (0..layout.len()).filter(|&i| layout[i] == 3).collect();
    assert!(
        with_carol.len() >= 30,
        "carol's tile in {} frames: {layout:?}",
        with_carol.len()
    );
    let (came, went) = (with_carol[0], *with_carol.last().unwrap());
    let before = layout[..came].iter().filter(|&&l| l == 2).count();
    let after = layout[went + 1..].iter().filter(|&&l| l == 2).count();
    assert!(
        before >= 20 && after >= 30,
        "two tiles before ({before}) and after ({after}) her: {layout:?}"
    );
    assert!(
        layout[went + 1..].iter().all(|&l| l != 3),
        "her tile is gone once she left"
    );
    for (name, tile) in ["ada", "bob", "carol"].iter().zip(&three) {
        in_order(name, tile);
    }

    // Her voice is in the mix while she is there, and not after.
    let pcm = samples(&file);
    let at = |frame: usize| frame * 48_000 / 15;
    let during = &pcm[at(came) + 24_000..at(went).saturating_sub(24_000).min(pcm.len())];
    let end = &pcm[pcm.len() - 2 * 48_000..];
    let (carol_in, carol_after, bob_after) = (
        amplitude(during, 1600.0),
        amplitude(end, 1600.0),
        amplitude(end, BOB_HZ),
    );
    assert!(
        carol_in > 0.15 && carol_after < 0.02 && bob_after > 0.15,
        "1600 Hz {carol_in:.3} with her, {carol_after:.3} after; bob after {bob_after:.3}"
    );
}
