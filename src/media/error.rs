//! The one error type at the media module boundary.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MediaError {
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    // openh264::Error is stringified: it is not Sync, and callers only log it.
    #[error("H.264: {0}")]
    H264(String),
    #[error("Opus: {0}")]
    Opus(#[from] opus::Error),
    #[error("y4m: {0}")]
    Y4m(String),
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    #[error("resampling: {0}")]
    Resample(String),
    /// A capture device failed or went away.
    #[error("device: {0}")]
    Device(String),
}

impl From<openh264::Error> for MediaError {
    fn from(e: openh264::Error) -> Self {
        MediaError::H264(e.to_string())
    }
}

impl From<y4m::Error> for MediaError {
    fn from(e: y4m::Error) -> Self {
        MediaError::Y4m(format!("{e:?}"))
    }
}
