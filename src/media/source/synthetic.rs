//! Synthetic test sources: moving video with a barcode, a tone with wall-clock clicks.

use std::f32::consts::TAU;
use std::time::Duration;

use super::{AudioSource, Pacer, VideoSource, period_for_fps};
use crate::media::barcode;
use crate::media::error::MediaError;
use crate::media::frame::{
    AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AUDIO_RATE, AudioFrame, VideoFrame, now_us,
};

/// SMPTE-like bars as (Y, U, V).
const BARS: [(u8, u8, u8); 8] = [
    (235, 128, 128),
    (210, 16, 146),
    (170, 166, 16),
    (145, 54, 34),
    (106, 202, 222),
    (81, 90, 240),
    (41, 240, 110),
    (16, 128, 128),
];

/// Scrolling colour bars, a vertical gradient and a bouncing textured box, with the
/// frame id and capture time barcoded into the top band.
#[derive(Debug)]
pub struct SyntheticVideo {
    width: usize,
    height: usize,
    fps: f32,
    pacer: Pacer,
}

impl SyntheticVideo {
    pub fn new(width: usize, height: usize, fps: f32) -> Result<Self, MediaError> {
        VideoFrame::black(width, height, 0)?;
        Ok(Self {
            width,
            height,
            fps,
            pacer: Pacer::new(period_for_fps(fps)?, true),
        })
    }

    /// Frame `n` stamped with the current wall clock, without pacing.
    pub fn frame(&self, n: u32) -> VideoFrame {
        self.frame_at(n, now_us())
    }

    /// Frame `n` with an explicit capture time (deterministic, for tests).
    pub fn frame_at(&self, n: u32, capture_us: u64) -> VideoFrame {
        let (w, h) = (self.width, self.height);
        let mut f = VideoFrame::black(w, h, capture_us).expect("dimensions checked in new");
        let n = n as usize;
        let t = n as f32;
        let top = barcode::band_height(h);
        // Bars scroll one full width every 8 s of frames at 30 fps.
        let shift = n * w / 240;
        let bar_of = |x: usize| ((x + shift) % w) * BARS.len() / w;
        // Plus a drifting separable ripple (horizontal + vertical) and a vertical
        // gradient, so inter prediction has detail to track. Separable, so each row is
        // the column pattern plus a per-row offset: rows are built once per distinct
        // offset and copied, which keeps 1080p cheap even in unoptimised builds.
        let columns: Vec<i32> = (0..w)
            .map(|x| {
                let ripple = 14.0 * ((x as f32 + 3.0 * t) * 0.35).sin();
                BARS[bar_of(x)].0 as i32 + ripple.round() as i32
            })
            .collect();
        let mut rows: Vec<Option<Vec<u8>>> = vec![None; 128];
        for y in top..h {
            let ripple = (14.0 * ((y as f32 - 2.0 * t) * 0.27).cos()).round() as i32;
            let offset = ripple - (y * 40 / h) as i32; // within -54..=14
            let row = rows[(offset + 64) as usize].get_or_insert_with(|| {
                columns
                    .iter()
                    .map(|&c| (c + offset).clamp(16, 235) as u8)
                    .collect()
            });
            f.y[y * w..(y + 1) * w].copy_from_slice(row);
        }
        let cw = w / 2;
        let (u_row, v_row): (Vec<u8>, Vec<u8>) = (0..cw)
            .map(|x| (BARS[bar_of(x * 2)].1, BARS[bar_of(x * 2)].2))
            .unzip();
        for y in top / 2..h / 2 {
            f.u[y * cw..(y + 1) * cw].copy_from_slice(&u_row);
            f.v[y * cw..(y + 1) * cw].copy_from_slice(&v_row);
        }
        // A checkered box bouncing below the barcode band: texture that really moves.
        let (bw, bh) = ((w / 6).max(2), (h / 6).max(2));
        let span_x = (w - bw).max(1);
        let span_y = (h - top).saturating_sub(bh).max(1);
        let tri = |t: usize, span: usize| {
            let p = t % (2 * span);
            if p < span { p } else { 2 * span - p }
        };
        let bx = tri(n * 7, span_x);
        let by = top + tri(n * 5, span_y);
        let check = (bw / 4).max(1);
        for y in by..(by + bh).min(h) {
            for cx in (0..bw).step_by(check) {
                let on = (cx / check + (y - by) / check).is_multiple_of(2);
                let (x0, x1) = (
                    y * w + bx + cx,
                    y * w + (bx + cx + check).min(bx + bw).min(w),
                );
                f.y[x0..x1].fill(if on { 200 } else { 60 });
            }
        }
        barcode::draw(&mut f, n as u32, capture_us);
        f
    }
}

impl VideoSource for SyntheticVideo {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        let slot = self.pacer.wait();
        Ok(self.frame(slot as u32))
    }

    fn describe(&self) -> String {
        format!(
            "synthetic {}x{} @ {} fps",
            self.width, self.height, self.fps
        )
    }
}

/// Marker click: a short 3.5 kHz burst starting exactly at each whole wall-clock second.
const CLICK_HZ: f32 = 3_500.0;
const CLICK_US: u64 = 5_000;
const CLICK_AMPLITUDE: f32 = 0.6;
const TONE_AMPLITUDE: f32 = 0.3;

/// A sine tone plus a marker click at every whole second of the wall clock, so a
/// receiver can measure latency as (arrival time of the click onset) mod 1 s.
#[derive(Debug)]
pub struct SyntheticAudio {
    tone_hz: f32,
    pacer: Pacer,
    base_us: Option<u64>,
}

impl SyntheticAudio {
    pub fn new(tone_hz: f32) -> Self {
        Self {
            tone_hz,
            pacer: Pacer::new(Duration::from_micros(AUDIO_FRAME_US), false),
            base_us: None,
        }
    }

    /// Frame `n` whose first sample is at `capture_us`, without pacing. The tone's
    /// phase follows `n`; the click follows the wall clock given by `capture_us`.
    pub fn frame_at(&self, n: u64, capture_us: u64) -> AudioFrame {
        let rate = AUDIO_RATE as u64;
        let mut samples = Vec::with_capacity(AUDIO_FRAME_SAMPLES);
        for i in 0..AUDIO_FRAME_SAMPLES as u64 {
            let k = n * AUDIO_FRAME_SAMPLES as u64 + i;
            let phase = (k as f64 * self.tone_hz as f64 / rate as f64).fract() as f32;
            let mut s = TONE_AMPLITUDE * (TAU * phase).sin();
            let t_us = capture_us + i * 1_000_000 / rate;
            let into_second = t_us % 1_000_000;
            if into_second < CLICK_US {
                s += click_sample(into_second as f32 * 1e-6);
            }
            samples.push(s.clamp(-1.0, 1.0));
        }
        AudioFrame {
            samples,
            capture_us,
        }
    }
}

/// Click waveform `t` seconds after its onset: fast attack so the onset is sharp.
fn click_sample(t: f32) -> f32 {
    let len = CLICK_US as f32 * 1e-6;
    let env = (t / 0.000_25).min(1.0) * ((len - t) / 0.001).clamp(0.0, 1.0);
    CLICK_AMPLITUDE * env * (TAU * CLICK_HZ * t).sin()
}

impl AudioSource for SyntheticAudio {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        let slot = self.pacer.wait();
        let base = *self.base_us.get_or_insert_with(now_us);
        Ok(self.frame_at(slot, base + slot * AUDIO_FRAME_US))
    }

    fn describe(&self) -> String {
        format!("synthetic {} Hz tone with 1 s clicks", self.tone_hz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, level_dbfs};

    #[test]
    fn video_frames_carry_their_id_and_differ_over_time() {
        let src = SyntheticVideo::new(320, 240, 30.0).unwrap();
        let a = src.frame_at(10, 1_000);
        let b = src.frame_at(11, 2_000);
        let got = barcode::read(&a.y, 320, 240, 320).unwrap();
        assert_eq!((got.frame_id, got.capture_us), (10, 1_000));
        // Real motion below the band, not just a changed barcode.
        let band = barcode::band_height(240) * 320;
        let changed = a.y[band..]
            .iter()
            .zip(&b.y[band..])
            .filter(|(x, y)| x != y)
            .count();
        assert!(changed > 320 * 10, "only {changed} luma samples changed");
    }

    #[test]
    fn odd_sizes_and_bad_rates_are_rejected() {
        assert!(SyntheticVideo::new(321, 240, 30.0).is_err());
        assert!(SyntheticVideo::new(320, 240, 0.0).is_err());
    }

    #[test]
    fn paced_video_returns_consecutive_ids_at_the_frame_rate() {
        let mut src = SyntheticVideo::new(160, 120, 50.0).unwrap();
        let t0 = std::time::Instant::now();
        let ids: Vec<u32> = (0..5)
            .map(|_| {
                let f = src.next_frame().unwrap();
                barcode::read(&f.y, 160, 120, 160).unwrap().frame_id
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert!(t0.elapsed() >= Duration::from_millis(80));
    }

    #[test]
    fn audio_is_the_tone_without_click_between_seconds() {
        let src = SyntheticAudio::new(440.0);
        // 100 ms starting 200 ms into a second: no click anywhere.
        let base = 1_795_000_000_200_000;
        let pcm: Vec<f32> = (0..5)
            .flat_map(|n| src.frame_at(n, base + n * AUDIO_FRAME_US).samples)
            .collect();
        assert!((dominant_frequency(&pcm, AUDIO_RATE) - 440.0).abs() < 2.0);
        let expected = 20.0 * (TONE_AMPLITUDE / 2f32.sqrt()).log10();
        assert!((level_dbfs(&pcm) - expected).abs() < 0.2);
    }

    #[test]
    fn click_starts_at_the_whole_second_sample_and_spans_frames() {
        let src = SyntheticAudio::new(440.0);
        // The second boundary falls 19 ms into this frame; the 5 ms click spills over.
        let capture = 1_795_000_001_000_000 - 19_000;
        let a = src.frame_at(0, capture);
        let b = src.frame_at(1, capture + AUDIO_FRAME_US);
        let tone = |k: usize| TONE_AMPLITUDE * (TAU * 440.0 * k as f32 / 48_000.0).sin();
        let onset = 19 * 48; // 19 ms in samples
        for (i, s) in a.samples[..onset].iter().enumerate() {
            assert!((s - tone(i)).abs() < 1e-3, "click before the second at {i}");
        }
        let extra = |f: &AudioFrame, i: usize, k: usize| (f.samples[i] - tone(k)).abs();
        assert!((onset..960).any(|i| extra(&a, i, i) > 0.3));
        assert!(
            (0..100).any(|i| extra(&b, i, 960 + i) > 0.3),
            "click must continue"
        );
        assert!(
            (300..960).all(|i| extra(&b, i, 960 + i) < 1e-3),
            "click must end"
        );
    }

    #[test]
    fn paced_audio_is_stamped_on_a_gapless_20_ms_grid_from_now() {
        let mut src = SyntheticAudio::new(440.0);
        let before = now_us();
        let frames: Vec<AudioFrame> = (0..4).map(|_| src.next_frame().unwrap()).collect();
        assert!(frames[0].capture_us >= before && frames[0].capture_us < before + 20_000);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].capture_us - pair[0].capture_us, AUDIO_FRAME_US);
        }
        // Delivery keeps up with the stamps: frame 3 is not handed out before it is due.
        assert!(now_us() + 2_000 >= frames[3].capture_us);
        assert!(
            frames
                .iter()
                .all(|f| f.samples.len() == AUDIO_FRAME_SAMPLES)
        );
    }
}
