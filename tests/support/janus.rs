//! Debian's Janus for SFU tests: a config of our own in a temp dir (VideoRoom and the
//! WebSocket transport only, no STUN, no admin API), one process per test, killed when
//! dropped.
//!
//! Janus never gathers on a loopback interface (ice.c skips IFF_LOOPBACK, whatever the
//! enforce list says), and in `.ci/netns` there is nothing else: gathering fails ("Error
//! setting ICE locally"). So the helper adds a veth pair to the test's private namespace
//! (`cfjanus0`, 10.77.0.1, up with its peer so it counts as running) and enforces ICE to
//! it. Peers must bind that address too, not 127.0.0.1: libnice pins its sockets to the
//! interface (IP_UNICAST_IF), and a datagram to 127.0.0.1 pinned to `cfjanus0` is lost
//! without an error. 10.77.0.1 to 10.77.0.1 is a local route: nothing leaves the namespace.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
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

pub struct Janus {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Janus {
    /// Starts Janus and returns once its WebSocket port accepts connections.
    pub fn start() -> Janus {
        assert!(
            std::path::Path::new(JANUS).exists(),
            "{JANUS} is missing: .ci/deps.sh test installs it (Debian package janus)"
        );
        let enforce = format!("ice_enforce_list = \"{}\"", ice_interface());
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let path = dir.path();
        let janus_cfg = format!(
            r#"general: {{
    configs_folder = "{conf}"
    plugins_folder = "{LIB}/plugins"
    transports_folder = "{LIB}/transports"
    events_folder = "{LIB}/events"
    loggers_folder = "{LIB}/loggers"
    debug_level = {level}
}}
nat: {{
    {enforce}
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
            conf = path.display(),
            // JANUS_DEBUG_LEVEL=5..7 shows more of what Janus does in a failing test.
            level = std::env::var("JANUS_DEBUG_LEVEL").unwrap_or_else(|_| "4".into()),
        );
        let ws_cfg = format!(
            "general: {{\n    json = \"compact\"\n    ws = true\n    ws_port = {port}\n    \
             ws_ip = \"127.0.0.1\"\n    wss = false\n}}\nadmin: {{\n    admin_ws = false\n    \
             admin_wss = false\n}}\n"
        );
        std::fs::write(path.join("janus.jcfg"), janus_cfg).unwrap();
        std::fs::write(path.join("janus.transport.websockets.jcfg"), ws_cfg).unwrap();
        // Rooms are created by the clients.
        std::fs::write(path.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n").unwrap();
        let log = std::fs::File::create(path.join("janus.log")).unwrap();
        let child = Command::new(JANUS)
            .arg("-F")
            .arg(path)
            .arg("-C")
            .arg(path.join("janus.jcfg"))
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("janus starts");
        let mut janus = Janus { child, dir, port };
        janus.until_listening();
        janus
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Where a peer binds its media to reach Janus (see the module's note).
    pub fn bind_addr(&self) -> String {
        format!("{VETH_IP}:0")
    }

    /// A confab server that takes big rooms' media through this Janus (`--sfu`).
    pub async fn server(&self, mesh_max: usize) -> confab::signaling::Server {
        sfu_server(&self.url(), mesh_max).await
    }

    /// Janus dies (SIGKILL) mid-call; the veth stays for the mesh that follows.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What Janus printed so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("janus.log")
    }

    fn until_listening(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("janus exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "janus never listened on {addr}:\n{}",
                self.log()
            );
            // Polling a port: there is nothing to wait on.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- janus's log ---\n{}", self.log());
        }
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 && users.1 {
            // Leave the namespace as `lo` only, as other tests expect it.
            ip(&["link", "del", VETH]);
            users.1 = false;
        }
    }
}

/// The interface Janus gathers on, added to the test's private namespace (which has
/// only `lo`: never the machine's own) by the first Janus of this process.
fn ice_interface() -> &'static str {
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    users.0 += 1;
    if users.1 {
        return VETH;
    }
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let foreign: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|i| *i != "lo")
        .collect();
    assert!(
        foreign.is_empty(),
        "SFU tests add an interface for Janus and so run only in a private network \
         namespace (make test runs them under .ci/netns); found {foreign:?}"
    );
    ip(&[
        "link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER,
    ]);
    ip(&["addr", "add", VETH_ADDR, "dev", VETH]);
    ip(&["link", "set", VETH, "up"]);
    ip(&["link", "set", VETH_PEER, "up"]);
    users.1 = true;
    VETH
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap().port()
}

/// A confab server whose SFU is the Janus at `url` (which may be unreachable).
pub async fn sfu_server(url: &str, mesh_max: usize) -> confab::signaling::Server {
    let rooms = confab::sfu::JanusRooms {
        url: url.to_owned(),
        api_secret: None,
        admin_key: None,
    };
    super::server_with(|c| {
        c.sfu = Some(confab::signaling::SfuConfig {
            service: std::sync::Arc::new(rooms),
            mesh_max,
        })
    })
    .await
}
