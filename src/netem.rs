//! A simulated network link, in the spirit of str0m's netem: loss, delay, jitter,
//! reordering and a rate-limited bottleneck with a queue. Pure (time is passed in) and
//! seeded, so a run is reproducible; tests drive it with a simulated clock, and the
//! peer-pair harness drives one per direction in real time in front of real sockets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which packets the link loses (before they reach the bottleneck).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    #[default]
    None,
    /// Each packet independently.
    Random { probability: f64 },
    /// Gilbert-Elliott bursts: a good state that loses nothing and a bad state that loses
    /// everything; `enter` and `leave` are the per-packet chances of switching.
    Bursts { enter: f64, leave: f64 },
    /// Every `n`th packet of at least `min_size` bytes (a pattern a test can count on).
    EveryNth { n: usize, min_size: usize },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    pub loss: Loss,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per packet.
    pub jitter: Duration,
    /// Whether jitter may reorder packets; if not, a packet never leaves before the one
    /// sent ahead of it (a FIFO, as on most single paths).
    pub reorder: bool,
    /// The bottleneck's rate in bit/s; 0 is unlimited.
    pub rate_bps: u64,
    /// The most queueing delay the bottleneck holds; a packet that would wait longer is
    /// dropped (a router's buffer).
    pub queue_limit: Duration,
    /// Bytes each packet costs on the wire beyond its payload (IPv4 + UDP).
    pub overhead_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            loss: Loss::None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: false,
            rate_bps: 0,
            queue_limit: Duration::from_millis(300),
            overhead_bytes: 28,
        }
    }
}

/// What became of a packet given to [`Link::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It leaves the link at `due`.
    Queued { due: Instant },
    /// Lost on the way.
    Lost,
    /// The bottleneck's queue was full.
    Overflow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub overflowed: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
}

/// One direction of a link carrying packets of type `P`.
pub struct Link<P> {
    config: LinkConfig,
    rng: StdRng,
    /// When the bottleneck finishes the last packet it accepted.
    free_at: Option<Instant>,
    /// When the last queued packet leaves (FIFO order without `reorder`).
    last_due: Option<Instant>,
    /// In flight, by (due, order sent).
    in_flight: BTreeMap<(Instant, u64), (P, usize)>,
    order: u64,
    counted: usize,
    in_burst: bool,
    stats: LinkStats,
}

impl<P> Link<P> {
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            free_at: None,
            last_due: None,
            in_flight: BTreeMap::new(),
            order: 0,
            counted: 0,
            in_burst: false,
            stats: LinkStats::default(),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Changes the link from now on (a route change, a handover); packets in flight keep
    /// their times.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Offers a packet of `size` bytes at `now`.
    pub fn send(&mut self, now: Instant, size: usize, packet: P) -> Fate {
        self.stats.sent += 1;
        if self.loses(size) {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        let mut leaves = now;
        if self.config.rate_bps > 0 {
            let start = self.free_at.map_or(now, |f| f.max(now));
            if start - now > self.config.queue_limit {
                self.stats.overflowed += 1;
                return Fate::Overflow;
            }
            let bits = (size + self.config.overhead_bytes) as f64 * 8.0;
            leaves = start + Duration::from_secs_f64(bits / self.config.rate_bps as f64);
            self.free_at = Some(leaves);
        }
        let jitter = if self.config.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.config.jitter.mul_f64(self.rng.random::<f64>())
        };
        let mut due = leaves + self.config.delay + jitter;
        if !self.config.reorder {
            due = self.last_due.map_or(due, |last| due.max(last));
        }
        self.last_due = Some(self.last_due.map_or(due, |last| last.max(due)));
        self.in_flight.insert((due, self.order), (packet, size));
        self.order += 1;
        Fate::Queued { due }
    }

    /// The next packet whose time has come, if any.
    pub fn poll(&mut self, now: Instant) -> Option<P> {
        let (&key, _) = self.in_flight.first_key_value()?;
        if key.0 > now {
            return None;
        }
        let (packet, size) = self.in_flight.remove(&key)?;
        self.stats.delivered += 1;
        self.stats.delivered_bytes += size as u64;
        Some(packet)
    }

    /// When [`poll`](Self::poll) has something next.
    pub fn next_due(&self) -> Option<Instant> {
        self.in_flight.first_key_value().map(|((due, _), _)| *due)
    }

    fn loses(&mut self, size: usize) -> bool {
        match self.config.loss {
            Loss::None => false,
            Loss::Random { probability } => self.rng.random::<f64>() < probability,
            Loss::Bursts { enter, leave } => {
                let switch = if self.in_burst { leave } else { enter };
                if self.rng.random::<f64>() < switch {
                    self.in_burst = !self.in_burst;
                }
                self.in_burst
            }
            Loss::EveryNth { n, min_size } => {
                if size < min_size || n == 0 {
                    return false;
                }
                self.counted += 1;
                self.counted.is_multiple_of(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Sends `sizes` at `now` and returns what came out by `until`, with times.
    fn run(
        link: &mut Link<usize>,
        t0: Instant,
        sends: &[(Duration, usize)],
    ) -> Vec<(usize, Duration)> {
        let mut out = Vec::new();
        for (i, (at, size)) in sends.iter().enumerate() {
            link.send(t0 + *at, *size, i);
        }
        while let Some(due) = link.next_due() {
            let p = link.poll(due).expect("due packet");
            out.push((p, due - t0));
        }
        out
    }

    #[test]
    fn a_clean_link_delivers_everything_after_its_delay_in_order() {
        let t0 = Instant::now();
        let mut link = Link::new(
            LinkConfig {
                delay: 20 * MS,
                ..LinkConfig::default()
            },
            1,
        );
        let sends: Vec<_> = (0..10).map(|i| (i * MS, 1200)).collect();
        let out = run(&mut link, t0, &sends);
        let expected: Vec<_> = (0..10).map(|i| (i as usize, (i + 20) * MS)).collect();
        assert_eq!(out, expected);
        assert!(link.poll(t0).is_none(), "nothing before its time");
    }

    #[test]
    fn a_bottleneck_spaces_packets_by_size_and_drops_what_its_queue_cannot_hold() {
        let t0 = Instant::now();
        let mut link = Link::new(
            LinkConfig {
                rate_bps: 1_000_000,
                queue_limit: 50 * MS,
                ..LinkConfig::default()
            },
            1,
        );
        // 972 + 28 bytes = 8 ms each at 1 Mbit/s; a burst of 10 at once.
        let fates: Vec<Fate> = (0..10).map(|i| link.send(t0, 972, i)).collect();
        for (i, fate) in fates.iter().enumerate() {
            if i <= 7 {
                // The 8th (index 7) starts 56 ms out: over the limit.
                let expect = if i < 7 {
                    Fate::Queued {
                        due: t0 + 8 * MS * (i as u32 + 1),
                    }
                } else {
                    Fate::Overflow
                };
                assert_eq!(*fate, expect, "packet {i}");
            }
        }
        assert_eq!(link.stats().overflowed, 3);
        // Once the queue drains, the link takes packets again.
        assert!(matches!(
            link.send(t0 + 60 * MS, 972, 10),
            Fate::Queued { .. }
        ));
    }

    #[test]
    fn random_loss_follows_its_seed_and_its_probability() {
        let fates = |seed| {
            let mut link = Link::new(
                LinkConfig {
                    loss: Loss::Random { probability: 0.1 },
                    ..LinkConfig::default()
                },
                seed,
            );
            let t0 = Instant::now();
            (0..20_000)
                .map(|i| link.send(t0, 100, i) == Fate::Lost)
                .collect::<Vec<bool>>()
        };
        let a = fates(7);
        assert_eq!(a, fates(7), "same seed, same losses");
        assert_ne!(a, fates(8), "another seed, other losses");
        let lost = a.iter().filter(|l| **l).count() as f64 / a.len() as f64;
        assert!((0.09..0.11).contains(&lost), "lost {lost}");
    }

    #[test]
    fn burst_loss_loses_runs_of_packets() {
        let mut link = Link::new(
            LinkConfig {
                loss: Loss::Bursts {
                    enter: 0.02,
                    leave: 0.25,
                },
                ..LinkConfig::default()
            },
            3,
        );
        let t0 = Instant::now();
        let lost: Vec<bool> = (0..20_000)
            .map(|i| link.send(t0, 100, i) == Fate::Lost)
            .collect();
        let runs = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        let total = lost.iter().filter(|l| **l).count();
        // Mean burst 1/leave = 4 packets; loss about enter / (enter + leave) = 7.4 %.
        let mean_run = total as f64 / runs as f64;
        assert!((3.0..5.0).contains(&mean_run), "mean burst {mean_run}");
        let rate = total as f64 / lost.len() as f64;
        assert!((0.06..0.09).contains(&rate), "loss {rate}");
    }

    #[test]
    fn every_nth_counts_only_big_packets() {
        let mut link = Link::new(
            LinkConfig {
                loss: Loss::EveryNth {
                    n: 3,
                    min_size: 500,
                },
                ..LinkConfig::default()
            },
            1,
        );
        let t0 = Instant::now();
        let sizes = [1000, 100, 1000, 1000, 100, 1000, 1000, 1000];
        let lost: Vec<usize> = sizes
            .iter()
            .enumerate()
            .filter(|(i, s)| link.send(t0, **s, *i) == Fate::Lost)
            .map(|(i, _)| i)
            .collect();
        // Big packets are 0, 2, 3, 5, 6, 7: the 3rd and 6th of them.
        assert_eq!(lost, vec![3, 7]);
    }

    #[test]
    fn jitter_reorders_only_when_the_link_may() {
        let sends: Vec<_> = (0..200).map(|i| (i * MS, 200)).collect();
        let config = LinkConfig {
            delay: 10 * MS,
            jitter: 30 * MS,
            ..LinkConfig::default()
        };
        let t0 = Instant::now();
        let fifo = run(&mut Link::new(config, 5), t0, &sends);
        let ids: Vec<usize> = fifo.iter().map(|(p, _)| *p).collect();
        assert_eq!(ids, (0..200).collect::<Vec<_>>(), "a FIFO keeps order");
        let reordering = run(
            &mut Link::new(
                LinkConfig {
                    reorder: true,
                    ..config
                },
                5,
            ),
            t0,
            &sends,
        );
        let ids: Vec<usize> = reordering.iter().map(|(p, _)| *p).collect();
        assert_ne!(ids, (0..200).collect::<Vec<_>>(), "jitter reorders");
        for (p, t) in reordering {
            let sent = p as u32 * MS;
            assert!(t >= sent + 10 * MS && t <= sent + 40 * MS, "{p} at {t:?}");
        }
    }
}
