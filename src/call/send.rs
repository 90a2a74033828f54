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
) {
    tokio::spawn(async move {
        while let Some((unit, duration)) = units.recv().await {
            let mut any = false;
            for (_, sender) in fanout.snapshot() {
                // Not negotiated yet, or the peer is going away: nothing to do.
                any |= sender.send_unit(&unit, duration).await.is_ok();
            }
            counters
                .delivered
                .fetch_add(u64::from(any), Ordering::Relaxed);
        }
    });
}
