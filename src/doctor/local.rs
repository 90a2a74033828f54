//! This machine: the display, cameras, microphones and speakers (each tried for a
//! second), screens, and the H.264 encoder actually encoding.

use std::time::{Duration, Instant};

use super::Check;
use crate::media::device::{
    AudioDeviceInfo, MicrophoneSource, Speaker, list_cameras, list_microphones, list_screens,
    list_speakers,
};
use crate::media::{
    Arrival, AudioSource, EncoderSettings, H264Encoder, MediaError, SyntheticAudio, SyntheticVideo,
    level_dbfs,
};

/// Blocking: opens devices and encodes.
pub(super) fn checks() -> Vec<Check> {
    vec![
        display(),
        cameras(),
        microphones(),
        speakers(),
        screens(),
        encoder(),
    ]
}

fn display() -> Check {
    let x11 = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty());
    let wayland = std::env::var("WAYLAND_DISPLAY")
        .ok()
        .filter(|d| !d.is_empty());
    match (x11, wayland) {
        (_, Some(w)) => Check::ok("display", format!("Wayland ({w})")),
        (Some(x), None) => Check::ok("display", format!("X11 ({x})")),
        (None, None) => Check::warn(
            "display",
            "none (neither DISPLAY nor WAYLAND_DISPLAY is set)",
            "the window needs a desktop session or `ssh -X`; `confab headless` and `confab serve` need none",
        ),
    }
}

fn cameras() -> Check {
    let cams = list_cameras();
    if cams.is_empty() {
        return Check::warn(
            "cameras",
            "none found",
            "others will not see you: plug a camera in, or share your screen",
        );
    }
    let names: Vec<String> = cams
        .iter()
        .map(
            |c| match c.formats.iter().max_by_key(|(w, h, f)| (w * h, *f)) {
                Some((w, h, f)) => format!("{} (up to {w}x{h} at {f} fps)", c.name),
                None => c.name.clone(),
            },
        )
        .collect();
    Check::ok("cameras", names.join(", "))
}

/// The ids of the sound devices listed, or the WARN when there are none.
fn ids(
    item: &'static str,
    listed: Result<Vec<AudioDeviceInfo>, MediaError>,
    without: &str,
) -> Result<Vec<String>, Check> {
    match listed {
        Ok(devices) if !devices.is_empty() => Ok(devices.into_iter().map(|d| d.id).collect()),
        Ok(_) => Err(Check::warn(
            item,
            "none found",
            format!("{without}: plug one in, or check the sound system (PulseAudio/PipeWire) runs"),
        )),
        Err(e) => Err(Check::warn(
            item,
            format!("cannot list them: {e}"),
            format!("{without}: check the sound system (PulseAudio/PipeWire) runs"),
        )),
    }
}

fn microphones() -> Check {
    let names = match ids(
        "microphones",
        list_microphones(),
        "others will not hear you",
    ) {
        Ok(n) => n,
        Err(warn) => return warn,
    };
    let mut mic = match MicrophoneSource::open(None) {
        Ok(m) => m,
        Err(e) => {
            return Check::warn(
                "microphones",
                format!("{}; the default one does not open: {e}", names.join(", ")),
                "pick another in the app's device menu, or free the device",
            );
        }
    };
    // A second of 20 ms frames; the loudest tells whether anything comes in.
    let mut loudest = -120.0f32;
    for _ in 0..50 {
        match mic.next_frame() {
            Ok(f) => loudest = loudest.max(level_dbfs(&f.samples)),
            Err(e) => {
                return Check::warn(
                    "microphones",
                    format!("{}; the default one stopped: {e}", names.join(", ")),
                    "pick another in the app's device menu",
                );
            }
        }
    }
    let detail = format!(
        "{}; {}: loudest {loudest:.0} dBFS in 1 s",
        names.join(", "),
        mic.describe()
    );
    if loudest <= -90.0 {
        return Check::warn(
            "microphones",
            detail,
            "nothing but silence: is it muted, or the wrong input?",
        );
    }
    Check::ok("microphones", detail)
}

fn speakers() -> Check {
    let names = match ids("speakers", list_speakers(), "you will not hear the others") {
        Ok(n) => n,
        Err(warn) => return warn,
    };
    let speaker = match Speaker::open(None) {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                "speakers",
                format!("{}; the default one does not open: {e}", names.join(", ")),
                "pick another in the app's device menu",
            );
        }
    };
    // A quiet 440 Hz second, as a person would hear it.
    let tone = SyntheticAudio::new(440.0);
    let start = Instant::now();
    for n in 0..50u64 {
        let mut frame = tone.frame_at(n, 0);
        frame.samples.iter_mut().for_each(|s| *s *= 0.3);
        speaker.push("doctor", &frame.samples, Arrival::at(0));
    }
    while speaker.played_frames() < 48_000 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let played = speaker.played_frames();
    let detail = format!("{}; {}", names.join(", "), speaker.describe());
    if played == 0 {
        return Check::warn(
            "speakers",
            format!("{detail}: took no sound in 3 s"),
            "the device may be held by another program",
        );
    }
    Check::ok(
        "speakers",
        format!("{detail}: played a 1 s tone ({played} frames)"),
    )
}

fn screens() -> Check {
    let screens = list_screens();
    if screens.is_empty() {
        return Check::warn(
            "screens",
            "none to share",
            "screen sharing needs an X11 session (DISPLAY)",
        );
    }
    let names: Vec<String> = screens.iter().map(|s| s.name.clone()).collect();
    Check::ok("screens", names.join(", "))
}

/// 720p at 30 fps must fit in a frame interval with room to spare; the assembly paths
/// (nasm at build time) make it about 3 times faster.
fn encoder() -> Check {
    const FRAMES: u32 = 30;
    let result = (|| {
        let settings = EncoderSettings {
            width: 1280,
            height: 720,
            fps: 30.0,
            bitrate_bps: 2_500_000,
            keyframe_interval_frames: 0,
        };
        let mut enc = H264Encoder::new(settings)?;
        let src = SyntheticVideo::new(1280, 720, 30.0)?;
        let (mut bytes, mut spent) = (0usize, Duration::ZERO);
        for n in 0..FRAMES {
            let frame = src.frame(n);
            let t = Instant::now();
            if let Some(au) = enc.encode(&frame)? {
                bytes += au.data.len();
            }
            spent += t.elapsed();
        }
        Ok::<_, crate::media::MediaError>((bytes, spent / FRAMES))
    })();
    match result {
        Ok((0, _)) => Check::fail(
            "encoder",
            "openh264 produced nothing",
            "video cannot be sent; report this",
        ),
        Ok((_, per_frame)) if per_frame > Duration::from_millis(20) => Check::warn(
            "encoder",
            format!(
                "H.264 1280x720: {:.1} ms a frame",
                per_frame.as_secs_f64() * 1e3
            ),
            "slow for 30 fps: a build without nasm lacks the assembly paths (install nasm, rebuild)",
        ),
        Ok((_, per_frame)) => Check::ok(
            "encoder",
            format!(
                "H.264 1280x720: {:.1} ms a frame",
                per_frame.as_secs_f64() * 1e3
            ),
        ),
        Err(e) => Check::fail(
            "encoder",
            format!("openh264 does not encode: {e}"),
            "video cannot be sent; report this",
        ),
    }
}
