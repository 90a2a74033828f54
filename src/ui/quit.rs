//! Quitting leaves the call first: without its goodbye the server keeps a member whose
//! link dropped for its resume grace, and the others would see a frozen tile that long.
//! A signal (SIGTERM from a session manager, Ctrl+C in the terminal) closes the window
//! the same way as its close button.

use std::time::Duration;

use eframe::egui;
use tokio::signal::unix::{SignalKind, signal};

/// How long the engine waits for the server to take its goodbye.
pub(super) const LEAVE_WAIT: Duration = Duration::from_secs(2);
/// How long the closing window waits for the engine (a dead link must not hold it).
pub(super) const EXIT_WAIT: Duration = Duration::from_secs(3);

/// Closes the window on SIGTERM or SIGINT; a second one ends the process at once.
pub(super) async fn on_signals(ctx: egui::Context) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("no signal handlers: a signal ends the app without leaving the call");
        return;
    };
    let mut asked = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if asked {
            std::process::exit(130);
        }
        asked = true;
        tracing::info!("asked to quit: leaving the call");
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        ctx.request_repaint();
    }
}
