//! The send-side bandwidth estimate: webrtc-rs's GCC for the delay half, and a loss half
//! that tells a path's steady loss (Wi-Fi, a lossy radio) from congestion. GCC's own loss
//! controller cuts whenever loss stays above 10 % and raises only below 2 %: under steady
//! random loss every cut is permanent, and at 10 % the estimate hits the floor. Here the
//! loss a path always has is learnt as a baseline (it rises slowly, falls at once), and
//! only loss above it (the path losing more as we send more) cuts the rate.

use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};

/// Loss this far above the baseline is congestion.
const CONGESTION: f64 = 0.05;
/// Below this much above the baseline (or this little at all) the path has room.
const CLEAR: f64 = 0.02;
/// No path "always" loses more than this: beyond it loss is congestion, learnt or not.
const MAX_BASELINE: f64 = 0.15;
/// How fast the baseline follows a rise in loss (time constant).
const BASELINE_RISE: Duration = Duration::from_secs(3);
/// Least time between two changes of the loss half.
const STEP: Duration = Duration::from_millis(200);

/// The loss half. Pure: time is passed in.
#[derive(Debug, Clone)]
pub(crate) struct LossRate {
    target: f64,
    min: f64,
    max: f64,
    average: Option<f64>,
    baseline: f64,
    last_update: Option<Instant>,
    last_change: Option<Instant>,
}

impl LossRate {
    pub(crate) fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            target: initial.clamp(min, max),
            min,
            max,
            average: None,
            baseline: 0.0,
            last_update: None,
            last_change: None,
        }
    }

    pub(crate) fn target(&self) -> f64 {
        self.target
    }

    pub(crate) fn average(&self) -> Option<f64> {
        self.average
    }

    /// `lost` of `total` packets reported at `now`.
    pub(crate) fn update(&mut self, now: Instant, lost: usize, total: usize) -> f64 {
        if total == 0 {
            return self.target;
        }
        let sample = lost as f64 / total as f64;
        let average = self.average.map_or(sample, |a| 0.8 * a + 0.2 * sample);
        self.average = Some(average);
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |l| now.saturating_duration_since(l));
        self.last_update = Some(now);
        if average < self.baseline {
            self.baseline = average;
        } else {
            let k = (dt.as_secs_f64() / BASELINE_RISE.as_secs_f64()).min(1.0);
            self.baseline = (self.baseline + (average - self.baseline) * k).min(MAX_BASELINE);
        }
        if self
            .last_change
            .is_some_and(|l| now.saturating_duration_since(l) < STEP)
        {
            return self.target;
        }
        let excess = average - self.baseline;
        if excess > CONGESTION {
            self.target = (self.target * (1.0 - 0.5 * excess)).clamp(self.min, self.max);
            self.last_change = Some(now);
        } else if excess < CLEAR {
            self.target = (self.target * 1.05).clamp(self.min, self.max);
            self.last_change = Some(now);
        }
        self.target
    }
}

/// GCC's delay half with [`LossRate`] as the loss half; the lower one is the estimate.
pub(super) struct Estimator {
    gcc: Gcc,
    loss: LossRate,
    min: f64,
    max: f64,
    target: f64,
}

impl Estimator {
    pub(super) fn new(initial: f64, min: f64, max: f64) -> Self {
        let initial = initial.clamp(min, max);
        Self {
            gcc: Gcc::new(initial, min, max),
            loss: LossRate::new(initial, min, max),
            min,
            max,
            target: initial,
        }
    }
}

impl BandwidthEstimator for Estimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        self.gcc.on_reports(now, reports);
        let lost = reports.iter().filter(|r| !r.arrived).count();
        let loss_target = self.loss.update(now, lost, reports.len());
        self.target = self
            .gcc
            .delay_based_bitrate()
            .min(loss_target)
            .clamp(self.min, self.max);
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn stats(&self) -> EstimatorStats {
        let mut s = self.gcc.stats();
        s.loss_based_bitrate = Some(self.loss.target());
        s.packet_loss = self.loss.average();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: f64 = 100_000.0;
    const MAX: f64 = 2_500_000.0;
    const BATCH: Duration = Duration::from_millis(100);

    /// Feeds `seconds` of feedback batches of 50 packets losing `loss` of them (spread
    /// evenly, so the test is exact) and returns the target after each second.
    fn run(rate: &mut LossRate, t0: &mut Instant, seconds: u32, loss: f64) -> Vec<f64> {
        let mut out = Vec::new();
        let mut owed = 0.0;
        for i in 0..seconds * 10 {
            owed += 50.0 * loss;
            let lost = owed.floor();
            owed -= lost;
            *t0 += BATCH;
            rate.update(*t0, lost as usize, 50);
            if (i + 1) % 10 == 0 {
                out.push(rate.target());
            }
        }
        out
    }

    #[test]
    fn steady_random_loss_of_ten_percent_does_not_collapse_the_rate() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        let targets = run(&mut rate, &mut t, 30, 0.10);
        let end = *targets.last().unwrap();
        assert!(end >= 0.9 * MAX, "after 30 s of 10 % loss: {targets:?}");
        assert!(
            targets.iter().all(|t| *t > 0.4 * MAX),
            "never near the floor: {targets:?}"
        );
    }

    #[test]
    fn noisy_random_loss_does_not_wear_the_rate_down() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        let mut lowest = MAX;
        // 60 s of feedback every 50 ms on 25 packets, each lost with 10 % chance.
        for i in 0..1200 {
            t += Duration::from_millis(50);
            let lost = (0..25).filter(|_| rng.random::<f64>() < 0.10).count();
            rate.update(t, lost, 25);
            // After the first 5 s, while the baseline is being learnt.
            if i >= 100 {
                lowest = lowest.min(rate.target());
            }
        }
        assert!(
            rate.target() >= 0.9 * MAX,
            "after a minute: {}",
            rate.target()
        );
        assert!(lowest > 0.4 * MAX, "never near the floor: {lowest}");
    }

    #[test]
    fn loss_that_rises_as_the_path_fills_cuts_the_rate() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        run(&mut rate, &mut t, 10, 0.01);
        let before = rate.target();
        let during = run(&mut rate, &mut t, 2, 0.25);
        assert!(
            *during.last().unwrap() < 0.6 * before,
            "25 % loss on a clean path must cut: {before} -> {during:?}"
        );
    }

    #[test]
    fn loss_above_what_any_path_always_has_keeps_cutting() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        let targets = run(&mut rate, &mut t, 20, 0.40);
        assert_eq!(*targets.last().unwrap(), MIN, "{targets:?}");
    }

    #[test]
    fn a_clean_path_raises_the_loss_half_to_the_ceiling() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(500_000.0, MIN, MAX);
        let targets = run(&mut rate, &mut t, 10, 0.0);
        assert_eq!(*targets.last().unwrap(), MAX, "{targets:?}");
    }
}
