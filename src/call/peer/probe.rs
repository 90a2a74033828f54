//! Probing for room. Both halves of the estimate climb carefully (near the rate at which
//! the path last overflowed, additively; elsewhere by 40 % a second, and never far past
//! what arrives), so a link that has widened again is found only by creeping up to it:
//! 5-8 s from 500 kbit/s back to 720p. Chromium sends short clusters of padding at twice
//! its estimate and takes what arrives as the new estimate. Here the padding is FlexFEC
//! repair packets over the media just sent (a probe repairs too), a few tens of
//! milliseconds' worth at twice the estimate, which the pacer releases at that rate; the
//! departures and arrivals the transport-wide feedback gives for the packets sent
//! meanwhile say what the path delivered. Near a capacity the estimate has learnt, a probe
//! mostly finds the same narrow link and its excess overflows the link's buffer (into a
//! 1 Mbit/s link's 50 ms buffer, every other failed probe froze the picture): there it
//! waits until packets sent back to back cross far faster than the estimate
//! ([`PairRate`]), which a link that has widened shows at once; and wherever pairs cross
//! steadily at about the estimate, the bottleneck is there and no probe goes. Only
//! towards peers that took FEC (confab): Janus and browsers get none, and climb as before.
//!
//! [`Planner`] and [`Meter`] are pure (time is passed in); [`Probing`] is what the
//! estimator, the FEC sender and the pacer share.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

use crate::sync::LockExt;

/// A probe goes at this multiple of the estimate.
const FACTOR: f64 = 2.0;
/// About this long at the probe's rate,
const PROBE_TIME: Duration = Duration::from_millis(30);
/// counted in repair packets of about this size,
const PACKET_BYTES: f64 = 1100.0;
/// within these bounds (too few say nothing; each is a bit of the link's buffer).
const MIN_PACKETS: u32 = 5;
const MAX_PACKETS: u32 = 20;
/// The path must have had no queue and no excess loss this long before a probe.
const QUIET_FOR: Duration = Duration::from_secs(1);
/// A call's first probe goes this soon after the first feedback (the estimate starts low,
/// under most links, and the path has just shown no queue and no loss).
const FIRST_LOOK: Duration = Duration::from_millis(200);
/// The wait after a probe that found no room, doubling up to [`MAX_WAIT`]; roomy pairs
/// ([`PairRate`]) end it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(10);
/// After a probe that found all it asked for, the next goes this soon (doubling again).
const CHAIN_WAIT: Duration = Duration::from_millis(200);
/// A probe not measured by then failed (its packets never left, or no feedback came).
const RESULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The new estimate is this share of what the probe delivered.
const USE_SHARE: f64 = 0.9;
/// A probe found room when it delivered this much more than the estimate (an estimate
/// settled just under a narrow link's rate finds only that),
const FOUND: f64 = 1.3;
/// and all it asked for when it delivered this share of its own rate.
const ALL_ASKED: f64 = 0.85;

/// A probe to send: `packets` repair packets released at `rate_bps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Request {
    pub(super) id: u64,
    pub(super) rate_bps: f64,
    pub(super) packets: u32,
}

/// A probe sent: its repair packets' stream and sequence numbers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cluster {
    pub(super) id: u64,
    pub(super) rate_bps: f64,
    pub(super) ssrc: u32,
    pub(super) seqs: Vec<u16>,
}

impl Cluster {
    fn holds(&self, ssrc: u32, seq: u16) -> bool {
        self.ssrc == ssrc && self.seqs.contains(&seq)
    }
}

/// What the estimator, the FEC sender and the pacer share: the estimator asks, the FEC
/// sender makes the packets, the pacer releases them at the probe's rate.
#[derive(Debug, Default)]
pub(crate) struct Probing {
    state: Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    asked: Option<Request>,
    sent: Option<Cluster>,
}

impl Probing {
    pub(super) fn ask(&self, request: Request) {
        let mut s = self.state.locked();
        s.asked = Some(request);
        s.sent = None;
    }

    /// The probe asked for, taken by the FEC sender to make.
    pub(super) fn take(&self) -> Option<Request> {
        self.state.locked().asked.take()
    }

    pub(super) fn sent(&self, cluster: Cluster) {
        self.state.locked().sent = Some(cluster);
    }

    /// The probe last sent, for the estimator to measure.
    pub(super) fn cluster(&self) -> Option<Cluster> {
        self.state.locked().sent.clone()
    }

    /// The probe's rate, if this packet is one of its.
    pub(super) fn rate_of(&self, ssrc: u32, seq: u16) -> Option<f64> {
        let s = self.state.locked();
        let c = s.sent.as_ref()?;
        c.holds(ssrc, seq).then_some(c.rate_bps)
    }
}

/// What a probe that found room found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Found {
    /// The estimate to raise to.
    pub(super) estimate: f64,
    /// What arrived: the path's capacity too when `full`.
    pub(super) delivered: f64,
    /// Less arrived than was sent: the probe filled the path.
    pub(super) full: bool,
}

/// When to probe, and what a result makes of the estimate. Pure.
#[derive(Debug)]
pub(super) struct Planner {
    next_id: u64,
    /// The probe out and when it was asked for.
    out: Option<(Request, Instant)>,
    not_before: Option<Instant>,
    wait: Duration,
}

impl Default for Planner {
    fn default() -> Self {
        Self {
            next_id: 1,
            out: None,
            not_before: None,
            wait: FIRST_WAIT,
        }
    }
}

/// What the estimator knows at a moment, for [`Planner::due`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    pub(super) now: Instant,
    pub(super) target: f64,
    pub(super) max: f64,
    /// An estimate half climbs carefully near where the path last overflowed.
    pub(super) held: bool,
    /// When the path last had a queue or excess loss.
    pub(super) trouble_at: Option<Instant>,
    /// What packets sent back to back arrived at lately ([`PairRate`]),
    pub(super) pair_bps: Option<f64>,
    /// and the same where the pairs agree ([`PairRate::steady`]).
    pub(super) steady_pair_bps: Option<f64>,
}

impl Planner {
    /// The probe to send now, if one is due.
    pub(super) fn due(&mut self, m: Moment) -> Option<Request> {
        if let Some((_, at)) = self.out {
            if m.now.saturating_duration_since(at) < RESULT_TIMEOUT {
                return None;
            }
            self.failed(m.now);
        }
        let quiet = m
            .trouble_at
            .is_none_or(|t| m.now.saturating_duration_since(t) >= QUIET_FOR);
        let waited = m.now >= *self.not_before.get_or_insert(m.now + FIRST_LOOK);
        // Pairs crossing far faster than the estimate: a bottleneck there was has gone.
        let roomy = m.pair_bps.is_some_and(|p| p >= m.target * ROOMY_PAIRS);
        let waited = waited || (roomy && self.wait > FIRST_WAIT);
        // Pairs crossing at about the estimate: the bottleneck is there, a probe would
        // only overflow its buffer.
        let narrow = m.steady_pair_bps.is_some_and(|p| p < m.target * FOUND);
        if !quiet || !waited || narrow || (m.held && !roomy) || m.target >= m.max * 0.95 {
            return None;
        }
        let rate_bps = (m.target * FACTOR).min(m.max);
        let packets = (rate_bps * PROBE_TIME.as_secs_f64() / 8.0 / PACKET_BYTES).ceil() as u32;
        let request = Request {
            id: self.next_id,
            rate_bps,
            packets: packets.clamp(MIN_PACKETS, MAX_PACKETS),
        };
        self.next_id += 1;
        self.out = Some((request, m.now));
        Some(request)
    }

    /// The id of the probe out, if any.
    pub(super) fn out(&self) -> Option<u64> {
        self.out.map(|(r, _)| r.id)
    }

    /// Probe `id` delivered `delivered` (`None`: could not be measured) while the estimate
    /// was `target`: what it found, if room.
    pub(super) fn result(
        &mut self,
        now: Instant,
        id: u64,
        delivered: Option<f64>,
        target: f64,
    ) -> Option<Found> {
        let (request, _) = self.out.filter(|(r, _)| r.id == id)?;
        self.out = None;
        match delivered {
            Some(d) if d >= target * FOUND => {
                self.wait = FIRST_WAIT;
                // All it asked for arrived: there may be more, probe on from there soon.
                // Less: it filled the path, and what arrived is the path's capacity.
                let all = d >= request.rate_bps * ALL_ASKED;
                self.not_before = Some(now + if all { CHAIN_WAIT } else { FIRST_WAIT });
                Some(Found {
                    estimate: d * USE_SHARE,
                    delivered: d,
                    full: !all,
                })
            }
            _ => {
                self.failed(now);
                None
            }
        }
    }

    fn failed(&mut self, now: Instant) {
        self.out = None;
        self.not_before = Some(now + self.wait);
        self.wait = (self.wait * 2).min(MAX_WAIT);
    }
}

/// Pairs arriving at this multiple of the estimate end a probe's wait.
const ROOMY_PAIRS: f64 = 3.0;
/// Two packets that left this close together were sent back to back.
const BACK_TO_BACK: Duration = Duration::from_millis(1);
/// Pairs are judged over this long,
const PAIR_WINDOW: Duration = Duration::from_secs(1);
/// and only this many at least.
const MIN_PAIRS: usize = 5;
/// An arrival gap under the feedback's resolution reads as this rate.
const UNRESOLVED_BPS: f64 = 100_000_000.0;
/// What a packet weighs on the wire beyond the size the feedback counts (IP and UDP
/// headers, SRTP's tag, a link header): a link serializes all of it, and at 500 kbit/s,
/// with 180p's small packets, leaving it out read the link a quarter slow.
const WIRE_OVERHEAD_BYTES: usize = 48;

/// The rate packets sent back to back arrive at (packet pairs: the second waits behind
/// the first at the narrowest link, so their arrival gap is its serialization time).
/// A frame's first packets leave in the pacer's burst, so this costs nothing. The median
/// over the last second. Pure.
#[derive(Debug, Default)]
pub(super) struct PairRate {
    pairs: std::collections::VecDeque<(Instant, f64)>,
    last: Option<(Instant, Duration)>,
}

impl PairRate {
    pub(super) fn add(&mut self, now: Instant, reports: &[PacketReport]) {
        for r in reports.iter().filter(|r| r.is_twcc) {
            let arrival = r.arrival.filter(|_| r.arrived);
            if let (Some((d0, a0)), Some(a1)) = (self.last, arrival)
                && r.departure.saturating_duration_since(d0) < BACK_TO_BACK
                && a1 >= a0
            {
                let gap = (a1 - a0).as_secs_f64();
                let bps = if gap > 0.0 {
                    ((r.size + WIRE_OVERHEAD_BYTES) * 8) as f64 / gap
                } else {
                    UNRESOLVED_BPS
                };
                self.pairs.push_back((now, bps.min(UNRESOLVED_BPS)));
            }
            self.last = arrival.map(|a| (r.departure, a));
        }
        while self
            .pairs
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > PAIR_WINDOW)
        {
            self.pairs.pop_front();
        }
    }

    /// The last second's pairs' rates in order, if there were enough.
    fn sorted(&self) -> Option<Vec<f64>> {
        if self.pairs.len() < MIN_PAIRS {
            return None;
        }
        let mut rates: Vec<f64> = self.pairs.iter().map(|(_, r)| *r).collect();
        rates.sort_by(f64::total_cmp);
        Some(rates)
    }

    /// The median of the last second's pairs, if there were enough.
    pub(super) fn rate(&self) -> Option<f64> {
        self.sorted().map(|r| r[r.len() / 2])
    }

    /// The median, only where the pairs agree (the middle half within twice or half of
    /// it): a serializing link spaces every pair alike, jitter spaces them at random.
    pub(super) fn steady(&self) -> Option<f64> {
        self.agreeing_within(2.0)
    }

    /// The median where the middle half is within a quarter of it: what a serializing
    /// bottleneck shows (a 1 Mbit/s link read the same to a few percent, second after
    /// second). The estimate does not climb past it (`estimate.rs`), so jitter that
    /// happens to space a second's pairs alike must not pass for one.
    pub(super) fn bottleneck(&self) -> Option<f64> {
        self.agreeing_within(1.25)
    }

    fn agreeing_within(&self, factor: f64) -> Option<f64> {
        let rates = self.sorted()?;
        let median = rates[rates.len() / 2];
        let (q1, q3) = (rates[rates.len() / 4], rates[rates.len() * 3 / 4]);
        (q1 >= median / factor && q3 <= median * factor).then_some(median)
    }
}

/// One packet as the feedback reported it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    departure: Instant,
    size: usize,
    arrival: Option<Duration>,
    probe: bool,
}

/// Measures one probe: the rate the path delivered the packets that left while the
/// probe's did. Pure.
#[derive(Debug)]
pub(super) struct Meter {
    cluster: Cluster,
    samples: Vec<Sample>,
    probes_seen: usize,
}

impl Meter {
    pub(super) fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            samples: Vec::new(),
            probes_seen: 0,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.cluster.id
    }

    /// Takes in a feedback's reports; once every probe packet is reported, what the path
    /// delivered (`Some(None)`: too little arrived to say).
    pub(super) fn add(&mut self, reports: &[PacketReport]) -> Option<Option<f64>> {
        for r in reports.iter().filter(|r| r.is_twcc) {
            let probe = self.cluster.holds(r.ssrc, r.rtp_sequence_number);
            self.probes_seen += usize::from(probe);
            self.samples.push(Sample {
                departure: r.departure,
                size: r.size,
                arrival: r.arrival.filter(|_| r.arrived),
                probe,
            });
        }
        (self.probes_seen >= self.cluster.seqs.len()).then(|| self.delivered())
    }

    fn delivered(&self) -> Option<f64> {
        let probes = self.samples.iter().filter(|s| s.probe);
        let first = probes.clone().map(|s| s.departure).min()?;
        let last = probes.map(|s| s.departure).max()?;
        let window: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| (first..=last).contains(&s.departure))
            .collect();
        let span = last.saturating_duration_since(first).as_secs_f64();
        if window.len() < 4 || span <= 0.0 {
            return None;
        }
        // Rates over the gaps between packets: the last to leave and the first to
        // arrive open no gap.
        let last_size = window.iter().max_by_key(|s| s.departure)?.size;
        let sent: usize = window.iter().map(|s| s.size).sum();
        let send_bps = (sent - last_size) as f64 * 8.0 / span;
        let arrived: Vec<(Duration, usize)> = window
            .iter()
            .filter_map(|s| s.arrival.map(|a| (a, s.size)))
            .collect();
        let a0 = arrived.iter().min_by_key(|(a, _)| *a)?;
        let a1 = arrived.iter().map(|(a, _)| *a).max()?;
        let got: usize = arrived.iter().map(|(_, s)| s).sum::<usize>() - a0.1;
        let arrival_span = a1.saturating_sub(a0.0).as_secs_f64();
        if arrived.len() < 3 || arrival_span <= 0.0 {
            return None;
        }
        // Lost packets did not get through: count only what arrived.
        let recv_bps = got as f64 * 8.0 / arrival_span;
        // A burst the pacer let out at once proves no more than the rate asked for.
        Some(send_bps.min(recv_bps).min(self.cluster.rate_bps))
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
pub(super) mod tests;
