//! A Janus API client over WebSocket (`janus-protocol`): one session, its keepalive,
//! plugin handles, and requests matched to their replies by transaction.
//!
//! One task reads the socket: a reply goes to the request waiting for its transaction,
//! everything else (plugin news, webrtcup, hangup, ...) to the news channel. Another
//! writes, so a request never waits on a slow reader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::SfuError;
use super::videoroom::{self, Incoming, Jsep};
use crate::call::IceCandidate;
use crate::sync::LockExt;

/// Janus drops a session silent for 60 s (its default `session_timeout`).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// How long a request may go unanswered.
const REPLY_WITHIN: Duration = Duration::from_secs(10);

/// What Janus says outside of replies.
#[derive(Debug, Clone, PartialEq)]
pub enum News {
    /// A plugin event on one of our handles (`publishers`, `updated`, ...).
    Event {
        handle: u64,
        data: Value,
        jsep: Option<Jsep>,
    },
    /// webrtcup, media, hangup, slowlink, detached, ...
    Other { kind: String, frame: Value },
    /// The WebSocket closed: the session is gone.
    Closed(String),
}

/// A reply: `success` data, a plugin's data and its JSEP.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub data: Value,
    pub plugin: Value,
    pub jsep: Option<Jsep>,
}

struct Waiting {
    reply: oneshot::Sender<Result<Reply, SfuError>>,
    /// Keepalive and trickle are answered by the `ack` itself.
    ack_is_reply: bool,
}

struct Inner {
    out: mpsc::UnboundedSender<Message>,
    waiting: Mutex<HashMap<String, Waiting>>,
    next: AtomicU64,
    session: AtomicU64,
    /// Janus's `apisecret`, sent with every request when Janus wants one.
    api_secret: Option<String>,
}

/// A Janus session. Cheap to clone; the session ends when the last clone is dropped
/// (the socket closes and Janus times the session out) or with [`Janus::destroy`].
#[derive(Clone)]
pub struct Janus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Janus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Janus(session {})", self.session())
    }
}

/// A handle attached to the VideoRoom plugin.
#[derive(Debug, Clone)]
pub struct Handle {
    janus: Janus,
    pub id: u64,
}

impl Janus {
    /// Connects, creates a session and keeps it alive. A keepalive that fails ends the
    /// news with `Closed`, as a closed socket does: either way the session is gone.
    pub async fn connect(
        url: &str,
        api_secret: Option<&str>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<News>), SfuError> {
        let connect_err = |reason: String| SfuError::Connect {
            url: url.to_owned(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_err(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().expect("valid header"),
        );
        let (ws, _) = tokio::time::timeout(REPLY_WITHIN, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (news_tx, news) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            out,
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            session: AtomicU64::new(0),
            api_secret: api_secret.map(str::to_owned),
        });
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let weak = Arc::downgrade(&inner);
        let closed_tx = news_tx.clone();
        tokio::spawn(async move {
            let why = loop {
                let text = match stream.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => break format!("closed: {f:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e.to_string(),
                    None => break "closed".into(),
                };
                let Some(inner) = weak.upgrade() else { return };
                match videoroom::parse(&text) {
                    Ok(frame) => inner.dispatch(frame, &news_tx),
                    Err(e) => tracing::warn!("janus: {e}"),
                }
            };
            if let Some(inner) = weak.upgrade() {
                for (_, w) in inner.waiting.locked().drain() {
                    let _ = w.reply.send(Err(SfuError::Closed));
                }
            }
            let _ = news_tx.send(News::Closed(why));
        });
        let janus = Self { inner };
        let created = janus.call("create", None, None, Value::Null).await?;
        let session = created.data["id"]
            .as_u64()
            .ok_or_else(|| SfuError::Protocol(format!("create: {}", created.data)))?;
        janus.inner.session.store(session, Ordering::Release);
        let weak = Arc::downgrade(&janus.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let janus = Janus { inner };
                if let Err(e) = janus.call("keepalive", None, None, Value::Null).await {
                    tracing::warn!("janus keepalive: {e}");
                    let _ = closed_tx.send(News::Closed(format!("keepalive failed: {e}")));
                    break;
                }
            }
        });
        Ok((janus, news))
    }

    pub fn session(&self) -> u64 {
        self.inner.session.load(Ordering::Acquire)
    }

    /// Attaches a handle to the VideoRoom plugin.
    pub async fn attach(&self) -> Result<Handle, SfuError> {
        let extra = serde_json::json!({ "plugin": videoroom::PLUGIN });
        let r = self.call("attach", None, None, extra).await?;
        let id = r.data["id"]
            .as_u64()
            .ok_or_else(|| SfuError::Protocol(format!("attach: {}", r.data)))?;
        Ok(Handle {
            janus: self.clone(),
            id,
        })
    }

    /// Ends the session and every handle in it.
    pub async fn destroy(&self) -> Result<(), SfuError> {
        self.call("destroy", None, None, Value::Null)
            .await
            .map(drop)
    }

    /// Sends one Janus API request and waits for its reply: `success`, or for
    /// asynchronous plugin requests the `event` after the `ack`.
    async fn call(
        &self,
        janus: &str,
        handle: Option<u64>,
        jsep: Option<&Jsep>,
        extra: Value,
    ) -> Result<Reply, SfuError> {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let transaction = format!("c{n}");
        let session = match self.session() {
            0 => None,
            s => Some(s),
        };
        let mut frame = videoroom::envelope(janus, &transaction, session, handle);
        if let Some(secret) = &self.inner.api_secret {
            frame["apisecret"] = secret.as_str().into();
        }
        if let (Value::Object(f), Value::Object(e)) = (&mut frame, extra) {
            f.extend(e);
        }
        if let Some(j) = jsep {
            frame["jsep"] = j.to_json();
        }
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.locked().insert(
            transaction.clone(),
            Waiting {
                reply: tx,
                ack_is_reply: matches!(janus, "keepalive" | "trickle"),
            },
        );
        tracing::debug!(%frame, "janus <-");
        if self
            .inner
            .out
            .send(Message::text(frame.to_string()))
            .is_err()
        {
            self.inner.waiting.locked().remove(&transaction);
            return Err(SfuError::Closed);
        }
        match tokio::time::timeout(REPLY_WITHIN, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SfuError::Closed),
            Err(_) => {
                self.inner.waiting.locked().remove(&transaction);
                Err(SfuError::Timeout(janus.to_owned()))
            }
        }
    }
}

impl Inner {
    fn dispatch(&self, frame: Incoming, news: &mpsc::UnboundedSender<News>) {
        tracing::debug!(?frame, "janus ->");
        let finish = |transaction: &str, r: Result<Reply, SfuError>| {
            if let Some(w) = self.waiting.locked().remove(transaction) {
                let _ = w.reply.send(r);
            }
        };
        match frame {
            Incoming::Success {
                transaction,
                data,
                plugin,
            } => {
                let plugin = plugin.unwrap_or(Value::Null);
                let r = match videoroom::plugin_error(&plugin) {
                    Some(e) => Err(e),
                    None => Ok(Reply {
                        data,
                        plugin,
                        jsep: None,
                    }),
                };
                finish(&transaction, r);
            }
            Incoming::Error {
                transaction,
                code,
                reason,
            } => finish(&transaction, Err(SfuError::Janus { code, reason })),
            Incoming::Ack { transaction } => {
                let mut waiting = self.waiting.locked();
                if waiting.get(&transaction).is_some_and(|w| w.ack_is_reply)
                    && let Some(w) = waiting.remove(&transaction)
                {
                    let _ = w.reply.send(Ok(Reply::default()));
                }
            }
            Incoming::Event {
                transaction,
                handle,
                data,
                jsep,
            } => {
                let mine = transaction
                    .as_deref()
                    .is_some_and(|t| self.waiting.locked().contains_key(t));
                match transaction {
                    Some(t) if mine => {
                        let r = match videoroom::plugin_error(&data) {
                            Some(e) => Err(e),
                            None => Ok(Reply {
                                data: Value::Null,
                                plugin: data,
                                jsep,
                            }),
                        };
                        finish(&t, r);
                    }
                    _ => {
                        let _ = news.send(News::Event { handle, data, jsep });
                    }
                }
            }
            Incoming::Other { kind, frame } => {
                let _ = news.send(News::Other { kind, frame });
            }
        }
    }
}

impl Handle {
    /// A plugin request, with our JSEP if any; the plugin's reply and its JSEP.
    pub async fn request(&self, body: Value, jsep: Option<&Jsep>) -> Result<Reply, SfuError> {
        let extra = serde_json::json!({ "body": body });
        self.janus.call("message", Some(self.id), jsep, extra).await
    }

    /// Trickles one of our candidates (None: gathering is complete).
    pub async fn trickle(&self, candidate: Option<&IceCandidate>) -> Result<(), SfuError> {
        let candidate = match candidate {
            Some(c) => serde_json::to_value(c)?,
            None => serde_json::json!({ "completed": true }),
        };
        let extra = serde_json::json!({ "candidate": candidate });
        self.janus
            .call("trickle", Some(self.id), None, extra)
            .await
            .map(drop)
    }

    pub async fn detach(&self) -> Result<(), SfuError> {
        self.janus
            .call("detach", Some(self.id), None, Value::Null)
            .await
            .map(drop)
    }
}
