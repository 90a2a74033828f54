//! The desktop app (egui/eframe). `model` holds the state and applies engine events
//! (no egui), `app` and `views` (one file per view) draw it and send commands, `bridge`
//! runs the engine on a tokio runtime, `video` turns decoded media into textures off
//! the UI thread, `settings` persists choices.

mod actions;
mod app;
mod bridge;
mod checks;
mod choices;
pub mod console;
mod echo;
pub(crate) mod layout;
mod model;
mod netquality;
mod prejoin;
mod previews;
mod quality;
mod quit;
mod settings;
mod sink;
mod sound;
mod sources;
mod toasts;
mod video;
mod views;
mod window;

use std::sync::Arc;

pub use app::{App, SHORTCUT_CAMERA, SHORTCUT_HANGUP, SHORTCUT_MIC, SHORTCUT_SHARE};
pub use bridge::{JoinRequest, JoinRole, UiCommand, UiEvent, command_name};
pub use choices::{AudioChoice, DeviceList, SpeakerChoice, VideoChoice};
pub use layout::{Area, Arrangement, Layout, LayoutMode, Placed, Slot};
pub use model::{CallModel, Model, PeerView, Screen};
pub use prejoin::Field;
pub use quality::{CameraMode, Quality, Resolution, ScreenPreference};
pub use settings::Settings;
pub use sink::UiSink;
pub use sound::Sound;
pub use video::{SELF_ID, VideoFrames};
pub use views::widgets::guest_link;
pub use window::{ThemeChoice, WindowState};

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("bad option: {0}")]
    Option(String),
    #[error("the window could not be opened: {0}")]
    Window(String),
}

/// What the command line asks of the app.
#[derive(Debug, Clone, Default)]
pub struct DesktopOptions {
    pub server: Option<String>,
    pub room: Option<String>,
    pub name: Option<String>,
    pub join: bool,
    /// Start a test call (the server's echo) instead of joining the room.
    pub test_call: bool,
    pub camera: Option<String>,
    pub microphone: Option<String>,
}

/// Opens the window and runs until it is closed.
pub fn run(opts: DesktopOptions) -> Result<(), UiError> {
    let path = Settings::default_path();
    let mut settings = path.as_deref().map(Settings::load).unwrap_or_default();
    if let Some(s) = &opts.server {
        settings.server = s.clone();
    }
    if let Some(r) = &opts.room {
        settings.room = r.clone();
    }
    if let Some(n) = &opts.name {
        settings.name = n.clone();
    }
    if let Some(c) = &opts.camera {
        VideoChoice::parse(c).ok_or_else(|| {
            UiError::Option(format!(
                "--camera takes none, synthetic, file:PATH.y4m or a camera index, not {c:?}"
            ))
        })?;
        settings.camera = c.clone();
    }
    if let Some(m) = &opts.microphone {
        AudioChoice::parse(m).ok_or_else(|| {
            UiError::Option(format!(
                "--microphone takes none, synthetic, file:PATH.wav or a device id, not {m:?}"
            ))
        })?;
        settings.microphone = m.clone();
    }
    let embed = settings.server.trim().is_empty();
    let place = &settings.window;
    let mut viewport = eframe::egui::ViewportBuilder::default()
        .with_title("confab")
        .with_app_id("confab")
        .with_inner_size(place.open_size())
        .with_maximized(place.maximized);
    if let Some(p) = place.open_position() {
        viewport = viewport.with_position(p);
    }
    // The icon the package installs, also on the window.
    match eframe::icon_data::from_png_bytes(include_bytes!("../../assets/confab.png")) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => tracing::warn!("the window icon: {e}"),
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native(
        "confab",
        native,
        Box::new(move |cc| {
            let media = Arc::new(UiSink::default());
            media.attach(&cc.egui_ctx);
            let (commands, events, done) = bridge::spawn(media.clone(), embed, cc.egui_ctx.clone());
            let theme = window::SystemTheme::watch(cc.egui_ctx.clone());
            let mut app = App::new(commands, events, media, settings, path)
                .with_system_theme(theme)
                .with_engine_done(done);
            if opts.join || opts.test_call {
                app = app.join_on_start(opts.test_call);
                if !embed {
                    app.model.enter(opts.test_call);
                }
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| UiError::Window(e.to_string()))
}
