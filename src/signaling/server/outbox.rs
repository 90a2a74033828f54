//! One client's outbound queue: bounded in frames and in bytes, each frame charged to the
//! client's budget and the server's total until it is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

use super::OUTBOUND_BYTES;

pub(super) enum Outbound {
    Text(Utf8Bytes),
    Ping,
    Close(u16, &'static str),
}

impl Outbound {
    /// What it counts against the client's byte budget.
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Ping | Self::Close(..) => 0,
        }
    }
}

/// A queued frame and the bytes it holds against its client's budget and the server's
/// total, given back when it is dropped: written, or thrown away with a writer that gave
/// up.
pub(super) struct Queued {
    pub(super) out: Outbound,
    _charge: Charge,
}

struct Charge {
    n: usize,
    client: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.client.fetch_sub(self.n, Ordering::Relaxed);
        self.total.fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// One client's outbound queue, bounded in frames and in bytes; the writer task drains it.
#[derive(Clone)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Queued>,
    kick: Arc<Notify>,
    queued: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Outbox {
    /// `total` counts what is queued for every client (the `/metrics` gauge).
    pub(super) fn new(
        tx: mpsc::Sender<Queued>,
        kick: Arc<Notify>,
        total: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            tx,
            kick,
            queued: Arc::default(),
            total,
        }
    }

    fn charge(&self, out: Outbound) -> Queued {
        let n = out.len();
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
        Queued {
            out,
            _charge: Charge {
                n,
                client: self.queued.clone(),
                total: self.total.clone(),
            },
        }
    }

    /// Queues a frame; a client past either bound is disconnected rather than buffered
    /// without bound.
    pub(super) fn push(&self, out: Outbound) {
        if self.queued.load(Ordering::Relaxed) + out.len() > OUTBOUND_BYTES
            || self.tx.try_send(self.charge(out)).is_err()
        {
            self.kick.notify_one();
        }
    }

    /// Queues a control frame (ping, close), which the byte budget does not refuse.
    pub(super) fn push_control(&self, out: Outbound) -> bool {
        self.tx.try_send(self.charge(out)).is_ok()
    }

    pub(super) fn kick(&self) {
        self.kick.notify_one();
    }

    /// The same client's queue (clones share it).
    pub(super) fn same(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.queued, &other.queued)
    }
}
