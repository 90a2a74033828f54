//! Counters for `/metrics` (Prometheus text format).

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::signaling::protocol::ErrorCode;

#[derive(Default)]
pub(super) struct Metrics {
    pub(super) connections_total: AtomicU64,
    pub(super) messages_received: AtomicU64,
    pub(super) messages_relayed: AtomicU64,
    pub(super) errors: Mutex<HashMap<ErrorCode, u64>>,
    /// Shared with every client's outbox.
    pub(super) outbound_bytes: Arc<AtomicUsize>,
    /// Ring timers not yet fired or stopped.
    pub(super) ring_timers: Arc<AtomicUsize>,
}

/// Counters exported at `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub connections: usize,
    pub connections_total: u64,
    /// Bytes queued for clients that their writers have not sent yet.
    pub outbound_bytes: usize,
    pub rooms: usize,
    /// Members whose connection was lost and who may still resume.
    pub away: usize,
    pub calls: usize,
    /// Timers of calls that are ringing (one each; none may outlive its call).
    pub ring_timers: usize,
    /// Echo peers in test calls now.
    pub test_calls: usize,
    pub messages_received: u64,
    pub messages_relayed: u64,
    pub errors: Vec<(ErrorCode, u64)>,
}

impl MetricsSnapshot {
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "confab_connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections.to_string(),
        );
        metric(
            "confab_connections_total",
            "counter",
            "WebSocket connections accepted.",
            self.connections_total.to_string(),
        );
        metric(
            "confab_outbound_bytes",
            "gauge",
            "Bytes queued for clients and not yet written.",
            self.outbound_bytes.to_string(),
        );
        metric(
            "confab_rooms",
            "gauge",
            "Rooms with at least one member.",
            self.rooms.to_string(),
        );
        metric(
            "confab_calls",
            "gauge",
            "Ringing or accepted calls.",
            self.calls.to_string(),
        );
        metric(
            "confab_members_away",
            "gauge",
            "Members whose connection was lost, kept for the resume grace period.",
            self.away.to_string(),
        );
        metric(
            "confab_ring_timers",
            "gauge",
            "Timers of ringing calls.",
            self.ring_timers.to_string(),
        );
        metric(
            "confab_test_calls",
            "gauge",
            "Echo peers in test calls.",
            self.test_calls.to_string(),
        );
        metric(
            "confab_messages_received_total",
            "counter",
            "Client messages received.",
            self.messages_received.to_string(),
        );
        metric(
            "confab_messages_relayed_total",
            "counter",
            "Relay payloads delivered.",
            self.messages_relayed.to_string(),
        );
        let _ = writeln!(
            s,
            "# HELP confab_errors_total Errors sent to clients, by code.\n# TYPE confab_errors_total counter"
        );
        for code in ErrorCode::ALL {
            let n = self
                .errors
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(s, "confab_errors_total{{code=\"{code}\"}} {n}");
        }
        s
    }
}

impl Hub {
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let st = self.read();
        let away = st.clients.values().filter(|c| c.away.is_some()).count();
        let mut errors: Vec<_> = self
            .metrics
            .errors
            .locked()
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        errors.sort_by_key(|(c, _)| c.as_str());
        MetricsSnapshot {
            connections: st.clients.len() - away,
            connections_total: self.metrics.connections_total.load(Ordering::Relaxed),
            outbound_bytes: self.metrics.outbound_bytes.load(Ordering::Relaxed),
            rooms: st.rooms.len(),
            away,
            calls: st.calls.len(),
            ring_timers: self.metrics.ring_timers.load(Ordering::Relaxed),
            test_calls: self.echo.as_ref().map_or(0, Echo::active),
            messages_received: self.metrics.messages_received.load(Ordering::Relaxed),
            messages_relayed: self.metrics.messages_relayed.load(Ordering::Relaxed),
            errors,
        }
    }

    pub(super) fn count_error(&self, code: ErrorCode) {
        *self.metrics.errors.locked().entry(code).or_default() += 1;
    }
}
