//! The join and leave chimes: two short notes, rising when someone joins and falling
//! when someone leaves. Generated, played to the speaker, never sent to a peer.

use std::f32::consts::TAU;
use std::time::Duration;

use super::{AudioSource, Pacer};
use crate::media::error::MediaError;
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AUDIO_RATE, AudioFrame, now_us};

/// C6 and G6: brighter and shorter than the ring, so the two are not confused.
pub const CHIME_NOTES_HZ: [f32; 2] = [1046.5, 1568.0];
/// Frames (20 ms) per note.
const NOTE_FRAMES: u64 = 6;
pub const CHIME_FRAMES: u64 = 2 * NOTE_FRAMES;
/// Quieter than the ring: a notice, not a call for attention.
const AMPLITUDE: f32 = 0.15;

#[derive(Debug)]
pub struct Chime {
    pacer: Pacer,
    rising: bool,
}

impl Chime {
    pub fn new(rising: bool) -> Self {
        Self {
            pacer: Pacer::new(Duration::from_micros(AUDIO_FRAME_US), false),
            rising,
        }
    }

    /// Frame `n` of the chime without pacing; None after its end.
    pub fn frame_at(rising: bool, n: u64) -> Option<Vec<f32>> {
        if n >= CHIME_FRAMES {
            return None;
        }
        let first = usize::from(!rising);
        let hz = CHIME_NOTES_HZ[(first + (n / NOTE_FRAMES) as usize) % 2];
        let len = (NOTE_FRAMES as usize * AUDIO_FRAME_SAMPLES) as f32;
        let samples = (0..AUDIO_FRAME_SAMPLES)
            .map(|i| {
                let k = ((n % NOTE_FRAMES) as usize * AUDIO_FRAME_SAMPLES + i) as f32;
                // A 5 ms attack, then a decay to silence at the note's end: no clicks.
                let env = (k / (0.005 * AUDIO_RATE as f32)).min(1.0) * (1.0 - k / len).powi(2);
                AMPLITUDE * env * (TAU * hz * k / AUDIO_RATE as f32).sin()
            })
            .collect();
        Some(samples)
    }
}

impl AudioSource for Chime {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        let slot = self.pacer.wait();
        let samples = Self::frame_at(self.rising, slot)
            .ok_or_else(|| MediaError::Invalid("the chime is over".into()))?;
        Ok(AudioFrame {
            samples,
            capture_us: now_us(),
        })
    }

    fn describe(&self) -> String {
        "chime (generated)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, level_dbfs};

    fn note(rising: bool, second: bool) -> Vec<f32> {
        let from = if second { NOTE_FRAMES } else { 0 };
        (from..from + NOTE_FRAMES / 2)
            .flat_map(|n| Chime::frame_at(rising, n).unwrap())
            .collect()
    }

    #[test]
    fn joining_rises_leaving_falls_and_the_chime_ends() {
        for (rising, order) in [(true, [0, 1]), (false, [1, 0])] {
            for (second, want) in [(false, order[0]), (true, order[1])] {
                let hz = dominant_frequency(&note(rising, second), AUDIO_RATE);
                let want = CHIME_NOTES_HZ[want];
                assert!((hz - want).abs() < 10.0, "{hz} Hz, wanted {want}");
            }
        }
        assert!(level_dbfs(&note(true, false)) > -30.0);
        assert_eq!(Chime::frame_at(true, CHIME_FRAMES), None);
        let last = Chime::frame_at(true, CHIME_FRAMES - 1).unwrap();
        assert!(last.last().unwrap().abs() < 1e-3, "fades out to silence");
    }
}
