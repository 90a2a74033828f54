//! Signal measurements for tests and call quality checks: pitch, level, marker clicks.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Frequency (Hz) of the strongest spectral peak, refined between FFT bins.
/// Returns 0 for empty input.
pub fn dominant_frequency(samples: &[f32], rate: u32) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    // Zero-padding to 4x (at least 16k points) makes the bins fine enough that
    // Gaussian peak interpolation lands within about 1 Hz.
    let n = (samples.len() * 4).max(16_384).next_power_of_two();
    let len = samples.len() as f32;
    let mut buf: Vec<Complex<f32>> = samples
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / len).cos();
            Complex::new(s * w, 0.0)
        })
        .chain(std::iter::repeat(Complex::new(0.0, 0.0)))
        .take(n)
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let bin_hz = rate as f32 / n as f32;
    // Skip DC and sub-audio leakage.
    let first = ((20.0 / bin_hz) as usize).max(1);
    let mags: Vec<f32> = buf[..n / 2].iter().map(|c| c.norm()).collect();
    let Some(peak) = (first..n / 2 - 1).max_by(|&a, &b| mags[a].total_cmp(&mags[b])) else {
        return 0.0;
    };
    let ln = |i: usize| mags[i].max(1e-20).ln();
    let (a, b, c) = (ln(peak - 1), ln(peak), ln(peak + 1));
    let denom = a - 2.0 * b + c;
    let delta = if denom.abs() > 1e-12 {
        0.5 * (a - c) / denom
    } else {
        0.0
    };
    (peak as f32 + delta.clamp(-0.5, 0.5)) * bin_hz
}

/// RMS level in dBFS (a full-scale sine is -3 dBFS); -120 for silence or empty input.
pub fn level_dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -120.0;
    }
    let ms = samples.iter().map(|&s| s as f64 * s as f64).sum::<f64>() / samples.len() as f64;
    (10.0 * ms.max(1e-12).log10()).max(-120.0) as f32
}

/// Latency implied by a click onset, given that clicks are sent at whole wall-clock
/// seconds: valid while the true latency is below one second.
pub fn click_latency_us(onset_arrival_us: u64) -> u64 {
    onset_arrival_us % 1_000_000
}

/// High-pass corner: well above a test tone, below the 3.5 kHz marker click.
const HP_HZ: f32 = 2_500.0;
/// Absolute floor for the high-passed amplitude that counts as a click.
const MIN_AMPLITUDE: f32 = 0.1;
/// The click must also stand this far above the high-band background (RMS).
const OVER_BACKGROUND: f32 = 6.0;
const BACKGROUND_TAU_S: f32 = 0.05;
/// Clicks are 1 s apart; ignoring 300 ms after one swallows its own tail and echoes.
const REFRACTORY_S: f32 = 0.3;
/// Lets filter and codec start-up transients pass before detecting anything.
const WARMUP_S: f32 = 0.05;

/// Finds marker-click onsets in decoded PCM fed in arrival order.
#[derive(Debug)]
pub struct ClickDetector {
    rate: u32,
    hp: [Biquad; 2],
    background_ms: f32,
    alpha: f32,
    holdoff: usize,
    refractory: usize,
    warmup: usize,
}

impl ClickDetector {
    pub fn new(rate: u32) -> Self {
        let r = rate as f32;
        Self {
            rate,
            // 4th-order Butterworth high-pass as two biquads.
            hp: [
                Biquad::high_pass(HP_HZ, 0.541_196_1, r),
                Biquad::high_pass(HP_HZ, 1.306_563, r),
            ],
            background_ms: 0.0,
            alpha: 1.0 - (-1.0 / (BACKGROUND_TAU_S * r)).exp(),
            holdoff: 0,
            refractory: (REFRACTORY_S * r) as usize,
            warmup: (WARMUP_S * r) as usize,
        }
    }

    /// Feeds the next chunk; `arrival_us` is the wall time of its first sample (when it
    /// was received or played). Returns the wall time of each click onset found in it.
    pub fn feed(&mut self, samples: &[f32], arrival_us: u64) -> Vec<u64> {
        let mut onsets = Vec::new();
        for (i, &x) in samples.iter().enumerate() {
            let y0 = self.hp[0].process(x);
            let y = self.hp[1].process(y0);
            if self.warmup > 0 {
                self.warmup -= 1;
                self.background_ms += self.alpha * (y * y - self.background_ms);
                continue;
            }
            if self.holdoff > 0 {
                self.holdoff -= 1;
                continue;
            }
            let threshold = MIN_AMPLITUDE.max(OVER_BACKGROUND * self.background_ms.sqrt());
            if y.abs() > threshold {
                onsets.push(arrival_us + i as u64 * 1_000_000 / self.rate as u64);
                self.holdoff = self.refractory;
            } else {
                self.background_ms += self.alpha * (y * y - self.background_ms);
            }
        }
        onsets
    }
}

#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    z: [f32; 2],
}

impl Biquad {
    /// RBJ cookbook high-pass.
    fn high_pass(f0: f32, q: f32, rate: f32) -> Self {
        let w0 = std::f32::consts::TAU * f0 / rate;
        let (s, c) = w0.sin_cos();
        let alpha = s / (2.0 * q);
        let a0 = 1.0 + alpha;
        Self {
            b: [(1.0 + c) / 2.0 / a0, -(1.0 + c) / a0, (1.0 + c) / 2.0 / a0],
            a: [-2.0 * c / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    /// Transposed direct form II.
    fn process(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::opus::{OpusDecoder, OpusEncoder};
    use crate::media::frame::{AUDIO_FRAME_US, AUDIO_RATE, AudioFrame};
    use crate::media::source::SyntheticAudio;

    /// A whole second on the wall clock, in 2026.
    const SECOND: u64 = 1_795_000_000_000_000;

    fn sine(hz: f32, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (std::f32::consts::TAU * hz * i as f32 / 48_000.0).sin())
            .collect()
    }

    /// Synthetic frames starting `offset_us` into a second, through Opus or not.
    fn stream(tone: f32, offset_us: u64, frames: u64, opus: bool) -> Vec<AudioFrame> {
        let src = SyntheticAudio::new(tone);
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        (0..frames)
            .map(|n| {
                let mut f = src.frame_at(n, SECOND + offset_us + n * AUDIO_FRAME_US);
                if opus {
                    f.samples = dec.decode(&enc.encode(&f).unwrap()).unwrap();
                }
                f
            })
            .collect()
    }

    /// Signed distance (µs) from the nearest whole second.
    fn offset_from_second(t: u64) -> i64 {
        ((t + 500_000) % 1_000_000) as i64 - 500_000
    }

    #[test]
    fn dominant_frequency_is_within_2_hz() {
        for hz in [100.0, 440.0, 997.0, 3_000.0, 12_345.0] {
            for len in [960, 4800, 48_000] {
                let f = dominant_frequency(&sine(hz, 0.3, len), 48_000);
                assert!(
                    (f - hz).abs() < 2.0,
                    "{hz} Hz over {len} samples read as {f}"
                );
            }
        }
        assert_eq!(dominant_frequency(&[], 48_000), 0.0);
    }

    #[test]
    fn level_is_rms_in_dbfs() {
        assert!((level_dbfs(&sine(440.0, 1.0, 48_000)) + 3.01).abs() < 0.05);
        assert!((level_dbfs(&sine(440.0, 0.1, 48_000)) + 23.01).abs() < 0.05);
        assert!((level_dbfs(&vec![0.5; 100]) + 6.02).abs() < 0.01);
        assert_eq!(level_dbfs(&vec![0.0; 100]), -120.0);
    }

    #[test]
    fn finds_the_marker_clicks_after_opus_with_codec_delay_only() {
        // Starts 300 ms into a second: clicks at +0.7 s, +1.7 s, +2.7 s.
        let frames = stream(440.0, 300_000, 150, true);
        let mut det = ClickDetector::new(AUDIO_RATE);
        // Zero network delay: each decoded frame "arrives" at its capture time.
        let onsets: Vec<u64> = frames
            .iter()
            .flat_map(|f| det.feed(&f.samples, f.capture_us))
            .collect();
        assert_eq!(onsets.len(), 3, "{onsets:?}");
        for (k, &t) in onsets.iter().enumerate() {
            assert_eq!((t + 500_000) / 1_000_000, SECOND / 1_000_000 + k as u64 + 1);
            let off = offset_from_second(t);
            // libopus adds ~6.5 ms of algorithmic delay; allow slight pre-echo.
            assert!(
                (-1_000..15_000).contains(&off),
                "onset {off} µs from the second"
            );
            assert_eq!(click_latency_us(t) as i64, off);
        }
    }

    #[test]
    fn onsets_do_not_depend_on_chunking() {
        let frames = stream(440.0, 900_000, 20, false);
        let pcm: Vec<f32> = frames.iter().flat_map(|f| f.samples.clone()).collect();
        let t0 = frames[0].capture_us;
        let by_frame: Vec<u64> = {
            let mut d = ClickDetector::new(AUDIO_RATE);
            frames
                .iter()
                .flat_map(|f| d.feed(&f.samples, f.capture_us))
                .collect()
        };
        let by_odd_chunks: Vec<u64> = {
            let mut d = ClickDetector::new(AUDIO_RATE);
            pcm.chunks(333)
                .enumerate()
                .flat_map(|(k, c)| d.feed(c, t0 + (k as u64 * 333 * 1_000_000) / 48_000))
                .collect()
        };
        assert_eq!(by_frame.len(), 1);
        assert_eq!(by_odd_chunks.len(), 1);
        assert!(by_frame[0].abs_diff(by_odd_chunks[0]) <= 21);
        // Uncompressed, the onset is within a few samples of the whole second.
        assert!(
            offset_from_second(by_frame[0]).abs() < 300,
            "{}",
            by_frame[0]
        );
    }

    #[test]
    fn plain_tones_never_trigger() {
        for tone in [440.0, 1_000.0, 1_800.0] {
            // 100 ms into a second, 800 ms long: the synthetic source adds no click here.
            for opus in [false, true] {
                let frames = stream(tone, 100_000, 40, opus);
                let mut det = ClickDetector::new(AUDIO_RATE);
                let hits: usize = frames.iter().map(|f| det.feed(&f.samples, 0).len()).sum();
                assert_eq!(hits, 0, "{tone} Hz (opus: {opus}) triggered");
            }
        }
        let mut det = ClickDetector::new(AUDIO_RATE);
        assert!(
            det.feed(&sine(440.0, 0.9, 48_000), 0).is_empty(),
            "loud tone triggered"
        );
        assert!(det.feed(&vec![0.0; 4800], 0).is_empty());
    }
}
