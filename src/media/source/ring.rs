//! The incoming-call ring: a two-note chime, then silence, repeating. A generated
//! sound played to the speaker, never sent to a peer.

use std::f32::consts::TAU;
use std::time::Duration;

use super::{AudioSource, Pacer};
use crate::media::error::MediaError;
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AUDIO_RATE, AudioFrame, now_us};

/// The two notes (E5, then A5) and how long each sounds.
pub const RING_NOTES_HZ: [f32; 2] = [659.25, 880.0];
const NOTE_MS: u64 = 400;
/// One cycle: both notes, then silence until the next cycle.
pub const RING_CYCLE_MS: u64 = 2_000;
const AMPLITUDE: f32 = 0.3;
/// Fade in and out over 10 ms so notes start and stop without clicks.
const FADE_MS: f32 = 10.0;

#[derive(Debug)]
pub struct RingTone {
    pacer: Pacer,
}

impl Default for RingTone {
    fn default() -> Self {
        Self::new()
    }
}

impl RingTone {
    pub fn new() -> Self {
        Self {
            pacer: Pacer::new(Duration::from_micros(AUDIO_FRAME_US), false),
        }
    }

    /// Frame `n` (20 ms each) of the ring, without pacing.
    pub fn frame_at(n: u64, capture_us: u64) -> AudioFrame {
        let rate = AUDIO_RATE as u64;
        let cycle = RING_CYCLE_MS * rate / 1000;
        let note_len = NOTE_MS * rate / 1000;
        let fade = FADE_MS * AUDIO_RATE as f32 / 1000.0;
        let samples = (0..AUDIO_FRAME_SAMPLES as u64)
            .map(|i| {
                let k = (n * AUDIO_FRAME_SAMPLES as u64 + i) % cycle;
                let note = (k / note_len) as usize;
                let Some(&hz) = RING_NOTES_HZ.get(note) else {
                    return 0.0;
                };
                let pos = (k % note_len) as f32;
                let env = (pos / fade).min(1.0) * ((note_len as f32 - pos) / fade).min(1.0);
                AMPLITUDE * env * (TAU * hz * k as f32 / AUDIO_RATE as f32).sin()
            })
            .collect();
        AudioFrame {
            samples,
            capture_us,
        }
    }
}

impl AudioSource for RingTone {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        let slot = self.pacer.wait();
        Ok(Self::frame_at(slot, now_us()))
    }

    fn describe(&self) -> String {
        "ring tone (generated)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, level_dbfs};

    /// Samples from `from_ms` to `to_ms` of the ring.
    fn span(from_ms: u64, to_ms: u64) -> Vec<f32> {
        let per_frame = AUDIO_FRAME_US / 1000;
        (from_ms / per_frame..to_ms / per_frame)
            .flat_map(|n| RingTone::frame_at(n, 0).samples)
            .collect()
    }

    #[test]
    fn the_ring_plays_two_notes_then_rests_and_repeats() {
        let first = dominant_frequency(&span(40, 360), AUDIO_RATE);
        let second = dominant_frequency(&span(440, 760), AUDIO_RATE);
        assert!((first - RING_NOTES_HZ[0]).abs() < 5.0, "{first}");
        assert!((second - RING_NOTES_HZ[1]).abs() < 5.0, "{second}");
        assert!(level_dbfs(&span(40, 360)) > -20.0);
        assert!(
            level_dbfs(&span(900, 1900)) < -100.0,
            "silence between rings"
        );
        let again = dominant_frequency(&span(2040, 2360), AUDIO_RATE);
        assert!((again - RING_NOTES_HZ[0]).abs() < 5.0, "{again}");
    }

    #[test]
    fn notes_fade_in_without_a_click() {
        let s = RingTone::frame_at(0, 0).samples;
        assert!(s[0].abs() < 1e-6);
        let jumps = s
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        // A full-scale step would be AMPLITUDE; a 659 Hz sine moves at most ~0.026 a sample.
        assert!(jumps < 0.03, "{jumps}");
    }
}
