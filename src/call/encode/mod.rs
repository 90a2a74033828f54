//! The encode stage: one thread per local source pulls frames (capture and conversion
//! happen in the source), encodes them once for every peer (H.264 / Opus) and hands the
//! units to the send stage. Codec work never runs on tokio workers. Video here, audio
//! in `audio.rs`.

mod audio;

pub use audio::AudioCapture;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::media::{EncoderSettings, H264Encoder, Scaler, VideoFrame, VideoSource};

use super::ladder::Ladder;
use super::layered::LayeredEncoder;
use super::peer::{KeyframeWanted, VideoTrackSender};
use super::send::{Fanout, Unit, spawn_fanout};
use super::sink::MediaSink;
use super::small_stream::SmallStream;
use super::track::TrackRole;

/// Counters a send track shares with the stats task.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Frames encoded.
    pub frames: AtomicU64,
    /// Frames written to at least one peer's negotiated track.
    pub delivered: AtomicU64,
    pub bytes: AtomicU64,
    /// Media bytes written to peers: `bytes` once per peer it went to (the uplink).
    pub bytes_out: AtomicU64,
    pub keyframes: AtomicU64,
    pub encode_us_total: AtomicU64,
    /// Simulcast layers encoded now (0: one stream, no simulcast), and the largest
    /// one's size (width << 16 | height).
    pub layers: AtomicU64,
    pub layers_size: AtomicU64,
    /// Audio frames left out in silence (Opus DTX): time moved on, nothing was sent.
    pub left_out: AtomicU64,
}

impl SendCounters {
    /// Mean encode time per frame so far.
    pub fn mean_encode_ms(&self) -> f64 {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames == 0 {
            return 0.0;
        }
        self.encode_us_total.load(Ordering::Relaxed) as f64 / frames as f64 / 1000.0
    }
}

/// A problem a capture thread reports (the call goes on without that source).
#[derive(Debug, Clone)]
pub struct CaptureFailure {
    pub track: TrackRole,
    pub message: String,
}

enum VideoCtl {
    Replace(Box<dyn VideoSource>),
    Bitrate(u32),
    Fps(f32),
    KeyframeInterval(u32),
    /// Simulcast layers from now on (1: none), as the room moves to an SFU or back.
    Layers(usize),
    /// The second, smaller stream at this rate (`None`: off).
    Small(Option<u32>),
    SmallKeyframe,
}

/// Encoder settings that don't depend on the picture size.
#[derive(Debug, Clone, Copy)]
pub struct VideoEncoding {
    pub fps: f32,
    pub bitrate_bps: u32,
    pub keyframe_interval_frames: u32,
}

/// One local video track: capture and encode on a thread, fan-out on a task.
pub struct VideoCapture {
    pub fanout: Arc<Fanout<VideoTrackSender>>,
    pub counters: Arc<SendCounters>,
    /// Simulcast layers it is encoded in (1: none).
    pub layers: usize,
    keyframe: KeyframeWanted,
    muted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    ctl: std::sync::mpsc::Sender<VideoCtl>,
}

impl VideoCapture {
    /// `layers` > 1: encoded in that many simulcast layers (`layered.rs`) instead of
    /// following the degradation ladder.
    pub fn start(
        track: TrackRole,
        source: Box<dyn VideoSource>,
        encoding: VideoEncoding,
        layers: usize,
        failures: mpsc::UnboundedSender<CaptureFailure>,
        preview: Arc<dyn MediaSink>,
    ) -> VideoCapture {
        let fanout = Fanout::<VideoTrackSender>::new();
        let counters = Arc::new(SendCounters::default());
        let keyframe = KeyframeWanted::default();
        let muted = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ctl, ctl_rx) = std::sync::mpsc::channel();
        // A short queue: if the network side falls behind, drop and ask for a keyframe
        // rather than send stale video late.
        let (tx, rx) = mpsc::channel::<Unit>(4 * crate::call::simulcast::LAYERS.max(layers));
        spawn_fanout(fanout.clone(), rx, counters.clone());
        let layered = (layers > 1).then(|| LayeredEncoder::new(layers, encoding));
        let thread = VideoThread {
            track,
            encoding,
            keyframe: keyframe.clone(),
            muted: muted.clone(),
            stop: stop.clone(),
            counters: counters.clone(),
            ctl: ctl_rx,
            out: tx,
            failures,
            preview,
            // A shared screen keeps its resolution: text must stay readable.
            // Simulcast layers replace it while there are any.
            ladder: (track == TrackRole::Camera).then(Ladder::default),
            scaler: Scaler::default(),
            layered,
            small: None,
            fanout: fanout.clone(),
        };
        std::thread::Builder::new()
            .name(format!("capture-{track}"))
            .spawn(move || thread.run(source))
            .expect("spawning a capture thread");
        VideoCapture {
            fanout,
            counters,
            layers: layers.max(1),
            keyframe,
            muted,
            stop,
            ctl,
        }
    }

    /// Encodes in `n` simulcast layers from the next frame on (1: none).
    pub fn set_layers(&mut self, n: usize) {
        let n = n.max(1);
        if n != self.layers {
            self.layers = n;
            let _ = self.ctl.send(VideoCtl::Layers(n));
        }
    }

    /// Every stream starts a picture afresh.
    pub fn request_keyframe(&self) {
        self.keyframe.set();
    }

    /// Encodes a second, smaller stream at `bps` beside the main one (`None`: stops
    /// it), for mesh peers on slow links; not with simulcast layers.
    pub fn set_small_stream(&self, bps: Option<u32>) {
        let _ = self.ctl.send(VideoCtl::Small(bps));
    }

    /// A keyframe of the small stream only: a peer is moving onto it.
    pub fn request_small_keyframe(&self) {
        let _ = self.ctl.send(VideoCtl::SmallKeyframe);
    }

    /// The flag `peer`'s track sets when it asks for a keyframe.
    pub fn keyframe_wanted_by(&self, peer: &str) -> KeyframeWanted {
        self.fanout.keyframe_flag(peer)
    }

    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
        if !muted {
            self.request_keyframe();
        }
    }

    /// Swaps the source behind the same track (no renegotiation).
    pub fn replace_source(&self, source: Box<dyn VideoSource>) {
        let _ = self.ctl.send(VideoCtl::Replace(source));
        self.request_keyframe();
    }

    pub fn set_bitrate(&self, bps: u32) {
        let _ = self.ctl.send(VideoCtl::Bitrate(bps));
    }

    pub fn set_fps(&self, fps: f32) {
        let _ = self.ctl.send(VideoCtl::Fps(fps));
    }

    /// 0 turns periodic keyframes off (they then come only on request).
    pub fn set_keyframe_interval(&self, frames: u32) {
        let _ = self.ctl.send(VideoCtl::KeyframeInterval(frames));
    }
}

impl Drop for VideoCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct VideoThread {
    track: TrackRole,
    encoding: VideoEncoding,
    keyframe: KeyframeWanted,
    muted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    counters: Arc<SendCounters>,
    ctl: std::sync::mpsc::Receiver<VideoCtl>,
    out: mpsc::Sender<Unit>,
    failures: mpsc::UnboundedSender<CaptureFailure>,
    preview: Arc<dyn MediaSink>,
    /// The camera's resolution follows its bitrate (`ladder.rs`).
    ladder: Option<Ladder>,
    scaler: Scaler,
    /// Simulcast: every layer's encoder, instead of the one below.
    layered: Option<LayeredEncoder>,
    /// Beside the one below, for mesh peers on slow links.
    small: Option<SmallStream>,
    /// The peers' keyframe requests, by the stream each is sent.
    fanout: Arc<Fanout<VideoTrackSender>>,
}

impl VideoThread {
    /// Tells the engine the source stopped (the call goes on without it).
    fn fail(&self, message: String) {
        let _ = self.failures.send(CaptureFailure {
            track: self.track,
            message,
        });
    }

    /// The picture at the size the bitrate carries, if not the source's.
    fn fit(&mut self, frame: &VideoFrame) -> Option<VideoFrame> {
        let ladder = self.ladder.as_mut()?;
        let (w, h) = ladder.update(
            Instant::now(),
            self.encoding.bitrate_bps,
            self.encoding.fps,
            (frame.width, frame.height),
        );
        if (w, h) == (frame.width, frame.height) {
            return None;
        }
        match self.scaler.scale(frame, w, h) {
            Ok(small) => Some(small),
            Err(e) => {
                tracing::warn!(track = %self.track, "scaling to {w}x{h} failed: {e}");
                None
            }
        }
    }

    fn run(mut self, mut source: Box<dyn VideoSource>) {
        let mut encoder: Option<H264Encoder> = None;
        let mut source_ok = true;
        while !self.stop.load(Ordering::Relaxed) {
            // A failed source parks the thread until a replacement arrives.
            let ctl = if source_ok {
                self.ctl.try_recv().ok()
            } else {
                match self.ctl.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => Some(c),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            };
            match ctl {
                Some(VideoCtl::Replace(s)) => {
                    source = s;
                    source_ok = true;
                    continue;
                }
                Some(VideoCtl::Bitrate(b)) => {
                    self.encoding.bitrate_bps = b;
                    if let Some(l) = self.layered.as_mut() {
                        l.set_bitrate(b);
                    }
                    if let Some(e) = encoder.as_mut() {
                        let _ = e.set_bitrate(b);
                    }
                    continue;
                }
                Some(VideoCtl::KeyframeInterval(n)) => {
                    self.encoding.keyframe_interval_frames = n;
                    if let Some(l) = self.layered.as_mut() {
                        l.set_keyframe_interval(n);
                    }
                    if let Some(e) = encoder.as_mut() {
                        let _ = e.set_keyframe_interval(n);
                    }
                    continue;
                }
                Some(VideoCtl::Small(bps)) => {
                    match (bps, self.small.as_mut()) {
                        (Some(b), Some(small)) => small.set_bitrate(b),
                        (Some(b), None) => self.small = Some(SmallStream::new(b)),
                        (None, _) => self.small = None,
                    }
                    continue;
                }
                Some(VideoCtl::SmallKeyframe) => {
                    if let Some(small) = self.small.as_mut() {
                        small.request_keyframe();
                    }
                    continue;
                }
                Some(VideoCtl::Layers(n)) => {
                    // Fresh encoders: each starts with a keyframe.
                    self.layered = (n > 1).then(|| LayeredEncoder::new(n, self.encoding));
                    self.small = None;
                    self.counters.layers.store(0, Ordering::Relaxed);
                    encoder = None;
                    continue;
                }
                Some(VideoCtl::Fps(f)) => {
                    self.encoding.fps = f;
                    if let Some(l) = self.layered.as_mut() {
                        l.set_fps(f);
                    }
                    if let Some(e) = encoder.as_mut() {
                        let _ = e.set_fps(f);
                    }
                    continue;
                }
                None => {}
            }
            let frame = match source.next_frame() {
                Ok(f) => f,
                Err(e) => {
                    source_ok = false;
                    self.fail(format!("{} stopped: {e}", source.describe()));
                    continue;
                }
            };
            if self.muted.load(Ordering::Relaxed) {
                continue;
            }
            self.preview.local_video(self.track, &frame);
            // For every stream: a source swap, a new peer, a full queue; then each
            // peer's own request, for the stream it is sent.
            let all = self.keyframe.take();
            let (main_asked, small_asked) = self.fanout.keyframes_asked();
            if self.layered.is_some() {
                if all || main_asked {
                    self.keyframe.set();
                }
                match self.encode_layers(&frame) {
                    Ok(true) => continue,
                    Ok(false) => return,
                    Err(e) => {
                        source_ok = false;
                        self.fail(format!("cannot encode {}: {e}", source.describe()));
                        continue;
                    }
                }
            }
            if let Some(l) = self.ladder.as_mut().filter(|_| all || main_asked) {
                l.keyframe_wanted();
            }
            let fitted = self.fit(&frame);
            let main = fitted.as_ref().unwrap_or(&frame);
            let enc = match encoder.as_mut() {
                Some(e) => e,
                None => match H264Encoder::new(EncoderSettings {
                    width: main.width,
                    height: main.height,
                    fps: self.encoding.fps,
                    bitrate_bps: self.encoding.bitrate_bps,
                    keyframe_interval_frames: self.encoding.keyframe_interval_frames,
                }) {
                    Ok(e) => encoder.insert(e),
                    Err(e) => {
                        source_ok = false;
                        self.fail(format!("cannot encode {}: {e}", source.describe()));
                        continue;
                    }
                },
            };
            if all || main_asked {
                enc.request_keyframe();
            }
            if let Some(small) = self.small.as_mut().filter(|_| all || small_asked) {
                small.request_keyframe();
            }
            let started = Instant::now();
            let encoded = match enc.encode(main) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(track = %self.track, "encode failed: {e}");
                    None
                }
            };
            let sent = match encoded {
                Some(e) => self.send_main(e, started),
                None => true,
            };
            if !sent || !self.encode_small(&frame) {
                return;
            }
        }
    }

    /// Sends one unit of the main stream. False once the send stage is gone.
    fn send_main(&mut self, encoded: crate::media::AccessUnit, started: Instant) -> bool {
        if encoded.keyframe {
            tracing::debug!(track = %self.track, bytes = encoded.data.len(), "keyframe encoded");
            if let Some(l) = self.ladder.as_mut() {
                l.keyframe(encoded.data.len());
            }
        }
        let c = &self.counters;
        c.encode_us_total
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        c.frames.fetch_add(1, Ordering::Relaxed);
        c.keyframes
            .fetch_add(u64::from(encoded.keyframe), Ordering::Relaxed);
        self.send_encoded(encoded, false)
    }

    /// One frame of the small stream, if there is one. False once the send stage is gone.
    fn encode_small(&mut self, frame: &VideoFrame) -> bool {
        let Some(small) = self.small.as_mut() else {
            return true;
        };
        match small.encode(frame, self.encoding) {
            Ok((encoded, took)) => {
                self.counters
                    .encode_us_total
                    .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                encoded.is_none_or(|e| self.send_encoded(e, true))
            }
            Err(e) => {
                tracing::warn!(track = %self.track, "small stream: {e}");
                true
            }
        }
    }

    /// An access unit of the main or the small stream, counted and handed on.
    fn send_encoded(&mut self, encoded: crate::media::AccessUnit, small: bool) -> bool {
        self.counters
            .bytes
            .fetch_add(encoded.data.len() as u64, Ordering::Relaxed);
        let duration = Duration::from_secs_f32(1.0 / self.encoding.fps.max(1.0));
        self.send(Unit {
            small,
            keyframe: encoded.keyframe,
            capture_us: encoded.capture_us,
            ..Unit::single(encoded.data, duration)
        })
    }

    /// Hands a unit to the send stage; a full queue drops it and asks for a keyframe.
    /// False once the send stage is gone.
    fn send(&mut self, unit: Unit) -> bool {
        match self.out.try_send(unit) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.keyframe.set();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// One frame in every simulcast layer due. False once the send stage is gone.
    fn encode_layers(&mut self, frame: &VideoFrame) -> Result<bool, crate::media::MediaError> {
        let Some(layered) = self.layered.as_mut() else {
            return Ok(true);
        };
        if self.keyframe.take() {
            layered.request_keyframe();
        }
        let (units, busy) = layered.encode(frame)?;
        self.counters
            .layers
            .store(layered.active() as u64, Ordering::Relaxed);
        let size = ((frame.width as u64) << 16) | frame.height as u64;
        self.counters.layers_size.store(size, Ordering::Relaxed);
        let c = self.counters.clone();
        c.encode_us_total
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        c.frames.fetch_add(1, Ordering::Relaxed);
        for u in units {
            c.bytes.fetch_add(u.data.len() as u64, Ordering::Relaxed);
            c.keyframes
                .fetch_add(u64::from(u.keyframe && u.top), Ordering::Relaxed);
            let unit = Unit {
                data: u.data,
                duration: u.duration,
                capture_us: u.capture_us,
                layer: u.layer,
                top: u.top,
                small: false,
                keyframe: u.keyframe,
            };
            if !self.send(unit) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
