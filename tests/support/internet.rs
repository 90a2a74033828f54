//! A simulated internet in network namespaces, for connectivity tests: an "internet"
//! namespace where the signaling server lives at 10.0.0.1, and homes, each a host behind
//! its own router namespace doing NAT with nftables. Addresses are private; every
//! namespace is held by a `sleep` process this test started and dies with it.
//!
//! ```text
//!  home n host 192.168.n.2 ── router 192.168.n.1 | NAT | 10.n.0.2 ── 10.n.0.1 internet (10.0.0.1)
//! ```
//!
//! Needs root in a private network namespace (`make test` runs the tests under
//! `.ci/netns`): the veth pairs are made in the test's own namespace before they move.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How a home's router maps its hosts' flows to its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// One public port per inside port, whoever the destination (Linux masquerade keeps
    /// the mapping endpoint-independent): STUN's answer is valid for every peer.
    Cone,
    /// A fresh random public port per destination (`masquerade random`): what STUN
    /// reports is not what a peer sees, so only a relay connects two of these.
    Symmetric,
    /// A cone NAT whose firewall lets out only TCP to port 443 (a hotel's, an office's):
    /// no UDP at all, so only TURN over TCP or TLS on 443 gets media through.
    Firewall,
}

/// One network namespace, held open by a child process.
pub struct Ns {
    holder: Child,
}

impl Ns {
    fn new() -> Ns {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs");
        let ns = Ns { holder };
        // Wait until the child has its own namespace (unshare has run).
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{}/ns/net", ns.pid())).ok() == Some(mine.clone()) {
            assert!(Instant::now() < deadline, "unshare never made a namespace");
            std::thread::sleep(Duration::from_millis(5));
        }
        // IPv4 only: an interface's IPv6 link-local address settling a second or two
        // after it comes up is a network change to Chromium, which fails the page loads
        // under way with ERR_NETWORK_CHANGED. Links moved in later take the default.
        ns.run(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `program` to run inside this namespace.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("nsenter");
        c.args(["-t", &self.pid().to_string(), "-n", "--", program]);
        c
    }

    /// Runs a set-up command inside, panicking with its output if it fails.
    pub fn run(&self, args: &[&str]) {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid().to_string(), "-n", "--"])
            .args(args);
        run(c);
    }

    /// Waits (up to 10 s) until something listens on TCP `port` in here.
    pub fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("nsenter")
                .args(["-t", &self.pid().to_string(), "-n", "--", "ss", "-Hltn"])
                .arg(format!("sport = :{port}"))
                .output()
                .expect("ss (iproute2) runs");
            if !out.stdout.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "nothing listens on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn nft(&self, rules: &str) {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n", "--", "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (nftables) runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "nft {rules}: {out:?}");
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn run(mut c: Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {out:?}");
}

/// A veth pair from `a` to `b`, addressed `a_addr` and `b_addr` (CIDR).
fn link(a: &Ns, a_addr: &str, b: &Ns, b_addr: &str) -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Unique among the tests of this process while both ends still sit here.
    let (ia, ib) = (
        format!("va{}x{n}", std::process::id() % 100_000),
        format!("vb{}x{n}", std::process::id() % 100_000),
    );
    let mut c = Command::new("ip");
    c.args(["link", "add", &ia, "type", "veth", "peer", "name", &ib]);
    run(c);
    for (ns, name, addr) in [(a, &ia, a_addr), (b, &ib, b_addr)] {
        let mut c = Command::new("ip");
        c.args(["link", "set", name, "netns", &ns.pid().to_string()]);
        run(c);
        ns.run(&["ip", "addr", "add", addr, "dev", name]);
        ns.run(&["ip", "link", "set", name, "up"]);
    }
    (ia, ib)
}

/// A home: a host behind its router.
pub struct Home {
    pub host: Ns,
    pub router: Ns,
    /// The router's address on the internet when the home was made.
    pub public_ip: String,
    n: u32,
    /// The router's interface to the internet, and the internet's to the router.
    wan: String,
    uplink: String,
}

impl Home {
    /// The uplink goes down: nothing leaves or reaches the home until [`Home::reconnect`].
    pub fn unplug(&self) {
        self.router.run(&["ip", "link", "set", &self.wan, "down"]);
    }

    /// The uplink comes back with another public address (`10.n.0.<host>`), as after a
    /// router's reboot or a mobile handover; see [`Internet::readdress`].
    fn reconnect(&self, host: u8) {
        let (n, wan) = (self.n, &self.wan);
        let new = format!("10.{n}.0.{host}/24");
        self.router.run(&["ip", "link", "set", wan, "up"]);
        self.router.run(&["ip", "addr", "flush", "dev", wan]);
        self.router.run(&["ip", "addr", "add", &new, "dev", wan]);
        let gateway = format!("10.{n}.0.1");
        self.router
            .run(&["ip", "route", "replace", "default", "via", &gateway]);
        // The mappings made for the old address went with it: masquerade forgets a
        // removed address's connections.
    }
}

/// The internet namespace and the homes attached to it.
pub struct Internet {
    pub net: Ns,
    _upstream: Ns,
    homes: u32,
}

/// Where the signaling server (and its STUN responder) listens.
pub const SERVER_IP: &str = "10.0.0.1";
/// A second address on the internet, for a TURN relay on a port the server also uses.
pub const RELAY_IP: &str = "10.0.0.2";
/// Where a TURN relay listens (UDP and TCP) when a test starts one.
pub const TURN_PORT: u16 = 3479;

impl Internet {
    pub fn new() -> Internet {
        assert_private_netns();
        let net = Ns::new();
        net.run(&["ip", "addr", "add", &format!("{SERVER_IP}/32"), "dev", "lo"]);
        net.run(&["ip", "addr", "add", &format!("{RELAY_IP}/32"), "dev", "lo"]);
        net.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // The rest of the internet: where packets to addresses nobody here owns (a home's
        // private address, say) go and vanish without an error, as they do upstream of
        // any real server. Without a default route a relay's send to one fails, and
        // coturn ends the allocation over it.
        let upstream = Ns::new();
        link(&net, "172.31.255.1/30", &upstream, "172.31.255.2/30");
        net.run(&["ip", "route", "add", "default", "via", "172.31.255.2"]);
        upstream.nft(
            "table ip sink { chain pre { type filter hook prerouting priority 0; drop; }; }\n",
        );
        Internet {
            net,
            _upstream: upstream,
            homes: 0,
        }
    }

    /// A new home behind a router doing `nat`.
    pub fn home(&mut self, nat: Nat) -> Home {
        self.homes += 1;
        let n = self.homes;
        let (host, router) = (Ns::new(), Ns::new());
        let public_ip = format!("10.{n}.0.2");
        // A /24, so that the router can move to another address in it.
        let (uplink, wan) = link(
            &self.net,
            &format!("10.{n}.0.1/24"),
            &router,
            &format!("{public_ip}/24"),
        );
        link(
            &router,
            &format!("192.168.{n}.1/24"),
            &host,
            &format!("192.168.{n}.2/24"),
        );
        router.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("10.{n}.0.1"),
        ]);
        router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        host.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{n}.1"),
        ]);
        let masquerade = match nat {
            Nat::Cone | Nat::Firewall => "masquerade",
            Nat::Symmetric => "masquerade random",
        };
        let outbound = match nat {
            Nat::Firewall => format!(
                "table ip wall {{ chain outbound {{ type filter hook forward priority 0; \
                 policy drop; ct state established,related accept; \
                 oifname \"{wan}\" tcp dport 443 accept; }}; }}\n"
            ),
            _ => String::new(),
        };
        // Unsolicited packets from outside are dropped before their conntrack entry is
        // confirmed, as a home router's firewall does. Without that, a peer's first check
        // arriving before our own outgoing one leaves an entry that makes masquerade pick
        // another port for our flow, and the cone would act symmetric.
        router.nft(&format!(
            "table ip nat {{ chain post {{ type nat hook postrouting priority srcnat; \
             oifname \"{wan}\" {masquerade}; }}; }}\n\
             table ip filter {{ chain input {{ type filter hook input priority 0; \
             iifname \"{wan}\" ct state new drop; }}; }}\n{outbound}"
        ));
        Home {
            host,
            router,
            public_ip,
            n,
            wan,
            uplink,
        }
    }
}

impl Internet {
    /// `home`'s uplink comes back with another public address (`10.n.0.<host>`), as after
    /// a router's reboot or a mobile handover. Every flow through the old address is
    /// dead: the internet forgets where it was, so no answer finds it.
    pub fn readdress(&self, home: &Home, host: u8) {
        home.reconnect(host);
        self.net.run(&["ip", "neigh", "flush", "dev", &home.uplink]);
    }

    /// Debian's coturn at `ip` on the internet, UDP and TCP on [`TURN_PORT`], with TURN
    /// REST credentials from `secret` (what `confab serve --turn-secret` hands out), and
    /// TLS on 443 with `tls` (certificate, key); killed when dropped.
    pub fn coturn(&self, ip: &str, secret: &str, tls: Option<(&Path, &Path)>) -> Coturn {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        // CONFAB_COTURN_LOG=FILE keeps its verbose log.
        let log = std::env::var("CONFAB_COTURN_LOG").ok();
        let mut c = self.net.command("turnserver");
        c.args(["-n", "--no-cli", "--no-dtls", "--simple-log"])
            .args(["--listening-ip", ip, "--relay-ip", ip])
            .args(["--listening-port", &TURN_PORT.to_string()])
            .args(["--min-port", "50000", "--max-port", "50999"])
            .args(["--use-auth-secret", "--static-auth-secret", secret])
            .args(["--realm", "confab", "--fingerprint"])
            // Its files in our directory, not the machine's /var.
            .args(["--pidfile", &file("pid"), "--userdb", &file("turndb")])
            .args(["--log-file", &log.clone().unwrap_or_else(|| file("log"))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if log.is_some() {
            c.arg("-V");
        }
        match tls {
            Some((cert, key)) => {
                c.args(["--tls-listening-port", "443"])
                    .arg("--cert")
                    .arg(cert)
                    .arg("--pkey")
                    .arg(key);
            }
            None => {
                c.arg("--no-tls");
            }
        }
        Coturn {
            _child: c.spawn().expect("turnserver (coturn) runs"),
            _dir: dir,
        }
    }
}

/// A running coturn and its files.
pub struct Coturn {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// The topology is built with `ip` in the test's own namespace: that must be a private
/// one with nothing but `lo` (`.ci/netns`), never the machine's.
pub fn assert_private_netns() {
    // /proc/net/dev lists this namespace's interfaces (sysfs may show the host's).
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let foreign: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|i| *i != "lo" && !i.starts_with("va") && !i.starts_with("vb"))
        .collect();
    assert!(
        foreign.is_empty(),
        "this test builds networks and so runs only in a private network namespace \
         (make test runs it under .ci/netns); found {foreign:?}"
    );
}
