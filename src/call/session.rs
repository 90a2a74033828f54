//! The call engine: joins a room through the signaling client, keeps one peer
//! connection per member (full mesh), runs the media stages, and reports events.
//!
//! Everything is driven from one task: commands from the application, signaling
//! events and peer events arrive on channels, so no state is shared with a UI.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::media::{AudioSource, VideoSource};
use crate::signaling::protocol::{
    CallEndReason, LeaveReason, MediaState, Member, ServerMessage, Welcome,
};
use crate::signaling::{ClientEvent, ClientOptions, JoinParams, SignalingClient, SignalingError};

use super::negotiation::{Negotiator, Signal};
use super::peer::{ConnectionState, IceServerConfig, MediaKind, Peer, PeerConfig, PeerEvent};
use super::pipeline::{
    AudioCapture, CaptureFailure, MediaSink, RecvCounters, VideoCapture, VideoEncoding,
    spawn_decoder,
};
use super::rate::{self, VideoRates};
use super::stats::{PeerCallStats, SentTotals, StatsTracker};

/// Track ids confab sends; a receiver tells a screen share by its id.
pub const CAMERA_TRACK: &str = "camera";
pub const SCREEN_TRACK: &str = "screen";
pub const MIC_TRACK: &str = "mic";

#[derive(Debug, Clone)]
pub struct CallConfig {
    pub server_url: String,
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    /// Local UDP addresses for ICE (tests: 127.0.0.1:0).
    pub bind_addrs: Vec<String>,
    pub video: VideoEncoding,
    pub audio_bitrate_bps: u32,
    /// Answer every ringing call at once (headless peers).
    pub auto_answer: bool,
    pub stats_interval: Duration,
}

impl CallConfig {
    pub fn new(server_url: &str, room: &str, name: &str) -> Self {
        Self {
            server_url: server_url.to_string(),
            room: room.to_string(),
            name: name.to_string(),
            password: None,
            bind_addrs: vec!["0.0.0.0:0".into()],
            video: VideoEncoding {
                fps: 30.0,
                bitrate_bps: 1_500_000,
                keyframe_interval_frames: 0,
            },
            audio_bitrate_bps: 32_000,
            auto_answer: false,
            stats_interval: Duration::from_secs(1),
        }
    }
}

/// The local sources a call starts with; either may be absent ("no camera").
#[derive(Default)]
pub struct LocalMedia {
    pub camera: Option<Box<dyn VideoSource>>,
    pub microphone: Option<Box<dyn AudioSource>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("signaling: {0}")]
    Signaling(#[from] SignalingError),
    #[error("peer connection: {0}")]
    Peer(#[from] super::error::PeerError),
}

/// What a remote track is, from its ids: confab and its web client put
/// "screen" in a share's ids; audio is the microphone; other video the camera.
fn track_role(track_id: &str, stream_id: &str, kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => MIC_TRACK,
        MediaKind::Video if track_id.contains(SCREEN_TRACK) || stream_id.contains(SCREEN_TRACK) => {
            SCREEN_TRACK
        }
        MediaKind::Video => CAMERA_TRACK,
    }
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
        track: String,
    },
    Leave,
}

/// Messages on the "chat" data channel.
///
/// A negotiated channel can open on one side before the other side's stack has
/// registered it, and whatever arrives in that gap is dropped. So each side says
/// `hello` until it hears anything back (answering every `hello` with `ack`), and
/// chat waits until the other side has been heard: nothing written is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DataMessage {
    Hello,
    Ack,
    Chat { text: String },
}

impl DataMessage {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("DataMessage serialises")
    }
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Joined {
        id: String,
        room: String,
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
        track: String,
        kind: MediaKind,
    },
    TrackRemoved {
        peer: String,
        track: String,
    },
    /// An IDR arrived on a remote video track (wall-clock µs).
    KeyframeReceived {
        peer: String,
        track: String,
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
    Reconnecting {
        reason: String,
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
) -> Result<(CallHandle, mpsc::UnboundedReceiver<Event>), EngineError> {
    let (client, signals) =
        SignalingClient::connect(&config.server_url, ClientOptions::default()).await?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (peer_tx, peer_rx) = mpsc::unbounded_channel();
    let (fail_tx, fail_rx) = mpsc::unbounded_channel();
    let (kf_tx, kf_rx) = mpsc::unbounded_channel();
    let mut state = MediaState::default();
    let camera = media.camera.map(|src| {
        state.has_camera = true;
        VideoCapture::start(
            CAMERA_TRACK,
            src,
            config.video,
            fail_tx.clone(),
            sink.clone(),
        )
    });
    let mic = media.microphone.map(|src| {
        state.has_microphone = true;
        AudioCapture::start(MIC_TRACK, src, config.audio_bitrate_bps, fail_tx.clone())
    });
    let params = JoinParams {
        room: config.room.clone(),
        name: config.name.clone(),
        password: config.password.clone(),
        capacity: None,
        state,
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
        room: params,
        previous_room: None,
        ice: Vec::new(),
        peers: HashMap::new(),
        serial: 0,
        camera,
        screen: None,
        mic,
        state,
        active_call: None,
        outgoing_ring: None,
        stats: StatsTracker::default(),
        estimates: Vec::new(),
        rates: None,
        screen_shares: 0,
        awaiting_join_marker: true,
    };
    engine.on_welcome(welcome).await;
    tokio::spawn(engine.run(cmd_rx, signals, peer_rx, fail_rx, kf_rx));
    Ok((CallHandle { cmd: cmd_tx }, ev_rx))
}

struct RemotePeer {
    serial: u64,
    name: String,
    state: MediaState,
    peer: Peer,
    negotiator: Negotiator,
    connection: ConnectionState,
    created: Instant,
    connected_after: Option<Duration>,
    /// Chat written before the other side was heard on the data channel.
    pending_chat: Vec<String>,
    channel_open: bool,
    /// The other side's channel works: we have received something on it.
    remote_ready: bool,
    remote_tracks: HashMap<String, (MediaKind, Arc<RecvCounters>)>,
    /// Remote track id -> what it is (camera, screen, mic).
    track_roles: HashMap<String, &'static str>,
}

struct Engine {
    config: CallConfig,
    client: SignalingClient,
    events: mpsc::UnboundedSender<Event>,
    sink: Arc<dyn MediaSink>,
    peer_tx: mpsc::UnboundedSender<(String, u64, PeerEvent)>,
    fail_tx: mpsc::UnboundedSender<CaptureFailure>,
    kf_tx: mpsc::UnboundedSender<(String, String, u64)>,
    me: String,
    room: JoinParams,
    /// Where to go back to when a private call ends.
    previous_room: Option<JoinParams>,
    ice: Vec<IceServerConfig>,
    peers: HashMap<String, RemotePeer>,
    serial: u64,
    camera: Option<VideoCapture>,
    screen: Option<VideoCapture>,
    mic: Option<AudioCapture>,
    state: MediaState,
    active_call: Option<String>,
    outgoing_ring: Option<String>,
    stats: StatsTracker,
    /// Each connected peer's bandwidth estimate at the last stats tick (bit/s).
    estimates: Vec<f64>,
    /// What the video encoders were last set to (None: their configured start).
    rates: Option<VideoRates>,
    /// Screen shares started so far; numbers the share's track id.
    screen_shares: u32,
    /// Between leaving a room and the client's `Joined` marker, room events
    /// still queued belong to the old room and must not touch the new peers.
    awaiting_join_marker: bool,
}

impl Engine {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut signals: mpsc::UnboundedReceiver<ClientEvent>,
        mut peer_events: mpsc::UnboundedReceiver<(String, u64, PeerEvent)>,
        mut failures: mpsc::UnboundedReceiver<CaptureFailure>,
        mut keyframes: mpsc::UnboundedReceiver<(String, String, u64)>,
    ) {
        let mut tick = tokio::time::interval(self.config.stats_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hello = tokio::time::interval(Duration::from_millis(250));
        hello.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Leave) => break,
                    Some(cmd) => self.on_command(cmd).await,
                },
                ev = signals.recv() => match ev {
                    Some(ClientEvent::Closed) | None => {
                        self.emit(Event::Error("lost the signaling server".into()));
                        break;
                    }
                    Some(ev) => self.on_signaling(ev).await,
                },
                Some((id, serial, ev)) = peer_events.recv() => self.on_peer_event(&id, serial, ev).await,
                Some(f) = failures.recv() => {
                    if f.track == CAMERA_TRACK {
                        self.state.has_camera = false;
                        self.publish_state();
                    } else if f.track == MIC_TRACK {
                        self.state.has_microphone = false;
                        self.publish_state();
                    }
                    self.emit(Event::Error(f.message));
                }
                Some((peer, track, at_us)) = keyframes.recv() => {
                    self.emit(Event::KeyframeReceived { peer, track, at_us });
                }
                _ = tick.tick() => self.report_stats().await,
                _ = hello.tick() => {
                    for p in self.peers.values().filter(|p| p.channel_open && !p.remote_ready) {
                        let _ = p.peer.send_data(&DataMessage::Hello.to_json()).await;
                    }
                }
            }
        }
        self.close_all_peers().await;
        let _ = self.client.leave().await;
        self.client.close();
        let sent = SentTotals::from_counters(
            self.camera.as_ref().map(|c| &*c.counters),
            self.mic.as_ref().map(|c| &*c.counters),
        );
        self.emit(Event::Left(sent));
    }

    async fn on_welcome(&mut self, w: Welcome) {
        self.me = w.id.clone();
        self.ice = w
            .ice_servers
            .iter()
            .map(|s| IceServerConfig {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        self.room.room = w.room.clone();
        self.emit(Event::Joined {
            id: w.id.clone(),
            room: w.room.clone(),
        });
        self.emit(Event::LocalMediaState(self.state));
        for m in w.members {
            self.emit(Event::PeerJoined {
                id: m.id.clone(),
                name: m.name.clone(),
                state: m.state,
            });
            self.add_peer(m).await;
        }
    }

    /// Creates the connection to a member and adds our tracks; negotiation
    /// starts from the negotiation-needed event that follows.
    async fn add_peer(&mut self, m: Member) {
        let video = self.config.video.bitrate_bps;
        let audio = self.config.audio_bitrate_bps;
        let config = PeerConfig {
            ice_servers: self.ice.clone(),
            bind_addrs: self.config.bind_addrs.clone(),
            start_bitrate_bps: video.saturating_add(audio),
            // Room for a screen share beside the camera.
            max_bitrate_bps: video.saturating_mul(2).saturating_add(audio),
        };
        let (peer, mut rx) = match Peer::new(config).await {
            Ok(p) => p,
            Err(e) => {
                self.emit(Event::Error(format!("cannot call {}: {e}", m.name)));
                return;
            }
        };
        self.serial += 1;
        let serial = self.serial;
        let (tx, id) = (self.peer_tx.clone(), m.id.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((id.clone(), serial, ev)).is_err() {
                    break;
                }
            }
        });
        // Audio first: the first m-section of our offers is the BUNDLE tag, and Opus is
        // what every peer takes. A peer without our video codec rejects a video section;
        // were that the first one, Chromium moves the bundle to a new transport when it
        // recycles the rejected m-line (e.g. for a screen share), which needs a new DTLS
        // session that webrtc-rs never starts: the connection would hang in "connecting".
        if let Some(c) = &self.mic {
            let id = self.local_track_id(MIC_TRACK);
            match peer.add_audio_track(&id, CAMERA_TRACK).await {
                Ok(s) => c.fanout.add(&m.id, s),
                Err(e) => self.emit(Event::Error(format!("microphone track: {e}"))),
            }
        }
        if let Some(c) = &self.camera {
            self.attach(c, &peer, &m.id, CAMERA_TRACK).await;
        }
        if let Some(c) = &self.screen {
            self.attach(c, &peer, &m.id, SCREEN_TRACK).await;
        }
        // Polite side: the lower id. Both sides agree without talking.
        let polite = self.me < m.id;
        self.peers.insert(
            m.id.clone(),
            RemotePeer {
                serial,
                name: m.name,
                state: m.state,
                peer,
                negotiator: Negotiator::new(polite),
                connection: ConnectionState::New,
                created: Instant::now(),
                connected_after: None,
                pending_chat: Vec::new(),
                channel_open: false,
                remote_ready: false,
                remote_tracks: HashMap::new(),
                track_roles: HashMap::new(),
            },
        );
    }

    async fn remove_peer(&mut self, id: &str) {
        if let Some(p) = self.peers.remove(id) {
            for c in [&self.camera, &self.screen].into_iter().flatten() {
                c.fanout.remove(id);
            }
            if let Some(c) = &self.mic {
                c.fanout.remove(id);
            }
            let _ = p.peer.close().await;
            self.stats.forget(id);
        }
    }

    async fn close_all_peers(&mut self) {
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        for id in ids {
            self.remove_peer(&id).await;
        }
    }

    fn relay(&self, to: &str, signals: Vec<Signal>) {
        for s in signals {
            match serde_json::to_value(&s) {
                Ok(v) => {
                    if self.client.relay(to, v).is_err() {
                        self.emit(Event::Error("signaling client stopped".into()));
                    }
                }
                Err(e) => tracing::error!("signal not serialisable: {e}"),
            }
        }
    }

    fn publish_state(&self) {
        let _ = self.client.set_media_state(self.state);
        self.emit(Event::LocalMediaState(self.state));
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SetAudioMuted(m) => {
                if let Some(c) = &self.mic {
                    c.set_muted(m);
                }
                self.state.audio_muted = m;
                self.publish_state();
            }
            Command::SetVideoMuted(m) => {
                if let Some(c) = &self.camera {
                    c.set_muted(m);
                }
                self.state.video_muted = m;
                self.publish_state();
            }
            Command::SetCamera(src) => {
                if let Some(c) = &self.camera {
                    c.replace_source(src);
                } else {
                    self.camera = Some(self.start_video(CAMERA_TRACK, src).await);
                    self.reset_rates();
                }
                self.state.has_camera = true;
                self.publish_state();
            }
            Command::SetMicrophone(src) => {
                if let Some(c) = &self.mic {
                    c.replace_source(src);
                } else {
                    let cap = AudioCapture::start(
                        MIC_TRACK,
                        src,
                        self.config.audio_bitrate_bps,
                        self.fail_tx.clone(),
                    );
                    let track = self.local_track_id(MIC_TRACK);
                    for (id, p) in &self.peers {
                        match p.peer.add_audio_track(&track, CAMERA_TRACK).await {
                            Ok(s) => cap.fanout.add(id, s),
                            Err(e) => self.emit(Event::Error(format!("microphone track: {e}"))),
                        }
                    }
                    self.mic = Some(cap);
                }
                self.state.has_microphone = true;
                self.publish_state();
            }
            Command::StartScreenShare(src) => {
                if let Some(s) = &self.screen {
                    s.replace_source(src);
                } else {
                    self.screen_shares += 1;
                    self.screen = Some(self.start_video(SCREEN_TRACK, src).await);
                }
                self.state.screen_sharing = true;
                self.publish_state();
                self.reset_rates();
            }
            Command::StopScreenShare => {
                if let Some(cap) = self.screen.take() {
                    for (id, sender) in cap.fanout.snapshot() {
                        if let Some(p) = self.peers.get(&id)
                            && let Err(e) = p.peer.remove_track(&sender).await
                        {
                            self.emit(Event::Error(format!("stopping the share: {e}")));
                        }
                    }
                }
                self.state.screen_sharing = false;
                self.publish_state();
            }
            Command::Chat(text) => {
                let msg = DataMessage::Chat { text }.to_json();
                for p in self.peers.values_mut() {
                    if p.remote_ready && p.peer.send_data(&msg).await.is_ok() {
                        continue;
                    }
                    p.pending_chat.push(msg.clone());
                }
            }
            Command::Invite { to, metadata } => {
                let _ = self
                    .client
                    .send(crate::signaling::protocol::ClientMessage::CallInvite { to, metadata });
            }
            Command::Accept(call_id) => {
                let _ = self
                    .client
                    .send(crate::signaling::protocol::ClientMessage::CallAccept { call_id });
            }
            Command::Decline { call_id, reason } => {
                let _ = self
                    .client
                    .send(crate::signaling::protocol::ClientMessage::CallDecline {
                        call_id,
                        reason,
                    });
            }
            Command::Hangup => {
                if let Some(call_id) = self
                    .active_call
                    .clone()
                    .or_else(|| self.outgoing_ring.clone())
                {
                    let _ = self
                        .client
                        .send(crate::signaling::protocol::ClientMessage::CallHangup { call_id });
                }
            }
            Command::SetVideoBitrate(bps) => {
                // The new ceiling; the estimate may keep the encoders below it.
                self.config.video.bitrate_bps = bps;
                self.reset_rates();
            }
            Command::SetVideoFps(fps) => {
                for c in [&self.camera, &self.screen].into_iter().flatten() {
                    c.set_fps(fps);
                }
            }
            Command::SetKeyframeInterval(n) => {
                for c in [&self.camera, &self.screen].into_iter().flatten() {
                    c.set_keyframe_interval(n);
                }
            }
            Command::RequestKeyframe { peer, track } => {
                let Some(p) = self.peers.get(&peer) else {
                    return;
                };
                let Some(real) = p
                    .track_roles
                    .iter()
                    .find(|(_, r)| **r == track)
                    .map(|(id, _)| id.clone())
                else {
                    return;
                };
                if let Err(e) = p.peer.request_keyframe(&real).await {
                    self.emit(Event::Error(format!("keyframe request: {e}")));
                }
            }
            Command::Leave => {}
        }
    }

    /// Starts capturing a new local video track and adds it to every connection.
    async fn start_video(&self, role: &str, src: Box<dyn VideoSource>) -> VideoCapture {
        let cap = VideoCapture::start(
            role,
            src,
            self.config.video,
            self.fail_tx.clone(),
            self.sink.clone(),
        );
        for (id, p) in &self.peers {
            self.attach(&cap, &p.peer, id, role).await;
        }
        cap
    }

    /// Adds a local video track to one connection and feeds it from `cap`.
    async fn attach(&self, cap: &VideoCapture, peer: &Peer, peer_id: &str, role: &str) {
        match peer.add_video_track(&self.local_track_id(role), role).await {
            Ok(s) => cap.fanout.add(peer_id, s),
            Err(e) => self.emit(Event::Error(format!("{role} track: {e}"))),
        }
    }

    /// Track ids carry our member id (webrtc-rs routes RTCP by track id, so ours must
    /// not equal the remote's) and a share number (a re-added id is never announced again).
    fn local_track_id(&self, role: &str) -> String {
        if role == SCREEN_TRACK {
            format!("{}-{role}-{}", self.me, self.screen_shares)
        } else {
            format!("{}-{role}", self.me)
        }
    }

    async fn on_signaling(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Joined(_) => self.awaiting_join_marker = false,
            ClientEvent::Message(
                ServerMessage::PeerJoined { .. }
                | ServerMessage::PeerLeft { .. }
                | ServerMessage::Relay { .. }
                | ServerMessage::MediaState { .. },
            ) if self.awaiting_join_marker => {}
            ClientEvent::Message(msg) => self.on_server_message(msg).await,
            ClientEvent::Disconnected { reason, .. } => {
                self.close_all_peers().await;
                self.emit(Event::Reconnecting { reason });
            }
            ClientEvent::Reconnected(w) => {
                self.close_all_peers().await;
                self.on_welcome(w).await;
            }
            ClientEvent::RejoinFailed(v) => {
                self.emit(Event::Error(format!("could not rejoin the room: {v}")));
            }
            ClientEvent::Closed => {}
        }
    }

    async fn on_server_message(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::PeerJoined { member } => {
                self.emit(Event::PeerJoined {
                    id: member.id.clone(),
                    name: member.name.clone(),
                    state: member.state,
                });
                self.add_peer(member).await;
            }
            ServerMessage::PeerLeft { id, reason } => {
                self.remove_peer(&id).await;
                self.emit(Event::PeerLeft { id, reason });
            }
            ServerMessage::Relay { from, payload } => {
                let signal: Signal = match serde_json::from_value(payload) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%from, "unreadable signal: {e}");
                        return;
                    }
                };
                let Some(p) = self.peers.get_mut(&from) else {
                    tracing::debug!(%from, "signal from an unknown member");
                    return;
                };
                match p.negotiator.on_signal(&p.peer, signal).await {
                    Ok(out) => self.relay(&from, out),
                    Err(e) => self.emit(Event::Error(format!("negotiation with {from}: {e}"))),
                }
            }
            ServerMessage::MediaState { id, state } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.state = state;
                }
                self.emit(Event::PeerMediaState { id, state });
            }
            ServerMessage::CallRinging { call_id, to } => {
                self.outgoing_ring = Some(call_id.clone());
                self.emit(Event::CallRinging { call_id, to });
            }
            ServerMessage::CallIncoming {
                call_id,
                from,
                from_name,
                metadata,
            } => {
                if self.config.auto_answer {
                    let _ =
                        self.client
                            .send(crate::signaling::protocol::ClientMessage::CallAccept {
                                call_id: call_id.clone(),
                            });
                }
                self.emit(Event::IncomingCall {
                    call_id,
                    from,
                    from_name,
                    metadata,
                });
            }
            ServerMessage::CallAccepted {
                call_id,
                room,
                peer,
            } => {
                self.outgoing_ring = None;
                self.active_call = Some(call_id.clone());
                self.emit(Event::CallAccepted {
                    call_id,
                    peer,
                    room: room.clone(),
                });
                let mut target = self.room.clone();
                target.room = room;
                target.password = None;
                self.previous_room = Some(self.room.clone());
                self.switch_room(target).await;
            }
            ServerMessage::CallEnded {
                call_id,
                reason,
                detail,
            } => {
                if self.outgoing_ring.as_deref() == Some(call_id.as_str()) {
                    self.outgoing_ring = None;
                }
                let was_active = self.active_call.as_deref() == Some(call_id.as_str());
                self.emit(Event::CallEnded {
                    call_id,
                    reason,
                    detail,
                });
                if was_active {
                    self.active_call = None;
                    if let Some(back) = self.previous_room.take() {
                        self.switch_room(back).await;
                    }
                }
            }
            ServerMessage::Error { code, message, .. } => {
                self.emit(Event::Error(format!("{code}: {message}")));
            }
            ServerMessage::Welcome(_)
            | ServerMessage::Rooms { .. }
            | ServerMessage::Left { .. }
            | ServerMessage::Pong { .. } => {}
        }
    }

    async fn switch_room(&mut self, target: JoinParams) {
        self.awaiting_join_marker = true;
        self.close_all_peers().await;
        let _ = self.client.leave().await;
        let mut target = target;
        target.state = self.state;
        match self.client.join(target.clone()).await {
            Ok(w) => {
                self.room = target;
                self.on_welcome(w).await;
            }
            Err(e) => self.emit(Event::Error(format!("cannot join {}: {e}", target.room))),
        }
    }

    async fn on_peer_event(&mut self, id: &str, serial: u64, ev: PeerEvent) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        if p.serial != serial {
            return; // from a connection we already replaced
        }
        match ev {
            PeerEvent::LocalCandidate(c) => {
                self.relay(id, vec![Signal::Candidate { candidate: c }])
            }
            PeerEvent::NegotiationNeeded => match p.negotiator.on_negotiation_needed(&p.peer).await
            {
                Ok(out) => self.relay(id, out),
                Err(e) => self.emit(Event::Error(format!("negotiation with {id}: {e}"))),
            },
            PeerEvent::ConnectionState(s) => {
                p.connection = s;
                if s == ConnectionState::Connected && p.connected_after.is_none() {
                    p.connected_after = Some(p.created.elapsed());
                    // A fresh receiver needs a picture now, not at the next periodic IDR.
                    for c in [&self.camera, &self.screen].into_iter().flatten() {
                        c.request_keyframe();
                    }
                }
                self.emit(Event::Connection {
                    id: id.to_string(),
                    state: s,
                });
            }
            PeerEvent::DataOpen => {
                p.channel_open = true;
                let _ = p.peer.send_data(&DataMessage::Hello.to_json()).await;
            }
            PeerEvent::Data(text) => {
                if !p.remote_ready {
                    p.remote_ready = true;
                    for msg in std::mem::take(&mut p.pending_chat) {
                        if let Err(e) = p.peer.send_data(&msg).await {
                            let _ = self
                                .events
                                .send(Event::Error(format!("chat to {id} not delivered: {e}")));
                        }
                    }
                }
                match serde_json::from_str::<DataMessage>(&text) {
                    Ok(DataMessage::Hello) => {
                        let _ = p.peer.send_data(&DataMessage::Ack.to_json()).await;
                    }
                    Ok(DataMessage::Ack) => {}
                    Ok(DataMessage::Chat { text }) => {
                        let name = p.name.clone();
                        self.emit(Event::Chat {
                            from: id.to_string(),
                            name,
                            text,
                        });
                    }
                    Err(e) => tracing::debug!(%id, "unknown data message: {e}"),
                }
            }
            PeerEvent::RemoteTrack {
                track_id,
                stream_id,
                kind,
                media,
            } => {
                let role = track_role(&track_id, &stream_id, kind);
                let counters = Arc::new(RecvCounters::default());
                p.remote_tracks
                    .insert(track_id.clone(), (kind, counters.clone()));
                p.track_roles.insert(track_id.clone(), role);
                spawn_decoder(
                    id.to_string(),
                    role,
                    track_id,
                    media,
                    p.peer.clone(),
                    self.sink.clone(),
                    counters,
                    self.kf_tx.clone(),
                );
                self.emit(Event::TrackAdded {
                    peer: id.to_string(),
                    track: role.to_string(),
                    kind,
                });
            }
            PeerEvent::RemoteTrackEnded { track_id } => {
                p.remote_tracks.remove(&track_id);
                if let Some(role) = p.track_roles.remove(&track_id) {
                    self.emit(Event::TrackRemoved {
                        peer: id.to_string(),
                        track: role.to_string(),
                    });
                }
            }
            PeerEvent::KeyframeRequested { track_id } => {
                let cap = if track_id.contains(SCREEN_TRACK) {
                    self.screen.as_ref()
                } else {
                    self.camera.as_ref()
                };
                if let Some(c) = cap {
                    c.request_keyframe();
                }
            }
        }
    }

    /// Sets every encoder afresh: a new one starts at the configured bitrate, and a new
    /// ceiling changes what the estimate allows.
    fn reset_rates(&mut self) {
        self.rates = None;
        self.apply_rates();
    }

    /// Sets the encoders from the slowest peer's bandwidth estimate.
    fn apply_rates(&mut self) {
        let rates = rate::allocate(
            &self.estimates,
            self.config.audio_bitrate_bps,
            self.config.video.bitrate_bps,
            self.screen.is_some(),
        );
        // Each encoder keeps its last setting unless the new one differs enough.
        let pick = |new: u32, old: Option<u32>| match old {
            Some(o) if !rate::worth_changing(o, new) => o,
            _ => new,
        };
        let old = self.rates;
        let applied = VideoRates {
            camera: pick(rates.camera, old.map(|r| r.camera)),
            screen: pick(rates.screen, old.map(|r| r.screen)),
        };
        if let Some(c) = &self.camera
            && old.is_none_or(|o| o.camera != applied.camera)
        {
            tracing::debug!(bps = applied.camera, "camera bitrate");
            c.set_bitrate(applied.camera);
        }
        if let Some(c) = &self.screen
            && old.is_none_or(|o| o.screen != applied.screen)
        {
            tracing::debug!(bps = applied.screen, "screen bitrate");
            c.set_bitrate(applied.screen);
        }
        self.rates = Some(applied);
    }

    async fn report_stats(&mut self) {
        let mut out = Vec::with_capacity(self.peers.len());
        self.estimates.clear();
        for (id, p) in &self.peers {
            let transport = p.peer.stats().await;
            if p.connection == ConnectionState::Connected
                && let Some(e) = transport.send_estimate_bps
            {
                self.estimates.push(e);
            }
            out.push(self.stats.sample(
                id,
                &p.name,
                p.connection,
                p.connected_after,
                &transport,
                &p.remote_tracks,
                self.camera.as_ref().map(|c| &*c.counters),
                self.mic.as_ref().map(|c| &*c.counters),
            ));
        }
        self.emit(Event::Stats(out));
        self.apply_rates();
    }
}
