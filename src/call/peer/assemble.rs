//! H.264 access-unit assembly from in-order RTP payloads. Pure: no I/O, no clock (arrival
//! times are passed in).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

use crate::media::starts_access_unit;

/// AU reassembly state for one video stream, fed in sequence order by [`Reorder`]: a packet
/// older than the newest one seen is dropped, and any sequence gap left marks the AU
/// incomplete, which the reader answers with a PLI. A gap before a packet that starts an
/// access unit, right after one that ended, lost whole units only: the next one is intact
/// and says it came after a gap (the decoder then checks its references).
#[derive(Default)]
pub(super) struct AuAssembler {
    depacketizer: H264Packet,
    buf: BytesMut,
    timestamp: Option<u32>,
    next_seq: Option<u16>,
    broken: bool,
    after_gap: bool,
    /// When the AU being collected got its first packet.
    first_arrival: Option<Instant>,
    /// A packet of the AU being collected came as a repair.
    repaired: bool,
}

/// One reassembled AU.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Assembled {
    /// Annex-B.
    pub data: Bytes,
    pub timestamp: u32,
    /// Every packet of it arrived.
    pub complete: bool,
    /// Whole units before it were lost.
    pub after_gap: bool,
    /// When its first packet arrived: unlike its last, not later for its own size.
    pub first_arrival: Instant,
    /// A packet of it came as a repair (retransmission or FEC): it waited for the loss.
    pub repaired: bool,
}

impl AuAssembler {
    /// Feeds one packet; returns the AUs it closed (by marker bit or by a timestamp change).
    pub(super) fn push(
        &mut self,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &Bytes,
        (arrival, repaired): (Instant, bool),
    ) -> Vec<Assembled> {
        let mut out = Vec::new();
        let mut gap = false;
        if let Some(expected) = self.next_seq {
            let delta = seq.wrapping_sub(expected);
            if delta >= 0x8000 {
                return out; // late or duplicate
            }
            gap = delta != 0;
        }
        self.next_seq = Some(seq.wrapping_add(1));
        // A new timestamp before a marker: the previous AU lost its tail.
        let mut tail_lost = false;
        if self.timestamp.is_some_and(|t| t != ts) && !self.buf.is_empty() {
            out.extend(self.finish(false, arrival));
            gap = true;
            tail_lost = true;
        }
        if gap {
            if !tail_lost && self.buf.is_empty() && starts_access_unit(payload) {
                self.after_gap = true;
            } else {
                // The lost packets may have belonged to this AU as well.
                self.broken = true;
            }
            // A half-collected FU-A must not be glued onto unrelated fragments.
            self.depacketizer = H264Packet::default();
        }
        self.timestamp = Some(ts);
        if self.buf.is_empty() {
            self.first_arrival.get_or_insert(arrival);
        }
        self.repaired |= repaired;
        match self.depacketizer.depacketize(payload) {
            Ok(bytes) => self.buf.extend_from_slice(&bytes),
            Err(_) => self.broken = true,
        }
        if marker {
            out.extend(self.finish(true, arrival));
        }
        out
    }

    fn finish(&mut self, tail_seen: bool, arrival: Instant) -> Option<Assembled> {
        let complete = tail_seen && !self.broken;
        let first_arrival = self.first_arrival.take().unwrap_or(arrival);
        let after_gap = std::mem::take(&mut self.after_gap);
        let repaired = std::mem::take(&mut self.repaired);
        let data = std::mem::take(&mut self.buf).freeze();
        self.broken = false;
        self.depacketizer = H264Packet::default();
        (!data.is_empty()).then(|| Assembled {
            data,
            timestamp: self.timestamp.unwrap_or(0),
            complete,
            after_gap,
            first_arrival,
            repaired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_flags_gaps_and_accepts_clean_aus() {
        let mut a = AuAssembler::default();
        let t0 = Instant::now();
        let nal = Bytes::from_static(&[0x65, 1, 2, 3]);
        let f = a.push(10, 1000, true, &nal, (t0, false));
        assert_eq!(f.len(), 1);
        assert!(f[0].complete, "clean AU is complete");
        assert_eq!(&f[0].data[..], &[0, 0, 0, 1, 0x65, 1, 2, 3]);
        // seq 11 lost
        let f = a.push(12, 4000, true, &nal, (t0, false));
        assert!(!f[0].complete, "AU after a gap is incomplete");
        // a late retransmission of 11 is ignored
        let f = a.push(11, 2000, true, &nal, (t0, false));
        assert!(f.is_empty());
        // marker lost: the next timestamp closes the old AU as incomplete
        let f = a.push(13, 5000, false, &nal, (t0, false));
        assert!(f.is_empty());
        let f = a.push(15, 6000, true, &nal, (t0, false));
        assert_eq!(f.len(), 2);
        assert!(!f[0].complete && f[0].timestamp == 5000);
    }

    #[test]
    fn whole_units_lost_before_one_that_starts_cleanly_leave_it_intact() {
        let mut a = AuAssembler::default();
        let t0 = Instant::now();
        // P slices with first_mb_in_slice 0: each packet starts a picture.
        let nal = Bytes::from_static(&[0x41, 0x9a, 7]);
        assert!(a.push(10, 1000, true, &nal, (t0, false))[0].complete);
        // 11 (a whole unit) lost.
        let f = a.push(12, 3000, true, &nal, (t0, false));
        assert!(f[0].complete && f[0].after_gap, "{f:?}");
        let f = a.push(13, 4000, true, &nal, (t0, false));
        assert!(f[0].complete && !f[0].after_gap, "{f:?}");
        // The first fragment of a unit lost: what is left of it starts nothing.
        let middle = Bytes::from_static(&[0x5c, 0x01, 7]);
        let f = a.push(15, 5000, true, &middle, (t0, false));
        assert!(f.iter().all(|a| !a.complete), "{f:?}");
    }

    #[test]
    fn a_repaired_packet_marks_its_own_unit_not_the_one_it_closes() {
        let mut a = AuAssembler::default();
        let t0 = Instant::now();
        let nal = Bytes::from_static(&[0x41, 0x9a, 7]);
        assert!(a.push(10, 1000, false, &nal, (t0, false)).is_empty());
        // 11, a repair, starts the next unit (the first lost its tail's marker).
        let f = a.push(11, 2000, true, &nal, (t0, true));
        assert_eq!(
            f.iter().map(|u| u.repaired).collect::<Vec<_>>(),
            [false, true]
        );
        let f = a.push(12, 3000, true, &nal, (t0, false));
        assert!(!f[0].repaired, "{f:?}");
    }

    /// The receive path's pure half on a seeded simulated link: packets through
    /// [`Link`](crate::netem::Link), then [`Reorder`](crate::call::reorder::Reorder) and
    /// the assembler, with a simulated clock.
    mod over_a_link {
        use std::collections::HashSet;
        use std::time::{Duration, Instant};

        use super::*;
        use crate::call::reorder::Reorder;
        use crate::netem::{Fate, Link, LinkConfig, Loss};

        const FRAMES: u32 = 300;
        const WAIT: Duration = Duration::from_millis(60);

        /// Frame `f` as 1-4 single-NAL packets: (seq, timestamp, marker, payload).
        fn packets(f: u32, first_seq: u16) -> Vec<(u16, u32, bool, Bytes)> {
            let n = 1 + (f % 4) as u16;
            (0..n)
                .map(|k| {
                    let mut nal = vec![0x41];
                    nal.extend_from_slice(&f.to_be_bytes());
                    nal.extend(std::iter::repeat_n(k as u8, 40));
                    (
                        first_seq.wrapping_add(k),
                        f * 3000,
                        k + 1 == n,
                        Bytes::from(nal),
                    )
                })
                .collect()
        }

        fn annexb(pkts: &[(u16, u32, bool, Bytes)]) -> Vec<u8> {
            pkts.iter()
                .flat_map(|(.., p)| [&[0u8, 0, 0, 1][..], &p[..]].concat())
                .collect()
        }

        struct Outcome {
            /// What came out, in order.
            aus: Vec<Assembled>,
            sent: Vec<Vec<u8>>,
            /// Frames with at least one packet lost on the link.
            hit: HashSet<u32>,
        }

        /// 30 fps for ten seconds through `config`; sequence numbers wrap on the way.
        fn send_over(config: LinkConfig, seed: u64) -> Outcome {
            let t0 = Instant::now();
            let mut link = Link::new(config, seed);
            let mut seq: u16 = 65_000;
            let (mut sent, mut hit) = (Vec::new(), HashSet::new());
            for f in 0..FRAMES {
                let pkts = packets(f, seq);
                seq = seq.wrapping_add(pkts.len() as u16);
                sent.push(annexb(&pkts));
                let at = t0 + Duration::from_millis(u64::from(f) * 33);
                for p in pkts {
                    if link.send(at, p.3.len() + 12, p) == Fate::Lost {
                        hit.insert(f);
                    }
                }
            }
            let mut reorder = Reorder::new(WAIT);
            let mut au = AuAssembler::default();
            let mut aus = Vec::new();
            let mut take = |released: Vec<(u16, (u32, bool, Bytes))>| {
                for (seq, (ts, marker, payload)) in released {
                    aus.extend(au.push(seq, ts, marker, &payload, (t0, false)));
                }
            };
            loop {
                let next = match (link.next_due(), reorder.deadline()) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => match a.or(b) {
                        Some(t) => t,
                        None => break,
                    },
                };
                if reorder.deadline().is_some_and(|d| d <= next) {
                    take(reorder.expire(next));
                }
                while let Some((seq, ts, marker, payload)) = link.poll(next) {
                    take(reorder.push(seq, (ts, marker, payload), next));
                }
            }
            Outcome { aus, sent, hit }
        }

        fn jittery(loss: Loss) -> LinkConfig {
            LinkConfig {
                loss,
                delay: Duration::from_millis(30),
                jitter: Duration::from_millis(15),
                reorder: true,
                ..LinkConfig::default()
            }
        }

        #[test]
        fn reordering_alone_costs_no_access_unit() {
            let out = send_over(jittery(Loss::None), 11);
            assert_eq!(out.aus.len(), FRAMES as usize);
            for (f, a) in out.aus.iter().enumerate() {
                assert_eq!(a.timestamp, f as u32 * 3000, "in order");
                assert!(a.complete, "frame {f} complete");
                assert_eq!(&a.data[..], &out.sent[f][..], "frame {f} byte-identical");
            }
        }

        #[test]
        fn under_loss_complete_means_intact_and_every_damaged_unit_says_so() {
            for seed in 1..=5 {
                let out = send_over(jittery(Loss::Random { probability: 0.05 }), seed);
                assert!(!out.hit.is_empty(), "seed {seed}: the link lost something");
                let mut last = None;
                for Assembled {
                    data,
                    timestamp: ts,
                    complete,
                    ..
                } in &out.aus
                {
                    let f = ts / 3000;
                    assert!(
                        last.is_none_or(|l| l < f),
                        "seed {seed}: frame {f} out of order"
                    );
                    last = Some(f);
                    if *complete {
                        assert_eq!(
                            &data[..],
                            &out.sent[f as usize][..],
                            "seed {seed}: frame {f}"
                        );
                    }
                    if out.hit.contains(&f) {
                        assert!(!complete, "seed {seed}: damaged frame {f} flagged complete");
                    }
                }
                let intact = (0..FRAMES).filter(|f| !out.hit.contains(f)).count();
                let complete = out.aus.iter().filter(|a| a.complete).count();
                // A lost tail also costs the next frame; nothing else may be lost.
                assert!(
                    complete + out.hit.len() >= intact,
                    "seed {seed}: {complete} complete of {intact} intact"
                );
            }
        }
    }
}
