//! The desktop app's state and drawing. It never waits: commands go out on a
//! channel, events come back on another, frames come through [`VideoFrames`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use eframe::egui::{
    self, Align2, Color32, FontId, Key, KeyboardShortcut, Modifiers, Rect, RichText, Sense, Stroke,
    TextureHandle, TextureOptions, Vec2, pos2,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::call::{CAMERA_TRACK, Command, ConnectionState, Event, PeerCallStats, SCREEN_TRACK};
use crate::signaling::protocol::{MediaState, RoomInfo};

use super::bridge::{
    AudioChoice, DeviceList, JoinRequest, SpeakerChoice, UiCommand, UiEvent, VideoChoice,
};
use super::settings::Settings;
use super::video::{SELF_ID, TileKey, VideoFrames};
use crate::media::device::ScreenInfo;

pub const SHORTCUT_MIC: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::D);
pub const SHORTCUT_CAMERA: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::E);
pub const SHORTCUT_SHARE: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::CTRL.plus(Modifiers::SHIFT), Key::S);
pub const SHORTCUT_HANGUP: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::CTRL.plus(Modifiers::SHIFT), Key::H);

/// Seconds of statistics kept for the plots.
const STATS_HISTORY: usize = 120;
/// Above this level (dBFS) a member counts as speaking.
const SPEAKING_DBFS: f32 = -40.0;

#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub name: String,
    pub state: MediaState,
    pub connection: ConnectionState,
    pub sharing_track: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatLine {
    pub from: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCall {
    pub call_id: String,
    pub from_name: String,
}

/// Everything the call view draws, built from engine events only.
#[derive(Debug, Default)]
pub struct CallModel {
    pub me: String,
    pub room: String,
    pub since: Option<Instant>,
    pub peers: BTreeMap<String, PeerView>,
    pub chat: Vec<ChatLine>,
    pub unread: usize,
    pub incoming: Option<IncomingCall>,
    pub ringing_out: Option<String>,
    pub state: MediaState,
    pub stats: HashMap<String, VecDeque<PeerCallStats>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Lobby,
    Joining,
    Call,
}

pub struct App {
    commands: UnboundedSender<UiCommand>,
    events: std::sync::mpsc::Receiver<UiEvent>,
    frames: Arc<VideoFrames>,
    textures: HashMap<TileKey, TextureHandle>,
    seen: HashMap<TileKey, u64>,
    pub screen: Screen,
    pub settings: Settings,
    settings_path: Option<std::path::PathBuf>,
    pub password: String,
    pub camera: VideoChoice,
    pub microphone: AudioChoice,
    pub speaker: SpeakerChoice,
    /// URL of the built-in server, when it runs.
    pub embedded: Option<(String, String)>,
    pub rooms: Vec<RoomInfo>,
    /// Devices found on this machine (synthetic ones are always offered too).
    pub cameras: Vec<VideoChoice>,
    pub microphones: Vec<AudioChoice>,
    pub speakers: Vec<SpeakerChoice>,
    pub screens: Vec<ScreenInfo>,
    /// The screen shared last (what the shortcut shares).
    pub last_screen: usize,
    pub call: CallModel,
    pub chat_open: bool,
    pub stats_open: bool,
    pub devices_open: bool,
    pub chat_draft: String,
    pub errors: VecDeque<(Instant, String)>,
    /// Where the last remote camera tile was drawn (for logs and tests).
    last_layout: HashMap<String, Rect>,
    join_on_start: bool,
    /// The lobby's previews were started for the remembered devices.
    previews_started: bool,
}

impl App {
    pub fn new(
        commands: UnboundedSender<UiCommand>,
        events: std::sync::mpsc::Receiver<UiEvent>,
        frames: Arc<VideoFrames>,
        settings: Settings,
        settings_path: Option<std::path::PathBuf>,
    ) -> Self {
        let camera = VideoChoice::parse(&settings.camera).unwrap_or(VideoChoice::None);
        let microphone = AudioChoice::parse(&settings.microphone).unwrap_or(AudioChoice::None);
        let speaker = SpeakerChoice::parse(&settings.speaker);
        Self {
            commands,
            events,
            frames,
            textures: HashMap::new(),
            seen: HashMap::new(),
            screen: Screen::Lobby,
            settings,
            settings_path,
            password: String::new(),
            camera,
            microphone,
            speaker,
            embedded: None,
            rooms: Vec::new(),
            cameras: Vec::new(),
            microphones: Vec::new(),
            speakers: Vec::new(),
            screens: Vec::new(),
            last_screen: 0,
            call: CallModel::default(),
            chat_open: false,
            stats_open: false,
            devices_open: false,
            chat_draft: String::new(),
            errors: VecDeque::new(),
            last_layout: HashMap::new(),
            join_on_start: false,
            previews_started: false,
        }
    }

    /// Join as soon as the server address is known (`--join`).
    pub fn join_on_start(mut self) -> Self {
        self.join_on_start = true;
        self
    }

    fn send(&self, cmd: UiCommand) {
        if self.commands.send(cmd).is_err() {
            tracing::error!("the engine thread is gone");
        }
    }

    fn engine(&self, cmd: Command) {
        self.send(UiCommand::Engine(cmd));
    }

    fn error(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.errors.push_back((Instant::now(), msg));
        while self.errors.len() > 4 {
            self.errors.pop_front();
        }
    }

    /// The server to use: the configured one, else the built-in one.
    pub fn server_url(&self) -> Option<String> {
        let s = self.settings.server.trim();
        if !s.is_empty() {
            return Some(s.to_string());
        }
        self.embedded.as_ref().map(|(url, _)| url.clone())
    }

    pub fn join(&mut self) {
        let Some(server) = self.server_url() else {
            self.error("no server yet: the built-in one is still starting".into());
            return;
        };
        self.save_settings();
        self.screen = Screen::Joining;
        self.send(UiCommand::Join(JoinRequest {
            server,
            room: self.settings.room.trim().to_string(),
            name: self.settings.name.trim().to_string(),
            password: Some(self.password.clone()).filter(|p| !p.is_empty()),
            camera: self.camera.clone(),
            microphone: self.microphone.clone(),
            speaker: self.speaker.clone(),
            echo_cancellation: self.settings.echo_cancellation,
        }));
    }

    /// Remembers the current choices (a failure is logged, not fatal).
    fn save_settings(&mut self) {
        self.settings.camera = self.camera.key();
        self.settings.microphone = self.microphone.key();
        self.settings.speaker = self.speaker.key();
        if let Some(path) = &self.settings_path
            && let Err(e) = self.settings.save(path)
        {
            tracing::warn!("settings not saved: {e}");
        }
    }

    /// The lobby shows the chosen camera and measures the chosen microphone.
    fn start_previews(&mut self) {
        self.previews_started = true;
        if self.camera != VideoChoice::None {
            self.send(UiCommand::Preview(self.camera.clone()));
        }
        if self.microphone != AudioChoice::None {
            self.send(UiCommand::PreviewMicrophone(self.microphone.clone()));
        }
    }

    /// Shows or clears the incoming-call dialog; the ring sounds while it is up.
    fn set_incoming(&mut self, incoming: Option<IncomingCall>) {
        let was = self.call.incoming.is_some();
        let now = incoming.is_some();
        self.call.incoming = incoming;
        if was != now {
            self.send(UiCommand::Ring(now));
        }
    }

    /// Applies everything that arrived since the last frame.
    pub fn drain_events(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.apply(e);
        }
    }

    pub fn apply(&mut self, e: UiEvent) {
        match e {
            UiEvent::ServerReady { url, lan_url } => {
                self.embedded = Some((url, lan_url));
                if self.join_on_start && self.screen == Screen::Lobby {
                    self.join();
                }
            }
            UiEvent::ServerFailed(m) => self.error(format!("built-in server: {m}")),
            UiEvent::Rooms(Ok(rooms)) => self.rooms = rooms,
            UiEvent::Rooms(Err(m)) => self.error(format!("room list: {m}")),
            UiEvent::Devices(list) => {
                let DeviceList {
                    cameras,
                    microphones,
                    speakers,
                    screens,
                } = list;
                // A remembered device keeps its place; its real name replaces the stored key.
                if let Some(c) = cameras.iter().find(|c| c.key() == self.camera.key()) {
                    self.camera = c.clone();
                }
                if let Some(m) = microphones
                    .iter()
                    .find(|m| m.key() == self.microphone.key())
                {
                    self.microphone = m.clone();
                }
                if let Some(m) = speakers.iter().find(|m| m.key() == self.speaker.key()) {
                    self.speaker = m.clone();
                }
                self.cameras = cameras;
                self.microphones = microphones;
                self.speakers = speakers;
                self.screens = screens;
                if self.screen == Screen::Lobby && !self.join_on_start && !self.previews_started {
                    self.start_previews();
                }
            }
            UiEvent::Error(m) => self.error(m),
            UiEvent::JoinFailed(m) => {
                self.screen = Screen::Lobby;
                self.error(format!("could not join: {m}"));
            }
            UiEvent::Engine(ev) => self.apply_engine(ev),
        }
    }

    fn apply_engine(&mut self, ev: Event) {
        let call = &mut self.call;
        match ev {
            Event::Joined { id, room } => {
                call.me = id;
                call.room = room;
                call.since = Some(Instant::now());
                call.peers.clear();
                self.screen = Screen::Call;
            }
            Event::PeerJoined { id, name, state } => {
                call.peers.insert(
                    id,
                    PeerView {
                        name,
                        state,
                        connection: ConnectionState::New,
                        sharing_track: false,
                    },
                );
            }
            Event::PeerLeft { id, .. } => {
                call.peers.remove(&id);
                call.stats.remove(&id);
                self.frames.forget_peer(&id);
            }
            Event::PeerMediaState { id, state } => {
                if let Some(p) = call.peers.get_mut(&id) {
                    p.state = state;
                }
            }
            Event::LocalMediaState(s) => call.state = s,
            Event::Connection { id, state } => {
                if let Some(p) = call.peers.get_mut(&id) {
                    p.connection = state;
                }
            }
            Event::TrackAdded { peer, track, .. } if track == SCREEN_TRACK => {
                if let Some(p) = call.peers.get_mut(&peer) {
                    p.sharing_track = true;
                }
            }
            Event::TrackRemoved { peer, track } => {
                if track == SCREEN_TRACK
                    && let Some(p) = call.peers.get_mut(&peer)
                {
                    p.sharing_track = false;
                }
                self.frames.forget_tile(&peer, &track);
            }
            Event::Chat { name, text, .. } => {
                call.chat.push(ChatLine { from: name, text });
                if !self.chat_open {
                    call.unread += 1;
                }
            }
            Event::IncomingCall {
                call_id, from_name, ..
            } => {
                self.set_incoming(Some(IncomingCall { call_id, from_name }));
            }
            Event::CallRinging { to, .. } => call.ringing_out = Some(to),
            Event::CallAccepted { .. } => {
                call.ringing_out = None;
                self.set_incoming(None);
            }
            Event::CallEnded { reason, detail, .. } => {
                call.ringing_out = None;
                self.set_incoming(None);
                let detail = detail.map(|d| format!(": {d}")).unwrap_or_default();
                self.error(format!("call ended ({reason:?}){detail}"));
            }
            Event::Stats(all) => {
                for s in all {
                    let h = call.stats.entry(s.id.clone()).or_default();
                    h.push_back(s);
                    while h.len() > STATS_HISTORY {
                        h.pop_front();
                    }
                }
            }
            Event::Error(m) => self.error(m),
            Event::Reconnecting { reason } => self.error(format!("reconnecting: {reason}")),
            Event::Left(_) => {
                self.set_incoming(None);
                self.screen = Screen::Lobby;
                self.call = CallModel::default();
                self.start_previews();
            }
            Event::TrackAdded { .. } | Event::KeyframeReceived { .. } => {}
        }
    }

    /// Uploads new frames into their textures, in place when the size is unchanged.
    fn upload_frames(&mut self, ctx: &egui::Context) {
        for (key, image, seq) in self.frames.changed(&self.seen) {
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

    // Toggles, shared by buttons and shortcuts.

    pub fn toggle_mic(&mut self) {
        self.engine(Command::SetAudioMuted(!self.call.state.audio_muted));
    }

    pub fn toggle_camera(&mut self) {
        self.engine(Command::SetVideoMuted(!self.call.state.video_muted));
    }

    /// The shortcut: stop sharing, or share the screen shared last.
    pub fn toggle_share(&mut self) {
        if self.call.state.screen_sharing {
            self.engine(Command::StopScreenShare);
        } else {
            self.share_screen(self.last_screen);
        }
    }

    pub fn share_screen(&mut self, index: usize) {
        if self.screens.is_empty() {
            self.error("screen share: no screen to capture".into());
            return;
        }
        self.last_screen = index;
        self.send(UiCommand::ShareScreen(index));
    }

    pub fn set_echo_cancellation(&mut self, on: bool) {
        self.settings.echo_cancellation = on;
        self.settings.noise_suppression = on;
        self.send(UiCommand::SetEchoCancellation(on));
        self.save_settings();
    }

    pub fn hang_up(&mut self) {
        if self.call.room.starts_with("call:") {
            self.engine(Command::Hangup);
        } else {
            self.engine(Command::Leave);
        }
    }

    pub fn send_chat(&mut self) {
        let text = self.chat_draft.trim().to_string();
        if text.is_empty() {
            return;
        }
        self.call.chat.push(ChatLine {
            from: format!("{} (you)", self.settings.name),
            text: text.clone(),
        });
        self.chat_draft.clear();
        self.engine(Command::Chat(text));
    }

    /// Draws one frame of the app.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.frames.attach(ui.ctx());
        self.drain_events();
        self.upload_frames(ui.ctx());
        match self.screen {
            Screen::Lobby | Screen::Joining => self.lobby(ui),
            Screen::Call => self.call_view(ui),
        }
    }

    fn error_banner(&mut self, ui: &mut egui::Ui) {
        self.errors.retain(|(t, _)| t.elapsed().as_secs() < 8);
        for (_, e) in &self.errors {
            ui.colored_label(Color32::from_rgb(220, 80, 60), e);
        }
    }

    fn lobby(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default_margins().show(ui, |ui| {
            ui.heading("confab");
            self.error_banner(ui);
            ui.add_space(8.0);
            egui::Grid::new("lobby-form")
                .num_columns(2)
                .spacing([12.0, 8.0])
                .show(ui, |ui| {
                    let l = ui.label("Server");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.settings.server)
                            .hint_text("empty: built-in server"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    if self.settings.server.trim().is_empty() {
                        ui.label("");
                        match &self.embedded {
                            Some((_, lan)) => ui
                                .label(format!(
                                    "Built-in server: others on your network join with {lan}, \
                                     or from a browser: {}",
                                    guest_link(lan, &self.settings.room)
                                ))
                                .on_hover_text(
                                    "Browsers on other machines send camera and microphone \
                                     only over HTTPS: for that, run `confab serve --tls-listen` \
                                     with a certificate and use it as the server.",
                                ),
                            None => ui.label("Built-in server starting…"),
                        };
                        ui.end_row();
                    }
                    let l = ui.label("Name");
                    ui.text_edit_singleline(&mut self.settings.name)
                        .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Room");
                    ui.text_edit_singleline(&mut self.settings.room)
                        .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Password");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.password)
                            .password(true)
                            .hint_text("optional"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Camera");
                    let before = self.camera.clone();
                    self.camera_picker(ui, true).labelled_by(l.id);
                    if self.camera != before {
                        self.send(UiCommand::Preview(self.camera.clone()));
                    }
                    ui.end_row();
                    let l = ui.label("Microphone");
                    let before = self.microphone.clone();
                    self.microphone_picker(ui, true).labelled_by(l.id);
                    if self.microphone != before {
                        self.send(UiCommand::PreviewMicrophone(self.microphone.clone()));
                    }
                    ui.end_row();
                    // The meter's own text (the level) is its accessible label.
                    ui.label("Level");
                    self.level_meter(ui);
                    ui.end_row();
                    let l = ui.label("Speaker");
                    self.speaker_picker(ui).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Screen to share");
                    self.screen_picker(ui).labelled_by(l.id);
                    ui.end_row();
                    ui.label("");
                    let mut aec = self.settings.echo_cancellation;
                    if ui
                        .checkbox(&mut aec, "Echo cancellation and noise suppression")
                        .changed()
                    {
                        self.set_echo_cancellation(aec);
                    }
                    ui.end_row();
                });
            ui.add_space(8.0);
            let preview = (SELF_ID.to_string(), CAMERA_TRACK.to_string());
            let (rect, _) = ui.allocate_exact_size(Vec2::new(320.0, 180.0), Sense::hover());
            match self
                .textures
                .get(&preview)
                .filter(|_| self.camera != VideoChoice::None)
            {
                Some(tex) => {
                    paint_fitted(ui, tex, rect);
                }
                None => paint_placeholder(ui, rect, &self.settings.name, "No camera"),
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                let ready = !self.settings.name.trim().is_empty()
                    && !self.settings.room.trim().is_empty()
                    && self.screen == Screen::Lobby;
                if ui.add_enabled(ready, egui::Button::new("Join")).clicked() {
                    self.join();
                }
                if self.screen == Screen::Joining {
                    ui.spinner();
                    ui.label("Joining…");
                }
            });
            ui.separator();
            ui.horizontal(|ui| {
                ui.label("Rooms on the server");
                if ui.button("Refresh").clicked() {
                    match self.server_url() {
                        Some(server) => self.send(UiCommand::RefreshRooms { server }),
                        None => self.error("no server yet".into()),
                    }
                }
            });
            let mut pick = None;
            for r in &self.rooms {
                let lock = if r.locked { " (locked)" } else { "" };
                let cap = r.capacity.map(|c| format!("/{c}")).unwrap_or_default();
                if ui
                    .link(format!("{} ({}{cap}){lock}", r.name, r.members))
                    .clicked()
                {
                    pick = Some(r.name.clone());
                }
            }
            if let Some(room) = pick {
                self.settings.room = room;
            }
        });
    }

    /// Microphone choices; "no microphone" only before joining (in a call, mute instead).
    fn microphone_picker(&mut self, ui: &mut egui::Ui, with_none: bool) -> egui::Response {
        let choices = with_none
            .then_some(AudioChoice::None)
            .into_iter()
            .chain([AudioChoice::TestTone])
            .chain(self.microphones.clone());
        choice_combo(
            ui,
            ("microphone", with_none),
            None,
            &mut self.microphone,
            choices,
            AudioChoice::label,
        )
    }

    fn camera_picker(&mut self, ui: &mut egui::Ui, with_none: bool) -> egui::Response {
        let choices = with_none
            .then_some(VideoChoice::None)
            .into_iter()
            .chain([VideoChoice::TestPattern])
            .chain(self.cameras.clone());
        choice_combo(
            ui,
            ("camera", with_none),
            Some(260.0),
            &mut self.camera,
            choices,
            VideoChoice::label,
        )
    }

    fn speaker_picker(&mut self, ui: &mut egui::Ui) -> egui::Response {
        let before = self.speaker.clone();
        let choices = [SpeakerChoice::Default]
            .into_iter()
            .chain(self.speakers.clone());
        let r = choice_combo(
            ui,
            "speaker",
            None,
            &mut self.speaker,
            choices,
            SpeakerChoice::label,
        );
        if self.speaker != before {
            if self.screen == Screen::Call {
                self.send(UiCommand::SwitchSpeaker(self.speaker.clone()));
            }
            self.save_settings();
        }
        r
    }

    /// Which screen "Share screen" and its shortcut offer first.
    fn screen_picker(&mut self, ui: &mut egui::Ui) -> egui::Response {
        let selected = self
            .screens
            .iter()
            .find(|s| s.index == self.last_screen)
            .map_or_else(|| "No screen found".to_string(), |s| s.name.clone());
        egui::ComboBox::from_id_salt("screen")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                for s in &self.screens {
                    ui.selectable_value(&mut self.last_screen, s.index, &s.name);
                }
            })
            .response
    }

    /// The microphone's level from -60 to 0 dBFS.
    fn level_meter(&self, ui: &mut egui::Ui) -> egui::Response {
        let level = self.frames.level(SELF_ID);
        let (fraction, text) = match level {
            Some(db) => (
                ((db + 60.0) / 60.0).clamp(0.0, 1.0),
                format!("{db:.0} dBFS"),
            ),
            None if self.microphone == AudioChoice::None => (0.0, "No microphone".into()),
            None => (0.0, "…".into()),
        };
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(260.0)
                .text(text),
        )
    }

    /// Mid-call device choices: each change swaps the source behind the same track.
    fn devices_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.strong("Devices");
            if ui.small_button("Refresh").clicked() {
                self.send(UiCommand::RefreshDevices);
            }
        });
        egui::Grid::new("call-devices")
            .num_columns(2)
            .spacing([8.0, 6.0])
            .show(ui, |ui| {
                let l = ui.label("Camera");
                let before = self.camera.clone();
                self.camera_picker(ui, false).labelled_by(l.id);
                if self.camera != before {
                    self.send(UiCommand::SwitchCamera(self.camera.clone()));
                    self.save_settings();
                }
                ui.end_row();
                let l = ui.label("Microphone");
                let before = self.microphone.clone();
                self.microphone_picker(ui, false).labelled_by(l.id);
                if self.microphone != before {
                    self.send(UiCommand::SwitchMicrophone(self.microphone.clone()));
                    self.save_settings();
                }
                ui.end_row();
                let l = ui.label("Speaker");
                self.speaker_picker(ui).labelled_by(l.id);
                ui.end_row();
            });
        let mut aec = self.settings.echo_cancellation;
        if ui
            .checkbox(&mut aec, "Echo cancellation and noise suppression")
            .changed()
        {
            self.set_echo_cancellation(aec);
        }
    }

    fn call_view(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_MIC)) {
            self.toggle_mic();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_CAMERA)) {
            self.toggle_camera();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_SHARE)) {
            self.toggle_share();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_HANGUP)) {
            self.hang_up();
        }
        egui::Panel::top("call-top").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(&self.call.room);
                if let Some(since) = self.call.since {
                    let s = since.elapsed().as_secs();
                    ui.label(format!("{:02}:{:02}", s / 60, s % 60));
                }
                if let Some(to) = &self.call.ringing_out {
                    let name = self
                        .call
                        .peers
                        .get(to)
                        .map_or(to.as_str(), |p| p.name.as_str());
                    ui.label(format!("Ringing {name}…"));
                }
            });
            self.error_banner(ui);
        });
        egui::Panel::bottom("call-controls").show(ui, |ui| {
            ui.horizontal(|ui| {
                let st = self.call.state;
                let mic = if st.audio_muted { "Unmute" } else { "Mute" };
                if ui
                    .add_enabled(st.has_microphone, egui::Button::new(mic))
                    .on_hover_text(format!(
                        "Microphone ({})",
                        ctx.format_shortcut(&SHORTCUT_MIC)
                    ))
                    .clicked()
                {
                    self.toggle_mic();
                }
                let cam = if st.video_muted {
                    "Start camera"
                } else {
                    "Stop camera"
                };
                if ui
                    .add_enabled(st.has_camera, egui::Button::new(cam))
                    .on_hover_text(format!(
                        "Camera ({})",
                        ctx.format_shortcut(&SHORTCUT_CAMERA)
                    ))
                    .clicked()
                {
                    self.toggle_camera();
                }
                let share_tip = format!("Screen ({})", ctx.format_shortcut(&SHORTCUT_SHARE));
                if st.screen_sharing {
                    if ui.button("Stop sharing").on_hover_text(share_tip).clicked() {
                        self.toggle_share();
                    }
                } else {
                    // The picker: which screen to share.
                    let mut pick = None;
                    ui.menu_button("Share screen", |ui| {
                        if self.screens.is_empty() {
                            ui.label("No screen found");
                        }
                        for s in &self.screens {
                            if ui.button(&s.name).clicked() {
                                pick = Some(s.index);
                            }
                        }
                        if ui.button("Look again").clicked() {
                            self.send(UiCommand::RefreshDevices);
                        }
                    })
                    .response
                    .on_hover_text(share_tip);
                    if let Some(i) = pick {
                        self.share_screen(i);
                    }
                }
                let chat = match self.call.unread {
                    0 => "Chat".to_string(),
                    n => format!("Chat ({n})"),
                };
                if ui.selectable_label(self.chat_open, chat).clicked() {
                    self.chat_open = !self.chat_open;
                    self.call.unread = 0;
                }
                if ui.selectable_label(self.stats_open, "Statistics").clicked() {
                    self.stats_open = !self.stats_open;
                }
                if ui.selectable_label(self.devices_open, "Devices").clicked() {
                    self.devices_open = !self.devices_open;
                }
                if ui
                    .button(RichText::new("Hang up").color(Color32::from_rgb(220, 60, 60)))
                    .on_hover_text(format!(
                        "Hang up ({})",
                        ctx.format_shortcut(&SHORTCUT_HANGUP)
                    ))
                    .clicked()
                {
                    self.hang_up();
                }
            });
        });
        egui::Panel::right("call-side")
            .default_size(260.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.side_panel(ui));
            });
        egui::CentralPanel::default_margins().show(ui, |ui| self.tiles(ui));
        self.incoming_dialog(&ctx);
    }

    fn side_panel(&mut self, ui: &mut egui::Ui) {
        self.roster(ui);
        if self.chat_open {
            ui.separator();
            self.chat_panel(ui);
        }
        if self.devices_open {
            ui.separator();
            self.devices_panel(ui);
        }
        if self.stats_open {
            ui.separator();
            self.stats_panel(ui);
        }
    }

    fn roster(&mut self, ui: &mut egui::Ui) {
        ui.strong(format!("In the room ({})", self.call.peers.len() + 1));
        ui.label(format!("{} (you)", self.settings.name));
        let mut invite = None;
        let private = self.call.room.starts_with("call:");
        for (id, p) in &self.call.peers {
            ui.horizontal(|ui| {
                ui.label(format!("{}{}", p.name, marks(&p.state)));
                if !private
                    && ui
                        .small_button("Call")
                        .on_hover_text("Ring for a private call")
                        .clicked()
                {
                    invite = Some(id.clone());
                }
            });
        }
        if let Some(to) = invite {
            self.engine(Command::Invite {
                to,
                metadata: String::new(),
            });
        }
    }

    fn chat_panel(&mut self, ui: &mut egui::Ui) {
        ui.strong("Chat");
        egui::ScrollArea::vertical()
            .max_height(200.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for line in &self.call.chat {
                    ui.label(format!("{}: {}", line.from, line.text));
                }
            });
        ui.horizontal(|ui| {
            // Leave room for the button: the panel is narrow.
            let width = (ui.available_width() - 60.0).max(60.0);
            let r = ui
                .add(
                    egui::TextEdit::singleline(&mut self.chat_draft)
                        .hint_text("Message")
                        .desired_width(width),
                )
                .on_hover_text("Message");
            let enter = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            if ui.button("Send").clicked() || enter {
                self.send_chat();
            }
        });
    }

    fn stats_panel(&mut self, ui: &mut egui::Ui) {
        ui.strong("Statistics");
        for (id, history) in &self.call.stats {
            let Some(s) = history.back() else { continue };
            let name = self
                .call
                .peers
                .get(id)
                .map_or(id.as_str(), |p| p.name.as_str());
            ui.label(RichText::new(name).strong());
            ui.label(format!(
                "in {:.0} kbit/s {:.0} fps {}x{} | out {:.0} kbit/s {:.0} fps",
                s.video_in_kbps,
                s.video_in_fps,
                s.video_in_width,
                s.video_in_height,
                s.video_out_kbps,
                s.video_out_fps
            ));
            ui.label(format!(
                "RTT {} | lost {} | glass-to-glass {} | link estimate {}",
                s.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
                s.packets_lost,
                s.glass_to_glass_ms
                    .map_or("-".into(), |g| format!("{g:.0} ms")),
                s.send_estimate_kbps
                    .map_or("-".into(), |k| format!("{k:.0} kbit/s")),
            ));
            let series = |f: fn(&PeerCallStats) -> f64| -> Vec<[f64; 2]> {
                history
                    .iter()
                    .enumerate()
                    .map(|(i, s)| [i as f64, f(s)])
                    .collect()
            };
            egui_plot::Plot::new(format!("plot-{id}"))
                .height(90.0)
                .show_axes([false, true])
                .legend(egui_plot::Legend::default())
                .show(ui, |p| {
                    p.line(egui_plot::Line::new(
                        "in kbit/s",
                        series(|s| s.video_in_kbps),
                    ));
                    p.line(egui_plot::Line::new(
                        "out kbit/s",
                        series(|s| s.video_out_kbps),
                    ));
                    p.line(egui_plot::Line::new(
                        "estimate kbit/s",
                        series(|s| s.send_estimate_kbps.unwrap_or(0.0)),
                    ));
                });
        }
    }

    fn tiles(&mut self, ui: &mut egui::Ui) {
        let area = ui.available_rect_before_wrap();
        // A shared screen goes large on top; the people share what is left.
        let sharer = self
            .call
            .peers
            .iter()
            .find(|(id, p)| {
                p.sharing_track
                    && self
                        .textures
                        .contains_key(&((*id).clone(), SCREEN_TRACK.to_string()))
            })
            .map(|(id, _)| id.clone());
        let people_area = match &sharer {
            Some(id) => {
                let split = area.top() + area.height() * 0.7;
                let big = Rect::from_min_max(area.min, pos2(area.right(), split));
                if let Some(tex) = self.textures.get(&(id.clone(), SCREEN_TRACK.to_string())) {
                    paint_fitted(ui, tex, big.shrink(4.0));
                }
                Rect::from_min_max(pos2(area.left(), split), area.max)
            }
            None => area,
        };
        let mut tiles: Vec<(String, String, MediaState)> = self
            .call
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), p.name.clone(), p.state))
            .collect();
        tiles.push((
            SELF_ID.to_string(),
            self.settings.name.clone(),
            self.call.state,
        ));
        let n = tiles.len();
        let cols = (n as f32).sqrt().ceil() as usize;
        let rows = n.div_ceil(cols);
        let size = Vec2::new(
            people_area.width() / cols as f32,
            people_area.height() / rows as f32,
        );
        for (i, (id, name, state)) in tiles.into_iter().enumerate() {
            let min =
                people_area.min + Vec2::new((i % cols) as f32 * size.x, (i / cols) as f32 * size.y);
            let rect = Rect::from_min_size(min, size).shrink(4.0);
            let key = (id.clone(), CAMERA_TRACK.to_string());
            let video = self
                .textures
                .get(&key)
                .filter(|_| state.has_camera && !state.video_muted);
            match video {
                Some(tex) => {
                    let drawn = paint_fitted(ui, tex, rect);
                    if id != SELF_ID && self.last_layout.get(&id) != Some(&drawn) {
                        let ppp = ui.ctx().pixels_per_point();
                        tracing::debug!(
                            target: "confab::ui::layout",
                            peer = %id, x = drawn.min.x * ppp, y = drawn.min.y * ppp,
                            w = drawn.width() * ppp, h = drawn.height() * ppp,
                            "remote tile"
                        );
                        self.last_layout.insert(id.clone(), drawn);
                    }
                }
                None => {
                    let why = if !state.has_camera {
                        "No camera"
                    } else {
                        "Camera off"
                    };
                    paint_placeholder(ui, rect, &name, why);
                }
            }
            let speaking = id != SELF_ID
                && self.frames.level(&id).is_some_and(|l| l > SPEAKING_DBFS)
                && !state.audio_muted;
            if speaking {
                ui.painter().rect_stroke(
                    rect,
                    6.0,
                    Stroke::new(3.0, Color32::from_rgb(60, 200, 90)),
                    egui::StrokeKind::Inside,
                );
            }
            let you = if id == SELF_ID { " (you)" } else { "" };
            ui.painter().text(
                rect.left_bottom() + Vec2::new(8.0, -8.0),
                Align2::LEFT_BOTTOM,
                format!("{name}{you}{}", marks(&state)),
                FontId::proportional(14.0),
                Color32::WHITE,
            );
        }
    }

    fn incoming_dialog(&mut self, ctx: &egui::Context) {
        let Some(inc) = self.call.incoming.clone() else {
            return;
        };
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("incoming-call")).show(ctx, |ui| {
            ui.heading(format!("{} is calling", inc.from_name));
            ui.horizontal(|ui| {
                if ui.button("Accept").clicked() {
                    answer = Some(true);
                }
                if ui.button("Decline").clicked() {
                    answer = Some(false);
                }
            });
        });
        match answer {
            Some(true) => self.engine(Command::Accept(inc.call_id)),
            Some(false) => self.engine(Command::Decline {
                call_id: inc.call_id,
                reason: Some("declined".into()),
            }),
            None => return,
        }
        self.set_incoming(None);
    }
}

/// The web client's address for a room, from the server's WebSocket URL.
pub fn guest_link(ws_url: &str, room: &str) -> String {
    let base = ws_url
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    let base = base.strip_suffix("/ws").unwrap_or(&base);
    let room: String = url::form_urlencoded::byte_serialize(room.trim().as_bytes()).collect();
    format!("{base}/?room={room}")
}

/// A drop-down of `choices` showing `label`s, setting `selected`.
fn choice_combo<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    id_salt: impl egui::AsIdSalt,
    width: Option<f32>,
    selected: &mut T,
    choices: impl IntoIterator<Item = T>,
    label: impl Fn(&T) -> String,
) -> egui::Response {
    let mut combo = egui::ComboBox::from_id_salt(id_salt).selected_text(label(selected));
    if let Some(w) = width {
        combo = combo.width(w);
    }
    combo
        .show_ui(ui, |ui| {
            for c in choices {
                let text = label(&c);
                ui.selectable_value(selected, c, text);
            }
        })
        .response
}

/// Mute, camera-off and sharing marks after a name.
pub fn marks(s: &MediaState) -> String {
    let mut m = Vec::new();
    if !s.has_microphone {
        m.push("no mic");
    } else if s.audio_muted {
        m.push("muted");
    }
    if !s.has_camera {
        m.push("no camera");
    } else if s.video_muted {
        m.push("camera off");
    }
    if s.screen_sharing {
        m.push("sharing");
    }
    if m.is_empty() {
        String::new()
    } else {
        format!(" · {}", m.join(" · "))
    }
}

/// Draws a texture as large as fits in `rect`, keeping its aspect; returns where.
fn paint_fitted(ui: &egui::Ui, tex: &TextureHandle, rect: Rect) -> Rect {
    let [w, h] = tex.size();
    let scale = (rect.width() / w as f32).min(rect.height() / h as f32);
    let size = Vec2::new(w as f32 * scale, h as f32 * scale);
    let drawn = Rect::from_center_size(rect.center(), size);
    ui.painter().rect_filled(rect, 6.0, Color32::BLACK);
    ui.painter().image(
        tex.id(),
        drawn,
        Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
        Color32::WHITE,
    );
    drawn
}

/// A tile without video: initials and why.
fn paint_placeholder(ui: &egui::Ui, rect: Rect, name: &str, why: &str) {
    let p = ui.painter();
    p.rect_filled(rect, 6.0, Color32::from_gray(40));
    let initials: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase();
    p.circle_filled(rect.center(), 32.0, Color32::from_rgb(70, 90, 140));
    p.text(
        rect.center(),
        Align2::CENTER_CENTER,
        initials,
        FontId::proportional(26.0),
        Color32::WHITE,
    );
    p.text(
        rect.center() + Vec2::new(0.0, 48.0),
        Align2::CENTER_CENTER,
        why,
        FontId::proportional(13.0),
        Color32::LIGHT_GRAY,
    );
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
        // The call timer ticks once a second; frames and events repaint on their own.
        if self.screen == Screen::Call {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs(1));
        }
    }
}
