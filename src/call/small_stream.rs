//! The camera's second, smaller stream in a mesh, for the peers whose links carry far
//! less than the others' (`slow_peers.rs`): the same pictures at the size and rate
//! their links take, encoded beside the main stream on the capture thread.

use std::time::{Duration, Instant};

use crate::media::{AccessUnit, EncoderSettings, H264Encoder, MediaError, Scaler, VideoFrame};

use super::encode::VideoEncoding;
use super::ladder::Ladder;

pub(crate) struct SmallStream {
    bitrate_bps: u32,
    ladder: Ladder,
    scaler: Scaler,
    encoder: Option<H264Encoder>,
    keyframe_due: bool,
}

impl SmallStream {
    pub(crate) fn new(bitrate_bps: u32) -> Self {
        Self {
            bitrate_bps,
            ladder: Ladder::small_stream(),
            scaler: Scaler::default(),
            encoder: None,
            // Its peers move onto it at a keyframe.
            keyframe_due: true,
        }
    }

    pub(crate) fn set_bitrate(&mut self, bps: u32) {
        self.bitrate_bps = bps;
        if let Some(e) = self.encoder.as_mut() {
            let _ = e.set_bitrate(bps);
        }
    }

    pub(crate) fn request_keyframe(&mut self) {
        self.keyframe_due = true;
    }

    /// `frame` at the size its rate carries; `None` when rate control skipped it.
    /// Also how long scaling and encoding took.
    pub(crate) fn encode(
        &mut self,
        frame: &VideoFrame,
        encoding: VideoEncoding,
    ) -> Result<(Option<AccessUnit>, Duration), MediaError> {
        let started = Instant::now();
        let source = (frame.width, frame.height);
        let (w, h) = self
            .ladder
            .update(started, self.bitrate_bps, encoding.fps, source);
        let scaled;
        let frame = if (w, h) == source {
            frame
        } else {
            scaled = self.scaler.scale(frame, w, h)?;
            &scaled
        };
        let encoder = match self.encoder.as_mut() {
            Some(e) => e,
            None => self.encoder.insert(H264Encoder::new(EncoderSettings {
                width: w,
                height: h,
                fps: encoding.fps,
                bitrate_bps: self.bitrate_bps,
                keyframe_interval_frames: encoding.keyframe_interval_frames,
            })?),
        };
        if std::mem::take(&mut self.keyframe_due) {
            encoder.request_keyframe();
        }
        let unit = encoder.encode(frame)?;
        self.ladder.encoded(Instant::now(), unit.is_some());
        Ok((unit, started.elapsed()))
    }
}
