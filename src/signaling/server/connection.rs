//! One task per WebSocket connection: size and rate limits, heartbeats, a fast relay path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc};

use super::*;
use crate::signaling::protocol::{ClientMessage, ErrorCode, LeaveReason, ProtocolViolation};

/// A well-formed relay, parsed without building a tree of its payload.
/// Anything else (including a malformed relay) takes the general path, which
/// also produces the precise error.
#[derive(serde::Deserialize)]
pub(super) struct FastRelay<'a> {
    #[serde(rename = "type")]
    pub(super) kind: std::borrow::Cow<'a, str>,
    pub(super) to: String,
    #[serde(borrow)]
    pub(super) payload: &'a serde_json::value::RawValue,
}

impl<'a> FastRelay<'a> {
    pub(super) fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str::<FastRelay>(text)
            .ok()
            .filter(|r| r.kind == "relay" && !nested_deeper_than(r.payload.get(), MAX_DEPTH))
    }
}

/// serde_json's own limit, which the general path applies (`bad_json`); a raw payload is
/// captured without it, so the fast path checks.
const MAX_DEPTH: usize = 128;

/// Whether a JSON text nests arrays and objects deeper than `max` (strings skipped).
fn nested_deeper_than(json: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Token bucket for one connection.
pub(super) struct RateLimit {
    pub(super) tokens: f64,
    pub(super) last: Instant,
    pub(super) rate: f64,
    pub(super) burst: f64,
}

impl RateLimit {
    pub(super) fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(super) async fn connection(hub: Arc<Hub>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Queued>(OUTBOUND_QUEUE);
    let kick = Arc::new(Notify::new());
    let outbox = Outbox::new(tx, kick.clone(), hub.metrics.outbound_bytes.clone());
    let Some(id) = hub.register(outbox.clone()) else {
        hub.count_error(ErrorCode::ServerFull);
        let msg =
            ProtocolViolation::new(ErrorCode::ServerFull, "the server is full").into_message();
        let _ = sink.send(Message::Text(msg.to_json().into())).await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close_code::TRY_AGAIN_LATER,
                reason: "server full".into(),
            })))
            .await;
        return;
    };
    tracing::debug!(%id, "connected");

    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(32);
        // A client that stops reading must not hold this task (and its queue) forever.
        let timed = |r: Result<Result<(), axum::Error>, tokio::time::error::Elapsed>| {
            matches!(r, Ok(Ok(())))
        };
        // Everything already queued goes out with one flush (one syscall, not one per frame).
        while rx.recv_many(&mut batch, 32).await > 0 {
            for queued in batch.drain(..) {
                // Its bytes leave the budget when `queued` is dropped, written or not.
                let ok = match queued.out {
                    Outbound::Text(t) => timed(
                        tokio::time::timeout(WRITE_TIMEOUT, sink.feed(Message::Text(t))).await,
                    ),
                    Outbound::Ping => timed(
                        tokio::time::timeout(
                            WRITE_TIMEOUT,
                            sink.feed(Message::Ping(Default::default())),
                        )
                        .await,
                    ),
                    Outbound::Close(code, reason) => {
                        let close = Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        }));
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(close)).await;
                        return;
                    }
                };
                if !ok {
                    return;
                }
            }
            if !timed(tokio::time::timeout(WRITE_TIMEOUT, sink.flush()).await) {
                return;
            }
        }
    });
    let writer_abort = writer.abort_handle();

    let cfg = &hub.config;
    let mut limit = RateLimit::new(cfg.rate_per_sec, cfg.rate_burst);
    let mut flood = 0u32;
    let mut last_seen = Instant::now();
    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break LeaveReason::Disconnected };
                last_seen = Instant::now();
                if matches!(frame, Message::Close(_)) {
                    break LeaveReason::Left;
                }
                // Every frame counts, pings and binary ones too.
                if !limit.take() {
                    flood += 1;
                    if flood > cfg.flood_close_after {
                        outbox.push_control(Outbound::Close(close_code::POLICY, "rate limit exceeded"));
                        break LeaveReason::Disconnected;
                    }
                    hub.refuse(&id, ProtocolViolation::new(
                        ErrorCode::RateLimited,
                        format!("more than {} messages per second; message dropped", cfg.rate_per_sec),
                    ));
                    continue;
                }
                flood = 0;
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        hub.refuse(&id, ProtocolViolation::new(
                            ErrorCode::BinaryUnsupported,
                            "binary frames are not part of the protocol; send JSON text",
                        ));
                        continue;
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
                };
                if text.len() > cfg.max_message_bytes {
                    hub.refuse(&id, ProtocolViolation::new(
                        ErrorCode::TooLarge,
                        format!("message of {} bytes exceeds {} bytes", text.len(), cfg.max_message_bytes),
                    ));
                    continue;
                }
                if let Some(relay) = FastRelay::parse(text.as_str()) {
                    hub.metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                    if let Err(mut v) = hub.relay(&id, &relay.to, relay.payload.get()) {
                        v.request = Some("relay".into());
                        hub.refuse(&id, v);
                    }
                    continue;
                }
                match ClientMessage::parse(text.as_str()) {
                    Ok(msg) => hub.handle(&id, msg),
                    Err(v) => hub.refuse(&id, v),
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > cfg.heartbeat_timeout {
                    outbox.push_control(Outbound::Close(close_code::GOING_AWAY, "heartbeat timeout"));
                    break LeaveReason::TimedOut;
                }
                if !outbox.push_control(Outbound::Ping) {
                    break LeaveReason::Disconnected;
                }
            }
            _ = kick.notified() => {
                outbox.push_control(Outbound::Close(close_code::TRY_AGAIN_LATER, "disconnected by server"));
                break LeaveReason::Disconnected;
            }
        }
    };
    tracing::debug!(%id, ?reason, "connection ended");
    hub.disconnect(&id, reason);
    drop(outbox);
    // Finish the closing handshake: read until the client's close frame so that
    // unread bytes don't turn our close into a TCP reset that eats the close frame.
    // A dead peer must not hold the task, hence the bound.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = writer.await;
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    // Still writing to a client that does not read: give up on it, and on its queue.
    writer_abort.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_leaves_too_deep_payloads_to_the_general_one() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let relay = |payload: &str| format!(r#"{{"type":"relay","to":"x","payload":{payload}}}"#);
        assert!(FastRelay::parse(&relay(&deep(128))).is_some());
        assert!(FastRelay::parse(&relay(&deep(30_000))).is_none());
        // Brackets inside strings are text, escaped quotes included.
        let quoted = format!(r#"{{"s":"\"{}"}}"#, "[".repeat(1000));
        assert!(FastRelay::parse(&relay(&quoted)).is_some());
        // The general path then refuses it as the protocol says.
        let err = ClientMessage::parse(&relay(&deep(30_000))).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
    }
}
