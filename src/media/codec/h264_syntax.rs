//! Just enough H.264 syntax to tell whether a lost access unit mattered: the SPS's
//! frame_num length, a slice's nal_ref_idc and frame_num, and whether an RTP payload
//! starts an access unit. With temporal layers every other frame is one no later frame
//! refers to; losing it must cost nothing, not a freeze until the next keyframe.
//! Pure: parsing only.

use super::h264::{NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_annexb};

const NAL_SLICE: u8 = 1;
const NAL_SEI: u8 = 6;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Reads bits of an RBSP (emulation prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal_payload: &[u8]) -> Self {
        let mut data = Vec::with_capacity(nal_payload.len());
        let mut zeros = 0;
        for &b in nal_payload {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u8) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// Exp-Golomb ue(v).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u8;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
}

/// `log2_max_frame_num` of an SPS NAL unit (header included). `None` for what this
/// parser does not follow (scaling matrices of the High profiles).
pub fn sps_log2_max_frame_num(sps: &[u8]) -> Option<u8> {
    if nal_type(sps) != NAL_SPS {
        return None;
    }
    let mut r = Bits::new(sps.get(1..)?);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        if r.ue()? == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            return None; // seq_scaling_matrix_present_flag
        }
    }
    let minus4 = r.ue()?;
    (minus4 <= 12).then_some(minus4 as u8 + 4)
}

/// What a picture's first slice says about references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceInfo {
    /// Later pictures may refer to this one (nal_ref_idc != 0).
    pub reference: bool,
    pub idr: bool,
    pub frame_num: u32,
}

/// The first slice of an Annex-B access unit, given the SPS's frame_num length.
pub fn slice_info(au: &[u8], log2_max_frame_num: u8) -> Option<SliceInfo> {
    let nal = split_annexb(au)
        .into_iter()
        .find(|n| matches!(nal_type(n), NAL_SLICE | NAL_IDR))?;
    let mut r = Bits::new(nal.get(1..)?);
    r.ue()?; // first_mb_in_slice
    r.ue()?; // slice_type
    r.ue()?; // pic_parameter_set_id
    Some(SliceInfo {
        reference: (nal[0] >> 5) & 3 != 0,
        idr: nal_type(nal) == NAL_IDR,
        frame_num: r.bits(log2_max_frame_num)?,
    })
}

/// Whether an RTP payload (RFC 6184) begins an access unit: parameter sets, an SEI or
/// delimiter, or the first fragment of a picture's first slice. After a gap, a packet
/// that does means the lost packets were whole access units before it.
pub fn starts_access_unit(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    // first_mb_in_slice == 0 is the single bit 1 of ue(v).
    let first_slice = |typ: u8, next: Option<&u8>| {
        matches!(typ, NAL_SLICE | NAL_IDR) && next.is_some_and(|b| b & 0x80 != 0)
    };
    match header & 0x1f {
        NAL_SPS | NAL_PPS | NAL_SEI | NAL_AUD | STAP_A => true,
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && first_slice(fu & 0x1f, payload.get(2))),
        t => first_slice(t, payload.get(1)),
    }
}

/// The references a decoder holds, followed from the access units it decoded: a unit
/// after a gap can be decoded when its frame_num follows the last reference picture,
/// i.e. only pictures nothing refers to were lost.
#[derive(Debug, Default, Clone)]
pub struct References {
    log2_max_frame_num: Option<u8>,
    last_reference: Option<u32>,
}

impl References {
    /// Notes an access unit the decoder took.
    pub fn decoded(&mut self, au: &[u8]) {
        if let Some(bits) = split_annexb(au)
            .into_iter()
            .find_map(sps_log2_max_frame_num)
        {
            self.log2_max_frame_num = Some(bits);
        }
        let Some(s) = self.log2_max_frame_num.and_then(|b| slice_info(au, b)) else {
            // Unknown from here on: only a keyframe is safe after the next gap.
            self.last_reference = None;
            return;
        };
        if s.reference || s.idr {
            self.last_reference = Some(s.frame_num);
        }
    }

    /// Whether `au` refers to nothing that was lost.
    pub fn follows(&self, au: &[u8]) -> bool {
        let (Some(bits), Some(last)) = (self.log2_max_frame_num, self.last_reference) else {
            return false;
        };
        slice_info(au, bits).is_some_and(|s| s.frame_num == (last + 1) % (1 << bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::SyntheticVideo;
    use crate::media::barcode;
    use crate::media::codec::h264::{EncoderSettings, H264Decoder, H264Encoder};

    #[test]
    fn exp_golomb_and_emulation_prevention_read_as_the_standard_says() {
        // 1 | 010 | 011 | 00100 -> 0, 1, 2, 3; the 0x03 after two zero bytes is not data.
        let mut r = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(
            [r.ue(), r.ue(), r.ue(), r.ue()],
            [Some(0), Some(1), Some(2), Some(3)]
        );
        let mut r = Bits::new(&[0, 0, 3, 1]);
        assert_eq!(r.bits(24), Some(1));
    }

    #[test]
    fn an_rtp_payload_starts_an_access_unit_only_at_its_first_slice() {
        assert!(starts_access_unit(&[0x67, 0x42])); // SPS
        assert!(starts_access_unit(&[0x78, 0, 4])); // STAP-A
        assert!(starts_access_unit(&[0x41, 0x9a])); // P slice, first_mb 0
        assert!(!starts_access_unit(&[0x41, 0x40])); // a later slice of a picture
        assert!(starts_access_unit(&[0x5c, 0x81, 0x9a])); // FU-A start of a slice
        assert!(!starts_access_unit(&[0x5c, 0x01, 0x9a])); // FU-A middle
        assert!(!starts_access_unit(&[]));
    }

    /// Frames 0.. of a synthetic camera through an encoder with temporal layers.
    fn layered_stream(frames: u32) -> Vec<Vec<u8>> {
        let src = SyntheticVideo::new(320, 240, 30.0).unwrap();
        let mut enc = H264Encoder::new(EncoderSettings {
            width: 320,
            height: 240,
            fps: 30.0,
            bitrate_bps: 600_000,
            keyframe_interval_frames: 0,
        })
        .unwrap();
        (0..frames)
            .filter_map(|n| enc.encode(&src.frame_at(n, u64::from(n) * 33_333)).unwrap())
            .map(|au| au.data)
            .collect()
    }

    fn sps_bits(au: &[u8]) -> u8 {
        split_annexb(au)
            .into_iter()
            .find_map(sps_log2_max_frame_num)
            .expect("an SPS")
    }

    #[test]
    fn every_other_picture_of_our_stream_is_one_nothing_refers_to() {
        let aus = layered_stream(20);
        let bits = sps_bits(&aus[0]);
        let refs: Vec<bool> = aus
            .iter()
            .map(|au| slice_info(au, bits).unwrap().reference)
            .collect();
        // After the opening keyframes, references and the rest alternate.
        let tail = &refs[refs.len() - 10..];
        assert!(
            tail.windows(2).all(|w| w[0] != w[1]),
            "no alternation: {refs:?}"
        );
    }

    /// Decodes `aus` skipping `lost`, as the decode stage does after a gap: a unit that
    /// does not follow the references held waits for a keyframe. Returns the barcode
    /// ids shown and how many times a keyframe would have been asked for.
    fn decode_losing(aus: &[Vec<u8>], lost: usize) -> (Vec<u32>, usize) {
        let mut dec = H264Decoder::new().unwrap();
        let mut refs = References::default();
        let (mut shown, mut asked, mut waiting) = (Vec::new(), 0, false);
        for (i, au) in aus.iter().enumerate() {
            if i == lost {
                continue;
            }
            let after_gap = i == lost + 1;
            if waiting || (after_gap && !refs.follows(au)) {
                waiting = true;
                asked += usize::from(after_gap);
                continue;
            }
            refs.decoded(au);
            if let Some(frame) = dec.decode(au).unwrap() {
                let code = barcode::read(&frame.y, frame.width, frame.height, frame.width);
                shown.push(code.expect("a barcode").frame_id);
            }
        }
        (shown, asked)
    }

    #[test]
    fn a_lost_picture_nothing_refers_to_costs_no_keyframe_and_no_later_frame() {
        let aus = layered_stream(30);
        let bits = sps_bits(&aus[0]);
        let lost = (10..20)
            .find(|&i| !slice_info(&aus[i], bits).unwrap().reference)
            .unwrap();
        let (shown, asked) = decode_losing(&aus, lost);
        assert_eq!(asked, 0, "a keyframe was asked for");
        assert_eq!(shown.len(), aus.len() - 1, "{shown:?}");
        assert!(shown.windows(2).all(|w| w[0] < w[1]), "{shown:?}");
    }

    #[test]
    fn a_lost_reference_picture_waits_for_a_keyframe() {
        let aus = layered_stream(30);
        let bits = sps_bits(&aus[0]);
        let lost = (10..20)
            .find(|&i| slice_info(&aus[i], bits).unwrap().reference)
            .unwrap();
        let (shown, asked) = decode_losing(&aus, lost);
        assert_eq!(asked, 1);
        assert_eq!(
            shown.len(),
            lost,
            "nothing after the lost reference is shown"
        );
    }
}
