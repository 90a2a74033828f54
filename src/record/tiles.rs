//! Which tiles a recording shows, in order, and the latest picture of each (pure: time
//! is passed in).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::call::TrackRole;
use crate::media::VideoFrame;

use super::{SELF, STALE};

/// Which tiles the recording shows, in order, and the latest picture of each: ours
/// first, then the others' cameras in the order they came, then shared screens.
#[derive(Debug, Default)]
pub struct Tiles {
    order: Vec<(String, TrackRole)>,
    latest: HashMap<(String, TrackRole), (VideoFrame, Instant)>,
    /// Members whose camera is off: pictures still on their way are not shown.
    camera_off: Vec<String>,
    /// Members who left: pictures still on their way (they come on another queue than
    /// the news) bring no tile back until they join again.
    gone: HashSet<String>,
}

impl Tiles {
    pub fn new(members: &[String]) -> Self {
        let mut t = Self::default();
        t.joined(SELF);
        for m in members {
            t.joined(m);
        }
        t
    }

    /// A member's camera tile (with a grey picture until one arrives).
    pub fn joined(&mut self, member: &str) {
        self.gone.remove(member);
        let key = (member.to_string(), TrackRole::Camera);
        if !self.order.contains(&key) {
            let first_screen = self
                .order
                .iter()
                .position(|(_, r)| *r == TrackRole::Screen)
                .unwrap_or(self.order.len());
            self.order.insert(first_screen, key);
        }
    }

    pub fn left(&mut self, member: &str) {
        self.order.retain(|(m, _)| m != member);
        self.latest.retain(|(m, _), _| m != member);
        self.camera_off.retain(|m| m != member);
        self.gone.insert(member.to_string());
    }

    /// Whether the member left (and has not joined again).
    pub fn is_gone(&self, member: &str) -> bool {
        self.gone.contains(member)
    }

    pub fn camera(&mut self, member: &str, on: bool) {
        self.camera_off.retain(|m| m != member);
        if !on {
            self.camera_off.push(member.to_string());
            self.latest.remove(&(member.to_string(), TrackRole::Camera));
        }
    }

    /// A shared screen's tile goes; a camera's stays, without a picture.
    pub fn track_removed(&mut self, member: &str, role: TrackRole) {
        let key = (member.to_string(), role);
        if role == TrackRole::Screen {
            self.order.retain(|k| *k != key);
        }
        self.latest.remove(&key);
    }

    pub fn picture(&mut self, member: &str, role: TrackRole, frame: VideoFrame, now: Instant) {
        if self.is_gone(member) {
            return;
        }
        let key = (member.to_string(), role);
        match role {
            TrackRole::Microphone => return,
            TrackRole::Camera if self.camera_off.iter().any(|m| m == member) => return,
            TrackRole::Camera => self.joined(member),
            TrackRole::Screen if !self.order.contains(&key) => self.order.push(key.clone()),
            TrackRole::Screen => {}
        }
        self.latest.insert(key, (frame, now));
    }

    /// The tiles to draw now (None: no recent picture); screens not seen for
    /// [`STALE`] are dropped.
    pub fn shown(&mut self, now: Instant) -> Vec<Option<&VideoFrame>> {
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < STALE;
        let latest = &self.latest;
        self.order
            .retain(|k| k.1 != TrackRole::Screen || latest.get(k).is_some_and(|(_, t)| fresh(t)));
        self.order
            .iter()
            .map(|k| self.latest.get(k).filter(|(_, t)| fresh(t)).map(|(f, _)| f))
            .collect()
    }

    pub fn keys(&self) -> &[(String, TrackRole)] {
        &self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pic(w: usize) -> VideoFrame {
        VideoFrame::black(w, 2, 0).unwrap()
    }

    #[test]
    fn tiles_follow_people_joining_and_leaving_and_screens_come_last() {
        let t0 = Instant::now();
        let mut t = Tiles::new(&["bob".into()]);
        let cam = |m: &str| (m.to_string(), TrackRole::Camera);
        assert_eq!(t.keys(), [cam(SELF), cam("bob")]);
        t.picture("bob", TrackRole::Screen, pic(4), t0);
        t.joined("carol");
        assert_eq!(
            t.keys(),
            [
                cam(SELF),
                cam("bob"),
                cam("carol"),
                ("bob".into(), TrackRole::Screen)
            ]
        );
        t.picture("bob", TrackRole::Camera, pic(6), t0);
        let shown: Vec<Option<usize>> = t.shown(t0).iter().map(|f| f.map(|f| f.width)).collect();
        assert_eq!(
            shown,
            [None, Some(6), None, Some(4)],
            "grey until a picture"
        );
        t.left("bob");
        assert_eq!(
            t.keys(),
            [cam(SELF), cam("carol")],
            "his camera and screen go"
        );
        // A picture from someone not announced yet still gets a tile.
        t.picture("dave", TrackRole::Camera, pic(8), t0);
        assert_eq!(t.keys().last(), Some(&cam("dave")));
    }

    #[test]
    fn a_picture_arriving_after_its_member_left_brings_no_tile_back() {
        let t0 = Instant::now();
        let mut t = Tiles::new(&["carol".into()]);
        t.left("carol");
        t.picture("carol", TrackRole::Camera, pic(4), t0);
        t.picture("carol", TrackRole::Screen, pic(4), t0);
        assert_eq!(t.keys(), [(SELF.to_string(), TrackRole::Camera)]);
        t.joined("carol");
        t.picture("carol", TrackRole::Camera, pic(4), t0);
        assert_eq!(t.shown(t0).len(), 2, "back once she joins again");
        assert!(t.shown(t0)[1].is_some());
    }

    #[test]
    fn old_pictures_turn_grey_and_an_old_screen_goes() {
        let t0 = Instant::now();
        let mut t = Tiles::new(&[]);
        t.picture(SELF, TrackRole::Camera, pic(4), t0);
        t.picture(SELF, TrackRole::Screen, pic(6), t0);
        assert_eq!(t.shown(t0 + Duration::from_secs(1)).len(), 2);
        let later = t.shown(t0 + STALE);
        assert_eq!(later.len(), 1);
        assert!(later[0].is_none(), "camera stopped: grey");
        t.picture(SELF, TrackRole::Screen, pic(6), t0);
        t.track_removed(SELF, TrackRole::Screen);
        assert_eq!(t.keys().len(), 1);
    }

    #[test]
    fn a_camera_turned_off_greys_its_tile_at_once_until_it_is_on_again() {
        let t0 = Instant::now();
        let mut t = Tiles::new(&["bob".into()]);
        t.picture("bob", TrackRole::Camera, pic(4), t0);
        t.camera("bob", false);
        t.picture("bob", TrackRole::Camera, pic(4), t0);
        assert!(
            t.shown(t0)[1].is_none(),
            "a picture still on its way is not shown"
        );
        t.camera("bob", true);
        t.picture("bob", TrackRole::Camera, pic(4), t0);
        assert!(t.shown(t0)[1].is_some());
    }
}
