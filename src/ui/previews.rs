//! The lobby's camera preview and microphone meter, and the ring tone: threads that run
//! until their flag is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;

use crate::call;
use crate::media::{AudioSource, Chime, RingTone, VideoSource, level_dbfs};

use super::sink::UiSink;
use super::video::SELF_ID;

/// The speaker stream the ring tone plays on (member ids are printable, so no clash).
pub(super) const RING_STREAM: &str = "\u{1}ring";

/// Runs `step` on a named thread until it returns false or the returned flag is set,
/// then `finish`. The lobby's previews and the ring are such loops.
pub(super) fn run_until_stopped(
    name: &str,
    mut step: impl FnMut() -> bool + Send + 'static,
    finish: impl FnOnce() + Send + 'static,
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stopped.load(Ordering::Relaxed) && step() {}
            finish();
        });
    if let Err(e) = spawned {
        tracing::warn!("no {name} thread: {e}");
    }
    stop
}

/// Feeds the lobby's self-preview from a source.
pub(super) fn run_preview(mut source: Box<dyn VideoSource>, media: Arc<UiSink>) -> Arc<AtomicBool> {
    run_until_stopped(
        "preview",
        move || match source.next_frame() {
            Ok(f) => {
                media.video.store(SELF_ID, call::TrackRole::Camera, &f);
                true
            }
            Err(_) => false,
        },
        || {},
    )
}

/// Measures a microphone for the lobby's level meter.
pub(super) fn run_mic_meter(
    mut source: Box<dyn AudioSource>,
    media: Arc<UiSink>,
    ctx: egui::Context,
) -> Arc<AtomicBool> {
    let (meter, meter_ctx) = (media.clone(), ctx.clone());
    let mut n = 0u64;
    run_until_stopped(
        "mic-meter",
        move || {
            let Ok(f) = source.next_frame() else {
                return false;
            };
            meter.sound.set_level(SELF_ID, Some(level_dbfs(&f.samples)));
            n += 1;
            // About 16 redraws a second is smooth enough for a meter.
            if n.is_multiple_of(3) {
                meter_ctx.request_repaint();
            }
            true
        },
        move || {
            media.sound.set_level(SELF_ID, None);
            ctx.request_repaint();
        },
    )
}

/// Plays the ring tone on the speaker until stopped.
pub(super) fn run_ringer(media: Arc<UiSink>) -> Arc<AtomicBool> {
    let mut ring = RingTone::new();
    run_until_stopped(
        "ring",
        move || match ring.next_frame() {
            Ok(f) => {
                media.sound.play_sound(RING_STREAM, &f.samples);
                true
            }
            Err(_) => false,
        },
        || {},
    )
}

/// The speaker stream chimes play on.
const CHIME_STREAM: &str = "\u{1}chime";

/// Plays a join (rising) or leave chime on the speaker; the thread ends with it.
pub(super) fn run_chime(media: Arc<UiSink>, rising: bool) {
    let mut chime = Chime::new(rising);
    run_until_stopped(
        "chime",
        move || match chime.next_frame() {
            Ok(f) => {
                media.sound.play_sound(CHIME_STREAM, &f.samples);
                true
            }
            Err(_) => false,
        },
        || {},
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::SyntheticAudio;

    #[test]
    fn the_mic_meter_reports_the_sources_level_and_clears_it_when_stopped() {
        let media = Arc::new(UiSink::default());
        let ctx = egui::Context::default();
        let (woke, wakes) = std::sync::mpsc::channel();
        ctx.set_request_repaint_callback(move |_| {
            let _ = woke.send(());
        });
        // The synthetic tone is a 0.3-amplitude sine: about -13.5 dBFS.
        let stop = run_mic_meter(
            Box::new(SyntheticAudio::new(440.0)),
            media.clone(),
            ctx.clone(),
        );
        // egui wakes once per pending repaint: draw a frame after each wake, as the app does.
        let wait = || {
            let woken = wakes.recv_timeout(std::time::Duration::from_secs(5));
            let mut out = ctx.run_ui(egui::RawInput::default(), |_| {});
            out.textures_delta.clear();
            woken
        };
        wait().expect("the meter wakes the UI");
        let level = media.sound.level(SELF_ID).expect("a level");
        assert!((-16.0..-10.0).contains(&level), "{level} dBFS");
        stop.store(true, Ordering::Relaxed);
        // On its way out the thread clears the level and wakes the UI a last time.
        while media.sound.level(SELF_ID).is_some() {
            wait().expect("the meter stops and says so");
        }
    }
}
