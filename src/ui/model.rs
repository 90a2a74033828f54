//! The app's state and what the user can do, without egui: engine events and user actions
//! go in, commands to the engine thread come out. The views draw it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use crate::call::{Command, ConnectionState, Event, PeerCallStats, TrackRole};
use crate::media::device::ScreenInfo;
use crate::signaling::protocol::{MediaState, RoomInfo};

use super::bridge::{JoinRequest, UiCommand, UiEvent};
use super::checks::CheckPanel;
use super::choices::{AudioChoice, DeviceList, SpeakerChoice, VideoChoice};
use super::layout::Layout;
use super::prejoin::{Field, FieldErrors, Remembered, route_join_error};
use super::settings::Settings;
use super::sources::FileEntries;
use super::toasts::Toasts;

/// Seconds of statistics kept for the plots.
const STATS_HISTORY: usize = 120;

#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub name: String,
    pub state: MediaState,
    pub connection: ConnectionState,
    /// The media path is gone and ICE restarts are under way.
    pub reconnecting: bool,
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

/// The built-in server, when it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// What this app connects to (loopback).
    pub url: String,
    /// What others on the network would use.
    pub lan_url: String,
    /// Whether others on the network may connect (off until the user says so).
    pub lan_open: bool,
}

impl CallModel {
    /// The member who owns the room: present longest.
    pub fn owner(&self) -> Option<&str> {
        self.order.first().map(String::as_str)
    }

    /// The names of those who record the call ("you" for us), for the mark everyone sees.
    pub fn recording(&self) -> Vec<&str> {
        let mut who: Vec<&str> = self
            .peers
            .values()
            .filter(|p| p.state.recording)
            .map(|p| p.name.as_str())
            .collect();
        if self.state.recording {
            who.insert(0, "you");
        }
        who
    }

    /// What the top bar says of a broadcast: that we only watch, or how many watch us.
    pub fn audience(&self) -> Option<String> {
        if self.viewer {
            return Some("Watching: you send nothing".into());
        }
        (self.broadcast || self.viewers > 0).then(|| match self.viewers {
            1 => "1 watching".to_string(),
            n => format!("{n} watching"),
        })
    }
}

/// Everything the call view draws, built from engine events only.
#[derive(Debug, Default)]
pub struct CallModel {
    pub me: String,
    /// Our name in the room (the welcome's: suffixed if another member had it).
    pub my_name: String,
    /// Member ids, ours included, longest present first: the first owns the room.
    pub order: Vec<String>,
    pub room: String,
    pub since: Option<Instant>,
    pub peers: BTreeMap<String, PeerView>,
    pub chat: Vec<ChatLine>,
    pub unread: usize,
    pub incoming: Option<IncomingCall>,
    pub ringing_out: Option<String>,
    pub state: MediaState,
    pub stats: HashMap<String, VecDeque<PeerCallStats>>,
    /// Push-to-talk: the key is held and has unmuted us until it is let go.
    pub talking_held: bool,
    /// The engine hears us speak into the muted microphone.
    pub speaking_while_muted: bool,
    /// The file our recording goes into, while we record.
    pub recording_to: Option<String>,
    /// Media goes through the server's SFU, not a mesh.
    pub via_sfu: bool,
    /// We only watch (a broadcast we did not create, or joined to watch).
    pub viewer: bool,
    /// The room is a broadcast.
    pub broadcast: bool,
    /// Other members who only watch.
    pub viewers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Lobby,
    Joining,
    Call,
}

const RECONNECTING: &str = "reconnecting to the server: ";

/// Everything the app shows and remembers, and what the user can do; no egui here.
pub struct Model {
    commands: UnboundedSender<UiCommand>,
    pub screen: Screen,
    pub settings: Settings,
    settings_path: Option<std::path::PathBuf>,
    pub password: String,
    pub camera: VideoChoice,
    pub microphone: AudioChoice,
    pub speaker: SpeakerChoice,
    pub embedded: Option<Embedded>,
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
    /// The pre-join screen's errors, each beside its field.
    pub field_errors: FieldErrors,
    /// What the camera and microphone toggles turn back on.
    pub remembered: Remembered,
    /// When the room list was last asked for (None: not yet for this server).
    pub(super) rooms_asked: Option<Instant>,
    /// A room list arrived from the current server.
    pub rooms_known: bool,
    pub layout: Layout,
    join_on_start: bool,
    test_call_on_start: bool,
    /// How the next join goes in (the lobby's Watch and Broadcast buttons).
    pub(super) join_role: super::bridge::JoinRole,
    /// The lobby's previews were started for the remembered devices.
    previews_started: bool,
    /// Join and leave notices.
    pub toasts: Toasts,
    /// Paths being typed for file sources.
    pub files: FileEntries,
    /// The pre-join screen's checks.
    pub checks: CheckPanel,
}

impl Model {
    pub fn new(
        commands: UnboundedSender<UiCommand>,
        settings: Settings,
        settings_path: Option<std::path::PathBuf>,
    ) -> Self {
        let camera = VideoChoice::parse(&settings.camera).unwrap_or(VideoChoice::None);
        let microphone = AudioChoice::parse(&settings.microphone).unwrap_or(AudioChoice::None);
        let speaker = SpeakerChoice::parse(&settings.speaker);
        Self {
            commands,
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
            field_errors: FieldErrors::default(),
            remembered: Remembered::default(),
            rooms_asked: None,
            rooms_known: false,
            layout: Layout::default(),
            join_on_start: false,
            test_call_on_start: false,
            join_role: Default::default(),
            previews_started: false,
            toasts: Toasts::default(),
            files: FileEntries::default(),
            checks: CheckPanel::default(),
        }
    }

    /// Join as soon as the server address is known (`--join`), or start a test call.
    pub fn set_join_on_start(&mut self, test_call: bool) {
        self.join_on_start = true;
        self.test_call_on_start = test_call;
    }

    pub(super) fn send(&self, cmd: UiCommand) {
        if self.commands.send(cmd).is_err() {
            tracing::error!("the engine thread is gone");
        }
    }

    pub fn engine(&self, cmd: Command) {
        self.send(UiCommand::Engine(cmd));
    }

    pub(super) fn error(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.errors.push_back((Instant::now(), msg));
        while self.errors.len() > 4 {
            self.errors.pop_front();
        }
    }

    /// Lets others on the network use the built-in server, or shuts them out again.
    pub fn share_on_lan(&mut self, open: bool) {
        if let Some(e) = &mut self.embedded {
            e.lan_open = open;
            self.send(UiCommand::ShareOnLan(open));
        }
    }

    /// The server to use: the configured one, else the built-in one.
    pub fn server_url(&self) -> Option<String> {
        let s = self.settings.server.trim();
        if !s.is_empty() {
            return Some(s.to_string());
        }
        self.embedded.as_ref().map(|e| e.url.clone())
    }

    /// Whether the pre-join screen has what a join needs.
    pub fn can_join(&self) -> bool {
        !self.settings.name.trim().is_empty()
            && !self.settings.room.trim().is_empty()
            && self.screen == Screen::Lobby
    }

    pub fn join(&mut self) {
        // A broadcast someone else started: we will watch, so no device opens for it.
        let room = self.settings.room.trim();
        if self.rooms.iter().any(|r| r.name == room && r.broadcast) {
            self.join_role = super::bridge::JoinRole::Watch;
        }
        self.enter(false);
    }

    /// Into the room, or (`test_call`) into a test call with the server's echo peer.
    pub fn enter(&mut self, test_call: bool) {
        let Some(server) = self.server_url() else {
            self.field_errors.set(
                Field::Server,
                "No server yet: the built-in one is still starting".into(),
            );
            return;
        };
        self.field_errors.clear_all();
        self.save_settings();
        self.screen = Screen::Joining;
        let role = std::mem::take(&mut self.join_role);
        self.send(UiCommand::Join(JoinRequest {
            server,
            room: self.settings.room.trim().to_string(),
            name: self.settings.name.trim().to_string(),
            password: Some(self.password.clone()).filter(|p| !p.is_empty()),
            camera: self.camera.clone(),
            microphone: self.microphone.clone(),
            speaker: self.speaker.clone(),
            echo_cancellation: self.settings.echo_cancellation,
            relay_only: self.settings.relay_only,
            quality: self.settings.quality,
            test_call,
            role,
        }));
    }

    /// Remembers the current choices (a failure is logged, not fatal).
    pub(super) fn save_settings(&mut self) {
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
    pub(super) fn set_incoming(&mut self, incoming: Option<IncomingCall>) {
        let was = self.call.incoming.is_some();
        let now = incoming.is_some();
        self.call.incoming = incoming;
        if was != now {
            self.send(UiCommand::Ring(now));
        }
    }

    /// Applies one event from the engine thread.
    pub fn apply(&mut self, e: UiEvent) {
        match e {
            UiEvent::ServerReady { url, lan_url } => {
                self.embedded = Some(Embedded {
                    url,
                    lan_url,
                    lan_open: false,
                });
                if self.join_on_start && self.screen == Screen::Lobby {
                    self.enter(self.test_call_on_start);
                }
            }
            UiEvent::ServerFailed(m) => self
                .field_errors
                .set(Field::Server, format!("The built-in server failed: {m}")),
            UiEvent::Rooms(Ok(rooms)) => {
                self.rooms = rooms;
                self.rooms_known = true;
                if self
                    .field_errors
                    .get(Field::Server)
                    .is_some_and(|e| e.starts_with("Server unreachable"))
                {
                    self.field_errors.clear(Field::Server);
                }
            }
            UiEvent::Rooms(Err(m)) => {
                self.rooms_known = false;
                match route_join_error(&m) {
                    Some((field, text)) => self.field_errors.set(field, text),
                    None => self.error(format!("room list: {m}")),
                }
            }
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
            UiEvent::Error(m) => {
                // The pre-join preview's device errors go under the device's button.
                let device = [
                    ("camera: ", Field::Camera),
                    ("microphone: ", Field::Microphone),
                ]
                .into_iter()
                .find(|(prefix, _)| m.starts_with(prefix));
                match device {
                    Some((_, field)) if self.screen != Screen::Call => {
                        self.field_errors.set(field, m)
                    }
                    _ => self.error(m),
                }
            }
            UiEvent::JoinFailed(m) => {
                self.screen = Screen::Lobby;
                match route_join_error(&m) {
                    Some((field, text)) => self.field_errors.set(field, text),
                    None => self.error(format!("could not join: {m}")),
                }
            }
            UiEvent::Checks(report) => self.checks_done(report),
            UiEvent::Engine(ev) => self.apply_engine(ev),
        }
    }

    fn apply_engine(&mut self, ev: Event) {
        let call = &mut self.call;
        match ev {
            Event::Joined {
                id,
                room,
                name,
                present,
            } => {
                call.order = present;
                call.order.push(id.clone());
                call.my_name = if name.is_empty() {
                    self.settings.name.trim().to_string()
                } else {
                    name
                };
                call.me = id;
                call.room = room;
                call.since = Some(Instant::now());
                call.peers.clear();
                self.screen = Screen::Call;
            }
            Event::PeerJoined { id, name, state } => {
                // Those already present when we joined are no news.
                let new = !call.order.contains(&id);
                if new {
                    call.order.push(id.clone());
                }
                call.peers.insert(
                    id,
                    PeerView {
                        name: name.clone(),
                        state,
                        connection: ConnectionState::New,
                        reconnecting: false,
                        sharing_track: false,
                    },
                );
                if new {
                    self.announce(format!("{name} joined"), true);
                }
            }
            Event::PeerLeft { id, .. } => {
                call.order.retain(|o| *o != id);
                let gone = call.peers.remove(&id);
                call.stats.remove(&id);
                if let Some(p) = gone {
                    self.announce(format!("{} left", p.name), false);
                }
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
            Event::PeerReconnecting { id, reconnecting } => {
                if let Some(p) = call.peers.get_mut(&id) {
                    p.reconnecting = reconnecting;
                }
            }
            Event::TrackAdded {
                peer,
                track: TrackRole::Screen,
                ..
            } => {
                if let Some(p) = call.peers.get_mut(&peer) {
                    p.sharing_track = true;
                }
            }
            Event::TrackRemoved { peer, track } => {
                if track == TrackRole::Screen
                    && let Some(p) = call.peers.get_mut(&peer)
                {
                    p.sharing_track = false;
                }
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
            Event::SpeakingWhileMuted(s) => call.speaking_while_muted = s,
            Event::RecordingStarted { path } => {
                self.toasts
                    .push(Instant::now(), format!("Recording to {path}"));
                call.recording_to = Some(path);
            }
            Event::RecordingStopped { summary, error } => {
                call.recording_to = None;
                match error {
                    Some(e) => self.error(format!("recording {}: {e}", summary.path)),
                    None => self
                        .toasts
                        .push(Instant::now(), format!("Recording saved: {}", summary.path)),
                }
            }
            Event::Error(m) => self.error(m),
            Event::Reconnecting { reason } => self.error(format!("{RECONNECTING}{reason}")),
            // Back as the same member: the outage notice has said what it had to.
            Event::Resumed => self.errors.retain(|(_, m)| !m.starts_with(RECONNECTING)),
            Event::Left(_) => {
                self.set_incoming(None);
                self.screen = Screen::Lobby;
                self.call = CallModel::default();
                self.toasts.clear();
                self.layout.reset_call();
                self.rooms_asked = None;
                self.start_previews();
            }
            Event::MediaMode { sfu } => call.via_sfu = sfu,
            Event::Role { viewer, broadcast } => {
                call.viewer = viewer;
                call.broadcast = broadcast;
            }
            Event::Viewers(n) => call.viewers = n,
            Event::TrackAdded { .. }
            | Event::KeyframeReceived { .. }
            | Event::LayerRelayed { .. } => {}
        }
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
