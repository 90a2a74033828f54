//! The delay half's rate control (AIMD) in place of webrtc-rs's `RateController`, whose
//! ceiling (the rate received at the last back-off) is kept for ever: after a narrow spell
//! it climbs one packet per interval however wide the link has become again (9 s from
//! 500 kbit/s back to 720p). Here the ceiling is a running estimate of the link's capacity,
//! forgotten once the path delivers clearly more than it; well below it the rate grows
//! multiplicatively, near it additively. Pure: time is passed in.

use std::time::{Duration, Instant};

use rtc::interceptor::{RateControlState, Usage};

use super::probe::Found;

/// A back-off goes to this share of what the path delivers.
const DECREASE: f64 = 0.85;
/// Growth per second well below the known capacity, or with none known.
const MULTIPLICATIVE: f64 = 1.4;
/// Growth per second near the known capacity: a packet per round trip or so.
const ADDITIVE_BPS: f64 = 80_000.0;
/// Delivering this much more than the ceiling: the link has widened.
const WIDENED: f64 = 1.2;
/// Above the ceiling this long and nothing backed off: it no longer holds.
const STALE_ABOVE: Duration = Duration::from_secs(1);
/// Packet pairs agreeing on a bottleneck this many times the ceiling: the overflow it
/// came from was something else (the call's first second at the start rate, into a 1
/// Mbit/s link, left 450 kbit/s as the rate to creep towards, 6 s at 180p).
const UNDER_PAIRS: f64 = 1.5;
/// A back-off this far from the ceiling starts a new one.
const NEW_CEILING: f64 = 0.3;
/// Each change is seen before the next (a decrease is never held back).
const INTERVAL: Duration = Duration::from_millis(200);

/// The rate the path delivered when it last backed off or overflowed: a climb slows near
/// it, and it is forgotten once the path delivers clearly more, or the target has stayed
/// above it for a while without the path backing off again (the link widened).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ceiling {
    rate: Option<f64>,
    above_since: Option<Instant>,
}

impl Ceiling {
    /// The path backed off while `delivered` arrived.
    pub(crate) fn hit(&mut self, delivered: f64) {
        self.rate = Some(match self.rate {
            Some(c) if (delivered - c).abs() < NEW_CEILING * c => 0.9 * c + 0.1 * delivered,
            _ => delivered,
        });
        self.above_since = None;
    }

    /// At `now` the target is `target` and `delivered` arrives, with nothing backing off.
    pub(crate) fn observe(&mut self, now: Instant, target: f64, delivered: Option<f64>) {
        let Some(c) = self.rate else { return };
        let above = if target > c {
            now.saturating_duration_since(*self.above_since.get_or_insert(now))
        } else {
            self.above_since = None;
            Duration::ZERO
        };
        if delivered.is_some_and(|d| d > c * WIDENED) || above >= STALE_ABOVE {
            *self = Ceiling::default();
        }
    }

    /// A probe found the path delivers `delivered`, all it could (`full`) or all it was
    /// sent: a full path's rate is the ceiling now; past the ceiling, it no longer holds.
    pub(crate) fn probed(&mut self, delivered: f64, full: bool) {
        if full {
            *self = Ceiling {
                rate: Some(delivered),
                above_since: None,
            };
        } else if self.rate.is_some_and(|c| delivered > c * WIDENED) {
            *self = Ceiling::default();
        }
    }

    /// Packet pairs agree on a bottleneck of `bps` (`probe::PairRate::bottleneck`): a
    /// ceiling far under it no longer holds.
    pub(crate) fn pairs_agree_on(&mut self, bps: f64) {
        if self.rate.is_some_and(|c| bps > c * UNDER_PAIRS) {
            *self = Ceiling::default();
        }
    }

    pub(crate) fn get(&self) -> Option<f64> {
        self.rate
    }

    /// Whether `target` is close enough to the ceiling to climb carefully.
    pub(crate) fn near(&self, target: f64) -> bool {
        self.rate.is_some_and(|c| target > c * DECREASE)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Aimd {
    state: RateControlState,
    target: f64,
    min: f64,
    max: f64,
    capacity: Ceiling,
    last_change: Option<Instant>,
}

impl Aimd {
    pub(crate) fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            state: RateControlState::default(),
            target: initial.clamp(min, max),
            min,
            max,
            capacity: Ceiling::default(),
            last_change: None,
        }
    }

    pub(crate) fn target(&self) -> f64 {
        self.target
    }

    /// Whether the climb is slowed by a capacity learnt earlier.
    pub(crate) fn held(&self) -> bool {
        self.capacity.near(self.target)
    }

    /// A probe found room (`probe.rs`).
    pub(crate) fn probed(&mut self, found: Found) {
        self.target = self.target.max(found.estimate).clamp(self.min, self.max);
        self.capacity.probed(found.delivered, found.full);
    }

    /// Folds in the delay signal and the rate the far end receives (`None`: too little
    /// to say).
    pub(crate) fn update(&mut self, now: Instant, usage: Usage, received: Option<f64>) -> f64 {
        self.state = self.state.next(usage);
        let since = self.last_change.map(|l| now.saturating_duration_since(l));
        let recent = since.is_some_and(|s| s < INTERVAL);
        if recent && self.state != RateControlState::Decrease {
            return self.target;
        }
        match (self.state, received) {
            // Once per interval, unless the path now delivers under half the target: while
            // the queue drains the detector still says "over", and backing off from a
            // received rate that falls because we backed off spirals to the floor.
            (RateControlState::Decrease, Some(r)) if !recent || r < 0.5 * self.target => {
                self.target = (r * DECREASE).clamp(self.min, self.max);
                self.capacity.hit(r);
                self.last_change = Some(now);
            }
            (RateControlState::Increase, _) => {
                self.capacity.observe(now, self.target, received);
                let dt = since.unwrap_or(INTERVAL).min(Duration::from_secs(1));
                let near = self.capacity.near(self.target);
                let mut next = if near {
                    self.target + ADDITIVE_BPS * dt.as_secs_f64()
                } else {
                    self.target * MULTIPLICATIVE.powf(dt.as_secs_f64())
                };
                // A target the sender does not fill proves nothing: grow only within reach
                // of what actually arrives.
                if let Some(r) = received {
                    next = next.min((1.5 * r + 10_000.0).max(self.target));
                }
                self.target = next.clamp(self.min, self.max);
                self.last_change = Some(now);
            }
            _ => {}
        }
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: f64 = 100_000.0;
    const MAX: f64 = 5_000_000.0;
    const TICK: Duration = Duration::from_millis(100);

    /// A sender that sends what the controller says over a link of `link_bps`: the far end
    /// receives the lesser, and the delay signal says "over" while the target exceeds the
    /// link. Returns the target after each second.
    fn run(aimd: &mut Aimd, t: &mut Instant, seconds: u32, link_bps: f64) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..seconds * 10 {
            *t += TICK;
            let sent = aimd.target();
            let usage = if sent > link_bps {
                Usage::Over
            } else {
                Usage::Normal
            };
            aimd.update(*t, usage, Some(sent.min(link_bps)));
            if (i + 1) % 10 == 0 {
                out.push(aimd.target());
            }
        }
        out
    }

    #[test]
    fn a_probe_forgets_the_ceiling_when_it_delivered_clearly_more_or_sets_it_when_it_filled_the_path()
     {
        let mut c = Ceiling::default();
        c.hit(500_000.0);
        // A probe that got all it was sent, a little more than the ceiling: it stays.
        c.probed(520_000.0, false);
        assert_eq!(c.get(), Some(500_000.0));
        c.probed(900_000.0, false);
        assert_eq!(c.get(), None, "the link has widened");
        // A probe that filled the path found its capacity.
        c.probed(1_100_000.0, true);
        assert_eq!(c.get(), Some(1_100_000.0));
    }

    #[test]
    fn overuse_backs_off_below_what_the_path_delivers() {
        let mut t = Instant::now();
        let mut a = Aimd::new(2_000_000.0, MIN, MAX);
        t += TICK;
        a.update(t, Usage::Over, Some(1_000_000.0));
        assert_eq!(a.target(), 850_000.0);
    }

    #[test]
    fn on_a_narrow_link_it_settles_just_under_the_link() {
        let mut t = Instant::now();
        let mut a = Aimd::new(300_000.0, MIN, MAX);
        let targets = run(&mut a, &mut t, 30, 1_000_000.0);
        let last10 = &targets[20..];
        assert!(
            last10.iter().all(|v| (800_000.0..=1_100_000.0).contains(v)),
            "{targets:?}"
        );
    }

    #[test]
    fn after_a_narrow_spell_it_climbs_back_within_seconds() {
        let mut t = Instant::now();
        let mut a = Aimd::new(2_500_000.0, MIN, MAX);
        run(&mut a, &mut t, 10, 500_000.0);
        assert!(a.target() < 550_000.0, "{}", a.target());
        // The link is wide again: 500 kbit/s -> 1.5 Mbit/s (720p's rung) within 8 s.
        let back = run(&mut a, &mut t, 8, 10_000_000.0);
        assert!(*back.last().unwrap() > 1_500_000.0, "{back:?}");
    }

    #[test]
    fn it_grows_only_within_reach_of_what_arrives() {
        let mut t = Instant::now();
        let mut a = Aimd::new(500_000.0, MIN, MAX);
        // The sender has only 200 kbit/s to send (audio, a still picture).
        for _ in 0..100 {
            t += TICK;
            a.update(t, Usage::Normal, Some(200_000.0));
        }
        assert_eq!(a.target(), 500_000.0, "held, not raised to the ceiling");
    }

    #[test]
    fn a_lasting_overuse_backs_off_once_per_interval_not_into_the_floor() {
        let mut t = Instant::now();
        let mut a = Aimd::new(1_000_000.0, MIN, MAX);
        t += TICK;
        a.update(t, Usage::Over, Some(1_000_000.0));
        // The detector still says "over" while the queue drains; the far end receives
        // what we now send.
        for _ in 0..2 {
            t += Duration::from_millis(20);
            let sent = a.target();
            a.update(t, Usage::Over, Some(sent));
        }
        assert_eq!(a.target(), 850_000.0);
        // Under half the target arrives: that is news, back off at once.
        t += Duration::from_millis(20);
        a.update(t, Usage::Over, Some(300_000.0));
        assert_eq!(a.target(), 255_000.0);
    }

    #[test]
    fn a_ceiling_the_path_no_longer_hits_is_forgotten() {
        let t0 = Instant::now();
        let mut c = Ceiling::default();
        c.hit(500_000.0);
        // Just above it for under a second: kept (delivered is not 20 % more yet).
        c.observe(t0, 520_000.0, Some(510_000.0));
        c.observe(t0 + Duration::from_millis(900), 540_000.0, Some(530_000.0));
        assert_eq!(c.get(), Some(500_000.0));
        // A back-off in between starts the wait again.
        c.hit(500_000.0);
        c.observe(
            t0 + Duration::from_millis(1_000),
            540_000.0,
            Some(530_000.0),
        );
        assert!(c.get().is_some());
        // A second above it with nothing backing off: the link has widened.
        c.observe(
            t0 + Duration::from_millis(2_000),
            560_000.0,
            Some(550_000.0),
        );
        assert_eq!(c.get(), None);
        // Clearly more arriving forgets it at once.
        c.hit(500_000.0);
        c.observe(t0, 450_000.0, Some(610_000.0));
        assert_eq!(c.get(), None);
    }

    #[test]
    fn a_draining_queue_holds_the_rate() {
        let mut t = Instant::now();
        let mut a = Aimd::new(1_000_000.0, MIN, MAX);
        for _ in 0..20 {
            t += TICK;
            a.update(t, Usage::Under, Some(1_000_000.0));
        }
        assert_eq!(a.target(), 1_000_000.0);
    }
}
