//! Screens through scrap (X11 SHM) as a [`VideoSource`].

use std::io::ErrorKind;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::media::{MediaError, Packed, VideoFrame, VideoSource, now_us, packed_to_i420};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenInfo {
    pub index: usize,
    pub name: String,
    pub width: usize,
    pub height: usize,
}

/// Screens of the current display (`DISPLAY`); no display gives an empty list (logged).
pub fn list_screens() -> Vec<ScreenInfo> {
    match scrap::Display::all() {
        Ok(all) => all
            .iter()
            .enumerate()
            .map(|(index, d)| ScreenInfo {
                index,
                name: format!("Screen {} ({}x{})", index + 1, d.width(), d.height()),
                width: d.width(),
                height: d.height(),
            })
            .collect(),
        Err(e) => {
            tracing::info!("no screens to capture: {e}");
            Vec::new()
        }
    }
}

type Reply = Result<VideoFrame, MediaError>;

pub struct ScreenSource {
    request: Option<mpsc::Sender<()>>,
    replies: mpsc::Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
    period: Duration,
    next_due: Option<Instant>,
    description: String,
}

impl ScreenSource {
    /// Captures screen `index` of the current display, paced to `fps`.
    pub fn open(index: usize, fps: f32) -> Result<Self, MediaError> {
        if !(fps.is_finite() && fps > 0.0 && fps <= 240.0) {
            return Err(MediaError::Invalid(format!(
                "frame rate {fps} out of range"
            )));
        }
        let (request, requests) = mpsc::channel::<()>();
        let (reply_tx, replies) = mpsc::channel::<Reply>();
        let (ready_tx, ready_rx) = mpsc::channel();
        // scrap's capturer is not Send: a thread owns it and captures on request, so
        // each frame is as fresh as its deadline.
        let thread = std::thread::Builder::new()
            .name("screen".into())
            .spawn(move || {
                let mut capturer = match open_capturer(index) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok((c.width(), c.height())));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while requests.recv().is_ok() {
                    if reply_tx.send(capture(&mut capturer, index)).is_err() {
                        break;
                    }
                }
            })?;
        let (w, h) = ready_rx
            .recv()
            .map_err(|_| MediaError::Device("screen capture thread died".into()))??;
        Ok(Self {
            request: Some(request),
            replies,
            thread: Some(thread),
            period: Duration::from_secs_f64(1.0 / fps as f64),
            next_due: None,
            description: format!("screen {index} ({w}x{h} @ {fps} fps)"),
        })
    }
}

fn open_capturer(index: usize) -> Result<scrap::Capturer, MediaError> {
    let mut all = scrap::Display::all().map_err(|e| {
        MediaError::Device(format!(
            "screen {index}: no display to capture (DISPLAY={:?}): {e}",
            std::env::var("DISPLAY").unwrap_or_default()
        ))
    })?;
    if index >= all.len() {
        return Err(MediaError::Device(format!(
            "screen {index}: the display has {} screen(s)",
            all.len()
        )));
    }
    scrap::Capturer::new(all.swap_remove(index))
        .map_err(|e| MediaError::Device(format!("screen {index}: cannot capture: {e}")))
}

fn capture(capturer: &mut scrap::Capturer, index: usize) -> Reply {
    let (w, h) = (capturer.width(), capturer.height());
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        match capturer.frame() {
            Ok(frame) => {
                let capture_us = now_us();
                let stride = frame.len().checked_div(h).unwrap_or(0);
                return packed_to_i420(&frame, w, h, stride, Packed::Bgra, capture_us);
            }
            // Some backends have no new picture yet.
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(MediaError::Device(format!("screen {index}: {e}"))),
        }
    }
}

impl VideoSource for ScreenSource {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        // Deadlines from the previous one; a late consumer skips instead of bursting.
        let now = Instant::now();
        let due = match self.next_due {
            Some(d) if d > now => {
                std::thread::sleep(d - now);
                d
            }
            Some(d) if now - d < self.period => d,
            _ => now,
        };
        self.next_due = Some(due + self.period);
        let dead = || MediaError::Device("screen capture thread stopped".into());
        self.request
            .as_ref()
            .ok_or_else(dead)?
            .send(())
            .map_err(|_| dead())?;
        match self.replies.recv_timeout(Duration::from_secs(5)) {
            Ok(r) => r,
            Err(_) => Err(dead()),
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for ScreenSource {
    fn drop(&mut self) {
        self.request.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
