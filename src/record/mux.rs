//! The container: fragmented MP4 (H.264 video, Opus audio) through `muxide`. The init
//! segment (ftyp + moov) is written once the first keyframe gives SPS and PPS; after
//! that every [`Mp4Writer::flush`] appends one fragment (moof + mdat) and hands it to
//! the file, so a process killed mid-call leaves a file that plays up to its last
//! fragment. Nothing has to be rewritten at the end: finishing is one last flush.

use std::io::Write;

use muxide::api::AudioCodec;
use muxide::codec::h264::{annexb_to_avcc, extract_avc_config};
use muxide::fragmented::{FragmentAudioConfig, FragmentConfig, FragmentedMuxer};

use crate::media::AUDIO_RATE;

/// Video timestamps are in 90 kHz ticks, audio ones in 48 kHz samples.
pub const VIDEO_TIMESCALE: u32 = 90_000;

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("writing the recording: {0}")]
    Io(#[from] std::io::Error),
    #[error("muxing: {0:?}")]
    Mux(muxide::fragmented::FragmentedError),
    #[error("the first video frame is not a keyframe with SPS and PPS")]
    NoParameterSets,
}

/// Writes one fragmented MP4 into `out` as the call goes on.
pub struct Mp4Writer<W: Write> {
    out: W,
    width: u32,
    height: u32,
    muxer: Option<FragmentedMuxer>,
    /// Audio that came before the first keyframe (the muxer needs SPS/PPS to start).
    early_audio: Vec<(u64, Vec<u8>)>,
    fragments: u64,
}

impl<W: Write> Mp4Writer<W> {
    pub fn new(out: W, width: usize, height: usize) -> Self {
        Self {
            out,
            width: width as u32,
            height: height as u32,
            muxer: None,
            early_audio: Vec::new(),
            fragments: 0,
        }
    }

    /// One Annex-B access unit at `pts` (90 kHz). The first one must be a keyframe
    /// carrying SPS and PPS; frames before it are dropped.
    pub fn video(&mut self, pts: u64, annexb: &[u8], keyframe: bool) -> Result<(), MuxError> {
        if self.muxer.is_none() {
            if !keyframe {
                return Ok(());
            }
            let avc = extract_avc_config(annexb).ok_or(MuxError::NoParameterSets)?;
            let mut config = FragmentConfig::new(self.width, self.height, VIDEO_TIMESCALE);
            config.sps = avc.sps;
            config.pps = avc.pps;
            let audio = FragmentAudioConfig {
                codec: AudioCodec::Opus,
                sample_rate: AUDIO_RATE,
                channels: 1,
            };
            let mut muxer =
                FragmentedMuxer::new_with_audio(config, audio).map_err(MuxError::Mux)?;
            self.out.write_all(&muxer.init_segment())?;
            self.out.flush()?;
            for (pts, packet) in std::mem::take(&mut self.early_audio) {
                muxer
                    .write_audio(pts, pts, &packet)
                    .map_err(MuxError::Mux)?;
            }
            self.muxer = Some(muxer);
        }
        let muxer = self.muxer.as_mut().expect("created above");
        muxer
            .write_video(pts, pts, &annexb_to_avcc(annexb), keyframe)
            .map_err(MuxError::Mux)
    }

    /// One Opus packet whose first sample is sample `pts` (48 kHz) of the recording.
    pub fn audio(&mut self, pts: u64, packet: &[u8]) -> Result<(), MuxError> {
        match self.muxer.as_mut() {
            Some(m) => m.write_audio(pts, pts, packet).map_err(MuxError::Mux),
            None => {
                self.early_audio.push((pts, packet.to_vec()));
                Ok(())
            }
        }
    }

    /// Appends what was queued as one fragment and hands it to the file.
    pub fn flush(&mut self) -> Result<(), MuxError> {
        if let Some(segment) = self.muxer.as_mut().and_then(|m| m.flush_segment()) {
            self.out.write_all(&segment)?;
            self.out.flush()?;
            self.fragments += 1;
        }
        Ok(())
    }

    /// Fragments written so far.
    pub fn fragments(&self) -> u64 {
        self.fragments
    }

    /// Writes the last fragment and returns the output.
    pub fn finish(mut self) -> Result<W, MuxError> {
        self.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{EncoderSettings, H264Encoder, OpusEncoder, SyntheticAudio, SyntheticVideo};

    /// The top-level boxes of an MP4 byte string, by type.
    fn boxes(mut b: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            out.push(String::from_utf8_lossy(&b[4..8]).into_owned());
            assert!(
                size >= 8 && size <= b.len(),
                "box size {size} of {}",
                b.len()
            );
            b = &b[size..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    #[test]
    fn audio_before_the_first_keyframe_waits_and_each_flush_appends_a_fragment() {
        let video = SyntheticVideo::new(160, 120, 10.0).unwrap();
        let tone = SyntheticAudio::new(440.0);
        let mut enc = H264Encoder::new(EncoderSettings {
            width: 160,
            height: 120,
            fps: 10.0,
            bitrate_bps: 200_000,
            keyframe_interval_frames: 10,
        })
        .unwrap();
        let mut opus = OpusEncoder::new(32_000).unwrap();
        let mut w = Mp4Writer::new(Vec::new(), 160, 120);
        w.audio(0, &opus.encode(&tone.frame_at(0, 0)).unwrap())
            .unwrap();
        assert!(w.out.is_empty(), "nothing before SPS/PPS are known");
        for n in 0..20u64 {
            let au = enc
                .encode(&video.frame_at(n as u32, n * 100_000))
                .unwrap()
                .unwrap();
            w.video(n * 9_000, &au.data, au.keyframe).unwrap();
            for k in 0..5 {
                let a = 1 + n * 5 + k;
                w.audio(
                    a * 960,
                    &opus.encode(&tone.frame_at(a, a * 20_000)).unwrap(),
                )
                .unwrap();
            }
            if n % 10 == 9 {
                w.flush().unwrap();
            }
        }
        assert_eq!(w.fragments(), 2);
        let bytes = w.finish().unwrap();
        assert_eq!(
            boxes(&bytes),
            ["ftyp", "moov", "moof", "mdat", "moof", "mdat"]
        );
    }

    #[test]
    fn a_stream_that_starts_without_a_keyframe_waits_for_one() {
        let mut w = Mp4Writer::new(Vec::new(), 160, 120);
        w.video(0, &[0, 0, 0, 1, 0x41, 0x9a], false).unwrap();
        assert!(w.out.is_empty());
        assert!(matches!(
            w.video(3000, &[0, 0, 0, 1, 0x65, 0x88], true),
            Err(MuxError::NoParameterSets)
        ));
    }
}
