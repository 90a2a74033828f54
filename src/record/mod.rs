//! Recording a call: a sink stage. While a recording runs, [`RecordTap`] hands every
//! decoded picture and every stretch of audio (remote, and our own camera, screen and
//! microphone as captured) to a thread of its own over bounded queues, so the decode and
//! capture threads never wait for it. On its own clock that thread composes the tiles
//! into one grid picture (`compose.rs`), mixes everyone's audio (`mix.rs`), encodes
//! them (openh264, Opus) and writes fragmented MP4 (`mux.rs`), one fragment a second.

pub mod compose;
pub mod mix;
pub mod mux;
mod tap;
mod tiles;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::call::TrackRole;
use crate::media::{
    AUDIO_FRAME_SAMPLES, AUDIO_FRAME_US, AudioFrame, EncoderSettings, H264Encoder, MediaError,
    OpusEncoder, VideoFrame,
};

pub use compose::Compositor;
pub use mix::Mixer;
pub use mux::{Mp4Writer, MuxError};
pub use tap::RecordTap;
pub use tiles::Tiles;

/// The member key of our own tiles and microphone.
pub const SELF: &str = "";
/// A tile whose last picture is older than this shows as without a picture; a shared
/// screen that old is gone.
pub const STALE: Duration = Duration::from_secs(3);
/// One fragment (and so what a crash may lose at most, besides what is queued) a second.
pub const FRAGMENT: Duration = Duration::from_secs(1);
/// Pictures waiting for the recorder thread; more are dropped (it only needs the latest).
const VIDEO_QUEUE: usize = 8;
/// Audio and membership news waiting for the recorder thread (about a second of audio
/// for a handful of members).
const OTHER_QUEUE: usize = 256;

/// What a recording is made at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordSettings {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub video_bitrate_bps: u32,
    pub audio_bitrate_bps: u32,
}

impl Default for RecordSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 15,
            video_bitrate_bps: 2_500_000,
            audio_bitrate_bps: 64_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Mux(#[from] MuxError),
    #[error("the recorder thread stopped unexpectedly")]
    Thread,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordSummary {
    pub path: String,
    pub seconds: f64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub fragments: u64,
    /// Pictures and audio the recorder was too busy to take.
    pub dropped: u64,
}

enum Input {
    Video {
        member: String,
        role: TrackRole,
        frame: VideoFrame,
    },
    Audio {
        member: String,
        pcm: Vec<f32>,
    },
    Joined(String),
    Left(String),
    Camera(String, bool),
    TrackRemoved(String, TrackRole),
    Stop,
}

/// Hands media and membership news to a running recorder; never blocks.
#[derive(Clone)]
pub struct Feeder {
    video: SyncSender<Input>,
    other: SyncSender<Input>,
    dropped: Arc<AtomicU64>,
}

impl Feeder {
    fn send(&self, queue: &SyncSender<Input>, input: Input) {
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = queue.try_send(input) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn video(&self, member: &str, role: TrackRole, frame: &VideoFrame) {
        let input = Input::Video {
            member: member.to_string(),
            role,
            frame: frame.clone(),
        };
        self.send(&self.video, input);
    }

    pub fn audio(&self, member: &str, pcm: &[f32]) {
        let input = Input::Audio {
            member: member.to_string(),
            pcm: pcm.to_vec(),
        };
        self.send(&self.other, input);
    }

    pub fn joined(&self, member: &str) {
        self.send(&self.other, Input::Joined(member.to_string()));
    }

    /// The member left: its tiles go and its audio stops.
    pub fn left(&self, member: &str) {
        self.send(&self.other, Input::Left(member.to_string()));
    }

    pub fn track_removed(&self, member: &str, role: TrackRole) {
        self.send(&self.other, Input::TrackRemoved(member.to_string(), role));
    }

    /// The member turned its camera off (false) or on: its tile greys at once.
    pub fn camera(&self, member: &str, on: bool) {
        self.send(&self.other, Input::Camera(member.to_string(), on));
    }
}

/// A running recording.
pub struct Recorder {
    feeder: Feeder,
    path: PathBuf,
    /// Taken by `finish`; a recorder dropped without it (the engine went away) still
    /// completes its file.
    thread: Option<JoinHandle<Result<RecordSummary, RecordError>>>,
}

impl Recorder {
    /// Creates `path` and starts recording; `members` are the others already in the call,
    /// in room order (ours is the first tile).
    pub fn start(
        path: &Path,
        settings: RecordSettings,
        members: &[String],
    ) -> Result<Self, RecordError> {
        let file = File::create(path).map_err(|source| RecordError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        // Fail here, not on the thread, when the size or rates are unusable.
        let job = Job::new(file, settings, members, path)?;
        let (video, video_rx) = sync_channel(VIDEO_QUEUE);
        let (other, other_rx) = sync_channel(OTHER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || job.run(video_rx, other_rx, d))
            .map_err(|_| RecordError::Thread)?;
        Ok(Self {
            feeder: Feeder {
                video,
                other,
                dropped,
            },
            path: path.to_path_buf(),
            thread: Some(thread),
        })
    }

    pub fn feeder(&self) -> Feeder {
        self.feeder.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorder thread stopped by itself (it failed: `finish` says why).
    pub fn has_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops, writes the last fragment and closes the file. Blocks for the last
    /// frame's encode at most.
    pub fn finish(mut self) -> Result<RecordSummary, RecordError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<RecordSummary, RecordError> {
        let Some(thread) = self.thread.take() else {
            return Err(RecordError::Thread);
        };
        // The stop must arrive even when the queue is full of audio.
        let _ = self.feeder.other.send(Input::Stop);
        thread.join().map_err(|_| RecordError::Thread)?
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(e) = self.stop()
        {
            tracing::warn!("recording {}: {e}", self.path.display());
        }
    }
}

/// The recorder thread's state.
struct Job {
    settings: RecordSettings,
    file: File,
    out: Mp4Writer<File>,
    video: H264Encoder,
    audio: OpusEncoder,
    compositor: Compositor,
    tiles: Tiles,
    mixer: Mixer,
    summary: RecordSummary,
}

impl Job {
    fn new(
        file: File,
        settings: RecordSettings,
        members: &[String],
        path: &Path,
    ) -> Result<Self, RecordError> {
        let fps = settings.fps.clamp(1, 60);
        let out = file.try_clone().map_err(|source| RecordError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            video: H264Encoder::new(EncoderSettings {
                width: settings.width,
                height: settings.height,
                fps: fps as f32,
                bitrate_bps: settings.video_bitrate_bps,
                // A keyframe every 2 s: a player can start from any other fragment.
                keyframe_interval_frames: 2 * fps,
            })?,
            audio: OpusEncoder::new(settings.audio_bitrate_bps)?,
            compositor: Compositor::new(settings.width, settings.height)?,
            out: Mp4Writer::new(out, settings.width, settings.height),
            settings: RecordSettings { fps, ..settings },
            file,
            tiles: Tiles::new(members),
            mixer: Mixer::default(),
            summary: RecordSummary {
                path: path.display().to_string(),
                ..RecordSummary::default()
            },
        })
    }

    fn take(&mut self, input: Input, now: Instant) -> bool {
        match input {
            Input::Video {
                member,
                role,
                frame,
            } => self.tiles.picture(&member, role, frame, now),
            // Audio comes on the same queue as the news, but a decoder may still drain.
            Input::Audio { member, .. } if self.tiles.is_gone(&member) => {}
            Input::Audio { member, pcm } => self.mixer.push(&member, &pcm),
            Input::Joined(m) => self.tiles.joined(&m),
            Input::Left(m) => {
                self.tiles.left(&m);
                self.mixer.remove(&m);
            }
            Input::TrackRemoved(m, role) => self.tiles.track_removed(&m, role),
            Input::Camera(m, on) => self.tiles.camera(&m, on),
            Input::Stop => return false,
        }
        true
    }

    /// Runs until stopped (or every feeder is gone), then closes the file.
    fn run(
        mut self,
        video: Receiver<Input>,
        other: Receiver<Input>,
        dropped: Arc<AtomicU64>,
    ) -> Result<RecordSummary, RecordError> {
        let start = Instant::now();
        let frame = Duration::from_secs(1) / self.settings.fps;
        let ticks_per_frame = u64::from(mux::VIDEO_TIMESCALE / self.settings.fps);
        let audio_frame = Duration::from_micros(AUDIO_FRAME_US);
        let (mut next_video, mut next_audio, mut next_fragment) = (0u32, 0u32, FRAGMENT);
        let mut running = true;
        while running {
            let now = Instant::now();
            for queue in [&other, &video] {
                loop {
                    match queue.try_recv() {
                        Ok(input) => running &= self.take(input, now),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            running = false;
                            break;
                        }
                    }
                }
            }
            let t = now - start;
            if t >= frame * next_video {
                // Behind (a slow encode): the next slot due, not every one missed.
                let slot = (t.as_micros() / frame.as_micros()) as u32;
                self.video_frame(u64::from(slot) * ticks_per_frame, now)?;
                next_video = slot + 1;
            }
            while t >= audio_frame * next_audio {
                self.audio_frame(u64::from(next_audio) * AUDIO_FRAME_SAMPLES as u64)?;
                next_audio += 1;
            }
            if t >= next_fragment {
                self.out.flush()?;
                next_fragment += FRAGMENT;
            }
            if running {
                let due = (frame * next_video).min(audio_frame * next_audio);
                let wait = due.saturating_sub(start.elapsed());
                std::thread::sleep(wait.max(Duration::from_millis(1)));
            }
        }
        self.summary.seconds = start.elapsed().as_secs_f64();
        self.summary.fragments = self.out.fragments() + 1;
        self.summary.dropped = dropped.load(Ordering::Relaxed);
        self.out.finish()?;
        let _ = self.file.sync_all();
        tracing::info!(path = %self.summary.path, seconds = self.summary.seconds, "recording finished");
        Ok(self.summary)
    }

    fn video_frame(&mut self, pts: u64, now: Instant) -> Result<(), RecordError> {
        let shown = self.tiles.shown(now);
        let picture = self.compositor.compose(&shown);
        if let Some(au) = self.video.encode(picture)? {
            self.out.video(pts, &au.data, au.keyframe)?;
            self.summary.video_frames += 1;
        }
        Ok(())
    }

    fn audio_frame(&mut self, pts: u64) -> Result<(), RecordError> {
        let frame = AudioFrame {
            samples: self.mixer.pull(),
            capture_us: 0,
        };
        let packet = self.audio.encode(&frame)?;
        self.out.audio(pts, &packet)?;
        self.summary.audio_frames += 1;
        Ok(())
    }
}

/// `confab-<room>-<UTC date and time>.mp4` for a recording started at `unix_us`.
pub fn file_name(room: &str, unix_us: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((unix_us / 1_000_000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let room: String = room
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "confab-{room}-{:04}-{:02}-{:02}-{:02}{:02}{:02}.mp4",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_fed_for_a_moment_writes_a_complete_file() {
        use crate::media::SyntheticVideo;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.mp4");
        let settings = RecordSettings {
            width: 320,
            height: 180,
            ..RecordSettings::default()
        };
        let r = Recorder::start(&path, settings, &["bob".into()]).unwrap();
        let feed = r.feeder();
        let src = SyntheticVideo::new(160, 120, 30.0).unwrap();
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_millis(600) {
            feed.video("bob", TrackRole::Camera, &src.frame_at(n, 0));
            feed.audio("bob", &[0.1; AUDIO_FRAME_SAMPLES]);
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = r.finish().unwrap();
        assert!(s.video_frames >= 5 && s.audio_frames >= 20, "{s:?}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[4..8], b"ftyp");
        assert!(
            bytes.windows(4).any(|w| w == b"mdat"),
            "a fragment was written"
        );
    }

    #[test]
    fn a_recorder_that_cannot_write_stops_and_says_why() {
        let r = Recorder::start(Path::new("/dev/full"), RecordSettings::default(), &[]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !r.has_stopped() {
            assert!(Instant::now() < deadline, "still running");
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = r.finish().unwrap_err();
        assert!(e.to_string().contains("space"), "{e}");
    }

    #[test]
    fn file_names_carry_the_room_and_the_utc_time() {
        // 2026-12-05 02:32:03 UTC.
        assert_eq!(
            file_name("team", 1_796_437_923_000_000),
            "confab-team-2026-12-05-023203.mp4"
        );
        assert_eq!(
            file_name("call:ab/c", 0),
            "confab-call_ab_c-1970-01-01-000000.mp4"
        );
    }
}
