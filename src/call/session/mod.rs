//! The call engine: joins a room through the signaling client, keeps one peer
//! connection per member (full mesh), runs the media stages, and reports events.
//!
//! Everything is driven from one task: commands from the application, signaling
//! events and peer events arrive on channels, so no state is shared with a UI.

mod api;
mod chat;
mod layers;
mod local;
mod mesh;
mod modes;
mod record;
mod room;
mod sfu;
mod sfu_stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::signaling::protocol::MediaState;
use crate::signaling::{ClientEvent, JoinParams, SignalingClient};

use crate::call::audio_loss::ExpectedLoss;
use crate::call::decode::RecvCounters;
use crate::call::encode::{AudioCapture, CaptureFailure, VideoCapture};
use crate::call::muted_speech::MutedSpeech;
use crate::call::negotiation::Negotiator;
use crate::call::peer::{ConnectionState, IceServerConfig, MediaKind, Peer, PeerEvent};
use crate::call::rate::VideoRates;
use crate::call::reconnect::Reconnect;
use crate::call::sink::MediaSink;
use crate::call::slow_peers::SlowPeers;
use crate::call::stats::{SentTotals, StatsTracker};
use crate::call::track::TrackRole;

/// How often the encoders follow the bandwidth estimate.
const RATE_INTERVAL: Duration = Duration::from_millis(200);

pub use api::{CallConfig, CallHandle, Command, Event, LocalMedia, start};
pub use chat::DataMessage;

use chat::{ChatLink, Frame, Received};

struct RemotePeer {
    serial: u64,
    name: String,
    state: MediaState,
    peer: Peer,
    negotiator: Negotiator,
    connection: ConnectionState,
    /// When to restart ICE after the path went away.
    reconnect: Reconnect,
    created: Instant,
    connected_after: Option<Duration>,
    chat: ChatLink,
    remote_tracks: HashMap<String, (MediaKind, Arc<RecvCounters>)>,
    /// Remote track id -> what it is (camera, screen, mic).
    track_roles: HashMap<String, TrackRole>,
}

struct Engine {
    config: CallConfig,
    client: SignalingClient,
    events: mpsc::UnboundedSender<Event>,
    sink: Arc<dyn MediaSink>,
    peer_tx: mpsc::UnboundedSender<(String, u64, PeerEvent)>,
    fail_tx: mpsc::UnboundedSender<CaptureFailure>,
    kf_tx: mpsc::UnboundedSender<(String, TrackRole, u64)>,
    me: String,
    ice: Vec<IceServerConfig>,
    /// TURN over TCP/TLS, through local ports (the stack speaks TURN only over UDP).
    tunnels: crate::call::tunnel::Tunnels,
    peers: HashMap<String, RemotePeer>,
    serial: u64,
    stats: StatsTracker,
    membership: Membership,
    local: Local,
    /// SFU mode: media through Janus instead of `peers`.
    sfu: Option<sfu::Sfu>,
    /// Janus news, tagged with the session's generation (`modes.rs`).
    sfu_news_tx: mpsc::UnboundedSender<(u64, crate::sfu::News)>,
    sfu_generation: u64,
    /// Members' media states as last told: a mesh set up later starts from them.
    states: HashMap<String, MediaState>,
    /// We only watch: nothing is sent, and other viewers get no connection from us.
    viewer: bool,
    /// Members who only watch.
    viewers: std::collections::HashSet<String>,
    /// Members with no connection of ours in a mesh (both of us watch), id -> name:
    /// chat reaches them through the signaling server.
    unconnected: HashMap<String, String>,
    /// Tile sizes the front end reported, by member and track (`layers.rs`).
    tiles: HashMap<(String, TrackRole), (u32, u32)>,
}

/// Where we are: the room, the private call we are in or ringing for.
struct Membership {
    room: JoinParams,
    /// Where to go back to when a private call ends.
    previous_room: Option<JoinParams>,
    active_call: Option<String>,
    outgoing_ring: Option<String>,
    /// Between leaving a room and the client's `Joined` marker, room events
    /// still queued belong to the old room and must not touch the new peers.
    awaiting_join_marker: bool,
}

/// What we send: the capture stages, their state as others see it, and their rates.
struct Local {
    camera: Option<VideoCapture>,
    screen: Option<VideoCapture>,
    mic: Option<AudioCapture>,
    state: MediaState,
    /// Screen shares started so far; numbers the share's track id.
    screen_shares: u32,
    /// Each connected peer's bandwidth estimate (bit/s), by peer.
    estimates: Vec<(String, f64)>,
    /// What the video encoders were last set to (None: their configured start).
    rates: Option<VideoRates>,
    /// Mesh peers on links far slower than the others', and the rate of the camera's
    /// small stream they are sent.
    slow: SlowPeers,
    small_rate: Option<u32>,
    /// Whether someone speaks into the muted microphone.
    muted_speech: MutedSpeech,
    /// The loss the Opus encoder is told to expect.
    audio_loss: ExpectedLoss,
    /// The recorder's tap on the sink, and the recording it feeds.
    recording: record::Recording,
}

impl Engine {
    fn emit(&self, e: Event) {
        self.local.recording.observe(&e);
        let _ = self.events.send(e);
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut signals: mpsc::UnboundedReceiver<ClientEvent>,
        mut peer_events: mpsc::UnboundedReceiver<(String, u64, PeerEvent)>,
        mut failures: mpsc::UnboundedReceiver<CaptureFailure>,
        mut keyframes: mpsc::UnboundedReceiver<(String, TrackRole, u64)>,
        mut sfu_news: mpsc::UnboundedReceiver<(u64, crate::sfu::News)>,
    ) {
        let mut tick = tokio::time::interval(self.config.stats_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hello = tokio::time::interval(Duration::from_millis(250));
        hello.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rates = tokio::time::interval(RATE_INTERVAL);
        rates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                Some((generation, news)) = sfu_news.recv() => {
                    if self.sfu.as_ref().is_some_and(|s| s.generation == generation) {
                        self.on_sfu_news(news).await;
                    }
                }
                Some(f) = failures.recv() => {
                    if f.track == TrackRole::Camera {
                        self.local.state.has_camera = false;
                        self.publish_state();
                    } else if f.track == TrackRole::Microphone {
                        self.local.state.has_microphone = false;
                        self.publish_state();
                    }
                    self.emit(Event::Error(f.message));
                }
                Some((peer, track, at_us)) = keyframes.recv() => {
                    self.emit(Event::KeyframeReceived { peer, track, at_us });
                }
                _ = tick.tick() => {
                    self.report_stats().await;
                    self.choose_layers().await;
                }
                _ = rates.tick() => {
                    self.follow_estimates();
                    self.watch_muted_speech();
                    self.watch_recording().await;
                    self.restart_lost_paths().await;
                }
                _ = hello.tick() => {
                    for (id, p) in self.peers.iter_mut() {
                        let due = p.chat.hello_due().into_iter().chain(p.chat.flush()).collect();
                        send_frames(p, id, due).await;
                    }
                }
            }
        }
        // Leaving finishes the recording's file.
        self.stop_recording().await;
        self.close_all_peers().await;
        self.close_sfu().await;
        let _ = self.client.leave().await;
        self.client.close();
        let sent = SentTotals::from_counters(
            self.local.camera.as_ref().map(|c| &*c.counters),
            self.local.mic.as_ref().map(|c| &*c.counters),
        );
        self.emit(Event::Left(sent));
    }

    fn publish_state(&self) {
        let _ = self.client.set_media_state(self.local.state);
        self.emit(Event::LocalMediaState(self.local.state));
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SetAudioMuted(m) => {
                if let Some(c) = &self.local.mic {
                    c.set_muted(m);
                }
                self.local.state.audio_muted = m;
                self.publish_state();
            }
            Command::SetVideoMuted(m) => {
                if let Some(c) = &self.local.camera {
                    c.set_muted(m);
                }
                self.local.state.video_muted = m;
                self.publish_state();
            }
            Command::SetCamera(src) => {
                if let Some(c) = &self.local.camera {
                    c.replace_source(src);
                } else {
                    self.local.camera = Some(self.start_video(TrackRole::Camera, src).await);
                    self.reset_rates();
                }
                self.local.state.has_camera = true;
                self.publish_state();
            }
            Command::SetMicrophone(src) => {
                if let Some(c) = &self.local.mic {
                    c.replace_source(src);
                } else {
                    let cap = AudioCapture::start(
                        TrackRole::Microphone,
                        src,
                        self.config.audio_bitrate_bps,
                        self.fail_tx.clone(),
                        self.sink.clone(),
                    );
                    let track = self.local_track_id(TrackRole::Microphone);
                    for (id, peer) in self.sending_connections() {
                        match peer
                            .add_audio_track(&track, TrackRole::Camera.as_str())
                            .await
                        {
                            Ok(s) => cap.fanout.add(&id, s),
                            Err(e) => self.emit(Event::Error(format!("microphone track: {e}"))),
                        }
                    }
                    self.local.mic = Some(cap);
                }
                self.local.state.has_microphone = true;
                self.publish_state();
            }
            Command::StartScreenShare(src) => {
                if let Some(s) = &self.local.screen {
                    s.replace_source(src);
                } else {
                    self.local.screen_shares += 1;
                    self.local.screen = Some(self.start_video(TrackRole::Screen, src).await);
                }
                self.local.state.screen_sharing = true;
                self.publish_state();
                self.reset_rates();
            }
            Command::StopScreenShare => {
                if let Some(cap) = self.local.screen.take() {
                    for (id, sender) in cap.fanout.snapshot() {
                        if let Some(peer) = self.connection(&id)
                            && let Err(e) = peer.remove_track(&sender).await
                        {
                            self.emit(Event::Error(format!("stopping the share: {e}")));
                        }
                    }
                }
                self.local.state.screen_sharing = false;
                self.publish_state();
            }
            Command::Chat(text) => {
                for (id, p) in self.peers.iter_mut() {
                    let now = p.chat.chat(&text).into_iter().collect();
                    send_frames(p, id, now).await;
                }
                if let Some(sfu) = &self.sfu {
                    for id in sfu.members.keys() {
                        let _ = self.client.relay(id, chat::relayed(&text));
                    }
                }
                for id in self.unconnected.keys() {
                    let _ = self.client.relay(id, chat::relayed(&text));
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
                // Hanging up ends the recording too: the file is complete at once.
                self.stop_recording().await;
                if let Some(call_id) = self
                    .membership
                    .active_call
                    .clone()
                    .or_else(|| self.membership.outgoing_ring.clone())
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
                for c in [&self.local.camera, &self.local.screen]
                    .into_iter()
                    .flatten()
                {
                    c.set_fps(fps);
                }
            }
            Command::SetKeyframeInterval(n) => {
                for c in [&self.local.camera, &self.local.screen]
                    .into_iter()
                    .flatten()
                {
                    c.set_keyframe_interval(n);
                }
            }
            Command::RequestKeyframe { peer, track } if self.sfu.is_some() => {
                self.sfu_request_keyframe(&peer, track).await;
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
            Command::StartRecording { path, settings } => self.start_recording(path, settings),
            Command::StopRecording => self.stop_recording().await,
            Command::ShowTile { peer, track, size } => self.show_tile(peer, track, size).await,
            Command::ForceLayer(layer) => self.force_layer(layer).await,
            Command::Leave => {}
        }
    }
}
/// Sends frames on a peer's chat channel in order; a chat frame that fails waits for the
/// next tick.
async fn send_frames(p: &mut RemotePeer, id: &str, frames: Vec<Frame>) {
    for frame in frames {
        if let Err(e) = p.peer.send_data(frame.json()).await {
            tracing::debug!(%id, "chat channel: {e}");
            p.chat.failed(frame);
        }
    }
}
