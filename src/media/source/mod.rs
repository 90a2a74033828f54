//! Blocking, self-paced media sources.

mod chime;
mod mirror;
mod ring;
mod synthetic;
mod wav;
mod y4m;

use std::time::{Duration, Instant};

use super::error::MediaError;
use super::frame::{AudioFrame, VideoFrame};

pub use chime::{CHIME_FRAMES, Chime};
pub use mirror::{MirrorAudio, MirrorFeed, MirrorVideo, mirror};
pub use ring::{RING_CYCLE_MS, RING_NOTES_HZ, RingTone};
pub use synthetic::{SyntheticAudio, SyntheticVideo};
pub use wav::WavAudio;
pub use y4m::Y4mVideo;

/// A camera-like source: `next_frame` blocks until the next frame is due.
pub trait VideoSource: Send {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError>;
    fn describe(&self) -> String;
}

/// A microphone-like source of 20 ms frames: `next_frame` blocks until the frame is due.
pub trait AudioSource: Send {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError>;
    fn describe(&self) -> String;
}

/// Real-time pacing with deadlines computed from the start instant, so sleep
/// overshoot never accumulates into drift.
#[derive(Debug)]
struct Pacer {
    period: Duration,
    start: Option<Instant>,
    next_slot: u64,
    /// Video skips slots it is late for (as a camera drops frames); audio catches up.
    skip_late: bool,
}

impl Pacer {
    fn new(period: Duration, skip_late: bool) -> Self {
        Self {
            period,
            start: None,
            next_slot: 0,
            skip_late,
        }
    }

    /// Sleeps until the next slot is due and returns its index (slot 0 is due at once).
    fn wait(&mut self) -> u64 {
        let start = *self.start.get_or_insert_with(Instant::now);
        let mut slot = self.next_slot;
        let now = Instant::now();
        if self.skip_late {
            let elapsed = now.duration_since(start).as_nanos() / self.period.as_nanos().max(1);
            // More than one whole period late: jump to the current slot instead of bursting.
            if elapsed as u64 > slot + 1 {
                slot = elapsed as u64;
            }
        }
        let deadline = start + self.period.mul_f64(slot as f64);
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        self.next_slot = slot + 1;
        slot
    }
}

fn period_for_fps(fps: f32) -> Result<Duration, MediaError> {
    if !(fps.is_finite() && fps > 0.0 && fps <= 240.0) {
        return Err(MediaError::Invalid(format!(
            "frame rate {fps} out of range"
        )));
    }
    Ok(Duration::from_secs_f64(1.0 / fps as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_keeps_the_schedule_without_drift() {
        let mut p = Pacer::new(Duration::from_millis(10), false);
        let t0 = Instant::now();
        let slots: Vec<u64> = (0..10).map(|_| p.wait()).collect();
        let took = t0.elapsed();
        assert_eq!(slots, (0..10).collect::<Vec<_>>());
        // Slot 9 is due 90 ms after the start; sleeping never returns early.
        assert!(took >= Duration::from_millis(90), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn video_pacer_skips_slots_it_is_late_for() {
        let mut p = Pacer::new(Duration::from_millis(5), true);
        assert_eq!(p.wait(), 0);
        // Simulate a consumer stall by moving the start into the past.
        p.start = Some(Instant::now() - Duration::from_millis(100));
        let slot = p.wait();
        assert!(slot >= 19, "late pacer must jump ahead, got slot {slot}");
    }

    #[test]
    fn audio_pacer_catches_up_without_skipping() {
        let mut p = Pacer::new(Duration::from_millis(5), false);
        assert_eq!(p.wait(), 0);
        p.start = Some(Instant::now() - Duration::from_millis(100));
        assert_eq!(p.wait(), 1);
        assert_eq!(p.wait(), 2);
    }
}
