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
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::sansio::Protocol;

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

/// `I` (the congestion controller), with each transport-wide feedback's range noted in
/// `coverage` before `I` reads it.
pub(super) struct NotingCoverage<I> {
    pub(super) inner: I,
    pub(super) coverage: SharedCoverage,
}

impl<I: Interceptor> Protocol<TaggedPacket, TaggedPacket, ()> for NotingCoverage<I> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = I::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(fb) = p.as_any().downcast_ref::<TransportLayerCc>() {
                    self.coverage
                        .locked()
                        .add(fb.base_sequence_number, fb.packet_status_count);
                }
            }
        }
        self.inner.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inner.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.inner.handle_write(msg)
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.inner.poll_write()
    }

    fn handle_event(&mut self, evt: ()) -> Result<(), Self::Error> {
        self.inner.handle_event(evt)
    }

    fn poll_event(&mut self) -> Option<()> {
        self.inner.poll_event()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.inner.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close()
    }
}

impl<I: Interceptor> Interceptor for NotingCoverage<I> {
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
    use super::super::estimate::Estimator;
    use super::*;
    use rtc::interceptor::{BandwidthEstimator, PacketReport};
    use std::time::Duration;

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
