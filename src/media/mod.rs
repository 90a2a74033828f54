//! The media stages of confab, without networking: raw frames, paced sources,
//! the frame barcode, H.264 and Opus codecs, and signal analysis.

mod analysis;
pub mod barcode;
mod codec;
mod error;
mod frame;
mod source;

pub use analysis::{ClickDetector, click_latency_us, dominant_frequency, level_dbfs};
pub use barcode::Barcode;
pub use codec::h264::{
    EncodedFrame, EncoderSettings, H264Decoder, H264Encoder, nal_type, split_annexb,
};
pub use codec::opus::{OpusDecoder, OpusEncoder};
pub use error::MediaError;
pub use frame::{AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AUDIO_RATE, AudioFrame, VideoFrame, now_us};
pub use source::{AudioSource, SyntheticAudio, SyntheticVideo, VideoSource, WavAudio, Y4mVideo};
