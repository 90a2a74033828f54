//! H.264 Constrained Baseline encode/decode of Annex-B access units via openh264.

use std::os::raw::c_int;
use std::ptr::addr_of_mut;

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};
use openh264_sys2::{
    ENCODER_OPTION_BITRATE, ENCODER_OPTION_FRAME_RATE, ENCODER_OPTION_IDR_INTERVAL,
    ENCODER_OPTION_MAX_BITRATE, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, SEncParamExt, SPATIAL_LAYER_0,
    SPATIAL_LAYER_ALL, TagBitrateInfo,
};

use crate::media::error::MediaError;
use crate::media::frame::VideoFrame;

pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderSettings {
    pub width: usize,
    pub height: usize,
    pub fps: f32,
    pub bitrate_bps: u32,
    /// 0 = keyframes only at start and on request.
    pub keyframe_interval_frames: u32,
}

/// One encoded H.264 access unit, as the encoder made it (the network side carries it as
/// `call::peer::RemoteAccessUnit`; a raw picture is a [`VideoFrame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// One Annex-B access unit; an IDR always carries SPS and PPS in front.
    pub data: Vec<u8>,
    pub keyframe: bool,
    pub capture_us: u64,
}

pub struct H264Encoder {
    settings: EncoderSettings,
    encoder: Encoder,
    /// Held until an IDR actually comes out, in case the encoder skips the next frame.
    idr_pending: bool,
    sps_pps: Vec<u8>,
    first_capture_us: Option<u64>,
    layered: bool,
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, MediaError> {
        VideoFrame::black(settings.width, settings.height, 0)?;
        check_rate(settings.fps, settings.bitrate_bps)?;
        Ok(Self {
            encoder: make_encoder(&settings)?,
            settings,
            idr_pending: true,
            sps_pps: Vec::new(),
            first_capture_us: None,
            layered: false,
        })
    }

    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Encodes one frame; `None` when rate control skipped it.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<AccessUnit>, MediaError> {
        // The fields are public: re-check what openh264 will read through raw pointers.
        frame.validate()?;
        if (frame.width, frame.height) != (self.settings.width, self.settings.height) {
            // A fresh encoder rather than openh264's in-place reinit, which would
            // forget bitrate/fps changes made since creation.
            self.settings.width = frame.width;
            self.settings.height = frame.height;
            self.encoder = make_encoder(&self.settings)?;
            self.idr_pending = true;
            self.sps_pps.clear();
            self.layered = false;
        }
        if self.idr_pending {
            self.encoder.force_intra_frame();
        }
        let yuv = YUVSlices::new(
            (&frame.y, &frame.u, &frame.v),
            (frame.width, frame.height),
            (frame.width, frame.width / 2, frame.width / 2),
        );
        let first = *self.first_capture_us.get_or_insert(frame.capture_us);
        let ts = Timestamp::from_millis(frame.capture_us.saturating_sub(first) / 1000);
        if !self.layered {
            // openh264 sets its layers up at the first encode; changing them later
            // restarts it with an IDR. A throwaway first frame keeps that IDR ours.
            let black = VideoFrame::black(frame.width, frame.height, 0)?;
            let warm = YUVSlices::new(
                (&black.y, &black.u, &black.v),
                (black.width, black.height),
                (black.width, black.width / 2, black.width / 2),
            );
            self.encoder.encode_at(&warm, Timestamp::ZERO)?;
            self.temporal_layers(2)?;
            self.layered = true;
        }
        let bitstream = self.encoder.encode_at(&yuv, ts)?;
        if matches!(bitstream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let data = bitstream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        let (data, keyframe) = self.with_parameter_sets(data);
        if keyframe {
            self.idr_pending = false;
        }
        Ok(Some(AccessUnit {
            data,
            keyframe,
            capture_us: frame.capture_us,
        }))
    }

    /// Makes sure every IDR has SPS and PPS in front, remembering the last ones seen.
    fn with_parameter_sets(&mut self, data: Vec<u8>) -> (Vec<u8>, bool) {
        let nals = split_annexb(&data);
        let Some(idr_pos) = nals.iter().position(|n| nal_type(n) == NAL_IDR) else {
            return (data, false);
        };
        let before = &nals[..idr_pos];
        let has_sps = before.iter().any(|n| nal_type(n) == NAL_SPS);
        let has_pps = before.iter().any(|n| nal_type(n) == NAL_PPS);
        if has_sps && has_pps {
            self.sps_pps.clear();
            for n in before
                .iter()
                .filter(|n| matches!(nal_type(n), NAL_SPS | NAL_PPS))
            {
                self.sps_pps.extend_from_slice(&[0, 0, 0, 1]);
                self.sps_pps.extend_from_slice(n);
            }
            return (data, true);
        }
        let mut out = self.sps_pps.clone();
        out.extend_from_slice(&data);
        (out, true)
    }

    /// Temporal layers: with two, every other frame is one no later frame refers to.
    fn temporal_layers(&mut self, n: c_int) -> Result<(), MediaError> {
        // SAFETY: the option reads and writes one SEncParamExt that lives across the calls.
        unsafe {
            let mut p: SEncParamExt = std::mem::zeroed();
            let api = self.encoder.raw_api();
            let rc = api.get_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, addr_of_mut!(p).cast());
            if rc != 0 {
                return Err(MediaError::H264(format!("get params: error {rc}")));
            }
            p.iTemporalLayerNum = n;
            let rc = api.set_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, addr_of_mut!(p).cast());
            if rc != 0 {
                return Err(MediaError::H264(format!("temporal layers: error {rc}")));
            }
        }
        Ok(())
    }

    /// The next encoded frame will be an IDR (e.g. to answer a PLI/FIR).
    pub fn request_keyframe(&mut self) {
        self.idr_pending = true;
    }

    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        check_rate(self.settings.fps, bps)?;
        let raising = bps > self.settings.bitrate_bps;
        // The per-layer max is what openh264 checks the target against, so raise it
        // before the target and lower it after.
        let max = [
            (ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0),
            (ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_ALL),
        ];
        let target = [(ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL)];
        let steps: Vec<_> = if raising {
            max.iter().chain(&target).collect()
        } else {
            target.iter().chain(&max).collect()
        };
        for &(opt, layer) in steps {
            let mut info = TagBitrateInfo {
                iLayer: layer,
                iBitrate: bps as c_int,
            };
            // SAFETY: both options take an SBitrateInfo that lives across the call.
            let rc = unsafe {
                self.encoder
                    .raw_api()
                    .set_option(opt, addr_of_mut!(info).cast())
            };
            if rc != 0 {
                return Err(MediaError::H264(format!("set bitrate {bps}: error {rc}")));
            }
        }
        self.settings.bitrate_bps = bps;
        Ok(())
    }

    pub fn set_fps(&mut self, fps: f32) -> Result<(), MediaError> {
        check_rate(fps, self.settings.bitrate_bps)?;
        let mut f = fps;
        // SAFETY: ENCODER_OPTION_FRAME_RATE takes a float.
        let rc = unsafe {
            self.encoder
                .raw_api()
                .set_option(ENCODER_OPTION_FRAME_RATE, addr_of_mut!(f).cast())
        };
        if rc != 0 {
            return Err(MediaError::H264(format!("set fps {fps}: error {rc}")));
        }
        self.settings.fps = fps;
        Ok(())
    }

    pub fn set_keyframe_interval(&mut self, frames: u32) -> Result<(), MediaError> {
        let mut n = even(frames) as c_int;
        // SAFETY: ENCODER_OPTION_IDR_INTERVAL takes an int.
        let rc = unsafe {
            self.encoder
                .raw_api()
                .set_option(ENCODER_OPTION_IDR_INTERVAL, addr_of_mut!(n).cast())
        };
        if rc != 0 {
            return Err(MediaError::H264(format!("set IDR interval: error {rc}")));
        }
        self.settings.keyframe_interval_frames = frames;
        Ok(())
    }
}

fn check_rate(fps: f32, bps: u32) -> Result<(), MediaError> {
    if !(fps.is_finite() && fps > 0.0 && fps <= 240.0) || bps < 10_000 || bps > i32::MAX as u32 {
        return Err(MediaError::Invalid(format!(
            "fps {fps} / bitrate {bps} out of range"
        )));
    }
    Ok(())
}

/// With two temporal layers openh264 takes keyframe intervals of whole groups of two.
fn even(frames: u32) -> u32 {
    frames.saturating_add(frames % 2)
}

fn make_encoder(s: &EncoderSettings) -> Result<Encoder, MediaError> {
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(s.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(s.fps))
        .rate_control_mode(RateControlMode::Bitrate)
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .skip_frames(true)
        .num_threads(1)
        .intra_frame_period(IntraFramePeriod::from_num_frames(even(
            s.keyframe_interval_frames,
        )));
    Ok(Encoder::with_api_config(
        OpenH264API::from_source(),
        config,
    )?)
}

pub struct H264Decoder {
    decoder: Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            decoder: Decoder::new()?,
        })
    }

    /// Decodes one Annex-B access unit. The output's `capture_us` is 0: the caller
    /// knows the timing (RTP timestamp, barcode), the bitstream does not.
    pub fn decode(&mut self, au: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        let Some(yuv) = self.decoder.decode(au)? else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let copy = |plane: &[u8], stride: usize, pw: usize, ph: usize| {
            let mut out = Vec::with_capacity(pw * ph);
            for row in plane.chunks(stride).take(ph) {
                out.extend_from_slice(&row[..pw]);
            }
            out
        };
        let (cw, ch) = (w / 2, h / 2);
        VideoFrame::from_planes(
            w,
            h,
            copy(yuv.y(), sy, w, h),
            copy(yuv.u(), su, cw, ch),
            copy(yuv.v(), sv, cw, ch),
            0,
        )
        .map(Some)
    }
}

/// Splits an Annex-B byte stream into NAL units (without start codes).
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &(_, payload)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&(sc, _)| sc);
        // A 4-byte start code leaves its leading zero on the previous NAL.
        while end > payload && data[end - 1] == 0 {
            end -= 1;
        }
        if end > payload {
            out.push(&data[payload..end]);
        }
    }
    out
}

/// Whether an Annex-B access unit holds an IDR picture (decoding can start there).
pub fn is_keyframe(annexb: &[u8]) -> bool {
    split_annexb(annexb).iter().any(|n| nal_type(n) == NAL_IDR)
}

/// The `nal_unit_type` of a NAL unit without start code.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::source::SyntheticVideo;
    use std::time::Instant;

    fn settings(w: usize, h: usize, bps: u32) -> EncoderSettings {
        EncoderSettings {
            width: w,
            height: h,
            fps: 30.0,
            bitrate_bps: bps,
            keyframe_interval_frames: 0,
        }
    }

    fn types(au: &[u8]) -> Vec<u8> {
        split_annexb(au).iter().map(|n| nal_type(n)).collect()
    }

    /// SPS and PPS, in that order, before the first IDR slice.
    fn is_idr_with_parameter_sets(au: &[u8]) -> bool {
        let t = types(au);
        let idr = t.iter().position(|&x| x == NAL_IDR);
        let sps = t.iter().position(|&x| x == NAL_SPS);
        let pps = t.iter().position(|&x| x == NAL_PPS);
        matches!((sps, pps, idr), (Some(s), Some(p), Some(i)) if s < p && p < i)
    }

    #[test]
    fn split_annexb_handles_3_and_4_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals = split_annexb(&data);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(types(&data), vec![NAL_SPS, NAL_PPS, NAL_IDR]);
    }

    #[test]
    fn first_frame_is_a_constrained_baseline_idr_with_sps_pps() {
        let src = SyntheticVideo::new(320, 240, 30.0).unwrap();
        let mut enc = H264Encoder::new(settings(320, 240, 300_000)).unwrap();
        let au = enc
            .encode(&src.frame_at(0, 1_000))
            .unwrap()
            .expect("first frame");
        assert!(au.keyframe);
        assert_eq!(au.capture_us, 1_000);
        assert!(
            is_idr_with_parameter_sets(&au.data),
            "{:?}",
            types(&au.data)
        );
        let sps = split_annexb(&au.data)
            .into_iter()
            .find(|n| nal_type(n) == NAL_SPS)
            .unwrap();
        // profile_idc 66 (Baseline) with constraint_set1 (Constrained Baseline): 42 xx.
        assert_eq!(sps[1], 0x42);
        assert!(
            sps[2] & 0x40 != 0,
            "constraint_set1_flag unset: {:02x}",
            sps[2]
        );
    }

    #[test]
    fn requested_keyframes_come_next_with_sps_pps_and_others_are_not_idr() {
        let src = SyntheticVideo::new(320, 240, 30.0).unwrap();
        let mut enc = H264Encoder::new(settings(320, 240, 300_000)).unwrap();
        let mut requested = false;
        for n in 0..60 {
            if n % 17 == 5 {
                enc.request_keyframe();
                requested = true;
            }
            let Some(au) = enc.encode(&src.frame_at(n, n as u64 * 33_333)).unwrap() else {
                continue;
            };
            if n == 0 || requested {
                assert!(au.keyframe, "frame {n} should be an IDR");
                assert!(
                    is_idr_with_parameter_sets(&au.data),
                    "frame {n}: {:?}",
                    types(&au.data)
                );
                requested = false;
            } else {
                assert!(!au.keyframe, "unrequested IDR at frame {n}");
                assert!(!types(&au.data).contains(&NAL_IDR));
            }
        }
    }

    #[test]
    fn periodic_keyframe_interval_is_honoured_and_settable() {
        let src = SyntheticVideo::new(160, 120, 30.0).unwrap();
        let mut s = settings(160, 120, 200_000);
        s.keyframe_interval_frames = 10;
        let mut enc = H264Encoder::new(s).unwrap();
        let mut keys = Vec::new();
        for n in 0..30 {
            if let Some(au) = enc.encode(&src.frame_at(n, n as u64 * 33_333)).unwrap()
                && au.keyframe
            {
                assert!(is_idr_with_parameter_sets(&au.data));
                keys.push(n);
            }
        }
        // openh264 counts the period in coded frames, so a skipped frame delays the next IDR.
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert_eq!(keys[0], 0);
        assert!(
            keys.windows(2).all(|k| (10..=12).contains(&(k[1] - k[0]))),
            "{keys:?}"
        );
        enc.set_keyframe_interval(0).unwrap();
        let later: Vec<u32> = (30..70)
            .filter(|&n| {
                enc.encode(&src.frame_at(n, n as u64 * 33_333))
                    .unwrap()
                    .is_some_and(|au| au.keyframe)
            })
            .collect();
        assert!(later.len() <= 1, "periodic IDRs continued: {later:?}");
    }

    /// Mean size of the P-frames encoded from synthetic frames `range`.
    fn mean_p_frame_size(
        enc: &mut H264Encoder,
        src: &SyntheticVideo,
        range: std::ops::Range<u32>,
    ) -> f64 {
        let sizes: Vec<usize> = range
            .filter_map(|n| enc.encode(&src.frame_at(n, n as u64 * 33_333)).unwrap())
            .filter(|au| !au.keyframe)
            .map(|au| au.data.len())
            .collect();
        sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64
    }

    #[test]
    fn lowering_the_bitrate_shrinks_the_frames() {
        let src = SyntheticVideo::new(640, 480, 30.0).unwrap();
        let mut enc = H264Encoder::new(settings(640, 480, 2_000_000)).unwrap();
        let mean_size = |enc: &mut H264Encoder, range| mean_p_frame_size(enc, &src, range);
        let high = mean_size(&mut enc, 0..45);
        enc.set_bitrate(200_000).unwrap();
        assert_eq!(enc.settings().bitrate_bps, 200_000);
        mean_size(&mut enc, 45..60); // let rate control settle
        let low = mean_size(&mut enc, 60..105);
        assert!(
            low < high * 0.4,
            "mean AU {high:.0} B at 2 Mbit/s vs {low:.0} B at 200 kbit/s"
        );
        // Raising again works too (max bitrate is raised first).
        enc.set_bitrate(3_000_000).unwrap();
        assert!(enc.set_bitrate(5).is_err());
    }

    #[test]
    fn size_change_recreates_the_encoder_and_starts_with_an_idr() {
        let mut enc = H264Encoder::new(settings(320, 240, 300_000)).unwrap();
        let a = SyntheticVideo::new(320, 240, 30.0).unwrap();
        let b = SyntheticVideo::new(160, 120, 30.0).unwrap();
        enc.encode(&a.frame_at(0, 0)).unwrap();
        enc.encode(&a.frame_at(1, 33_333)).unwrap();
        let au = enc.encode(&b.frame_at(2, 66_666)).unwrap().unwrap();
        assert!(is_idr_with_parameter_sets(&au.data));
        let mut dec = H264Decoder::new().unwrap();
        let out = dec.decode(&au.data).unwrap().unwrap();
        assert_eq!((out.width, out.height), (160, 120));
    }

    #[test]
    fn decode_gives_tight_i420_close_to_the_input() {
        let (w, h) = (640, 480);
        let src = SyntheticVideo::new(w, h, 30.0).unwrap();
        let mut enc = H264Encoder::new(settings(w, h, 1_500_000)).unwrap();
        let mut dec = H264Decoder::new().unwrap();
        let (mut enc_t, mut dec_t, mut n_dec) = (0.0, 0.0, 0);
        let mut last = None;
        for n in 0..30 {
            let frame = src.frame_at(n, n as u64 * 33_333);
            let t = Instant::now();
            let au = enc.encode(&frame).unwrap();
            enc_t += t.elapsed().as_secs_f64();
            let Some(au) = au else { continue };
            let t = Instant::now();
            let out = dec.decode(&au.data).unwrap();
            dec_t += t.elapsed().as_secs_f64();
            if let Some(out) = out {
                n_dec += 1;
                last = Some((frame, out));
            }
        }
        let (frame, out) = last.unwrap();
        assert_eq!((out.width, out.height), (w, h));
        assert_eq!(
            (out.y.len(), out.u.len(), out.v.len()),
            (w * h, w * h / 4, w * h / 4)
        );
        let mse = frame
            .y
            .iter()
            .zip(&out.y)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            / (w * h) as f64;
        let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10();
        assert!(psnr > 30.0, "luma PSNR {psnr:.1} dB");
        eprintln!(
            "640x480 @1.5 Mbit/s: encode {:.2} ms/frame, decode {:.2} ms/frame, PSNR {psnr:.1} dB",
            enc_t * 1000.0 / 30.0,
            dec_t * 1000.0 / n_dec as f64
        );
    }

    #[test]
    fn garbage_does_not_panic_the_decoder() {
        let mut dec = H264Decoder::new().unwrap();
        let _ = dec.decode(&[0, 0, 0, 1, 0x65, 0xff, 0x00, 0x12]);
        let _ = dec.decode(&[1, 2, 3]);
    }

    #[test]
    fn an_idr_without_parameter_sets_gets_the_last_ones_prepended() {
        // openh264 emits SPS+PPS with each IDR itself; this guards against it not doing so.
        let mut enc = H264Encoder::new(settings(160, 120, 100_000)).unwrap();
        let full = [
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let (out, key) = enc.with_parameter_sets(full.to_vec());
        assert!(key);
        assert_eq!(out, full);
        let bare = vec![0, 0, 0, 1, 0x65, 0x99];
        let (out, key) = enc.with_parameter_sets(bare);
        assert!(key);
        assert_eq!(types(&out), vec![NAL_SPS, NAL_PPS, NAL_IDR]);
        let p_frame = vec![0, 0, 0, 1, 0x41, 0x9a];
        assert_eq!(enc.with_parameter_sets(p_frame.clone()), (p_frame, false));
    }

    #[test]
    fn lowering_the_frame_rate_gives_each_frame_more_bits() {
        let src = SyntheticVideo::new(640, 480, 30.0).unwrap();
        let mut enc = H264Encoder::new(settings(640, 480, 600_000)).unwrap();
        let mean_p_size = |enc: &mut H264Encoder, range| mean_p_frame_size(enc, &src, range);
        let at_30 = mean_p_size(&mut enc, 0..45);
        enc.set_fps(10.0).unwrap();
        assert_eq!(enc.settings().fps, 10.0);
        mean_p_size(&mut enc, 45..55);
        let at_10 = mean_p_size(&mut enc, 55..85);
        assert!(
            at_10 > at_30 * 1.8,
            "mean AU {at_30:.0} B at 30 fps vs {at_10:.0} B at 10 fps"
        );
        assert!(enc.set_fps(0.0).is_err());
    }

    #[test]
    fn inconsistent_frames_are_rejected_not_read_out_of_bounds() {
        let mut enc = H264Encoder::new(settings(160, 120, 100_000)).unwrap();
        let mut f = VideoFrame::black(160, 120, 0).unwrap();
        f.u.truncate(10);
        assert!(matches!(enc.encode(&f), Err(MediaError::Invalid(_))));
    }
}
