//! Streaming mono resampling (rubato) for device rates that are not 48 kHz.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::media::MediaError;

/// Resamples a continuous mono stream pushed in arbitrary pieces. Equal rates pass
/// through untouched.
pub struct StreamResampler {
    fft: Option<Fft<f32>>,
    pending: Vec<f32>,
}

impl StreamResampler {
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, MediaError> {
        let fft = if from_rate == to_rate {
            None
        } else {
            // 10 ms chunks keep the added delay small.
            let chunk = (from_rate as usize / 100).max(64);
            Some(
                Fft::<f32>::new(
                    from_rate as usize,
                    to_rate as usize,
                    chunk,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| MediaError::Resample(e.to_string()))?,
            )
        };
        Ok(Self {
            fft,
            pending: Vec::new(),
        })
    }

    /// Appends the resampled form of `input` to `out` (whole chunks only; the rest waits).
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), MediaError> {
        let Some(fft) = self.fft.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        let err = |e: &dyn std::fmt::Display| MediaError::Resample(e.to_string());
        let mut used = 0;
        loop {
            let need = fft.input_frames_next();
            if self.pending.len() - used < need {
                break;
            }
            let chunk = &self.pending[used..used + need];
            let adapter = InterleavedSlice::new(chunk, 1, need).map_err(|e| err(&e))?;
            let res = fft.process(&adapter, None).map_err(|e| err(&e))?;
            out.extend_from_slice(&res.take_data());
            used += need;
        }
        self.pending.drain(..used);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dominant_frequency;

    #[test]
    fn a_44k1_tone_keeps_its_pitch_at_48k() {
        let tone: Vec<f32> = (0..44_100)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44_100.0).sin() * 0.5)
            .collect();
        let mut rs = StreamResampler::new(44_100, 48_000).unwrap();
        let mut out = Vec::new();
        // Odd piece sizes, as a device callback delivers them.
        for piece in tone.chunks(333) {
            rs.push(piece, &mut out).unwrap();
        }
        assert!((47_000..=48_000).contains(&out.len()), "{}", out.len());
        let f = dominant_frequency(&out[4800..], 48_000);
        assert!((f - 1000.0).abs() < 10.0, "{f}");
    }
}
