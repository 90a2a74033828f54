//! What the engine is started with, takes and reports: config, commands, events.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::media::{AudioSource, VideoSource};
use crate::signaling::protocol::{CallEndReason, LeaveReason, MediaState, Role};
use crate::signaling::{ClientOptions, JoinParams, SignalingClient};

use super::{Engine, Local, Membership};
use crate::call::encode::{AudioCapture, VideoCapture, VideoEncoding};
use crate::call::error::CallError;
use crate::call::peer::{ConnectionState, IceTransport, MediaKind};
use crate::call::sink::MediaSink;
use crate::call::stats::{PeerCallStats, SentTotals, StatsTracker};
use crate::call::track::TrackRole;
use crate::record::{RecordSettings, RecordSummary, RecordTap};

#[derive(Debug, Clone)]
pub struct CallConfig {
    pub server_url: String,
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    /// Local UDP addresses for ICE (tests: 127.0.0.1:0).
    pub bind_addrs: Vec<String>,
    /// `Relay`: media only through the TURN servers the welcome names.
    pub ice_transport: IceTransport,
    pub video: VideoEncoding,
    /// What a shared screen's source is paced at: its encoder and timestamps follow it.
    pub screen_fps: f32,
    pub audio_bitrate_bps: u32,
    /// Answer every ringing call at once (headless peers).
    pub auto_answer: bool,
    pub stats_interval: Duration,
    /// Ask the server for a test call and join its echo peer instead of `room`.
    pub test_call: bool,
    /// Media through this Janus VideoRoom instead of a mesh, whatever the server
    /// says; presence stays with the signaling server.
    pub sfu: Option<crate::sfu::SfuTarget>,
    /// When this join creates the room: ask the server to take its media through its
    /// SFU from the start.
    pub ask_sfu: bool,
    /// Only watch: no camera or microphone is opened, nothing is sent.
    pub viewer: bool,
    /// When this join creates the room: a broadcast, where we present and whoever
    /// joins later watches.
    pub broadcast: bool,
    /// Simulcast layers the camera is sent in through an SFU (1: none).
    pub simulcast_layers: usize,
    /// Through an SFU, receive every camera in this layer (0 = smallest) instead of
    /// choosing by tile size and bandwidth.
    pub sfu_layer: Option<u8>,
    /// The front end draws remote cameras in tiles and says how large
    /// (`Command::ShowTile`). Through an SFU a camera whose tile is not drawn yet comes
    /// in its smallest layer; without (a headless analyser), in its largest.
    pub draws_tiles: bool,
}

impl CallConfig {
    pub fn new(server_url: &str, room: &str, name: &str) -> Self {
        Self {
            server_url: server_url.to_string(),
            room: room.to_string(),
            name: name.to_string(),
            password: None,
            bind_addrs: vec!["0.0.0.0:0".into()],
            ice_transport: IceTransport::All,
            video: VideoEncoding {
                fps: 30.0,
                bitrate_bps: 1_500_000,
                keyframe_interval_frames: 0,
            },
            screen_fps: 10.0,
            audio_bitrate_bps: 32_000,
            auto_answer: false,
            stats_interval: Duration::from_secs(1),
            test_call: false,
            sfu: None,
            ask_sfu: false,
            viewer: false,
            broadcast: false,
            simulcast_layers: crate::call::simulcast::LAYERS,
            sfu_layer: None,
            draws_tiles: false,
        }
    }

    /// The camera's simulcast layers: only through an SFU.
    pub(super) fn camera_layers(&self) -> usize {
        if self.sfu.is_some() {
            self.simulcast_layers.max(1)
        } else {
            1
        }
    }
}

/// The local sources a call starts with; either may be absent ("no camera").
#[derive(Default)]
pub struct LocalMedia {
    pub camera: Option<Box<dyn VideoSource>>,
    pub microphone: Option<Box<dyn AudioSource>>,
}

/// What the application asks of the engine.
pub enum Command {
    SetAudioMuted(bool),
    SetVideoMuted(bool),
    /// Replace (or add) the camera behind the same track.
    SetCamera(Box<dyn VideoSource>),
    SetMicrophone(Box<dyn AudioSource>),
    StartScreenShare(Box<dyn VideoSource>),
    StopScreenShare,
    Chat(String),
    /// Ring a member of the room.
    Invite {
        to: String,
        metadata: String,
    },
    Accept(String),
    Decline {
        call_id: String,
        reason: Option<String>,
    },
    /// Cancel an outgoing ring, or hang up the active call.
    Hangup,
    SetVideoBitrate(u32),
    SetVideoFps(f32),
    SetKeyframeInterval(u32),
    /// Ask a peer for a keyframe of one of its tracks (sends a PLI).
    RequestKeyframe {
        peer: String,
        track: TrackRole,
    },
    /// Record the call into `path` (fragmented MP4); others see that we record.
    StartRecording {
        path: PathBuf,
        settings: RecordSettings,
    },
    /// Stop recording and complete the file (hanging up and leaving do too).
    StopRecording,
    /// The size a member's video is drawn at (None: not drawn): through an SFU, the
    /// simulcast layer received follows it.
    ShowTile {
        peer: String,
        track: TrackRole,
        size: Option<(u32, u32)>,
    },
    /// Through an SFU, receive every camera in this layer (0 = smallest); None: choose
    /// by tile size and bandwidth again.
    ForceLayer(Option<u8>),
    Leave,
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Joined {
        id: String,
        room: String,
        /// Our name as the room shows it (suffixed if it was taken).
        name: String,
        /// The members already there, longest present first: the first owns the room
        /// (we do if there are none); when the owner leaves, the next takes over.
        present: Vec<String>,
    },
    PeerJoined {
        id: String,
        name: String,
        state: MediaState,
    },
    PeerLeft {
        id: String,
        reason: LeaveReason,
    },
    PeerMediaState {
        id: String,
        state: MediaState,
    },
    LocalMediaState(MediaState),
    Connection {
        id: String,
        state: ConnectionState,
    },
    TrackAdded {
        peer: String,
        track: TrackRole,
        kind: MediaKind,
    },
    TrackRemoved {
        peer: String,
        track: TrackRole,
    },
    /// The SFU now relays this simulcast layer (0 = smallest) of a member's video.
    LayerRelayed {
        peer: String,
        track: TrackRole,
        layer: u8,
    },
    /// An IDR arrived on a remote video track (wall-clock µs).
    KeyframeReceived {
        peer: String,
        track: TrackRole,
        at_us: u64,
    },
    Chat {
        from: String,
        name: String,
        text: String,
    },
    CallRinging {
        call_id: String,
        to: String,
    },
    IncomingCall {
        call_id: String,
        from: String,
        from_name: String,
        metadata: String,
    },
    CallAccepted {
        call_id: String,
        peer: String,
        room: String,
    },
    CallEnded {
        call_id: String,
        reason: CallEndReason,
        detail: Option<String>,
    },
    Stats(Vec<PeerCallStats>),
    /// Something went wrong that the user should see; the call goes on.
    Error(String),
    /// The signaling link is back and we are the same member: calls went on.
    Resumed,
    Reconnecting {
        reason: String,
    },
    /// The media path to a member went away (`reconnecting`: ICE restarts follow while it
    /// lasts) or came back.
    PeerReconnecting {
        id: String,
        reconnecting: bool,
    },
    /// A recording started into this file.
    RecordingStarted {
        path: String,
    },
    /// The recording stopped and its file is complete (or why it failed).
    RecordingStopped {
        summary: RecordSummary,
        error: Option<String>,
    },
    /// The microphone is muted and hears someone speak (true), or no longer (false).
    SpeakingWhileMuted(bool),
    /// Where the room's media goes, at the join and whenever it moves: through an SFU
    /// (true) or a mesh.
    /// Whether we only watch, and whether the room is a broadcast (after `Joined`).
    Role {
        viewer: bool,
        broadcast: bool,
    },
    /// How many other members only watch, when that changes.
    Viewers(usize),
    MediaMode {
        sfu: bool,
    },
    /// The engine stopped; what it sent over the whole call.
    Left(SentTotals),
}

/// Handle to a running engine.
#[derive(Clone)]
pub struct CallHandle {
    cmd: mpsc::UnboundedSender<Command>,
}

impl CallHandle {
    /// Queues a command; false if the engine has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        self.cmd.send(cmd).is_ok()
    }
}

/// Starts an engine: connects, joins, and runs until `Command::Leave` or the
/// handle is dropped. The join's outcome arrives as `Event::Joined` or an error.
pub async fn start(
    config: CallConfig,
    media: LocalMedia,
    sink: Arc<dyn MediaSink>,
) -> Result<(CallHandle, mpsc::UnboundedReceiver<Event>), CallError> {
    let (client, signals) =
        SignalingClient::connect(&config.server_url, ClientOptions::default()).await?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (peer_tx, peer_rx) = mpsc::unbounded_channel();
    let (fail_tx, fail_rx) = mpsc::unbounded_channel();
    let (kf_tx, kf_rx) = mpsc::unbounded_channel();
    // Every sink call passes the recorder's tap, which feeds a recording while one runs.
    let tap = RecordTap::wrap(sink);
    let sink: Arc<dyn MediaSink> = tap.clone();
    let mut state = MediaState::default();
    // A viewer opens no device: whatever was handed over stays closed.
    let media = if config.viewer {
        LocalMedia::default()
    } else {
        media
    };
    let camera = media.camera.map(|src| {
        state.has_camera = true;
        VideoCapture::start(
            TrackRole::Camera,
            src,
            config.video,
            config.camera_layers(),
            fail_tx.clone(),
            sink.clone(),
        )
    });
    let mic = media.microphone.map(|src| {
        state.has_microphone = true;
        AudioCapture::start(
            TrackRole::Microphone,
            src,
            config.audio_bitrate_bps,
            fail_tx.clone(),
            sink.clone(),
        )
    });
    let mut params = JoinParams {
        room: config.room.clone(),
        name: config.name.clone(),
        password: config.password.clone(),
        capacity: None,
        state,
        sfu: config.ask_sfu || config.broadcast,
        broadcast: config.broadcast,
        role: config.viewer.then_some(Role::Viewer),
    };
    if config.test_call {
        let echo = client.test_call().await?;
        params.room = echo.room;
        params.password = Some(echo.password);
    }
    // Janus first: unreachable, the call does not start (nor half-start in a mesh).
    let (sfu_news_tx, sfu_news) = mpsc::unbounded_channel();
    let sfu = match &config.sfu {
        Some(target) => {
            let (s, news) = super::sfu::Sfu::connect(target, 1).await?;
            super::modes::forward_news(news, 1, sfu_news_tx.clone());
            Some(s)
        }
        None => None,
    };
    let welcome = client.join(params.clone()).await?;
    let mut engine = Engine {
        config,
        client,
        events: ev_tx,
        sink,
        peer_tx,
        fail_tx,
        kf_tx,
        me: String::new(),
        ice: Vec::new(),
        tunnels: Default::default(),
        peers: HashMap::new(),
        serial: 0,
        stats: StatsTracker::default(),
        membership: Membership {
            room: params,
            previous_room: None,
            active_call: None,
            outgoing_ring: None,
            awaiting_join_marker: true,
        },
        local: Local {
            camera,
            screen: None,
            mic,
            state,
            screen_shares: 0,
            estimates: Vec::new(),
            rates: None,
            slow: Default::default(),
            small_rate: None,
            muted_speech: Default::default(),
            audio_loss: Default::default(),
            recording: super::record::Recording::new(tap),
        },
        sfu,
        sfu_news_tx,
        sfu_generation: 1,
        states: HashMap::new(),
        viewer: false,
        viewers: HashSet::new(),
        unconnected: HashMap::new(),
        tiles: HashMap::new(),
    };
    let explicit_sfu = engine.sfu.is_some();
    engine.on_welcome(welcome).await;
    if explicit_sfu {
        engine.emit(Event::MediaMode { sfu: true });
        engine.sfu_publish().await?;
    }
    tokio::spawn(engine.run(cmd_rx, signals, peer_rx, fail_rx, kf_rx, sfu_news));
    Ok((CallHandle { cmd: cmd_tx }, ev_rx))
}
