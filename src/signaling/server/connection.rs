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
            .filter(|r| r.kind == "relay" && !needs_general_path(text))
    }
}

/// The deepest nesting serde_json's parser takes (its recursion limit of 128 is spent
/// before the 128th level opens).
const MAX_DEPTH: usize = 127;

/// Whether the general parser might refuse what the raw capture lets through: nesting
/// deeper than [`MAX_DEPTH`] anywhere in the message, or a number that may not fit an
/// f64 (a long one, or one with a three-digit exponent). Such messages are rare and the
/// general path decides them exactly. Strings are skipped.
fn needs_general_path(json: &str) -> bool {
    let b = json.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = &json[start..i];
                let exponent = number.find(['e', 'E']).map_or("", |e| &number[e + 1..]);
                if number.len() > 24 || exponent.trim_start_matches(['+', '-']).len() > 2 {
                    return true;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

const LIST_RATE_PER_SEC: f64 = 1.0;
const LIST_BURST: f64 = 5.0;

/// Whether the WebSocket layer refused a frame or message over [`HARD_FRAME_LIMIT`].
fn too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast_ref::<axum_tungstenite::Error>()
        .is_some_and(|e| matches!(e, axum_tungstenite::Error::Capacity(_)))
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

/// `ip` is where the client connects from, `host` the `Host` it asked for (both unknown
/// when served outside the accept loop).
pub(super) async fn connection(
    hub: Arc<Hub>,
    socket: WebSocket,
    ip: Option<std::net::IpAddr>,
    host: Option<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Queued>(OUTBOUND_QUEUE);
    let kick = Arc::new(Notify::new());
    let outbox = Outbox::new(tx, kick.clone(), hub.metrics.outbound_bytes.clone());
    // A `resume` makes this connection the member it names.
    let Some(mut id) = hub.register(outbox.clone(), ip, host) else {
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
    // A room list costs far more than it asks, so it has its own, lower rate.
    let mut lists = RateLimit::new(LIST_RATE_PER_SEC, LIST_BURST);
    let mut flood = 0u32;
    let mut last_seen = Instant::now();
    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The rest of a refused oversized frame is still unread: closing the socket at once
    // would send a reset that eats our close frame.
    let mut linger = false;
    // The link failed (as opposed to a goodbye or the server ending it): the member may
    // come back and resume.
    let mut lost = false;
    let reason = loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        if too_big(e) {
                            outbox.push_control(Outbound::Close(close_code::TOO_BIG, "message too big"));
                            linger = true;
                        } else {
                            lost = true;
                        }
                        break LeaveReason::Disconnected;
                    }
                    None => {
                        lost = true;
                        break LeaveReason::Disconnected;
                    }
                };
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
                    Ok(ClientMessage::ListRooms { .. }) if !lists.take() => {
                        let mut v = ProtocolViolation::new(
                            ErrorCode::RateLimited,
                            format!("more than {LIST_RATE_PER_SEC} room list per second; request dropped"),
                        );
                        v.request = Some("list_rooms".into());
                        hub.refuse(&id, v);
                    }
                    Ok(ClientMessage::Resume { token }) => match hub.resume(&id, &token) {
                        Ok(member) => id = member,
                        Err(mut v) => {
                            v.request = Some("resume".into());
                            hub.refuse(&id, v);
                        }
                    },
                    Ok(msg) => hub.handle(&id, msg),
                    Err(v) => hub.refuse(&id, v),
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > cfg.heartbeat_timeout {
                    outbox.push_control(Outbound::Close(close_code::GOING_AWAY, "heartbeat timeout"));
                    lost = true;
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
    hub.connection_ended(&id, &outbox, lost, reason);
    drop(outbox);
    // Finish the closing handshake: read until the client's close frame so that
    // unread bytes don't turn our close into a TCP reset that eats the close frame.
    // A dead peer must not hold the task, hence the bound.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = writer.await;
        if linger {
            // The stream can't be read past the refused frame; give the client time to
            // read the close and hang up itself.
            std::future::pending::<()>().await;
        }
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
        // The message's own object is one level: a payload may nest 126 deep, as the
        // general path's parser allows.
        assert!(FastRelay::parse(&relay(&deep(126))).is_some());
        assert!(ClientMessage::parse(&relay(&deep(126))).is_ok());
        assert!(FastRelay::parse(&relay(&deep(127))).is_none());
        assert!(ClientMessage::parse(&relay(&deep(127))).is_err());
        assert!(FastRelay::parse(&relay(&deep(30_000))).is_none());
        // Numbers an f64 may not hold go to the general path, which decides.
        assert!(FastRelay::parse(&relay("[1.5e-7, -42, 1e99]")).is_some());
        assert!(FastRelay::parse(&relay("-3868e66790284770579")).is_none());
        assert!(FastRelay::parse(&relay(&"9".repeat(400))).is_none());
        assert_eq!(
            ClientMessage::parse(&relay("-3868e66790284770579"))
                .unwrap_err()
                .code,
            ErrorCode::BadJson
        );
        // Brackets inside strings are text, escaped quotes included.
        let quoted = format!(r#"{{"s":"\"{}"}}"#, "[".repeat(1000));
        assert!(FastRelay::parse(&relay(&quoted)).is_some());
        // The general path then refuses it as the protocol says.
        let err = ClientMessage::parse(&relay(&deep(30_000))).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
    }
}
