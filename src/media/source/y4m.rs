//! A looping, paced y4m (4:2:0, 8-bit) file source.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::{Pacer, VideoSource, period_for_fps};
use crate::media::error::MediaError;
use crate::media::frame::{VideoFrame, now_us};

pub struct Y4mVideo {
    path: PathBuf,
    decoder: y4m::Decoder<BufReader<File>>,
    width: usize,
    height: usize,
    fps: f32,
    pacer: Pacer,
    /// Frames read since the file was (re)opened: an error at frame 0 is a real error.
    frames_this_pass: u64,
}

impl Y4mVideo {
    /// Opens `path`; `fps_override` replaces the frame rate in the header.
    pub fn open(path: impl AsRef<Path>, fps_override: Option<f32>) -> Result<Self, MediaError> {
        let path = path.as_ref().to_path_buf();
        let decoder = open_decoder(&path)?;
        let (width, height) = (decoder.get_width(), decoder.get_height());
        VideoFrame::black(width, height, 0)?;
        let rate = decoder.get_framerate();
        let fps = match fps_override {
            Some(f) => f,
            None if rate.den > 0 => rate.num as f32 / rate.den as f32,
            None => return Err(MediaError::Y4m("frame rate 0 in header".into())),
        };
        Ok(Self {
            path,
            decoder,
            width,
            height,
            fps,
            pacer: Pacer::new(period_for_fps(fps)?, true),
            frames_this_pass: 0,
        })
    }

    fn read_raw(&mut self) -> Result<VideoFrame, MediaError> {
        let frame = self.decoder.read_frame()?;
        VideoFrame::from_planes(
            self.width,
            self.height,
            frame.get_y_plane().to_vec(),
            frame.get_u_plane().to_vec(),
            frame.get_v_plane().to_vec(),
            0,
        )
    }
}

fn open_decoder(path: &Path) -> Result<y4m::Decoder<BufReader<File>>, MediaError> {
    let decoder = y4m::decode(BufReader::new(File::open(path)?))?;
    use y4m::Colorspace::*;
    match decoder.get_colorspace() {
        C420 | C420jpeg | C420paldv | C420mpeg2 => Ok(decoder),
        other => Err(MediaError::Y4m(format!(
            "{}: colorspace {other:?} is not 8-bit 4:2:0",
            path.display()
        ))),
    }
}

impl VideoSource for Y4mVideo {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        self.pacer.wait();
        let mut frame = match self.read_raw() {
            Ok(f) => f,
            // The y4m crate reports end of file as a parse error: loop from the start.
            Err(_) if self.frames_this_pass > 0 => {
                self.decoder = open_decoder(&self.path)?;
                self.frames_this_pass = 0;
                self.read_raw()?
            }
            Err(e) => return Err(e),
        };
        self.frames_this_pass += 1;
        frame.capture_us = now_us();
        Ok(frame)
    }

    fn describe(&self) -> String {
        format!(
            "y4m {} {}x{} @ {} fps",
            self.path.display(),
            self.width,
            self.height,
            self.fps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::barcode;
    use crate::media::source::SyntheticVideo;

    fn write_y4m(path: &Path, frames: u32, w: usize, h: usize) {
        let src = SyntheticVideo::new(w, h, 25.0).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut enc = y4m::encode(w, h, y4m::Ratio::new(25, 1))
            .with_colorspace(y4m::Colorspace::C420)
            .write_header(file)
            .unwrap();
        for n in 0..frames {
            let f = src.frame_at(n, 5_000 + n as u64);
            enc.write_frame(&y4m::Frame::new([&f.y, &f.u, &f.v], None))
                .unwrap();
        }
    }

    #[test]
    fn reads_frames_in_order_and_loops_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.y4m");
        write_y4m(&path, 3, 160, 120);
        // 200 fps override keeps the test fast while still exercising the pacer.
        let mut src = Y4mVideo::open(&path, Some(200.0)).unwrap();
        assert!(src.describe().contains("160x120"));
        let before = now_us();
        let ids: Vec<u32> = (0..7)
            .map(|_| {
                let f = src.next_frame().unwrap();
                assert!(f.capture_us >= before);
                barcode::read(&f.y, f.width, f.height, f.width)
                    .unwrap()
                    .frame_id
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn header_frame_rate_is_used_without_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.y4m");
        write_y4m(&path, 1, 160, 120);
        let src = Y4mVideo::open(&path, None).unwrap();
        assert_eq!(src.fps, 25.0);
    }

    #[test]
    fn missing_or_garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Y4mVideo::open(dir.path().join("nope.y4m"), None).is_err());
        let junk = dir.path().join("junk.y4m");
        std::fs::write(&junk, b"not a y4m file at all\n").unwrap();
        assert!(Y4mVideo::open(&junk, None).is_err());
    }
}
