//! Accepting connections: who may connect at all (loopback only or the LAN too, so many
//! per address), the TLS handshake, and HTTP/1.1 with a deadline for request headers.
//! Each connection runs on its own task, so one slow client never holds up the others.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::sync::LockExt;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// How long connections get to finish when the server stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Who may open a connection: the first check, before a byte is read.
pub(super) struct Gate {
    /// Off: only this machine (loopback) may connect; the desktop app's default.
    lan_open: AtomicBool,
    /// Connections one address may hold at once (0: no cap).
    max_per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    pub(super) refused: AtomicU64,
}

/// Why [`Gate::admit`] said no.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    NotLoopback,
    TooManyFromAddress,
}

impl Gate {
    pub(super) fn new(lan_open: bool, max_per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            lan_open: AtomicBool::new(lan_open),
            max_per_ip,
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    pub(super) fn set_lan_open(&self, open: bool) {
        self.lan_open.store(open, Ordering::Relaxed);
    }

    pub(super) fn lan_open(&self) -> bool {
        self.lan_open.load(Ordering::Relaxed)
    }

    /// Whether `ip` may talk to the server at all (the LAN rule only; no slot taken).
    pub(super) fn lets_in(&self, ip: IpAddr) -> bool {
        ip.to_canonical().is_loopback() || self.lan_open()
    }

    /// A slot for a connection from `ip`, given back when the last clone of it drops.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = ip.to_canonical();
        let refuse = |why| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if !self.lets_in(ip) {
            return refuse(Refusal::NotLoopback);
        }
        let mut open = self.open.locked();
        let n = open.entry(ip).or_insert(0);
        if self.max_per_ip != 0 && *n >= self.max_per_ip {
            drop(open);
            return refuse(Refusal::TooManyFromAddress);
        }
        *n += 1;
        Ok(Slot {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` now.
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        self.open.locked().get(&ip).copied().unwrap_or(0)
    }
}

/// One admitted connection. It travels with the request into an upgraded WebSocket, so a
/// WebSocket keeps its address's slot for as long as it lives.
pub(super) struct Slot {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.gate.open.locked();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Gone addresses take no memory.
                open.remove(&self.ip);
            }
        }
    }
}

/// Limits of the HTTP layer.
#[derive(Clone)]
pub(super) struct HttpLimits {
    /// A request's headers, the first or the next on a kept-alive connection, must be
    /// complete within this (slow senders and idle connections are closed).
    pub(super) header_timeout: Duration,
}

/// Accepts until `stop`, then gives open connections [`DRAIN_LIMIT`] to finish.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    gate: Arc<Gate>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, as axum does.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let slot = match gate.admit(peer.ip()) {
                    Ok(slot) => Arc::new(slot),
                    Err(why) => {
                        tracing::debug!(%peer, ?why, "connection refused");
                        continue;
                    }
                };
                let conn = Conn { peer, slot, app: app.clone(), limits: limits.clone(), stop: stop.clone() };
                match tls.clone() {
                    None => conns.spawn(conn.http(tcp)),
                    Some(acceptor) => conns.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => conn.http(stream).await,
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }),
                };
            }
        }
    }
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

struct Conn {
    peer: SocketAddr,
    slot: Arc<Slot>,
    app: Router,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn http<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            slot,
            app,
            limits,
            mut stop,
        } = self;
        // Handlers see the peer's address (`ConnectInfo`) and its slot.
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            app.clone().oneshot(req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
            }
            _ = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Resolves once `stop` says so (a plain future, so no guard is held across `select!`).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Lets the process hold as many sockets as its hard limit allows: the usual soft limit
/// of 1024 is a few hundred idle connections from an outage.
pub(super) fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(
                    from = lim.rlim_cur,
                    to = lim.rlim_max,
                    "open-file limit raised"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_closed_gate_lets_only_this_machine_in() {
        let gate = Gate::new(false, 0);
        assert!(gate.admit(ip("127.0.0.1")).is_ok());
        assert!(gate.admit(ip("::1")).is_ok());
        assert!(gate.admit(ip("::ffff:127.0.0.1")).is_ok());
        assert_eq!(
            gate.admit(ip("192.168.1.20")).err(),
            Some(Refusal::NotLoopback)
        );
        gate.set_lan_open(true);
        assert!(gate.admit(ip("192.168.1.20")).is_ok());
        assert_eq!(gate.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_address_holds_at_most_its_share_of_connections_until_one_closes() {
        let gate = Gate::new(true, 2);
        let a = ip("10.0.0.1");
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refusal::TooManyFromAddress));
        // Another address is not affected, and the IPv4-mapped form is the same address.
        assert!(gate.admit(ip("10.0.0.2")).is_ok());
        assert!(gate.admit(ip("::ffff:10.0.0.1")).is_err());
        drop(first);
        let _third = gate.admit(a).expect("a place came free");
        assert_eq!(gate.open_from(a), 2);
    }

    #[test]
    fn addresses_leave_no_trace_once_their_connections_close() {
        let gate = Gate::new(true, 4);
        let slots: Vec<Slot> = (0..100)
            .map(|i| gate.admit(ip(&format!("10.0.1.{i}"))).unwrap())
            .collect();
        drop(slots);
        assert!(gate.open.locked().is_empty());
    }
}
