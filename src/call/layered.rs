//! The simulcast encode stage: one picture, encoded at every layer's size by an openh264
//! encoder of its own (the small layers scaled from the next larger one, SIMD), the
//! small layers less often when the encodes take too much of the frame interval
//! (`simulcast.rs`), and only the layers the rate can carry (behind a narrow uplink the
//! large ones stop; Janus then relays its subscribers a smaller one). Runs on the
//! capture thread.

use std::time::{Duration, Instant};

use crate::media::{EncoderSettings, H264Encoder, MediaError, Scaler, VideoFrame};

use super::encode::VideoEncoding;
use super::simulcast::{self, LayerSpec, SmallLayerPacer};

/// One layer's access unit.
pub struct LayerUnit {
    pub layer: usize,
    pub top: bool,
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Until this layer's next unit.
    pub duration: Duration,
    pub capture_us: u64,
    /// Scaling and encoding this layer took.
    pub took: Duration,
    /// Of which scaling.
    pub scaling: Duration,
}

pub struct LayeredEncoder {
    count: usize,
    encoding: VideoEncoding,
    specs: Vec<LayerSpec>,
    /// How many layers, from the smallest, are encoded now.
    active: usize,
    source: (usize, usize),
    encoders: Vec<H264Encoder>,
    /// A keyframe asked for while a small layer skipped its frame.
    keyframe_due: Vec<bool>,
    scaler: Scaler,
    pacer: SmallLayerPacer,
}

impl LayeredEncoder {
    pub fn new(count: usize, encoding: VideoEncoding) -> Self {
        Self {
            count,
            encoding,
            specs: Vec::new(),
            active: count,
            source: (0, 0),
            encoders: Vec::new(),
            keyframe_due: Vec::new(),
            scaler: Scaler::default(),
            pacer: SmallLayerPacer::default(),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f32(1.0 / self.encoding.fps.max(1.0))
    }

    /// (Re)creates the encoders for a source of this size.
    fn open(&mut self, source: (usize, usize)) -> Result<(), MediaError> {
        let total = self.encoding.bitrate_bps;
        self.active = simulcast::active_layers(source, total, self.count, self.count);
        let specs = self.specs_for(source, total);
        let every = self.pacer.every() as f32;
        let mut encoders = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let small = i + 1 < self.active;
            encoders.push(H264Encoder::new(EncoderSettings {
                width: s.width,
                height: s.height,
                fps: if small {
                    self.encoding.fps / every
                } else {
                    self.encoding.fps
                },
                // A layer off now starts at its minimum should it come back.
                bitrate_bps: s.bitrate_bps.max(simulcast::min_bps(s.width, s.height)),
                keyframe_interval_frames: self.encoding.keyframe_interval_frames,
            })?);
        }
        self.keyframe_due = vec![false; specs.len()];
        self.specs = specs;
        self.encoders = encoders;
        self.source = source;
        Ok(())
    }

    /// Every layer's size, and the rate of each active one when they share `total`.
    fn specs_for(&self, source: (usize, usize), total: u32) -> Vec<LayerSpec> {
        let rates = simulcast::rates(total, self.count, self.active);
        simulcast::layers(source, 0, self.count)
            .into_iter()
            .zip(rates)
            .map(|(l, bitrate_bps)| LayerSpec { bitrate_bps, ..l })
            .collect()
    }

    /// How many layers, from the smallest, are encoded now.
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    pub(crate) fn request_keyframe(&mut self) {
        self.keyframe_due.iter_mut().for_each(|k| *k = true);
    }

    /// All layers together send `bps` from now on; the large ones stop if it cannot
    /// carry them, and start again with a keyframe when it can.
    pub(crate) fn set_bitrate(&mut self, bps: u32) {
        self.encoding.bitrate_bps = bps;
        let active = simulcast::active_layers(self.source, bps, self.count, self.active);
        if active != self.active && !self.encoders.is_empty() {
            tracing::info!(
                from = self.active,
                to = active,
                kbps = bps / 1000,
                "simulcast: layers sent"
            );
            for due in self
                .keyframe_due
                .iter_mut()
                .skip(self.active)
                .take(active.saturating_sub(self.active))
            {
                *due = true;
            }
            self.active = active;
            self.pace_small_layers();
        }
        let specs = self.specs_for(self.source, bps);
        for (e, s) in self.encoders.iter_mut().zip(&specs) {
            if s.bitrate_bps > 0 {
                let _ = e.set_bitrate(s.bitrate_bps);
            }
        }
        self.specs = specs;
    }

    pub(crate) fn set_fps(&mut self, fps: f32) {
        self.encoding.fps = fps;
        self.pace_small_layers();
    }

    pub(crate) fn set_keyframe_interval(&mut self, frames: u32) {
        self.encoding.keyframe_interval_frames = frames;
        for e in &mut self.encoders {
            let _ = e.set_keyframe_interval(frames);
        }
    }

    fn pace_small_layers(&mut self) {
        let top = self.active.min(self.encoders.len()).saturating_sub(1);
        let small_fps = self.encoding.fps / self.pacer.every() as f32;
        let fps = self.encoding.fps;
        for (i, e) in self.encoders.iter_mut().enumerate() {
            let _ = e.set_fps(if i < top { small_fps } else { fps });
        }
    }

    /// Encodes `frame` in the layers due; the units go out largest first. Also returns
    /// how long the encodes (and scaling) took.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<(Vec<LayerUnit>, Duration), MediaError> {
        if self.encoders.is_empty() || self.source != (frame.width, frame.height) {
            self.open((frame.width, frame.height))?;
        }
        let started = Instant::now();
        let small_now = self.pacer.small_layers_now();
        let interval = self.interval();
        let every = self.pacer.every();
        let top = self.active - 1;
        let mut units = Vec::new();
        let mut picture = frame.clone();
        for layer in (0..self.active).rev() {
            let is_top = layer == top;
            if !is_top && !small_now {
                continue;
            }
            let spec = self.specs[layer];
            let layer_started = Instant::now();
            if (picture.width, picture.height) != (spec.width, spec.height) {
                // Each layer from the next larger: cheaper than from the source.
                picture = self.scaler.scale(&picture, spec.width, spec.height)?;
            }
            let scaling = layer_started.elapsed();
            let enc = &mut self.encoders[layer];
            if std::mem::take(&mut self.keyframe_due[layer]) {
                enc.request_keyframe();
            }
            if let Some(au) = enc.encode(&picture)? {
                units.push(LayerUnit {
                    layer,
                    top: is_top,
                    keyframe: au.keyframe,
                    data: au.data,
                    duration: if is_top { interval } else { interval * every },
                    capture_us: au.capture_us,
                    took: layer_started.elapsed(),
                    scaling,
                });
            }
        }
        let busy = started.elapsed();
        if let Some(every) = self.pacer.record(Instant::now(), busy, interval) {
            tracing::info!(
                every,
                "simulcast: small layers encoded every {every} frames"
            );
            self.pace_small_layers();
        }
        Ok((units, busy))
    }
}
