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
}

impl Drop for Janus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- janus's log ---\n{}", self.0.log());
        }
    }
}
