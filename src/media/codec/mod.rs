//! Codecs: H.264 (openh264) and Opus (libopus).

pub mod h264;
pub mod h264_syntax;
pub mod opus;
