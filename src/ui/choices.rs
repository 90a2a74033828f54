//! What the user picks: a camera, microphone, speaker (or a synthetic or file source,
//! always named as such), and the devices found to pick from.

use std::path::{Path, PathBuf};

use crate::media::device::{
    AudioProcessor, CameraInfo, CameraSource, MicrophoneSource, ScreenInfo, Speaker, list_cameras,
    list_microphones, list_screens, list_speakers,
};
use crate::media::{AudioSource, SyntheticAudio, SyntheticVideo, VideoSource, WavAudio, Y4mVideo};

use super::quality::CameraMode;

/// Where video comes from. Synthetic sources are always named as such in the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoChoice {
    None,
    TestPattern,
    /// A camera by nokhwa index, with its name for display.
    Camera(u32, String),
    /// A y4m clip, looped. An empty path is the menu's "Video file..." entry.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioChoice {
    None,
    TestTone,
    /// A microphone by cpal device id, with its name for display.
    Microphone(String, String),
    /// A WAV clip, looped. An empty path is the menu's "Audio file..." entry.
    File(PathBuf),
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
            Self::File(p) if p.as_os_str().is_empty() => "Video file...".into(),
            Self::File(p) => format!("{} (video file, not a camera)", file_name(p)),
        }
    }

    /// The form kept in settings and taken by `--camera`.
    pub fn key(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::TestPattern => "synthetic".into(),
            Self::Camera(i, _) => format!("camera:{i}"),
            Self::File(p) => format!("file:{}", p.display()),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if let Some(path) = s.strip_prefix("file:") {
            return Some(Self::File(path.into()));
        }
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
            // A clip plays at its own size and rate.
            Self::File(p) => Y4mVideo::open(p, None)
                .map(|s| Some(Box::new(s) as Box<dyn VideoSource>))
                .map_err(|e| format!("{}: {e}", p.display())),
        }
    }
}

impl AudioChoice {
    pub fn label(&self) -> String {
        match self {
            Self::None => "No microphone".into(),
            Self::TestTone => "Test tone (synthetic, not a microphone)".into(),
            Self::Microphone(_, name) => name.clone(),
            Self::File(p) if p.as_os_str().is_empty() => "Audio file...".into(),
            Self::File(p) => format!("{} (audio file, not a microphone)", file_name(p)),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::TestTone => "synthetic".into(),
            Self::Microphone(id, _) => format!("mic:{id}"),
            Self::File(p) => format!("file:{}", p.display()),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if let Some(path) = s.strip_prefix("file:") {
            return Some(Self::File(path.into()));
        }
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
            Self::File(p) => WavAudio::open(p)
                .map(|s| Some(Box::new(s) as Box<dyn AudioSource>))
                .map_err(|e| format!("{}: {e}", p.display())),
        }
    }
}

/// A file's name for a menu (the whole path if it has none).
fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Whether `path` names a y4m clip this app can play (the header is read, not the clip).
pub fn check_video_file(path: &str) -> Result<PathBuf, String> {
    let path = existing_file(path)?;
    Y4mVideo::open(&path, None)
        .map(|_| path)
        .map_err(|e| match e {
            crate::media::MediaError::Io(e) => format!("Cannot read the file: {e}"),
            _ => "Not a y4m video (8-bit 4:2:0 YUV4MPEG2)".into(),
        })
}

/// Whether `path` names a WAV clip with sound in it.
pub fn check_audio_file(path: &str) -> Result<PathBuf, String> {
    let path = existing_file(path)?;
    match hound::WavReader::open(&path) {
        Ok(r) if r.duration() > 0 => Ok(path),
        Ok(_) => Err("The WAV file has no sound in it".into()),
        Err(hound::Error::IoError(e)) => Err(format!("Cannot read the file: {e}")),
        Err(_) => Err("Not a WAV audio file".into()),
    }
}

fn existing_file(path: &str) -> Result<PathBuf, String> {
    let path = path.trim();
    if path.is_empty() {
        return Err("Type the file's path".into());
    }
    let path = PathBuf::from(path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err("Not a file".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("No such file".into()),
        Err(e) => Err(format!("Cannot read the file: {e}")),
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
