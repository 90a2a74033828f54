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

/// A peer's copy of a local track that encoded units can be written to.
pub trait UnitSender: Clone + Send + Sync + 'static {
    fn send_unit(&self, unit: &[u8], duration: Duration)
    -> impl Future<Output = Result<()>> + Send;
}

impl UnitSender for VideoTrackSender {
    fn send_unit(
        &self,
        unit: &[u8],
        duration: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        self.send(unit, duration)
    }
}

impl UnitSender for AudioTrackSender {
    fn send_unit(
        &self,
        unit: &[u8],
        duration: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        self.send(unit, duration)
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

/// Writes each unit from `units` to every peer in `fanout`; counts the units that reached
/// at least one negotiated track. Ends when the encode stage drops its sender.
pub fn spawn_fanout<S: UnitSender>(
    fanout: Arc<Fanout<S>>,
    mut units: mpsc::Receiver<(Vec<u8>, Duration)>,
    counters: Arc<SendCounters>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((unit, duration)) = units.recv().await {
            let mut sent = 0;
            for (_, sender) in fanout.snapshot() {
                // Not negotiated yet, or the peer is going away: nothing to do.
                sent += u64::from(sender.send_unit(&unit, duration).await.is_ok());
            }
            counters
                .delivered
                .fetch_add(u64::from(sent > 0), Ordering::Relaxed);
            counters
                .bytes_out
                .fetch_add(sent * unit.len() as u64, Ordering::Relaxed);
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
        async fn send_unit(&self, _: &[u8], _: Duration) -> Result<()> {
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
            tx.send((vec![0; len], Duration::from_millis(33)))
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
        tx.send((vec![0; 10], Duration::ZERO)).await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 0);
    }
}
