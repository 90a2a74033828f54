//! The loss Opus is told to expect: the worst any peer's reports show on our audio,
//! raised at once and lowered only after it stayed lower a while, so the next burst
//! finds the in-band copy of each frame still strong. Pure: time is passed in.

use std::time::{Duration, Instant};

/// A lower loss must last this long before the encoder is told.
const HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct ExpectedLoss {
    percent: i32,
    lower_since: Option<Instant>,
    told: Option<i32>,
}

impl ExpectedLoss {
    /// The worst loss fraction (0..1) the peers' latest reports show, if any; returns
    /// the percentage to set when the encoder should change.
    pub(crate) fn update(&mut self, now: Instant, worst: Option<f64>) -> Option<i32> {
        let measured = worst.map_or(0, |f| (f.clamp(0.0, 1.0) * 100.0).round() as i32);
        // Higher at once; lower once it stayed lower for HOLD.
        if measured >= self.percent
            || now.duration_since(*self.lower_since.get_or_insert(now)) >= HOLD
        {
            self.percent = measured;
            self.lower_since = None;
        }
        (self.told != Some(self.percent)).then(|| {
            self.told = Some(self.percent);
            self.percent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn loss_is_expected_at_once_and_forgotten_only_after_it_stayed_lower() {
        let t0 = Instant::now();
        let mut e = ExpectedLoss::default();
        assert_eq!(e.update(t0, None), Some(0), "the start is told once");
        assert_eq!(e.update(at(t0, 250), Some(0.0)), None);
        assert_eq!(e.update(at(t0, 500), Some(0.22)), Some(22), "at once");
        assert_eq!(e.update(at(t0, 750), Some(0.05)), None, "held");
        assert_eq!(e.update(at(t0, 5_000), Some(0.04)), None, "still held");
        assert_eq!(
            e.update(at(t0, 5_750), Some(0.04)),
            Some(4),
            "after 5 s lower"
        );
        // A burst in between starts the hold again.
        assert_eq!(e.update(at(t0, 6_000), Some(0.30)), Some(30));
        assert_eq!(e.update(at(t0, 9_000), Some(0.0)), None);
        assert_eq!(e.update(at(t0, 10_000), Some(0.31)), Some(31));
        assert_eq!(e.update(at(t0, 14_000), None), None);
        assert_eq!(e.update(at(t0, 19_000), None), Some(0), "the peers went");
    }
}
