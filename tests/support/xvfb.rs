//! A virtual X display for tests; Xvfb picks a free number and reports it when ready.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

pub const SCREEN: (usize, usize) = (1280, 720);

pub struct Xvfb {
    // Held so the display lives as long as the test (killed on drop).
    _child: tokio::process::Child,
    pub display: String,
}

impl Xvfb {
    pub async fn start() -> Xvfb {
        let mut child = tokio::process::Command::new("Xvfb")
            // -noreset: a server that resets when its last client leaves drops a
            // connection that arrives meanwhile.
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-noreset",
                "-screen",
                "0",
            ])
            .arg(format!("{}x{}x24", SCREEN.0, SCREEN.1))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Xvfb is installed (make test installs it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let n = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("Xvfb ready within 20 s")
            .unwrap()
            .expect("Xvfb printed its display number");
        Xvfb {
            _child: child,
            display: format!(":{}", n.trim()),
        }
    }

    /// The whole screen as RGBA.
    pub async fn screenshot(&self, dir: &std::path::Path) -> Vec<u8> {
        let path = dir.join("shot.rgba");
        let status = tokio::process::Command::new("import")
            .args(["-display", &self.display, "-window", "root", "-depth", "8"])
            .arg(format!("rgba:{}", path.display()))
            .status()
            .await
            .expect("imagemagick's import is installed");
        assert!(status.success());
        let px = std::fs::read(path).unwrap();
        assert_eq!(px.len(), SCREEN.0 * SCREEN.1 * 4);
        px
    }
}
