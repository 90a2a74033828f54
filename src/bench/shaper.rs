//! A userspace network shaper for `confab bench network`: every UDP packet in this network
//! namespace goes to an NFQUEUE (iptables), and one thread holds, drops or releases it as a
//! simulated [`Link`] says, one link per direction of each flow. This kernel has no
//! `netem`; NFQUEUE verdicts can be given late and in any order, which is all a link needs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netem::{Fate, Link, LinkConfig, LinkStats};

use super::BenchError;
use super::profile::Profile;

const QUEUE: u16 = 4711;

/// The width of an [`Offered`] bin.
pub const BIN: Duration = Duration::from_millis(100);

/// What one direction of a flow offered the link (dropped or not): bytes of IP packets
/// per [`BIN`], from the shaper's start on.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Offered {
    pub from_port: u16,
    pub to_port: u16,
    pub bytes: Vec<u64>,
}

impl Offered {
    fn add(&mut self, since_start: Duration, size: usize) {
        let bin = (since_start.as_micros() / BIN.as_micros()) as usize;
        if self.bytes.len() <= bin {
            self.bytes.resize(bin + 1, 0);
        }
        self.bytes[bin] += size as u64;
    }
}

/// What the shaper did, over every flow.
#[derive(Debug, Clone, Default)]
pub struct ShaperStats {
    pub lost: u64,
    pub overflowed: u64,
    /// Wall-clock µs when the profile's last change took effect (e.g. the link's return
    /// after an outage), if it has one.
    pub last_change_us: Option<u64>,
    /// Wall-clock µs the profile's time counts from.
    pub started_us: u64,
    pub offered: Vec<Offered>,
}

pub struct Shaper {
    /// iptables match arguments narrowing which UDP packets are shaped.
    matching: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<ShaperStats, String>>>,
}

impl Shaper {
    /// Starts shaping this namespace's UDP by `profile`, its clock starting now.
    pub fn start(profile: Profile, seed: u64) -> Result<Self, BenchError> {
        Self::start_matching(profile, seed, &[])
    }

    /// Shapes only the UDP packets iptables `matching` takes (e.g. `["-d", "10.77.0.2"]`:
    /// one address's downlink); the rest pass untouched.
    pub fn start_matching(
        profile: Profile,
        seed: u64,
        matching: &[&str],
    ) -> Result<Self, BenchError> {
        let matching: Vec<String> = matching.iter().map(|m| m.to_string()).collect();
        ensure_private_namespace()?;
        let mut queue = nfq::Queue::open().map_err(|e| shaper_error("opening NFQUEUE", e))?;
        queue
            .bind(QUEUE)
            .map_err(|e| shaper_error("binding NFQUEUE", e))?;
        queue
            .set_queue_max_len(QUEUE, 8192)
            .map_err(|e| shaper_error("sizing NFQUEUE", e))?;
        queue.set_nonblocking(true);
        iptables("-A", &matching)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shaper".into())
            .spawn(move || run(queue, profile, seed, &flag))
            .map_err(BenchError::Io)?;
        Ok(Self {
            matching,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops shaping (held packets are released) and says what it did.
    pub fn stop(mut self) -> Result<ShaperStats, BenchError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<ShaperStats, BenchError> {
        if self.thread.is_none() {
            return Ok(ShaperStats::default());
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = iptables("-D", &self.matching);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(stats))) => Ok(stats),
            Some(Ok(Err(e))) => Err(BenchError::Server(format!("shaper: {e}"))),
            Some(Err(_)) => Err(BenchError::Server("the shaper thread panicked".into())),
            None => Ok(ShaperStats::default()),
        }
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn shaper_error(what: &str, e: std::io::Error) -> BenchError {
    BenchError::Server(format!(
        "{what}: {e} (the network bench needs root and the nfnetlink_queue module)"
    ))
}

/// The shaper takes every UDP packet of the namespace it runs in: refuse anywhere but in
/// one that has only loopback (made with `unshare -n`), so no real traffic is touched.
fn ensure_private_namespace() -> Result<(), BenchError> {
    let dev = std::fs::read_to_string("/proc/net/dev").map_err(BenchError::Io)?;
    let others: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|name| *name != "lo")
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(BenchError::Args(format!(
        "the network bench shapes every UDP packet of its network namespace, and this one \
         has {}: run it in a namespace of its own, e.g. `unshare -n sh -c 'ip link set lo up; \
         confab bench network'` (as root), or `make bench-network`",
        others.join(", ")
    )))
}

/// Adds (`-A`) or deletes (`-D`) the rule that queues this namespace's UDP to us.
/// iptables' NFQUEUE target, not nftables' `queue`: this kernel lacks `nft_queue`.
/// `--queue-bypass`: should the shaper be gone, packets pass instead of being dropped.
fn iptables(op: &str, matching: &[String]) -> Result<(), BenchError> {
    let queue = QUEUE.to_string();
    let status = std::process::Command::new("iptables")
        .args([op, "OUTPUT", "-p", "udp"])
        .args(matching)
        .args(["-j", "NFQUEUE", "--queue-num", &queue])
        .arg("--queue-bypass")
        .status()
        .map_err(|e| {
            BenchError::Server(format!("running iptables (Debian package iptables): {e}"))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Server(format!(
            "iptables {op} OUTPUT ... NFQUEUE failed"
        )))
    }
}

/// (source port, destination port) of an IPv4 UDP packet; one link per direction of a flow.
fn flow(packet: &[u8]) -> (u16, u16) {
    let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
    match packet.get(ihl..ihl + 4) {
        Some(p) if packet[0] >> 4 == 4 => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        _ => (0, 0),
    }
}

fn run(
    mut queue: nfq::Queue,
    profile: Profile,
    seed: u64,
    stop: &AtomicBool,
) -> Result<ShaperStats, String> {
    let start = Instant::now();
    let start_us = crate::media::now_us();
    let mut links: HashMap<(u16, u16), Link<u64>> = HashMap::new();
    let mut offered: HashMap<(u16, u16), Offered> = HashMap::new();
    let mut held: HashMap<u64, nfq::Message> = HashMap::new();
    let mut next_id = 0u64;
    let mut stats = ShaperStats {
        started_us: start_us,
        ..ShaperStats::default()
    };
    let mut config: LinkConfig = profile.at(Duration::ZERO);
    let release = |queue: &mut nfq::Queue, mut msg: nfq::Message, verdict| {
        msg.set_verdict(verdict);
        queue.verdict(msg).map_err(|e| format!("verdict: {e}"))
    };
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wanted = profile.at(now - start);
        if wanted != config {
            config = wanted;
            stats.last_change_us = Some(start_us + (now - start).as_micros() as u64);
            for link in links.values_mut() {
                link.set_config(config);
            }
        }
        let mut busy = false;
        loop {
            match queue.recv() {
                Ok(msg) => {
                    busy = true;
                    let size = msg.get_payload().len();
                    let key = flow(msg.get_payload());
                    offered
                        .entry(key)
                        .or_insert_with(|| Offered {
                            from_port: key.0,
                            to_port: key.1,
                            bytes: Vec::new(),
                        })
                        .add(now - start, size);
                    let n = links.len() as u64;
                    let link = links
                        .entry(key)
                        .or_insert_with(|| Link::new(config, seed.wrapping_add(n)));
                    let id = next_id;
                    next_id += 1;
                    match link.send(now, size, id) {
                        Fate::Queued { .. } => {
                            held.insert(id, msg);
                        }
                        Fate::Lost | Fate::Overflow => {
                            release(&mut queue, msg, nfq::Verdict::Drop)?
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("receiving from NFQUEUE: {e}")),
            }
        }
        let now = Instant::now();
        for link in links.values_mut() {
            while let Some(id) = link.poll(now) {
                if let Some(msg) = held.remove(&id) {
                    release(&mut queue, msg, nfq::Verdict::Accept)?;
                }
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    for msg in held.into_values() {
        release(&mut queue, msg, nfq::Verdict::Accept)?;
    }
    let sum = links
        .values()
        .map(Link::stats)
        .fold(LinkStats::default(), |a, s| LinkStats {
            lost: a.lost + s.lost,
            overflowed: a.overflowed + s.overflowed,
            ..a
        });
    stats.lost = sum.lost;
    stats.overflowed = sum.overflowed;
    stats.offered = offered.into_values().collect();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_flow_offers_is_counted_in_the_bin_of_its_time() {
        let mut o = Offered::default();
        o.add(Duration::from_millis(30), 100);
        o.add(Duration::from_millis(99), 50);
        o.add(Duration::from_millis(250), 7);
        assert_eq!(o.bytes, vec![150, 0, 7]);
    }

    #[test]
    fn flows_are_told_apart_by_their_ports() {
        let mut p = vec![0x45u8; 20];
        p.extend_from_slice(&[0x1f, 0x90, 0x00, 0x35, 0, 8, 0, 0]);
        assert_eq!(flow(&p), (8080, 53));
        assert_eq!(flow(&[0x60; 48]), (0, 0), "not IPv4");
        assert_eq!(flow(&[0x45; 10]), (0, 0), "truncated");
    }
}
