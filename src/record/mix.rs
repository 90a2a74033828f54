//! The recording's audio: everyone's 48 kHz mono PCM (each remote microphone as decoded,
//! our own as captured) summed into one 20 ms frame at a time. Everything arrives at
//! 48 kHz already, so there is no resampling: each source is a queue with a small
//! jitter buffer, and the recorder's clock pulls one frame from all of them together.

use std::collections::VecDeque;

use crate::media::AUDIO_FRAME_SAMPLES;

/// A source starts playing into the mix once this much is queued (60 ms), so a packet
/// that arrives a little late does not leave a hole.
pub const PRIME_SAMPLES: usize = 3 * AUDIO_FRAME_SAMPLES;
/// More than this queued (300 ms: the source runs ahead of the recorder's clock, or
/// arrived in a burst) is cut back to [`PRIME_SAMPLES`], oldest first.
pub const MAX_QUEUED_SAMPLES: usize = 15 * AUDIO_FRAME_SAMPLES;

#[derive(Debug, Default)]
struct Source {
    queue: VecDeque<f32>,
    /// Playing (not waiting to fill its jitter buffer).
    primed: bool,
}

/// Sums the sources present, one 20 ms frame per [`Mixer::pull`].
#[derive(Debug, Default)]
pub struct Mixer {
    /// In the order first heard; a handful at most, so a list.
    sources: Vec<(String, Source)>,
}

impl Mixer {
    /// Queues `pcm` (48 kHz mono) from `key`.
    pub fn push(&mut self, key: &str, pcm: &[f32]) {
        let i = match self.sources.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.sources.push((key.to_string(), Source::default()));
                self.sources.len() - 1
            }
        };
        let s = &mut self.sources[i].1;
        s.queue.extend(pcm);
        if s.queue.len() > MAX_QUEUED_SAMPLES {
            let drop = s.queue.len() - PRIME_SAMPLES;
            s.queue.drain(..drop);
        }
        if s.queue.len() >= PRIME_SAMPLES {
            s.primed = true;
        }
    }

    /// Forgets a source (its member left): what it had queued is not heard.
    pub fn remove(&mut self, key: &str) {
        self.sources.retain(|(k, _)| k != key);
    }

    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The next 20 ms of the mix. A source that runs dry is silent and waits to fill
    /// its jitter buffer again.
    pub fn pull(&mut self) -> Vec<f32> {
        let mut out = vec![0.0f32; AUDIO_FRAME_SAMPLES];
        for (_, s) in &mut self.sources {
            if !s.primed {
                continue;
            }
            let n = s.queue.len().min(AUDIO_FRAME_SAMPLES);
            for (o, v) in out.iter_mut().zip(s.queue.drain(..n)) {
                *o += v;
            }
            if s.queue.is_empty() {
                s.primed = false;
            }
        }
        for o in &mut out {
            *o = o.clamp(-1.0, 1.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AUDIO_RATE, dominant_frequency};

    fn tone(hz: f32, from: usize, n: usize) -> Vec<f32> {
        (from..from + n)
            .map(|k| 0.3 * (std::f32::consts::TAU * hz * k as f32 / AUDIO_RATE as f32).sin())
            .collect()
    }

    #[test]
    fn two_sources_are_summed_once_each_has_its_jitter_buffer() {
        let mut m = Mixer::default();
        m.push("ada", &tone(440.0, 0, 960));
        assert_eq!(m.pull(), vec![0.0; 960], "still filling its jitter buffer");
        m.push("ada", &tone(440.0, 960, 1920));
        m.push("bob", &tone(1000.0, 0, 2880));
        let a = tone(440.0, 0, 960);
        let b = tone(1000.0, 0, 960);
        let mixed = m.pull();
        for i in 0..960 {
            assert!((mixed[i] - (a[i] + b[i])).abs() < 1e-6, "sample {i}");
        }
        // Both tones are in a longer stretch of the mix.
        let long: Vec<f32> = (0..2).flat_map(|_| m.pull()).collect();
        let only_bob: Vec<f32> = long
            .iter()
            .zip(tone(440.0, 960, 1920))
            .map(|(m, a)| m - a)
            .collect();
        assert!((dominant_frequency(&only_bob, AUDIO_RATE) - 1000.0).abs() < 30.0);
    }

    #[test]
    fn a_source_that_runs_dry_is_silent_until_its_buffer_fills_again() {
        let mut m = Mixer::default();
        m.push("ada", &[0.5; PRIME_SAMPLES]);
        for _ in 0..3 {
            assert_eq!(m.pull()[0], 0.5);
        }
        m.push("ada", &[0.25; 960]);
        assert_eq!(m.pull(), vec![0.0; 960], "refilling, not stuttering");
        m.push("ada", &[0.25; 2 * 960]);
        assert_eq!(m.pull()[959], 0.25);
    }

    #[test]
    fn a_source_far_ahead_is_cut_back_and_the_sum_is_clipped() {
        let mut m = Mixer::default();
        m.push("ada", &[0.1; MAX_QUEUED_SAMPLES]);
        m.push("ada", &[0.9; 960]);
        // 300 ms plus one frame: cut to the newest 60 ms.
        let frames: Vec<f32> = (0..3).map(|_| m.pull()[0]).collect();
        assert_eq!(frames, [0.1, 0.1, 0.9]);
        m.push("x", &[0.8; PRIME_SAMPLES]);
        m.push("y", &[0.8; PRIME_SAMPLES]);
        assert_eq!(m.pull()[0], 1.0);
    }

    #[test]
    fn a_removed_source_is_no_longer_heard() {
        let mut m = Mixer::default();
        m.push("ada", &[0.2; PRIME_SAMPLES]);
        m.push("bob", &[0.3; PRIME_SAMPLES]);
        assert!((m.pull()[0] - 0.5).abs() < 1e-6);
        m.remove("bob");
        assert_eq!(m.sources(), 1);
        assert!((m.pull()[0] - 0.2).abs() < 1e-6);
    }
}
