//! Which packets the transport-wide feedback actually spoke about. webrtc-rs's send
//! history reports every packet older than the newest acknowledged one, acknowledged or
//! not, and calls the unacknowledged ones lost: when a feedback packet itself is lost
//! (10 % of them on a path losing 10 %), the thirty-odd packets it covered read as lost
//! although they arrived. The estimate then saw twice the path's loss, in bursts, and
//! cut. A packet the receiver saw go missing is in a feedback's range (it covers from
//! where its previous one ended); one only a lost feedback covered is in none. So the
//! estimator counts a packet lost only where a feedback said so.
//!
//! Nor does the history hear of a packet that arrived late: a feedback sent while it
//! was still on its way names it missing, the history calls it lost and forgets it, and
//! the next feedback, which names it received (the receiver goes back for late ones),
//! matches nothing. On a jittery path that reorders, 3-10 % of the packets read as lost
//! that way, the loss half learnt it as the path's loss and held the estimate under 1
//! Mbit/s. So the packets feedback names received are remembered too, and a loss is
//! counted only once a later feedback has not named it ([`LateArrivals`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{Packet, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};

use super::wrapped::Around;
use crate::sync::LockExt;

/// Feedbacks remembered: several seconds' worth, longer than a report waits.
const REMEMBERED: usize = 128;
/// Packets named received remembered: over a second's worth at 720p.
const RECEIVED_REMEMBERED: usize = 4096;
/// A packet named missing is counted lost only if no feedback names it received by then:
/// the receiver's next feedback, 50-100 ms on, carries the late ones.
const LATE_WAIT: Duration = Duration::from_millis(250);

/// The transport-wide sequence ranges recent feedback covered, and the packets it named
/// received. Pure.
#[derive(Debug, Default)]
pub(crate) struct FeedbackCoverage {
    ranges: VecDeque<(u16, u16)>,
    received: HashSet<u16>,
    received_order: VecDeque<u16>,
}

impl FeedbackCoverage {
    /// A feedback covering `count` packets from `base` arrived.
    pub(crate) fn add(&mut self, base: u16, count: u16) {
        if self.ranges.len() == REMEMBERED {
            self.ranges.pop_front();
        }
        self.ranges.push_back((base, count));
    }

    /// Whether any remembered feedback spoke about `seq`.
    pub(crate) fn covers(&self, seq: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(base, count)| seq.wrapping_sub(base) < count)
    }

    /// A feedback named `seq` received.
    pub(crate) fn add_received(&mut self, seq: u16) {
        if self.received.insert(seq) {
            self.received_order.push_back(seq);
        }
        if self.received_order.len() > RECEIVED_REMEMBERED
            && let Some(old) = self.received_order.pop_front()
        {
            self.received.remove(&old);
        }
    }

    /// Whether a feedback named `seq` received.
    pub(crate) fn received(&self, seq: u16) -> bool {
        self.received.contains(&seq)
    }

    /// Notes what `fb` covers and names received.
    pub(crate) fn add_feedback(&mut self, fb: &TransportLayerCc) {
        self.add(fb.base_sequence_number, fb.packet_status_count);
        let mut seq = fb.base_sequence_number;
        let mut left = fb.packet_status_count;
        let mut status = |symbol: SymbolTypeTcc, this: &mut Self| {
            if left == 0 {
                return;
            }
            if symbol != SymbolTypeTcc::PacketNotReceived {
                this.add_received(seq);
            }
            seq = seq.wrapping_add(1);
            left -= 1;
        };
        for chunk in &fb.packet_chunks {
            match chunk {
                PacketStatusChunk::RunLengthChunk(c) => {
                    for _ in 0..c.run_length {
                        status(c.packet_status_symbol, self);
                    }
                }
                PacketStatusChunk::StatusVectorChunk(c) => {
                    for symbol in &c.symbol_list {
                        status(*symbol, self);
                    }
                }
            }
        }
    }
}

/// Losses waiting for [`LATE_WAIT`] to see whether a later feedback names them received.
/// Pure: time is passed in.
#[derive(Debug, Default)]
pub(crate) struct LateArrivals {
    pending: VecDeque<(Instant, u16)>,
}

impl LateArrivals {
    /// `missing` were just reported lost: of those reported earlier, how many are lost
    /// for good by `now` (no feedback named them received in time).
    pub(crate) fn lost(
        &mut self,
        now: Instant,
        missing: impl IntoIterator<Item = u16>,
        coverage: &FeedbackCoverage,
    ) -> usize {
        self.pending
            .extend(missing.into_iter().map(|seq| (now + LATE_WAIT, seq)));
        let mut lost = 0;
        self.pending.retain(|&(due, seq)| {
            if coverage.received(seq) {
                return false;
            }
            if now >= due {
                lost += 1;
                return false;
            }
            true
        });
        lost
    }
}

pub(crate) type SharedCoverage = Arc<Mutex<FeedbackCoverage>>;

/// Notes each transport-wide feedback's range before the congestion controller reads it.
pub(super) struct NoteCoverage(pub(super) SharedCoverage);

impl Around for NoteCoverage {
    fn before_read(&mut self, msg: &TaggedPacket) {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(fb) = p.as_any().downcast_ref::<TransportLayerCc>() {
                    self.0.locked().add_feedback(fb);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::estimate::Estimator;
    use super::*;
    use rtc::interceptor::{BandwidthEstimator, PacketReport};
    use std::time::{Duration, Instant};

    #[test]
    fn a_packet_is_covered_by_a_feedback_that_spoke_about_it_wrapping_included() {
        let mut c = FeedbackCoverage::default();
        c.add(100, 30);
        assert!(c.covers(100) && c.covers(129));
        assert!(!c.covers(99) && !c.covers(130), "outside");
        c.add(65_530, 10);
        assert!(c.covers(65_535) && c.covers(3) && !c.covers(4));
    }

    #[test]
    fn old_feedback_is_forgotten() {
        let mut c = FeedbackCoverage::default();
        for i in 0..=REMEMBERED as u16 {
            c.add(i * 10, 10);
        }
        assert!(!c.covers(5), "the first range went");
        assert!(c.covers(15));
    }

    /// Feedback `i`'s 20 packets from `seq` on, sent over the 100 ms before `now`; the
    /// fourth of every ten named missing.
    fn packets(now: Instant, i: u32, seq: &mut u16) -> Vec<PacketReport> {
        (0..20u16)
            .map(|k| {
                let arrived = k % 10 != 3;
                let r = PacketReport {
                    ssrc: 1,
                    id: u64::from(*seq),
                    rtp_sequence_number: *seq,
                    is_twcc: true,
                    twcc_sequence_number: *seq,
                    size: 1200,
                    arrived,
                    departure: now - Duration::from_millis(100)
                        + Duration::from_millis(5) * u32::from(k),
                    arrival: arrived.then(|| {
                        Duration::from_millis(100) * i
                            + Duration::from_millis(5) * u32::from(k)
                            + Duration::from_millis(20)
                    }),
                    ecn: Default::default(),
                };
                *seq = seq.wrapping_add(1);
                r
            })
            .collect()
    }

    /// 10 s of feedback every 100 ms on 20 packets, 2 of them lost; every fifth
    /// feedback is itself lost, so the next report also carries its 20 packets,
    /// unacknowledged. Returns the loss the estimator ends up seeing.
    fn loss_seen(minding: bool) -> f64 {
        let coverage = SharedCoverage::default();
        let mut est = Estimator::new(1_000_000.0, 100_000.0, 2_500_000.0);
        if minding {
            est = est.minding(Arc::clone(&coverage));
        }
        let t0 = Instant::now();
        let mut seq: u16 = 0;
        let mut batch = Vec::new();
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(100) * (i + 1);
            let base = seq;
            batch.extend(packets(now, i, &mut seq));
            if i % 5 == 4 {
                // This feedback is lost: its packets go out with the next report, unacked.
                let from = batch.len() - 20;
                for r in &mut batch[from..] {
                    (r.arrived, r.arrival) = (false, None);
                }
                continue;
            }
            coverage.locked().add(base, 20);
            est.on_reports(now, &std::mem::take(&mut batch));
        }
        est.stats().packet_loss.expect("loss seen")
    }

    #[test]
    fn a_feedback_names_received_what_its_chunks_say_arrived() {
        use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
            RunLengthChunk, StatusVectorChunk,
        };
        let received = SymbolTypeTcc::PacketReceivedSmallDelta;
        let missing = SymbolTypeTcc::PacketNotReceived;
        let fb = TransportLayerCc {
            base_sequence_number: 65_534,
            packet_status_count: 6,
            packet_chunks: vec![
                PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                    packet_status_symbol: received,
                    run_length: 3,
                    ..Default::default()
                }),
                // A vector's padding past the count says nothing.
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    symbol_list: vec![missing, received, missing, received, received],
                    ..Default::default()
                }),
            ],
            ..Default::default()
        };
        let mut c = FeedbackCoverage::default();
        c.add_feedback(&fb);
        let named: Vec<u16> = [65_534, 65_535, 0, 1, 2, 3, 4, 5]
            .into_iter()
            .filter(|s| c.received(*s))
            .collect();
        assert_eq!(named, vec![65_534, 65_535, 0, 2]);
        assert!(c.covers(3) && !c.covers(4));
    }

    #[test]
    fn a_loss_a_later_feedback_names_received_is_no_loss_and_one_it_does_not_is() {
        let mut c = FeedbackCoverage::default();
        let mut late = LateArrivals::default();
        let t0 = Instant::now();
        assert_eq!(late.lost(t0, [7, 8], &c), 0, "not judged yet");
        // The next feedback names 7: it arrived late.
        c.add_received(7);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(late.lost(t1, [], &c), 0);
        // Nobody ever names 8.
        assert_eq!(late.lost(t0 + LATE_WAIT, [], &c), 1);
        assert_eq!(late.lost(t0 + LATE_WAIT * 2, [], &c), 0, "counted once");
    }

    /// 10 s of feedback every 100 ms on 20 packets, 2 of them named missing; with
    /// `late`, the next feedback names them received. The loss the estimator sees.
    fn loss_seen_reordered(late: bool) -> f64 {
        let coverage = SharedCoverage::default();
        let mut est =
            Estimator::new(1_000_000.0, 100_000.0, 2_500_000.0).minding(Arc::clone(&coverage));
        let t0 = Instant::now();
        let mut seq: u16 = 0;
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(100) * (i + 1);
            let base = seq;
            let batch = packets(now, i, &mut seq);
            {
                let mut c = coverage.locked();
                c.add(base, 20);
                for r in batch.iter().filter(|r| r.arrived) {
                    c.add_received(r.twcc_sequence_number);
                }
                if late && i > 0 {
                    // The previous batch's missing packets arrived since.
                    for r in base.wrapping_sub(20)..base {
                        c.add_received(r);
                    }
                }
            }
            est.on_reports(now, &batch);
        }
        est.stats().packet_loss.expect("loss seen")
    }

    #[test]
    fn packets_a_later_feedback_names_received_arrived_late_and_are_not_lost() {
        let (late, lost) = (loss_seen_reordered(true), loss_seen_reordered(false));
        assert!(late < 0.01, "reordered, not lost: {late}");
        assert!((0.07..0.13).contains(&lost), "lost for good: {lost}");
    }

    #[test]
    fn packets_only_a_lost_feedback_covered_are_not_counted_lost() {
        let (minding, not) = (loss_seen(true), loss_seen(false));
        assert!(
            (0.07..0.13).contains(&minding),
            "the path's 10 %: {minding}"
        );
        assert!(
            not > 0.15,
            "without minding, lost feedback reads as loss: {not}"
        );
    }
}
