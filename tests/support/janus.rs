//! Debian's Janus for SFU tests: confab's own launcher (`sfu::launch`, which adds the
//! interface Janus needs to the test's private namespace), with its log printed when
//! the test fails.

use confab::sfu::LocalJanus;

pub struct Janus(LocalJanus);

impl Janus {
    /// Starts Janus and returns once its WebSocket port accepts connections.
    pub fn start() -> Janus {
        Janus(LocalJanus::start().unwrap_or_else(|e| panic!("{e}")))
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Where a peer binds its media to reach Janus.
    pub fn bind_addr(&self) -> String {
        self.0.bind_addr()
    }

    /// Where a peer binds whose packets a test shapes apart from the others' (by
    /// address): 10.77.0.2, beside Janus's own on its interface (Janus gathers only
    /// on its own address).
    pub fn other_bind_addr(&self) -> String {
        let out = std::process::Command::new("ip")
            .args(["addr", "replace", "10.77.0.2/32", "dev", "cfjanus0"])
            .output()
            .expect("running ip");
        assert!(out.status.success(), "ip addr: {out:?}");
        "10.77.0.2:0".into()
    }

    /// A confab server that takes big rooms' media through this Janus (`--sfu`).
    pub async fn server(&self, mesh_max: usize) -> confab::signaling::Server {
        sfu_server(&self.url(), mesh_max).await
    }

    /// Janus dies (SIGKILL) mid-call; the veth stays for the mesh that follows.
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- janus's log ---\n{}", self.0.log());
        }
    }
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
