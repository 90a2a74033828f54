//! The sink stage: where decoded media goes (the UI's textures and speaker, a headless
//! analyser, a recorder: `record::RecordTap`), and what comes with each frame.

use std::sync::Arc;

use crate::media::barcode::{self, Barcode};
use crate::media::{Arrival, VideoFrame};
use crate::sync::LockExt;

use super::decode::RecvCounters;
use super::track::TrackRole;

/// Where decoded media goes: the UI's textures and speaker, or a headless analyser.
pub trait MediaSink: Send + Sync + 'static {
    fn video(&self, peer: &str, track: TrackRole, frame: &VideoFrame, info: &FrameInfo);
    fn audio(&self, peer: &str, track: TrackRole, pcm: &[f32], info: &AudioInfo);
    /// A frame of our own, as captured (self-view). Called on the capture thread.
    fn local_video(&self, _track: TrackRole, _frame: &VideoFrame) {}
    /// 20 ms of our own microphone as it is sent (silence while muted). Called on the
    /// capture thread.
    fn local_audio(&self, _track: TrackRole, _pcm: &[f32]) {}
}

/// A sink that drops everything (a call with nobody watching).
pub struct NullSink;

impl MediaSink for NullSink {
    fn video(&self, _: &str, _: TrackRole, _: &VideoFrame, _: &FrameInfo) {}
    fn audio(&self, _: &str, _: TrackRole, _: &[f32], _: &AudioInfo) {}
}

#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Wall-clock time the frame is shown: as it left the decoder, or later when the
    /// path's jitter has it held for an even pace (`frame_timing.rs`).
    pub shown_us: u64,
    /// The synthetic source's barcode, when the picture carries one.
    pub barcode: Option<Barcode>,
    pub keyframe: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AudioInfo {
    /// When the packet (or the gap, for concealment) arrived, and what it said of the
    /// sender (time left out in silence, gone quiet): what the playout needs.
    pub arrival: Arrival,
    /// Synthesised by packet-loss concealment, not decoded from a packet.
    pub concealed: bool,
}

/// Wraps a remote track's sink: reads the synthetic source's barcode from each picture,
/// passes it on in [`FrameInfo::barcode`] and records glass-to-glass latency.
pub struct BarcodeProbe {
    inner: Arc<dyn MediaSink>,
    counters: Arc<RecvCounters>,
}

impl BarcodeProbe {
    pub fn wrap(inner: Arc<dyn MediaSink>, counters: Arc<RecvCounters>) -> Arc<dyn MediaSink> {
        Arc::new(Self { inner, counters })
    }
}

impl MediaSink for BarcodeProbe {
    fn video(&self, peer: &str, track: TrackRole, frame: &VideoFrame, info: &FrameInfo) {
        let code = barcode::read(&frame.y, frame.width, frame.height, frame.width);
        if let Some(b) = code {
            self.counters
                .latency_us
                .locked()
                .push(info.shown_us.saturating_sub(b.capture_us));
        }
        let info = FrameInfo {
            barcode: code,
            ..*info
        };
        self.inner.video(peer, track, frame, &info);
    }

    fn audio(&self, peer: &str, track: TrackRole, pcm: &[f32], info: &AudioInfo) {
        self.inner.audio(peer, track, pcm, info);
    }

    fn local_video(&self, track: TrackRole, frame: &VideoFrame) {
        self.inner.local_video(track, frame);
    }

    fn local_audio(&self, track: TrackRole, pcm: &[f32]) {
        self.inner.local_audio(track, pcm);
    }
}
