//! Connectivity checks that arrive before we can answer them.
//!
//! The answering side starts its checks as soon as it has applied our offer, and they
//! usually overtake its answer, which travels through the signaling server. Until the
//! answer is applied rtc-ice has no remote credentials: it drops such a check ("password
//! is empty"), and being controlled by default before it starts, even switches role on
//! it. The sender then retries only after its retransmission timeout (500 ms in some
//! stacks). So our sockets hold binding requests until a remote description is applied,
//! then hand them to the stack in order: the agent answers them, and learns the sender's
//! address, the moment it can. An ICE restart of ours shuts the gate again until the
//! answer (or a rollback).
//!
//! When we answer, we are controlled, and rtc-ice does not respond to a nominating
//! check (USE-CANDIDATE) on a pair whose own check has not succeeded yet: it sends a
//! triggered check and leaves the nomination to the sender's retransmission (hundreds of
//! milliseconds in some stacks). So the socket keeps a copy of such a nomination and
//! hands it to the stack again right after our check on that path succeeds: the agent
//! then answers it and selects the pair at once.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rtc::stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, is_stun_message};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

use crate::sync::LockExt;

/// More early checks than this are not worth keeping (a peer sends one per pair).
const MAX_HELD: usize = 64;
/// Nominations waiting for their path's check, and paths known to work, kept at most.
const MAX_NOMINATIONS: usize = 16;
const MAX_PATHS: usize = 256;

/// Shut until the connection has a remote description; shared by its sockets.
#[derive(Default)]
pub(super) struct Gate {
    open: AtomicBool,
    /// The receive loops waiting on a shut gate with checks held.
    waiting: std::sync::Mutex<Vec<Waker>>,
}

impl Gate {
    /// The stack can answer checks now: what was held goes to it.
    pub(super) fn open(&self) {
        if !self.open.swap(true, Ordering::AcqRel) {
            for w in self.waiting.locked().drain(..) {
                w.wake();
            }
        }
    }

    /// An ICE restart of ours: the remote's checks carry credentials we learn from its
    /// answer (those under the old ones fail from now on either way).
    pub(super) fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

/// Nominations that came before our own check on their path succeeded.
#[derive(Default)]
struct Nominations {
    waiting: Vec<(Vec<u8>, RecvMeta)>,
    /// Remote addresses our checks reached (a success response came back).
    working: std::collections::HashSet<SocketAddr>,
    /// The credentials the checks come with: new ones (an ICE restart) start over.
    username: Vec<u8>,
}

impl Nominations {
    /// Looks at a datagram on its way to the stack; returns a nomination to hand over
    /// again now that its path works.
    fn observe(&mut self, datagram: &[u8], meta: &RecvMeta) -> Vec<(Vec<u8>, RecvMeta)> {
        if !is_stun_message(datagram) {
            return Vec::new();
        }
        let mut m = Message::new();
        if m.unmarshal_binary(datagram).is_err() {
            return Vec::new();
        }
        if m.typ == BINDING_REQUEST {
            if let Ok(user) = m.get(ATTR_USERNAME)
                && user != self.username
            {
                self.username = user;
                self.working.clear();
                self.waiting.clear();
            }
            if m.contains(ATTR_USE_CANDIDATE) && !self.working.contains(&meta.addr) {
                self.waiting.retain(|(_, w)| w.addr != meta.addr);
                if self.waiting.len() < MAX_NOMINATIONS {
                    self.waiting.push((datagram.to_vec(), *meta));
                }
            }
            return Vec::new();
        }
        if m.typ == BINDING_SUCCESS {
            if self.working.len() >= MAX_PATHS {
                self.working.clear();
            }
            self.working.insert(meta.addr);
            let (now, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|(_, w)| w.addr == meta.addr);
            self.waiting = still;
            return now;
        }
        Vec::new()
    }
}

/// Whether `datagram` is a STUN binding request (a connectivity check).
fn is_check(datagram: &[u8]) -> bool {
    if !is_stun_message(datagram) {
        return false;
    }
    let mut m = Message::new();
    m.unmarshal_binary(datagram).is_ok() && m.typ == BINDING_REQUEST
}

/// webrtc-rs's tokio runtime, with sockets that hold early checks behind `gate`.
pub(super) struct GatedRuntime {
    inner: TokioRuntime,
    gate: Arc<Gate>,
}

impl GatedRuntime {
    pub(super) fn new(gate: Arc<Gate>) -> Self {
        Self {
            inner: TokioRuntime,
            gate,
        }
    }
}

impl fmt::Debug for GatedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatedRuntime")
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for GatedRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }
    fn spawn_reactor(&self, pool: usize, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(pool, future)
    }
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(GatedSocket {
            inner: self.inner.wrap_udp_socket(socket)?,
            gate: self.gate.clone(),
            held: Default::default(),
            nominations: Default::default(),
        }))
    }
    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }
    fn connect_tcp<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote)
    }
    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }
    fn now(&self) -> Instant {
        self.inner.now()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }
    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }
    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }
    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.inner.yield_now()
    }
    fn name(&self) -> &'static str {
        "tokio (early checks held)"
    }
}

struct GatedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    gate: Arc<Gate>,
    held: std::sync::Mutex<VecDeque<(Vec<u8>, RecvMeta)>>,
    nominations: std::sync::Mutex<Nominations>,
}

impl fmt::Debug for GatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatedSocket({:?})", self.inner)
    }
}

impl GatedSocket {
    /// The first `n` received messages go to the stack: a nomination whose path now
    /// works follows them, ahead of anything newer.
    fn observe(&self, n: usize, bufs: &[IoSliceMut<'_>], meta: &[RecvMeta]) {
        let mut nominations = self.nominations.locked();
        for i in 0..n {
            let m = meta[i];
            if m.stride < m.len {
                continue;
            }
            let again = nominations.observe(&bufs[i][..m.len], &m);
            if !again.is_empty() {
                let mut held = self.held.locked();
                for (k, nomination) in again.into_iter().enumerate() {
                    let at = k.min(held.len());
                    held.insert(at, nomination);
                }
            }
        }
    }

    /// Keeps the single-datagram checks among `n` received messages and moves the rest
    /// to the front; returns how many are left.
    fn hold_checks(&self, n: usize, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut kept = 0;
        for i in 0..n {
            let m = meta[i];
            // A coalesced (GRO) message is media, never a lone check.
            let single = m.stride >= m.len;
            if single && is_check(&bufs[i][..m.len]) {
                let mut held = self.held.locked();
                if held.len() < MAX_HELD {
                    held.push_back((bufs[i][..m.len].to_vec(), m));
                }
                continue;
            }
            if kept != i {
                let (front, back) = bufs.split_at_mut(i);
                front[kept][..m.len].copy_from_slice(&back[0][..m.len]);
                meta[kept] = m;
            }
            kept += 1;
        }
        kept
    }
}

impl AsyncUdpSocket for GatedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if self.gate.is_open() {
            if let Some((datagram, m)) = self.held.locked().pop_front()
                && let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut())
                && buf.len() >= datagram.len()
            {
                buf[..datagram.len()].copy_from_slice(&datagram);
                *slot = m;
                self.observe(1, bufs, meta);
                return Poll::Ready(Ok(1));
            }
            let got = self.inner.poll_recv(cx, bufs, meta);
            if let Poll::Ready(Ok(n)) = got {
                self.observe(n, bufs, meta);
            }
            return got;
        }
        // Woken when the gate opens, as well as by the socket.
        {
            let mut waiting = self.gate.waiting.locked();
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
        }
        loop {
            match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => {
                    let kept = self.hold_checks(n, bufs, meta);
                    if kept > 0 {
                        self.observe(kept, bufs, meta);
                        return Poll::Ready(Ok(kept));
                    }
                    if self.gate.is_open() {
                        // Opened meanwhile: hand over what is held.
                        return self.poll_recv(cx, bufs, meta);
                    }
                }
                other => return other,
            }
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{BINDING_SUCCESS, Setter, TransactionId};

    fn stun(typ: rtc::stun::message::MessageType) -> Vec<u8> {
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![Box::new(typ), Box::new(TransactionId::new())];
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn only_binding_requests_are_checks() {
        assert!(is_check(&stun(BINDING_REQUEST)));
        assert!(!is_check(&stun(BINDING_SUCCESS)));
        // An RTP packet and a DTLS record are not STUN at all.
        assert!(!is_check(&[0x80, 0x66, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(!is_check(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    }

    /// Two sockets on loopback: `a` gated, `b` plain.
    async fn pair(gate: Arc<Gate>) -> (Arc<dyn AsyncUdpSocket>, tokio::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        let a = GatedRuntime::new(gate).wrap_udp_socket(a).unwrap();
        let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (a, b)
    }

    async fn recv(a: &Arc<dyn AsyncUdpSocket>) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let (n, _) = a.recv_from(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn checks_wait_for_the_gate_and_other_traffic_does_not() {
        let gate = Arc::new(Gate::default());
        let (a, b) = pair(gate.clone()).await;
        let to = a.local_addr().unwrap();
        let (check, media) = (stun(BINDING_REQUEST), vec![0x80, 0x66, 0, 1]);
        b.send_to(&check, to).await.unwrap();
        b.send_to(&media, to).await.unwrap();
        // The check sent first is held; the media behind it passes.
        assert_eq!(recv(&a).await, media);
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { recv(&a).await }
        });
        // Once the gate opens, the held check arrives as it was sent.
        gate.open();
        assert_eq!(waiting.await.unwrap(), check);
        // From then on checks pass straight through.
        let later = stun(BINDING_REQUEST);
        b.send_to(&later, to).await.unwrap();
        assert_eq!(recv(&a).await, later);
    }

    /// `name`'s value in `sdp` (`a=name:value`).
    fn attr<'a>(sdp: &'a str, name: &str) -> &'a str {
        let prefix = format!("a={name}:");
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap()
            .trim_end()
    }

    /// A STUN message `typ` with transaction `tid`, `extra` attributes, and the integrity
    /// of `pwd` and a fingerprint.
    fn signed(
        typ: rtc::stun::message::MessageType,
        tid: TransactionId,
        extra: Vec<Box<dyn Setter>>,
        pwd: &str,
    ) -> Message {
        use rtc::stun::fingerprint::FINGERPRINT;
        use rtc::stun::integrity::MessageIntegrity;
        let crypto = rtc::stun::crypto::default_provider().unwrap();
        let mut setters: Vec<Box<dyn Setter>> = vec![Box::new(typ), Box::new(tid)];
        setters.extend(extra);
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(
                pwd.to_owned(),
                crypto.crypto(),
            ),
        ));
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m
    }

    /// A connectivity check from a remote agent calling itself `ufrag` (controlling, and
    /// nominating, if `controlling`), to the agent whose credentials are `to_ufrag`/`to_pwd`.
    fn check(ufrag: &str, to_ufrag: &str, to_pwd: &str, controlling: bool) -> Message {
        use rtc::ice::attributes::control::{AttrControlled, AttrControlling};
        use rtc::ice::attributes::priority::PriorityAttr;
        use rtc::ice::attributes::use_candidate::UseCandidateAttr;
        use rtc::stun::textattrs::TextAttribute;
        let mut extra: Vec<Box<dyn Setter>> = vec![
            Box::new(TextAttribute::new(
                ATTR_USERNAME,
                format!("{to_ufrag}:{ufrag}"),
            )),
            Box::new(PriorityAttr(1_862_270_975)),
        ];
        if controlling {
            extra.push(Box::new(AttrControlling(7)));
            extra.push(Box::new(UseCandidateAttr));
        } else {
            extra.push(Box::new(AttrControlled(7)));
        }
        signed(BINDING_REQUEST, TransactionId::new(), extra, to_pwd)
    }

    fn check_from(ufrag: &str, to_ufrag: &str, to_pwd: &str) -> Message {
        check(ufrag, to_ufrag, to_pwd, false)
    }

    /// An answerer whose first check overtakes its answer, and which never sends it again
    /// (some stacks wait 500 ms): the offerer answers it once the answer is applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_check_that_overtakes_the_answer_is_answered_once_the_answer_is_applied() {
        use super::super::{Peer, PeerConfig, PeerEvent};
        let (offerer, mut events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let (answerer, _answerer_events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let offer = offerer.create_offer().await.unwrap();
        offerer.set_local_description(&offer).await.unwrap();
        let host: SocketAddr = loop {
            match events.recv().await.expect("a host candidate") {
                PeerEvent::LocalCandidate(c) => {
                    let f: Vec<&str> = c.candidate.split_whitespace().collect();
                    break format!("{}:{}", f[4], f[5]).parse().unwrap();
                }
                _ => continue,
            }
        };

        // The remote agent is this socket, with credentials of its own.
        let (ufrag, pwd) = ("earlybird", "a-password-of-22-chars-at-least");
        let remote = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let check = check_from(
            ufrag,
            attr(&offer.sdp, "ice-ufrag"),
            attr(&offer.sdp, "ice-pwd"),
        );
        remote.send_to(&check.raw, host).await.unwrap();

        // Its answer, with its credentials, comes after the check: the signaling server
        // takes 100 ms to relay it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        answerer.set_remote_description(&offer).await.unwrap();
        let mut answer = answerer.create_answer().await.unwrap();
        answer.sdp = answer
            .sdp
            .replace(attr(&answer.sdp, "ice-ufrag"), ufrag)
            .replace(attr(&answer.sdp, "ice-pwd"), pwd);
        offerer.set_remote_description(&answer).await.unwrap();

        let answered = async {
            let mut buf = [0u8; 1500];
            loop {
                let (n, _) = remote.recv_from(&mut buf).await.unwrap();
                let mut m = Message::new();
                if m.unmarshal_binary(&buf[..n]).is_ok()
                    && m.typ == BINDING_SUCCESS
                    && m.transaction_id == check.transaction_id
                {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .expect("the early check was answered");
    }

    /// The first host candidate `events` announce, as an address.
    async fn first_host(
        events: &mut tokio::sync::mpsc::UnboundedReceiver<super::super::PeerEvent>,
    ) -> SocketAddr {
        loop {
            if let super::super::PeerEvent::LocalCandidate(c) =
                events.recv().await.expect("a host candidate")
            {
                let f: Vec<&str> = c.candidate.split_whitespace().collect();
                return format!("{}:{}", f[4], f[5]).parse().unwrap();
            }
        }
    }

    /// We answer, so we are controlled; the controlling side nominates a path at once,
    /// before our own check on it succeeded, and never repeats it: we answer the
    /// nomination as soon as our check on that path comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nomination_that_comes_before_our_check_succeeds_is_answered_when_it_does() {
        use super::super::{Peer, PeerConfig};
        use rtc::stun::xoraddr::XorMappedAddress;
        let (stranger, _stranger_events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let (answerer, mut events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        // The remote agent is this socket, with credentials of its own, in an offer.
        let (ufrag, pwd) = ("nominator", "a-password-of-22-chars-at-least");
        let remote = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut offer = stranger.create_offer().await.unwrap();
        offer.sdp = offer
            .sdp
            .replace(attr(&offer.sdp, "ice-ufrag"), ufrag)
            .replace(attr(&offer.sdp, "ice-pwd"), pwd);
        answerer.set_remote_description(&offer).await.unwrap();
        let answer = answerer.create_answer().await.unwrap();
        answerer.set_local_description(&answer).await.unwrap();
        let host = first_host(&mut events).await;
        let (our_ufrag, our_pwd) = (attr(&answer.sdp, "ice-ufrag"), attr(&answer.sdp, "ice-pwd"));

        let nomination = check(ufrag, our_ufrag, our_pwd, true);
        remote.send_to(&nomination.raw, host).await.unwrap();
        let answered = async {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = remote.recv_from(&mut buf).await.unwrap();
                let mut m = Message::new();
                if m.unmarshal_binary(&buf[..n]).is_err() {
                    continue;
                }
                if m.typ == BINDING_SUCCESS && m.transaction_id == nomination.transaction_id {
                    return;
                }
                if m.typ == BINDING_REQUEST {
                    // Our agent's own (triggered) check on the path: it succeeds.
                    let mapped = XorMappedAddress {
                        ip: from.ip(),
                        port: from.port(),
                    };
                    let ok = signed(
                        BINDING_SUCCESS,
                        m.transaction_id,
                        vec![Box::new(mapped)],
                        pwd,
                    );
                    remote.send_to(&ok.raw, from).await.unwrap();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .expect("the nomination was answered without being sent again");
    }
}
