//! The camera's degradation ladder: when the bitrate cannot carry the source's resolution
//! (too few bits per pixel, the picture turns to mush and the encoder skips frames), send
//! a smaller picture instead: 720p -> 540p -> 360p -> 180p. Down at once, up after the
//! bitrate has held for 0.7 s (as many rungs as it carries), with a gap between the two thresholds so it
//! does not flap. Pure: time is passed in.

use std::time::{Duration, Instant};

/// Each rung's size as a fraction of the source's.
const RUNGS: [(usize, usize); 4] = [(1, 1), (3, 4), (1, 2), (1, 4)];
/// Below this many bits per pixel per frame, step down.
const DOWN_BPP: f64 = 0.03;
/// A rung up is taken when it would get at least this many.
const UP_BPP: f64 = 0.045;
/// How long the bitrate must hold before stepping up.
const UP_AFTER: Duration = Duration::from_millis(700);

#[derive(Debug, Default)]
pub(crate) struct Ladder {
    rung: usize,
    up_since: Option<Instant>,
}

impl Ladder {
    /// The size to send a `source`-sized picture at, given the encoder's bitrate and
    /// frame rate at `now`.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        bitrate_bps: u32,
        fps: f32,
        source: (usize, usize),
    ) -> (usize, usize) {
        let bpp = |rung: usize| {
            let (w, h) = size(source, rung);
            f64::from(bitrate_bps) / (w as f64 * h as f64 * f64::from(fps.max(1.0)))
        };
        while self.rung + 1 < RUNGS.len() && bpp(self.rung) < DOWN_BPP {
            self.rung += 1;
            self.up_since = None;
        }
        if self.rung > 0 && bpp(self.rung - 1) >= UP_BPP {
            let since = *self.up_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= UP_AFTER {
                // As far up as the rate carries: each rung is a keyframe and a hold.
                while self.rung > 0 && bpp(self.rung - 1) >= UP_BPP {
                    self.rung -= 1;
                }
                self.up_since = None;
            }
        } else {
            self.up_since = None;
        }
        size(source, self.rung)
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
        assert_eq!(l.update(t, 900_000, 30.0, HD), HD, "0.033 bpp: still 720p");
        assert_eq!(l.update(t, 700_000, 30.0, HD), (960, 540));
        assert_eq!(l.update(t, 420_000, 30.0, HD), (640, 360));
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
        // 400 kbit/s: 0.058 bits per pixel at 360p, 0.026 at 540p.
        for i in 1..=6 {
            l.update(t0 + UP_AFTER / 2 * i, 400_000, 30.0, HD);
        }
        assert_eq!(l.update(t0 + UP_AFTER * 4, 400_000, 30.0, HD), (640, 360));
    }

    #[test]
    fn a_rate_between_the_thresholds_does_not_flap() {
        let mut l = Ladder::default();
        let t0 = Instant::now();
        assert_eq!(l.update(t0, 700_000, 30.0, HD), (960, 540));
        // 1 Mbit/s: enough to stay at 720p (0.036) but not to climb back (0.045).
        for i in 1..20 {
            let t = t0 + Duration::from_millis(200 * i);
            assert_eq!(l.update(t, 1_000_000, 30.0, HD), (960, 540));
        }
    }
}
