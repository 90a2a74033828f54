//! When a keyframe asked for is made (pure, time passed in). A request that comes while
//! the last keyframe may still be on its way (twice its bits at the current rate, at
//! least 250 ms) waits until then, and all requests meanwhile get one keyframe. Behind
//! a narrow uplink an SFU switching layers asks every 250 ms; a keyframe for each fills
//! the link so that none arrives whole.

use std::time::{Duration, Instant};

const MIN_HOLD: Duration = Duration::from_millis(250);
const MAX_HOLD: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct KeyframeGate {
    /// When the last keyframe left and how long it holds requests back.
    last: Option<(Instant, Duration)>,
    pending: bool,
}

impl KeyframeGate {
    /// Whether to make a keyframe now, `asked` saying a request came since last time.
    pub fn due(&mut self, now: Instant, asked: bool) -> bool {
        self.pending |= asked;
        let held = self
            .last
            .is_some_and(|(at, hold)| now.saturating_duration_since(at) < hold);
        if !self.pending || held {
            return false;
        }
        self.pending = false;
        true
    }

    /// A keyframe of `bytes` (all layers) left at `now`, the encoder sending `bps`.
    pub fn sent(&mut self, now: Instant, bytes: usize, bps: u32) {
        let on_the_way = Duration::from_secs_f64(bytes as f64 * 8.0 / f64::from(bps.max(1)));
        let hold = (on_the_way * 2).clamp(MIN_HOLD, MAX_HOLD);
        self.last = Some((now, hold));
        // This keyframe answers what was asked before it.
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_request_long_after_the_last_keyframe_is_answered_at_once() {
        let t0 = Instant::now();
        let mut g = KeyframeGate::default();
        assert!(g.due(t0, true), "none sent yet");
        g.sent(t0, 20_000, 2_500_000);
        assert!(g.due(ms(t0, 1000), true));
        assert!(!g.due(ms(t0, 1001), false), "one request, one keyframe");
    }

    #[test]
    fn requests_while_a_keyframe_is_on_its_way_get_one_keyframe_after_it() {
        let t0 = Instant::now();
        let mut g = KeyframeGate::default();
        // 12 kB at 330 kbit/s: 290 ms on the way, held 580 ms.
        g.sent(t0, 12_000, 330_000);
        for t in [100, 250, 350, 500] {
            assert!(!g.due(ms(t0, t), true), "at {t} ms");
        }
        assert!(!g.due(ms(t0, 580), false));
        assert!(g.due(ms(t0, 590), false), "the requests kept, one keyframe");
        assert!(!g.due(ms(t0, 600), false));
    }

    #[test]
    fn a_fast_link_holds_back_a_quarter_second_at_most_two() {
        let t0 = Instant::now();
        let mut g = KeyframeGate::default();
        g.sent(t0, 20_000, 5_000_000);
        assert!(!g.due(ms(t0, 200), true));
        assert!(g.due(ms(t0, 250), false));
        g.sent(ms(t0, 250), 200_000, 100_000);
        assert!(!g.due(ms(t0, 2200), true));
        assert!(g.due(ms(t0, 2250), false));
    }

    #[test]
    fn a_keyframe_made_anyway_answers_the_requests_before_it() {
        let t0 = Instant::now();
        let mut g = KeyframeGate::default();
        g.sent(t0, 10_000, 1_000_000);
        assert!(!g.due(ms(t0, 100), true));
        // The periodic keyframe comes first.
        g.sent(ms(t0, 200), 10_000, 1_000_000);
        assert!(!g.due(ms(t0, 1000), false));
    }
}
