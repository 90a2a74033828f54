//! A source fed by what was received: the test call's echo peer sends back the pictures
//! and sound it decodes. [`mirror`] gives the feeding end and the two sources.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{AudioSource, Pacer, VideoSource};
use crate::media::error::MediaError;
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AudioFrame, VideoFrame, now_us};
use crate::sync::LockExt;

/// Pictures waiting for the encoder: more means the echo falls behind, so the newest wins.
const VIDEO_QUEUE: usize = 2;
/// Without a picture for this long (the caller's camera is off), the mirror sends black,
/// so that the encoder thread keeps its pace (and sees when it is stopped).
const VIDEO_IDLE: Duration = Duration::from_millis(500);
/// Sound is sent on once this much is buffered: arrival jitter up to it goes unheard.
const AUDIO_PRIME: usize = 2 * AUDIO_FRAME_SAMPLES;
/// More than this buffered (a burst after a stall) and the oldest goes: delay stays low.
const AUDIO_MAX: usize = 6 * AUDIO_FRAME_SAMPLES;

/// The feeding end: hand it decoded pictures and sound.
#[derive(Clone)]
pub struct MirrorFeed {
    video: SyncSender<VideoFrame>,
    audio: Arc<Mutex<AudioBuffer>>,
}

impl MirrorFeed {
    /// Drops the picture when the encoder is behind (the next one follows in 33 ms).
    pub fn video(&self, frame: &VideoFrame) {
        if let Err(TrySendError::Full(_)) = self.video.try_send(frame.clone()) {
            tracing::trace!("mirror: encoder behind, picture dropped");
        }
    }

    pub fn audio(&self, pcm: &[f32]) {
        self.audio.locked().push(pcm);
    }
}

/// The feeding end, a camera-like and a microphone-like source. The sources end (with
/// an error) once every feeding end is dropped.
pub fn mirror() -> (MirrorFeed, MirrorVideo, MirrorAudio) {
    let (tx, rx) = std::sync::mpsc::sync_channel(VIDEO_QUEUE);
    let audio = Arc::new(Mutex::new(AudioBuffer::default()));
    let feed = MirrorFeed {
        video: tx,
        audio: audio.clone(),
    };
    let video = MirrorVideo {
        frames: rx,
        last_size: (320, 240),
    };
    let audio = MirrorAudio {
        buffer: audio,
        pacer: Pacer::new(Duration::from_micros(AUDIO_FRAME_US), false),
    };
    (feed, video, audio)
}

pub struct MirrorVideo {
    frames: Receiver<VideoFrame>,
    last_size: (usize, usize),
}

impl VideoSource for MirrorVideo {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        match self.frames.recv_timeout(VIDEO_IDLE) {
            Ok(mut frame) => {
                self.last_size = (frame.width, frame.height);
                frame.capture_us = now_us();
                Ok(frame)
            }
            Err(RecvTimeoutError::Timeout) => {
                let (w, h) = self.last_size;
                VideoFrame::black(w, h, now_us())
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(MediaError::Device("the mirrored call ended".into()))
            }
        }
    }

    fn describe(&self) -> String {
        "mirror of the received video".into()
    }
}

pub struct MirrorAudio {
    buffer: Arc<Mutex<AudioBuffer>>,
    pacer: Pacer,
}

impl AudioSource for MirrorAudio {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        self.pacer.wait();
        // The feed holds the other reference: gone means the call is over.
        if Arc::strong_count(&self.buffer) == 1 {
            return Err(MediaError::Device("the mirrored call ended".into()));
        }
        Ok(AudioFrame {
            samples: self.buffer.locked().pop_frame(),
            capture_us: now_us(),
        })
    }

    fn describe(&self) -> String {
        "mirror of the received sound".into()
    }
}

/// Received sound on its way back out: primed before it plays, trimmed when it backs up.
#[derive(Default)]
struct AudioBuffer {
    samples: VecDeque<f32>,
    playing: bool,
}

impl AudioBuffer {
    fn push(&mut self, pcm: &[f32]) {
        self.samples.extend(pcm);
        let excess = self.samples.len().saturating_sub(AUDIO_MAX);
        self.samples.drain(..excess);
    }

    /// One 20 ms frame: silence while priming; an underrun plays what there is and
    /// primes again.
    fn pop_frame(&mut self) -> Vec<f32> {
        if !self.playing && self.samples.len() >= AUDIO_PRIME {
            self.playing = true;
        }
        let mut frame = vec![0.0; AUDIO_FRAME_SAMPLES];
        if self.playing {
            let n = self.samples.len().min(AUDIO_FRAME_SAMPLES);
            for (out, s) in frame.iter_mut().zip(self.samples.drain(..n)) {
                *out = s;
            }
            if n < AUDIO_FRAME_SAMPLES {
                self.playing = false;
            }
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(value: f32) -> Vec<f32> {
        vec![value; AUDIO_FRAME_SAMPLES]
    }

    #[test]
    fn sound_plays_once_primed_and_in_the_order_it_came() {
        let mut b = AudioBuffer::default();
        b.push(&tone(0.1));
        assert_eq!(b.pop_frame(), tone(0.0), "one frame is not enough to start");
        b.push(&tone(0.2));
        assert_eq!(b.pop_frame(), tone(0.1));
        assert_eq!(b.pop_frame(), tone(0.2));
    }

    #[test]
    fn an_underrun_plays_what_is_left_then_primes_again() {
        let mut b = AudioBuffer::default();
        b.push(&tone(0.1));
        b.push(&tone(0.2));
        b.pop_frame();
        b.push(&[0.3; 100]);
        let frame = b.pop_frame();
        assert_eq!(frame[..AUDIO_FRAME_SAMPLES], tone(0.2)[..]);
        b.pop_frame();
        assert!(!b.playing);
        b.push(&tone(0.4));
        assert_eq!(b.pop_frame(), tone(0.0), "priming again after the underrun");
    }

    #[test]
    fn a_backlog_loses_its_oldest_sound_not_its_newest() {
        let mut b = AudioBuffer::default();
        for i in 0..10 {
            b.push(&tone(i as f32));
        }
        assert_eq!(b.samples.len(), AUDIO_MAX);
        assert_eq!(b.pop_frame(), tone(4.0));
    }

    #[test]
    fn pictures_come_back_restamped_and_black_when_none_arrive() {
        let (feed, mut video, _audio) = mirror();
        let frame = VideoFrame::black(64, 48, 1).unwrap();
        feed.video(&frame);
        let out = video.next_frame().unwrap();
        assert_eq!((out.width, out.height), (64, 48));
        assert!(out.capture_us > 1, "restamped when sent on");
        let idle = video.next_frame().unwrap();
        assert_eq!((idle.width, idle.height), (64, 48));
        drop(feed);
        assert!(video.next_frame().is_err(), "the source ends with its feed");
    }
}
