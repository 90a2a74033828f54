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
    SlopeEstimator, Usage,
};

use super::aimd::{Aimd, Ceiling};
use super::coverage::{LateArrivals, SharedCoverage};
use super::fec::Repair;
use super::probe::{Found, Meter, Moment, PairRate, Planner, Probing};
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
/// The path's own loss is averaged over about this many packets: a report of a thin
/// stream carries a handful (6 at 500 kbit/s every 100 ms), and at 10 % loss their
/// fast average swings from 5 to 17 %.
const SLOW_PACKETS: f64 = 150.0;
/// How fast the baseline follows a rise in loss (time constant).
const BASELINE_RISE: Duration = Duration::from_secs(3);
/// Least time between two changes of the loss half.
const STEP: Duration = Duration::from_millis(200);
/// A cut for loss goes no lower than this share of the rate that arrives.
const PROVEN_SHARE: f64 = 0.85;
/// Two reports in a row proving this much more than a cut left lift the rate to it.
const LIFT: f64 = 1.5;
/// A standing queue without loss trims the rate to this share of what arrives,
const TRIM: f64 = 0.9;
/// at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Growth per second near the rate at which the path last overflowed, as a share of it.
/// (80 kbit/s at least, as the delay half, made a 500 kbit/s link overflow every 3 s;
/// 8 % a 1 Mbit/s link every few seconds, each overflow a likely freeze.)
const ADDITIVE_SHARE: f64 = 0.04;
const MIN_ADDITIVE_BPS: f64 = 20_000.0;
/// Growth per step (200 ms) far from that rate: about 40 % a second.
const GROWTH: f64 = 1.07;
/// The climb stops at this share of the rate at which back-to-back packets agree on
/// crossing the path (a bottleneck's rate): past it, the climb only fills the link's
/// buffer until it overflows (on a 1 Mbit/s link the loss half climbed to 1.2 Mbit/s,
/// and each overflow cost a keyframe).
const UNDER_BOTTLENECK: f64 = 0.9;
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
    /// Loss over the last [`SLOW_PACKETS`] or so sent while the path had no queue and no
    /// burst, and how many packets it has seen (the first ones are a plain mean).
    slow: Option<f64>,
    slow_seen: f64,
    baseline: f64,
    last_update: Option<Instant>,
    last_change: Option<Instant>,
    /// What arrived when the path last overflowed: the climb slows near it.
    ceiling: Ceiling,
    last_trim: Option<Instant>,
    /// When the path last had a queue.
    congested_at: Option<Instant>,
    /// The bottleneck's rate, where packet pairs show one ([`PairRate::bottleneck`]).
    bottleneck: Option<f64>,
    /// What the last report proved the path carries (its delivered rate, shared).
    last_proven: Option<f64>,
}

impl LossRate {
    pub(crate) fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            target: initial.clamp(min, max),
            min,
            max,
            average: None,
            slow: None,
            slow_seen: 0.0,
            baseline: 0.0,
            last_update: None,
            last_change: None,
            ceiling: Ceiling::default(),
            last_trim: None,
            congested_at: None,
            bottleneck: None,
            last_proven: None,
        }
    }

    /// The rate packet pairs cross the path at, where they agree on one: the climb
    /// stops under it.
    pub(crate) fn set_bottleneck(&mut self, bps: Option<f64>) {
        self.bottleneck = bps;
    }

    pub(crate) fn target(&self) -> f64 {
        self.target
    }

    pub(crate) fn average(&self) -> Option<f64> {
        self.average
    }

    /// A probe found room (`probe.rs`).
    pub(crate) fn probed(&mut self, found: Found) {
        self.target = self.target.max(found.estimate).clamp(self.min, self.max);
        self.ceiling.probed(found.delivered, found.full);
    }

    /// Whether the climb is slowed by where the path last overflowed.
    pub(crate) fn held(&self) -> bool {
        self.ceiling.near(self.target)
    }

    /// Loss above what the path always has, over the last hundred or so packets.
    pub(crate) fn excess(&self) -> f64 {
        self.slow.map_or(0.0, |a| a - self.baseline)
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
        } else {
            self.slow_seen += total as f64;
            let k = (total as f64 / self.slow_seen.min(SLOW_PACKETS)).min(1.0);
            self.slow = Some(self.slow.map_or(sample, |s| s + (sample - s) * k));
        }
        // Loss is the path's own only where no queue has been for a while: between a
        // narrow link's overflows the average still holds their loss.
        let quiet = self
            .congested_at
            .is_none_or(|c| now.saturating_duration_since(c) >= QUIET);
        let slow = self.slow.unwrap_or(average);
        let warming = self.slow_seen < SLOW_PACKETS;
        if slow < self.baseline || (quiet && warming) {
            // Until a hundred or so packets have gone, what they lost is all we know.
            self.baseline = slow.min(MAX_BASELINE);
        } else if quiet {
            let k = (dt.as_secs_f64() / BASELINE_RISE.as_secs_f64()).min(1.0);
            self.baseline = (self.baseline + (slow - self.baseline) * k).min(MAX_BASELINE);
        }
        let proven_now = delivered.map(|d| d * PROVEN_SHARE);
        let proven_before = std::mem::replace(&mut self.last_proven, proven_now);
        if self
            .last_change
            .is_some_and(|l| now.saturating_duration_since(l) < STEP)
        {
            return self.target;
        }
        // Without a queue lately, loss is congestion only where the last hundred or so
        // packets say so too, not a few unlucky ones of a report or two.
        let lasting = slow - self.baseline;
        let excess = if !quiet || lasting > CONGESTION / 2.0 {
            average - self.baseline
        } else {
            lasting
        };
        // While the queue is full every loss is the path overflowing.
        let excess = if congested { average } else { excess };
        self.ceiling.observe(now, self.target, delivered);
        if let Some(b) = self.bottleneck {
            self.ceiling.pairs_agree_on(b);
        }
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
            let next = self
                .bottleneck
                .map_or(next, |b| next.min(self.target.max(b * UNDER_BOTTLENECK)));
            self.target = next.clamp(self.min, self.max);
            self.last_change = Some(now);
        }
        // A cut can land far under what the link carries: the report it read delivered
        // little while the feedback itself queued behind the overflow (both ways
        // narrowed). Two reports in a row proving much more take it back up to that.
        if excess >= CLEAR
            && let (Some(a), Some(b)) = (proven_before, proven_now)
            && a.min(b) > self.target * LIFT
        {
            self.target = a.min(b).clamp(self.min, self.max);
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
    late: LateArrivals,
    last_trace: Option<Instant>,
    /// Probing for room (`probe.rs`), where FEC is taken.
    probing: Option<Arc<Probing>>,
    planner: Planner,
    meter: Option<Meter>,
    pairs: PairRate,
    /// When the path last had a queue, an overuse or excess loss.
    trouble_at: Option<Instant>,
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
            late: LateArrivals::default(),
            last_trace: None,
            probing: None,
            planner: Planner::default(),
            meter: None,
            pairs: PairRate::default(),
            trouble_at: None,
        }
    }

    pub(super) fn probing_with(mut self, probing: Arc<Probing>) -> Self {
        self.probing = Some(probing);
        self
    }

    /// Measures the probe out and asks for the next when one is due.
    fn probe(&mut self, now: Instant, reports: &[PacketReport]) {
        let Some(probing) = &self.probing else { return };
        self.pairs.add(now, reports);
        // A meter measures the probe out, or none (one timed out keeps no samples).
        match self.planner.out() {
            Some(id) if self.meter.as_ref().is_none_or(|m| m.id() != id) => {
                self.meter = probing.cluster().filter(|c| c.id == id).map(Meter::new);
            }
            None => self.meter = None,
            Some(_) => {}
        }
        if let Some(meter) = &mut self.meter
            && let Some(delivered) = meter.add(reports)
        {
            let id = meter.id();
            self.meter = None;
            let found = self.planner.result(now, id, delivered, self.target);
            tracing::debug!(
                target: "confab::estimate",
                delivered = delivered.map(|d| d as u64 / 1000),
                raised = found.map(|f| f.estimate as u64 / 1000),
                full = found.is_some_and(|f| f.full),
                "probe {id} (kbit/s)"
            );
            if let Some(found) = found {
                self.delay.probed(found);
                self.loss.probed(found);
                self.target = self.delay.target().min(self.loss.target());
            }
        }
        if !self.fec.as_ref().is_some_and(|f| f.protecting()) {
            return;
        }
        let moment = Moment {
            now,
            target: self.target,
            max: self.max,
            held: self.delay.held() || self.loss.held(),
            trouble_at: self.trouble_at,
            pair_bps: self.pairs.rate(),
            steady_pair_bps: self.pairs.steady(),
        };
        if let Some(request) = self.planner.due(moment) {
            tracing::debug!(
                target: "confab::estimate",
                rate = request.rate_bps as u64 / 1000,
                packets = request.packets,
                "probing {} (kbit/s)",
                request.id
            );
            probing.ask(request);
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
        let missing = reports.iter().filter(|r| !r.arrived);
        let lost = match &self.coverage {
            // Counted once no later feedback named them received (`coverage.rs`).
            Some(c) => self
                .late
                .lost(now, missing.map(|r| r.twcc_sequence_number), &c.locked()),
            None => missing.count(),
        };
        let congested = self
            .queue
            .update(now, reports)
            .is_some_and(|q| q >= CONGESTED_QUEUE);
        self.loss.set_bottleneck(self.pairs.bottleneck());
        let loss_target = self
            .loss
            .update(now, lost, reports.len(), congested, received);
        self.target = delay_target.min(loss_target).clamp(self.min, self.max);
        if congested || usage == Usage::Over || self.loss.excess() > CLEAR {
            self.trouble_at = Some(now);
        }
        self.probe(now, reports);
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
                pairs = self.pairs.steady().map(|p| p as u64 / 1000),
                bottleneck = self.pairs.bottleneck().map(|p| p as u64 / 1000),
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
#[path = "estimate_tests.rs"]
mod tests;
