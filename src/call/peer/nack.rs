//! Asking for lost video packets (RFC 4585 generic NACK). webrtc-rs 0.21's generator never
//! sees a retransmission as a repair (it arrives on the RTX SSRC) and repeats every request
//! each interval up to its limit: about five retransmissions per lost packet. Here a
//! packet is asked for once when its gap shows, again only after a round trip without
//! it, and not at all once the receive stage has given up on it; gaps longer than a burst
//! are left to a keyframe, which is what the picture needs by then. On a path that
//! reorders, a gap is first asked for only after the time reordered packets have lately
//! taken to fill one (as libwebrtc's reordering histogram): otherwise every reordered
//! packet costs a retransmission the encoders then give way to.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;

use super::events::Shared;
use super::setup::NACK_INTERVAL;
use crate::call::reorder;
use crate::sync::LockExt;

/// A gap longer than this lost several frames: asking for them all would flood the
/// sender (after an outage, seconds of video) for frames that need a keyframe anyway.
pub(super) const MAX_GAP: i64 = reorder::HOPELESS_GAP as i64;
/// The most times one packet is asked for.
pub(super) const MAX_TRIES: u8 = 4;
/// Assumed round trip until reports give one (and always, for a peer that only receives:
/// its round trip comes from reports on what it sends). Short, so the receive stage's
/// default wait still holds three attempts.
const DEFAULT_RTT: Duration = Duration::from_millis(20);
/// Reordering is remembered this long (the longest lateness within it is waited for),
const REORDER_MEMORY: Duration = Duration::from_secs(5);
/// and never waited for longer than this: a loss must still be repaired in time.
const MAX_REORDER_WAIT: Duration = Duration::from_millis(80);

/// Repaired packets the receive stage has not yet read, per media SSRC: a picture that
/// waited for a repair came late for the loss, not the path, and frame timing must not
/// learn from it (libwebrtc's `delayed_by_retransmission`).
#[derive(Debug, Default)]
pub(super) struct Repaired(std::sync::Mutex<HashMap<u32, VecDeque<u16>>>);

/// Repairs remembered per stream: the receive stage reads each within a reorder wait.
const REPAIRED_KEPT: usize = 256;

impl Repaired {
    fn note(&self, ssrc: u32, seq: u16) {
        let mut map = self.0.locked();
        let seqs = map.entry(ssrc).or_default();
        if seqs.len() == REPAIRED_KEPT {
            seqs.pop_front();
        }
        seqs.push_back(seq);
    }

    /// Whether this packet came as a repair (forgotten once asked).
    pub(super) fn take(&self, ssrc: u32, seq: u16) -> bool {
        let mut map = self.0.locked();
        let Some(seqs) = map.get_mut(&ssrc) else {
            return false;
        };
        match seqs.iter().position(|&s| s == seq) {
            Some(i) => seqs.remove(i).is_some(),
            None => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Instant,
    asked: Option<Instant>,
    tries: u8,
}

/// One stream's missing packets. Pure: time is passed in.
#[derive(Debug, Default)]
pub(super) struct NackTracker {
    /// Highest extended sequence number seen.
    highest: Option<i64>,
    missing: BTreeMap<i64, Missing>,
    /// Requests made, one per packet per time asked.
    pub(super) requested: u64,
    /// When a gap was filled by the packet itself, not a repair, and how late it was.
    reordered: VecDeque<(Instant, Duration)>,
}

impl NackTracker {
    fn extend(&self, seq: u16) -> i64 {
        match self.highest {
            None => i64::from(seq),
            Some(h) => h + i64::from(seq.wrapping_sub(h as u16) as i16),
        }
    }

    /// A packet arrived, first time or `repaired` (a retransmission or rebuilt by FEC).
    pub(super) fn on_packet(&mut self, seq: u16, now: Instant, repaired: bool) {
        let ext = self.extend(seq);
        match self.highest {
            Some(h) if ext <= h => {
                if let Some(m) = self.missing.remove(&ext)
                    && !repaired
                {
                    self.reordered
                        .push_back((now, now.saturating_duration_since(m.since)));
                }
            }
            Some(h) => {
                if ext - h - 1 > MAX_GAP {
                    self.missing.clear();
                } else {
                    for s in h + 1..ext {
                        self.missing.insert(
                            s,
                            Missing {
                                since: now,
                                asked: None,
                                tries: 0,
                            },
                        );
                    }
                }
                self.highest = Some(ext);
            }
            None => self.highest = Some(ext),
        }
    }

    /// The sequence numbers to ask for now: new gaps at once, older ones again after a
    /// round trip; packets past the receive stage's wait are forgotten.
    pub(super) fn due(&mut self, now: Instant, rtt: Option<Duration>) -> Vec<u16> {
        let give_up = reorder::wait_for(rtt, NACK_INTERVAL);
        let again = rtt.unwrap_or(DEFAULT_RTT) + NACK_INTERVAL;
        self.missing
            .retain(|_, m| m.tries < MAX_TRIES && now.saturating_duration_since(m.since) < give_up);
        let wait = self.reorder_wait(now);
        let mut out = Vec::new();
        for (seq, m) in &mut self.missing {
            let due = match m.asked {
                None => now.saturating_duration_since(m.since) >= wait,
                Some(a) => now.saturating_duration_since(a) >= again,
            };
            if due {
                m.asked = Some(now);
                m.tries += 1;
                out.push(*seq as u16);
            }
        }
        self.requested += out.len() as u64;
        out
    }

    pub(super) fn missing(&self) -> usize {
        self.missing.len()
    }

    /// How long a new gap waits for its packet before it is asked for.
    pub(super) fn reorder_wait(&mut self, now: Instant) -> Duration {
        while self
            .reordered
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > REORDER_MEMORY)
        {
            self.reordered.pop_front();
        }
        self.reordered
            .iter()
            .map(|(_, late)| *late)
            .max()
            .unwrap_or_default()
            .min(MAX_REORDER_WAIT)
    }
}

/// The interceptor around [`NackTracker`]s: one per video stream that takes NACKs; RTX
/// packets count as their original sequence number (RFC 4588's OSN).
pub(super) struct NackGenerator {
    shared: Arc<Shared>,
    sender_ssrc: u32,
    streams: HashMap<u32, NackTracker>,
    /// RTX SSRC -> the stream it repairs.
    repairs: HashMap<u32, u32>,
    /// FEC repair SSRCs: never tracked.
    fec_flows: HashSet<u32>,
    next_tick: Option<Instant>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl NackGenerator {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            sender_ssrc: rand::random(),
            streams: HashMap::new(),
            repairs: HashMap::new(),
            fec_flows: HashSet::new(),
            next_tick: None,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn ask(&mut self, now: Instant) {
        let rtt = self.shared.rtt();
        for (&ssrc, tracker) in &mut self.streams {
            let seqs = tracker.due(now, rtt);
            if seqs.is_empty() {
                continue;
            }
            tracing::trace!(ssrc, ?seqs, "NACK");
            let nack = TransportLayerNack {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: ssrc,
                nacks: nack_pairs_from_sequence_numbers(&seqs),
            };
            self.write_queue.push_back(TaggedPacket {
                now,
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(nack)])),
            });
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for NackGenerator {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(p) = &msg.message.packet {
            let ssrc = p.header.ssrc;
            let repair = self.repairs.get(&ssrc).copied();
            let original = match repair {
                // An RTX payload starts with the original sequence number; padding-only
                // RTX (a bandwidth probe) repairs nothing.
                Some(media) if p.payload.len() >= 2 => {
                    Some((media, u16::from_be_bytes([p.payload[0], p.payload[1]])))
                }
                Some(_) => None,
                None => Some((ssrc, p.header.sequence_number)),
            };
            if let Some((media, seq)) = original
                && let Some(tracker) = self.streams.get_mut(&media)
            {
                let before = tracker.missing();
                let repaired =
                    repair.is_some() || msg.message.get(&Attribute::RecoveredByFec).is_some();
                tracker.on_packet(seq, msg.now, repaired);
                if repaired {
                    self.shared.repaired.note(media, seq);
                }
                if tracker.missing() > before {
                    self.ask(msg.now);
                }
                self.next_tick.get_or_insert(msg.now + NACK_INTERVAL);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        if self.next_tick.is_some_and(|t| now >= t) {
            self.next_tick = Some(now + NACK_INTERVAL);
            self.ask(now);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.next_tick
    }
}

impl Interceptor for NackGenerator {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let takes_nack = info
            .rtcp_feedback
            .iter()
            .any(|f| f.typ == "nack" && f.parameter.is_empty());
        // FEC's repair flow is bound after its media stream, with the media's feedback:
        // a lost repair packet is not worth asking for.
        if let Some(fec) = info.ssrc_fec {
            self.fec_flows.insert(fec);
        }
        // A repair flow is bound on its own too, without an RTX SSRC of its own.
        if takes_nack
            && !self.repairs.contains_key(&info.ssrc)
            && !self.fec_flows.contains(&info.ssrc)
        {
            self.streams.entry(info.ssrc).or_default();
            if let Some(rtx) = info.ssrc_rtx {
                self.repairs.insert(rtx, info.ssrc);
                self.streams.remove(&rtx);
            }
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
        self.repairs
            .retain(|rtx, media| *rtx != info.ssrc && *media != info.ssrc);
        if let Some(fec) = info.ssrc_fec {
            self.fec_flows.remove(&fec);
        }
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const RTT: Option<Duration> = Some(Duration::from_millis(40));

    fn after(seqs: impl IntoIterator<Item = u16>, t0: Instant) -> NackTracker {
        let mut t = NackTracker::default();
        for s in seqs {
            t.on_packet(s, t0, false);
        }
        t
    }

    #[test]
    fn a_gap_is_asked_for_once_and_again_only_after_a_round_trip() {
        let t0 = Instant::now();
        let mut t = after([1, 2, 5], t0);
        assert_eq!(t.due(t0, RTT), vec![3, 4]);
        assert!(t.due(t0 + 20 * MS, RTT).is_empty(), "within the round trip");
        assert_eq!(
            t.due(t0 + 60 * MS, RTT),
            vec![3, 4],
            "a round trip and a tick later"
        );
    }

    #[test]
    fn without_a_round_trip_a_lost_repair_is_asked_for_again_within_the_wait() {
        let t0 = Instant::now();
        let mut t = after([1, 3], t0);
        let mut asks = Vec::new();
        let mut now = t0;
        while now < t0 + reorder::DEFAULT_WAIT {
            if !t.due(now, None).is_empty() {
                asks.push(now - t0);
            }
            now += NACK_INTERVAL;
        }
        assert!(asks.len() >= 3, "asked at {asks:?}");
    }

    #[test]
    fn a_repair_on_rtx_ends_the_requests() {
        let t0 = Instant::now();
        let mut t = after([1, 2, 5], t0);
        t.due(t0, RTT);
        t.on_packet(3, t0 + 45 * MS, true);
        assert_eq!(t.due(t0 + 60 * MS, RTT), vec![4]);
        assert_eq!(t.requested, 3);
    }

    #[test]
    fn requests_stop_when_the_receive_stage_gives_up() {
        let t0 = Instant::now();
        let mut t = after([1, 3], t0);
        let give_up = reorder::wait_for(RTT, NACK_INTERVAL);
        let mut asked = 0;
        let mut now = t0;
        while now < t0 + 2 * give_up {
            asked += t.due(now, RTT).len();
            now += 10 * MS;
        }
        assert!((1..=usize::from(MAX_TRIES)).contains(&asked), "{asked}");
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn an_outage_long_gap_is_not_asked_for() {
        let t0 = Instant::now();
        let mut t = after([10, 11, 12 + MAX_GAP as u16 + 5], t0);
        assert!(t.due(t0, RTT).is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut t = after([65_534, 65_535, 1], t0);
        assert_eq!(t.due(t0, RTT), vec![0]);
        t.on_packet(65_533, t0, false);
        assert_eq!(t.missing(), 1, "an old packet is not a new gap");
    }

    #[test]
    fn on_a_path_that_reorders_a_gap_waits_as_long_as_reordered_packets_lately_took() {
        let t0 = Instant::now();
        let mut t = after([1, 2, 4], t0);
        assert_eq!(t.due(t0, RTT), vec![3], "no reordering seen: at once");
        // 3 was only late, 30 ms.
        t.on_packet(3, t0 + 30 * MS, false);
        t.on_packet(6, t0 + 40 * MS, false);
        assert!(t.due(t0 + 60 * MS, RTT).is_empty(), "5 may still come");
        assert_eq!(t.due(t0 + 70 * MS, RTT), vec![5], "30 ms on: asked");
        // A repair is no reordering; and reordering is forgotten.
        t.on_packet(5, t0 + 80 * MS, true);
        assert_eq!(t.reorder_wait(t0 + 80 * MS), 30 * MS);
        assert_eq!(
            t.reorder_wait(t0 + 30 * MS + REORDER_MEMORY + MS),
            Duration::ZERO
        );
        // However late a packet once came, a gap waits at most this long.
        let mut t = after([1, 3], t0);
        t.on_packet(2, t0 + 400 * MS, false);
        assert_eq!(t.reorder_wait(t0 + 400 * MS), MAX_REORDER_WAIT);
    }
}
