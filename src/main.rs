//! The `confab` binary: command-line edge. Errors become `anyhow` only here.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use confab::signaling::{IceConfig, Server, ServerConfig, TlsConfig, TurnRelayConfig, TurnTls};

#[derive(Parser)]
#[command(
    name = "confab",
    version,
    about = "Video calls: desktop app, signaling server, headless peer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Desktop app: signaling server URL (default: a built-in server).
    #[arg(long)]
    server: Option<String>,
    /// Desktop app: room to join.
    #[arg(long)]
    room: Option<String>,
    /// Desktop app: your display name.
    #[arg(long)]
    name: Option<String>,
    /// Desktop app: join at once instead of showing the lobby.
    #[arg(long)]
    join: bool,
    /// Desktop app: start a test call at once (the server's echo sends back what it
    /// receives: see and hear yourself).
    #[arg(long, conflicts_with = "join")]
    test_call: bool,
    /// Desktop app: none, synthetic (a test pattern, not a camera) or a camera index.
    #[arg(long)]
    camera: Option<String>,
    /// Desktop app: none, synthetic (a test tone, not a microphone) or a device id (e.g. pulse).
    #[arg(long)]
    microphone: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the signaling server (WebSocket at /ws, /healthz, /metrics).
    Serve(ServeArgs),
    /// Join a room without a window, send synthetic or file media, write a JSON report.
    Headless(HeadlessArgs),
    /// A whole call on this machine: an embedded server and N headless peers.
    Loopback(LoopbackArgs),
    /// Measure the signaling server or a call and print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check that a call can work here: display, devices, encoder, server, STUN, TURN.
    /// Exits 0 only when nothing FAILs.
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct DoctorArgs {
    /// The signaling server to check, e.g. ws://host:8787/ws (default: the app's own).
    #[arg(long)]
    server: Option<String>,
    /// Print the checks as JSON instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct HeadlessArgs {
    /// Signaling server, e.g. ws://127.0.0.1:8787/ws.
    #[arg(long)]
    server: String,
    #[arg(long, default_value = "confab")]
    room: String,
    #[arg(long, default_value = "headless")]
    name: String,
    #[arg(long)]
    password: Option<String>,
    /// How long to stay in the call.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// synthetic, y4m:FILE or none.
    #[arg(long, default_value = "synthetic")]
    video: String,
    /// synthetic, wav:FILE or none.
    #[arg(long, default_value = "synthetic")]
    audio: String,
    /// Synthetic video size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    size: String,
    #[arg(long, default_value_t = 30.0)]
    fps: f32,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1000)]
    bitrate_kbps: u32,
    /// Frequency of the synthetic tone.
    #[arg(long, default_value_t = 440.0)]
    tone_hz: f32,
    /// Ring the member with this display name once it is in the room.
    #[arg(long)]
    call: Option<String>,
    /// Accept every incoming call.
    #[arg(long)]
    auto_answer: bool,
    /// Send this chat message once the first peer is connected.
    #[arg(long)]
    chat: Option<String>,
    /// Send each line typed on standard input as a chat message, while the call lasts.
    #[arg(long)]
    chat_stdin: bool,
    /// Share a screen once joined: synthetic (the test pattern at 1280x720) or y4m:FILE.
    #[arg(long)]
    share_screen: Option<String>,
    /// Record the call into this file (fragmented MP4: the grid of everyone's video at
    /// 1280x720, everyone's audio mixed) from joining until the end of the run.
    #[arg(long, value_name = "FILE")]
    record: Option<std::path::PathBuf>,
    /// The recording's picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    record_size: String,
    /// The recording's frame rate.
    #[arg(long, default_value_t = 15)]
    record_fps: u32,
    /// Local address for ICE (e.g. 127.0.0.1 for loopback only).
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// A test call instead of a room: the server's echo peer (confab serve --echo) sends
    /// back what it receives; the report gives the round trip.
    #[arg(long, conflicts_with_all = ["call", "password"])]
    test_call: bool,
    /// all, or relay: media only through the server's TURN relays (the other side never
    /// learns this machine's addresses).
    #[arg(long, default_value = "all")]
    ice_transport: confab::call::IceTransport,
    /// Write the JSON report here (default: standard output).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Media through a Janus VideoRoom instead of a mesh: Janus's WebSocket, e.g.
    /// ws://127.0.0.1:8188. Presence, names and chat stay with --server.
    #[arg(long, value_name = "URL")]
    sfu: Option<String>,
    /// The VideoRoom room number (created when missing; default: one derived from --room,
    /// so everyone in a confab room meets in the same VideoRoom).
    #[arg(long, value_name = "N", requires = "sfu")]
    sfu_room: Option<u64>,
    /// Ask the server (confab serve --sfu) to take the room's media through its SFU from
    /// the start, if this join creates the room.
    #[arg(long, conflicts_with = "sfu")]
    ask_sfu: bool,
    /// Only watch: open no source, send nothing (a broadcast's audience).
    #[arg(long)]
    viewer: bool,
    /// Create the room as a broadcast: we present, whoever joins later watches unless
    /// they ask to present (through the server's SFU when it has one).
    #[arg(long, conflicts_with = "viewer")]
    broadcast: bool,
    /// Simulcast layers our camera is sent in through the SFU (1: none).
    #[arg(long, value_name = "N", default_value_t = confab::call::simulcast::LAYERS, requires = "sfu")]
    sfu_layers: usize,
    /// Receive every camera in this simulcast layer (0 = smallest) instead of choosing.
    #[arg(long, value_name = "N", requires = "sfu")]
    sfu_layer: Option<u8>,
    /// Draw the others' cameras as a WIDTHxHEIGHT window would (its grid): through an
    /// SFU each comes in the simulcast layer its tile needs.
    #[arg(long, value_name = "WxH")]
    window: Option<String>,
}

impl HeadlessArgs {
    fn options(&self) -> anyhow::Result<confab::headless::HeadlessOptions> {
        use confab::headless::*;
        let mut o = HeadlessOptions::new(&self.server, &self.room, &self.name);
        o.password = self.password.clone();
        o.seconds = self.seconds;
        o.video = self.video.parse()?;
        o.audio = self.audio.parse()?;
        o.size = parse_size(&self.size)?;
        o.fps = self.fps;
        o.bitrate_bps = self.bitrate_kbps.saturating_mul(1000);
        o.tone_hz = self.tone_hz;
        o.call = self.call.clone();
        o.auto_answer = self.auto_answer;
        o.chat = self.chat.clone();
        o.chat_stdin = self.chat_stdin;
        o.share_screen = self.share_screen.as_deref().map(str::parse).transpose()?;
        o.record = self.record.clone();
        let (width, height) = parse_size(&self.record_size)?;
        o.record_settings = confab::record::RecordSettings {
            width,
            height,
            fps: self.record_fps,
            ..Default::default()
        };
        o.bind_addrs = vec![format!("{}:0", self.bind)];
        o.ice_transport = self.ice_transport;
        o.test_call = self.test_call;
        o.sfu = self.sfu.as_deref().map(|url| match self.sfu_room {
            Some(room) => confab::sfu::SfuTarget {
                url: url.to_owned(),
                room,
                pin: None,
                api_secret: None,
            },
            None => confab::sfu::SfuTarget::for_room(url, &self.room),
        });
        o.ask_sfu = self.ask_sfu;
        o.viewer = self.viewer;
        o.broadcast = self.broadcast;
        o.simulcast_layers = self.sfu_layers;
        o.sfu_layer = self.sfu_layer;
        if let Some(w) = &self.window {
            let (w, h) = parse_size(w)?;
            o.window = Some((w as u32, h as u32));
        }
        Ok(o)
    }
}

#[derive(Args)]
struct LoopbackArgs {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2)]
    peers: usize,
    #[arg(long, default_value = "640x480")]
    size: String,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 20_000)]
    max_clients: usize,
    #[arg(long, default_value_t = 5_000)]
    max_rooms: usize,
    /// Largest accepted message, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_message_bytes: usize,
    /// Sustained messages per second per connection.
    #[arg(long, default_value_t = 100.0)]
    rate_limit: f64,
    /// Messages a connection may send in a burst.
    #[arg(long, default_value_t = 200.0)]
    rate_burst: f64,
    /// Seconds between server pings.
    #[arg(long, default_value_t = 5.0)]
    heartbeat_secs: f64,
    /// Seconds of silence after which a client counts as timed out.
    #[arg(long, default_value_t = 15.0)]
    heartbeat_timeout_secs: f64,
    /// Seconds an unanswered call rings.
    #[arg(long, default_value_t = 30.0)]
    ring_timeout_secs: f64,
    /// STUN URL handed to clients (repeatable), e.g. stun:stun.example.org:3478.
    #[arg(long)]
    stun: Vec<String>,
    /// TURN URL handed to clients (repeatable); needs --turn-secret.
    #[arg(long)]
    turn: Vec<String>,
    /// Shared secret of the TURN server (coturn `static-auth-secret`).
    #[arg(long, env = "CONFAB_TURN_SECRET")]
    turn_secret: Option<String>,
    /// Lifetime of TURN credentials, in seconds.
    #[arg(long, default_value_t = 86_400)]
    turn_ttl_secs: u64,
    /// Also serve HTTPS/WSS here (browser guests on other machines need it for camera and
    /// microphone); needs --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<SocketAddr>,
    /// Certificate chain (PEM) for --tls-listen.
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) for --tls-listen.
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// A web origin (e.g. https://meet.example.org) whose pages may use this server
    /// besides the server's own; repeatable, `*` for any. Native clients are always
    /// allowed.
    #[arg(long)]
    allow_origin: Vec<String>,
    /// Connections one IP address may hold at once (0: no cap).
    #[arg(long, default_value_t = 64)]
    max_per_ip: usize,
    /// Seconds a client has to send a request's headers; idle HTTP connections close after it.
    #[arg(long, default_value_t = 10.0)]
    header_timeout_secs: f64,
    /// Capacity of a room whose creator asks for none.
    #[arg(long, default_value_t = 50)]
    room_capacity: usize,
    /// Serve /metrics to every host (by default only to this machine).
    #[arg(long)]
    public_metrics: bool,
    /// Answer STUN binding requests on this UDP address (default: the --listen address,
    /// port 3478); clients are told to use it.
    #[arg(long, conflicts_with = "no_stun")]
    stun_listen: Option<SocketAddr>,
    /// No STUN responder.
    #[arg(long)]
    no_stun: bool,
    /// Run a TURN relay on this UDP address (e.g. 0.0.0.0:3479) and name it in every
    /// welcome: peers that cannot reach each other directly (symmetric NATs) talk through
    /// it. Uses --turn-secret if given, else a secret of its own.
    #[arg(long)]
    turn_listen: Option<SocketAddr>,
    /// Keep rooms and members in this file, so that a restarted server (an upgrade, a
    /// crash) takes them back: members resume with the same ids and their calls go on.
    #[arg(long)]
    state_file: Option<std::path::PathBuf>,
    /// TURN over TLS (turns:) on this TCP address too, e.g. 0.0.0.0:443 for networks that
    /// let only HTTPS out; uses --tls-cert and --tls-key, which must name the relay's
    /// address.
    #[arg(long, requires_all = ["turn_listen", "tls_cert", "tls_key"])]
    turn_tls_listen: Option<SocketAddr>,
    /// The address other hosts reach the relay at (needed when --turn-listen is a wildcard).
    #[arg(long, requires = "turn_listen")]
    turn_external_ip: Option<std::net::IpAddr>,
    /// Seconds a member whose connection dropped stays in its room and may resume
    /// (0: it leaves at once).
    #[arg(long, default_value_t = 30.0)]
    resume_grace_secs: f64,
    /// Offer test calls: an echo peer joins a private room with whoever asks and sends
    /// back what it receives (each one decodes and encodes a video stream).
    #[arg(long)]
    echo: bool,
    /// Test calls at once, with --echo.
    #[arg(long, default_value_t = confab::echo::DEFAULT_SESSIONS, requires = "echo")]
    echo_max: usize,
    /// Take big rooms' media through Janus (VideoRoom plugin, WebSocket transport):
    /// janus=ws://HOST:8188, a URL members reach too. A room moves there when its
    /// creator asks or it grows past --mesh-max members.
    #[arg(long, value_name = "janus=URL")]
    sfu: Option<String>,
    /// Janus's apisecret, if it is configured with one (members are given it).
    #[arg(long, requires = "sfu")]
    sfu_api_secret: Option<String>,
    /// The VideoRoom plugin's admin_key, if creating rooms takes one (kept by the server).
    #[arg(long, requires = "sfu")]
    sfu_admin_key: Option<String>,
    /// The most members a room keeps in a mesh, with --sfu.
    #[arg(long, default_value_t = confab::signaling::DEFAULT_MESH_MAX, requires = "sfu")]
    mesh_max: usize,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        if !self.turn.is_empty() && self.turn_secret.is_none() {
            anyhow::bail!("--turn needs --turn-secret (the TURN server's static-auth-secret)");
        }
        if (self.tls_cert.is_some() || self.tls_key.is_some())
            && self.tls_listen.is_none()
            && self.turn_tls_listen.is_none()
        {
            anyhow::bail!("--tls-cert and --tls-key are for --tls-listen or --turn-tls-listen");
        }
        let sfu = match self.sfu.as_deref() {
            None => None,
            Some(spec) => {
                let Some(url) = spec.strip_prefix("janus=") else {
                    anyhow::bail!("--sfu takes janus=ws://HOST:PORT, not {spec:?}");
                };
                if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                    anyhow::bail!("--sfu janus=URL needs a ws:// or wss:// URL, not {url:?}");
                }
                if self.mesh_max < 1 {
                    anyhow::bail!("--mesh-max must be at least 1");
                }
                let rooms = confab::sfu::JanusRooms {
                    url: url.to_owned(),
                    api_secret: self.sfu_api_secret.clone(),
                    admin_key: self.sfu_admin_key.clone(),
                };
                Some(confab::signaling::SfuConfig {
                    service: std::sync::Arc::new(rooms),
                    mesh_max: self.mesh_max,
                })
            }
        };
        Ok(ServerConfig {
            sfu,
            listen: self.listen,
            max_clients: self.max_clients,
            max_rooms: self.max_rooms,
            max_message_bytes: self.max_message_bytes,
            rate_per_sec: self.rate_limit,
            rate_burst: self.rate_burst,
            flood_close_after: (self.rate_burst as u32).max(10),
            heartbeat_interval: secs(self.heartbeat_secs, "--heartbeat-secs")?,
            heartbeat_timeout: secs(self.heartbeat_timeout_secs, "--heartbeat-timeout-secs")?,
            ring_timeout: secs(self.ring_timeout_secs, "--ring-timeout-secs")?,
            ice: IceConfig {
                stun: self.stun.clone(),
                turn: self.turn.clone(),
                turn_secret: self.turn_secret.clone(),
                turn_ttl: Duration::from_secs(self.turn_ttl_secs),
            },
            tls: match (self.tls_listen, &self.tls_cert, &self.tls_key) {
                (Some(listen), Some(cert), Some(key)) => Some(TlsConfig {
                    listen,
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            allowed_origins: self.allow_origin.clone(),
            lan_open: true,
            max_per_ip: self.max_per_ip,
            header_timeout: secs(self.header_timeout_secs, "--header-timeout-secs")?,
            default_capacity: self.room_capacity,
            public_metrics: self.public_metrics,
            resume_grace: Duration::try_from_secs_f64(self.resume_grace_secs)
                .context("--resume-grace-secs must be a number of seconds")?,
            state_file: self.state_file.clone(),
            turn_relay: self.turn_listen.map(|listen| TurnRelayConfig {
                listen,
                external_ip: self.turn_external_ip,
                tls: match (self.turn_tls_listen, &self.tls_cert, &self.tls_key) {
                    (Some(listen), Some(cert), Some(key)) => Some(TurnTls {
                        listen,
                        cert: cert.clone(),
                        key: key.clone(),
                    }),
                    _ => None,
                },
            }),
            echo: self
                .echo
                .then(|| confab::echo::EchoPeers::config(self.echo_max)),
            stun_listen: (!self.no_stun).then(|| {
                self.stun_listen
                    .unwrap_or(SocketAddr::new(self.listen.ip(), 3478))
            }),
        })
    }
}

/// What a user sees without `RUST_LOG`: our own news, and only errors from the WebRTC
/// stack, whose warnings ("pingAllCandidates called with no candidate pairs", a DTLS
/// server name, SCTP stream ids) describe normal call set-up, not problems; nor winit's
/// remarks on the display (no XSETTINGS, a screen of 0 mm).
const DEFAULT_LOG: &str = "info,winit=error,webrtc=error,rtc=error,rtc_crypto=error,rtc_datachannel=error,\
rtc_dtls=error,rtc_ice=error,rtc_interceptor=error,rtc_mdns=error,rtc_media=error,\
rtc_rtcp=error,rtc_rtp=error,rtc_sctp=error,rtc_sdp=error,rtc_shared=error,rtc_srtp=error,\
rtc_stun=error,rtc_turn=error";

fn secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds"))
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Many WebSocket clients in many rooms relaying to each other.
    Signaling(confab::bench::SignalingBenchArgs),
    /// A 1:1 call between two headless processes on loopback.
    Call(confab::bench::CallBenchArgs),
    /// The same call through an impaired link (loss, jitter, narrow, step, outage), judged
    /// as a viewer would; needs root in a network namespace of its own.
    Network(confab::bench::NetworkBenchArgs),
    /// Simulcast's encode cost (one stream vs three layers) and, through a Janus, how
    /// fast a subscriber's layer switch is.
    Simulcast(confab::bench::SimulcastBenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        // The terminal itself, also while the window filters native libraries' noise.
        .with_writer(confab::ui::console::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    match cli.command {
        Some(Command::Serve(args)) => rt.block_on(async {
            let server = Server::start(args.config()?).await?;
            // A closed stdout (whoever started us stopped reading) must not stop the server.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "confab signaling server on {}", server.ws_url());
            let _ = writeln!(
                out,
                "browser guests: http://{}/?room=<room>",
                server.local_addr()
            );
            if let Some(a) = server.tls_addr() {
                let _ = writeln!(
                    out,
                    "over TLS: wss://{a}/ws, browser guests: https://{a}/?room=<room>"
                );
            }
            let _ = out.flush();
            tokio::select! {
                r = server.wait() => r.context("server failed"),
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }),
        Some(Command::Bench(BenchCommand::Signaling(args))) => {
            rt.block_on(confab::bench::signaling(args))?;
            Ok(())
        }
        Some(Command::Bench(BenchCommand::Call(args))) => {
            rt.block_on(confab::bench::call(args))?;
            Ok(())
        }
        Some(Command::Bench(BenchCommand::Network(args))) => {
            rt.block_on(confab::bench::network(args))?;
            Ok(())
        }
        Some(Command::Bench(BenchCommand::Simulcast(args))) => {
            rt.block_on(confab::bench::simulcast(args))?;
            Ok(())
        }
        Some(Command::Headless(args)) => rt.block_on(async {
            let report = confab::headless::run(args.options()?).await?;
            let json = serde_json::to_string_pretty(&report)?;
            match &args.report {
                Some(path) => {
                    std::fs::write(path, json + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprint!("{}", report.summary());
                }
                None => println!("{json}"),
            }
            if !report.media_arrived() {
                anyhow::bail!("no media arrived from any peer");
            }
            Ok(())
        }),
        Some(Command::Doctor(args)) => {
            // Probing sound devices makes native libraries talk; the report is what counts.
            let quiet = confab::ui::console::quiet_native_noise();
            let report = rt.block_on(confab::doctor::run(confab::doctor::DoctorOptions {
                server: args.server,
            }));
            drop(quiet);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report.checks)?);
            } else {
                print!("{}", report.render());
            }
            std::io::stdout().flush()?;
            if !report.call_can_work() {
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Command::Loopback(args)) => rt.block_on(async {
            let size = confab::headless::parse_size(&args.size)?;
            let reports = confab::headless::loopback(args.peers, args.seconds, size).await?;
            for r in &reports {
                print!("{}", r.summary());
            }
            if reports.iter().all(|r| r.media_arrived()) {
                println!("loopback call OK: every peer received media from the others");
                Ok(())
            } else {
                anyhow::bail!("some peer received no media")
            }
        }),
        None => {
            drop(rt);
            let _quiet = confab::ui::console::quiet_native_noise();
            confab::ui::run(confab::ui::DesktopOptions {
                server: cli.server,
                room: cli.room,
                name: cli.name,
                join: cli.join,
                test_call: cli.test_call,
                camera: cli.camera,
                microphone: cli.microphone,
            })?;
            Ok(())
        }
    }
}
