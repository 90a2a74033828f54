//! A media sink that checks what arrived: barcode ids and latency of every
//! decoded frame, tone frequency, level and marker-click latency of the audio, and how
//! the audio would play: each peer's audio goes through the speaker's playout
//! (`media/playout.rs`) on a clock of 10 ms blocks, as a sound card would take it.

use crate::sync::LockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::call::{AudioInfo, FrameInfo, MediaSink, TrackRole, VideoQuality};
use crate::media::{
    AUDIO_RATE, Arrival, ClickDetector, PLAYOUT_BLOCK, Playout, PlayoutStats, VideoFrame,
    click_latency_us, dominant_frequency, level_dbfs,
};

/// Seconds of decoded audio kept for the tone measurement.
const TONE_WINDOW_S: usize = 2;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Percentiles {
    fn of_us(samples: &[u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        Some(Self {
            p50: at(0.5),
            p95: at(0.95),
            max: at(1.0),
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VideoReport {
    pub frames_decoded: u64,
    pub width: usize,
    pub height: usize,
    /// Frames whose barcode could be read.
    pub ids_read: u64,
    pub first_id: Option<u32>,
    pub last_id: Option<u32>,
    /// Every barcode id larger than the one before.
    pub ids_in_order: bool,
    /// Ids skipped between the first and the last one read.
    pub id_gaps: u64,
    pub keyframes: u64,
    pub latency_ms: Option<Percentiles>,
    /// Freezes, long gaps and the per-second frame rate and resolution.
    pub quality: VideoQuality,
    /// Wall-clock µs of the first decoded frame.
    #[serde(skip)]
    pub first_frame_us: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AudioReport {
    pub packets_received: u64,
    pub concealed: u64,
    pub tone_hz: Option<f32>,
    pub level_dbfs: Option<f32>,
    pub clicks: u64,
    pub latency_ms: Option<Percentiles>,
    /// How it played (what a listener heard), on a clock of 10 ms blocks.
    pub playout: PlayoutReport,
}

/// The playout's work in ms of audio, as WebRTC's inbound audio stats count it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PlayoutReport {
    /// Mean audio buffered when a block was played: the jitter buffer's delay.
    pub delay_ms: f64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
    /// Continued from the last pitch period after running dry, then silence.
    pub concealed_ms: f64,
    pub silent_ms: f64,
    /// The sender's silence (Opus DTX), played as its comfort noise fading.
    pub paused_ms: f64,
    /// Time-stretched away (delay given back) and in (delay built up).
    pub accelerated_ms: f64,
    pub decelerated_ms: f64,
    /// Dropped because far too much was buffered.
    pub cut_ms: f64,
    /// Where playback (re)starts, as learnt from the arrivals' jitter.
    pub start_depth_ms: f64,
}

impl From<PlayoutStats> for PlayoutReport {
    fn from(s: PlayoutStats) -> Self {
        let ms = |samples: u64| samples as f64 * 1000.0 / AUDIO_RATE as f64;
        Self {
            delay_ms: s.mean_delay_ms(),
            underruns: s.underruns,
            concealed_ms: ms(s.concealed_samples),
            silent_ms: ms(s.silent_samples),
            paused_ms: ms(s.paused_samples),
            accelerated_ms: ms(s.removed_for_acceleration),
            decelerated_ms: ms(s.inserted_for_deceleration),
            cut_ms: ms(s.cut_samples),
            start_depth_ms: ms(s.start_depth),
        }
    }
}

#[derive(Default)]
struct VideoState {
    report: VideoReport,
    latencies: Vec<u64>,
}

struct AudioState {
    report: AudioReport,
    tail: VecDeque<f32>,
    clicks: ClickDetector,
    latencies: Vec<u64>,
    playout: Playout,
    /// When the next block plays (wall-clock µs); from the first arrival on.
    clock_us: Option<u64>,
}

impl AudioState {
    /// Plays every block due by `now_us`, then takes `pcm`.
    fn play_until(&mut self, pcm: &[f32], arrival: Arrival) {
        let now_us = arrival.at_us;
        const BLOCK_US: u64 = 10_000;
        let clock = self.clock_us.get_or_insert(now_us);
        let mut block = [0.0f32; PLAYOUT_BLOCK];
        while *clock + BLOCK_US <= now_us {
            block.fill(0.0);
            self.playout.mix_into(&mut block);
            *clock += BLOCK_US;
        }
        self.playout.receive(pcm, arrival);
    }
}

impl Default for AudioState {
    fn default() -> Self {
        Self {
            report: AudioReport::default(),
            tail: VecDeque::new(),
            clicks: ClickDetector::new(AUDIO_RATE),
            latencies: Vec::new(),
            playout: Playout::default(),
            clock_us: None,
        }
    }
}

#[derive(Default)]
struct PeerState {
    video: HashMap<TrackRole, VideoState>,
    audio: AudioState,
}

/// Collects what each remote peer's tracks delivered.
#[derive(Default)]
pub struct Analyzer {
    peers: Mutex<HashMap<String, PeerState>>,
}

impl Analyzer {
    fn with_peer<R>(&self, peer: &str, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut peers = self.peers.locked();
        f(peers.entry(peer.to_string()).or_default())
    }

    /// What arrived on one video track of one peer so far.
    pub fn video(&self, peer: &str, track: TrackRole) -> VideoReport {
        self.with_peer(peer, |p| {
            p.video.get(&track).map_or_else(VideoReport::default, |v| {
                let mut r = v.report.clone();
                r.latency_ms = Percentiles::of_us(&v.latencies);
                r
            })
        })
    }

    /// What arrived on a peer's audio so far, with the tone measured over the last 2 s.
    pub fn audio(&self, peer: &str) -> AudioReport {
        self.with_peer(peer, |p| {
            let a = &p.audio;
            let mut r = a.report.clone();
            if a.tail.len() >= AUDIO_RATE as usize / 4 {
                let pcm: Vec<f32> = a.tail.iter().copied().collect();
                r.tone_hz = Some(dominant_frequency(&pcm, AUDIO_RATE));
                r.level_dbfs = Some(level_dbfs(&pcm));
            }
            r.latency_ms = Percentiles::of_us(&a.latencies);
            r.playout = a.playout.stats().into();
            r
        })
    }

    pub fn peers(&self) -> Vec<String> {
        let peers = self.peers.locked();
        peers.keys().cloned().collect()
    }
}

impl MediaSink for Analyzer {
    fn video(&self, peer: &str, track: TrackRole, frame: &VideoFrame, info: &FrameInfo) {
        self.with_peer(peer, |p| {
            let v = p.video.entry(track).or_default();
            let r = &mut v.report;
            if r.frames_decoded == 0 {
                r.first_frame_us = Some(info.shown_us);
                r.ids_in_order = true;
            }
            r.frames_decoded += 1;
            r.quality
                .on_frame(info.shown_us, frame.width as u32, frame.height as u32);
            r.keyframes += u64::from(info.keyframe);
            r.width = frame.width;
            r.height = frame.height;
            if let Some(code) = info.barcode {
                r.ids_read += 1;
                if let Some(last) = r.last_id {
                    if code.frame_id <= last {
                        r.ids_in_order = false;
                    } else {
                        r.id_gaps += u64::from(code.frame_id - last - 1);
                    }
                }
                r.first_id.get_or_insert(code.frame_id);
                r.last_id = Some(code.frame_id);
                v.latencies
                    .push(info.shown_us.saturating_sub(code.capture_us));
            }
        });
    }

    fn audio(&self, peer: &str, _track: TrackRole, pcm: &[f32], info: &AudioInfo) {
        self.with_peer(peer, |p| {
            let a = &mut p.audio;
            a.play_until(pcm, info.arrival);
            if info.concealed {
                a.report.concealed += 1;
            } else {
                a.report.packets_received += 1;
                a.tail.extend(pcm.iter().copied());
                let keep = AUDIO_RATE as usize * TONE_WINDOW_S;
                while a.tail.len() > keep {
                    a.tail.pop_front();
                }
            }
            for onset in a.clicks.feed(pcm, info.arrival.at_us) {
                a.report.clicks += 1;
                a.latencies.push(click_latency_us(onset));
            }
        });
    }
}
