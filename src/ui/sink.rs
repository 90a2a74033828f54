//! The app's media sink: decoded pictures to [`VideoFrames`] (textures), decoded audio
//! to [`Sound`] (speaker and levels). Called on the decode and capture threads.

use eframe::egui;

use crate::call::{AudioInfo, FrameInfo, MediaSink, TrackRole};
use crate::media::{VideoFrame, level_dbfs};

use super::sound::Sound;
use super::video::{SELF_ID, VideoFrames};

#[derive(Default)]
pub struct UiSink {
    pub video: VideoFrames,
    pub sound: Sound,
}

impl UiSink {
    /// Lets frames wake the UI; before this is called frames are still stored.
    pub fn attach(&self, ctx: &egui::Context) {
        self.video.attach(ctx);
    }

    /// Drops a member's tiles and level (it left).
    pub fn forget_peer(&self, peer: &str) {
        self.video.forget_peer(peer);
        self.sound.set_level(peer, None);
    }
}

impl MediaSink for UiSink {
    fn video(&self, peer: &str, track: TrackRole, frame: &VideoFrame, _info: &FrameInfo) {
        self.video.store(peer, track, frame);
    }

    fn audio(&self, peer: &str, _track: TrackRole, pcm: &[f32], info: &AudioInfo) {
        self.sound.play(peer, pcm, info.arrival);
        self.sound.set_level(peer, Some(level_dbfs(pcm)));
    }

    fn local_video(&self, track: TrackRole, frame: &VideoFrame) {
        self.video.store(SELF_ID, track, frame);
    }
}
