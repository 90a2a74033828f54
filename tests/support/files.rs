//! Media files for sources under test: a y4m of synthetic frames (barcode ids
//! 0, 1, 2, ...) and a wav holding a tone.

use std::path::Path;

use confab::media::SyntheticVideo;

/// `frames` synthetic frames at `fps` as a C420 y4m (the tag Chromium needs).
pub fn write_y4m(path: &Path, width: usize, height: usize, fps: usize, frames: u32) {
    let src = SyntheticVideo::new(width, height, fps as f32).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = y4m::encode(width, height, y4m::Ratio::new(fps, 1))
        .with_colorspace(y4m::Colorspace::C420)
        .write_header(file)
        .unwrap();
    for n in 0..frames {
        let f = src.frame(n);
        enc.write_frame(&y4m::Frame::new([&f.y, &f.u, &f.v], None))
            .unwrap();
    }
}

/// A 16-bit tone of amplitude 0.3 at `rate` Hz with `channels` identical channels.
pub fn write_wav(path: &Path, hz: f32, seconds: f32, rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(rate as f32 * seconds) as usize {
        let x = 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin();
        for _ in 0..channels {
            w.write_sample((x * i16::MAX as f32) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}
