//! The UI's link to the call engine: the UI thread sends [`UiCommand`]s and reads
//! [`UiEvent`]s; everything that waits (network, codecs, devices) runs on a tokio
//! runtime on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;
use tokio::sync::mpsc;

use crate::call::{self, CallConfig, CallHandle, Command, Event, LocalMedia};
use crate::media::device::{ScreenInfo, ScreenSource};
use crate::signaling::protocol::RoomInfo;
use crate::signaling::{ClientOptions, Server, ServerConfig, SignalingClient};

use super::choices::{AudioChoice, DeviceList, SpeakerChoice, VideoChoice};
use super::echo::EchoPath;
use super::previews::{RING_STREAM, run_chime, run_mic_meter, run_preview, run_ringer};
use super::quality::Quality;
use super::sink::UiSink;
use super::video::SELF_ID;

/// Port the built-in server tries first; the next free one up to +20 otherwise.
pub const EMBEDDED_PORT: u16 = 8787;

#[derive(Debug, Clone, PartialEq)]
pub struct JoinRequest {
    pub server: String,
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    pub camera: VideoChoice,
    pub microphone: AudioChoice,
    pub speaker: SpeakerChoice,
    pub echo_cancellation: bool,
    pub relay_only: bool,
    pub quality: Quality,
    /// A test call with the server's echo peer instead of `room`.
    pub test_call: bool,
    pub role: JoinRole,
}

/// How one joins a room from the lobby.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JoinRole {
    #[default]
    Present,
    /// Only watch: no camera or microphone opens, nothing is sent.
    Watch,
    /// Create the room as a broadcast: we present, whoever joins later watches.
    Broadcast,
}

/// What the UI asks for.
pub enum UiCommand {
    RefreshRooms {
        server: String,
    },
    /// List cameras, microphones, speakers and screens again.
    RefreshDevices,
    /// Show the chosen camera in the lobby (None stops the preview).
    Preview(VideoChoice),
    /// Measure the chosen microphone's level in the lobby (None stops it).
    PreviewMicrophone(AudioChoice),
    Join(JoinRequest),
    /// Mid-call: a different source behind the same track, no renegotiation.
    SwitchCamera(VideoChoice),
    SwitchMicrophone(AudioChoice),
    SwitchSpeaker(SpeakerChoice),
    /// Echo cancellation and noise suppression on or off, at once.
    SetEchoCancellation(bool),
    /// Share this screen (index into the listed screens), or say why not.
    ShareScreen(usize),
    /// Play the ring tone (an incoming call) or stop it.
    Ring(bool),
    /// The short sound of someone joining (rising) or leaving.
    Chime {
        rising: bool,
    },
    /// Let other hosts use the built-in server (it starts open to this machine only).
    ShareOnLan(bool),
    /// Run `confab doctor`'s checks: this machine's, and `server`'s if there is one.
    RunChecks {
        server: Option<String>,
    },
    Engine(Command),
    /// The window is closing: leave the call and stop.
    Quit,
}

impl std::fmt::Debug for UiCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RefreshRooms { server } => write!(f, "RefreshRooms({server})"),
            Self::RefreshDevices => write!(f, "RefreshDevices"),
            Self::Preview(c) => write!(f, "Preview({c:?})"),
            Self::PreviewMicrophone(c) => write!(f, "PreviewMicrophone({c:?})"),
            Self::Join(j) => write!(f, "Join({j:?})"),
            Self::SwitchCamera(c) => write!(f, "SwitchCamera({c:?})"),
            Self::SwitchMicrophone(c) => write!(f, "SwitchMicrophone({c:?})"),
            Self::SwitchSpeaker(c) => write!(f, "SwitchSpeaker({c:?})"),
            Self::SetEchoCancellation(on) => write!(f, "SetEchoCancellation({on})"),
            Self::ShareScreen(i) => write!(f, "ShareScreen({i})"),
            Self::Ring(on) => write!(f, "Ring({on})"),
            Self::Chime { rising } => write!(f, "Chime({rising})"),
            Self::ShareOnLan(open) => write!(f, "ShareOnLan({open})"),
            Self::RunChecks { server } => write!(f, "RunChecks({server:?})"),
            Self::Engine(c) => write!(f, "Engine({})", command_name(c)),
            Self::Quit => write!(f, "Quit"),
        }
    }
}

/// A short name for a command (commands carry sources, which aren't `Debug`).
pub fn command_name(c: &Command) -> String {
    match c {
        Command::SetAudioMuted(m) => format!("SetAudioMuted({m})"),
        Command::SetVideoMuted(m) => format!("SetVideoMuted({m})"),
        Command::SetCamera(_) => "SetCamera".into(),
        Command::SetMicrophone(_) => "SetMicrophone".into(),
        Command::StartScreenShare(_) => "StartScreenShare".into(),
        Command::StopScreenShare => "StopScreenShare".into(),
        Command::Chat(t) => format!("Chat({t})"),
        Command::Invite { to, .. } => format!("Invite({to})"),
        Command::Accept(id) => format!("Accept({id})"),
        Command::Decline { call_id, .. } => format!("Decline({call_id})"),
        Command::Hangup => "Hangup".into(),
        Command::SetVideoBitrate(b) => format!("SetVideoBitrate({b})"),
        Command::SetVideoFps(f) => format!("SetVideoFps({f})"),
        Command::SetKeyframeInterval(n) => format!("SetKeyframeInterval({n})"),
        Command::RequestKeyframe { peer, track } => format!("RequestKeyframe({peer}, {track})"),
        Command::StartRecording { .. } => "StartRecording".into(),
        Command::StopRecording => "StopRecording".into(),
        Command::ShowTile { peer, track, size } => format!("ShowTile({peer}, {track}, {size:?})"),
        Command::ForceLayer(l) => format!("ForceLayer({l:?})"),
        Command::Leave => "Leave".into(),
    }
}

/// What the UI hears.
#[derive(Debug)]
pub enum UiEvent {
    /// The built-in server is up, for this machine only: its local URL, and the one LAN
    /// neighbours would use once it is shared.
    ServerReady {
        url: String,
        lan_url: String,
    },
    ServerFailed(String),
    Rooms(Result<Vec<RoomInfo>, String>),
    JoinFailed(String),
    /// The devices found (at start and on refresh), beside the synthetic ones.
    Devices(DeviceList),
    Error(String),
    /// What the checks found.
    Checks(crate::doctor::Report),
    Engine(Event),
}

/// Starts the runtime thread; returns the command sender, the event receiver and what
/// says the engine has stopped (after [`UiCommand::Quit`], having left the call).
pub fn spawn(
    media: Arc<UiSink>,
    embed_server: bool,
    ctx: egui::Context,
) -> (
    mpsc::UnboundedSender<UiCommand>,
    std::sync::mpsc::Receiver<UiEvent>,
    std::sync::mpsc::Receiver<()>,
) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ev_tx.send(UiEvent::ServerFailed(format!("no async runtime: {e}")));
                    return;
                }
            };
            let out = Outbox { tx: ev_tx, ctx };
            rt.block_on(run(cmd_rx, out, media, embed_server));
            let _ = done_tx.send(());
        })
        .expect("spawning the engine thread");
    (cmd_tx, ev_rx, done_rx)
}

/// Sends to the UI and wakes it.
#[derive(Clone)]
struct Outbox {
    tx: std::sync::mpsc::Sender<UiEvent>,
    ctx: egui::Context,
}

impl Outbox {
    fn send(&self, e: UiEvent) {
        let _ = self.tx.send(e);
        self.ctx.request_repaint();
    }
}

/// What the runtime thread holds between commands.
struct Engine {
    out: Outbox,
    media: Arc<UiSink>,
    call: Option<CallHandle>,
    /// Forwards the call's events; it ends when the call has left.
    call_events: Option<tokio::task::JoinHandle<()>>,
    /// The echo canceller shared by the call's microphone and speaker.
    echo: EchoPath,
    /// Set on the lobby's camera preview, mic meter and the ring to stop them.
    preview: Option<Arc<AtomicBool>>,
    mic_meter: Option<Arc<AtomicBool>>,
    ringer: Option<Arc<AtomicBool>>,
    screens: Vec<ScreenInfo>,
    server: Option<Server>,
    /// The last join's quality: what cameras and screens opened mid-call follow.
    quality: Quality,
}

async fn run(
    mut commands: mpsc::UnboundedReceiver<UiCommand>,
    out: Outbox,
    media: Arc<UiSink>,
    embed_server: bool,
) {
    let server = if embed_server {
        match start_embedded().await {
            Ok((server, lan_url)) => {
                out.send(UiEvent::ServerReady {
                    url: format!("ws://127.0.0.1:{}/ws", server.local_addr().port()),
                    lan_url,
                });
                Some(server)
            }
            Err(e) => {
                out.send(UiEvent::ServerFailed(e));
                None
            }
        }
    } else {
        None
    };
    let mut engine = Engine {
        out,
        media,
        call: None,
        call_events: None,
        echo: EchoPath::default(),
        preview: None,
        mic_meter: None,
        ringer: None,
        screens: Vec::new(),
        server,
        quality: Quality::default(),
    };
    tokio::spawn(super::quit::on_signals(engine.out.ctx.clone()));
    engine.scan_devices().await;
    while let Some(cmd) = commands.recv().await {
        if matches!(cmd, UiCommand::Quit) {
            break;
        }
        engine.handle(cmd).await;
    }
    stop(&mut engine.ringer);
    if let Some(c) = engine.call.take() {
        c.send(Command::Leave);
    }
    if let Some(events) = engine.call_events.take() {
        let _ = tokio::time::timeout(super::quit::LEAVE_WAIT, events).await;
    }
}

fn stop(flag: &mut Option<Arc<AtomicBool>>) {
    if let Some(f) = flag.take() {
        f.store(true, Ordering::Relaxed);
    }
}

/// Runs a blocking device call (opening a camera can take a second) off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("device thread failed: {e}")))
}

impl Engine {
    async fn scan_devices(&mut self) {
        if let Ok(list) = tokio::task::spawn_blocking(DeviceList::scan).await {
            self.screens = list.screens.clone();
            self.out.send(UiEvent::Devices(list));
        }
    }

    fn error(&self, msg: String) {
        self.out.send(UiEvent::Error(msg));
    }

    async fn handle(&mut self, cmd: UiCommand) {
        match cmd {
            UiCommand::RefreshRooms { server } => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    let rooms = list_rooms(&server).await;
                    out.send(UiEvent::Rooms(rooms));
                });
            }
            UiCommand::RefreshDevices => self.scan_devices().await,
            UiCommand::Preview(choice) => {
                stop(&mut self.preview);
                self.media
                    .video
                    .forget_tile(SELF_ID, call::TrackRole::Camera);
                let mode = self.quality.camera;
                match blocking(move || choice.open(mode)).await {
                    Ok(Some(source)) => {
                        self.preview = Some(run_preview(source, self.media.clone()));
                    }
                    Ok(None) => {}
                    Err(e) => self.error(format!("camera: {e}")),
                }
            }
            UiCommand::PreviewMicrophone(choice) => {
                stop(&mut self.mic_meter);
                self.media.sound.set_level(SELF_ID, None);
                match blocking(move || choice.open(None)).await {
                    Ok(Some(source)) => {
                        self.mic_meter = Some(run_mic_meter(
                            source,
                            self.media.clone(),
                            self.out.ctx.clone(),
                        ));
                    }
                    Ok(None) => {}
                    Err(e) => self.error(format!("microphone: {e}")),
                }
            }
            UiCommand::Join(req) => {
                stop(&mut self.preview);
                stop(&mut self.mic_meter);
                self.media.sound.set_level(SELF_ID, None);
                match self.join(req).await {
                    Ok((handle, mut events)) => {
                        self.call = Some(handle);
                        let out = self.out.clone();
                        let media = self.media.clone();
                        self.call_events = Some(tokio::spawn(async move {
                            let mut speaker_failed = None;
                            while let Some(e) = events.recv().await {
                                // The speaker fails on its own thread; look once a stats tick.
                                if matches!(e, Event::Stats(_)) {
                                    let err = media.sound.speaker_error();
                                    if err.is_some() && err != speaker_failed {
                                        out.send(UiEvent::Error(format!(
                                            "{} (the call goes on: pick another speaker under Devices)",
                                            err.as_deref().unwrap_or_default()
                                        )));
                                    }
                                    speaker_failed = err;
                                }
                                out.send(UiEvent::Engine(e));
                            }
                        }));
                    }
                    Err(e) => self.out.send(UiEvent::JoinFailed(e)),
                }
            }
            UiCommand::SwitchCamera(choice) => {
                let label = choice.label();
                let mode = self.quality.camera;
                match blocking(move || choice.open(mode)).await {
                    Ok(Some(src)) => self.engine(Command::SetCamera(src)),
                    Ok(None) => self.engine(Command::SetVideoMuted(true)),
                    Err(e) => self.error(format!("{label}: {e} (the call goes on)")),
                }
            }
            UiCommand::SwitchMicrophone(choice) => {
                let label = choice.label();
                let echo = self.echo.clone();
                match blocking(move || echo.open_microphone(&choice)).await {
                    Ok(Some(src)) => self.engine(Command::SetMicrophone(src)),
                    Ok(None) => self.engine(Command::SetAudioMuted(true)),
                    Err(e) => self.error(format!("{label}: {e} (the call goes on)")),
                }
            }
            UiCommand::SwitchSpeaker(choice) => {
                let label = choice.label();
                match blocking(move || choice.open()).await {
                    Ok(speaker) => {
                        self.echo.feed_from(&speaker);
                        self.media.sound.set_speaker(Some(speaker));
                    }
                    Err(e) => self.error(format!("{label}: {e}")),
                }
            }
            UiCommand::SetEchoCancellation(on) => self.echo.set_enabled(on),
            UiCommand::ShareScreen(index) => {
                if self.call.is_none() {
                    return;
                }
                let name = self.screens.get(index).map(|s| s.name.clone());
                let fps = self.quality.screen.fps();
                let opened = blocking(move || {
                    let Some(name) = name else {
                        return Err("no screen to capture".to_string());
                    };
                    ScreenSource::open(index, fps).map_err(|e| format!("{name}: {e}"))
                })
                .await;
                match opened {
                    Ok(src) => {
                        let src = self.quality.screen_source(Box::new(src));
                        self.engine(Command::StartScreenShare(src));
                    }
                    Err(e) => self.error(format!("screen share: {e}")),
                }
            }
            UiCommand::Chime { rising } => {
                // A chime lasts 240 ms and ends on its own; a second one plays after it.
                if self.call.is_some() {
                    run_chime(self.media.clone(), rising);
                }
            }
            UiCommand::ShareOnLan(open) => {
                if let Some(server) = &self.server {
                    server.set_lan_open(open);
                }
            }
            UiCommand::RunChecks { server } => {
                // The network checks' futures are not Send: a thread of their own.
                let out = self.out.clone();
                let spawned = std::thread::Builder::new()
                    .name("checks".into())
                    .spawn(move || out.send(UiEvent::Checks(run_checks(server))));
                if let Err(e) = spawned {
                    self.out.send(UiEvent::Checks(crate::doctor::Report {
                        checks: vec![crate::doctor::Check::fail(
                            "checks",
                            format!("could not start: {e}"),
                            "try again",
                        )],
                    }));
                }
            }
            UiCommand::Ring(on) => {
                stop(&mut self.ringer);
                self.media.sound.stop_sound(RING_STREAM);
                if on {
                    self.ringer = Some(run_ringer(self.media.clone()));
                }
            }
            // The command loop stops on Quit before handing it here.
            UiCommand::Quit => {}
            UiCommand::Engine(cmd) => {
                let leaving = matches!(cmd, Command::Leave);
                self.engine(cmd);
                if leaving {
                    self.call = None;
                    stop(&mut self.ringer);
                    self.media.sound.set_speaker(None);
                    self.echo = EchoPath::default();
                }
            }
        }
    }

    fn engine(&self, cmd: Command) {
        if let Some(c) = &self.call {
            c.send(cmd);
        }
    }

    async fn join(
        &mut self,
        req: JoinRequest,
    ) -> Result<(CallHandle, mpsc::UnboundedReceiver<Event>), String> {
        let cfg = call_config(&req);
        self.quality = req.quality;
        // Remote audio plays through the chosen speaker; its mix is the echo reference.
        let echo = EchoPath::start(req.echo_cancellation);
        self.echo = echo.clone();
        let speaker = req.speaker.clone();
        match blocking(move || speaker.open()).await {
            Ok(speaker) => {
                tracing::info!("playing through {}", speaker.describe());
                echo.feed_from(&speaker);
                self.media.sound.set_speaker(Some(speaker));
            }
            Err(e) => self.error(format!("no sound out ({}): {e}", req.speaker.label())),
        }
        // A viewer opens no device at all.
        let (camera, microphone) = if cfg.viewer {
            (VideoChoice::None, AudioChoice::None)
        } else {
            (req.camera.clone(), req.microphone.clone())
        };
        let mode = req.quality.camera;
        let media = blocking(move || {
            Ok(LocalMedia {
                camera: camera.open(mode)?,
                microphone: echo.open_microphone(&microphone)?,
            })
        })
        .await?;
        if let Some(m) = &media.microphone {
            tracing::info!("sending audio from {}", m.describe());
        }
        call::start(cfg, media, self.media.clone())
            .await
            .map_err(|e| e.to_string())
    }
}

/// `confab doctor`'s checks on a runtime of their own.
fn run_checks(server: Option<String>) -> crate::doctor::Report {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return crate::doctor::Report {
                checks: vec![crate::doctor::Check::fail(
                    "checks",
                    format!("no async runtime: {e}"),
                    "try again",
                )],
            };
        }
    };
    rt.block_on(async move {
        match server {
            Some(server) => {
                let opts = crate::doctor::DoctorOptions {
                    server: Some(server),
                };
                crate::doctor::run(opts).await
            }
            None => crate::doctor::run_local().await,
        }
    })
}

/// What the engine is started with for a join.
pub(super) fn call_config(req: &JoinRequest) -> CallConfig {
    let mut cfg = CallConfig::new(&req.server, &req.room, &req.name);
    cfg.password = req.password.clone();
    if req.relay_only {
        cfg.ice_transport = call::IceTransport::Relay;
    }
    req.quality.apply(&mut cfg);
    cfg.test_call = req.test_call;
    cfg.viewer = req.role == JoinRole::Watch;
    cfg.broadcast = req.role == JoinRole::Broadcast;
    cfg.draws_tiles = true;
    cfg
}

async fn list_rooms(server: &str) -> Result<Vec<RoomInfo>, String> {
    let opts = ClientOptions {
        reconnect: false,
        ..ClientOptions::default()
    };
    let (client, _events) = SignalingClient::connect(server, opts)
        .await
        .map_err(|e| e.to_string())?;
    let rooms = client.list_rooms().await.map_err(|e| e.to_string());
    client.close();
    rooms
}

/// Listens on every interface, but admits only this machine until the user shares it
/// on the LAN ([`Server::set_lan_open`]); the first free port from [`EMBEDDED_PORT`].
/// Returns the server and the URL LAN neighbours would use.
async fn start_embedded() -> Result<(Server, String), String> {
    let mut last = String::new();
    for port in EMBEDDED_PORT..EMBEDDED_PORT + 20 {
        let cfg = ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            lan_open: false,
            // Any free port: the welcome names it.
            stun_listen: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            // The lobby's Test call: this machine's own echo.
            echo: Some(crate::echo::EchoPeers::config(2)),
            ..ServerConfig::default()
        };
        match Server::start(cfg).await {
            Ok(server) => {
                let lan = lan_address().unwrap_or_else(|| "127.0.0.1".into());
                let lan_url = format!("ws://{lan}:{port}/ws");
                return Ok((server, lan_url));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("no free port for the built-in server: {last}"))
}

/// The address of the interface that would carry traffic to another host
/// (a UDP "connect" sends nothing).
fn lan_address() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::quality::{CameraMode, Resolution, ScreenPreference};

    #[test]
    fn a_join_starts_the_engine_with_the_forms_quality_and_relay_choice() {
        let quality = Quality {
            max_video_kbps: 2500,
            camera: CameraMode {
                resolution: Resolution::P1080,
                fps: 24,
            },
            screen: ScreenPreference::Motion,
        };
        let req = JoinRequest {
            server: "ws://h/ws".into(),
            room: "team".into(),
            name: "Ada".into(),
            password: None,
            camera: VideoChoice::None,
            microphone: AudioChoice::None,
            speaker: SpeakerChoice::Default,
            echo_cancellation: true,
            relay_only: true,
            quality,
            test_call: false,
            role: JoinRole::Present,
        };
        let cfg = call_config(&req);
        assert_eq!(cfg.video.bitrate_bps, 2_500_000);
        assert_eq!(cfg.video.fps, 24.0);
        assert_eq!(cfg.screen_fps, ScreenPreference::Motion.fps());
        assert_eq!(cfg.ice_transport, call::IceTransport::Relay);
        let plain = call_config(&JoinRequest {
            quality: Quality::default(),
            ..req.clone()
        });
        assert_ne!(plain.video.bitrate_bps, cfg.video.bitrate_bps);
        assert_ne!(plain.screen_fps, cfg.screen_fps);
        assert!(!cfg.test_call);
        let test_call = call_config(&JoinRequest {
            test_call: true,
            ..req.clone()
        });
        assert!(test_call.test_call);
        let watch = call_config(&JoinRequest {
            role: JoinRole::Watch,
            ..req.clone()
        });
        assert!(watch.viewer && !watch.broadcast);
        let broadcast = call_config(&JoinRequest {
            role: JoinRole::Broadcast,
            ..req
        });
        assert!(broadcast.broadcast && !broadcast.viewer);
    }
}
