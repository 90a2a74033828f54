//! A frame-id + capture-time barcode drawn into the top band of a picture.
//!
//! Layout: `ROWS` x `COLS` cells covering the full width and the top `ROWS/ROW_DIV` of
//! the height. Cell edges are proportional to the picture size, so a scaled copy (a
//! screenshot of a tile) is read by sampling the same proportional cell centres.
//! The first cell of each row is a reference (white, black, white, black) so the
//! reader can pick its own threshold; the other cells carry 104 bits:
//! frame_id (32) | capture_us (56) | CRC-16/CCITT-FALSE over those 11 bytes (16).

use super::frame::VideoFrame;

const ROWS: usize = 4;
const COLS: usize = 27;
/// Each cell row is `height / ROW_DIV` tall: the band is the top fifth of the picture.
const ROW_DIV: usize = 20;
const DATA_BITS: usize = ROWS * (COLS - 1);
const BLACK: u8 = 16;
const WHITE: u8 = 235;
/// Below this spread between the reference cells there is no barcode, just content.
const MIN_CONTRAST: f32 = 60.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barcode {
    pub frame_id: u32,
    /// Low 56 bits of the capture time (µs since the epoch): enough until the year 4254.
    pub capture_us: u64,
}

/// Height in luma rows of the band the barcode occupies in a `height`-row picture.
pub fn band_height(height: usize) -> usize {
    ROWS * height / ROW_DIV
}

fn cell_x(c: usize, width: usize) -> usize {
    c * width / COLS
}

fn cell_y(r: usize, height: usize) -> usize {
    r * height / ROW_DIV
}

fn payload_bits(frame_id: u32, capture_us: u64) -> [bool; DATA_BITS] {
    let mut bytes = [0u8; 13];
    bytes[..4].copy_from_slice(&frame_id.to_be_bytes());
    bytes[4..11].copy_from_slice(&capture_us.to_be_bytes()[1..]);
    let crc = crc16(&bytes[..11]);
    bytes[11..].copy_from_slice(&crc.to_be_bytes());
    let mut bits = [false; DATA_BITS];
    for (i, b) in bits.iter_mut().enumerate() {
        *b = bytes[i / 8] >> (7 - i % 8) & 1 == 1;
    }
    bits
}

fn reference_is_white(row: usize) -> bool {
    row.is_multiple_of(2)
}

/// Draws the barcode over the top band of `frame`: pure black/white luma, neutral chroma.
pub fn draw(frame: &mut VideoFrame, frame_id: u32, capture_us: u64) {
    let (w, h) = (frame.width, frame.height);
    let bits = payload_bits(frame_id, capture_us);
    for r in 0..ROWS {
        for c in 0..COLS {
            let white = if c == 0 {
                reference_is_white(r)
            } else {
                bits[r * (COLS - 1) + c - 1]
            };
            let value = if white { WHITE } else { BLACK };
            let (x0, x1) = (cell_x(c, w), cell_x(c + 1, w));
            let (y0, y1) = (cell_y(r, h), cell_y(r + 1, h));
            for y in y0..y1 {
                frame.y[y * w + x0..y * w + x1].fill(value);
            }
        }
    }
    let cw = w / 2;
    let band_c = band_height(h).div_ceil(2).min(h / 2);
    frame.u[..band_c * cw].fill(128);
    frame.v[..band_c * cw].fill(128);
}

/// Reads the barcode from a luma plane (any size: cells are found proportionally).
pub fn read(luma: &[u8], width: usize, height: usize, stride: usize) -> Option<Barcode> {
    if width < COLS * 2 || height < ROW_DIV || stride < width {
        return None;
    }
    if luma.len() < (band_height(height) - 1) * stride + width {
        return None;
    }
    read_with(width, height, |x, y| luma[y * stride + x])
}

/// Reads the barcode from tightly packed RGBA (e.g. a screenshot of a video tile).
pub fn read_rgba(rgba: &[u8], width: usize, height: usize) -> Option<Barcode> {
    read_rgba_region(rgba, width, 0, 0, width, height)
}

/// Reads the barcode from the `width` x `height` region at (`x0`, `y0`) of a tightly
/// packed RGBA image `image_width` pixels wide (a tile inside a window screenshot).
/// BGRA works too: the cells are grey.
pub fn read_rgba_region(
    rgba: &[u8],
    image_width: usize,
    x0: usize,
    y0: usize,
    width: usize,
    height: usize,
) -> Option<Barcode> {
    if width < COLS * 2 || height < ROW_DIV || x0 + width > image_width {
        return None;
    }
    let last_row = y0 + band_height(height) - 1;
    if rgba.len() < (last_row * image_width + x0 + width) * 4 {
        return None;
    }
    read_with(width, height, |x, y| {
        let p = &rgba[((y0 + y) * image_width + x0 + x) * 4..];
        // BT.601 luma; any monotonic mapping works because the threshold is adaptive.
        ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8
    })
}

fn read_with(width: usize, height: usize, px: impl Fn(usize, usize) -> u8) -> Option<Barcode> {
    // Mean over the middle half of each cell: tolerant of scaling, edge ringing and blur.
    let cell_mean = |r: usize, c: usize| -> f32 {
        let (x0, x1) = (cell_x(c, width), cell_x(c + 1, width));
        let (y0, y1) = (cell_y(r, height), cell_y(r + 1, height));
        let (qx, qy) = ((x1 - x0) / 4, (y1 - y0) / 4);
        let (xs, xe) = (x0 + qx, (x1 - qx).max(x0 + qx + 1));
        let (ys, ye) = (y0 + qy, (y1 - qy).max(y0 + qy + 1));
        let mut sum = 0u32;
        for y in ys..ye {
            for x in xs..xe {
                sum += px(x, y) as u32;
            }
        }
        sum as f32 / ((xe - xs) * (ye - ys)) as f32
    };
    let mut white_ref = 0.0;
    let mut black_ref = 0.0;
    for r in 0..ROWS {
        let m = cell_mean(r, 0);
        if reference_is_white(r) {
            white_ref += m / (ROWS / 2) as f32;
        } else {
            black_ref += m / (ROWS / 2) as f32;
        }
    }
    if white_ref - black_ref < MIN_CONTRAST {
        return None;
    }
    let threshold = (white_ref + black_ref) / 2.0;
    let mut bytes = [0u8; 13];
    for r in 0..ROWS {
        for c in 1..COLS {
            if cell_mean(r, c) > threshold {
                let i = r * (COLS - 1) + c - 1;
                bytes[i / 8] |= 1 << (7 - i % 8);
            }
        }
    }
    if crc16(&bytes[..11]) != u16::from_be_bytes([bytes[11], bytes[12]]) {
        return None;
    }
    let mut t = [0u8; 8];
    t[1..].copy_from_slice(&bytes[4..11]);
    Some(Barcode {
        frame_id: u32::from_be_bytes(bytes[..4].try_into().ok()?),
        capture_us: u64::from_be_bytes(t),
    })
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF).
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::h264::{EncoderSettings, H264Decoder, H264Encoder};
    use crate::media::source::SyntheticVideo;

    const T0: u64 = 1_795_000_000_123_456;

    /// Bilinear resize of a luma plane, like a compositor scaling a tile.
    fn resize(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
        let mut out = vec![0u8; dw * dh];
        for y in 0..dh {
            let fy = ((y as f32 + 0.5) * sh as f32 / dh as f32 - 0.5).clamp(0.0, (sh - 1) as f32);
            let (y0, ty) = (fy.floor() as usize, fy.fract());
            let y1 = (y0 + 1).min(sh - 1);
            for x in 0..dw {
                let fx =
                    ((x as f32 + 0.5) * sw as f32 / dw as f32 - 0.5).clamp(0.0, (sw - 1) as f32);
                let (x0, tx) = (fx.floor() as usize, fx.fract());
                let x1 = (x0 + 1).min(sw - 1);
                let p = |xx: usize, yy: usize| src[yy * sw + xx] as f32;
                let top = p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx;
                let bot = p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx;
                out[y * dw + x] = (top * (1.0 - ty) + bot * ty).round() as u8;
            }
        }
        out
    }

    #[test]
    fn crc16_matches_the_standard_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn round_trips_on_raw_frames_of_many_sizes() {
        for (w, h) in [
            (160, 120),
            (320, 240),
            (640, 360),
            (1280, 720),
            (1920, 1080),
        ] {
            let mut f = SyntheticVideo::new(w, h, 30.0).unwrap().frame_at(7, T0);
            for id in [0, 1, 0xDEAD_BEEF, u32::MAX] {
                draw(&mut f, id, T0 + id as u64);
                let got = read(&f.y, w, h, w).expect("barcode must read");
                assert_eq!(
                    got,
                    Barcode {
                        frame_id: id,
                        capture_us: T0 + id as u64
                    },
                    "{w}x{h}"
                );
            }
        }
    }

    #[test]
    fn reads_with_a_padded_stride() {
        let (w, h, stride) = (320, 240, 352);
        let f = SyntheticVideo::new(w, h, 30.0).unwrap().frame_at(42, T0);
        let mut padded = vec![0u8; stride * h];
        for y in 0..h {
            padded[y * stride..y * stride + w].copy_from_slice(&f.y[y * w..(y + 1) * w]);
        }
        assert_eq!(read(&padded, w, h, stride).map(|b| b.frame_id), Some(42));
    }

    #[test]
    fn random_noise_and_flat_pictures_read_as_none() {
        let mut state = 0x1234_5678u32;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..20 {
            let noise: Vec<u8> = (0..640 * 480).map(|_| rnd() as u8).collect();
            assert_eq!(read(&noise, 640, 480, 640), None);
        }
        // Blocky noise: cell-sized random squares have full contrast, so the CRC must reject.
        for _ in 0..200 {
            let mut f = VideoFrame::black(640, 480, 0).unwrap();
            for r in 0..ROWS {
                for c in 0..COLS {
                    let v = if rnd() & 1 == 1 { WHITE } else { BLACK };
                    for y in cell_y(r, 480)..cell_y(r + 1, 480) {
                        f.y[y * 640 + cell_x(c, 640)..y * 640 + cell_x(c + 1, 640)].fill(v);
                    }
                }
            }
            assert_eq!(read(&f.y, 640, 480, 640), None);
        }
        assert_eq!(read(&vec![128; 640 * 480], 640, 480, 640), None);
        // Too small or truncated input is None, not a panic.
        assert_eq!(read(&[0; 10], 640, 480, 640), None);
        assert_eq!(read(&[0; 100], 10, 10, 10), None);
    }

    #[test]
    fn reads_scaled_copies_and_rgba_screenshots() {
        let (w, h) = (640, 480);
        let f = SyntheticVideo::new(w, h, 30.0).unwrap().frame_at(1234, T0);
        for (dw, dh) in [(320, 240), (427, 321), (1000, 750), (213, 160)] {
            let scaled = resize(&f.y, w, h, dw, dh);
            let got = read(&scaled, dw, dh, dw).unwrap_or_else(|| panic!("{dw}x{dh}"));
            assert_eq!(got.frame_id, 1234);
            assert_eq!(got.capture_us, T0);
        }
        // Grey RGBA built from luma, scaled by a non-integer factor.
        let scaled = resize(&f.y, w, h, 500, 375);
        let rgba: Vec<u8> = scaled.iter().flat_map(|&l| [l, l, l, 255]).collect();
        assert_eq!(read_rgba(&rgba, 500, 375).map(|b| b.frame_id), Some(1234));
        // The same tile pasted at (37, 21) into a larger grey "window".
        let (iw, ih) = (640, 420);
        let mut window = vec![90u8; iw * ih * 4];
        for y in 0..375 {
            let dst = ((21 + y) * iw + 37) * 4;
            window[dst..dst + 500 * 4].copy_from_slice(&rgba[y * 500 * 4..(y + 1) * 500 * 4]);
        }
        let got = read_rgba_region(&window, iw, 37, 21, 500, 375);
        assert_eq!(got.map(|b| b.frame_id), Some(1234));
        assert_eq!(read_rgba_region(&window, iw, 0, 0, 500, 375), None);
        assert_eq!(
            read_rgba_region(&window, iw, 200, 0, 500, 375),
            None,
            "out of bounds"
        );
    }

    #[test]
    fn survives_h264_at_500_kbps_including_scaled_copies() {
        let (w, h) = (640, 480);
        let src = SyntheticVideo::new(w, h, 30.0).unwrap();
        let mut enc = H264Encoder::new(EncoderSettings {
            width: w,
            height: h,
            fps: 30.0,
            bitrate_bps: 500_000,
            keyframe_interval_frames: 0,
        })
        .unwrap();
        let mut dec = H264Decoder::new().unwrap();
        let mut decoded = 0;
        for n in 0..60u32 {
            let frame = src.frame_at(n, T0 + n as u64 * 33_333);
            let Some(au) = enc.encode(&frame).unwrap() else {
                continue;
            };
            let Some(out) = dec.decode(&au.data).unwrap() else {
                continue;
            };
            decoded += 1;
            let got = read(&out.y, w, h, w).unwrap_or_else(|| panic!("frame {n} unreadable"));
            assert_eq!(
                got,
                Barcode {
                    frame_id: n,
                    capture_us: T0 + n as u64 * 33_333
                }
            );
            if n % 10 == 0 {
                let half = resize(&out.y, w, h, w / 2, h / 2);
                assert_eq!(
                    read(&half, w / 2, h / 2, w / 2).map(|b| b.frame_id),
                    Some(n)
                );
                let odd = resize(&out.y, w, h, 533, 401);
                assert_eq!(read(&odd, 533, 401, 533).map(|b| b.frame_id), Some(n));
            }
        }
        assert!(decoded >= 55, "only {decoded} of 60 frames decoded");
    }

    #[test]
    fn survives_h264_from_160x120_to_1080p() {
        for (w, h, bps, frames) in [(160, 120, 100_000, 30), (1920, 1080, 2_500_000, 8)] {
            let src = SyntheticVideo::new(w, h, 30.0).unwrap();
            let mut enc = H264Encoder::new(EncoderSettings {
                width: w,
                height: h,
                fps: 30.0,
                bitrate_bps: bps,
                keyframe_interval_frames: 0,
            })
            .unwrap();
            let mut dec = H264Decoder::new().unwrap();
            let mut read_ok = 0;
            for n in 0..frames {
                let Some(au) = enc.encode(&src.frame_at(n, T0 + n as u64)).unwrap() else {
                    continue;
                };
                let out = dec.decode(&au.data).unwrap().expect("one AU, one picture");
                let got = read(&out.y, w, h, w);
                assert_eq!(got.map(|b| b.frame_id), Some(n), "{w}x{h} frame {n}");
                read_ok += 1;
            }
            // Rate control may skip frames; every frame it does send must read.
            assert!(read_ok >= frames / 2, "{w}x{h}: {read_ok}/{frames}");
        }
    }
}
