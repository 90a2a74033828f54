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
    AudioProcessor, CameraInfo, CameraSource, MicrophoneSource, ScreenInfo, ScreenSource, Speaker,
    list_cameras, list_microphones, list_screens, list_speakers,
};
use crate::media::{
    AudioSource, RingTone, SyntheticAudio, SyntheticVideo, VideoSource, level_dbfs,
};
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

/// Where remote audio plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerChoice {
    /// The system's default output.
    Default,
    /// A speaker by cpal device id, with its name for display.
    Device(String, String),
}

impl SpeakerChoice {
    pub fn label(&self) -> String {
        match self {
            Self::Default => "System default".into(),
            Self::Device(_, name) => name.clone(),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::Default => String::new(),
            Self::Device(id, _) => format!("speaker:{id}"),
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "" | "default" => Self::Default,
            _ => {
                let id = s.strip_prefix("speaker:").unwrap_or(s);
                Self::Device(id.into(), id.into())
            }
        }
    }

    fn open(&self) -> Result<Speaker, String> {
        let id = match self {
            Self::Default => None,
            Self::Device(id, _) => Some(id.as_str()),
        };
        Speaker::open(id).map_err(|e| e.to_string())
    }
}

impl VideoChoice {
    /// A camera's entry, its name followed by what it offers.
    fn from_info(c: CameraInfo) -> Self {
        let mut formats = c.formats;
        formats.sort_unstable_by_key(|&(w, h, fps)| std::cmp::Reverse((w * h, fps)));
        let mut shown: Vec<String> = formats
            .iter()
            .take(3)
            .map(|(w, h, fps)| format!("{w}x{h} {fps} fps"))
            .collect();
        if formats.len() > 3 {
            shown.push(format!("+{} more", formats.len() - 3));
        }
        let name = if shown.is_empty() {
            c.name
        } else {
            format!("{} ({})", c.name, shown.join(", "))
        };
        Self::Camera(c.index, name)
    }

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
    pub speaker: SpeakerChoice,
    pub echo_cancellation: bool,
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
    Engine(Command),
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
    /// The devices found (at start and on refresh), beside the synthetic ones.
    Devices(DeviceList),
    Error(String),
    Engine(Event),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceList {
    pub cameras: Vec<VideoChoice>,
    pub microphones: Vec<AudioChoice>,
    pub speakers: Vec<SpeakerChoice>,
    pub screens: Vec<ScreenInfo>,
}

impl DeviceList {
    /// Asks every backend; slow (cameras are opened to read their formats), so off the UI thread.
    fn scan() -> Self {
        let audio = |r: Result<Vec<_>, _>| {
            r.unwrap_or_else(|e| {
                tracing::warn!("listing audio devices: {e}");
                Vec::new()
            })
        };
        Self {
            cameras: list_cameras()
                .into_iter()
                .map(VideoChoice::from_info)
                .collect(),
            microphones: audio(list_microphones())
                .into_iter()
                .map(|m| AudioChoice::Microphone(m.id, m.name))
                .collect(),
            speakers: audio(list_speakers())
                .into_iter()
                .map(|m| SpeakerChoice::Device(m.id, m.name))
                .collect(),
            screens: list_screens(),
        }
    }
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

/// What the runtime thread holds between commands.
struct Engine {
    out: Outbox,
    frames: Arc<VideoFrames>,
    call: Option<CallHandle>,
    /// The echo canceller shared by the call's microphone and speaker.
    echo: Option<AudioProcessor>,
    /// Set on the lobby's camera preview, mic meter and the ring to stop them.
    preview: Option<Arc<AtomicBool>>,
    mic_meter: Option<Arc<AtomicBool>>,
    ringer: Option<Arc<AtomicBool>>,
    screens: Vec<ScreenInfo>,
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
    let mut engine = Engine {
        out,
        frames,
        call: None,
        echo: None,
        preview: None,
        mic_meter: None,
        ringer: None,
        screens: Vec::new(),
    };
    engine.scan_devices().await;
    while let Some(cmd) = commands.recv().await {
        engine.handle(cmd).await;
    }
    stop(&mut engine.ringer);
    if let Some(c) = engine.call {
        c.send(Command::Leave);
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
                self.frames.forget_tile(SELF_ID, call::CAMERA_TRACK);
                match blocking(move || choice.open()).await {
                    Ok(Some(source)) => {
                        self.preview = Some(run_preview(source, self.frames.clone()));
                    }
                    Ok(None) => {}
                    Err(e) => self.error(format!("camera: {e}")),
                }
            }
            UiCommand::PreviewMicrophone(choice) => {
                stop(&mut self.mic_meter);
                self.frames.set_level(SELF_ID, None);
                match blocking(move || choice.open(None)).await {
                    Ok(Some(source)) => {
                        self.mic_meter = Some(run_mic_meter(
                            source,
                            self.frames.clone(),
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
                self.frames.set_level(SELF_ID, None);
                match self.join(req).await {
                    Ok((handle, mut events)) => {
                        self.call = Some(handle);
                        let out = self.out.clone();
                        let frames = self.frames.clone();
                        tokio::spawn(async move {
                            let mut speaker_failed = None;
                            while let Some(e) = events.recv().await {
                                // The speaker fails on its own thread; look once a stats tick.
                                if matches!(e, Event::Stats(_)) {
                                    let err = frames.speaker_error();
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
                        });
                    }
                    Err(e) => self.out.send(UiEvent::JoinFailed(e)),
                }
            }
            UiCommand::SwitchCamera(choice) => {
                let label = choice.label();
                match blocking(move || choice.open()).await {
                    Ok(Some(src)) => self.engine(Command::SetCamera(src)),
                    Ok(None) => self.engine(Command::SetVideoMuted(true)),
                    Err(e) => self.error(format!("{label}: {e} (the call goes on)")),
                }
            }
            UiCommand::SwitchMicrophone(choice) => {
                let label = choice.label();
                let echo = self.echo.clone();
                match blocking(move || choice.open(echo.as_ref())).await {
                    Ok(Some(src)) => self.engine(Command::SetMicrophone(src)),
                    Ok(None) => self.engine(Command::SetAudioMuted(true)),
                    Err(e) => self.error(format!("{label}: {e} (the call goes on)")),
                }
            }
            UiCommand::SwitchSpeaker(choice) => {
                let label = choice.label();
                match blocking(move || choice.open()).await {
                    Ok(speaker) => {
                        speaker.set_echo_reference(self.echo.clone());
                        self.frames.set_speaker(Some(speaker));
                    }
                    Err(e) => self.error(format!("{label}: {e}")),
                }
            }
            UiCommand::SetEchoCancellation(on) => {
                if let Some(p) = &self.echo {
                    p.set_enabled(on);
                }
            }
            UiCommand::ShareScreen(index) => {
                if self.call.is_none() {
                    return;
                }
                let name = self.screens.get(index).map(|s| s.name.clone());
                let opened = blocking(move || {
                    let Some(name) = name else {
                        return Err("no screen to capture".to_string());
                    };
                    ScreenSource::open(index, SCREEN_FPS).map_err(|e| format!("{name}: {e}"))
                })
                .await;
                match opened {
                    Ok(src) => self.engine(Command::StartScreenShare(Box::new(src))),
                    Err(e) => self.error(format!("screen share: {e}")),
                }
            }
            UiCommand::Ring(on) => {
                stop(&mut self.ringer);
                self.frames.stop_sound(RING_STREAM);
                if on {
                    self.ringer = Some(run_ringer(self.frames.clone()));
                }
            }
            UiCommand::Engine(cmd) => {
                let leaving = matches!(cmd, Command::Leave);
                self.engine(cmd);
                if leaving {
                    self.call = None;
                    stop(&mut self.ringer);
                    self.frames.set_speaker(None);
                    self.echo = None;
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
        let mut cfg = CallConfig::new(&req.server, &req.room, &req.name);
        cfg.password = req.password.clone();
        // Remote audio plays through the chosen speaker; its mix is the echo reference.
        let echo = AudioProcessor::new()
            .inspect_err(|e| tracing::warn!("no echo cancellation: {e}"))
            .ok();
        if let Some(p) = &echo {
            p.set_enabled(req.echo_cancellation);
        }
        self.echo = echo.clone();
        let speaker = req.speaker.clone();
        match blocking(move || speaker.open()).await {
            Ok(speaker) => {
                tracing::info!("playing through {}", speaker.describe());
                speaker.set_echo_reference(echo.clone());
                self.frames.set_speaker(Some(speaker));
            }
            Err(e) => self.error(format!("no sound out ({}): {e}", req.speaker.label())),
        }
        let (camera, microphone) = (req.camera.clone(), req.microphone.clone());
        let media = blocking(move || {
            Ok(LocalMedia {
                camera: camera.open()?,
                microphone: microphone.open(echo.as_ref())?,
            })
        })
        .await?;
        if let Some(m) = &media.microphone {
            tracing::info!("sending audio from {}", m.describe());
        }
        call::start(cfg, media, self.frames.clone())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Frame rate of a shared screen: text stays sharp, motion is secondary.
const SCREEN_FPS: f32 = 10.0;

/// The speaker stream the ring tone plays on (member ids are printable, so no clash).
const RING_STREAM: &str = "\u{1}ring";

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

/// Runs `step` on a named thread until it returns false or the returned flag is set,
/// then `finish`. The lobby's previews and the ring are such loops.
fn run_until_stopped(
    name: &str,
    mut step: impl FnMut() -> bool + Send + 'static,
    finish: impl FnOnce() + Send + 'static,
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stopped.load(Ordering::Relaxed) && step() {}
            finish();
        });
    if let Err(e) = spawned {
        tracing::warn!("no {name} thread: {e}");
    }
    stop
}

/// Feeds the lobby's self-preview from a source.
fn run_preview(mut source: Box<dyn VideoSource>, frames: Arc<VideoFrames>) -> Arc<AtomicBool> {
    run_until_stopped(
        "preview",
        move || match source.next_frame() {
            Ok(f) => {
                frames.store(SELF_ID, call::CAMERA_TRACK, &f);
                true
            }
            Err(_) => false,
        },
        || {},
    )
}

/// Measures a microphone for the lobby's level meter.
fn run_mic_meter(
    mut source: Box<dyn AudioSource>,
    frames: Arc<VideoFrames>,
    ctx: egui::Context,
) -> Arc<AtomicBool> {
    let (meter, meter_ctx) = (frames.clone(), ctx.clone());
    let mut n = 0u64;
    run_until_stopped(
        "mic-meter",
        move || {
            let Ok(f) = source.next_frame() else {
                return false;
            };
            meter.set_level(SELF_ID, Some(level_dbfs(&f.samples)));
            n += 1;
            // About 16 redraws a second is smooth enough for a meter.
            if n.is_multiple_of(3) {
                meter_ctx.request_repaint();
            }
            true
        },
        move || {
            frames.set_level(SELF_ID, None);
            ctx.request_repaint();
        },
    )
}

/// Plays the ring tone on the speaker until stopped.
fn run_ringer(frames: Arc<VideoFrames>) -> Arc<AtomicBool> {
    let mut ring = RingTone::new();
    run_until_stopped(
        "ring",
        move || match ring.next_frame() {
            Ok(f) => {
                frames.play_sound(RING_STREAM, &f.samples);
                true
            }
            Err(_) => false,
        },
        || {},
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mic_meter_reports_the_sources_level_and_clears_it_when_stopped() {
        let frames = Arc::new(VideoFrames::default());
        let ctx = egui::Context::default();
        let (woke, wakes) = std::sync::mpsc::channel();
        ctx.set_request_repaint_callback(move |_| {
            let _ = woke.send(());
        });
        // The synthetic tone is a 0.3-amplitude sine: about -13.5 dBFS.
        let stop = run_mic_meter(
            Box::new(SyntheticAudio::new(440.0)),
            frames.clone(),
            ctx.clone(),
        );
        // egui wakes once per pending repaint: draw a frame after each wake, as the app does.
        let wait = || {
            let woken = wakes.recv_timeout(std::time::Duration::from_secs(5));
            let mut out = ctx.run_ui(egui::RawInput::default(), |_| {});
            out.textures_delta.clear();
            woken
        };
        wait().expect("the meter wakes the UI");
        let level = frames.level(SELF_ID).expect("a level");
        assert!((-16.0..-10.0).contains(&level), "{level} dBFS");
        stop.store(true, Ordering::Relaxed);
        // On its way out the thread clears the level and wakes the UI a last time.
        while frames.level(SELF_ID).is_some() {
            wait().expect("the meter stops and says so");
        }
    }
}
