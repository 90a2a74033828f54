//! The pre-join screen's state without egui: errors placed next to the field they
//! concern, who is in the room already, the camera and microphone toggles' memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::signaling::protocol::{ErrorCode, RoomInfo};

use super::bridge::UiCommand;
use super::choices::{AudioChoice, VideoChoice};
use super::model::{Model, Screen};

/// How often the pre-join screen asks who is in the rooms.
const ROOMS_EVERY: Duration = Duration::from_secs(10);

/// A field of the pre-join screen an error can be shown beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Server,
    Name,
    Room,
    Password,
    Camera,
    Microphone,
}

/// At most one error per field, replaced by the next and cleared on an edit or a new try.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldErrors(BTreeMap<Field, String>);

impl FieldErrors {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.0.get(&f).map(String::as_str)
    }

    pub fn set(&mut self, f: Field, msg: String) {
        self.0.insert(f, msg);
    }

    pub fn clear(&mut self, f: Field) {
        self.0.remove(&f);
    }

    pub fn clear_all(&mut self) {
        self.0.clear();
    }
}

/// Where a failed join's message belongs and what to say there; None: the banner.
/// The engine reports a join as text (`CallError` display), so this reads the server's
/// error code or the client's wording from it.
pub fn route_join_error(msg: &str) -> Option<(Field, String)> {
    let detail = |code: ErrorCode| {
        let tail = msg
            .split_once(&format!("{}: ", code.as_str()))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        tail.map(|t| format!(" ({t})")).unwrap_or_default()
    };
    let refused = ErrorCode::ALL
        .iter()
        .copied()
        .find(|c| msg.contains(&format!("refused: {}", c.as_str())));
    if let Some(code) = refused {
        let d = detail(code);
        return Some(match code {
            ErrorCode::WrongPassword => (Field::Password, format!("Wrong password{d}")),
            ErrorCode::TooManyAttempts => (
                Field::Password,
                format!("Too many wrong passwords: wait a minute{d}"),
            ),
            ErrorCode::RoomFull => (Field::Room, format!("This room is full{d}")),
            ErrorCode::InvalidRoom => (Field::Room, format!("Not a room name{d}")),
            ErrorCode::PrivateRoom => (Field::Room, format!("That room is a private call{d}")),
            ErrorCode::InvalidName => (Field::Name, format!("Not a usable name{d}")),
            ErrorCode::ServerFull | ErrorCode::TooManyRooms => {
                (Field::Server, format!("The server is full{d}"))
            }
            _ => return None,
        });
    }
    let unreachable = ["cannot connect to", "no answer from the server"];
    if unreachable.iter().any(|u| msg.contains(u)) {
        // "...cannot connect to ws://x: reason": the reason, without the prefixes.
        let reason = msg
            .rsplit_once(": ")
            .map_or(msg, |(_, r)| r)
            .trim()
            .to_string();
        return Some((Field::Server, format!("Server unreachable: {reason}")));
    }
    None
}

/// What the screen says about who is in `room` now, from the server's room list
/// (`None` until a list arrived): the first few names when the server sends them.
pub fn room_presence(rooms: Option<&[RoomInfo]>, room: &str) -> Option<String> {
    let rooms = rooms?;
    let room = room.trim();
    if room.is_empty() {
        return None;
    }
    let Some(info) = rooms.iter().find(|r| r.name == room) else {
        return Some("Nobody is in this room yet".into());
    };
    let said = presence(info);
    Some(if info.broadcast {
        format!("{said}. A broadcast: joining, you watch")
    } else {
        said
    })
}

fn presence(info: &RoomInfo) -> String {
    let n = info.members;
    if n > 0 && !info.names.is_empty() {
        let who = names_list(&info.names, n);
        return match info.capacity {
            Some(cap) if n >= cap => format!("This room is full: {who}"),
            Some(cap) => format!(
                "{who} {} in this room ({n} of {cap} places taken)",
                if n == 1 { "is" } else { "are" }
            ),
            None => format!("{who} {} in this room", if n == 1 { "is" } else { "are" }),
        };
    }
    match (n, info.capacity) {
        (n, Some(cap)) if n >= cap => format!("This room is full ({n} of {cap})"),
        (0, _) => "Nobody is in this room yet".into(),
        (1, None) => "1 person is in this room".into(),
        (n, None) => format!("{n} people are in this room"),
        (n, Some(cap)) => format!("{n} of {cap} places taken"),
    }
}

/// "Ada", "Ada and Bob", "Ada, Bob and Cy", or "Ada, Bob and 3 more" of `total`.
fn names_list(names: &[String], total: usize) -> String {
    let more = total.saturating_sub(names.len());
    let mut parts: Vec<String> = names.to_vec();
    if more > 0 {
        parts.push(format!("{more} more"));
    }
    match parts.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A device toggle turned off keeps what it turns back on.
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    pub camera: Option<VideoChoice>,
    pub microphone: Option<AudioChoice>,
}

/// What turning the camera on picks: the one turned off, else the first camera found.
/// Never the synthetic pattern: a test source is only ever picked by name.
pub fn camera_to_turn_on(
    remembered: Option<&VideoChoice>,
    found: &[VideoChoice],
) -> Option<VideoChoice> {
    remembered
        .filter(|c| **c != VideoChoice::None)
        .cloned()
        .or_else(|| found.first().cloned())
}

/// As [`camera_to_turn_on`], for the microphone.
pub fn microphone_to_turn_on(
    remembered: Option<&AudioChoice>,
    found: &[AudioChoice],
) -> Option<AudioChoice> {
    remembered
        .filter(|c| **c != AudioChoice::None)
        .cloned()
        .or_else(|| found.first().cloned())
}

/// The pre-join screen's actions (and reopening devices turned off there, in the call).
impl Model {
    /// Asks the server who is in which room (the answer comes as an event).
    pub fn refresh_rooms(&mut self) {
        match self.server_url() {
            Some(server) => {
                self.rooms_asked = Some(Instant::now());
                self.send(UiCommand::RefreshRooms { server });
            }
            None => self.field_errors.set(Field::Server, "No server yet".into()),
        }
    }

    /// The server to use changed: the rooms listed were another server's.
    pub fn server_changed(&mut self) {
        self.rooms.clear();
        self.rooms_known = false;
        self.rooms_asked = None;
        self.field_errors.clear(Field::Server);
    }

    /// Called each frame of the pre-join screen: keeps the room list fresh.
    pub fn lobby_tick(&mut self, now: Instant) {
        let due = self
            .rooms_asked
            .is_none_or(|t| now.duration_since(t) >= ROOMS_EVERY);
        if self.screen == Screen::Lobby && due && self.server_url().is_some() {
            self.refresh_rooms();
        }
    }

    /// Who is in the chosen room, as the last room list says.
    pub fn room_presence(&self) -> Option<String> {
        room_presence(
            self.rooms_known.then_some(self.rooms.as_slice()),
            &self.settings.room,
        )
    }

    /// Shows another camera (None: none) in the preview; the choice is joined with.
    pub fn preview_camera(&mut self, choice: VideoChoice) {
        self.field_errors.clear(Field::Camera);
        self.camera = choice;
        self.send(UiCommand::Preview(self.camera.clone()));
    }

    pub fn preview_microphone(&mut self, choice: AudioChoice) {
        self.field_errors.clear(Field::Microphone);
        self.microphone = choice;
        self.send(UiCommand::PreviewMicrophone(self.microphone.clone()));
    }

    /// The pre-join camera button: off joins without opening the camera at all.
    pub fn toggle_preview_camera(&mut self) {
        if self.camera == VideoChoice::None {
            let found: Vec<VideoChoice> = self.cameras.clone();
            match camera_to_turn_on(self.remembered.camera.as_ref(), &found) {
                Some(c) => self.preview_camera(c),
                None => self
                    .field_errors
                    .set(Field::Camera, "No camera found".into()),
            }
        } else {
            self.remembered.camera = Some(self.camera.clone());
            self.preview_camera(VideoChoice::None);
        }
    }

    pub fn toggle_preview_microphone(&mut self) {
        if self.microphone == AudioChoice::None {
            let found: Vec<AudioChoice> = self.microphones.clone();
            match microphone_to_turn_on(self.remembered.microphone.as_ref(), &found) {
                Some(m) => self.preview_microphone(m),
                None => self
                    .field_errors
                    .set(Field::Microphone, "No microphone found".into()),
            }
        } else {
            self.remembered.microphone = Some(self.microphone.clone());
            self.preview_microphone(AudioChoice::None);
        }
    }

    /// In a call without a camera (turned off before joining): the one to open.
    pub fn camera_to_open(&self) -> Option<VideoChoice> {
        if self.call.state.has_camera {
            return None;
        }
        let last = self
            .remembered
            .camera
            .as_ref()
            .or(Some(&self.camera).filter(|c| **c != VideoChoice::None));
        camera_to_turn_on(last, &self.cameras)
    }

    pub fn open_camera_in_call(&mut self) {
        if let Some(c) = self.camera_to_open() {
            self.camera = c.clone();
            self.send(UiCommand::SwitchCamera(c));
            self.save_settings();
        }
    }

    /// In a call without a microphone (turned off before joining): the one to open.
    pub fn microphone_to_open(&self) -> Option<AudioChoice> {
        if self.call.state.has_microphone {
            return None;
        }
        let last = self
            .remembered
            .microphone
            .as_ref()
            .or(Some(&self.microphone).filter(|m| **m != AudioChoice::None));
        microphone_to_turn_on(last, &self.microphones)
    }

    pub fn open_microphone_in_call(&mut self) {
        if let Some(m) = self.microphone_to_open() {
            self.microphone = m.clone();
            self.send(UiCommand::SwitchMicrophone(m));
            self.save_settings();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_errors_go_beside_the_field_they_concern() {
        let cases = [
            (
                "signaling: the server refused: wrong_password: the room's password differs",
                Field::Password,
                "Wrong password (the room's password differs)",
            ),
            (
                "signaling: the server refused: room_full: 4 members at most",
                Field::Room,
                "This room is full (4 members at most)",
            ),
            (
                "signaling: the server refused: invalid_name: empty",
                Field::Name,
                "Not a usable name (empty)",
            ),
            (
                "signaling: cannot connect to ws://127.0.0.1:1/ws: Connection refused (os error 111)",
                Field::Server,
                "Server unreachable: Connection refused (os error 111)",
            ),
        ];
        for (msg, field, text) in cases {
            assert_eq!(
                route_join_error(msg),
                Some((field, text.to_string())),
                "{msg}"
            );
        }
        assert_eq!(route_join_error("webrtc: something else"), None);
        assert_eq!(
            route_join_error("signaling: the server refused: rate_limited: slow down"),
            None,
            "not about a field: the banner"
        );
    }

    #[test]
    fn the_names_the_server_lists_are_said_before_joining() {
        let info = |name: &str, members, capacity, names: &[&str]| RoomInfo {
            name: name.into(),
            members,
            capacity,
            names: names.iter().map(|n| n.to_string()).collect(),
            broadcast: false,
        };
        let rooms = [
            info("one", 1, None, &["Grace"]),
            info("team", 3, Some(50), &["Grace", "Bob", "Carol"]),
            info("big", 7, None, &["Ann", "Bob", "Cy", "Di"]),
            info("pair", 2, Some(2), &["Ann", "Bob"]),
        ];
        let say = |room| room_presence(Some(&rooms), room).unwrap();
        assert_eq!(say("one"), "Grace is in this room");
        assert_eq!(
            say("team"),
            "Grace, Bob and Carol are in this room (3 of 50 places taken)"
        );
        assert_eq!(say("big"), "Ann, Bob, Cy, Di and 3 more are in this room");
        assert_eq!(say("pair"), "This room is full: Ann and Bob");
        let launch = [RoomInfo {
            broadcast: true,
            ..info("launch", 1, None, &["Ada"])
        }];
        assert_eq!(
            room_presence(Some(&launch), "launch").unwrap(),
            "Ada is in this room. A broadcast: joining, you watch"
        );
    }

    #[test]
    fn the_room_list_says_who_is_in_the_room_before_joining() {
        let info = |name: &str, members, capacity| RoomInfo {
            name: name.into(),
            members,
            capacity,
            names: Vec::new(),
            broadcast: false,
        };
        let rooms = [info("team", 3, None), info("small", 2, Some(2))];
        let say = |room| room_presence(Some(&rooms), room);
        assert_eq!(say("team").as_deref(), Some("3 people are in this room"));
        assert_eq!(say(" team ").as_deref(), Some("3 people are in this room"));
        assert_eq!(say("small").as_deref(), Some("This room is full (2 of 2)"));
        assert_eq!(say("new").as_deref(), Some("Nobody is in this room yet"));
        assert_eq!(say(""), None);
        assert_eq!(
            room_presence(None, "team"),
            None,
            "no list yet: say nothing"
        );
    }

    #[test]
    fn turning_the_camera_on_picks_the_one_turned_off_and_never_a_synthetic_stand_in() {
        let usb = VideoChoice::Camera(0, "USB".into());
        let other = VideoChoice::Camera(1, "Other".into());
        assert_eq!(
            camera_to_turn_on(Some(&other), std::slice::from_ref(&usb)),
            Some(other.clone())
        );
        assert_eq!(
            camera_to_turn_on(None, std::slice::from_ref(&usb)),
            Some(usb)
        );
        assert_eq!(camera_to_turn_on(None, &[]), None);
        assert_eq!(
            camera_to_turn_on(Some(&VideoChoice::TestPattern), &[]),
            Some(VideoChoice::TestPattern),
            "the pattern comes back only if it was picked by name"
        );
    }
}
