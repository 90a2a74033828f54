//! Quality settings: the most video may use, what the camera sends, and what a shared
//! screen favours. Kept in the settings file, carried by the join and applied to the
//! engine's config and the sources the bridge opens.

use serde::{Deserialize, Serialize};

use crate::call::CallConfig;
use crate::media::{MediaError, Scaler, VideoFrame, VideoSource};

/// The bitrate ceilings offered (kbit/s).
pub const BITRATES_KBPS: [u32; 6] = [300, 600, 1000, 1500, 2500, 4000];
/// The camera frame rates offered.
pub const FRAME_RATES: [u32; 3] = [15, 24, 30];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    #[serde(rename = "360p")]
    P360,
    #[serde(rename = "540p")]
    P540,
    #[serde(rename = "720p")]
    P720,
    #[serde(rename = "1080p")]
    P1080,
}

impl Resolution {
    pub const ALL: [Resolution; 4] = [Self::P360, Self::P540, Self::P720, Self::P1080];

    pub fn size(self) -> (u32, u32) {
        match self {
            Self::P360 => (640, 360),
            Self::P540 => (960, 540),
            Self::P720 => (1280, 720),
            Self::P1080 => (1920, 1080),
        }
    }

    pub fn label(self) -> String {
        let (w, h) = self.size();
        format!("{h}p ({w}x{h})")
    }
}

/// What the camera is opened at: the most it sends (the link may shrink it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraMode {
    pub resolution: Resolution,
    pub fps: u32,
}

impl Default for CameraMode {
    fn default() -> Self {
        Self {
            resolution: Resolution::P720,
            fps: 30,
        }
    }
}

/// What a shared screen favours when the bits do not stretch to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreenPreference {
    /// Full resolution at a low frame rate: text stays readable.
    #[default]
    Sharpness,
    /// At most 720p at a camera's frame rate: video and scrolling stay smooth.
    Motion,
}

impl ScreenPreference {
    pub const ALL: [ScreenPreference; 2] = [Self::Sharpness, Self::Motion];

    pub fn label(self) -> String {
        match self {
            Self::Sharpness => "Sharpness (full resolution, 10 fps)".into(),
            Self::Motion => "Motion (up to 720p, 30 fps)".into(),
        }
    }

    pub fn fps(self) -> f32 {
        match self {
            Self::Sharpness => 10.0,
            Self::Motion => 30.0,
        }
    }

    /// The largest picture sent (None: the screen's own size).
    pub fn max_size(self) -> Option<(usize, usize)> {
        match self {
            Self::Sharpness => None,
            Self::Motion => Some((1280, 720)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quality {
    /// The ceiling of each video encoder; the bandwidth estimate may keep it lower.
    pub max_video_kbps: u32,
    pub camera: CameraMode,
    pub screen: ScreenPreference,
}

impl Default for Quality {
    fn default() -> Self {
        Self {
            max_video_kbps: 1500,
            camera: CameraMode::default(),
            screen: ScreenPreference::default(),
        }
    }
}

impl Quality {
    /// Sets the engine's ceiling and the encoders' frame rates.
    pub fn apply(&self, cfg: &mut CallConfig) {
        cfg.video.bitrate_bps = self.max_video_kbps.clamp(100, 20_000) * 1000;
        cfg.video.fps = self.camera.fps.clamp(1, 60) as f32;
        cfg.screen_fps = self.screen.fps();
    }

    /// A shared screen as the preference wants it.
    pub fn screen_source(&self, src: Box<dyn VideoSource>) -> Box<dyn VideoSource> {
        match self.screen.max_size() {
            Some(max) => Box::new(Fitted {
                inner: src,
                max,
                scaler: Scaler::default(),
            }),
            None => src,
        }
    }
}

/// A source shrunk to fit within `max`, keeping its shape.
struct Fitted {
    inner: Box<dyn VideoSource>,
    max: (usize, usize),
    scaler: Scaler,
}

impl VideoSource for Fitted {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        let f = self.inner.next_frame()?;
        let (w, h) = fit((f.width, f.height), self.max);
        self.scaler.scale(&f, w, h)
    }

    fn describe(&self) -> String {
        let (w, h) = self.max;
        format!("{} within {w}x{h}", self.inner.describe())
    }
}

/// `size` scaled down to fit `max` (never up), kept even for 4:2:0.
fn fit((w, h): (usize, usize), (mw, mh): (usize, usize)) -> (usize, usize) {
    if w <= mw && h <= mh {
        return (w, h);
    }
    let s = (mw as f64 / w as f64).min(mh as f64 / h as f64);
    let even = |v: usize| ((v as f64 * s) as usize & !1).max(2);
    (even(w), even(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::SyntheticVideo;

    #[test]
    fn a_screen_is_shrunk_to_fit_keeping_its_shape_and_never_grown() {
        assert_eq!(fit((2560, 1440), (1280, 720)), (1280, 720));
        assert_eq!(fit((1920, 1200), (1280, 720)), (1152, 720));
        assert_eq!(fit((3440, 1440), (1280, 720)), (1280, 534));
        assert_eq!(fit((800, 600), (1280, 720)), (800, 600));
    }

    #[test]
    fn motion_shrinks_the_shared_screen_and_sharpness_keeps_it() {
        let screen = || Box::new(SyntheticVideo::new(1920, 1080, 200.0).unwrap());
        let mut q = Quality::default();
        let f = q.screen_source(screen()).next_frame().unwrap();
        assert_eq!((f.width, f.height), (1920, 1080));
        q.screen = ScreenPreference::Motion;
        let f = q.screen_source(screen()).next_frame().unwrap();
        assert_eq!((f.width, f.height), (1280, 720));
    }

    #[test]
    fn the_settings_set_the_engines_ceiling_and_frame_rates() {
        let q = Quality {
            max_video_kbps: 600,
            camera: CameraMode {
                resolution: Resolution::P360,
                fps: 15,
            },
            screen: ScreenPreference::Motion,
        };
        let mut cfg = CallConfig::new("ws://x/ws", "r", "n");
        q.apply(&mut cfg);
        assert_eq!(cfg.video.bitrate_bps, 600_000);
        assert_eq!(cfg.video.fps, 15.0);
        assert_eq!(cfg.screen_fps, ScreenPreference::Motion.fps());
    }
}
