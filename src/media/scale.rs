//! Downscaling I420 pictures (each plane on its own, SIMD, `fast_image_resize`): what the
//! sender does when the link cannot carry its full resolution.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::media::error::MediaError;
use crate::media::frame::VideoFrame;

/// Reuses its buffers and filter tables across frames.
pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
}

impl Default for Scaler {
    fn default() -> Self {
        Self {
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        }
    }
}

impl Scaler {
    /// `frame` at `width` x `height` (even); the same frame when it already is that size.
    pub fn scale(
        &mut self,
        frame: &VideoFrame,
        width: usize,
        height: usize,
    ) -> Result<VideoFrame, MediaError> {
        if (width, height) == (frame.width, frame.height) {
            return Ok(frame.clone());
        }
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(MediaError::Invalid(format!(
                "cannot scale to {width}x{height}: sizes must be even and non-zero"
            )));
        }
        frame.validate()?;
        let (cw, ch) = (frame.width / 2, frame.height / 2);
        if (width * 2, height * 2) == (frame.width, frame.height) && cw % 2 == 0 && ch % 2 == 0 {
            // Exactly half (each simulcast layer, the ladder's 1/2 rung): a 2x2 mean is
            // the right filter, and plain code the compiler optimises in every build
            // (the resizer's generic code runs unoptimised in debug builds, 130+ ms for
            // a 720p picture, where this takes 10-30).
            return Ok(VideoFrame {
                width,
                height,
                y: halve_plane(&frame.y, frame.width, frame.height),
                u: halve_plane(&frame.u, cw, ch),
                v: halve_plane(&frame.v, cw, ch),
                capture_us: frame.capture_us,
            });
        }
        let y = self.plane(&frame.y, (frame.width, frame.height), (width, height))?;
        let u = self.plane(&frame.u, (cw, ch), (width / 2, height / 2))?;
        let v = self.plane(&frame.v, (cw, ch), (width / 2, height / 2))?;
        Ok(VideoFrame {
            width,
            height,
            y,
            u,
            v,
            capture_us: frame.capture_us,
        })
    }

    fn plane(
        &mut self,
        src: &[u8],
        (sw, sh): (usize, usize),
        (dw, dh): (usize, usize),
    ) -> Result<Vec<u8>, MediaError> {
        let bad = |e: &dyn std::fmt::Display| MediaError::Invalid(format!("scaling: {e}"));
        let src = ImageRef::new(sw as u32, sh as u32, src, PixelType::U8).map_err(|e| bad(&e))?;
        let mut dst = Image::new(dw as u32, dh as u32, PixelType::U8);
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| bad(&e))?;
        Ok(dst.into_vec())
    }
}

/// `src` (`w` x `h`, even) at half its width and height: each output pixel the rounded
/// mean of a 2x2 block.
fn halve_plane(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity((w / 2) * (h / 2));
    for rows in src.chunks_exact(2 * w).take(h / 2) {
        let (r0, r1) = rows.split_at(w);
        out.extend(r0.chunks_exact(2).zip(r1.chunks_exact(2)).map(|(a, b)| {
            ((u16::from(a[0]) + u16::from(a[1]) + u16::from(b[0]) + u16::from(b[1]) + 2) >> 2) as u8
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::VideoSource;
    use crate::media::barcode;
    use crate::media::source::SyntheticVideo;

    #[test]
    fn a_scaled_picture_keeps_its_content() {
        let mut src = SyntheticVideo::new(1280, 720, 30.0).unwrap();
        let frame = src.next_frame().unwrap();
        let read =
            |f: &VideoFrame| barcode::read(&f.y, f.width, f.height, f.width).map(|b| b.frame_id);
        let id = read(&frame);
        assert!(id.is_some(), "the source's barcode reads at full size");
        let mut s = Scaler::default();
        let small = s.scale(&frame, 640, 360).unwrap();
        assert_eq!((small.width, small.height), (640, 360));
        assert_eq!((small.y.len(), small.u.len()), (640 * 360, 320 * 180));
        assert_eq!(read(&small), id, "the frame id reads back at half size");
        let mean = |p: &[u8]| p.iter().map(|&b| u64::from(b)).sum::<u64>() / p.len() as u64;
        assert!(
            mean(&small.y).abs_diff(mean(&frame.y)) <= 2,
            "brightness kept"
        );
    }

    #[test]
    fn halving_takes_the_mean_of_each_two_by_two_block() {
        let mut f = VideoFrame::black(4, 4, 7).unwrap();
        f.y = vec![
            0, 4, 10, 10, //
            8, 4, 10, 11, //
            255, 255, 1, 2, //
            255, 254, 3, 4,
        ];
        f.u = vec![10, 20, 30, 40];
        f.v = vec![1, 1, 1, 2];
        let h = Scaler::default().scale(&f, 2, 2).unwrap();
        assert_eq!(h.y, [4, 10, 255, 3], "rounded means");
        assert_eq!((h.u, h.v, h.capture_us), (vec![25], vec![1], 7));
    }

    #[test]
    fn odd_sizes_are_refused() {
        let frame = VideoFrame::black(64, 64, 0).unwrap();
        assert!(Scaler::default().scale(&frame, 33, 20).is_err());
        assert_eq!(Scaler::default().scale(&frame, 64, 64).unwrap().width, 64);
    }
}
