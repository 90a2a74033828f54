//! Which mesh peers get the camera's second, smaller stream. One encoder following the
//! slowest connection would give everyone the picture a phone on hotel Wi-Fi can take;
//! instead a peer whose link carries far less than the best one gets a stream of its
//! own, and the others keep theirs. Pure: estimates are passed in.

use std::collections::BTreeSet;

/// A peer whose estimate is below this share of the best peer's is sent the small stream.
const SLOW_BELOW: f64 = 0.5;
/// It goes back to the main stream once its estimate reaches this share: a gap between
/// the two so a peer near the line does not switch streams (and cost keyframes) often.
const BACK_ABOVE: f64 = 0.7;

#[derive(Debug, Default)]
pub(crate) struct SlowPeers {
    slow: BTreeSet<String>,
}

impl SlowPeers {
    /// Sorts the peers with an estimate (bit/s) into the main stream's and the small
    /// one's; returns the small one's (empty: one stream for all). A peer without an
    /// estimate yet stays where it was.
    pub(crate) fn update(&mut self, estimates: &[(String, f64)]) -> &BTreeSet<String> {
        let known = |e: &f64| e.is_finite() && *e > 0.0;
        let best = estimates
            .iter()
            .map(|(_, e)| *e)
            .filter(known)
            .fold(0.0, f64::max);
        if best <= 0.0 {
            self.slow.clear();
            return &self.slow;
        }
        let here: BTreeSet<&str> = estimates.iter().map(|(p, _)| p.as_str()).collect();
        self.slow.retain(|p| here.contains(p.as_str()));
        for (peer, e) in estimates.iter().filter(|(_, e)| known(e)) {
            let share = e / best;
            if self.slow.contains(peer) {
                if share >= BACK_ABOVE {
                    self.slow.remove(peer);
                }
            } else if share < SLOW_BELOW {
                self.slow.insert(peer.clone());
            }
        }
        &self.slow
    }

    /// Whether any peer is sent the small stream.
    pub(crate) fn any(&self) -> bool {
        !self.slow.is_empty()
    }

    pub(crate) fn is_slow(&self, peer: &str) -> bool {
        self.slow.contains(peer)
    }
}

/// The estimates of the peers in (`slow` true) or out of the small stream's group.
pub(crate) fn of_group(estimates: &[(String, f64)], peers: &SlowPeers, slow: bool) -> Vec<f64> {
    estimates
        .iter()
        .filter(|(p, _)| peers.is_slow(p) == slow)
        .map(|(_, e)| *e)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(p, e)| (p.to_string(), *e)).collect()
    }

    fn slow(s: &mut SlowPeers, list: &[(&str, f64)]) -> Vec<String> {
        s.update(&est(list)).iter().cloned().collect()
    }

    #[test]
    fn one_peer_is_never_slow_however_narrow_its_link() {
        let mut s = SlowPeers::default();
        assert!(slow(&mut s, &[("ada", 200_000.0)]).is_empty());
    }

    #[test]
    fn peers_on_similar_links_share_one_stream() {
        let mut s = SlowPeers::default();
        let list = [
            ("ada", 2_000_000.0),
            ("bob", 1_200_000.0),
            ("cy", 1_500_000.0),
        ];
        assert!(slow(&mut s, &list).is_empty());
    }

    #[test]
    fn a_peer_on_a_much_slower_link_gets_the_small_stream_and_the_others_keep_theirs() {
        let mut s = SlowPeers::default();
        let list = [
            ("ada", 3_000_000.0),
            ("bob", 2_500_000.0),
            ("cy", 450_000.0),
        ];
        assert_eq!(slow(&mut s, &list), ["cy"]);
        let e = est(&list);
        assert_eq!(of_group(&e, &s, false), [3_000_000.0, 2_500_000.0]);
        assert_eq!(of_group(&e, &s, true), [450_000.0]);
    }

    #[test]
    fn a_slow_peer_returns_only_well_above_the_line_it_crossed() {
        let mut s = SlowPeers::default();
        slow(&mut s, &[("ada", 2_000_000.0), ("cy", 900_000.0)]);
        // 55 % of the best: above the line it crossed, below the way back.
        assert_eq!(
            slow(&mut s, &[("ada", 2_000_000.0), ("cy", 1_100_000.0)]),
            ["cy"]
        );
        assert!(slow(&mut s, &[("ada", 2_000_000.0), ("cy", 1_500_000.0)]).is_empty());
    }

    #[test]
    fn a_peer_without_an_estimate_keeps_its_stream_and_one_that_left_is_forgotten() {
        let mut s = SlowPeers::default();
        slow(&mut s, &[("ada", 2_000_000.0), ("cy", 300_000.0)]);
        assert_eq!(
            slow(&mut s, &[("ada", 2_000_000.0), ("cy", f64::NAN)]),
            ["cy"]
        );
        assert!(slow(&mut s, &[("ada", 2_000_000.0)]).is_empty());
    }

    #[test]
    fn when_the_best_link_narrows_the_slow_peer_rejoins_the_main_stream() {
        let mut s = SlowPeers::default();
        slow(&mut s, &[("ada", 2_000_000.0), ("cy", 400_000.0)]);
        assert!(slow(&mut s, &[("ada", 500_000.0), ("cy", 400_000.0)]).is_empty());
    }
}
