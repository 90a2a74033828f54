//! H.264 access-unit assembly from in-order RTP payloads. Pure: no I/O, no clock.

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

/// AU reassembly state for one video stream, fed in sequence order by [`Reorder`]: a packet
/// older than the newest one seen is dropped, and any sequence gap left marks the AU
/// incomplete, which the reader answers with a PLI.
#[derive(Default)]
pub(super) struct AuAssembler {
    depacketizer: H264Packet,
    buf: BytesMut,
    timestamp: Option<u32>,
    next_seq: Option<u16>,
    broken: bool,
}

/// One reassembled AU: (Annex-B data, RTP timestamp, complete).
pub(super) type Assembled = (Bytes, u32, bool);

impl AuAssembler {
    /// Feeds one packet; returns the AUs it closed (by marker bit or by a timestamp change).
    pub(super) fn push(
        &mut self,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &Bytes,
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
        if self.timestamp.is_some_and(|t| t != ts) && !self.buf.is_empty() {
            out.extend(self.finish(false));
            gap = true;
        }
        if gap {
            // The lost packets may have belonged to this AU as well.
            self.broken = true;
            // A half-collected FU-A must not be glued onto unrelated fragments.
            self.depacketizer = H264Packet::default();
        }
        self.timestamp = Some(ts);
        match self.depacketizer.depacketize(payload) {
            Ok(bytes) => self.buf.extend_from_slice(&bytes),
            Err(_) => self.broken = true,
        }
        if marker {
            out.extend(self.finish(true));
        }
        out
    }

    fn finish(&mut self, tail_seen: bool) -> Option<Assembled> {
        let complete = tail_seen && !self.broken;
        let data = std::mem::take(&mut self.buf).freeze();
        self.broken = false;
        self.depacketizer = H264Packet::default();
        (!data.is_empty()).then(|| (data, self.timestamp.unwrap_or(0), complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_flags_gaps_and_accepts_clean_aus() {
        let mut a = AuAssembler::default();
        let nal = Bytes::from_static(&[0x65, 1, 2, 3]);
        let f = a.push(10, 1000, true, &nal);
        assert_eq!(f.len(), 1);
        assert!(f[0].2, "clean AU is complete");
        assert_eq!(&f[0].0[..], &[0, 0, 0, 1, 0x65, 1, 2, 3]);
        // seq 11 lost
        let f = a.push(12, 4000, true, &nal);
        assert!(!f[0].2, "AU after a gap is incomplete");
        // a late retransmission of 11 is ignored
        let f = a.push(11, 2000, true, &nal);
        assert!(f.is_empty());
        // marker lost: the next timestamp closes the old AU as incomplete
        let f = a.push(13, 5000, false, &nal);
        assert!(f.is_empty());
        let f = a.push(15, 6000, true, &nal);
        assert_eq!(f.len(), 2);
        assert!(!f[0].2 && f[0].1 == 5000);
    }
}
