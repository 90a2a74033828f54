//! The send stage: one task per local track writes each encoded unit to every peer's
//! copy of the track.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::encode::SendCounters;
use super::error::Result;
use super::peer::{AudioTrackSender, KeyframeWanted, VideoTrackSender};
use crate::sync::LockExt;

/// One encoded unit: an access unit of one simulcast layer (or of the only one), or an
/// Opus packet.
#[derive(Debug)]
pub struct Unit {
    pub data: Vec<u8>,
    /// Until the next unit of the same layer.
    pub duration: Duration,
    /// Wall-clock capture time of a picture (what its RTP timestamp follows); 0 for
    /// audio, whose timestamp moves on by `duration`.
    pub capture_us: u64,
    /// Simulcast layer, 0 = smallest; 0 without simulcast.
    pub layer: usize,
    /// The largest layer: what a connection without simulcast sends.
    pub top: bool,
    /// Of the camera's second, smaller stream, for mesh peers on slow links
    /// (`slow_peers.rs`).
    pub small: bool,
    /// Starts a picture by itself: where a peer can move between streams.
    pub keyframe: bool,
}

impl Unit {
    /// A unit of a stream without layers.
    pub fn single(data: Vec<u8>, duration: Duration) -> Self {
        Self {
            data,
            duration,
            capture_us: 0,
            layer: 0,
            top: true,
            small: false,
            keyframe: false,
        }
    }
}

/// A peer's copy of a local track that encoded units can be written to.
pub trait UnitSender: Clone + Send + Sync + 'static {
    fn send_unit(&self, unit: &Unit) -> impl Future<Output = Result<()>> + Send;
}

impl UnitSender for VideoTrackSender {
    fn send_unit(&self, unit: &Unit) -> impl Future<Output = Result<()>> + Send {
        self.send_layer(
            unit.layer,
            unit.top,
            &unit.data,
            unit.capture_us,
            unit.duration,
        )
    }
}

impl UnitSender for AudioTrackSender {
    fn send_unit(&self, unit: &Unit) -> impl Future<Output = Result<()>> + Send {
        self.send(&unit.data, unit.duration)
    }
}

/// Which of the camera's streams a peer is sent: it moves to the one it wants at that
/// stream's next keyframe, so its decoder never starts mid-picture.
#[derive(Debug, Clone, Copy, Default)]
struct Route {
    small: bool,
    wants_small: bool,
}

struct Peer<S> {
    sender: S,
    route: Route,
}

/// Sends encoded units to every peer's copy of one local track.
pub struct Fanout<S> {
    peers: Mutex<HashMap<String, Peer<S>>>,
    /// Each peer's keyframe requests (PLI, FIR), set by its connection: answered on the
    /// stream that peer is sent, so a slow peer's losses cost the others nothing.
    asked: Mutex<HashMap<String, KeyframeWanted>>,
}

impl<S: Clone> Fanout<S> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            peers: Mutex::new(HashMap::new()),
            asked: Mutex::new(HashMap::new()),
        })
    }

    /// The flag `peer`'s connection sets when it asks for a keyframe.
    pub fn keyframe_flag(&self, peer: &str) -> KeyframeWanted {
        self.asked
            .locked()
            .entry(peer.to_string())
            .or_default()
            .clone()
    }

    /// Whether any peer asked for a keyframe since the last call: (of the main stream,
    /// of the small one).
    pub fn keyframes_asked(&self) -> (bool, bool) {
        let asked = self.asked.locked();
        let peers = self.lock();
        let mut wanted = (false, false);
        for (peer, flag) in asked.iter() {
            if flag.take() {
                if peers.get(peer).is_some_and(|p| p.route.small) {
                    wanted.1 = true;
                } else {
                    wanted.0 = true;
                }
            }
        }
        wanted
    }

    pub fn add(&self, peer: &str, sender: S) {
        let route = Route::default();
        self.lock().insert(peer.to_string(), Peer { sender, route });
    }

    pub fn get(&self, peer: &str) -> Option<S> {
        self.lock().get(peer).map(|p| p.sender.clone())
    }

    pub fn remove(&self, peer: &str) -> Option<S> {
        self.asked.locked().remove(peer);
        self.lock().remove(peer).map(|p| p.sender)
    }

    pub fn snapshot(&self) -> Vec<(String, S)> {
        self.lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.sender.clone()))
            .collect()
    }

    /// From the next keyframe of that stream on, `peer` is sent the small stream (or
    /// the main one). Whether it asked for a change.
    pub fn send_small(&self, peer: &str, small: bool) -> bool {
        let mut peers = self.lock();
        let Some(p) = peers.get_mut(peer) else {
            return false;
        };
        let changed = p.route.wants_small != small;
        p.route.wants_small = small;
        changed
    }

    /// Whether `peer` is being sent the small stream now.
    pub fn sends_small(&self, peer: &str) -> bool {
        self.lock().get(peer).is_some_and(|p| p.route.small)
    }

    /// The peers `unit` goes to (moving those waiting for one of its stream's keyframes).
    fn takers(&self, unit: &Unit) -> Vec<S> {
        let mut peers = self.lock();
        peers
            .values_mut()
            .filter_map(|p| {
                let r = &mut p.route;
                if unit.keyframe && unit.small == r.wants_small {
                    r.small = r.wants_small;
                }
                // One moving to the small stream gets no more of the main one: its link
                // is the narrow one, and the small keyframe comes right after the main
                // stream's picture of the same moment (which it got twice).
                let leaving_main = r.wants_small && !unit.small;
                (r.small == unit.small && !leaving_main).then(|| p.sender.clone())
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer<S>>> {
        self.peers.locked()
    }
}

/// Writes each unit from `units` to every peer in `fanout`; counts the (top-layer) units
/// that reached at least one negotiated track. Ends when the encode stage drops its sender.
pub fn spawn_fanout<S: UnitSender>(
    fanout: Arc<Fanout<S>>,
    mut units: mpsc::Receiver<Unit>,
    counters: Arc<SendCounters>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(unit) = units.recv().await {
            let mut sent = 0;
            for sender in fanout.takers(&unit) {
                // Not negotiated yet, or the peer is going away: nothing to do.
                sent += u64::from(sender.send_unit(&unit).await.is_ok());
            }
            // A unit left out (Opus DTX) moved the timestamp only: nothing went.
            if unit.top && !unit.small && !unit.data.is_empty() {
                counters
                    .delivered
                    .fetch_add(u64::from(sent > 0), Ordering::Relaxed);
            }
            counters
                .bytes_out
                .fetch_add(sent * unit.data.len() as u64, Ordering::Relaxed);
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
        async fn send_unit(&self, _: &Unit) -> Result<()> {
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
            tx.send(Unit::single(vec![0; len], Duration::from_millis(33)))
                .await
                .unwrap();
        }
        drop(tx);
        task.await.unwrap();
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 2 * 150);
    }

    fn unit(small: bool, keyframe: bool, len: usize) -> Unit {
        Unit {
            small,
            keyframe,
            ..Unit::single(vec![0; len], Duration::from_millis(33))
        }
    }

    /// What each of ada and cy was sent, in bytes, of the units in `sent`.
    async fn sent_to(fanout: Arc<Fanout<Recorder>>, sent: Vec<Unit>) -> (Vec<usize>, Vec<usize>) {
        let (ada, cy) = (fanout.get("ada").unwrap(), fanout.get("cy").unwrap());
        let (tx, rx) = mpsc::channel(sent.len().max(1));
        let task = spawn_fanout(fanout, rx, Arc::new(SendCounters::default()));
        for u in sent {
            tx.send(u).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        (ada.taken(), cy.taken())
    }

    #[tokio::test]
    async fn a_peer_moves_to_the_small_stream_at_its_keyframe_and_the_others_stay() {
        let fanout = Fanout::new();
        fanout.add("ada", Recorder::default());
        fanout.add("cy", Recorder::default());
        assert!(fanout.send_small("cy", true));
        assert!(!fanout.send_small("cy", true), "asked once");
        let units = vec![
            unit(false, false, 100),
            unit(true, false, 10), // not a place to start: cy waits for a keyframe
            unit(true, true, 11),
            unit(false, false, 101),
            unit(true, false, 12),
        ];
        let (ada, cy) = sent_to(fanout.clone(), units).await;
        assert_eq!(ada, [100, 101]);
        // Nothing more of the main stream once cy is to move.
        assert_eq!(cy, [11, 12]);
        assert!(fanout.sends_small("cy") && !fanout.sends_small("ada"));
    }

    #[tokio::test]
    async fn a_peer_leaving_the_small_stream_waits_for_a_main_keyframe() {
        let fanout = Fanout::new();
        fanout.add("ada", Recorder::default());
        fanout.add("cy", Recorder::default());
        fanout.send_small("cy", true);
        let (_, cy) = sent_to(fanout.clone(), vec![unit(true, true, 10)]).await;
        assert_eq!(cy, [10]);
        fanout.send_small("cy", false);
        let units = vec![
            unit(false, false, 100),
            unit(true, false, 11),
            unit(false, true, 102),
            unit(true, false, 12),
        ];
        let (_, cy) = sent_to(fanout, units).await;
        assert_eq!(cy, [11, 102]);
    }

    #[tokio::test]
    async fn a_peers_keyframe_request_is_answered_on_the_stream_it_is_sent() {
        let fanout = Fanout::new();
        fanout.add("ada", Recorder::default());
        fanout.add("cy", Recorder::default());
        let (ada, cy) = (fanout.keyframe_flag("ada"), fanout.keyframe_flag("cy"));
        fanout.send_small("cy", true);
        sent_to(fanout.clone(), vec![unit(true, true, 10)]).await;
        assert_eq!(fanout.keyframes_asked(), (false, false));
        cy.set();
        assert_eq!(
            fanout.keyframes_asked(),
            (false, true),
            "cy's costs ada nothing"
        );
        assert_eq!(fanout.keyframes_asked(), (false, false), "answered once");
        ada.set();
        cy.set();
        assert_eq!(fanout.keyframes_asked(), (true, true));
    }

    /// Counts nothing as delivered that went only to the small stream.
    #[tokio::test]
    async fn frames_delivered_are_the_main_streams() {
        let fanout = Fanout::new();
        fanout.add("cy", FakeTrack { up: true });
        fanout.send_small("cy", true);
        let counters = Arc::new(SendCounters::default());
        let (tx, rx) = mpsc::channel(2);
        let task = spawn_fanout(fanout, rx, counters.clone());
        tx.send(unit(true, true, 10)).await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 10);
    }

    /// A peer's track that keeps the length of every unit it is sent.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<usize>>>);

    impl Recorder {
        fn taken(&self) -> Vec<usize> {
            std::mem::take(&mut *self.0.locked())
        }
    }

    impl UnitSender for Recorder {
        async fn send_unit(&self, unit: &Unit) -> Result<()> {
            self.0.locked().push(unit.data.len());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_unit_no_peer_took_is_neither_delivered_nor_uplinked() {
        let fanout = Fanout::new();
        fanout.add("cy", FakeTrack { up: false });
        let counters = Arc::new(SendCounters::default());
        let (tx, rx) = mpsc::channel(1);
        let task = spawn_fanout(fanout, rx, counters.clone());
        tx.send(Unit::single(vec![0; 10], Duration::ZERO))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 0);
    }
}
