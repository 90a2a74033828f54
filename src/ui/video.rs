//! Pictures for the tiles: decoded frames become RGBA images on the decode thread (SIMD
//! conversion), the UI thread only uploads the newest one per tile.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use eframe::egui::{self, ColorImage};

use crate::call::TrackRole;
use crate::media::{VideoFrame, i420_to_rgba};

/// Key of a tile: member id (or [`SELF_ID`]) and track role.
pub type TileKey = (String, TrackRole);

/// The member id the local preview is stored under.
pub const SELF_ID: &str = "";

pub struct Slot {
    pub image: Arc<ColorImage>,
    pub seq: u64,
}

/// Newest frame per tile, shared with the decode threads.
#[derive(Default)]
pub struct VideoFrames {
    slots: Mutex<HashMap<TileKey, Slot>>,
    ctx: OnceLock<egui::Context>,
}

impl VideoFrames {
    /// Lets frames wake the UI; before this is called frames are still stored.
    pub fn attach(&self, ctx: &egui::Context) {
        let _ = self.ctx.set(ctx.clone());
    }

    pub fn store(&self, peer: &str, track: TrackRole, frame: &VideoFrame) {
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
            .entry((peer.to_string(), track))
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
    }

    pub fn forget_tile(&self, peer: &str, track: TrackRole) {
        self.slots.locked().remove(&(peer.to_string(), track));
    }
}
