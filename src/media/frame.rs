//! Raw media frames as they travel between sources, codecs and sinks.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::MediaError;

/// Audio sample rate used everywhere inside confab (Opus' native rate).
pub const AUDIO_RATE: u32 = 48_000;
/// 20 ms at 48 kHz: one Opus frame, one RTP packet.
pub const AUDIO_FRAME_SAMPLES: usize = 960;
/// Duration of one [`AudioFrame`] in microseconds.
pub const AUDIO_FRAME_US: u64 = 20_000;

/// Wall-clock microseconds since the UNIX epoch. Wall clock rather than `Instant`
/// so that two processes on one machine can compare timestamps.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// An I420 picture with tightly packed planes (stride == width).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFrame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// Wall-clock capture time ([`now_us`]); 0 when unknown (e.g. decoder output).
    pub capture_us: u64,
}

impl VideoFrame {
    /// A black frame. Dimensions must be even and non-zero (4:2:0 chroma).
    pub fn black(width: usize, height: usize, capture_us: u64) -> Result<Self, MediaError> {
        check_dims(width, height)?;
        let c = (width / 2) * (height / 2);
        Ok(Self {
            width,
            height,
            y: vec![16; width * height],
            u: vec![128; c],
            v: vec![128; c],
            capture_us,
        })
    }

    /// Wraps existing planes, checking their sizes.
    pub fn from_planes(
        width: usize,
        height: usize,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
        capture_us: u64,
    ) -> Result<Self, MediaError> {
        let frame = Self {
            width,
            height,
            y,
            u,
            v,
            capture_us,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// Checks even dimensions and tightly packed plane sizes.
    pub fn validate(&self) -> Result<(), MediaError> {
        let (width, height) = (self.width, self.height);
        check_dims(width, height)?;
        let c = (width / 2) * (height / 2);
        if self.y.len() != width * height || self.u.len() != c || self.v.len() != c {
            return Err(MediaError::Invalid(format!(
                "plane sizes {}/{}/{} do not fit {width}x{height} I420",
                self.y.len(),
                self.u.len(),
                self.v.len()
            )));
        }
        Ok(())
    }
}

fn check_dims(width: usize, height: usize) -> Result<(), MediaError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(MediaError::Invalid(format!(
            "I420 needs even, non-zero dimensions, got {width}x{height}"
        )));
    }
    Ok(())
}

/// 20 ms of 48 kHz mono audio; `samples[0]` was captured at `capture_us`.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    pub samples: Vec<f32>,
    pub capture_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_or_empty_dimensions_are_rejected() {
        assert!(VideoFrame::black(3, 2, 0).is_err());
        assert!(VideoFrame::black(0, 2, 0).is_err());
        assert!(VideoFrame::black(4, 2, 0).is_ok());
    }

    #[test]
    fn from_planes_checks_plane_sizes() {
        assert!(VideoFrame::from_planes(4, 2, vec![0; 8], vec![0; 2], vec![0; 2], 0).is_ok());
        assert!(VideoFrame::from_planes(4, 2, vec![0; 8], vec![0; 1], vec![0; 2], 0).is_err());
    }

    #[test]
    fn now_us_is_wall_clock() {
        // 2020-01-01 in microseconds: the clock is the epoch clock, not a monotonic one.
        assert!(now_us() > 1_577_836_800_000_000);
    }
}
