//! The media stages of confab, without networking: raw frames, paced sources,
//! the frame barcode, H.264 and Opus codecs, and signal analysis.

mod analysis;
pub mod barcode;
mod codec;
mod comfort;
mod convert;
pub mod device;
mod error;
mod frame;
mod playout;
mod scale;
mod source;

pub use analysis::{ClickDetector, click_latency_us, dominant_frequency, level_dbfs};
pub use codec::h264::{
    AccessUnit, EncoderSettings, H264Decoder, H264Encoder, NAL_IDR, NAL_PPS, NAL_SPS, is_keyframe,
    nal_type, split_annexb,
};
pub use codec::h264_syntax::{References, starts_access_unit};
pub use codec::opus::{DTX_PACKET_MAX, OpusDecoder, OpusEncoder};
pub use convert::{Packed, i420_to_rgba, packed_to_i420};
pub use error::MediaError;
pub use frame::{AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AUDIO_RATE, AudioFrame, VideoFrame, now_us};
pub use playout::{Arrival, BLOCK as PLAYOUT_BLOCK, Playout, PlayoutStats};
pub use scale::Scaler;
pub use source::{
    AudioSource, CHIME_FRAMES, Chime, MirrorAudio, MirrorFeed, MirrorVideo, RING_CYCLE_MS,
    RING_NOTES_HZ, RingTone, SyntheticAudio, SyntheticVideo, VideoSource, WavAudio, Y4mVideo,
    mirror,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn pipeline_stages_can_move_to_other_threads() {
        assert_send::<H264Encoder>();
        assert_send::<H264Decoder>();
        assert_send::<OpusEncoder>();
        assert_send::<OpusDecoder>();
        assert_send::<ClickDetector>();
        assert_send::<Box<dyn VideoSource>>();
        assert_send::<Box<dyn AudioSource>>();
        assert_send::<MediaError>();
    }

    #[test]
    fn media_error_is_a_std_error_for_anyhow() {
        let e: anyhow::Error = MediaError::Invalid("x".into()).into();
        assert_eq!(e.to_string(), "invalid input: x");
    }
}
