//! The pre-join screen's state without egui: errors placed next to the field they
//! concern, who is in the room already, the camera and microphone toggles' memory.

use std::collections::BTreeMap;

use crate::signaling::protocol::{ErrorCode, RoomInfo};

use super::choices::{AudioChoice, VideoChoice};

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
/// (`None` until a list arrived). The list carries counts, not names.
pub fn room_presence(rooms: Option<&[RoomInfo]>, room: &str) -> Option<String> {
    let rooms = rooms?;
    let room = room.trim();
    if room.is_empty() {
        return None;
    }
    let Some(info) = rooms.iter().find(|r| r.name == room) else {
        return Some("Nobody is in this room yet".into());
    };
    Some(match (info.members, info.capacity) {
        (n, Some(cap)) if n >= cap => format!("This room is full ({n} of {cap})"),
        (0, _) => "Nobody is in this room yet".into(),
        (1, None) => "1 person is in this room".into(),
        (n, None) => format!("{n} people are in this room"),
        (n, Some(cap)) => format!("{n} of {cap} places taken"),
    })
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
    fn the_room_list_says_who_is_in_the_room_before_joining() {
        let info = |name: &str, members, capacity| RoomInfo {
            name: name.into(),
            members,
            capacity,
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
