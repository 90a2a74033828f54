//! When to restart ICE. A connection whose path went away (the network changed, a NAT
//! forgot its mapping, the address moved) says "disconnected" and then "failed"; only an
//! ICE restart, negotiated through signaling, finds a new path without a new call. But a
//! restart drops the path it replaces, so a short outage is better left to recover by
//! itself: a restart comes only once the connection has been interrupted for a while.
//! Pure: the caller passes time in and performs the restart.

use std::time::{Duration, Instant};

use super::peer::ConnectionState;

/// How long "disconnected" may last before the impolite side restarts: the stack says
/// so after 2.5 s without a packet, so media has been gone 3.5 s by then, longer than
/// the outages that heal by themselves.
pub const GRACE: Duration = Duration::from_secs(1);
/// The polite side waits longer, so that usually the other's restart arrives first and
/// the two do not collide.
pub const POLITE_GRACE: Duration = Duration::from_millis(2500);
/// A restart that has not connected by then is tried again, each time twice as late.
pub const RETRY: Duration = Duration::from_secs(4);
pub const MAX_RETRY: Duration = Duration::from_secs(16);

#[derive(Debug, Clone)]
pub struct Reconnect {
    polite: bool,
    /// Connected at least once: a call that never connected has nothing to restore.
    was_connected: bool,
    /// Since when the path has been gone, while it is.
    interrupted: Option<Instant>,
    /// When to restart next, if still interrupted.
    due: Option<Instant>,
    /// Restarts since the path went away.
    attempt: u32,
    /// Restarts this side made or answered.
    restarts: u32,
    /// The other side's ICE username fragment: a new one in an offer is its restart.
    remote_ufrag: Option<String>,
}

impl Reconnect {
    pub fn new(polite: bool) -> Self {
        Self {
            polite,
            was_connected: false,
            interrupted: None,
            due: None,
            attempt: 0,
            restarts: 0,
            remote_ufrag: None,
        }
    }

    pub fn on_state(&mut self, state: ConnectionState, now: Instant) {
        let grace = if self.polite { POLITE_GRACE } else { GRACE };
        match state {
            ConnectionState::Connected => {
                self.was_connected = true;
                self.interrupted = None;
                self.due = None;
                self.attempt = 0;
            }
            ConnectionState::Disconnected if self.was_connected && self.interrupted.is_none() => {
                self.interrupted = Some(now);
                self.due = Some(now + grace);
            }
            // Failed will not heal: no point waiting out the grace (the polite side still
            // leaves the first move to the other).
            ConnectionState::Failed if self.was_connected => {
                self.interrupted.get_or_insert(now);
                let soon = now
                    + if self.polite {
                        grace - GRACE
                    } else {
                        Duration::ZERO
                    };
                if self.attempt == 0 {
                    self.due = Some(self.due.map_or(soon, |d| d.min(soon)));
                }
            }
            _ => {}
        }
    }

    /// A description from the other side. An offer with new ICE credentials is its
    /// restart: ours waits the time of one before trying again.
    pub fn on_remote_description(&mut self, offer: bool, sdp: &str, now: Instant) {
        let Some(ufrag) = ice_ufrag(sdp) else {
            return;
        };
        let changed = self.remote_ufrag.as_deref().is_some_and(|u| u != ufrag);
        self.remote_ufrag = Some(ufrag.to_owned());
        if offer && changed {
            self.restarts += 1;
            if self.interrupted.is_some() {
                self.due = Some(now + RETRY);
            }
        }
    }

    /// Our signaling link came back (it may have lost the offers of a restart under way):
    /// restart at once if still interrupted.
    pub fn hurry(&mut self, now: Instant) {
        if self.interrupted.is_some() {
            self.due = Some(now);
        }
    }

    /// True when a restart is due now; the next one is then scheduled.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.due {
            Some(due) if now >= due && self.interrupted.is_some() => {
                self.attempt += 1;
                self.restarts += 1;
                let wait = RETRY
                    .saturating_mul(1 << (self.attempt - 1).min(8))
                    .min(MAX_RETRY);
                self.due = Some(now + wait);
                true
            }
            _ => false,
        }
    }

    /// Whether the path is gone (a tile says "reconnecting").
    pub fn interrupted(&self) -> bool {
        self.interrupted.is_some()
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

/// The session's (or first section's) `a=ice-ufrag`.
fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionState::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Polls every 100 ms from `from` to `to` (ms): the times a restart came.
    fn restarts_between(r: &mut Reconnect, t0: Instant, from: u64, to: u64) -> Vec<u64> {
        (from..=to)
            .step_by(100)
            .filter(|&ms| r.poll(at(t0, ms)))
            .collect()
    }

    #[test]
    fn a_short_outage_heals_by_itself_without_a_restart() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(false);
        r.on_remote_description(true, OFFER_1, t0);
        r.on_state(Connected, t0);
        r.on_state(Disconnected, at(t0, 2500));
        assert!(r.interrupted());
        assert!(restarts_between(&mut r, t0, 2500, 3400).is_empty());
        r.on_state(Connected, at(t0, 3400));
        assert!(!r.interrupted());
        assert!(restarts_between(&mut r, t0, 3400, 20_000).is_empty());
        assert_eq!(r.restarts(), 0);
    }

    #[test]
    fn a_lasting_outage_restarts_after_the_grace_and_retries_ever_later() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(false);
        r.on_state(Connected, t0);
        r.on_state(Disconnected, at(t0, 1000));
        // 1 s grace, then 4 s, 8 s, 16 s, 16 s.
        assert_eq!(
            restarts_between(&mut r, t0, 1000, 46_000),
            vec![2000, 6000, 14_000, 30_000, 46_000]
        );
        assert_eq!(r.restarts(), 5);
        // Back: the schedule starts over at the next outage.
        r.on_state(Connected, at(t0, 47_000));
        r.on_state(Disconnected, at(t0, 50_000));
        assert_eq!(restarts_between(&mut r, t0, 50_000, 52_000), vec![51_000]);
    }

    #[test]
    fn the_polite_side_leaves_the_first_restart_to_the_other() {
        let t0 = Instant::now();
        let mut polite = Reconnect::new(true);
        polite.on_remote_description(true, OFFER_1, t0);
        polite.on_state(Connected, t0);
        polite.on_state(Disconnected, at(t0, 1000));
        assert!(restarts_between(&mut polite, t0, 1000, 3000).is_empty());
        // The impolite side's restart offer arrives 1.2 s in: ours waits a whole retry.
        polite.on_remote_description(true, OFFER_2, at(t0, 2200));
        assert!(restarts_between(&mut polite, t0, 2200, 6100).is_empty());
        assert_eq!(restarts_between(&mut polite, t0, 6200, 6200), vec![6200]);
    }

    #[test]
    fn a_signaling_link_that_comes_back_restarts_at_once() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(true);
        r.on_state(Connected, t0);
        r.on_state(Disconnected, at(t0, 1000));
        r.hurry(at(t0, 1500));
        assert_eq!(restarts_between(&mut r, t0, 1500, 1500), vec![1500]);
        // Nothing to hurry on a healthy path.
        r.on_state(Connected, at(t0, 2000));
        r.hurry(at(t0, 2100));
        assert!(restarts_between(&mut r, t0, 2100, 9000).is_empty());
    }

    const OFFER_1: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\n";
    const OFFER_2: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:wxyz\r\n";

    #[test]
    fn new_ice_credentials_in_an_offer_are_the_other_sides_restart() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(true);
        r.on_remote_description(true, OFFER_1, t0);
        r.on_state(Connected, t0);
        // A renegotiation (a screen share) keeps the credentials: no restart.
        r.on_remote_description(true, OFFER_1, at(t0, 1000));
        assert_eq!(r.restarts(), 0);
        r.on_remote_description(true, OFFER_2, at(t0, 2000));
        assert_eq!(r.restarts(), 1);
        // An answer of ours being taken is not counted again.
        r.on_remote_description(false, OFFER_1, at(t0, 3000));
        assert_eq!(r.restarts(), 1);
    }

    #[test]
    fn failed_restarts_at_once_and_a_call_that_never_connected_is_left_alone() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(false);
        r.on_state(Connected, t0);
        r.on_state(Failed, at(t0, 500));
        assert_eq!(restarts_between(&mut r, t0, 500, 500), vec![500]);
        // Failing again while the restart runs does not hurry the retry.
        r.on_state(Failed, at(t0, 700));
        assert!(restarts_between(&mut r, t0, 700, 4400).is_empty());

        let mut never = Reconnect::new(false);
        never.on_state(Connecting, t0);
        never.on_state(Failed, at(t0, 10_000));
        assert!(!never.interrupted());
        assert!(restarts_between(&mut never, t0, 10_000, 60_000).is_empty());
    }
}
