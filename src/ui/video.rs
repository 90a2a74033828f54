//! The UI's media sink: decoded frames become RGBA images on the decode thread
//! (SIMD conversion), the UI thread only uploads the newest one per tile.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use eframe::egui::{self, ColorImage};

use crate::call::{AudioInfo, FrameInfo, MediaSink};
use crate::media::device::Speaker;
use crate::media::{VideoFrame, i420_to_rgba, level_dbfs, now_us};

/// Key of a tile: member id (or [`SELF_ID`]) and track role.
pub type TileKey = (String, String);

/// The member id the local preview is stored under.
pub const SELF_ID: &str = "";

pub struct Slot {
    pub image: Arc<ColorImage>,
    pub seq: u64,
}

/// Newest frame per tile and audio level per member, shared with the decode threads.
#[derive(Default)]
pub struct VideoFrames {
    slots: Mutex<HashMap<TileKey, Slot>>,
    levels: Mutex<HashMap<String, f32>>,
    ctx: OnceLock<egui::Context>,
    speaker: Mutex<Option<Speaker>>,
}

impl VideoFrames {
    /// Lets frames wake the UI; before this is called frames are still stored.
    pub fn attach(&self, ctx: &egui::Context) {
        let _ = self.ctx.set(ctx.clone());
    }

    pub fn store(&self, peer: &str, track: &str, frame: &VideoFrame) {
        // One RGBA scratch buffer per decode/capture thread, not an allocation per frame.
        thread_local! {
            static RGBA: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let image = RGBA.with_borrow_mut(|rgba| {
            i420_to_rgba(frame, rgba).ok()?;
            let size = [frame.width, frame.height];
            Some(Arc::new(ColorImage::from_rgba_unmultiplied(size, rgba)))
        });
        let Some(image) = image else { return };
        let mut slots = self.slots.locked();
        let slot = slots
            .entry((peer.to_string(), track.to_string()))
            .or_insert_with(|| Slot {
                image: image.clone(),
                seq: 0,
            });
        slot.image = image;
        slot.seq += 1;
        drop(slots);
        if let Some(ctx) = self.ctx.get() {
            ctx.request_repaint();
        }
    }

    /// Tiles whose frame changed since `seen`, with their new sequence numbers.
    pub fn changed(&self, seen: &HashMap<TileKey, u64>) -> Vec<(TileKey, Arc<ColorImage>, u64)> {
        let slots = self.slots.locked();
        slots
            .iter()
            .filter(|(k, s)| seen.get(*k) != Some(&s.seq))
            .map(|(k, s)| (k.clone(), s.image.clone(), s.seq))
            .collect()
    }

    pub fn forget_peer(&self, peer: &str) {
        self.slots.locked().retain(|(p, _), _| p != peer);
        self.levels.locked().remove(peer);
    }

    pub fn forget_tile(&self, peer: &str, track: &str) {
        self.slots
            .locked()
            .remove(&(peer.to_string(), track.to_string()));
    }

    /// Where remote audio plays from now on.
    pub fn set_speaker(&self, speaker: Option<Speaker>) {
        *self.speaker.locked() = speaker;
    }

    /// Why the speaker stopped playing, if it did.
    pub fn speaker_error(&self) -> Option<String> {
        self.with_speaker(|s| s.error().map(|e| e.to_string()))
            .flatten()
    }

    /// Runs `f` on the speaker, if there is one.
    fn with_speaker<R>(&self, f: impl FnOnce(&Speaker) -> R) -> Option<R> {
        self.speaker.locked().as_ref().map(f)
    }

    /// Plays locally made sound (the ring) on the speaker, mixed with the call.
    pub fn play_sound(&self, stream: &str, pcm: &[f32]) {
        self.with_speaker(|s| s.push(stream, pcm, now_us()));
    }

    /// Cuts a local sound off at once.
    pub fn stop_sound(&self, stream: &str) {
        self.with_speaker(|s| s.remove_peer(stream));
    }

    /// Sets (or clears) a level directly: the lobby's microphone meter uses [`SELF_ID`].
    pub fn set_level(&self, peer: &str, dbfs: Option<f32>) {
        let mut levels = self.levels.locked();
        match dbfs {
            Some(l) => smooth_into(levels.entry(peer.to_string()).or_insert(l), l),
            None => {
                levels.remove(peer);
            }
        }
    }

    /// Recent audio level of a member in dBFS.
    pub fn level(&self, peer: &str) -> Option<f32> {
        self.levels.locked().get(peer).copied()
    }
}

/// Fast attack, slow release, so a speaking ring or a meter doesn't flicker.
fn smooth_into(l: &mut f32, level: f32) {
    *l = if level > *l {
        level
    } else {
        *l * 0.9 + level * 0.1
    };
}

impl MediaSink for VideoFrames {
    fn video(&self, peer: &str, track: &str, frame: &VideoFrame, _info: &FrameInfo) {
        self.store(peer, track, frame);
    }

    fn audio(&self, peer: &str, _track: &str, pcm: &[f32], info: &AudioInfo) {
        self.with_speaker(|s| s.push(peer, pcm, info.arrival_us));
        self.set_level(peer, Some(level_dbfs(pcm)));
    }

    fn local_video(&self, track: &str, frame: &VideoFrame) {
        self.store(SELF_ID, track, frame);
    }
}
