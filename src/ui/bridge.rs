//! The UI's link to the call engine: the UI thread sends [`UiCommand`]s and reads
//! [`UiEvent`]s; everything that waits (network, codecs, devices) runs on a tokio
//! runtime on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;
use tokio::sync::mpsc;

use crate::call::{self, CallConfig, CallHandle, Command, Event, LocalMedia};
use crate::media::device::{
    AudioProcessor, CameraSource, MicrophoneSource, ScreenSource, Speaker, list_cameras,
    list_microphones, list_screens,
};
use crate::media::{AudioSource, SyntheticAudio, SyntheticVideo, VideoSource};
use crate::signaling::protocol::RoomInfo;
use crate::signaling::{ClientOptions, Server, ServerConfig, SignalingClient};

use super::video::{SELF_ID, VideoFrames};

/// Port the built-in server tries first; the next free one up to +20 otherwise.
pub const EMBEDDED_PORT: u16 = 8787;

/// Where video comes from. Synthetic sources are always named as such in the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoChoice {
    None,
    TestPattern,
    /// A camera by nokhwa index, with its name for display.
    Camera(u32, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioChoice {
    None,
    TestTone,
    /// A microphone by cpal device id, with its name for display.
    Microphone(String, String),
}

impl VideoChoice {
    pub fn label(&self) -> String {
        match self {
            Self::None => "No camera".into(),
            Self::TestPattern => "Test pattern (synthetic, not a camera)".into(),
            Self::Camera(_, name) => name.clone(),
        }
    }

    /// The form kept in settings and taken by `--camera`.
    pub fn key(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::TestPattern => "synthetic".into(),
            Self::Camera(i, _) => format!("camera:{i}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "none" => Some(Self::None),
            "synthetic" | "test-pattern" => Some(Self::TestPattern),
            _ => {
                let i = s.strip_prefix("camera:").unwrap_or(s).parse().ok()?;
                Some(Self::Camera(i, format!("Camera {i}")))
            }
        }
    }

    fn open(&self) -> Result<Option<Box<dyn VideoSource>>, String> {
        match self {
            Self::None => Ok(None),
            Self::TestPattern => SyntheticVideo::new(640, 480, 30.0)
                .map(|s| Some(Box::new(s) as Box<dyn VideoSource>))
                .map_err(|e| e.to_string()),
            Self::Camera(i, _) => CameraSource::open(*i, 1280, 720, 30)
                .map(|s| Some(Box::new(s) as Box<dyn VideoSource>))
                .map_err(|e| e.to_string()),
        }
    }
}

impl AudioChoice {
    pub fn label(&self) -> String {
        match self {
            Self::None => "No microphone".into(),
            Self::TestTone => "Test tone (synthetic, not a microphone)".into(),
            Self::Microphone(_, name) => name.clone(),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::TestTone => "synthetic".into(),
            Self::Microphone(id, _) => format!("mic:{id}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "none" => Some(Self::None),
            "synthetic" | "test-tone" => Some(Self::TestTone),
            _ => {
                let id = s.strip_prefix("mic:").unwrap_or(s);
                Some(Self::Microphone(id.into(), id.into()))
            }
        }
    }

    /// A real microphone runs through echo cancellation fed by `echo_reference`.
    fn open(
        &self,
        echo_reference: Option<&AudioProcessor>,
    ) -> Result<Option<Box<dyn AudioSource>>, String> {
        match self {
            Self::None => Ok(None),
            Self::TestTone => Ok(Some(Box::new(SyntheticAudio::new(440.0)))),
            Self::Microphone(id, _) => {
                let mut mic = MicrophoneSource::open(Some(id)).map_err(|e| e.to_string())?;
                if let Some(p) = echo_reference {
                    mic = mic.with_processor(p.clone());
                }
                Ok(Some(Box::new(mic)))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinRequest {
    pub server: String,
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    pub camera: VideoChoice,
    pub microphone: AudioChoice,
}

/// What the UI asks for.
pub enum UiCommand {
    RefreshRooms {
        server: String,
    },
    /// Show the chosen camera in the lobby (None stops the preview).
    Preview(VideoChoice),
    Join(JoinRequest),
    /// Share the first screen (or say why not).
    ShareScreen,
    Engine(Command),
}

impl std::fmt::Debug for UiCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RefreshRooms { server } => write!(f, "RefreshRooms({server})"),
            Self::Preview(c) => write!(f, "Preview({c:?})"),
            Self::Join(j) => write!(f, "Join({j:?})"),
            Self::ShareScreen => write!(f, "ShareScreen"),
            Self::Engine(c) => write!(f, "Engine({})", command_name(c)),
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
        Command::Leave => "Leave".into(),
    }
}

/// What the UI hears.
#[derive(Debug)]
pub enum UiEvent {
    /// The built-in server is up: its local URL and the one to give LAN neighbours.
    ServerReady {
        url: String,
        lan_url: String,
    },
    ServerFailed(String),
    Rooms(Result<Vec<RoomInfo>, String>),
    JoinFailed(String),
    /// The devices found at start (cameras, microphones) beside the synthetic ones.
    Devices {
        cameras: Vec<VideoChoice>,
        microphones: Vec<AudioChoice>,
    },
    Error(String),
    Engine(Event),
}

/// Starts the runtime thread; returns the command sender and the event receiver.
pub fn spawn(
    frames: Arc<VideoFrames>,
    embed_server: bool,
    ctx: egui::Context,
) -> (
    mpsc::UnboundedSender<UiCommand>,
    std::sync::mpsc::Receiver<UiEvent>,
) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
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
            rt.block_on(run(cmd_rx, out, frames, embed_server));
        })
        .expect("spawning the engine thread");
    (cmd_tx, ev_rx)
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

async fn run(
    mut commands: mpsc::UnboundedReceiver<UiCommand>,
    out: Outbox,
    frames: Arc<VideoFrames>,
    embed_server: bool,
) {
    let _server = if embed_server {
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
    let found = tokio::task::spawn_blocking(|| {
        let cameras = list_cameras()
            .into_iter()
            .map(|c| VideoChoice::Camera(c.index, c.name))
            .collect();
        let microphones = list_microphones()
            .unwrap_or_default()
            .into_iter()
            .map(|m| AudioChoice::Microphone(m.id, m.name))
            .collect();
        (cameras, microphones)
    })
    .await;
    if let Ok((cameras, microphones)) = found {
        out.send(UiEvent::Devices {
            cameras,
            microphones,
        });
    }
    let mut call: Option<CallHandle> = None;
    let mut preview: Option<Arc<AtomicBool>> = None;
    while let Some(cmd) = commands.recv().await {
        match cmd {
            UiCommand::RefreshRooms { server } => {
                let out = out.clone();
                tokio::spawn(async move {
                    let rooms = list_rooms(&server).await;
                    out.send(UiEvent::Rooms(rooms));
                });
            }
            UiCommand::Preview(choice) => {
                if let Some(stop) = preview.take() {
                    stop.store(true, Ordering::Relaxed);
                }
                frames.forget_tile(SELF_ID, call::CAMERA_TRACK);
                if let Ok(Some(source)) = choice.open() {
                    preview = Some(run_preview(source, frames.clone()));
                }
            }
            UiCommand::Join(req) => {
                if let Some(stop) = preview.take() {
                    stop.store(true, Ordering::Relaxed);
                }
                match join(&req, frames.clone()).await {
                    Ok((handle, mut events)) => {
                        call = Some(handle);
                        let out = out.clone();
                        tokio::spawn(async move {
                            while let Some(e) = events.recv().await {
                                out.send(UiEvent::Engine(e));
                            }
                        });
                    }
                    Err(e) => out.send(UiEvent::JoinFailed(e)),
                }
            }
            UiCommand::ShareScreen => {
                let opened = tokio::task::spawn_blocking(|| {
                    if list_screens().is_empty() {
                        return Err("no screen to capture".to_string());
                    }
                    ScreenSource::open(0, 10.0).map_err(|e| e.to_string())
                })
                .await;
                match (opened, &call) {
                    (Ok(Ok(src)), Some(c)) => {
                        c.send(Command::StartScreenShare(Box::new(src)));
                    }
                    (Ok(Err(e)), _) => out.send(UiEvent::Error(format!("screen share: {e}"))),
                    _ => {}
                }
            }
            UiCommand::Engine(cmd) => {
                let leaving = matches!(cmd, Command::Leave);
                if let Some(c) = &call {
                    c.send(cmd);
                }
                if leaving {
                    call = None;
                }
            }
        }
    }
    if let Some(c) = call {
        c.send(Command::Leave);
    }
}

async fn join(
    req: &JoinRequest,
    sink: Arc<VideoFrames>,
) -> Result<(CallHandle, mpsc::UnboundedReceiver<Event>), String> {
    let mut cfg = CallConfig::new(&req.server, &req.room, &req.name);
    cfg.password = req.password.clone();
    // Remote audio plays through the default speaker; its mix is the echo reference.
    let echo = AudioProcessor::new().ok();
    match Speaker::open(None) {
        Ok(speaker) => {
            tracing::info!("playing through {}", speaker.describe());
            speaker.set_echo_reference(echo.clone());
            sink.set_speaker(Some(speaker));
        }
        Err(e) => tracing::warn!("no speaker: {e}"),
    }
    let media = LocalMedia {
        camera: req.camera.open()?,
        microphone: req.microphone.open(echo.as_ref())?,
    };
    if let Some(m) = &media.microphone {
        tracing::info!("sending audio from {}", m.describe());
    }
    call::start(cfg, media, sink)
        .await
        .map_err(|e| e.to_string())
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

/// Feeds the lobby's self-preview from a source on its own thread.
fn run_preview(mut source: Box<dyn VideoSource>, frames: Arc<VideoFrames>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let _ = std::thread::Builder::new()
        .name("preview".into())
        .spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match source.next_frame() {
                    Ok(f) => frames.store(SELF_ID, call::CAMERA_TRACK, &f),
                    Err(_) => break,
                }
            }
        });
    stop
}

/// Listens on every interface (so LAN neighbours can join) on the first free port
/// from [`EMBEDDED_PORT`]; returns the server and the URL to hand out.
async fn start_embedded() -> Result<(Server, String), String> {
    let mut last = String::new();
    for port in EMBEDDED_PORT..EMBEDDED_PORT + 20 {
        let cfg = ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
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
