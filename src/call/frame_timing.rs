//! When a decoded picture is shown: at the pace it was captured, when the path's
//! jitter would show as judder, and at once otherwise. WebRTC's render timing, smaller
//! (pure, times passed in, µs).
//!
//! Each frame's transit (arrival less its RTP timestamp as time) is measured against
//! the fastest of the last second: how much later than the path allows it came. When
//! the transit changes from one frame to the next by more than a viewer sees as judder
//! (95th percentile), a frame is held until its capture time plus that fastest transit
//! plus a delay that covers the 95th percentile of the lateness. A clean link's changes
//! (encode times) stay under it, and so does a queue that builds or drains smoothly: no
//! delay, glass-to-glass latency untouched. A jittery path gets the delay within a few
//! frames (10 ms a frame at most: a jump would itself show as a gap), and gives it back
//! within a second or two once it is steady again.

use std::collections::VecDeque;

/// Frames the fastest transit and the lateness are taken over (1 s at 30 fps): short,
/// so that a path whose delay moved (a queue that built after a link narrowed) is
/// soon measured from its new level, not held for the move.
const WINDOW: usize = 30;
/// Lateness a viewer does not see as judder: about a display refresh.
const UNSEEN_US: i64 = 15_000;
/// Never held longer than this.
const MAX_DELAY_US: i64 = 150_000;
/// Delay given back per frame once the jitter has gone (150 ms a second at 30 fps).
const RELAX_US: i64 = 5_000;
/// Delay added per frame at most: a jump would itself be a gap between two pictures.
const RISE_US: i64 = 10_000;
/// The call's first frames (3 s at 30 fps) are its ramp: the rate and the resolution
/// climb and pictures come unevenly for reasons that pass. Nothing is held, and what
/// they showed is forgotten after.
const WARM_UP: u32 = 90;
/// Transits needed before anything is held.
const MIN_SEEN: usize = WINDOW;
/// No picture for this long is a freeze (the W3C's 150 ms over the frame interval):
/// the path's queues changed under it, and the frames after it drain what built up.
/// What came before says nothing of the path now, and the first second after is as
/// uneven as a call's start: learnt afresh, as at the start.
const FREEZE_US: u64 = 200_000;

#[derive(Debug, Default)]
pub struct FrameTiming {
    /// The last RTP timestamp and its unwrapped value (90 kHz ticks).
    last_ts: Option<(u32, i64)>,
    /// Transit of the frames in the window: arrival less capture time, µs.
    transits: VecDeque<i64>,
    delay_us: i64,
    frames: u32,
    last_decoded_us: Option<u64>,
}

impl FrameTiming {
    /// When to show a frame stamped `rtp_ts` whose first packet arrived at `arrived_us`
    /// and that was decoded at `decoded_us`: never before it was decoded. Its transit is
    /// learnt from when it says of the path (`learn`): not a keyframe's (the encoder takes
    /// longer, and it comes seldom), nor a picture's that waited for a repaired packet
    /// (late for the loss, a round trip: holding every picture for it would only delay
    /// them all).
    pub fn show_at(&mut self, rtp_ts: u32, arrived_us: u64, decoded_us: u64, learn: bool) -> u64 {
        let captured = self.unwrap(rtp_ts) * 1000 / 90;
        let transit = arrived_us as i64 - captured;
        if self
            .last_decoded_us
            .replace(decoded_us)
            .is_some_and(|last| decoded_us.saturating_sub(last) > FREEZE_US)
        {
            self.transits.clear();
            self.delay_us = 0;
            self.frames = self.frames.min(WARM_UP - WINDOW as u32);
        }
        self.frames = self.frames.saturating_add(1);
        if self.frames <= WARM_UP {
            if self.frames == WARM_UP {
                self.transits.clear();
            }
            return decoded_us;
        }
        if learn || self.transits.is_empty() {
            self.transits.push_back(transit);
            if self.transits.len() > WINDOW {
                self.transits.pop_front();
            }
        }
        let fastest = self.transits.iter().copied().min().unwrap_or(transit);
        let p95 = |mut v: Vec<i64>| {
            v.sort_unstable();
            v[(v.len() - 1) * 95 / 100]
        };
        // Judder is a change of transit from one frame to the next; a queue that builds
        // or drains smoothly changes the pace a little and shows none.
        let steps: Vec<i64> = self
            .transits
            .iter()
            .zip(self.transits.iter().skip(1))
            .map(|(a, b)| (b - a).abs())
            .collect();
        let judders = steps.len() + 1 >= MIN_SEEN && p95(steps) > UNSEEN_US;
        // All of the lateness or nothing: a part would leave the judder half there.
        let wanted = match judders {
            true => p95(self.transits.iter().map(|t| t - fastest).collect()).min(MAX_DELAY_US),
            false => 0,
        };
        self.delay_us = wanted.clamp(self.delay_us - RELAX_US, self.delay_us + RISE_US);
        if self.delay_us == 0 {
            return decoded_us;
        }
        let at = captured + fastest + self.delay_us;
        (at.max(0) as u64).max(decoded_us)
    }

    /// The delay frames are held for now, in ms (the stats panel's "video buffer").
    pub fn delay_ms(&self) -> f64 {
        self.delay_us as f64 / 1000.0
    }

    fn unwrap(&mut self, ts: u32) -> i64 {
        let value = match self.last_ts {
            None => i64::from(ts),
            Some((last, value)) => value + i64::from(ts.wrapping_sub(last) as i32),
        };
        self.last_ts = Some((ts, value));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const FRAME_TICKS: u32 = 3000;
    const FRAME_US: u64 = 33_333;

    /// Shows `n` frames sent at 30 fps that each take `transit_us(i)` to arrive,
    /// delivered in order, decoding taking 2 ms; returns when each was shown.
    fn show(n: usize, mut transit_us: impl FnMut(usize) -> u64) -> (Vec<u64>, FrameTiming) {
        let mut t = FrameTiming::default();
        let mut last_arrival = 0;
        let shown = (0..n)
            .map(|i| {
                let sent = 1_000_000 + i as u64 * FRAME_US;
                let arrived = (sent + transit_us(i)).max(last_arrival);
                last_arrival = arrived;
                let ts = 90_000u32.wrapping_add(FRAME_TICKS.wrapping_mul(i as u32));
                t.show_at(ts, arrived, arrived + 2_000, true)
            })
            .collect();
        (shown, t)
    }

    fn judder_ms(shown: &[u64]) -> f64 {
        let d: Vec<f64> = shown.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt() / 1000.0
    }

    #[test]
    fn on_a_clean_link_every_frame_is_shown_as_soon_as_it_is_decoded() {
        // Frame sizes and encode times vary the transit by up to 10 ms.
        let mut rng = StdRng::seed_from_u64(1);
        let (shown, t) = show(300, |_| 20_000 + rng.random_range(0..10_000));
        let mut rng = StdRng::seed_from_u64(1);
        let mut last = 0;
        for (i, at) in shown.iter().enumerate() {
            let arrived =
                (1_000_000 + i as u64 * FRAME_US + 20_000 + rng.random_range(0..10_000)).max(last);
            last = arrived;
            assert_eq!(*at, arrived + 2_000, "frame {i} held");
        }
        assert_eq!(t.delay_ms(), 0.0);
    }

    #[test]
    fn a_jittery_link_is_smoothed_at_the_cost_of_its_jitter_and_no_more() {
        // 50 ms +- 20 ms, in order (a late frame holds the ones after it).
        let mut rng = StdRng::seed_from_u64(2);
        let (shown, t) = show(600, |_| rng.random_range(30_000..=70_000));
        let mut rng = StdRng::seed_from_u64(2);
        let mut last = 0;
        let arrived: Vec<u64> = (0..600)
            .map(|i| {
                let a =
                    (1_000_000 + i as u64 * FRAME_US + rng.random_range(30_000..=70_000)).max(last);
                last = a;
                a + 2_000
            })
            .collect();
        // Once warmed up and the window has filled: judder down to a few ms.
        let before = judder_ms(&arrived[150..]);
        let after = judder_ms(&shown[150..]);
        assert!(before > 10.0, "the link's judder: {before:.1} ms");
        assert!(
            after < before / 2.0,
            "{after:.1} ms shown, {before:.1} ms arrived"
        );
        // The delay is what the jitter needs (its 95th percentile), no more.
        assert!((30.0..=42.0).contains(&t.delay_ms()), "{} ms", t.delay_ms());
        let held: Vec<u64> = shown[150..]
            .iter()
            .zip(&arrived[150..])
            .map(|(s, a)| s - a)
            .collect();
        assert!(held.iter().all(|h| *h <= 45_000), "{held:?}");
    }

    #[test]
    fn the_delay_comes_within_frames_and_goes_when_the_jitter_stops() {
        let mut rng = StdRng::seed_from_u64(3);
        let (_, t) = show(290, |i| {
            if (130..230).contains(&i) {
                rng.random_range(0..80_000)
            } else {
                20_000
            }
        });
        assert_eq!(t.delay_ms(), 0.0, "gone 2 s after the jitter");
        let mut rng = StdRng::seed_from_u64(3);
        let (_, t) = show(160, |i| {
            if i >= 130 {
                rng.random_range(0..80_000)
            } else {
                20_000
            }
        });
        assert!(
            t.delay_ms() > 20.0,
            "30 jittery frames in: {} ms",
            t.delay_ms()
        );
    }

    #[test]
    fn a_queue_that_builds_smoothly_holds_nothing() {
        let arrived = |i: usize, transit: u64| 1_000_000 + i as u64 * FRAME_US + transit;
        // The link narrows at frame 150: transit climbs to 290 ms over a second (9 ms a
        // frame), then stays there.
        let ramp = |i: usize| match i {
            0..150 => 20_000,
            150..180 => 20_000 + (i as u64 - 150) * 9_000,
            _ => 290_000,
        };
        let (shown, _) = show(300, ramp);
        let held: Vec<usize> = (150..300)
            .filter(|&i| shown[i] > arrived(i, ramp(i)) + 2_000)
            .collect();
        assert!(held.is_empty(), "held: {held:?}");
    }

    #[test]
    fn a_keyframe_late_for_its_size_holds_nothing() {
        let mut t = FrameTiming::default();
        let mut shown = Vec::new();
        for i in 0..300u32 {
            let keyframe = i % 20 == 0;
            // Keyframes are paced out over 60 ms; the rest arrive 20 ms after capture.
            let transit = if keyframe { 80_000 } else { 20_000 };
            let arrived = 1_000_000 + u64::from(i) * FRAME_US + transit;
            let ts = FRAME_TICKS * i;
            shown.push((t.show_at(ts, arrived, arrived, !keyframe), arrived));
        }
        assert_eq!(t.delay_ms(), 0.0);
        assert!(shown.iter().all(|(s, a)| s == a), "held: {shown:?}");
    }

    #[test]
    fn pictures_that_waited_for_a_retransmission_hold_the_others_nothing() {
        // One picture in seven loses a packet and comes a round trip (100 ms) late.
        let run = |learn_repairs: bool| {
            let mut t = FrameTiming::default();
            let mut held = 0;
            for i in 0..300u32 {
                let repaired = i % 7 == 3;
                let transit = if repaired { 120_000 } else { 20_000 };
                let arrived = 1_000_000 + u64::from(i) * FRAME_US + transit;
                let shown = t.show_at(
                    FRAME_TICKS * i,
                    arrived,
                    arrived,
                    learn_repairs || !repaired,
                );
                held = held.max(shown - arrived);
            }
            held
        };
        assert_eq!(run(false), 0, "a repair's lateness is not the path's");
        // Learnt from, the same pictures would hold every other one.
        assert!(run(true) >= 50_000, "held {} µs", run(true));
    }

    #[test]
    fn after_a_freeze_the_queue_draining_holds_nothing() {
        let mut t = FrameTiming::default();
        let mut held = Vec::new();
        let mut last = 0;
        for i in 0..400u32 {
            // A second without pictures at frame 150; the 20 after it drain a 600 ms
            // queue, 30 ms a frame; the path is steady again after.
            let transit = match i {
                150..180 => continue,
                180..200 => 600_000 - u64::from(i - 180) * 30_000,
                _ => 20_000,
            };
            let arrived = (1_000_000 + u64::from(i) * FRAME_US + transit).max(last + 1_000);
            last = arrived;
            let shown = t.show_at(FRAME_TICKS * i, arrived, arrived, true);
            if shown > arrived {
                held.push((i, shown - arrived));
            }
        }
        assert!(held.is_empty(), "held: {held:?}");
    }

    #[test]
    fn timestamps_that_wrap_go_on_counting() {
        // A steady path across the wrap: nothing is ever held.
        let mut t = FrameTiming::default();
        let start = u32::MAX - 150 * FRAME_TICKS;
        for i in 0..300u32 {
            let ts = start.wrapping_add(i * FRAME_TICKS);
            let arrived = 1_000_000 + u64::from(i) * FRAME_US;
            let jitter = u64::from(i % 3) * 5_000;
            assert_eq!(
                t.show_at(ts, arrived + jitter, arrived + jitter, true),
                arrived + jitter
            );
        }
        assert_eq!(t.delay_ms(), 0.0);
    }
}
