//! Where the recorder meets the media path: a sink around the application's own (the
//! window's textures and speaker, or the headless analyser) that also hands every
//! picture and every stretch of audio to the recorder while one runs. Handing over never
//! waits: a full queue drops (see [`Feeder`]).

use std::sync::{Arc, RwLock};

use crate::call::{AudioInfo, FrameInfo, MediaSink, TrackRole};
use crate::media::VideoFrame;
use crate::sync::RwLockExt;

use super::{Feeder, SELF};

pub struct RecordTap {
    inner: Arc<dyn MediaSink>,
    feeder: RwLock<Option<Feeder>>,
}

impl RecordTap {
    pub fn wrap(inner: Arc<dyn MediaSink>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            feeder: RwLock::new(None),
        })
    }

    /// From now on media also goes to this recorder.
    pub fn attach(&self, feeder: Feeder) {
        *self.feeder.write_locked() = Some(feeder);
    }

    pub fn detach(&self) {
        *self.feeder.write_locked() = None;
    }

    fn feed(&self, f: impl FnOnce(&Feeder)) {
        if let Some(feeder) = self.feeder.read_locked().as_ref() {
            f(feeder);
        }
    }
}

impl MediaSink for RecordTap {
    fn video(&self, peer: &str, track: TrackRole, frame: &VideoFrame, info: &FrameInfo) {
        self.inner.video(peer, track, frame, info);
        self.feed(|f| f.video(peer, track, frame));
    }

    fn audio(&self, peer: &str, track: TrackRole, pcm: &[f32], info: &AudioInfo) {
        self.inner.audio(peer, track, pcm, info);
        self.feed(|f| f.audio(peer, pcm));
    }

    fn local_video(&self, track: TrackRole, frame: &VideoFrame) {
        self.inner.local_video(track, frame);
        self.feed(|f| f.video(SELF, track, frame));
    }

    fn local_audio(&self, track: TrackRole, pcm: &[f32]) {
        self.inner.local_audio(track, pcm);
        self.feed(|f| f.audio(SELF, pcm));
    }
}
