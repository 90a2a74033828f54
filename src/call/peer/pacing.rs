//! Pacing: webrtc-rs's pacer, released at a multiple of the send estimate with a burst
//! budget of a few milliseconds of that rate. Its own setting paces at exactly the
//! estimate with a tenth of a second of burst: too slow for a keyframe on a clean link, and
//! on a narrow one (1 Mbit/s, a 50 ms buffer) a keyframe still leaves in one piece and the
//! router drops its tail. Here a frame that fits the burst leaves at once (no added delay
//! on a clean link) and a bigger one is spread at 1.5 times the estimate for its first
//! [`SURGE`], then at the estimate: a keyframe of a quarter second at the link's rate
//! would otherwise fill a narrow link's buffer at half the estimate and lose its tail
//! there (then a NACK storm, or another keyframe). Audio and retransmissions do not queue
//! behind video: they leave at once and are charged to the budget (a late repair is no
//! repair, late audio is a gap).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    Attribute, Interceptor, PACER_MIN_BURST_BITS, Pacer, PacerBuilder, PacerInterceptor, Packet,
    StreamInfo, TaggedPacket,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;

use super::fec::Repair;
use super::probe::Probing;
use super::setup::OPUS_PT;

/// The pace relative to the estimate: room for the encoder's overshoot, short of
/// flooding the bottleneck's buffer.
pub(super) const FACTOR: f64 = 1.5;
/// What may leave at once, in time at the pacing rate.
pub(super) const BURST: Duration = Duration::from_millis(20);
/// How long a backlog may leave faster than the estimate: a narrow link's buffer takes
/// the excess of 50 ms at 1.5 times its rate (25 ms of queue) without dropping.
pub(super) const SURGE: Duration = Duration::from_millis(50);
/// The longest a packet should wait in the pacer: past this the pace rises to drain the
/// queue in this time (the estimate just fell under what was already encoded, as after an
/// outage). Longer than a keyframe takes at the estimate's pace, which is no such case.
pub(super) const MAX_QUEUE: Duration = Duration::from_millis(250);
/// Bits a queued packet is counted as (the pacer only says how many it holds).
const PACKET_BITS: f64 = 1200.0 * 8.0;

/// The pace for a queue of `queued` packets that has been waiting for `backlog`, given
/// the estimate.
pub(super) fn pace(estimate: f64, queued: usize, backlog: Duration) -> f64 {
    let base = if backlog < SURGE {
        estimate * FACTOR
    } else {
        estimate
    };
    base.max(queued as f64 * PACKET_BITS / MAX_QUEUE.as_secs_f64())
}

/// The bucket for an estimate of `estimate_bps`, carrying over `budget_bits`.
pub(super) fn bucket(estimate_bps: f64, budget_bits: f64, now: Instant) -> Pacer {
    let rate = estimate_bps * FACTOR;
    let burst = (rate * BURST.as_secs_f64()).max(PACER_MIN_BURST_BITS);
    let mut p = Pacer::new(rate).with_burst_bits(burst);
    p.refill(now);
    // A new bucket starts full: give back what the old one had not earned.
    p.consume((p.burst_bits() - budget_bits.clamp(0.0, p.burst_bits())).max(0.0));
    p
}

/// Bits seen over the last [`RATE_WINDOW`], as a rate. Pure: time is passed in.
#[derive(Debug, Default)]
pub(super) struct WindowRate {
    samples: VecDeque<(Instant, f64)>,
    sum: f64,
}

/// Retransmissions are measured over this long: short enough that the encoders give way
/// while a burst of loss lasts, not after.
pub(super) const RATE_WINDOW: Duration = Duration::from_millis(500);

impl WindowRate {
    pub(super) fn add(&mut self, now: Instant, bits: f64) {
        self.samples.push_back((now, bits));
        self.sum += bits;
        self.expire(now);
    }

    pub(super) fn rate(&mut self, now: Instant) -> f64 {
        self.expire(now);
        self.sum / RATE_WINDOW.as_secs_f64()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, bits)) = self.samples.front() {
            if now.saturating_duration_since(t) < RATE_WINDOW {
                break;
            }
            self.samples.pop_front();
            self.sum -= bits;
        }
        if self.samples.is_empty() {
            self.sum = 0.0;
        }
    }
}

pub(super) struct Pacing {
    inner: PacerInterceptor,
    /// Retransmissions leaving, told to the encoders' rate through `repair`.
    retransmitted: WindowRate,
    repair: Arc<Repair>,
    /// The send estimate.
    estimate: f64,
    /// Since when packets have been waiting (none now: `None`).
    backlog_since: Option<Instant>,
    /// Audio and retransmissions, ahead of the paced queue.
    express: VecDeque<TaggedPacket>,
    /// A probe's packets (`probe.rs`) still queued, and the rate they leave at.
    probing: Arc<Probing>,
    probe_queued: usize,
    probe_bps: f64,
}

/// An RTP packet's stream and sequence number.
fn rtp_id(msg: &TaggedPacket) -> Option<(u32, u16)> {
    match &msg.message.packet {
        Packet::Rtp(rtp) => Some((rtp.header.ssrc, rtp.header.sequence_number)),
        _ => None,
    }
}

/// The bits of an RTP packet that must not wait behind video, if it is one.
fn express_bits(msg: &TaggedPacket) -> Option<f64> {
    let Packet::Rtp(rtp) = &msg.message.packet else {
        return None;
    };
    let urgent =
        rtp.header.payload_type == OPUS_PT || msg.message.get(&Attribute::Retransmission).is_some();
    urgent.then(|| (rtp.marshal_size() * 8) as f64)
}

impl Pacing {
    pub(super) fn new(start_bps: f64, repair: Arc<Repair>, probing: Arc<Probing>) -> Self {
        let mut inner = PacerBuilder::new().build();
        let start = Instant::now();
        *inner.pacer_mut() = bucket(start_bps, f64::INFINITY, start);
        Self {
            inner,
            estimate: start_bps,
            backlog_since: None,
            retransmitted: WindowRate::default(),
            repair,
            express: VecDeque::new(),
            probing,
            probe_queued: 0,
            probe_bps: 0.0,
        }
    }

    /// Sets the pace for the queue as it is at `now`.
    fn drain(&mut self, now: Instant) {
        let queued = self.inner.queued();
        let since = match queued {
            0 => None,
            _ => Some(*self.backlog_since.get_or_insert(now)),
        };
        self.backlog_since = since;
        let backlog = since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let probe = if self.probe_queued > 0 {
            self.probe_bps
        } else {
            0.0
        };
        let rate = pace(self.estimate, queued, backlog).max(probe);
        let pacer = self.inner.pacer_mut();
        if (pacer.target_bitrate() - rate).abs() > 1.0 {
            pacer.set_target_bitrate(rate);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Pacing {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let estimate = match msg.message.get(&Attribute::TargetBitrateChanged {
            bits_per_second: 0.0,
        }) {
            Some(Attribute::TargetBitrateChanged { bits_per_second }) => Some(*bits_per_second),
            _ => None,
        };
        let now = msg.now;
        // The inner pacer sets itself to the bare estimate here; ours follows.
        self.inner.handle_read(msg)?;
        if let Some(bps) = estimate {
            let pacer = self.inner.pacer_mut();
            pacer.refill(now);
            let budget = pacer.budget_bits();
            *pacer = bucket(bps, budget, now);
            self.estimate = bps;
            self.drain(now);
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.inner.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(bits) = express_bits(&msg) {
            if msg.message.get(&Attribute::Retransmission).is_some() {
                self.retransmitted.add(msg.now, bits);
                self.repair
                    .set_retransmit_bps(self.retransmitted.rate(msg.now));
            }
            let pacer = self.inner.pacer_mut();
            pacer.refill(msg.now);
            // Charged, so the video behind it waits its share.
            pacer.consume(bits);
            self.express.push_back(msg);
            return Ok(());
        }
        // Video leaves every frame: the rate falls back as retransmissions stop.
        self.repair
            .set_retransmit_bps(self.retransmitted.rate(msg.now));
        let now = msg.now;
        if self.inner.queued() == 0 {
            // A new backlog, if this packet waits.
            self.backlog_since = None;
            self.probe_queued = 0;
        }
        if let Some(bps) = rtp_id(&msg).and_then(|(ssrc, seq)| self.probing.rate_of(ssrc, seq)) {
            self.probe_queued += 1;
            self.probe_bps = bps;
        }
        self.inner.handle_write(msg)?;
        self.drain(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        if let Some(msg) = self.express.pop_front() {
            return Some(msg);
        }
        let msg = self.inner.poll_write()?;
        if self.probe_queued > 0
            && rtp_id(&msg).is_some_and(|(ssrc, seq)| self.probing.rate_of(ssrc, seq).is_some())
        {
            self.probe_queued -= 1;
        }
        Some(msg)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.inner.handle_timeout(now)?;
        self.repair.set_retransmit_bps(self.retransmitted.rate(now));
        self.drain(now);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
}

impl Interceptor for Pacing {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.inner.bind_local_stream(info);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.inner.unbind_local_stream(info);
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner.bind_remote_stream(info);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner.unbind_remote_stream(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_within_the_burst_leaves_at_once_and_a_keyframe_is_spread() {
        let t = Instant::now();
        // A 5 Mbit/s estimate: 7.5 Mbit/s paced, 150 kbit (18.75 kB) at once.
        let mut p = bucket(5_000_000.0, f64::INFINITY, t);
        let packet = 1200.0 * 8.0;
        let mut sent = 0.0;
        while p.can_release(packet) {
            p.consume(packet);
            sent += packet;
        }
        assert!(sent >= 10_000.0 * 8.0, "a 10 kB frame fits: {sent}");
        // The rest of a 35 kB keyframe waits for the budget: never faster than the pace.
        let need = (35_000.0 * 8.0 - sent).min(p.burst_bits());
        let wait = p.time_until_affordable(need).unwrap();
        assert!(wait > Duration::ZERO);
        let rate = (need - p.budget_bits()) / wait.as_secs_f64();
        assert!((rate - 5_000_000.0 * FACTOR).abs() < 1.0, "{rate}");
    }

    #[test]
    fn a_backlog_leaves_faster_than_the_estimate_only_at_first() {
        let early = pace(1_000_000.0, 20, Duration::from_millis(10));
        assert_eq!(early, 1_000_000.0 * FACTOR);
        // A 1 Mbit/s link's keyframe (20 packets, 190 ms at the estimate) then leaves
        // at the link's rate, not into its buffer.
        let later = pace(1_000_000.0, 20, SURGE);
        assert_eq!(later, 1_000_000.0);
        // Never slower than the queue allows: the pace follows the estimate down.
        let slower = pace(500_000.0, 0, Duration::ZERO);
        assert_eq!(slower, 500_000.0 * FACTOR);
    }

    #[test]
    fn a_queue_longer_than_its_limit_raises_the_pace_to_drain_it_in_time() {
        let short = pace(600_000.0, 5, SURGE);
        assert_eq!(short, 600_000.0, "a short queue: the estimate's pace");
        // 100 packets (960 kbit) must be gone within 250 ms.
        assert_eq!(pace(600_000.0, 100, SURGE), 3_840_000.0);
    }

    #[test]
    fn a_new_estimate_keeps_the_budget_it_had() {
        let t = Instant::now();
        let mut p = bucket(1_000_000.0, f64::INFINITY, t);
        p.consume(p.burst_bits());
        let q = bucket(2_000_000.0, p.budget_bits(), t);
        assert_eq!(q.budget_bits(), 0.0, "an empty bucket stays empty");
        assert_eq!(q.burst_bits(), 2_000_000.0 * FACTOR * BURST.as_secs_f64());
    }

    #[test]
    fn retransmissions_are_a_rate_over_the_last_half_second_that_falls_when_they_stop() {
        let t = Instant::now();
        let mut r = WindowRate::default();
        assert_eq!(r.rate(t), 0.0);
        // 10 retransmissions of 1,200 bytes in 100 ms.
        for i in 0..10 {
            r.add(t + Duration::from_millis(10 * i), 9_600.0);
        }
        let rate = r.rate(t + Duration::from_millis(100));
        assert!(
            (rate - 96_000.0 / RATE_WINDOW.as_secs_f64()).abs() < 1e-6,
            "{rate}"
        );
        assert_eq!(r.rate(t + RATE_WINDOW + Duration::from_millis(100)), 0.0);
    }
}
