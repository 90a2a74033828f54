//! Comfort noise: while a sender leaves its silence out (Opus DTX), the listener hears
//! its background noise go on instead of a dead line, as RFC 3389 describes and NetEQ
//! does. The noise is learnt from audio known to be background (the last played before
//! a pause, the decoder's own comfort noise on each DTX refresh): its spectral envelope
//! as a linear predictor, its level as the prediction error's. Played, white noise goes
//! through that predictor's synthesis filter.
//!
//! Pure and inline (fixed arrays, a seeded generator): it runs in the sound card's
//! callback, which must not allocate.

/// Predictor order: enough for the envelope of a fan, a street, a room's hum.
const ORDER: usize = 10;
/// Never louder than this (RMS, full scale 1.0; -42 dBFS, under the UI's speaking
/// ring): what is learnt at a pause's start may still hold the tail of speech.
const MAX_RMS: f32 = 0.008;
/// Below this there is nothing to imitate (a muted microphone's digital zero).
const MIN_RMS: f32 = 1e-5;

#[derive(Debug, Clone, Copy)]
pub struct ComfortNoise {
    /// Synthesis filter: y[n] = g * e[n] - sum a[k] * y[n - 1 - k].
    a: [f32; ORDER],
    gain: f32,
    past: [f32; ORDER],
    seed: u32,
}

impl Default for ComfortNoise {
    fn default() -> Self {
        Self {
            a: [0.0; ORDER],
            gain: 0.0,
            past: [0.0; ORDER],
            seed: 0x2545_f491,
        }
    }
}

impl ComfortNoise {
    /// Learns the noise from `pcm`, audio that is only background.
    pub fn learn(&mut self, pcm: &[f32]) {
        let mut r = [0.0f64; ORDER + 1];
        for (lag, v) in r.iter_mut().enumerate() {
            *v = pcm
                .iter()
                .zip(pcm.iter().skip(lag))
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
        }
        let n = pcm.len().max(1) as f64;
        if (r[0] / n).sqrt() < f64::from(MIN_RMS) {
            self.gain = 0.0;
            return;
        }
        // A little white noise and a lag window keep the filter stable and smooth.
        r[0] *= 1.0001;
        for (lag, v) in r.iter_mut().enumerate().skip(1) {
            *v *= (-0.5 * (0.01 * lag as f64).powi(2)).exp();
        }
        let (a, error) = levinson(&r);
        for (dst, src) in self.a.iter_mut().zip(a) {
            *dst = src as f32;
        }
        // The excitation's RMS is the prediction error's; uniform noise in [-1, 1) has
        // an RMS of 1/sqrt(3).
        let excitation = (error.max(0.0) / n).sqrt() as f32 * 3f32.sqrt();
        let rms = (r[0] / n).sqrt() as f32;
        self.gain = excitation * (MAX_RMS / rms).min(1.0);
    }

    /// The next sample of noise.
    pub fn next(&mut self) -> f32 {
        if self.gain == 0.0 {
            return 0.0;
        }
        // xorshift32: cheap, and the same noise for the same seed in tests.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        let e = (self.seed as f32 / u32::MAX as f32) * 2.0 - 1.0;
        let predicted: f32 = self.a.iter().zip(&self.past).map(|(a, y)| a * y).sum();
        let y = self.gain * e - predicted;
        self.past.copy_within(0..ORDER - 1, 1);
        self.past[0] = y;
        y
    }
}

/// Levinson-Durbin: the predictor a[1..=ORDER] (as a[0..ORDER]) for autocorrelation `r`,
/// with A(z) = 1 + sum a[k] z^-k, and the prediction error's energy.
fn levinson(r: &[f64; ORDER + 1]) -> ([f64; ORDER], f64) {
    let mut a = [0.0f64; ORDER];
    let mut error = r[0];
    for i in 0..ORDER {
        if error <= 0.0 {
            break;
        }
        let acc: f64 = r[i + 1] + (0..i).map(|j| a[j] * r[i - j]).sum::<f64>();
        let k = -acc / error;
        let prev = a;
        for j in 0..i {
            a[j] = prev[j] + k * prev[i - 1 - j];
        }
        a[i] = k;
        error *= 1.0 - k * k;
    }
    (a, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
    }

    /// Energy in the upper half of the band over the lower half's (via first
    /// differences: a low-pass sound has small ones).
    fn tilt(x: &[f32]) -> f32 {
        let diff: Vec<f32> = x.windows(2).map(|w| w[1] - w[0]).collect();
        rms(&diff) / rms(x)
    }

    /// Low-passed noise: a rumble, as a fan or traffic makes.
    fn rumble(n: usize, level: f32) -> Vec<f32> {
        let mut src = ComfortNoise {
            gain: 1.0,
            seed: 7,
            ..ComfortNoise::default()
        };
        let mut y = 0.0f32;
        let raw: Vec<f32> = (0..n)
            .map(|_| {
                y = 0.95 * y + 0.05 * src.next();
                y
            })
            .collect();
        let scale = level / rms(&raw);
        raw.iter().map(|s| s * scale).collect()
    }

    #[test]
    fn it_plays_the_background_it_learnt_at_its_level_and_colour() {
        let background = rumble(4800, 0.005);
        let mut cn = ComfortNoise::default();
        cn.learn(&background[3840..]);
        let played: Vec<f32> = (0..48_000).map(|_| cn.next()).collect();
        let ratio_db = 20.0 * (rms(&played) / rms(&background)).log10();
        assert!(ratio_db.abs() < 2.0, "level off by {ratio_db:.1} dB");
        // White noise would have a tilt near 1.4; the rumble's is far lower.
        let (want, got) = (tilt(&background), tilt(&played));
        assert!(want < 0.5, "the test's rumble is low-passed: {want}");
        assert!((got / want - 1.0).abs() < 0.3, "tilt {got} for {want}");
        assert!(played.iter().all(|s| s.is_finite()));
    }

    #[test]
    fn digital_silence_stays_silent_and_loud_audio_is_not_blasted_back() {
        let mut cn = ComfortNoise::default();
        cn.learn(&[0.0; 960]);
        assert!((0..960).all(|_| cn.next() == 0.0));

        // Speech's tail at -10 dBFS: the noise stays under MAX_RMS.
        cn.learn(&rumble(960, 0.3));
        let played: Vec<f32> = (0..9600).map(|_| cn.next()).collect();
        assert!(rms(&played) < MAX_RMS * 1.2, "{}", rms(&played));
        assert!(rms(&played) > MAX_RMS * 0.5, "{}", rms(&played));
    }
}
