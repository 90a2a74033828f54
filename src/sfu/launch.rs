//! Debian's Janus started by confab itself, for `bench call --mode sfu` and the SFU
//! tests: a config of our own in a temp dir (VideoRoom and the WebSocket transport
//! only, no STUN, no admin API), one process, killed when dropped.
//!
//! Janus never gathers on a loopback interface (ice.c skips IFF_LOOPBACK, whatever the
//! enforce list says), and a private network namespace has nothing else: gathering
//! fails ("Error setting ICE locally"). So the first Janus adds a veth pair to the
//! namespace (`cfjanus0`, 10.77.0.1, up with its peer so it counts as running) and
//! enforces ICE to it. Peers must bind that address too, not 127.0.0.1: libnice pins
//! its sockets to the interface (IP_UNICAST_IF), and a datagram to 127.0.0.1 pinned to
//! `cfjanus0` is lost without an error. 10.77.0.1 to itself is a local route: nothing
//! leaves the namespace.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const JANUS: &str = "/usr/bin/janus";
const LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// Everything Debian ships that is not the VideoRoom or the WebSocket transport.
const OTHER_PLUGINS: &str = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,\
    libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,\
    libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so";
const OTHER_TRANSPORTS: &str = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,\
    libjanus_pfunix.so,libjanus_rabbitmq.so";
const EVENT_HANDLERS: &str = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,\
    libjanus_rabbitmqevh.so,libjanus_sampleevh.so,libjanus_wsevh.so";

const VETH: &str = "cfjanus0";
const VETH_PEER: &str = "cfjanus1";
const VETH_IP: &str = "10.77.0.1";
const VETH_ADDR: &str = "10.77.0.1/24";
/// Januses running in this process, and whether they needed our veth pair.
static USERS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// Why a Janus of our own did not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{JANUS} is missing: install Debian's janus package (.ci/deps.sh test)")]
    Missing,
    #[error(
        "a Janus of confab's own adds an interface for its media and so runs only in a \
         private network namespace (e.g. `unshare -n sh -c 'ip link set lo up; …'` as root, \
         or .ci/netns); this one has {0}"
    )]
    NotPrivate(String),
    #[error("ip {args}: {reason}")]
    Ip { args: String, reason: String },
    #[error("janus: {0}")]
    Io(#[from] std::io::Error),
    #[error("janus exited ({status}):\n{log}")]
    Exited { status: String, log: String },
    #[error("janus never listened on {addr}:\n{log}")]
    NotListening { addr: SocketAddr, log: String },
}

/// A Janus process of our own, listening on 127.0.0.1 for its WebSocket API.
pub struct LocalJanus {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl LocalJanus {
    /// Starts Janus and returns once its WebSocket port accepts connections.
    /// `JANUS_DEBUG_LEVEL=5..7` in the environment makes its log say more.
    pub fn start() -> Result<Self, LaunchError> {
        if !Path::new(JANUS).exists() {
            return Err(LaunchError::Missing);
        }
        ice_interface()?;
        // From here on Drop undoes the count `ice_interface` took.
        let dir =
            std::env::temp_dir().join(format!("confab-janus-{}-{}", std::process::id(), unique()));
        let started = Self::spawn(&dir);
        match started {
            Ok(janus) => Ok(janus),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                release_interface();
                Err(e)
            }
        }
    }

    fn spawn(dir: &Path) -> Result<Self, LaunchError> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        std::fs::write(dir.join("janus.jcfg"), janus_config(dir, VETH_IP))?;
        std::fs::write(
            dir.join("janus.transport.websockets.jcfg"),
            format!(
                "general: {{\n    json = \"compact\"\n    ws = true\n    ws_port = {port}\n    \
                 ws_ip = \"127.0.0.1\"\n    wss = false\n}}\nadmin: {{\n    admin_ws = false\n    \
                 admin_wss = false\n}}\n"
            ),
        )?;
        // Rooms are created by their users.
        std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
        let log = std::fs::File::create(dir.join("janus.log"))?;
        let child = Command::new(JANUS)
            .arg("-F")
            .arg(dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut janus = LocalJanus {
            child,
            dir: dir.to_owned(),
            port,
        };
        janus.until_listening()?;
        Ok(janus)
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where a peer binds its media to reach Janus (see the module's note).
    pub fn bind_addr(&self) -> String {
        format!("{VETH_IP}:0")
    }

    /// The process id, e.g. to read its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What Janus printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default()
    }

    /// Kills Janus now, as a crash would (the veth stays until the value is dropped).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn until_listening(&mut self) -> Result<(), LaunchError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LaunchError::Exited {
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(LaunchError::NotListening {
                    addr,
                    log: self.log(),
                });
            }
            // Polling a port: there is nothing to wait on.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalJanus {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        release_interface();
    }
}

/// `enforce`: the address Janus gathers on. An address, not the interface: a test may
/// add others to the interface for peers it shapes apart, which Janus must not use.
fn janus_config(dir: &Path, enforce: &str) -> String {
    format!(
        r#"general: {{
    configs_folder = "{conf}"
    plugins_folder = "{LIB}/plugins"
    transports_folder = "{LIB}/transports"
    events_folder = "{LIB}/events"
    loggers_folder = "{LIB}/loggers"
    debug_level = {level}
}}
nat: {{
    ice_enforce_list = "{enforce}"
}}
plugins: {{
    disable = "{OTHER_PLUGINS}"
}}
transports: {{
    disable = "{OTHER_TRANSPORTS}"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
    disable = "{EVENT_HANDLERS}"
}}
"#,
        conf = dir.display(),
        level = std::env::var("JANUS_DEBUG_LEVEL").unwrap_or_else(|_| "4".into()),
    )
}

/// The interface Janus gathers on, added to this private namespace (never the
/// machine's own) by the first Janus of this process.
fn ice_interface() -> Result<&'static str, LaunchError> {
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    if users.1 {
        users.0 += 1;
        return Ok(VETH);
    }
    let dev = std::fs::read_to_string("/proc/net/dev")?;
    let foreign: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|i| *i != "lo")
        .collect();
    if !foreign.is_empty() {
        return Err(LaunchError::NotPrivate(foreign.join(", ")));
    }
    ip(&[
        "link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER,
    ])?;
    ip(&["addr", "add", VETH_ADDR, "dev", VETH])?;
    ip(&["link", "set", VETH, "up"])?;
    ip(&["link", "set", VETH_PEER, "up"])?;
    until_running(VETH)?;
    *users = (users.0 + 1, true);
    Ok(VETH)
}

/// The kernel marks a link running (what Janus gathers on) a moment after it is set
/// up; a Janus started before then finds no address and offers 127.0.0.1.
fn until_running(dev: &str) -> Result<(), LaunchError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // sysfs shows the namespace that mounted it, not ours: ask `ip`.
        let out = Command::new("ip")
            .args(["-o", "link", "show", "dev", dev])
            .output()?;
        let line = String::from_utf8_lossy(&out.stdout);
        if line.contains(" state UP ") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = ip(&["link", "del", dev]);
            return Err(LaunchError::Ip {
                args: format!("link set {dev} up"),
                reason: format!("not running after 5 s: {}", line.trim()),
            });
        }
        // The kernel's link watch has no event a process can wait on here.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One Janus fewer; the last one leaves the namespace as it found it (`lo` only).
fn release_interface() {
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    users.0 = users.0.saturating_sub(1);
    if users.0 == 0 && users.1 {
        let _ = ip(&["link", "del", VETH]);
        users.1 = false;
    }
}

fn ip(args: &[&str]) -> Result<(), LaunchError> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(LaunchError::Ip {
        args: args.join(" "),
        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// A WebSocket port for the next Janus. Not one the kernel hands out for port 0 (a
/// server or an outgoing connection could take it before Janus binds, and
/// libwebsockets then keeps retrying the bind while Janus says it started), and not
/// one another Janus of this process is given.
fn free_port() -> std::io::Result<u16> {
    let (low, _) = ephemeral_range();
    let span = u32::from(low.saturating_sub(PORTS_FROM)).max(1);
    let start = (std::process::id().wrapping_mul(7919)) % span;
    for _ in 0..span.min(500) {
        let offset = (start + unique() as u32 * 13) % span;
        let port = PORTS_FROM + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

const PORTS_FROM: u16 = 20000;

fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(low, _)| *low > PORTS_FROM)
        .unwrap_or((32768, 60999))
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
