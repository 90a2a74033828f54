//! Call-engine harness: in-process peers on loopback ICE that report through
//! their event channel, with an analyser sink reading barcodes and tones.

use std::sync::Arc;
use std::time::Duration;

use confab::call::{
    self, AudioInfo, CallConfig, CallHandle, Command, Event, FrameInfo, LocalMedia, MediaSink,
    TrackRole, VideoEncoding,
};
use confab::headless::Analyzer;
use confab::media::{SyntheticAudio, SyntheticVideo, VideoFrame};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// Upper bound for one awaited event; reaching it is a failure, not a wait.
pub const EVENT_LIMIT: Duration = Duration::from_secs(20);

pub struct TestPeer {
    pub name: String,
    pub id: String,
    pub handle: CallHandle,
    pub events: UnboundedReceiver<Event>,
    pub analyzer: Arc<Analyzer>,
    /// Everything seen while waiting, for assertions on order and history.
    pub seen: Vec<Event>,
}

/// A remote video frame as it was shown: whose, its size, the barcode's frame id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub peer: String,
    pub track: TrackRole,
    pub width: usize,
    pub height: usize,
    pub id: Option<u32>,
    pub keyframe: bool,
}

/// The analyser, and each video frame told to a test as it comes.
struct Watch {
    analyzer: Arc<Analyzer>,
    tx: UnboundedSender<Shown>,
}

impl MediaSink for Watch {
    fn video(&self, peer: &str, track: TrackRole, frame: &VideoFrame, info: &FrameInfo) {
        MediaSink::video(&*self.analyzer, peer, track, frame, info);
        let _ = self.tx.send(Shown {
            peer: peer.to_owned(),
            track,
            width: frame.width,
            height: frame.height,
            id: info.barcode.map(|b| b.frame_id),
            keyframe: info.keyframe,
        });
    }

    fn audio(&self, peer: &str, track: TrackRole, pcm: &[f32], info: &AudioInfo) {
        MediaSink::audio(&*self.analyzer, peer, track, pcm, info);
    }
}

pub fn synthetic(width: usize, height: usize, tone_hz: f32) -> LocalMedia {
    LocalMedia {
        camera: Some(Box::new(SyntheticVideo::new(width, height, 30.0).unwrap())),
        microphone: Some(Box::new(SyntheticAudio::new(tone_hz))),
    }
}

pub fn config(url: &str, room: &str, name: &str) -> CallConfig {
    let mut c = CallConfig::new(url, room, name);
    c.bind_addrs = vec!["127.0.0.1:0".into()];
    c.video = VideoEncoding {
        fps: 30.0,
        bitrate_bps: 800_000,
        keyframe_interval_frames: 0,
    };
    c
}

impl TestPeer {
    pub async fn join(url: &str, room: &str, name: &str, media: LocalMedia) -> TestPeer {
        Self::join_with(config(url, room, name), media).await
    }

    pub async fn join_with(cfg: CallConfig, media: LocalMedia) -> TestPeer {
        let analyzer = Arc::new(Analyzer::default());
        Self::join_sink(cfg, media, analyzer.clone(), analyzer).await
    }

    /// Like [`TestPeer::join_with`], and every remote video frame decoded is also
    /// reported on the returned channel as it is shown.
    pub async fn join_watching(
        cfg: CallConfig,
        media: LocalMedia,
    ) -> (TestPeer, UnboundedReceiver<Shown>) {
        let analyzer = Arc::new(Analyzer::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let watch = Arc::new(Watch {
            analyzer: analyzer.clone(),
            tx,
        });
        (Self::join_sink(cfg, media, analyzer, watch).await, rx)
    }

    async fn join_sink(
        cfg: CallConfig,
        media: LocalMedia,
        analyzer: Arc<Analyzer>,
        sink: Arc<dyn MediaSink>,
    ) -> TestPeer {
        super::test_logs();
        let name = cfg.name.clone();
        let (handle, events) = call::start(cfg, media, sink)
            .await
            .expect("engine starts and joins");
        let mut p = TestPeer {
            name,
            id: String::new(),
            handle,
            events,
            analyzer,
            seen: Vec::new(),
        };
        p.id = p
            .until("joined", |e| match e {
                Event::Joined { id, .. } => Some(id.clone()),
                _ => None,
            })
            .await;
        p
    }

    /// The remote tracks that arrived so far (among the events seen).
    pub fn tracks_added(&self) -> Vec<&Event> {
        self.seen
            .iter()
            .filter(|e| matches!(e, Event::TrackAdded { .. }))
            .collect()
    }

    /// Waits until we decoded a keyframe of `other`'s camera (one seen already counts):
    /// its media arrived.
    pub async fn seen_picture_from(&mut self, other: &str) {
        let other = other.to_owned();
        self.seen_or_until(&format!("a picture from {other}"), |e| match e {
            Event::KeyframeReceived { peer, track, .. }
                if *peer == other && *track == confab::call::TrackRole::Camera =>
            {
                Some(())
            }
            _ => None,
        })
        .await
    }

    /// Waits for the first event `f` accepts; panics after [`EVENT_LIMIT`].
    pub async fn until<T>(&mut self, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + EVENT_LIMIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    let recent: Vec<_> = self.seen.iter().rev().take(12).rev().collect();
                    panic!(
                        "{}: no {what} within {EVENT_LIMIT:?}; last events: {recent:#?}",
                        self.name
                    )
                })
                .unwrap_or_else(|| {
                    panic!("{}: engine stopped while waiting for {what}", self.name)
                });
            let hit = f(&ev);
            self.seen.push(ev);
            if let Some(t) = hit {
                return t;
            }
        }
    }

    /// Like [`TestPeer::until`], but an event already seen also counts.
    pub async fn seen_or_until<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        if let Some(t) = self.seen.iter().find_map(&mut f) {
            return t;
        }
        self.until(what, f).await
    }

    /// Waits until the stats for `peer` satisfy `f` (stats arrive every second).
    pub async fn until_stats(
        &mut self,
        what: &str,
        peer: &str,
        mut f: impl FnMut(&call::PeerCallStats) -> bool,
    ) -> call::PeerCallStats {
        self.until(what, |e| match e {
            Event::Stats(all) => all.iter().find(|s| s.id == peer && f(s)).cloned(),
            _ => None,
        })
        .await
    }

    pub async fn connected_to(&mut self, peer: &str) {
        let peer = peer.to_string();
        self.until("connected", |e| match e {
            Event::Connection { id, state }
                if *id == peer && *state == call::ConnectionState::Connected =>
            {
                Some(())
            }
            _ => None,
        })
        .await
    }

    pub fn send(&self, cmd: Command) {
        assert!(self.handle.send(cmd), "{}: engine gone", self.name);
    }

    pub async fn leave(mut self) -> call::SentTotals {
        self.send(Command::Leave);
        self.until("left", |e| match e {
            Event::Left(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }
}
