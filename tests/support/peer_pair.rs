//! Test harness: two `Peer`s in one process, each driven by its own `Negotiator`, with the
//! `Signal`s relayed as JSON through channels (as the signaling server would carry them).
//! Descriptions can be delayed so candidates overtake them, or so both offers cross (glare).

use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab::call::{ConnectionState, MediaKind, Peer, PeerConfig, PeerEvent, RemoteMedia};
use confab::call::{LocalTrack, SignalingState};
use confab::call::{NegotiationStats, Negotiator, Signal};
use confab::netem::{self, Fate, Link, LinkConfig};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// Generous failure bound for anything network-ish on a loaded 2-core machine.
pub const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct LinkOptions {
    /// Extra latency for descriptions only; candidates pass immediately.
    pub description_delay: Duration,
    /// Route media through lossy UDP proxies (candidates are rewritten to point at them).
    pub loss: Option<Loss>,
    /// Neither side offers FEC, so only retransmission can repair a loss.
    pub without_fec: bool,
}

/// The link between the two peers' proxies, one [`Link`] per direction: every
/// `every_nth` datagram of at least `min_size` bytes is lost while `enabled` (big datagrams
/// are video RTP; STUN, RTCP and Opus stay untouched), and with `bottleneck` the link
/// carries at most that rate behind a [`QUEUE_LIMIT`] queue. With `retransmissions` off,
/// every RTX packet is dropped too, so no loss can be repaired.
#[derive(Debug, Clone)]
pub struct Loss {
    pub enabled: Arc<AtomicBool>,
    pub dropped: Arc<AtomicUsize>,
    /// RTP retransmissions that reached the link.
    pub retransmitted: Arc<AtomicUsize>,
    pub retransmissions: bool,
    /// Each direction's link while `enabled`; without the loss while not.
    pub config: LinkConfig,
    /// RTX payload types, read from the descriptions as they pass the relay.
    rtx_types: Arc<Mutex<HashSet<u8>>>,
    /// (SSRC, sequence number) of the RTP packets dropped: a retransmission without RTX
    /// comes back with the same pair.
    dropped_rtp: Arc<Mutex<HashSet<(u32, u16)>>>,
}

/// The deepest a shaped link's queue gets before it drops, like a router's buffer.
pub const QUEUE_LIMIT: Duration = Duration::from_millis(300);

impl Loss {
    pub fn new(every_nth: usize, min_size: usize) -> Self {
        Self {
            enabled: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicUsize::new(0)),
            retransmitted: Arc::new(AtomicUsize::new(0)),
            retransmissions: true,
            config: LinkConfig {
                loss: netem::Loss::EveryNth {
                    n: every_nth,
                    min_size,
                },
                queue_limit: QUEUE_LIMIT,
                ..LinkConfig::default()
            },
            rtx_types: Arc::default(),
            dropped_rtp: Arc::default(),
        }
    }

    /// A link that carries at most `bps` each way, and nothing dropped on purpose.
    pub fn bottleneck(bps: u64) -> Self {
        let mut l = Self::new(0, usize::MAX);
        l.config.loss = netem::Loss::None;
        l.config.rate_bps = bps;
        l.enabled.store(true, Ordering::SeqCst);
        l
    }

    pub fn without_retransmissions(mut self) -> Self {
        self.retransmissions = false;
        self
    }

    /// Is this datagram an RTP retransmission, on RTX or of a packet dropped here?
    fn is_retransmission(&self, datagram: &[u8]) -> bool {
        let Some(key) = rtp_key(datagram) else {
            return false;
        };
        self.rtx_types
            .lock()
            .unwrap()
            .contains(&(datagram[1] & 0x7f))
            || self.dropped_rtp.lock().unwrap().contains(&key)
    }

    pub fn set(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }
}

/// (SSRC, sequence number) of an RTP datagram (the header is in the clear under SRTP);
/// None for anything else (RTCP types are 192..=223 in the second byte).
fn rtp_key(datagram: &[u8]) -> Option<(u32, u16)> {
    if datagram.len() <= 12 || datagram[0] >> 6 != 2 || (192..=223).contains(&datagram[1]) {
        return None;
    }
    let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
    let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
    Some((ssrc, seq))
}

/// One end of the pair, as the test sees it.
pub struct Side {
    pub name: &'static str,
    pub peer: Peer,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    backlog: VecDeque<PeerEvent>,
    negotiation: Arc<Mutex<NegotiationStats>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Bumped by the driver after every step it takes.
    steps: watch::Receiver<u64>,
}

impl Side {
    /// Waits for the first event matching `pred` (earlier non-matching events are kept for
    /// later `expect`s). Panics with `what` after `within`.
    pub async fn expect(
        &mut self,
        what: &str,
        within: Duration,
        mut pred: impl FnMut(&PeerEvent) -> bool,
    ) -> PeerEvent {
        if let Some(pos) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(pos).expect("position is valid");
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return ev,
                Ok(Some(ev)) => self.backlog.push_back(ev),
                Ok(None) => panic!("{}: event stream ended waiting for {what}", self.name),
                Err(_) => panic!(
                    "{}: no {what} within {within:?}; errors {:?}; pending {:?}",
                    self.name,
                    self.errors(),
                    self.backlog
                ),
            }
        }
    }

    pub async fn connected(&mut self) {
        self.expect("Connected", STEP, |e| {
            matches!(e, PeerEvent::ConnectionState(ConnectionState::Connected))
        })
        .await;
    }

    pub fn negotiation(&self) -> NegotiationStats {
        *self.negotiation.lock().expect("stats poisoned")
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors poisoned").clone()
    }
}

/// Builds two loopback peers; `a` is polite, `b` impolite.
pub async fn pair(opts: LinkOptions) -> (Side, Side) {
    let (a_out, a_out_rx) = mpsc::unbounded_channel::<String>();
    let (b_out, b_out_rx) = mpsc::unbounded_channel::<String>();
    let (a_in, a_in_rx) = mpsc::unbounded_channel::<String>();
    let (b_in, b_in_rx) = mpsc::unbounded_channel::<String>();
    relay(a_out_rx, b_in, opts.description_delay, opts.loss.clone());
    relay(b_out_rx, a_in, opts.description_delay, opts.loss.clone());
    let config = PeerConfig {
        fec: !opts.without_fec,
        ..PeerConfig::loopback()
    };
    let a = side("a", true, a_in_rx, a_out, config.clone()).await;
    let b = side("b", false, b_in_rx, b_out, config).await;
    (a, b)
}

async fn side(
    name: &'static str,
    polite: bool,
    incoming: mpsc::UnboundedReceiver<String>,
    outgoing: mpsc::UnboundedSender<String>,
    config: PeerConfig,
) -> Side {
    let (peer, peer_events) = Peer::new(config).await.expect("peer builds");
    let (to_test, events) = mpsc::unbounded_channel();
    let negotiation = Arc::new(Mutex::new(NegotiationStats::default()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (steps_tx, steps) = watch::channel(0);
    tokio::spawn(drive(
        peer.clone(),
        Negotiator::new(polite),
        peer_events,
        incoming,
        outgoing,
        to_test,
        Arc::clone(&negotiation),
        Arc::clone(&errors),
        steps_tx,
    ));
    Side {
        name,
        peer,
        events,
        backlog: VecDeque::new(),
        negotiation,
        errors,
        steps,
    }
}

/// What the call engine will do per member: negotiation and candidates go to the wire,
/// everything else to the engine (here: the test).
#[allow(clippy::too_many_arguments)]
async fn drive(
    peer: Peer,
    mut negotiator: Negotiator,
    mut peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    mut incoming: mpsc::UnboundedReceiver<String>,
    outgoing: mpsc::UnboundedSender<String>,
    to_test: mpsc::UnboundedSender<PeerEvent>,
    stats: Arc<Mutex<NegotiationStats>>,
    errors: Arc<Mutex<Vec<String>>>,
    steps: watch::Sender<u64>,
) {
    let send = |signals: Vec<Signal>| {
        for s in signals {
            let _ = outgoing.send(serde_json::to_string(&s).expect("signal serialises"));
        }
    };
    loop {
        let result = tokio::select! {
            ev = peer_events.recv() => match ev {
                None => return,
                Some(PeerEvent::NegotiationNeeded) => {
                    let r = negotiator.on_negotiation_needed(&peer).await;
                    let _ = to_test.send(PeerEvent::NegotiationNeeded);
                    r
                }
                Some(PeerEvent::LocalCandidate(candidate)) => Ok(vec![Signal::Candidate { candidate }]),
                Some(other) => {
                    let _ = to_test.send(other);
                    Ok(Vec::new())
                }
            },
            msg = incoming.recv() => match msg {
                None => return,
                Some(json) => {
                    let signal: Signal = serde_json::from_str(&json).expect("signal parses");
                    negotiator.on_signal(&peer, signal).await
                }
            },
        };
        match result {
            Ok(signals) => send(signals),
            Err(err) => errors
                .lock()
                .expect("errors poisoned")
                .push(err.to_string()),
        }
        *stats.lock().expect("stats poisoned") = negotiator.stats();
        steps.send_modify(|n| *n += 1);
    }
}

/// One direction of the signaling link. Descriptions keep their order among themselves.
fn relay(
    mut from: mpsc::UnboundedReceiver<String>,
    to: mpsc::UnboundedSender<String>,
    description_delay: Duration,
    loss: Option<Loss>,
) {
    let (delayed_tx, mut delayed_rx) = mpsc::unbounded_channel::<(tokio::time::Instant, String)>();
    let to_delayed = to.clone();
    tokio::spawn(async move {
        while let Some((due, msg)) = delayed_rx.recv().await {
            // Injected latency, not synchronisation.
            tokio::time::sleep_until(due).await;
            let _ = to_delayed.send(msg);
        }
    });
    tokio::spawn(async move {
        let mut proxies: HashMap<SocketAddr, SocketAddr> = HashMap::new();
        while let Some(mut msg) = from.recv().await {
            if let Some(loss) = &loss {
                msg = through_proxy(msg, &mut proxies, loss).await;
            }
            let is_description = msg.contains(r#""kind":"description""#);
            if is_description && !description_delay.is_zero() {
                let _ = delayed_tx.send((tokio::time::Instant::now() + description_delay, msg));
            } else {
                let _ = to.send(msg);
            }
        }
    });
}

/// Connects a fresh pair and returns it with the time until both sides were Connected.
pub async fn connected_pair(opts: LinkOptions) -> (Side, Side, Duration) {
    let start = Instant::now();
    let (mut a, mut b) = pair(opts).await;
    timeout(STEP * 2, async {
        a.connected().await;
        b.connected().await;
    })
    .await
    .expect("both sides connect");
    let took = start.elapsed();
    (a, b, took)
}

/// Neither side's driver reported an error.
pub fn assert_no_errors(a: &Side, b: &Side) {
    assert!(
        a.errors().is_empty() && b.errors().is_empty(),
        "{:?} {:?}",
        a.errors(),
        b.errors()
    );
}

/// A synthetic but well-formed Annex-B access unit: SPS+PPS+IDR every `gop` frames, else one
/// non-IDR slice. Payload bytes are never zero, so no start code can appear inside a NAL.
pub fn synthetic_au(index: usize, gop: usize) -> Vec<u8> {
    let mut rng_state = (index as u32).wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut byte = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        (rng_state % 255) as u8 + 1
    };
    let mut nal = |out: &mut Vec<u8>, header: u8, len: usize| {
        out.extend_from_slice(&[0, 0, 0, 1, header]);
        out.extend((0..len).map(|_| byte()));
    };
    let mut au = Vec::new();
    if index.is_multiple_of(gop) {
        nal(&mut au, 0x67, 12); // SPS
        nal(&mut au, 0x68, 4); // PPS
        nal(&mut au, 0x65, 6000 + index % 7 * 100); // IDR, fragments into FU-A
    } else {
        nal(&mut au, 0x41, 1500 + (index * 37) % 2500); // non-IDR slice
    }
    au
}

/// A fake Opus packet (TOC byte + payload).
pub fn synthetic_opus(index: usize) -> Vec<u8> {
    let len = 60 + index % 40;
    let mut p = vec![0x78];
    p.extend((0..len).map(|i| (index * 31 + i) as u8));
    p
}

/// Waits, driven by negotiation steps, until both sides are stable and every given local
/// track is negotiated: from then on media sent on them reaches a receiver that knows them.
pub async fn settle(a: &mut Side, b: &mut Side, tracks: &[&LocalTrack]) {
    timeout(STEP, async {
        loop {
            a.steps.borrow_and_update();
            b.steps.borrow_and_update();
            let mut done = a.peer.signaling_state().await == SignalingState::Stable
                && b.peer.signaling_state().await == SignalingState::Stable;
            for t in tracks {
                done = done && t.is_negotiated().await;
            }
            if done {
                return;
            }
            tokio::select! {
                r = a.steps.changed() => r.expect("driver a alive"),
                r = b.steps.changed() => r.expect("driver b alive"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "negotiation did not settle; errors a {:?} b {:?}",
            a.errors(),
            b.errors()
        )
    });
}

/// Rewrites host candidates (trickled or inside an SDP) to point at lossy proxies in front of
/// their real addresses.
async fn through_proxy(
    msg: String,
    proxies: &mut HashMap<SocketAddr, SocketAddr>,
    loss: &Loss,
) -> String {
    match serde_json::from_str::<Signal>(&msg).expect("signal parses") {
        Signal::Candidate { mut candidate } => {
            candidate.candidate = rewrite_candidate(&candidate.candidate, proxies, loss).await;
            serde_json::to_string(&Signal::Candidate { candidate }).expect("signal serialises")
        }
        Signal::Description { sdp_type, sdp } => {
            let mut out = String::with_capacity(sdp.len());
            for line in sdp.split_inclusive('\n') {
                if let Some(pt) = line
                    .strip_prefix("a=rtpmap:")
                    .and_then(|r| {
                        r.strip_suffix(" rtx/90000\r\n")
                            .or(r.strip_suffix(" rtx/90000\n"))
                    })
                    .and_then(|pt| pt.parse().ok())
                {
                    loss.rtx_types.lock().unwrap().insert(pt);
                }
                if line.starts_with("a=candidate:") {
                    let body = line.trim_end();
                    out.push_str(&rewrite_candidate(body, proxies, loss).await);
                    out.push_str(&line[body.len()..]);
                } else {
                    out.push_str(line);
                }
            }
            serde_json::to_string(&Signal::Description { sdp_type, sdp: out })
                .expect("signal serialises")
        }
        Signal::Restart => msg,
    }
}

async fn rewrite_candidate(
    candidate: &str,
    proxies: &mut HashMap<SocketAddr, SocketAddr>,
    loss: &Loss,
) -> String {
    let mut fields: Vec<String> = candidate.split_whitespace().map(str::to_owned).collect();
    let Some(real) = fields
        .get(4)
        .zip(fields.get(5))
        .and_then(|(ip, port)| format!("{ip}:{port}").parse::<SocketAddr>().ok())
    else {
        return candidate.to_owned();
    };
    let front = match proxies.get(&real) {
        Some(front) => *front,
        None => {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind proxy");
            let front = socket.local_addr().expect("proxy addr");
            tokio::spawn(proxy(socket, real, loss.clone()));
            proxies.insert(real, front);
            front
        }
    };
    fields[5] = front.port().to_string();
    fields.join(" ")
}

/// Fronts `target`: whatever arrives from elsewhere goes to `target`, and `target`'s replies go
/// back to the last sender, each direction through its own [`Link`]. Both peers therefore
/// see each other at proxy addresses.
async fn proxy(front: tokio::net::UdpSocket, target: SocketAddr, loss: Loss) {
    let front = Arc::new(front);
    let mut buf = vec![0u8; 2048];
    let mut peer: Option<SocketAddr> = None;
    let lines = [
        Line::start(front.clone(), &loss, 1),
        Line::start(front.clone(), &loss, 2),
    ];
    while let Ok((n, from)) = front.recv_from(&mut buf).await {
        let (dest, dir) = if from == target {
            match peer {
                Some(p) => (p, 1),
                None => continue,
            }
        } else {
            peer = Some(from);
            (target, 0)
        };
        if loss.is_retransmission(&buf[..n]) {
            if !loss.retransmissions {
                loss.dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            loss.retransmitted.fetch_add(1, Ordering::SeqCst);
        }
        let datagram = buf[..n].to_vec();
        match lines[dir].send(&loss, datagram, dest) {
            Fate::Queued { .. } => {}
            Fate::Lost | Fate::Overflow => {
                loss.dropped.fetch_add(1, Ordering::SeqCst);
                if let Some(key) = rtp_key(&buf[..n]) {
                    loss.dropped_rtp.lock().unwrap().insert(key);
                }
            }
        }
    }
}

/// One direction of the proxied link: the model decides, a task sends each datagram when
/// the model says it leaves.
/// A datagram and where it goes.
type Datagram = (Vec<u8>, SocketAddr);

struct Line {
    link: Arc<Mutex<Link<Datagram>>>,
    queued: Arc<tokio::sync::Notify>,
    lossy: AtomicBool,
}

impl Line {
    fn start(socket: Arc<tokio::net::UdpSocket>, loss: &Loss, seed: u64) -> Self {
        let link = Arc::new(Mutex::new(Link::<Datagram>::new(loss.config, seed)));
        let queued = Arc::new(tokio::sync::Notify::new());
        let (l, q) = (link.clone(), queued.clone());
        tokio::spawn(async move {
            loop {
                let next = l.lock().unwrap().next_due();
                let Some(due) = next else {
                    q.notified().await;
                    continue;
                };
                tokio::select! {
                    // The model's transmission and propagation delay, not synchronisation.
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
                    // Something queued that may leave sooner.
                    _ = q.notified() => continue,
                }
                loop {
                    let ready = l.lock().unwrap().poll(Instant::now());
                    let Some((datagram, dest)) = ready else { break };
                    let _ = socket.send_to(&datagram, dest).await;
                }
            }
        });
        Self {
            link,
            queued,
            lossy: AtomicBool::new(true),
        }
    }

    fn send(&self, loss: &Loss, datagram: Vec<u8>, dest: SocketAddr) -> Fate {
        let mut link = self.link.lock().unwrap();
        let lossy = loss.enabled.load(Ordering::SeqCst);
        if self.lossy.swap(lossy, Ordering::SeqCst) != lossy {
            let mut config = loss.config;
            if !lossy {
                config.loss = netem::Loss::None;
            }
            link.set_config(config);
        }
        let size = datagram.len();
        let fate = link.send(Instant::now(), size, (datagram, dest));
        drop(link);
        self.queued.notify_one();
        fate
    }
}

/// The remote track `id` as it shows up at `side`: its kind and its media.
pub async fn remote_track(side: &mut Side, id: &str) -> (MediaKind, mpsc::Receiver<RemoteMedia>) {
    match side
        .expect(
            &format!("RemoteTrack {id}"),
            STEP,
            |e| matches!(e, PeerEvent::RemoteTrack { track_id, .. } if track_id == id),
        )
        .await
    {
        PeerEvent::RemoteTrack { kind, media, .. } => (kind, media),
        _ => unreachable!(),
    }
}
