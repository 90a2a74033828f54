//! What the user picks: a camera, microphone, speaker (or a synthetic source, always
//! named as such), and the devices found to pick from.

use crate::media::device::{
    AudioProcessor, CameraInfo, CameraSource, MicrophoneSource, ScreenInfo, Speaker, list_cameras,
    list_microphones, list_screens, list_speakers,
};
use crate::media::{AudioSource, SyntheticAudio, SyntheticVideo, VideoSource};

use super::quality::CameraMode;

/// Where video comes from. Synthetic sources are always named as such in the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoChoice {
    None,
    TestPattern,
    /// A camera by nokhwa index, with its name for display.
    Camera(u32, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioChoice {
    None,
    TestTone,
    /// A microphone by cpal device id, with its name for display.
    Microphone(String, String),
}

/// Where remote audio plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerChoice {
    /// The system's default output.
    Default,
    /// A speaker by cpal device id, with its name for display.
    Device(String, String),
}

impl SpeakerChoice {
    pub fn label(&self) -> String {
        match self {
            Self::Default => "System default".into(),
            Self::Device(_, name) => name.clone(),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::Default => String::new(),
            Self::Device(id, _) => format!("speaker:{id}"),
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "" | "default" => Self::Default,
            _ => {
                let id = s.strip_prefix("speaker:").unwrap_or(s);
                Self::Device(id.into(), id.into())
            }
        }
    }

    pub(super) fn open(&self) -> Result<Speaker, String> {
        let id = match self {
            Self::Default => None,
            Self::Device(id, _) => Some(id.as_str()),
        };
        Speaker::open(id).map_err(|e| e.to_string())
    }
}

impl VideoChoice {
    /// A camera's entry, its name followed by what it offers.
    pub(super) fn from_info(c: CameraInfo) -> Self {
        let mut formats = c.formats;
        formats.sort_unstable_by_key(|&(w, h, fps)| std::cmp::Reverse((w * h, fps)));
        let mut shown: Vec<String> = formats
            .iter()
            .take(3)
            .map(|(w, h, fps)| format!("{w}x{h} {fps} fps"))
            .collect();
        if formats.len() > 3 {
            shown.push(format!("+{} more", formats.len() - 3));
        }
        let name = if shown.is_empty() {
            c.name
        } else {
            format!("{} ({})", c.name, shown.join(", "))
        };
        Self::Camera(c.index, name)
    }

    pub fn label(&self) -> String {
        match self {
            Self::None => "No camera".into(),
            Self::TestPattern => "Test pattern (synthetic, not a camera)".into(),
            Self::Camera(_, name) => name.clone(),
        }
    }

    /// The form kept in settings and taken by `--camera`.
    pub fn key(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::TestPattern => "synthetic".into(),
            Self::Camera(i, _) => format!("camera:{i}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "none" => Some(Self::None),
            "synthetic" | "test-pattern" => Some(Self::TestPattern),
            _ => {
                let i = s.strip_prefix("camera:").unwrap_or(s).parse().ok()?;
                Some(Self::Camera(i, format!("Camera {i}")))
            }
        }
    }

    /// Opens the source; a camera in `mode` (what it sends before the link shrinks it).
    pub(super) fn open(&self, mode: CameraMode) -> Result<Option<Box<dyn VideoSource>>, String> {
        let (w, h) = mode.resolution.size();
        match self {
            Self::None => Ok(None),
            Self::TestPattern => SyntheticVideo::new(640, 480, 30.0)
                .map(|s| Some(Box::new(s) as Box<dyn VideoSource>))
                .map_err(|e| e.to_string()),
            Self::Camera(i, _) => CameraSource::open(*i, w, h, mode.fps)
                .map(|s| Some(Box::new(s) as Box<dyn VideoSource>))
                .map_err(|e| e.to_string()),
        }
    }
}

impl AudioChoice {
    pub fn label(&self) -> String {
        match self {
            Self::None => "No microphone".into(),
            Self::TestTone => "Test tone (synthetic, not a microphone)".into(),
            Self::Microphone(_, name) => name.clone(),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::TestTone => "synthetic".into(),
            Self::Microphone(id, _) => format!("mic:{id}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "none" => Some(Self::None),
            "synthetic" | "test-tone" => Some(Self::TestTone),
            _ => {
                let id = s.strip_prefix("mic:").unwrap_or(s);
                Some(Self::Microphone(id.into(), id.into()))
            }
        }
    }

    /// A real microphone runs through echo cancellation fed by `echo_reference`.
    pub(super) fn open(
        &self,
        echo_reference: Option<&AudioProcessor>,
    ) -> Result<Option<Box<dyn AudioSource>>, String> {
        match self {
            Self::None => Ok(None),
            Self::TestTone => Ok(Some(Box::new(SyntheticAudio::new(440.0)))),
            Self::Microphone(id, _) => {
                let mut mic = MicrophoneSource::open(Some(id)).map_err(|e| e.to_string())?;
                if let Some(p) = echo_reference {
                    mic = mic.with_processor(p.clone());
                }
                Ok(Some(Box::new(mic)))
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceList {
    pub cameras: Vec<VideoChoice>,
    pub microphones: Vec<AudioChoice>,
    pub speakers: Vec<SpeakerChoice>,
    pub screens: Vec<ScreenInfo>,
}

impl DeviceList {
    /// Asks every backend; slow (cameras are opened to read their formats), so off the UI thread.
    pub(super) fn scan() -> Self {
        let audio = |r: Result<Vec<_>, _>| {
            r.unwrap_or_else(|e| {
                tracing::warn!("listing audio devices: {e}");
                Vec::new()
            })
        };
        let list = Self {
            cameras: list_cameras()
                .into_iter()
                .map(VideoChoice::from_info)
                .collect(),
            microphones: audio(list_microphones())
                .into_iter()
                .map(|m| AudioChoice::Microphone(m.id, m.name))
                .collect(),
            speakers: audio(list_speakers())
                .into_iter()
                .map(|m| SpeakerChoice::Device(m.id, m.name))
                .collect(),
            screens: list_screens(),
        };
        tracing::debug!(
            "devices: {} cameras, {} microphones, {} speakers, {} screens",
            list.cameras.len(),
            list.microphones.len(),
            list.speakers.len(),
            list.screens.len()
        );
        list
    }
}
