//! A looping, paced WAV file source converted to 48 kHz mono f32.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::{AudioSource, Pacer};
use crate::media::error::MediaError;
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AUDIO_RATE, AudioFrame, now_us};

pub struct WavAudio {
    path: PathBuf,
    /// The whole file, already mono at 48 kHz: files here are short test clips.
    pcm: Vec<f32>,
    pos: usize,
    source_rate: u32,
    channels: u16,
    pacer: Pacer,
    base_us: Option<u64>,
}

impl WavAudio {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let path = path.as_ref().to_path_buf();
        let mut reader = hound::WavReader::open(&path)?;
        let spec = reader.spec();
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()?
            }
        };
        let ch = spec.channels.max(1) as usize;
        let mono: Vec<f32> = interleaved
            .chunks_exact(ch)
            .map(|c| c.iter().sum::<f32>() / ch as f32)
            .collect();
        if mono.is_empty() {
            return Err(MediaError::Invalid(format!(
                "{}: no samples",
                path.display()
            )));
        }
        let pcm = if spec.sample_rate == AUDIO_RATE {
            mono
        } else {
            resample(&mono, spec.sample_rate)?
        };
        Ok(Self {
            path,
            pcm,
            pos: 0,
            source_rate: spec.sample_rate,
            channels: spec.channels,
            pacer: Pacer::new(Duration::from_micros(AUDIO_FRAME_US), false),
            base_us: None,
        })
    }

    fn take_frame(&mut self) -> Vec<f32> {
        let mut out = Vec::with_capacity(AUDIO_FRAME_SAMPLES);
        while out.len() < AUDIO_FRAME_SAMPLES {
            let n = (AUDIO_FRAME_SAMPLES - out.len()).min(self.pcm.len() - self.pos);
            out.extend_from_slice(&self.pcm[self.pos..self.pos + n]);
            self.pos = (self.pos + n) % self.pcm.len();
        }
        out
    }
}

fn resample(mono: &[f32], rate: u32) -> Result<Vec<f32>, MediaError> {
    let err = |e: &dyn std::fmt::Display| MediaError::Resample(e.to_string());
    let mut rs = Fft::<f32>::new(
        rate as usize,
        AUDIO_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| err(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| err(&e))?;
    let out = rs
        .process_all(&input, mono.len(), None)
        .map_err(|e| err(&e))?;
    Ok(out.take_data())
}

impl AudioSource for WavAudio {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        let slot = self.pacer.wait();
        let base = *self.base_us.get_or_insert_with(now_us);
        Ok(AudioFrame {
            samples: self.take_frame(),
            capture_us: base + slot * AUDIO_FRAME_US,
        })
    }

    fn describe(&self) -> String {
        format!(
            "wav {} ({} Hz, {} ch)",
            self.path.display(),
            self.source_rate,
            self.channels
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, level_dbfs};

    fn write_wav(path: &Path, rate: u32, channels: u16, secs: f32, hz: f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..(rate as f32 * secs) as usize {
            let s = 0.3 * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin();
            for c in 0..channels {
                // Second channel silent: downmixing must halve the level.
                let v = if c == 0 { s } else { 0.0 };
                w.write_sample((v * 32767.0) as i16).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn mono_48k_file_reads_back_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 48_000, 1, 0.05, 440.0); // 2400 samples = 2.5 frames
        let mut src = WavAudio::open(&path).unwrap();
        let f: Vec<AudioFrame> = (0..3).map(|_| src.next_frame().unwrap()).collect();
        assert!(f.iter().all(|f| f.samples.len() == AUDIO_FRAME_SAMPLES));
        assert_eq!(f[1].capture_us - f[0].capture_us, AUDIO_FRAME_US);
        // Frame 2 holds samples 1920..2400, then the start of the file again.
        assert!((f[2].samples[480] - f[0].samples[0]).abs() < 1e-6);
        assert!((f[2].samples[481] - f[0].samples[1]).abs() < 1e-6);
    }

    #[test]
    fn stereo_44k1_file_is_downmixed_and_resampled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.wav");
        write_wav(&path, 44_100, 2, 1.0, 1000.0);
        let mut src = WavAudio::open(&path).unwrap();
        assert!(src.describe().contains("44100 Hz, 2 ch"));
        // One second at 44.1 kHz becomes one second at 48 kHz (give or take a frame).
        assert!(
            (src.pcm.len() as i64 - 48_000).abs() < 960,
            "{}",
            src.pcm.len()
        );
        let pcm: Vec<f32> = (0..10)
            .flat_map(|_| src.next_frame().unwrap().samples)
            .collect();
        let mid = &pcm[2000..9600];
        assert!((dominant_frequency(mid, AUDIO_RATE) - 1000.0).abs() < 2.0);
        // 0.3 peak on one of two channels: 0.15 peak mono, RMS -22.5 dBFS.
        let expected = 20.0 * (0.15f32 / 2f32.sqrt()).log10();
        assert!(
            (level_dbfs(mid) - expected).abs() < 0.5,
            "{}",
            level_dbfs(mid)
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(WavAudio::open("/nonexistent/x.wav").is_err());
    }
}
