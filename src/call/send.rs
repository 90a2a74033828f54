//! The send stage: one task per local track writes each encoded unit to every peer's
//! copy of the track.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::encode::SendCounters;
use super::error::Result;
use super::peer::{AudioTrackSender, VideoTrackSender};
use crate::sync::LockExt;

/// One encoded unit: an access unit of one simulcast layer (or of the only one), or an
/// Opus packet.
#[derive(Debug)]
pub struct Unit {
    pub data: Vec<u8>,
    /// Until the next unit of the same layer.
    pub duration: Duration,
    /// Simulcast layer, 0 = smallest; 0 without simulcast.
    pub layer: usize,
    /// The largest layer: what a connection without simulcast sends.
    pub top: bool,
}

impl Unit {
    /// A unit of a stream without layers.
    pub fn single(data: Vec<u8>, duration: Duration) -> Self {
        Self {
            data,
            duration,
            layer: 0,
            top: true,
        }
    }
}

/// A peer's copy of a local track that encoded units can be written to.
pub trait UnitSender: Clone + Send + Sync + 'static {
    fn send_unit(&self, unit: &Unit) -> impl Future<Output = Result<()>> + Send;
}

impl UnitSender for VideoTrackSender {
    fn send_unit(&self, unit: &Unit) -> impl Future<Output = Result<()>> + Send {
        self.send_layer(unit.layer, unit.top, &unit.data, unit.duration)
    }
}

impl UnitSender for AudioTrackSender {
    fn send_unit(&self, unit: &Unit) -> impl Future<Output = Result<()>> + Send {
        self.send(&unit.data, unit.duration)
    }
}

/// Sends encoded units to every peer's copy of one local track.
pub struct Fanout<S> {
    senders: Mutex<HashMap<String, S>>,
}

impl<S: Clone> Fanout<S> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            senders: Mutex::new(HashMap::new()),
        })
    }

    pub fn add(&self, peer: &str, sender: S) {
        self.lock().insert(peer.to_string(), sender);
    }

    pub fn get(&self, peer: &str) -> Option<S> {
        self.lock().get(peer).cloned()
    }

    pub fn remove(&self, peer: &str) -> Option<S> {
        self.lock().remove(peer)
    }

    pub fn snapshot(&self) -> Vec<(String, S)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, S>> {
        self.senders.locked()
    }
}

/// Writes each unit from `units` to every peer in `fanout`; counts the (top-layer) units
/// that reached at least one negotiated track. Ends when the encode stage drops its sender.
pub fn spawn_fanout<S: UnitSender>(
    fanout: Arc<Fanout<S>>,
    mut units: mpsc::Receiver<Unit>,
    counters: Arc<SendCounters>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(unit) = units.recv().await {
            let mut sent = 0;
            for (_, sender) in fanout.snapshot() {
                // Not negotiated yet, or the peer is going away: nothing to do.
                sent += u64::from(sender.send_unit(&unit).await.is_ok());
            }
            if unit.top {
                counters
                    .delivered
                    .fetch_add(u64::from(sent > 0), Ordering::Relaxed);
            }
            counters
                .bytes_out
                .fetch_add(sent * unit.data.len() as u64, Ordering::Relaxed);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallError;

    /// A peer's track: `up` says whether it takes units.
    #[derive(Clone)]
    struct FakeTrack {
        up: bool,
    }

    impl UnitSender for FakeTrack {
        async fn send_unit(&self, _: &Unit) -> Result<()> {
            if self.up {
                Ok(())
            } else {
                Err(CallError::NotNegotiated("video".into()))
            }
        }
    }

    #[tokio::test]
    async fn the_uplink_counts_a_unit_once_per_peer_it_reached() {
        let fanout = Fanout::new();
        fanout.add("ada", FakeTrack { up: true });
        fanout.add("bob", FakeTrack { up: true });
        fanout.add("cy", FakeTrack { up: false });
        let counters = Arc::new(SendCounters::default());
        let (tx, rx) = mpsc::channel(4);
        let task = spawn_fanout(fanout, rx, counters.clone());
        for len in [100, 50] {
            tx.send(Unit::single(vec![0; len], Duration::from_millis(33)))
                .await
                .unwrap();
        }
        drop(tx);
        task.await.unwrap();
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 2 * 150);
    }

    #[tokio::test]
    async fn a_unit_no_peer_took_is_neither_delivered_nor_uplinked() {
        let fanout = Fanout::new();
        fanout.add("cy", FakeTrack { up: false });
        let counters = Arc::new(SendCounters::default());
        let (tx, rx) = mpsc::channel(1);
        let task = spawn_fanout(fanout, rx, counters.clone());
        tx.send(Unit::single(vec![0; 10], Duration::ZERO))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 0);
    }
}
