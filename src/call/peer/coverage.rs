//! Which packets the transport-wide feedback actually spoke about. webrtc-rs's send
//! history reports every packet older than the newest acknowledged one, acknowledged or
//! not, and calls the unacknowledged ones lost: when a feedback packet itself is lost
//! (10 % of them on a path losing 10 %), the thirty-odd packets it covered read as lost
//! although they arrived. The estimate then saw twice the path's loss, in bursts, and
//! cut. A packet the receiver saw go missing is in a feedback's range (it covers from
//! where its previous one ended); one only a lost feedback covered is in none. So the
//! estimator counts a packet lost only where a feedback said so.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rtc::interceptor::{Packet, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

use super::wrapped::Around;
use crate::sync::LockExt;

/// Feedbacks remembered: several seconds' worth, longer than a report waits.
const REMEMBERED: usize = 128;

/// The transport-wide sequence ranges recent feedback covered. Pure.
#[derive(Debug, Default)]
pub(crate) struct FeedbackCoverage {
    ranges: VecDeque<(u16, u16)>,
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
}

pub(crate) type SharedCoverage = Arc<Mutex<FeedbackCoverage>>;

/// Notes each transport-wide feedback's range before the congestion controller reads it.
pub(super) struct NoteCoverage(pub(super) SharedCoverage);

impl Around for NoteCoverage {
    fn before_read(&mut self, msg: &TaggedPacket) {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(fb) = p.as_any().downcast_ref::<TransportLayerCc>() {
                    self.0
                        .locked()
                        .add(fb.base_sequence_number, fb.packet_status_count);
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
            for k in 0..20u16 {
                batch.push(PacketReport {
                    ssrc: 1,
                    id: u64::from(seq),
                    rtp_sequence_number: seq,
                    is_twcc: true,
                    twcc_sequence_number: seq,
                    size: 1200,
                    arrived: k % 10 != 3,
                    departure: now - Duration::from_millis(100)
                        + Duration::from_millis(5) * u32::from(k),
                    arrival: (k % 10 != 3).then(|| {
                        Duration::from_millis(100) * i
                            + Duration::from_millis(5) * u32::from(k)
                            + Duration::from_millis(20)
                    }),
                    ecn: Default::default(),
                });
                seq = seq.wrapping_add(1);
            }
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
