//! A subscriber's estimate of its own downlink (pure, time passed in). Janus 1.1
//! estimates nothing towards subscribers, so a subscriber behind a narrow link would be
//! sent every feed's largest layer and lose half of it. We judge the link from what
//! arrives, about once a second: heavy loss on it, twice running, means it is full,
//! and what got through is about what it carries.
//!
//! Loss on *our* link: packets Janus says it sent us (its RTCP sender reports) that
//! never came. Gaps in the sequence numbers would also count what a publisher's own
//! narrow uplink lost before Janus, and cut everyone's layers for one member's link.
//! Two windows running, because the reports and our counts are taken at different
//! moments: when the rate falls (a layer switch) one window reads as loss. When no
//! report came for 2 s (they are lost too, on a link losing most of what it carries),
//! the gaps are judged after all.
//!
//! Until the link has been full once there is no estimate (no limit: a clean link never
//! pays for this); after a cut the estimate grows while nothing is lost, so a larger
//! layer is tried again now and then. A too-large one fills the link (a short stall)
//! and brings the estimate back down; each such failed try makes the next come later
//! (5 % a second, then 2.5 %, then 1.7 %...).

use std::time::{Duration, Instant};

/// Loss over a second above which the link counts as full...
const FULL_LOSS: f64 = 0.10;
/// ...and below which it has room.
const CLEAR_LOSS: f64 = 0.02;
/// After a full link: this share of what got through.
const BACKOFF: f64 = 0.85;
/// No second cut for this long: the smaller layers asked for take a moment to arrive.
const HOLD: Duration = Duration::from_secs(2);
/// Growth per second of a clear link, divided by one more for every failed try.
const GROWTH: f64 = 0.05;
/// With no sender report for this long, sequence gaps are judged instead.
const NO_REPORT: Duration = Duration::from_secs(2);
/// Seconds shorter than this are added to the next.
const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Never below this: the smallest layers of a few feeds.
const FLOOR_BPS: f64 = 150_000.0;

/// Counters over everything the subscriber connection received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub bytes: u64,
    /// Packets received on the streams the sender has reported on...
    pub packets: u64,
    /// ...and how many it says it sent on them.
    pub sent: u64,
    /// Packets received and missing by sequence number, on every stream: what is
    /// judged when no sender report came for a while.
    pub all_packets: u64,
    pub missing: i64,
}

#[derive(Debug, Default)]
pub struct Downlink {
    estimate: Option<f64>,
    last: Option<(Instant, Received)>,
    cut_at: Option<Instant>,
    /// The window before was lossy too.
    lossy_before: bool,
    /// The estimate grew since the last cut (a cut now ends a failed try)...
    grown: bool,
    /// ...and so many tries failed.
    failed_tries: u32,
}

impl Downlink {
    /// What the downlink carries (bit/s), if it has been found full.
    pub fn estimate_bps(&self) -> Option<u32> {
        self.estimate.map(|e| e as u32)
    }

    /// Takes the counters at `now`; returns the estimate when it changed.
    pub fn update(&mut self, now: Instant, total: Received) -> Option<u32> {
        let Some((then, before)) = self.last else {
            self.last = Some((now, total));
            return None;
        };
        if total.sent < before.sent
            || total.packets < before.packets
            || total.all_packets < before.all_packets
        {
            // A stream went: start again from here.
            self.last = Some((now, total));
            return None;
        }
        let dt = now.saturating_duration_since(then);
        let sent = (total.sent - before.sent) as f64;
        let unreported = sent == 0.0 && dt >= NO_REPORT;
        if dt < MIN_INTERVAL || (sent == 0.0 && !unreported) {
            // Too soon, or no report since: the window grows.
            return None;
        }
        self.last = Some((now, total));
        let rate = total.bytes.saturating_sub(before.bytes) as f64 * 8.0 / dt.as_secs_f64();
        let loss = if unreported {
            // The reports themselves are lost (or never sent): gaps are all we have.
            let got = (total.all_packets - before.all_packets) as f64;
            let missing = (total.missing - before.missing).max(0) as f64;
            if got + missing == 0.0 {
                return None;
            }
            missing / (got + missing)
        } else {
            (1.0 - (total.packets - before.packets) as f64 / sent).max(0.0)
        };
        let lossy = loss > FULL_LOSS;
        let full = lossy && std::mem::replace(&mut self.lossy_before, lossy);
        let held = self
            .cut_at
            .is_some_and(|c| now.saturating_duration_since(c) < HOLD);
        let next = if full && !held {
            self.cut_at = Some(now);
            if std::mem::take(&mut self.grown) {
                self.failed_tries += 1;
            }
            let cut = (rate * BACKOFF).max(FLOOR_BPS);
            Some(self.estimate.map_or(cut, |e| e.min(cut)))
        } else if loss < CLEAR_LOSS && !held && self.estimate.is_some() {
            self.grown = true;
            let growth = GROWTH / f64::from(1 + self.failed_tries);
            self.estimate
                .map(|e| e * (1.0 + growth).powf(dt.as_secs_f64()))
        } else {
            self.estimate
        };
        let changed = next != self.estimate;
        self.estimate = next;
        changed.then(|| self.estimate_bps()).flatten()
    }

    /// One camera's share when `cameras` feeds share the link; None: no limit known.
    /// A tenth is left for audio and the rest.
    pub fn per_camera_bps(&self, cameras: usize) -> Option<u32> {
        self.estimate
            .map(|e| (e * 0.9 / cameras.max(1) as f64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second of `kbps` arriving with `loss` of what Janus sent lost on our link
    /// (1 kB packets).
    fn second(
        d: &mut Downlink,
        t: &mut Instant,
        c: &mut Received,
        kbps: u64,
        loss: f64,
    ) -> Option<u32> {
        *t += Duration::from_secs(1);
        let got = kbps / 8;
        c.bytes += got * 1000;
        c.packets += got;
        c.all_packets += got;
        c.sent += (got as f64 / (1.0 - loss)).round() as u64;
        d.update(*t, *c)
    }

    fn start() -> (Downlink, Instant, Received) {
        let mut d = Downlink::default();
        let t = Instant::now();
        d.update(t, Received::default());
        (d, t, Received::default())
    }

    #[test]
    fn a_clean_link_sets_no_limit() {
        let (mut d, mut t, mut c) = start();
        for _ in 0..20 {
            assert_eq!(second(&mut d, &mut t, &mut c, 3000, 0.005), None);
        }
        assert_eq!(d.per_camera_bps(2), None);
    }

    #[test]
    fn a_full_link_is_estimated_at_what_got_through() {
        let (mut d, mut t, mut c) = start();
        second(&mut d, &mut t, &mut c, 2000, 0.0);
        // 2 Mbit/s sent into 1 Mbit/s: half lost, 1 Mbit/s through. Once could be our
        // counts and Janus's report taken at different moments...
        assert_eq!(second(&mut d, &mut t, &mut c, 1000, 0.5), None);
        // ...twice running is a full link.
        let e = second(&mut d, &mut t, &mut c, 1000, 0.5).expect("an estimate");
        assert_eq!(e, 850_000);
        assert_eq!(d.per_camera_bps(2), Some(382_500));
    }

    #[test]
    fn a_second_cut_waits_for_the_smaller_layers_to_arrive() {
        let (mut d, mut t, mut c) = start();
        second(&mut d, &mut t, &mut c, 1000, 0.5);
        second(&mut d, &mut t, &mut c, 1000, 0.5);
        // The switch takes a moment: still losing, less getting through.
        assert_eq!(second(&mut d, &mut t, &mut c, 600, 0.3), None);
        assert_eq!(d.estimate_bps(), Some(850_000));
        // Still full two seconds on: a real cut.
        second(&mut d, &mut t, &mut c, 600, 0.3);
        assert_eq!(d.estimate_bps(), Some(510_000));
    }

    #[test]
    fn a_clear_link_grows_the_estimate_until_a_larger_layer_is_tried() {
        let (mut d, mut t, mut c) = start();
        second(&mut d, &mut t, &mut c, 1000, 0.5);
        second(&mut d, &mut t, &mut c, 1000, 0.5);
        second(&mut d, &mut t, &mut c, 700, 0.0);
        assert_eq!(d.estimate_bps(), Some(850_000), "held after the cut");
        for _ in 0..11 {
            second(&mut d, &mut t, &mut c, 700, 0.0);
        }
        // 850k x 1.05^11.
        let grown = d.estimate_bps().unwrap();
        assert!((1_450_000..1_460_000).contains(&grown), "{grown}");
        // Some loss that is not a full link holds it.
        second(&mut d, &mut t, &mut c, 700, 0.05);
        assert_eq!(d.estimate_bps(), Some(grown));
    }

    #[test]
    fn each_failed_try_makes_the_next_come_later() {
        let (mut d, mut t, mut c) = start();
        let mut since_cut = Vec::new();
        let mut clear = 0;
        for _ in 0..200 {
            let e = d.estimate_bps().unwrap_or(u32::MAX);
            // The link carries 1 Mbit/s: above that it fills.
            let loss = if e > 1_000_000 { 0.3 } else { 0.0 };
            if second(&mut d, &mut t, &mut c, 1000, loss).is_some_and(|n| n < e) && e != u32::MAX {
                since_cut.push(clear);
                clear = 0;
            } else {
                clear += 1;
            }
        }
        assert!(since_cut.len() >= 3, "{since_cut:?}");
        assert!(
            since_cut.windows(2).all(|w| w[1] > w[0]),
            "seconds between failed tries: {since_cut:?}"
        );
    }

    #[test]
    fn random_loss_under_a_tenth_is_not_a_full_link() {
        let (mut d, mut t, mut c) = start();
        for _ in 0..10 {
            second(&mut d, &mut t, &mut c, 2000, 0.08);
        }
        assert_eq!(d.estimate_bps(), None);
    }

    #[test]
    fn loss_before_janus_is_not_our_link() {
        let (mut d, mut t, mut c) = start();
        for _ in 0..5 {
            // A publisher's uplink lost a third: Janus sent us what it had, all arrived.
            t += Duration::from_secs(1);
            c.bytes += 40_000;
            c.packets += 40;
            c.sent += 40;
            assert_eq!(d.update(t, c), None);
        }
    }

    #[test]
    fn no_report_no_judgement_the_window_grows_until_one() {
        let (mut d, mut t, mut c) = start();
        c.sent = 100;
        c.packets = 100;
        t += Duration::from_secs(1);
        d.update(t, c);
        // Two seconds with no new report: what arrived is not held against nothing.
        for _ in 0..2 {
            t += Duration::from_secs(1);
            c.packets += 100;
            c.bytes += 100_000;
            assert_eq!(d.update(t, c), None);
        }
        assert_eq!(d.estimate_bps(), None);
    }

    #[test]
    fn with_no_report_for_two_seconds_the_gaps_are_judged() {
        let (mut d, mut t, mut c) = start();
        for _ in 0..3 {
            // Half of 2 Mbit/s arrives, no sender report does.
            t += Duration::from_secs(1);
            c.bytes += 125_000;
            c.all_packets += 125;
            c.missing += 125;
            assert_eq!(d.update(t, c), None, "one window of two seconds so far");
        }
        t += Duration::from_secs(1);
        c.bytes += 125_000;
        c.all_packets += 125;
        c.missing += 125;
        assert_eq!(d.update(t, c), Some(850_000), "two lossy windows");
    }

    #[test]
    fn never_below_the_floor() {
        let (mut d, mut t, mut c) = start();
        second(&mut d, &mut t, &mut c, 50, 0.9);
        second(&mut d, &mut t, &mut c, 50, 0.9);
        assert_eq!(d.estimate_bps(), Some(150_000));
    }
}
