//! Cameras through nokhwa (V4L2 on Linux) as a [`VideoSource`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use nokhwa::Camera;
use nokhwa::pixel_format::RgbAFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use crate::media::{MediaError, Packed, VideoFrame, VideoSource, now_us, packed_to_i420};

/// A camera that delivers nothing for this long is treated as gone.
const STALL: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    pub index: u32,
    pub name: String,
    /// (width, height, fps) the camera offers, any pixel format.
    pub formats: Vec<(u32, u32, u32)>,
}

/// Cameras on this machine; none (or a backend failure, logged) gives an empty list.
pub fn list_cameras() -> Vec<CameraInfo> {
    let infos = match nokhwa::query(ApiBackend::Auto) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("camera query failed: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for info in infos {
        let Ok(index) = info.index().as_index() else {
            continue;
        };
        let formats = match Camera::new(
            CameraIndex::Index(index),
            RequestedFormat::new::<RgbAFormat>(RequestedFormatType::None),
        )
        .and_then(|mut c| c.compatible_camera_formats())
        {
            Ok(f) => {
                let mut f: Vec<_> = f
                    .iter()
                    .map(|f| (f.width(), f.height(), f.frame_rate()))
                    .collect();
                f.sort_unstable();
                f.dedup();
                f
            }
            Err(e) => {
                tracing::warn!("camera {index}: cannot read formats: {e}");
                Vec::new()
            }
        };
        out.push(CameraInfo {
            index,
            name: info.human_name(),
            formats,
        });
    }
    out
}

pub struct CameraSource {
    frames: mpsc::Receiver<Result<VideoFrame, MediaError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    description: String,
}

impl CameraSource {
    /// Opens camera `index` at the format closest to `width`x`height`@`fps`
    /// (MJPEG preferred, then YUYV).
    pub fn open(index: u32, width: u32, height: u32, fps: u32) -> Result<Self, MediaError> {
        // nokhwa's Camera is not Send here: a thread opens and owns it, and frames are
        // waited for there, so a hung camera makes `next_frame` time out, not hang.
        let (ready_tx, ready_rx) = mpsc::channel();
        let (tx, frames) = mpsc::sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let mut camera = match open_camera(index, width, height, fps) {
                    Ok((camera, description)) => {
                        let _ = ready_tx.send(Ok(description));
                        camera
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !stop2.load(Ordering::Relaxed) {
                    let frame = grab(&mut camera, index);
                    let failed = frame.is_err();
                    match tx.try_send(frame) {
                        // The consumer is behind: drop this frame, as a camera does.
                        Ok(()) | Err(mpsc::TrySendError::Full(_)) => {}
                        Err(mpsc::TrySendError::Disconnected(_)) => break,
                    }
                    if failed {
                        break;
                    }
                }
                let _ = camera.stop_stream();
            })?;
        let description = ready_rx
            .recv()
            .map_err(|_| MediaError::Device(format!("camera {index}: thread died")))??;
        Ok(Self {
            frames,
            stop,
            thread: Some(thread),
            description,
        })
    }
}

fn open_camera(
    index: u32,
    width: u32,
    height: u32,
    fps: u32,
) -> Result<(Camera, String), MediaError> {
    let want = |f| {
        RequestedFormat::new::<RgbAFormat>(RequestedFormatType::Closest(CameraFormat::new(
            Resolution::new(width, height),
            f,
            fps,
        )))
    };
    let mut camera = Camera::new(CameraIndex::Index(index), want(FrameFormat::MJPEG))
        .or_else(|_| Camera::new(CameraIndex::Index(index), want(FrameFormat::YUYV)))
        .map_err(|e| MediaError::Device(format!("camera {index}: cannot open: {e}")))?;
    camera
        .open_stream()
        .map_err(|e| MediaError::Device(format!("camera {index}: cannot start: {e}")))?;
    let f = camera.camera_format();
    let description = format!(
        "camera {index} {} ({}x{} {:?} @ {} fps)",
        camera.info().human_name(),
        f.width(),
        f.height(),
        f.format(),
        f.frame_rate()
    );
    Ok((camera, description))
}

fn grab(camera: &mut Camera, index: u32) -> Result<VideoFrame, MediaError> {
    let buffer = camera
        .frame()
        .map_err(|e| MediaError::Device(format!("camera {index}: {e}")))?;
    let capture_us = now_us();
    let rgba = buffer
        .decode_image::<RgbAFormat>()
        .map_err(|e| MediaError::Device(format!("camera {index}: decoding: {e}")))?;
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    packed_to_i420(rgba.as_raw(), w, h, w * 4, Packed::Rgba, capture_us)
}

impl VideoSource for CameraSource {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        match self.frames.recv_timeout(STALL) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => Err(MediaError::Device(format!(
                "{}: no frame for {} s",
                self.description,
                STALL.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(MediaError::Device(format!(
                "{}: capture stopped",
                self.description
            ))),
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread may sit in a blocking read of a hung device: do not wait for it.
        drop(self.thread.take());
    }
}
