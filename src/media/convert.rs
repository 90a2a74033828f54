//! Pixel-format conversion between capture, codec and screen (SIMD, yuvutils-rs).
//! BT.601 limited range throughout: what openh264 and browsers assume for video.

use yuvutils_rs::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use super::error::MediaError;
use super::frame::VideoFrame;

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

fn err(e: yuvutils_rs::YuvError) -> MediaError {
    MediaError::Invalid(format!("pixel conversion: {e:?}"))
}

/// I420 to RGBA into `out` (resized as needed, so a caller can reuse one buffer).
pub fn i420_to_rgba(frame: &VideoFrame, out: &mut Vec<u8>) -> Result<(), MediaError> {
    let (w, h) = (frame.width as u32, frame.height as u32);
    out.resize(frame.width * frame.height * 4, 0);
    let image = YuvPlanarImage {
        y_plane: &frame.y,
        y_stride: w,
        u_plane: &frame.u,
        u_stride: w / 2,
        v_plane: &frame.v,
        v_stride: w / 2,
        width: w,
        height: h,
    };
    yuvutils_rs::yuv420_to_rgba(&image, out, w * 4, RANGE, MATRIX).map_err(err)
}

/// Which byte order a packed 32-bit picture has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    Rgba,
    Bgra,
}

/// Packed RGBA/BGRA (any stride) to I420. Odd widths and heights lose their last
/// column/row, since 4:2:0 needs even sizes.
pub fn packed_to_i420(
    pixels: &[u8],
    width: usize,
    height: usize,
    stride_bytes: usize,
    order: Packed,
    capture_us: u64,
) -> Result<VideoFrame, MediaError> {
    let (w, h) = (width & !1, height & !1);
    if w == 0
        || h == 0
        || stride_bytes < width * 4
        || pixels.len() < stride_bytes * (height - 1) + width * 4
    {
        return Err(MediaError::Invalid(format!(
            "{width}x{height} picture with stride {stride_bytes} in {} bytes",
            pixels.len()
        )));
    }
    let mut frame = VideoFrame::black(w, h, capture_us)?;
    {
        let mut image = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(&mut frame.y),
            y_stride: w as u32,
            u_plane: BufferStoreMut::Borrowed(&mut frame.u),
            u_stride: (w / 2) as u32,
            v_plane: BufferStoreMut::Borrowed(&mut frame.v),
            v_stride: (w / 2) as u32,
            width: w as u32,
            height: h as u32,
        };
        let convert = match order {
            Packed::Rgba => yuvutils_rs::rgba_to_yuv420,
            Packed::Bgra => yuvutils_rs::bgra_to_yuv420,
        };
        convert(
            &mut image,
            pixels,
            stride_bytes as u32,
            RANGE,
            MATRIX,
            YuvConversionMode::Balanced,
        )
        .map_err(err)?;
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{SyntheticVideo, barcode};

    #[test]
    fn a_synthetic_frame_survives_rgba_and_back_with_its_barcode() {
        let src = SyntheticVideo::new(320, 240, 30.0)
            .unwrap()
            .frame_at(77, 123_456);
        let mut rgba = Vec::new();
        i420_to_rgba(&src, &mut rgba).unwrap();
        assert_eq!(rgba.len(), 320 * 240 * 4);
        assert_eq!(
            barcode::read_rgba(&rgba, 320, 240).map(|b| b.frame_id),
            Some(77)
        );
        let back = packed_to_i420(&rgba, 320, 240, 320 * 4, Packed::Rgba, 5).unwrap();
        let code = barcode::read(&back.y, 320, 240, 320).unwrap();
        assert_eq!((code.frame_id, code.capture_us), (77, 123_456));
        let diff: u64 = src
            .y
            .iter()
            .zip(&back.y)
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        // Out-of-gamut colours in the pattern clip on the way through RGB.
        assert!(
            diff / (src.y.len() as u64) < 10,
            "mean luma error {}",
            diff / src.y.len() as u64
        );
    }

    #[test]
    fn bgra_with_padding_and_odd_size_converts_colours_right() {
        // 5x3 pure red in BGRA with 4 bytes of row padding.
        let stride = 5 * 4 + 4;
        let mut px = vec![0u8; stride * 3];
        for row in 0..3 {
            for col in 0..5 {
                px[row * stride + col * 4..][..4].copy_from_slice(&[0, 0, 255, 255]);
            }
        }
        let f = packed_to_i420(&px, 5, 3, stride, Packed::Bgra, 0).unwrap();
        assert_eq!((f.width, f.height), (4, 2));
        // BT.601 limited red: Y 81, U 90, V 240.
        assert!(f.y.iter().all(|&y| y.abs_diff(81) <= 2), "{:?}", f.y);
        assert!(
            f.u[0].abs_diff(90) <= 2 && f.v[0].abs_diff(240) <= 2,
            "{:?} {:?}",
            f.u,
            f.v
        );
    }

    #[test]
    fn a_buffer_too_small_for_its_size_is_an_error_not_a_panic() {
        assert!(packed_to_i420(&[0; 10], 4, 4, 16, Packed::Rgba, 0).is_err());
        assert!(packed_to_i420(&[0; 64], 1, 1, 4, Packed::Rgba, 0).is_err());
    }
}
