//! What the app plays and measures: the speaker (remote voices and the ring, mixed), and
//! each member's recent audio level for the speaking ring and the microphone meter.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::media::device::Speaker;
use crate::media::{Arrival, PlayoutStats, now_us};
use crate::sync::LockExt;

#[derive(Default)]
pub struct Sound {
    levels: Mutex<HashMap<String, f32>>,
    speaker: Mutex<Option<Speaker>>,
}

impl Sound {
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

    /// Plays one member's decoded audio as it arrived.
    pub fn play(&self, peer: &str, pcm: &[f32], arrival: Arrival) {
        self.with_speaker(|s| s.push(peer, pcm, arrival));
    }

    /// Plays locally made sound (the ring) on the speaker, mixed with the call.
    pub fn play_sound(&self, stream: &str, pcm: &[f32]) {
        self.play(stream, pcm, Arrival::at(now_us()));
    }

    /// What a member's jitter buffer in the speaker did so far.
    pub fn playout(&self, peer: &str) -> Option<PlayoutStats> {
        self.with_speaker(|s| s.buffer_stats(peer)).flatten()
    }

    /// Cuts a local sound off at once.
    pub fn stop_sound(&self, stream: &str) {
        self.with_speaker(|s| s.remove_peer(stream));
    }

    /// Sets (or clears) a level directly: the lobby's microphone meter uses `SELF_ID`.
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
