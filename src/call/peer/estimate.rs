//! The send-side bandwidth estimate: webrtc-rs's GCC stages for the delay half (delay
//! trend, overuse detector, received rate) with our own rate control (`aimd.rs`), and a loss half
//! that tells a path's steady loss (Wi-Fi, a lossy radio) from congestion. GCC's own loss
//! controller cuts whenever loss stays above 10 % and raises only below 2 %: under steady
//! random loss every cut is permanent, and at 10 % the estimate hits the floor. Here the
//! loss a path always has is learnt as a baseline (it rises slowly, falls at once), and
//! only loss above it (the path losing more as we send more) cuts the rate. Loss while the
//! path's queue is full (the packets that do arrive are late) is congestion whatever the
//! baseline says: a narrow link's tail drops must not be learnt as the path's nature.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    BandwidthEstimator, EstimatorStats, OveruseDetector, PacketReport, RateCalculator,
    SlopeEstimator,
};

use super::aimd::{Aimd, Ceiling};
use super::coverage::SharedCoverage;
use super::fec::Repair;
use crate::sync::LockExt;

/// Loss this far above the baseline is congestion.
const CONGESTION: f64 = 0.05;
/// Below this much above the baseline (or this little at all) the path has room.
const CLEAR: f64 = 0.02;
/// No path "always" loses more than this: beyond it loss is congestion, learnt or not.
const MAX_BASELINE: f64 = 0.15;
/// A report losing this share of its packets is a burst, never learnt.
const BURST: f64 = 0.5;
/// The baseline learns only this long after the path last had a queue or a burst.
const QUIET: Duration = Duration::from_secs(2);
/// How fast the baseline follows a rise in loss (time constant).
const BASELINE_RISE: Duration = Duration::from_secs(3);
/// Least time between two changes of the loss half.
const STEP: Duration = Duration::from_millis(200);
/// A cut for loss goes no lower than this share of the rate that arrives.
const PROVEN_SHARE: f64 = 0.85;
/// A standing queue without loss trims the rate to this share of what arrives,
const TRIM: f64 = 0.9;
/// at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Growth per second near the rate at which the path last overflowed, as a share of it.
/// (80 kbit/s at least, as the delay half, made a 500 kbit/s link overflow every 3 s.)
const ADDITIVE_SHARE: f64 = 0.08;
const MIN_ADDITIVE_BPS: f64 = 20_000.0;
/// Growth per step (200 ms) far from that rate: about 40 % a second.
const GROWTH: f64 = 1.07;
/// How often the estimate's inputs are logged (at debug, target `confab::estimate`).
const TRACE_EVERY: Duration = Duration::from_millis(250);
/// Packets queued this much longer than the path's least delay: its buffer is filling.
const CONGESTED_QUEUE: Duration = Duration::from_millis(15);
/// The least one-way delay is taken over the last one or two of these windows, so it
/// follows a route change.
const BASE_WINDOW: Duration = Duration::from_secs(5);

/// How long packets wait in the path's queues: each packet's one-way delay (arrival on the
/// receiver's clock less departure on ours; the clocks' offset cancels) above the least
/// seen lately. Pure: time is passed in.
#[derive(Debug, Default, Clone)]
pub(crate) struct QueueDelay {
    epoch: Option<Instant>,
    window_start: Option<Instant>,
    current_min: Option<f64>,
    previous_min: Option<f64>,
}

impl QueueDelay {
    /// How long the packets in `reports` that arrived queued, if any did: the tenth
    /// percentile, so jitter (some packets late, others not) reads as no queue and only a
    /// standing queue (every packet late) counts.
    pub(crate) fn update(&mut self, now: Instant, reports: &[PacketReport]) -> Option<Duration> {
        let first = reports.first()?;
        let epoch = *self.epoch.get_or_insert(first.departure);
        let mut delays: Vec<f64> = reports
            .iter()
            .filter_map(|r| {
                let sent = r.departure.saturating_duration_since(epoch).as_secs_f64();
                Some(r.arrival?.as_secs_f64() - sent)
            })
            .collect();
        if delays.is_empty() {
            return None;
        }
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= BASE_WINDOW {
            self.previous_min = self.current_min.take();
            self.window_start = Some(now);
        }
        let least = delays.iter().copied().fold(f64::INFINITY, f64::min);
        self.current_min = Some(self.current_min.map_or(least, |m| m.min(least)));
        let base = self
            .previous_min
            .map_or(self.current_min.unwrap_or(least), |p| {
                p.min(self.current_min.unwrap_or(p))
            });
        delays.sort_by(f64::total_cmp);
        let low = delays[delays.len() / 10];
        Some(Duration::from_secs_f64((low - base).max(0.0)))
    }
}

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
    /// What arrived when the path last overflowed: the climb slows near it.
    ceiling: Ceiling,
    last_trim: Option<Instant>,
    /// When the path last had a queue.
    congested_at: Option<Instant>,
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
            ceiling: Ceiling::default(),
            last_trim: None,
            congested_at: None,
        }
    }

    pub(crate) fn target(&self) -> f64 {
        self.target
    }

    pub(crate) fn average(&self) -> Option<f64> {
        self.average
    }

    /// The loss the path always has, as learnt (not a queue's overflow).
    pub(crate) fn baseline(&self) -> f64 {
        self.baseline
    }

    /// `lost` of `total` packets reported at `now`; `congested` when the packets that
    /// arrived had queued (see [`QueueDelay`]); `delivered` is the rate that arrived.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        lost: usize,
        total: usize,
        congested: bool,
        delivered: Option<f64>,
    ) -> f64 {
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
        // A report losing most of its packets is an outage or an overflow, not the
        // path's steady loss: the baseline (and FEC with it) does not learn it.
        if congested || sample >= BURST {
            self.congested_at = Some(now);
        }
        // Loss is the path's own only where no queue has been for a while: between a
        // narrow link's overflows the average still holds their loss.
        let quiet = self
            .congested_at
            .is_none_or(|c| now.saturating_duration_since(c) >= QUIET);
        if average < self.baseline {
            self.baseline = average;
        } else if quiet {
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
        // While the queue is full every loss is the path overflowing.
        let excess = if congested { average } else { excess };
        self.ceiling.observe(now, self.target, delivered);
        if excess > CONGESTION || (congested && excess > CLEAR) {
            // What arrives is proof of capacity: a burst of loss (a link that narrowed
            // at once) cuts to just under it, not to the floor.
            let proven = delivered.map_or(0.0, |d| d * PROVEN_SHARE);
            let mut cut = (self.target * (1.0 - 0.5 * excess)).max(proven.min(self.target));
            if congested && excess > CONGESTION && proven > 0.0 {
                // Overflowing: what arrives is the link's rate, go there at once (the
                // averaged loss lags a link that narrowed by four fifths).
                cut = cut.min(proven);
            }
            self.target = cut.clamp(self.min, self.max);
            if let Some(d) = delivered {
                self.ceiling.hit(d);
            }
            self.last_change = Some(now);
        } else if congested {
            // A standing queue and no loss yet: back off before the buffer overflows,
            // once per TRIM_EVERY (the queue takes a while to drain, and trimming again
            // from what arrives meanwhile would spiral down).
            let due = self
                .last_trim
                .is_none_or(|t| now.saturating_duration_since(t) >= TRIM_EVERY);
            if let (Some(d), true) = (delivered, due) {
                self.target = self.target.min(d * TRIM).clamp(self.min, self.max);
                self.ceiling.hit(d);
                self.last_change = Some(now);
                self.last_trim = Some(now);
            }
        } else if excess < CLEAR {
            let near = self.ceiling.near(self.target);
            let next = if near {
                let per_s = self.ceiling.get().map_or(0.0, |c| c * ADDITIVE_SHARE);
                self.target + per_s.max(MIN_ADDITIVE_BPS) * STEP.as_secs_f64()
            } else {
                self.target * GROWTH
            };
            self.target = next.clamp(self.min, self.max);
            self.last_change = Some(now);
        }
        self.target
    }
}

/// GCC's delay half with [`LossRate`] as the loss half; the lower one is the estimate.
pub(super) struct Estimator {
    slope: SlopeEstimator,
    detector: OveruseDetector,
    received: RateCalculator,
    delay: Aimd,
    loss: LossRate,
    queue: QueueDelay,
    min: f64,
    max: f64,
    target: f64,
    /// Where the path's steady loss goes for FEC to size its protection.
    fec: Option<Arc<Repair>>,
    /// What the feedback spoke about (`coverage.rs`); without it every report counts.
    coverage: Option<SharedCoverage>,
    last_trace: Option<Instant>,
}

impl Estimator {
    pub(super) fn new(initial: f64, min: f64, max: f64) -> Self {
        let initial = initial.clamp(min, max);
        Self {
            slope: SlopeEstimator::new(),
            detector: OveruseDetector::new(),
            received: RateCalculator::default(),
            delay: Aimd::new(initial, min, max),
            loss: LossRate::new(initial, min, max),
            queue: QueueDelay::default(),
            min,
            max,
            target: initial,
            fec: None,
            coverage: None,
            last_trace: None,
        }
    }

    pub(super) fn reporting_loss_to(mut self, fec: Arc<Repair>) -> Self {
        self.fec = Some(fec);
        self
    }

    pub(super) fn minding(mut self, coverage: SharedCoverage) -> Self {
        self.coverage = Some(coverage);
        self
    }
}

impl BandwidthEstimator for Estimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        // Packets sent without a transport-wide number (audio to a remote that took
        // transport-cc for video only, as Janus does) are reported too, never as
        // arrived: no feedback can name them. Nor did any feedback that reached us name
        // the ones only a lost feedback covered. They say nothing about the path.
        let coverage = self.coverage.as_ref().map(|c| c.locked());
        let spoken = |r: &PacketReport| {
            r.is_twcc
                && (r.arrived
                    || coverage
                        .as_ref()
                        .is_none_or(|c| c.covers(r.twcc_sequence_number)))
        };
        let numbered: Vec<PacketReport>;
        let reports = if reports.iter().all(spoken) {
            reports
        } else {
            numbered = reports.iter().filter(|r| spoken(r)).cloned().collect();
            &numbered
        };
        drop(coverage);
        if reports.is_empty() {
            return;
        }
        let mut usage = self.detector.usage();
        for r in reports {
            if r.arrived {
                self.received.add(now, r.size);
            }
            if let Some(trend) = self.slope.accumulate(r) {
                usage = self.detector.update(trend.at, trend.estimate_ms);
            }
        }
        let received = self.received.rate_bits_per_second(now);
        let delay_target = self.delay.update(now, usage, received);
        let lost = reports.iter().filter(|r| !r.arrived).count();
        let congested = self
            .queue
            .update(now, reports)
            .is_some_and(|q| q >= CONGESTED_QUEUE);
        let loss_target = self
            .loss
            .update(now, lost, reports.len(), congested, received);
        self.target = delay_target.min(loss_target).clamp(self.min, self.max);
        if self
            .last_trace
            .is_none_or(|t| now.saturating_duration_since(t) >= TRACE_EVERY)
        {
            self.last_trace = Some(now);
            tracing::debug!(
                target: "confab::estimate",
                delay = delay_target as u64 / 1000,
                loss = loss_target as u64 / 1000,
                received = received.map(|r| r as u64 / 1000),
                ?usage,
                congested,
                lost,
                reports = reports.len(),
                loss_avg = self.loss.average().unwrap_or(0.0),
                baseline = self.loss.baseline(),
                "estimate (kbit/s)"
            );
        }
        if let Some(fec) = &self.fec {
            fec.set_loss(self.loss.baseline());
        }
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn stats(&self) -> EstimatorStats {
        let mut s = EstimatorStats::default();
        s.delay_based_bitrate = Some(self.delay.target());
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
        run_queued(rate, t0, seconds, loss, false)
    }

    fn run_queued(
        rate: &mut LossRate,
        t0: &mut Instant,
        seconds: u32,
        loss: f64,
        congested: bool,
    ) -> Vec<f64> {
        let mut out = Vec::new();
        let mut owed = 0.0;
        for i in 0..seconds * 10 {
            owed += 50.0 * loss;
            let lost = owed.floor();
            owed -= lost;
            *t0 += BATCH;
            rate.update(*t0, lost as usize, 50, congested, None);
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
            rate.update(t, lost, 25, false, None);
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

    #[test]
    fn loss_from_a_full_queue_is_congestion_and_is_not_learnt() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        // The same 10 % that random loss may keep (see above), here with a full queue:
        // a narrow link dropping what overflows it.
        let targets = run_queued(&mut rate, &mut t, 10, 0.10, true);
        assert!(
            *targets.last().unwrap() < 0.3 * MAX,
            "tail drops must cut: {targets:?}"
        );
        // Once the queue drains and the loss stops, the rate climbs again.
        let after = run(&mut rate, &mut t, 15, 0.0);
        assert_eq!(*after.last().unwrap(), MAX, "{after:?}");
    }

    #[test]
    fn an_outage_is_not_learnt_as_the_paths_loss() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        run(&mut rate, &mut t, 5, 0.0);
        // 3 s with nothing arriving and no queue to see (no packet arrived to show one).
        run(&mut rate, &mut t, 3, 1.0);
        run(&mut rate, &mut t, 1, 0.0);
        assert!(rate.baseline() < 0.01, "learnt {}", rate.baseline());
    }

    #[test]
    fn a_narrow_links_overflows_are_not_learnt_between_them() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(500_000.0, MIN, MAX);
        // 30 % lost while the queue overflows, three batches of four; the fourth finds
        // the queue drained, its loss average still high.
        for i in 0..100 {
            t += BATCH;
            let congested = i % 4 != 3;
            rate.update(t, if congested { 15 } else { 0 }, 50, congested, None);
        }
        assert!(rate.baseline() < 0.01, "learnt {}", rate.baseline());
        // The same loss with no queue at all is the path's.
        let mut clean = LossRate::new(500_000.0, MIN, MAX);
        run(&mut clean, &mut t, 10, 0.05);
        assert!(clean.baseline() > 0.03, "{}", clean.baseline());
    }

    #[test]
    fn a_link_that_narrows_at_once_is_cut_to_what_arrives_not_to_the_floor() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        // 2.5 Mbit/s into 500 kbit/s: 80 % lost, 500 kbit/s arrives.
        for _ in 0..50 {
            t += BATCH;
            rate.update(t, 40, 50, true, Some(500_000.0));
        }
        let target = rate.target();
        assert!((400_000.0..=450_000.0).contains(&target), "{target}");
        // At once: the first cut goes to what arrives.
        let mut rate = LossRate::new(MAX, MIN, MAX);
        t += STEP;
        rate.update(t, 40, 50, true, Some(500_000.0));
        assert_eq!(rate.target(), 425_000.0);
    }

    #[test]
    fn a_standing_queue_trims_the_rate_under_what_arrives() {
        let mut t = Instant::now() + BATCH;
        let mut rate = LossRate::new(1_200_000.0, MIN, MAX);
        rate.update(t, 0, 50, true, None);
        assert_eq!(
            rate.target(),
            1_200_000.0,
            "held: nothing says how much arrives"
        );
        t += STEP;
        rate.update(t, 0, 50, true, Some(1_000_000.0));
        assert_eq!(rate.target(), 900_000.0);
    }

    #[test]
    fn a_lasting_queue_trims_once_a_second_not_into_the_floor() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(1_000_000.0, MIN, MAX);
        // The queue reads "full" for 2 s while what arrives follows what we send.
        for _ in 0..20 {
            t += BATCH;
            let sent = rate.target();
            rate.update(t, 0, 50, true, Some(sent));
        }
        let target = rate.target();
        assert!(target >= 0.9 * 0.9 * 1_000_000.0 - 1.0, "{target}");
    }

    /// A sender at the target into a `link_bps` link with a 50 ms buffer, fed back every
    /// 100 ms: the buffer's fill says "congested" past 25 ms and overflow is lost.
    /// Returns the batches that lost packets.
    fn narrow_link(rate: &mut LossRate, t: &mut Instant, seconds: u32, link_bps: f64) -> u32 {
        let (dt, buffer) = (BATCH.as_secs_f64(), link_bps * 0.05);
        let (mut queued, mut losing) = (0.0_f64, 0);
        for _ in 0..seconds * 10 {
            *t += BATCH;
            let sent = rate.target() * dt;
            queued += sent - link_bps * dt;
            let overflow = (queued - buffer).max(0.0);
            queued = queued.clamp(0.0, buffer);
            let lost = (50.0 * overflow / sent).round() as usize;
            losing += u32::from(lost > 0);
            let delivered = (sent - overflow) / dt;
            rate.update(*t, lost, 50, queued > buffer / 2.0, Some(delivered));
        }
        losing
    }

    #[test]
    fn on_a_narrow_link_a_standing_queue_backs_off_before_the_buffer_overflows() {
        let mut t = Instant::now();
        let mut rate = LossRate::new(MAX, MIN, MAX);
        // Settling: from 2.5 Mbit/s into the link, and one climb back to its edge (the
        // first overflow's loss is not learnt as the path's, so it is felt once more).
        narrow_link(&mut rate, &mut t, 10, 1_000_000.0);
        let losing = narrow_link(&mut rate, &mut t, 30, 1_000_000.0);
        assert_eq!(losing, 0, "batches with loss in 30 s once settled");
        assert!(rate.target() > 700_000.0, "{}", rate.target());
    }

    #[test]
    fn packets_no_feedback_can_name_are_not_lost_packets() {
        let mut t = Instant::now();
        let mut est = Estimator::new(1_000_000.0, MIN, MAX);
        for i in 0..50u64 {
            t += BATCH;
            let sent = Duration::from_millis(100 * i);
            let mut batch = reports(t, 10, sent, Duration::from_millis(20), |_| Duration::ZERO);
            // As many audio packets without a transport-wide number, never "arrived".
            batch.extend(batch.clone().into_iter().map(|mut r| {
                (r.is_twcc, r.arrived, r.arrival, r.size) = (false, false, None, 100);
                r
            }));
            est.on_reports(t, &batch);
        }
        assert!(
            est.target_bitrate() >= 1_000_000.0,
            "half the packets read as lost: {}",
            est.target_bitrate()
        );
    }

    /// A report of packets sent every 5 ms from `t0`, each taking `base + extra(i)` to
    /// arrive on a receiver clock that reads `offset` ahead of ours.
    fn reports(
        t0: Instant,
        n: usize,
        offset: Duration,
        base: Duration,
        extra: impl Fn(usize) -> Duration,
    ) -> Vec<PacketReport> {
        (0..n)
            .map(|i| {
                let sent = Duration::from_millis(5 * i as u64);
                PacketReport {
                    ssrc: 1,
                    id: i as u64,
                    rtp_sequence_number: i as u16,
                    is_twcc: true,
                    twcc_sequence_number: i as u16,
                    size: 1200,
                    arrived: true,
                    departure: t0 + sent,
                    arrival: Some(offset + sent + base + extra(i)),
                    ecn: Default::default(),
                }
            })
            .collect()
    }

    #[test]
    fn queueing_delay_is_the_delay_above_the_least_whatever_the_clocks_say() {
        let t0 = Instant::now();
        let offset = Duration::from_secs(1234);
        let base = Duration::from_millis(20);
        let mut q = QueueDelay::default();
        let idle = reports(t0, 20, offset, base, |_| Duration::ZERO);
        assert_eq!(q.update(t0, &idle), Some(Duration::ZERO));
        // Jitter: half the packets 40 ms late, the others not. No queue.
        let t1 = t0 + Duration::from_millis(100);
        let off1 = offset + Duration::from_millis(100);
        let jittery = reports(t1, 20, off1, base, |i| {
            Duration::from_millis(40 * (i % 2) as u64)
        });
        assert_eq!(q.update(t1, &jittery), Some(Duration::ZERO));
        // A standing queue: every packet 40 ms late, some later still.
        let full = reports(t1, 20, off1, base, |i| {
            Duration::from_millis(if i < 15 { 40 } else { 60 })
        });
        let queued = q.update(t1, &full).unwrap();
        assert!(
            queued.abs_diff(Duration::from_millis(40)) < Duration::from_micros(10),
            "{queued:?}"
        );
        // Nothing arrived: no measure.
        let mut lost = full.clone();
        lost.iter_mut()
            .for_each(|r| (r.arrived, r.arrival) = (false, None));
        assert_eq!(q.update(t1, &lost), None);
    }
}
