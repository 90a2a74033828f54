//! The camera's degradation ladder: when the bitrate cannot carry the source's resolution
//! (too few bits per pixel, the picture turns to mush and the encoder skips frames), send
//! a smaller picture instead: 720p -> 540p -> 360p -> 270p -> 180p. Up after the bitrate
//! has held for 0.7 s (as many rungs as it carries); down at once below a lower threshold
//! (the gap between the two is so it does not flap), to where a climb would go. Bits per
//! pixel are a guess at what a picture needs, and a smaller picture needs more of them
//! (each pixel carries more of the detail): the thresholds grow as the picture shrinks,
//! the bits a picture needs as its pixels to the power 0.75. At one threshold for every
//! size, a 500 kbit/s link's 330 kbit/s climbed to 360p, where openh264 skipped a fifth
//! of the frames (runs of them froze the picture) and its keyframe took 230 ms; Chromium
//! holds 480x270 there. Busy content at a rung the guess allows still makes openh264
//! skip most frames (its quantiser is capped at low rates; a mesh's small stream went to
//! 720x404 at 400 kbit/s and sent 4 frames a second). So the small stream's ladder also steps down from a rung
//! whose frames are mostly skipped, and does not climb back to it for a while at that
//! rate (as Chromium's quality scaler steps down on dropped frames); and it never
//! goes above half the source's size. On a link that holds the bitrate down, a rung whose
//! keyframe takes too long at the bitrate is left at the next keyframe asked for, and not
//! climbed to again until the rate carries it: each keyframe there (each climb, each
//! repair) froze the picture. Pure: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Each rung's size as a fraction of the source's.
const RUNGS: [(usize, usize); 5] = [(1, 1), (3, 4), (1, 2), (3, 8), (1, 4)];
/// The half-size rung.
const HALF: usize = 2;
/// Below this many bits per pixel per frame at 720p's size, step down;
const DOWN_BPP: f64 = 0.03;
/// a rung up is taken when it would get at least this many.
const UP_BPP: f64 = 0.045;
/// The size both hold at; a picture of `p` pixels needs `(SIZE_BPP_AT / p)^0.25` times as
/// many bits per pixel.
const SIZE_BPP_AT: f64 = 1280.0 * 720.0;
/// How long the bitrate must hold before stepping up.
const UP_AFTER: Duration = Duration::from_millis(700);
/// Frames are judged over this long,
const SKIP_WINDOW: Duration = Duration::from_secs(1);
/// from this long after a change (the new size's keyframe is skipped after, rightly),
const SKIP_GRACE: Duration = Duration::from_millis(500);
/// and at least this many: more than this share skipped steps down,
const MIN_JUDGED: usize = 10;
const SKIPPING: f64 = 0.5;
/// and the rung stepped down from is not climbed to for this long, unless the bitrate
/// has grown this many times what it skipped at (a link that widened).
const SKIPPED_RUNG_BLOCKED: Duration = Duration::from_secs(10);
const SKIPPED_RATE_RETRY: u32 = 2;
/// Where the link holds the bitrate down, a rung whose keyframe takes longer than this
/// (seconds at the bitrate) freezes the picture whenever one is sent, at a climb or as a
/// repair: on a 1 Mbit/s link a 540p keyframe was 18 kB, 190 ms at 780 kbit/s (360p's 7
/// kB). The repair is sent a rung down instead (a new size is a keyframe anyway; leaving
/// at once would send two), and the rung is climbed to only once the bitrate carries it.
const KEYFRAME_BUDGET: f64 = 0.16;
/// The bitrate is held down by the link below this share of the most it has been.
const HELD_DOWN: f64 = 0.9;

#[derive(Debug, Default)]
pub(crate) struct Ladder {
    rung: usize,
    up_since: Option<Instant>,
    /// When the rung last changed.
    changed_at: Option<Instant>,
    /// Whether each frame since the grace was encoded (`true`) or skipped.
    outcomes: VecDeque<(Instant, bool)>,
    /// No rung above this one (bigger) until then, below twice this bitrate: the one
    /// above's frames were skipped at up to it.
    blocked: Option<(usize, Instant, u32)>,
    /// The most bitrate the current rung has had.
    rung_bps: u32,
    /// Whether skipped frames step down (the mesh's small stream; see the module).
    judge_skips: bool,
    /// The biggest rung it may send.
    top: usize,
    /// Each rung's last keyframe, in bits.
    keyframe_bits: [Option<f64>; RUNGS.len()],
    /// The bitrate last looked at, and the most it has been.
    bps: u32,
    most_bps: u32,
    /// The current rung's keyframe took too long: the next keyframe is sent a rung down.
    oversized: bool,
    /// A keyframe is wanted for the next frame.
    keyframe_wanted: bool,
}

impl Ladder {
    /// A ladder that also steps down from a rung whose frames are mostly skipped.
    pub(crate) fn judging_skips() -> Self {
        Self {
            judge_skips: true,
            ..Self::default()
        }
    }

    /// The mesh's small stream: judging skips, and never above half the source's size
    /// (simulcast's middle layer). A slow peer's link is shared with the others' streams
    /// to it, and a bigger picture's keyframes alone fill it for most of a second.
    pub(crate) fn small_stream() -> Self {
        Self {
            top: HALF,
            rung: HALF,
            ..Self::judging_skips()
        }
    }

    /// The size to send a `source`-sized picture at, given the encoder's bitrate and
    /// frame rate at `now`.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        bitrate_bps: u32,
        fps: f32,
        source: (usize, usize),
    ) -> (usize, usize) {
        // Each rung's bits per pixel per frame, as a share of what its size needs.
        let bpp = |rung: usize| {
            let (w, h) = size(source, rung);
            let pixels = w as f64 * h as f64;
            let needs = (SIZE_BPP_AT / pixels).powf(0.25);
            f64::from(bitrate_bps) / (pixels * f64::from(fps.max(1.0))) / needs
        };
        let last = RUNGS.len() - 1;
        // The first size is a change too: its keyframe's skips are not judged.
        self.changed_at.get_or_insert(now);
        self.rung_bps = self.rung_bps.max(bitrate_bps);
        self.bps = bitrate_bps;
        self.most_bps = self.most_bps.max(bitrate_bps);
        // The smaller rung's first picture is the keyframe asked for.
        if std::mem::take(&mut self.keyframe_wanted) && self.oversized && self.rung < last {
            self.change(now, self.rung + 1);
        }
        if self.judge_skips && self.rung < last && self.skipping(now) {
            self.blocked = Some((self.rung + 1, now + SKIPPED_RUNG_BLOCKED, self.rung_bps));
            self.change(now, self.rung + 1);
        }
        if self.rung < last && bpp(self.rung) < DOWN_BPP {
            // Down to where a climb would go, not to the first rung over the lower
            // threshold: the gap between the two is for keeping a size, and a rate that
            // fell (or a call's first) landed in it at 360p on a 500 kbit/s link, where
            // openh264 skips.
            let mut rung = self.rung + 1;
            while rung < last && bpp(rung) < UP_BPP {
                rung += 1;
            }
            self.change(now, rung);
        }
        let top = match self.blocked {
            Some((rung, until, bps))
                if now < until && bitrate_bps < bps.saturating_mul(SKIPPED_RATE_RETRY) =>
            {
                rung.max(self.top)
            }
            _ => self.top,
        };
        let carries = |l: &Self, rung: usize| bpp(rung) >= UP_BPP && l.fits(rung, bitrate_bps);
        if self.rung > top && carries(self, self.rung - 1) {
            let since = *self.up_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= UP_AFTER {
                // As far up as the rate carries: each rung is a keyframe and a hold.
                let mut rung = self.rung;
                while rung > top && carries(self, rung - 1) {
                    rung -= 1;
                }
                self.change(now, rung);
            }
        } else {
            self.up_since = None;
        }
        size(source, self.rung)
    }

    /// The frame last sized was encoded as a keyframe of `bytes`.
    pub(crate) fn keyframe(&mut self, bytes: usize) {
        self.keyframe_bits[self.rung] = Some(bytes as f64 * 8.0);
        self.oversized = !self.fits(self.rung, self.bps);
    }

    /// The next frame is to be a keyframe.
    pub(crate) fn keyframe_wanted(&mut self) {
        self.keyframe_wanted = true;
    }

    /// Whether `rung`'s keyframe, as last seen, is sent in the budget at `bitrate_bps`
    /// (always, while the link does not hold the bitrate down).
    fn fits(&self, rung: usize, bitrate_bps: u32) -> bool {
        let bps = f64::from(bitrate_bps.max(1));
        bps >= f64::from(self.most_bps) * HELD_DOWN
            || self.keyframe_bits[rung].is_none_or(|bits| bits / bps <= KEYFRAME_BUDGET)
    }

    /// The encoder sent (`true`) or skipped the frame last sized.
    pub(crate) fn encoded(&mut self, now: Instant, sent: bool) {
        let judged = self
            .changed_at
            .is_none_or(|c| now.saturating_duration_since(c) >= SKIP_GRACE);
        if judged {
            self.outcomes.push_back((now, sent));
        }
        while self
            .outcomes
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > SKIP_WINDOW)
        {
            self.outcomes.pop_front();
        }
    }

    fn skipping(&self, now: Instant) -> bool {
        let recent: Vec<bool> = self
            .outcomes
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= SKIP_WINDOW)
            .map(|(_, sent)| *sent)
            .collect();
        let skipped = recent.iter().filter(|sent| !**sent).count();
        recent.len() >= MIN_JUDGED && skipped as f64 > SKIPPING * recent.len() as f64
    }

    fn change(&mut self, now: Instant, rung: usize) {
        self.rung = rung;
        self.rung_bps = 0;
        self.up_since = None;
        self.changed_at = Some(now);
        self.outcomes.clear();
        self.oversized = false;
    }
}

/// `source` scaled to `rung`, kept even (4:2:0) and at least 16 pixels.
fn size((w, h): (usize, usize), rung: usize) -> (usize, usize) {
    let (num, den) = RUNGS[rung];
    let even = |v: usize| ((v * num / den) & !1).max(16).min(v);
    (even(w), even(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HD: (usize, usize) = (1280, 720);

    #[test]
    fn a_rate_that_carries_720p_keeps_it() {
        let mut l = Ladder::default();
        assert_eq!(l.update(Instant::now(), 2_500_000, 30.0, HD), HD);
    }

    #[test]
    fn a_narrow_link_steps_down_at_once_as_far_as_needed() {
        let mut l = Ladder::default();
        let t = Instant::now();
        assert_eq!(l.update(t, 2_500_000, 30.0, HD), HD);
        assert_eq!(l.update(t, 900_000, 30.0, HD), HD, "0.033 bpp: still 720p");
        // Each step lands where the rate carries a climb: 540p's 0.046 bpp does.
        assert_eq!(l.update(t, 820_000, 30.0, HD), (960, 540));
        assert_eq!(l.update(t, 450_000, 30.0, HD), (640, 360));
        assert_eq!(l.update(t, 290_000, 30.0, HD), (480, 270));
        assert_eq!(l.update(t, 100_000, 30.0, HD), (320, 180));
        assert_eq!(l.update(t, 10_000, 30.0, HD), (320, 180), "the last rung");
    }

    #[test]
    fn once_the_rate_returns_it_climbs_after_a_hold_as_far_as_the_rate_carries() {
        let mut l = Ladder::default();
        let t0 = Instant::now();
        assert_eq!(l.update(t0, 150_000, 30.0, HD), (320, 180));
        // Looked at every half hold: the hold starts at the first look, and at the third
        // it is back to 720p in one step.
        let s = UP_AFTER / 2;
        let mut seen = Vec::new();
        for i in 1..=4 {
            seen.push(l.update(t0 + s * i, 2_500_000, 30.0, HD));
        }
        assert_eq!(seen, vec![(320, 180), (320, 180), HD, HD]);
    }

    #[test]
    fn a_rate_that_carries_one_rung_more_climbs_one() {
        let mut l = Ladder::default();
        let t0 = Instant::now();
        assert_eq!(l.update(t0, 150_000, 30.0, HD), (320, 180));
        // A 500 kbit/s link's 330 kbit/s: 0.085 bits per pixel at 270p, 0.048 at 360p,
        // where a 720p picture would need 0.045 but a 360p one 0.064.
        for i in 1..=6 {
            l.update(t0 + UP_AFTER / 2 * i, 330_000, 30.0, HD);
        }
        assert_eq!(l.update(t0 + UP_AFTER * 4, 330_000, 30.0, HD), (480, 270));
    }

    #[test]
    fn a_step_down_lands_where_a_climb_would_not_on_the_first_size_it_could_keep() {
        // 330 kbit/s: 360p would be kept at it (0.034 bits per pixel of its 0.042 to
        // stay) but not climbed to (0.064): 270p.
        let mut l = Ladder::default();
        assert_eq!(l.update(Instant::now(), 330_000, 30.0, HD), (480, 270));
        let mut l = Ladder::default();
        let t = Instant::now();
        assert_eq!(l.update(t, 2_500_000, 30.0, HD), HD);
        assert_eq!(l.update(t, 330_000, 30.0, HD), (480, 270));
    }

    #[test]
    fn a_smaller_picture_needs_more_bits_per_pixel() {
        let mut l = Ladder::default();
        let t0 = Instant::now();
        // 0.035 bits per pixel keeps 720p, but not 360p (which needs 0.042 to stay).
        assert_eq!(l.update(t0, 2_500_000, 30.0, HD), HD);
        assert_eq!(l.update(t0, 970_000, 30.0, HD), HD);
        assert_eq!(l.update(t0, 290_000, 30.0, (640, 360)), (480, 270));
    }

    /// `frames` frames at 30 fps from `t`, each sized and then sent or skipped.
    fn frames(
        l: &mut Ladder,
        t: &mut Instant,
        n: usize,
        bitrate: u32,
        sent: impl Fn(usize) -> bool,
    ) -> (usize, usize) {
        let mut size = (0, 0);
        for i in 0..n {
            *t += Duration::from_millis(33);
            size = l.update(*t, bitrate, 30.0, HD);
            l.encoded(*t, sent(i));
        }
        size
    }

    #[test]
    fn a_rung_whose_frames_are_mostly_skipped_steps_down_and_is_not_climbed_back_soon() {
        let mut l = Ladder::judging_skips();
        let mut t = Instant::now();
        // 1.8 Mbit/s carries 720p by the bits per pixel, but the content is busy: the
        // encoder sends one frame in four: judged after the first keyframe's half
        // second, 540p within the second.
        let size = frames(&mut l, &mut t, 28, 1_800_000, |i| i % 4 == 0);
        assert_eq!(size, (960, 540));
        // Sent in full at 540p: it stays, though the rate would carry 720p.
        let size = frames(&mut l, &mut t, 240, 1_800_000, |_| true);
        assert_eq!(size, (960, 540));
        // Once the block is over, 720p is tried again.
        let size = frames(&mut l, &mut t, 90, 1_800_000, |_| true);
        assert_eq!(size, HD);
    }

    #[test]
    fn a_rung_skipped_at_one_rate_is_climbed_to_at_once_at_twice_the_rate() {
        let mut l = Ladder::judging_skips();
        let mut t = Instant::now();
        let size = frames(&mut l, &mut t, 28, 1_800_000, |i| i % 4 == 0);
        assert_eq!(size, (960, 540));
        // The link widened: 4 Mbit/s. After the hold, 720p again.
        let size = frames(&mut l, &mut t, 30, 4_000_000, |_| true);
        assert_eq!(size, HD);
    }

    #[test]
    fn the_skips_after_the_first_keyframe_are_no_reason_to_step_down() {
        let mut l = Ladder::judging_skips();
        let mut t = Instant::now();
        // 300 kbit/s at 320x240: the first keyframe costs the next dozen frames.
        let source = (320, 240);
        for i in 0..60 {
            t += Duration::from_millis(33);
            assert_eq!(l.update(t, 300_000, 30.0, source), source, "frame {i}");
            l.encoded(t, i == 0 || i > 12);
        }
    }

    #[test]
    fn the_skips_after_a_change_and_a_few_skips_are_no_reason_to_step_down() {
        let mut l = Ladder::judging_skips();
        let mut t = Instant::now();
        assert_eq!(frames(&mut l, &mut t, 1, 150_000, |_| true), (320, 180));
        // Back at 720p, the keyframe's skips (the first 10 frames), then one in three.
        frames(&mut l, &mut t, 30, 2_500_000, |_| true);
        let size = frames(&mut l, &mut t, 90, 2_500_000, |i| i >= 10 && i % 3 != 0);
        assert_eq!(size, HD);
    }

    #[test]
    fn the_small_stream_is_never_above_half_the_sources_size() {
        let mut l = Ladder::small_stream();
        let mut t = Instant::now();
        assert_eq!(frames(&mut l, &mut t, 1, 5_000_000, |_| true), (640, 360));
        assert_eq!(frames(&mut l, &mut t, 1, 150_000, |_| true), (320, 180));
        let size = frames(&mut l, &mut t, 60, 5_000_000, |_| true);
        assert_eq!(size, (640, 360), "climbs back only to half");
    }

    #[test]
    fn on_a_narrow_link_a_rung_whose_keyframe_takes_too_long_is_left_until_the_rate_carries_it() {
        let mut l = Ladder::default();
        let t0 = Instant::now();
        // The call starts at 2.5 Mbit/s: a 720p keyframe of 40 kB is no reason to leave.
        assert_eq!(l.update(t0, 2_500_000, 30.0, HD), HD);
        l.keyframe(40_000);
        assert_eq!(l.update(t0, 2_500_000, 30.0, HD), HD);
        // A 1 Mbit/s link: 540p by the bits per pixel, but its 18 kB keyframe takes 176 ms
        // at 820 kbit/s; 360p's 7 kB takes 68. The next keyframe asked for is 360p's.
        assert_eq!(l.update(t0, 820_000, 30.0, HD), (960, 540));
        l.keyframe(18_000);
        assert_eq!(l.update(t0, 820_000, 30.0, HD), (960, 540));
        l.keyframe_wanted();
        assert_eq!(l.update(t0, 820_000, 30.0, HD), (640, 360));
        l.keyframe(7_000);
        // 850 kbit/s would carry 540p by the bits per pixel, but not its keyframe (170 ms).
        let mut t = t0;
        for _ in 0..10 {
            t += UP_AFTER;
            assert_eq!(l.update(t, 850_000, 30.0, HD), (640, 360), "no climb back");
        }
        // At 1 Mbit/s 540p's keyframe takes 144 ms: after the hold, up.
        l.update(t + UP_AFTER, 1_000_000, 30.0, HD);
        assert_eq!(l.update(t + UP_AFTER * 2, 1_000_000, 30.0, HD), (960, 540));
    }

    #[test]
    fn a_rate_between_the_thresholds_does_not_flap() {
        let mut l = Ladder::default();
        let t0 = Instant::now();
        assert_eq!(l.update(t0, 2_500_000, 30.0, HD), HD);
        assert_eq!(l.update(t0, 820_000, 30.0, HD), (960, 540));
        // 1 Mbit/s: enough to stay at 720p (0.036) but not to climb back (0.045).
        for i in 1..20 {
            let t = t0 + Duration::from_millis(200 * i);
            assert_eq!(l.update(t, 1_000_000, 30.0, HD), (960, 540));
        }
    }
}
