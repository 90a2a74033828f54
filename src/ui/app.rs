//! The desktop app: the [`Model`] and what draws it. It never waits: commands go out on
//! a channel, events come back on another, media come through [`UiSink`].

use std::collections::HashMap;
use std::sync::Arc;

use eframe::egui::{
    self, Color32, Key, KeyboardShortcut, Modifiers, Rect, TextureHandle, TextureOptions,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::call::Event;

use super::bridge::{UiCommand, UiEvent};
use super::model::{Model, Screen};
use super::settings::Settings;
use super::sink::UiSink;
use super::video::{SELF_ID, TileKey};
use super::window::{SystemTheme, apply_theme};

pub const SHORTCUT_MIC: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::D);
pub const SHORTCUT_CAMERA: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::E);
pub const SHORTCUT_SHARE: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::CTRL.plus(Modifiers::SHIFT), Key::S);
pub const SHORTCUT_HANGUP: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::CTRL.plus(Modifiers::SHIFT), Key::H);

pub struct App {
    pub model: Model,
    events: std::sync::mpsc::Receiver<UiEvent>,
    pub(super) media: Arc<UiSink>,
    pub(super) textures: HashMap<TileKey, TextureHandle>,
    seen: HashMap<TileKey, u64>,
    /// Where the last remote camera tile was drawn (for logs and tests).
    pub(super) last_layout: HashMap<String, Rect>,
    /// Tile sizes (pixels) last told to the engine, by member.
    pub(super) reported_tiles: HashMap<String, (u32, u32)>,
    /// The server error the Connection section was last opened for.
    pub(super) shown_server_error: Option<String>,
    /// The window went full screen for a tile (and returns when it is left).
    window_full_screen: bool,
    /// The desktop's light/dark preference, as far as it is known.
    system_theme: SystemTheme,
    engine_done: Option<std::sync::mpsc::Receiver<()>>,
}

impl App {
    pub fn new(
        commands: UnboundedSender<UiCommand>,
        events: std::sync::mpsc::Receiver<UiEvent>,
        media: Arc<UiSink>,
        settings: Settings,
        settings_path: Option<std::path::PathBuf>,
    ) -> Self {
        let mut model = Model::new(commands, settings, settings_path);
        model.layout.mode = model.settings.window.layout;
        model.layout.hide_self = model.settings.window.hide_self;
        Self {
            model,
            events,
            media,
            textures: HashMap::new(),
            seen: HashMap::new(),
            last_layout: HashMap::new(),
            reported_tiles: HashMap::new(),
            shown_server_error: None,
            window_full_screen: false,
            system_theme: SystemTheme::default(),
            engine_done: None,
        }
    }

    /// What says the engine has stopped: the closing window waits for it (bounded), so
    /// that the call's goodbye goes out before the process ends.
    pub fn with_engine_done(mut self, done: std::sync::mpsc::Receiver<()>) -> Self {
        self.engine_done = Some(done);
        self
    }

    /// Follows what the desktop prefers when the windowing system does not say.
    pub fn with_system_theme(mut self, theme: SystemTheme) -> Self {
        self.system_theme = theme;
        self
    }

    /// The look and the window's geometry and layout, kept in the settings (saved with
    /// them: on joining, on a device change, on exit).
    fn remember_window(&mut self, ctx: &egui::Context) {
        apply_theme(ctx, &self.model.settings.window, self.system_theme.get());
        let w = &mut self.model.settings.window;
        ctx.input(|i| w.observe(i.viewport()));
        w.layout = self.model.layout.mode;
        w.hide_self = self.model.layout.hide_self;
    }

    /// Join (or start a test call) as soon as the server address is known (`--join`,
    /// `--test-call`).
    pub fn join_on_start(mut self, test_call: bool) -> Self {
        self.model.set_join_on_start(test_call);
        self
    }

    /// Applies everything that arrived since the last frame.
    pub fn drain_events(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.apply(e);
        }
    }

    /// Applies one event: the model takes it; tiles of peers and tracks that are gone
    /// are dropped here.
    pub fn apply(&mut self, e: UiEvent) {
        match &e {
            UiEvent::Engine(Event::PeerLeft { id, .. }) => {
                self.media.forget_peer(id);
                self.forget_tiles(|member| member == id);
            }
            UiEvent::Engine(Event::TrackRemoved { peer, track }) => {
                self.media.video.forget_tile(peer, *track)
            }
            // Our own tile stays: the self-preview goes on in the lobby.
            UiEvent::Engine(Event::Left(_)) => self.forget_tiles(|member| member != SELF_ID),
            _ => {}
        }
        self.model.apply(e);
    }

    /// Drops what was kept for the tiles of the members `gone` picks: their textures
    /// (GPU memory a long call would otherwise pile up) and the sizes told to the engine,
    /// which must be told afresh should the member come back.
    fn forget_tiles(&mut self, gone: impl Fn(&str) -> bool) {
        self.textures.retain(|(member, _), _| !gone(member));
        self.seen.retain(|(member, _), _| !gone(member));
        self.last_layout.retain(|member, _| !gone(member));
        self.reported_tiles.retain(|member, _| !gone(member));
    }

    /// Uploads new media into their textures, in place when the size is unchanged.
    fn upload_frames(&mut self, ctx: &egui::Context) {
        for (key, image, seq) in self.media.video.changed(&self.seen) {
            self.seen.insert(key.clone(), seq);
            let options = TextureOptions::LINEAR;
            match self.textures.get_mut(&key) {
                Some(tex) if tex.size() == image.size => tex.set_partial([0, 0], image, options),
                Some(tex) => tex.set(image, options),
                None => {
                    let name = format!("tile-{}-{}", key.0, key.1);
                    self.textures
                        .insert(key, ctx.load_texture(name, image, options));
                }
            }
        }
    }

    /// Draws one frame of the app.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.media.attach(ui.ctx());
        self.remember_window(ui.ctx());
        self.drain_events();
        self.upload_frames(ui.ctx());
        match self.model.screen {
            Screen::Lobby | Screen::Joining => self.lobby(ui),
            Screen::Call => self.call_view(ui),
        }
        self.follow_full_screen(ui.ctx());
    }

    /// A full-screen tile makes the window full screen, and leaving it windowed again
    /// (unless the window was full screen before).
    fn follow_full_screen(&mut self, ctx: &egui::Context) {
        let want = self.model.screen == Screen::Call && self.model.layout.full_screen.is_some();
        if want && !self.window_full_screen {
            let already = ctx.input(|i| i.viewport().fullscreen.unwrap_or(false));
            if !already {
                ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(true));
                self.window_full_screen = true;
            }
        } else if !want && self.window_full_screen {
            ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(false));
            self.window_full_screen = false;
        }
    }

    pub(crate) fn error_banner(&mut self, ui: &mut egui::Ui) {
        self.model.errors.retain(|(t, _)| t.elapsed().as_secs() < 8);
        for (_, e) in &self.model.errors {
            ui.colored_label(Color32::from_rgb(220, 80, 60), e);
        }
    }
}

impl eframe::App for App {
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.model.save_settings();
        self.model.send(UiCommand::Quit);
        if let Some(done) = &self.engine_done {
            let _ = done.recv_timeout(super::quit::EXIT_WAIT);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
        // The call timer ticks once a second; media and events repaint on their own.
        if self.model.screen == Screen::Call {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs(1));
        }
    }
}
