//! The call engine without a window: synthetic or file sources in, a JSON
//! report out. CI's loopback tests and the call benchmark drive it.

mod analysis;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::call::{
    self, CallConfig, Command, Event, IceTransport, LocalMedia, PeerCallStats, TrackRole,
    VideoEncoding,
};
use crate::media::{
    AudioSource, MediaError, SyntheticAudio, SyntheticVideo, VideoSource, WavAudio, Y4mVideo,
    now_us,
};

pub use analysis::{Analyzer, AudioReport, Percentiles, VideoReport};

#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error("bad option: {0}")]
    Option(String),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Engine(#[from] call::CallError),
    #[error("writing the report: {0}")]
    Report(std::io::Error),
    #[error("the call engine stopped before the end")]
    EngineStopped,
}

/// Where video comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoInput {
    None,
    Synthetic,
    Y4m(PathBuf),
}

/// Where audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioInput {
    None,
    Synthetic,
    Wav(PathBuf),
}

impl std::str::FromStr for VideoInput {
    type Err = HeadlessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "synthetic" => Ok(Self::Synthetic),
            _ => match s.strip_prefix("y4m:") {
                Some(p) if !p.is_empty() => Ok(Self::Y4m(p.into())),
                _ => Err(HeadlessError::Option(format!(
                    "--video takes synthetic, y4m:FILE or none, not {s:?}"
                ))),
            },
        }
    }
}

impl std::str::FromStr for AudioInput {
    type Err = HeadlessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "synthetic" => Ok(Self::Synthetic),
            _ => match s.strip_prefix("wav:") {
                Some(p) if !p.is_empty() => Ok(Self::Wav(p.into())),
                _ => Err(HeadlessError::Option(format!(
                    "--audio takes synthetic, wav:FILE or none, not {s:?}"
                ))),
            },
        }
    }
}

/// Parses `1280x720`.
pub fn parse_size(s: &str) -> Result<(usize, usize), HeadlessError> {
    let bad = || {
        HeadlessError::Option(format!(
            "--size takes WIDTHxHEIGHT with even numbers, not {s:?}"
        ))
    };
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w < 16 || h < 16 || w % 2 == 1 || h % 2 == 1 || w > 7680 || h > 4320 {
        return Err(bad());
    }
    Ok((w, h))
}

/// Everything a headless run needs.
#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    pub server: String,
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    pub seconds: f64,
    pub video: VideoInput,
    pub audio: AudioInput,
    pub size: (usize, usize),
    pub fps: f32,
    pub bitrate_bps: u32,
    pub tone_hz: f32,
    /// Ring the member with this name once it is in the room.
    pub call: Option<String>,
    pub auto_answer: bool,
    pub bind_addrs: Vec<String>,
    pub ice_transport: IceTransport,
    /// A chat message to send once the first peer is connected.
    pub chat: Option<String>,
    /// Each line read from standard input goes out as a chat message.
    pub chat_stdin: bool,
    /// Shares this as a screen once joined (synthetic: the test pattern at 1280x720).
    pub share_screen: Option<VideoInput>,
    /// A test call with the server's echo peer instead of joining `room`.
    pub test_call: bool,
    /// Records the call into this file from joining to the end of the run.
    pub record: Option<PathBuf>,
    pub record_settings: crate::record::RecordSettings,
    /// Media through this Janus VideoRoom instead of a mesh.
    pub sfu: Option<crate::sfu::SfuTarget>,
    /// Ask the server for an SFU room (if this join creates the room).
    pub ask_sfu: bool,
    /// Only watch: no sources, nothing sent.
    pub viewer: bool,
    /// Create the room as a broadcast (we present, later joiners watch).
    pub broadcast: bool,
    /// Simulcast layers the camera is sent in through the SFU (1: none).
    pub simulcast_layers: usize,
    /// Receive every camera in this simulcast layer (0 = smallest) instead of choosing.
    pub sfu_layer: Option<u8>,
    /// Draw the others' cameras as a window this size would, in its grid beside our
    /// own tile (`ui::layout::grid_shape`): through an SFU each then comes in the layer
    /// its tile needs. None: no tiles (the largest layer).
    pub window: Option<(u32, u32)>,
}

impl HeadlessOptions {
    pub fn new(server: &str, room: &str, name: &str) -> Self {
        Self {
            server: server.to_string(),
            room: room.to_string(),
            name: name.to_string(),
            password: None,
            seconds: 10.0,
            video: VideoInput::Synthetic,
            audio: AudioInput::Synthetic,
            size: (640, 480),
            fps: 30.0,
            bitrate_bps: 1_000_000,
            tone_hz: 440.0,
            call: None,
            auto_answer: false,
            bind_addrs: vec!["0.0.0.0:0".into()],
            ice_transport: IceTransport::All,
            chat: None,
            chat_stdin: false,
            share_screen: None,
            test_call: false,
            record: None,
            record_settings: Default::default(),
            sfu: None,
            ask_sfu: false,
            viewer: false,
            broadcast: false,
            simulcast_layers: crate::call::simulcast::LAYERS,
            sfu_layer: None,
            window: None,
        }
    }

    pub fn call_config(&self) -> CallConfig {
        let mut c = CallConfig::new(&self.server, &self.room, &self.name);
        c.password = self.password.clone();
        c.bind_addrs = self.bind_addrs.clone();
        c.ice_transport = self.ice_transport;
        c.test_call = self.test_call;
        c.auto_answer = self.auto_answer;
        c.sfu = self.sfu.clone();
        c.ask_sfu = self.ask_sfu;
        c.viewer = self.viewer;
        c.broadcast = self.broadcast;
        c.simulcast_layers = self.simulcast_layers;
        c.sfu_layer = self.sfu_layer;
        c.draws_tiles = self.window.is_some();
        c.video = VideoEncoding {
            fps: self.fps,
            bitrate_bps: self.bitrate_bps,
            keyframe_interval_frames: 0,
        };
        // A shared synthetic or file screen is paced like the camera.
        c.screen_fps = self.fps;
        c
    }

    pub fn open_media(&self) -> Result<LocalMedia, HeadlessError> {
        let camera = self.open_video(&self.video, self.size)?;
        let microphone: Option<Box<dyn AudioSource>> = match &self.audio {
            AudioInput::None => None,
            AudioInput::Synthetic => Some(Box::new(SyntheticAudio::new(self.tone_hz))),
            AudioInput::Wav(p) => Some(Box::new(WavAudio::open(p)?)),
        };
        Ok(LocalMedia { camera, microphone })
    }

    fn open_video(
        &self,
        input: &VideoInput,
        (w, h): (usize, usize),
    ) -> Result<Option<Box<dyn VideoSource>>, HeadlessError> {
        Ok(match input {
            VideoInput::None => None,
            VideoInput::Synthetic => Some(Box::new(SyntheticVideo::new(w, h, self.fps)?)),
            VideoInput::Y4m(p) => Some(Box::new(Y4mVideo::open(p, Some(self.fps))?)),
        })
    }

    /// The screen to share, if any.
    pub fn open_screen(&self) -> Result<Option<Box<dyn VideoSource>>, HeadlessError> {
        match &self.share_screen {
            Some(input) => self.open_video(input, (1280, 720)),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeerReport {
    pub id: String,
    pub name: String,
    /// Join to connected.
    pub connect_ms: Option<u64>,
    /// Join to first decoded frame.
    pub first_frame_ms: Option<u64>,
    pub video: VideoReport,
    /// Present when the peer shared its screen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen: Option<VideoReport>,
    pub audio: AudioReport,
    pub media_muted: Option<crate::signaling::protocol::MediaState>,
    pub chat: Vec<String>,
    pub left: Option<String>,
    #[serde(skip)]
    keyframe_seen: bool,
    pub last_stats: Option<PeerCallStats>,
    /// The engine's statistics each second: what the network and the sender did.
    pub stats_timeline: Vec<StatsSample>,
}

/// One stats tick of one peer, seconds after joining.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatsSample {
    pub t: f64,
    #[serde(flatten)]
    pub stats: PeerCallStats,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub name: String,
    pub id: String,
    pub room: String,
    pub seconds: f64,
    pub sent: call::SentTotals,
    pub peers: Vec<PeerReport>,
    /// Where the room's media went, in order: "mesh" or "sfu" at the join and at
    /// every move.
    pub media: Vec<String>,
    /// We only watched.
    pub viewer: bool,
    /// The room was a broadcast.
    pub broadcast: bool,
    /// The most members watching us at once.
    pub viewers: usize,
    /// The recording made (`--record`), complete when the run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingReport>,
    pub errors: Vec<String>,
    /// A test call: our own pictures back from the echo peer, capture to decode (the
    /// barcode's clock is ours), so network, echo and codecs both ways.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<Percentiles>,
    /// Wall-clock µs the statistics timelines' `t` counts from.
    pub started_us: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RecordingReport {
    #[serde(flatten)]
    pub summary: crate::record::RecordSummary,
    pub error: Option<String>,
}

impl Report {
    /// True when at least one remote peer delivered video frames or audio.
    pub fn media_arrived(&self) -> bool {
        self.peers
            .iter()
            .any(|p| p.video.frames_decoded > 0 || p.audio.packets_received > 0)
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = format!(
            "{} ({}), {:.0} s: sent {} video frames, {} audio frames\n",
            self.name, self.id, self.seconds, self.sent.video_frames, self.sent.audio_frames
        );
        for p in &self.peers {
            let v = &p.video;
            let _ = writeln!(
                s,
                "  from {:<10} video {:>4} frames {}x{}, ids {} ({} gaps), latency p50 {} ms | audio {:>4} packets, tone {} Hz, {} dBFS, click latency {} ms | connect {} ms, first frame {} ms",
                p.name,
                v.frames_decoded,
                v.width,
                v.height,
                if v.ids_in_order {
                    "in order"
                } else {
                    "OUT OF ORDER"
                },
                v.id_gaps,
                v.latency_ms
                    .as_ref()
                    .map_or("-".into(), |l| format!("{:.1}", l.p50)),
                p.audio.packets_received,
                p.audio.tone_hz.map_or("-".into(), |t| format!("{t:.0}")),
                p.audio.level_dbfs.map_or("-".into(), |l| format!("{l:.1}")),
                p.audio
                    .latency_ms
                    .as_ref()
                    .map_or("-".into(), |l| format!("{:.1}", l.p50)),
                p.connect_ms.map_or("-".into(), |v| v.to_string()),
                p.first_frame_ms.map_or("-".into(), |v| v.to_string()),
            );
        }
        if let Some(rt) = &self.round_trip_ms {
            let _ = writeln!(
                s,
                "  test call: round trip p50 {:.1} ms, p95 {:.1} ms (own pictures back from the echo)",
                rt.p50, rt.p95
            );
        }
        if let Some(r) = &self.recording {
            let _ = writeln!(
                s,
                "  recorded {} ({:.1} s, {} video frames, {} fragments){}",
                r.summary.path,
                r.summary.seconds,
                r.summary.video_frames,
                r.summary.fragments,
                r.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error: {e}");
        }
        s
    }
}

/// Lines of standard input as they are typed; the channel ends with the input. A plain
/// thread, not tokio's stdin: a read pending there would hold up the runtime's shutdown.
fn stdin_lines() -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if !line.is_empty() && tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Tells the engine each member's camera tile in a `window`-sized grid that holds them
/// and our own.
fn show_tiles(
    handle: &call::CallHandle,
    window: Option<(u32, u32)>,
    members: &std::collections::BTreeSet<String>,
) {
    let Some((w, h)) = window else { return };
    let (.., tw, th) = crate::ui::layout::grid_shape(members.len() + 1, w as f32, h as f32);
    for peer in members {
        handle.send(Command::ShowTile {
            peer: peer.clone(),
            track: TrackRole::Camera,
            size: Some((tw as u32, th as u32)),
        });
    }
}

/// Joins, runs for `seconds`, leaves, and reports what arrived.
pub async fn run(opts: HeadlessOptions) -> Result<Report, HeadlessError> {
    let analyzer = Arc::new(Analyzer::default());
    let media = opts.open_media()?;
    let mut screen = opts.open_screen()?;
    let joined_us = now_us();
    let (handle, mut events) = call::start(opts.call_config(), media, analyzer.clone()).await?;
    let mut report = Report {
        name: opts.name.clone(),
        seconds: opts.seconds,
        ..Report::default()
    };
    let mut peers: HashMap<String, PeerReport> = HashMap::new();
    let mut rang = false;
    let mut chat = opts.chat.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(opts.seconds);
    let started = Instant::now();
    report.started_us = now_us();
    let mut typed = opts.chat_stdin.then(stdin_lines);
    let mut shown: std::collections::BTreeSet<String> = Default::default();
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            Some(line) = async { typed.as_mut()?.recv().await }, if typed.is_some() => {
                // Sent over the data channel, so it does not wait for the signaling link.
                tracing::info!("chat sent");
                handle.send(Command::Chat(line));
                continue;
            }
            ev = events.recv() => match ev { Some(ev) => ev, None => return Err(HeadlessError::EngineStopped) },
        };
        match ev {
            Event::Joined { id, room, .. } => {
                report.id = id;
                report.room = room;
                if let Some(source) = screen.take() {
                    handle.send(Command::StartScreenShare(source));
                }
                if let Some(path) = &opts.record {
                    handle.send(Command::StartRecording {
                        path: path.clone(),
                        settings: opts.record_settings,
                    });
                }
            }
            Event::PeerJoined { id, name, .. } => {
                if !rang && opts.call.as_deref() == Some(name.as_str()) {
                    rang = true;
                    handle.send(Command::Invite {
                        to: id.clone(),
                        metadata: format!("{{\"from\":\"{}\"}}", opts.name),
                    });
                }
                // As the window does: a tile for everyone in the room, drawn at once.
                if shown.insert(id.clone()) {
                    show_tiles(&handle, opts.window, &shown);
                }
                peers.entry(id.clone()).or_insert_with(|| PeerReport {
                    id,
                    name,
                    ..Default::default()
                });
            }
            Event::Connection { id, state } => {
                if state == call::ConnectionState::Connected
                    && let Some(p) = peers.get_mut(&id)
                {
                    tracing::info!(peer = %p.name, "connected");
                    p.connect_ms
                        .get_or_insert(started.elapsed().as_millis() as u64);
                    // The engine holds it until the chat channel is open.
                    if let Some(text) = chat.take() {
                        handle.send(Command::Chat(text));
                    }
                }
            }
            Event::Reconnecting { reason } => {
                tracing::info!("signaling link lost ({reason}); reconnecting");
            }
            Event::Resumed => tracing::info!("signaling link back, same member"),
            Event::KeyframeReceived { peer, .. } => {
                if let Some(p) = peers.get_mut(&peer)
                    && !p.keyframe_seen
                {
                    p.keyframe_seen = true;
                    tracing::info!(peer = %p.name, "first keyframe");
                }
            }
            Event::PeerReconnecting { id, reconnecting } => {
                if let Some(p) = peers.get_mut(&id) {
                    tracing::info!(peer = %p.name, reconnecting, "media path");
                }
            }
            Event::PeerLeft { id, reason } => {
                if shown.remove(&id) {
                    show_tiles(&handle, opts.window, &shown);
                }
                if let Some(p) = peers.get_mut(&id) {
                    p.left = Some(format!("{reason:?}"));
                }
            }
            Event::PeerMediaState { id, state } => {
                if let Some(p) = peers.get_mut(&id) {
                    p.media_muted = Some(state);
                }
            }
            Event::Chat { from, text, .. } => {
                if let Some(p) = peers.get_mut(&from) {
                    p.chat.push(text);
                }
            }
            Event::Stats(stats) => {
                for s in stats {
                    if let Some(p) = peers.get_mut(&s.id) {
                        let t = started.elapsed().as_secs_f64();
                        p.stats_timeline.push(StatsSample {
                            t,
                            stats: s.clone(),
                        });
                        p.last_stats = Some(s);
                    }
                }
            }
            Event::Role { viewer, broadcast } => {
                report.viewer = viewer;
                report.broadcast = broadcast;
            }
            Event::Viewers(n) => report.viewers = report.viewers.max(n),
            Event::MediaMode { sfu } => {
                let mode = if sfu { "sfu" } else { "mesh" };
                tracing::info!(mode, "room media");
                report.media.push(mode.into());
            }
            Event::Error(e) => report.errors.push(e),
            _ => {}
        }
    }
    handle.send(Command::Leave);
    // The engine reports `Left` once it has closed every peer (and finished a recording).
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Left(sent) => {
                report.sent = sent;
                break;
            }
            Event::RecordingStopped { summary, error } => {
                report.recording = Some(RecordingReport { summary, error });
            }
            Event::Error(e) => report.errors.push(e),
            _ => {}
        }
    }
    for (id, mut p) in peers {
        p.video = analyzer.video(&id, call::TrackRole::Camera);
        let screen = analyzer.video(&id, call::TrackRole::Screen);
        p.screen = (screen.frames_decoded > 0).then_some(screen);
        p.audio = analyzer.audio(&id);
        p.first_frame_ms = p
            .video
            .first_frame_us
            .map(|t| t.saturating_sub(joined_us) / 1000);
        report.peers.push(p);
    }
    report.peers.sort_by(|a, b| a.name.cmp(&b.name));
    if opts.test_call {
        report.round_trip_ms = report.peers.iter().find_map(|p| p.video.latency_ms.clone());
    }
    Ok(report)
}

/// An embedded signaling server on loopback and `peers` headless peers in one
/// process, each with its own tone, all for `seconds`.
pub async fn loopback(
    peers: usize,
    seconds: f64,
    size: (usize, usize),
) -> Result<Vec<Report>, HeadlessError> {
    use crate::signaling::{Server, ServerConfig};
    if !(2..=8).contains(&peers) {
        return Err(HeadlessError::Option("--peers takes 2 to 8".into()));
    }
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| HeadlessError::Option(format!("embedded server: {e}")))?;
    let url = server.ws_url();
    let runs: Vec<_> = (0..peers)
        .map(|i| {
            let mut o = HeadlessOptions::new(&url, "loopback", &format!("peer{}", i + 1));
            o.seconds = seconds;
            o.size = size;
            o.tone_hz = 440.0 + 220.0 * i as f32;
            o.bind_addrs = vec!["127.0.0.1:0".into()];
            tokio::spawn(run(o))
        })
        .collect();
    let mut reports = Vec::new();
    for r in runs {
        reports.push(r.await.map_err(|_| HeadlessError::EngineStopped)??);
    }
    let _ = server.shutdown().await;
    Ok(reports)
}
