//! Puts received RTP packets back in sequence order before depacketizing (video) or
//! decoding (audio), holding packets behind a gap until the missing one arrives (a NACK
//! retransmission, or a packet the path reordered) or the wait runs out. In-order packets
//! pass straight through: no added delay without loss.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Packets held at most; past this the oldest gap is given up at once.
const MAX_HELD: usize = 1024;
/// A gap this long (an outage, not loss) is not asked for (`peer/nack.rs`) and not
/// waited for: only a keyframe repairs it, and the sooner it is asked for the better.
pub(crate) const HOPELESS_GAP: u16 = 100;

/// The wait for a path: three NACK attempts (each up to one NACK interval to be sent, plus
/// a round trip for the retransmission: at 10 % loss one repair in ten is lost too) and a
/// margin; without an RTT yet, [`DEFAULT_WAIT`].
/// Past half a second a keyframe is the better repair.
pub(crate) fn wait_for(rtt: Option<Duration>, nack_interval: Duration) -> Duration {
    rtt.map_or(DEFAULT_WAIT, |rtt| {
        (3 * (nack_interval + rtt) + Duration::from_millis(20))
            .clamp(Duration::from_millis(80), Duration::from_millis(500))
    })
}

pub(crate) const DEFAULT_WAIT: Duration = Duration::from_millis(120);

pub(crate) struct Reorder<T> {
    /// Next sequence number to release; `None` before the first packet.
    next: Option<u16>,
    held: HashMap<u16, (T, Instant)>,
    wait: Duration,
    /// Packets that arrived after their slot was released (or given up): useless now.
    late: u64,
    /// Sequence numbers given up on (never arrived within the wait).
    skipped: u64,
}

impl<T> Reorder<T> {
    pub fn new(wait: Duration) -> Self {
        Self {
            next: None,
            held: HashMap::new(),
            wait,
            late: 0,
            skipped: 0,
        }
    }

    /// How long packets behind a gap wait from now on.
    pub fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
    }

    /// Takes one packet; returns those now releasable, in order.
    pub fn push(&mut self, seq: u16, item: T, now: Instant) -> Vec<(u16, T)> {
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 || self.held.contains_key(&seq) {
            self.late += 1;
            return Vec::new();
        }
        if ahead > HOPELESS_GAP && self.held.is_empty() {
            self.skipped += u64::from(ahead);
            self.next = Some(seq.wrapping_add(1));
            return vec![(seq, item)];
        }
        // The usual case, in order with nothing held: straight through, no map.
        if ahead == 0 && self.held.is_empty() {
            self.next = Some(seq.wrapping_add(1));
            return vec![(seq, item)];
        }
        self.held.insert(seq, (item, now));
        let mut out = self.drain();
        if self.held.len() > MAX_HELD {
            self.skip_gap();
            out.extend(self.drain());
        }
        out
    }

    /// Gives up on gaps whose wait has run out; returns what that releases, in order.
    pub fn expire(&mut self, now: Instant) -> Vec<(u16, T)> {
        let mut out = Vec::new();
        while self.deadline().is_some_and(|d| d <= now) {
            self.skip_gap();
            out.extend(self.drain());
        }
        out
    }

    /// When the oldest held packet stops waiting for the gap before it.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.values().map(|(_, t)| *t + self.wait).min()
    }

    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn drain(&mut self) -> Vec<(u16, T)> {
        let mut out = Vec::new();
        let Some(mut next) = self.next else {
            return out;
        };
        while let Some((item, _)) = self.held.remove(&next) {
            out.push((next, item));
            next = next.wrapping_add(1);
        }
        self.next = Some(next);
        out
    }

    /// Moves past the first gap to the nearest held packet.
    fn skip_gap(&mut self) {
        let Some(next) = self.next else { return };
        if let Some(first) = self
            .held
            .keys()
            .copied()
            .min_by_key(|s| s.wrapping_sub(next))
        {
            self.skipped += u64::from(first.wrapping_sub(next));
            self.next = Some(first);
        }
    }
}

/// How long reordered packets come after a later one, over the last [`LATENESS_MEMORY`].
/// Audio has no retransmission to wait for: a gap is worth waiting for only as long as
/// the path reorders, and not at all on one that does not (a loss then costs no delay).
pub(crate) struct Lateness {
    recent: VecDeque<(u16, Instant)>,
    seen: VecDeque<(Instant, Duration)>,
}

/// Reordering older than this no longer sets the wait.
pub(crate) const LATENESS_MEMORY: Duration = Duration::from_secs(10);
/// Audio later than this is concealed rather than waited for.
pub(crate) const MAX_AUDIO_WAIT: Duration = Duration::from_millis(80);
const RECENT: usize = 64;

impl Lateness {
    pub fn new() -> Self {
        Self {
            recent: VecDeque::with_capacity(RECENT),
            seen: VecDeque::new(),
        }
    }

    /// A packet arrived: when packets after it arrived earlier, it was that late.
    pub fn arrived(&mut self, seq: u16, now: Instant) {
        let first_after = self
            .recent
            .iter()
            .filter(|(s, _)| (1..0x8000).contains(&s.wrapping_sub(seq)))
            .map(|(_, t)| *t)
            .min();
        if let Some(t) = first_after {
            self.seen.push_back((now, now - t));
        }
        while self
            .seen
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > LATENESS_MEMORY)
        {
            self.seen.pop_front();
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, now));
    }

    /// The wait for a gap: a little over the latest reordering remembered, none without.
    pub fn wait(&self) -> Duration {
        self.seen
            .iter()
            .map(|(_, d)| *d)
            .max()
            .map_or(Duration::ZERO, |d| {
                (d + Duration::from_millis(5)).min(MAX_AUDIO_WAIT)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(100);

    fn seqs(v: Vec<(u16, &str)>) -> Vec<u16> {
        v.into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn after_an_outage_the_stream_goes_on_at_once() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        assert_eq!(seqs(r.push(1, "p", t)), [1]);
        let after = 2 + HOPELESS_GAP + 1;
        assert_eq!(
            seqs(r.push(after, "p", t)),
            [after],
            "no wait for a gap that long"
        );
        assert_eq!(r.skipped(), u64::from(HOPELESS_GAP + 1));
        assert_eq!(r.deadline(), None);
        let short = after + 5;
        assert!(
            r.push(short, "p", t).is_empty(),
            "a short gap is still waited for"
        );
    }

    #[test]
    fn in_order_packets_pass_straight_through() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        for s in [7u16, 8, 9] {
            assert_eq!(seqs(r.push(s, "p", t)), [s]);
        }
        assert_eq!(r.deadline(), None, "nothing held");
    }

    #[test]
    fn a_retransmission_fills_the_gap_and_releases_what_waited_behind_it() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        assert_eq!(seqs(r.push(1, "a", t)), [1]);
        assert!(r.push(3, "c", t).is_empty(), "3 waits for 2");
        assert!(r.push(4, "d", t).is_empty());
        assert_eq!(r.deadline(), Some(t + WAIT));
        let later = t + Duration::from_millis(30);
        assert_eq!(seqs(r.push(2, "b", later)), [2, 3, 4]);
        assert_eq!((r.skipped(), r.late()), (0, 0));
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up_after_the_wait() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        r.push(10, "a", t);
        r.push(12, "c", t + Duration::from_millis(5));
        r.push(13, "d", t + Duration::from_millis(6));
        assert!(r.expire(t + Duration::from_millis(50)).is_empty());
        assert_eq!(
            seqs(r.expire(t + Duration::from_millis(105))),
            [12, 13],
            "released in order past the hole"
        );
        assert_eq!(r.skipped(), 1);
        // The retransmission that comes too late is dropped, not released out of order.
        assert!(r.push(11, "b", t + Duration::from_millis(120)).is_empty());
        assert_eq!(r.late(), 1);
        assert_eq!(seqs(r.push(14, "e", t + Duration::from_millis(121))), [14]);
    }

    #[test]
    fn the_wait_follows_the_round_trip_within_bounds() {
        let nack = Duration::from_millis(20);
        assert_eq!(wait_for(None, nack), DEFAULT_WAIT);
        assert_eq!(
            wait_for(Some(Duration::from_millis(1)), nack),
            Duration::from_millis(83)
        );
        assert_eq!(
            wait_for(Some(Duration::from_millis(100)), nack),
            Duration::from_millis(380)
        );
        assert_eq!(
            wait_for(Some(Duration::ZERO), nack),
            Duration::from_millis(80)
        );
        assert_eq!(
            wait_for(Some(Duration::from_secs(2)), nack),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_longer_wait_applies_to_gaps_from_then_on() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        r.push(1, "a", t);
        r.push(3, "c", t);
        r.set_wait(Duration::from_millis(300));
        assert!(
            r.expire(t + Duration::from_millis(200)).is_empty(),
            "still waiting"
        );
        assert_eq!(seqs(r.expire(t + Duration::from_millis(300))), [3]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        assert_eq!(seqs(r.push(65_534, "a", t)), [65_534]);
        assert!(r.push(0, "c", t).is_empty());
        assert_eq!(seqs(r.push(65_535, "b", t)), [65_535, 0]);
        assert_eq!(seqs(r.push(1, "d", t)), [1]);
    }

    #[test]
    fn duplicates_are_dropped_and_a_flood_cannot_grow_the_buffer() {
        let mut r = Reorder::new(WAIT);
        let t = Instant::now();
        r.push(0, "a", t);
        assert!(r.push(0, "a", t).is_empty());
        r.push(5, "f", t);
        assert!(r.push(5, "f", t).is_empty());
        assert_eq!(r.late(), 2);
        // Everything from 2 on, far beyond the cap, while 1 never comes.
        let mut released = 0;
        for s in 2..(2 + MAX_HELD as u16 + 10) {
            released += r.push(s, "x", t).len();
        }
        assert!(released > 0, "the cap forces the gap to be given up");
        assert!(r.held.len() <= MAX_HELD);
        assert_eq!(r.skipped(), 1);
    }

    #[test]
    fn audio_waits_for_a_gap_as_long_as_the_path_reorders_and_not_where_it_does_not() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut l = Lateness::new();
        // In order, one lost: nothing to wait for.
        for (seq, at) in [(1u16, 0), (2, 20), (4, 60), (5, 80)] {
            l.arrived(seq, ms(at));
        }
        assert_eq!(l.wait(), Duration::ZERO);
        // 7 comes 30 ms after 8 (and 9 after 10, 10 ms): a wait just over the worst.
        for (seq, at) in [(6u16, 100), (8, 110), (7, 140), (10, 150), (9, 160)] {
            l.arrived(seq, ms(at));
        }
        assert_eq!(l.wait(), Duration::from_millis(35));
        // Reordering long forgotten sets nothing; a very late packet is not waited for.
        l.arrived(11, ms(160) + LATENESS_MEMORY + Duration::from_millis(1));
        assert_eq!(l.wait(), Duration::ZERO);
        l.arrived(13, ms(20_000));
        l.arrived(12, ms(20_500));
        assert_eq!(l.wait(), MAX_AUDIO_WAIT);
    }

    #[test]
    fn a_reordered_audio_packet_is_played_in_its_place_not_after_its_successor() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut l = Lateness::new();
        let mut r = Reorder::new(Duration::ZERO);
        let mut played = Vec::new();
        // The path swaps 3 and 4 twice over; the second time the wait has learnt it.
        for (seq, at) in [
            (1u16, 0),
            (2, 20),
            (4, 40),
            (3, 55),
            (5, 80),
            (7, 100),
            (6, 115),
        ] {
            l.arrived(seq, ms(at));
            r.set_wait(l.wait());
            played.extend(seqs(r.expire(ms(at))));
            played.extend(seqs(r.push(seq, "p", ms(at))));
            played.extend(seqs(r.expire(ms(at))));
        }
        // The first swap was a surprise: 3 came too late and was dropped, not played
        // after 4. The second was waited for.
        assert_eq!(played, [1, 2, 4, 5, 6, 7]);
        assert_eq!((r.late(), r.skipped()), (1, 1));
    }
}
