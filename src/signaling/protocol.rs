//! Protocol v1: JSON text frames tagged by `"type"`. `docs/PROTOCOL.md` is the
//! normative description; this file is its single source of truth in code.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

pub const PROTOCOL_VERSION: u32 = 1;
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_ROOM_CHARS: usize = 64;
pub const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_REASON_CHARS: usize = 256;
/// Error messages are cut to this many characters (they may quote client input).
pub const MAX_ERROR_CHARS: usize = 200;
/// Prefix of the private rooms created for accepted calls; clients can't create them.
pub const PRIVATE_ROOM_PREFIX: &str = "call:";

/// Test calls' private rooms (see `test_call`).
pub const ECHO_ROOM_PREFIX: &str = "echo:";

/// Whether a room is the private room of an accepted call.
pub fn is_private_room(room: &str) -> bool {
    room.starts_with(PRIVATE_ROOM_PREFIX)
}

/// Whether a room is a test call's, with the server's echo peer.
pub fn is_echo_room(room: &str) -> bool {
    room.starts_with(ECHO_ROOM_PREFIX)
}

/// Media state each member broadcasts (the per-user states of a call UI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaState {
    pub audio_muted: bool,
    pub video_muted: bool,
    pub has_camera: bool,
    pub has_microphone: bool,
    pub screen_sharing: bool,
    /// The member records the call (absent from older peers: false).
    pub recording: bool,
    /// How many simulcast layers of its camera it sends now, smallest first (0: not
    /// simulcasting). Behind a narrow uplink the large ones stop; subscribers then ask
    /// the SFU for one that comes.
    #[serde(skip_serializing_if = "is_zero")]
    pub camera_layers: u8,
    /// The size of its camera's largest layer, `[width, height]`, while simulcasting:
    /// subscribers tell from it which layer fills a tile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_size: Option<[u16; 2]>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub state: MediaState,
    /// Watches only: sends nothing, and nobody connects to it for media it would send.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub viewer: bool,
}

/// What a member does in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends camera, microphone, screen (everyone in an ordinary room).
    Presenter,
    /// Only watches: no camera or microphone is asked for, nothing is sent.
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub members: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    /// The first few members' names in joining order (open rooms only), so a person
    /// sees who is there before joining.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A broadcast: a few present, everyone else joins to watch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
}

/// Names per room in a room list: enough to recognise a room, a page stays small.
pub const ROOM_NAMES_LISTED: usize = 4;

/// Why a member left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    TimedOut,
}

/// Why a ringing or accepted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEndReason {
    Declined,
    Cancelled,
    Timeout,
    Hangup,
    Disconnected,
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Join {
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Only used when this join creates the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capacity: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<MediaState>,
        /// Only used when this join creates the room: take its media through the
        /// server's SFU from the start instead of a mesh.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sfu: bool,
        /// Only used when this join creates the room: a broadcast, where its creator
        /// presents and whoever joins later watches unless they ask to present.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        broadcast: bool,
        /// Present or only watch. Unset: present, except in a broadcast room (watch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
    },
    Leave,
    Relay {
        to: String,
        payload: serde_json::Value,
    },
    MediaState {
        state: MediaState,
    },
    CallInvite {
        to: String,
        #[serde(default)]
        metadata: String,
    },
    CallAccept {
        call_id: String,
    },
    CallDecline {
        call_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    CallCancel {
        call_id: String,
    },
    CallHangup {
        call_id: String,
    },
    /// A page of the room list; `after` is the last name of the previous page.
    ListRooms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<serde_json::Value>,
    },
    /// The first message on a new connection after the old one was lost: take the
    /// member back (same id, room and calls) with the welcome's `resume_token`.
    Resume {
        token: String,
    },
    /// Ask for a test call: the server's echo peer waits in a new private room, whose
    /// name and key come back in `test_call`; join it with the key as the password.
    TestCall,
}

impl ClientMessage {
    /// Every `type` a client may send, for telling an unknown type from a malformed one.
    pub const TYPES: &'static [&'static str] = &[
        "join",
        "leave",
        "relay",
        "media_state",
        "call_invite",
        "call_accept",
        "call_decline",
        "call_cancel",
        "call_hangup",
        "list_rooms",
        "ping",
        "resume",
        "test_call",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::Leave => "leave",
            Self::Relay { .. } => "relay",
            Self::MediaState { .. } => "media_state",
            Self::CallInvite { .. } => "call_invite",
            Self::CallAccept { .. } => "call_accept",
            Self::CallDecline { .. } => "call_decline",
            Self::CallCancel { .. } => "call_cancel",
            Self::CallHangup { .. } => "call_hangup",
            Self::ListRooms { .. } => "list_rooms",
            Self::Resume { .. } => "resume",
            Self::Ping { .. } => "ping",
            Self::TestCall => "test_call",
        }
    }

    /// Parses one text frame, telling malformed JSON, unknown types and bad fields apart.
    pub fn parse(text: &str) -> Result<Self, ProtocolViolation> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProtocolViolation {
                code: ErrorCode::BadJson,
                message: format!("not valid JSON: {e}"),
                request: None,
            })?;
        let Some(obj) = value.as_object() else {
            return Err(ProtocolViolation::bad(
                "a message must be a JSON object",
                None,
            ));
        };
        let ty = match obj.get("type") {
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(_) => return Err(ProtocolViolation::bad("\"type\" must be a string", None)),
            None => return Err(ProtocolViolation::bad("missing \"type\"", None)),
        };
        if !Self::TYPES.contains(&ty.as_str()) {
            return Err(ProtocolViolation {
                code: ErrorCode::UnknownType,
                message: format!("unknown message type {ty:?}"),
                request: None,
            });
        }
        serde_json::from_value(value).map_err(|e| ProtocolViolation::bad(&e.to_string(), Some(ty)))
    }
}

/// The answer to a successful join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    /// Your member id, stable for this connection.
    pub id: String,
    pub room: String,
    /// Your name as the room shows it: with a suffix when a member already had it.
    #[serde(default)]
    pub name: String,
    /// The other members already in the room, longest-present first.
    pub members: Vec<Member>,
    /// The room's owner: the member present longest (you, if the room is new). When the
    /// owner leaves, the next in `members` order takes over.
    #[serde(default)]
    pub owner: String,
    pub ice_servers: Vec<IceServer>,
    /// How often the server pings; silence for three intervals means the link is dead.
    pub heartbeat_ms: u64,
    /// Present a lost connection's member back with `resume` within `resume_grace_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    #[serde(default)]
    pub resume_grace_ms: u64,
    /// This welcome answers a `resume`: the same member as before, and `members` is the
    /// room as it is now (presence changes while away are not replayed; relays and call
    /// messages are, after this welcome).
    #[serde(default)]
    pub resumed: bool,
    /// How the room's media flows now; `room_media` says when that changes.
    #[serde(default, skip_serializing_if = "RoomMedia::is_mesh")]
    pub media: RoomMedia,
    /// You joined to watch: send nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub viewer: bool,
    /// The room is a broadcast.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
}

/// How a room's media flows: a mesh of peer connections between members, or every
/// member publishing to and subscribing from one Janus VideoRoom.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum RoomMedia {
    #[default]
    Mesh,
    Sfu {
        /// Janus's WebSocket URL, as members reach it (`janus-protocol` subprotocol).
        url: String,
        /// The VideoRoom's number.
        room: u64,
        /// The VideoRoom's `pin`: needed to join it, so only this room's members can.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin: Option<String>,
        /// Janus's `apisecret`, when Janus is configured with one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_secret: Option<String>,
    },
}

impl RoomMedia {
    pub fn is_mesh(&self) -> bool {
        matches!(self, Self::Mesh)
    }
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Welcome),
    PeerJoined {
        member: Member,
    },
    PeerLeft {
        id: String,
        reason: LeaveReason,
    },
    Relay {
        from: String,
        payload: serde_json::Value,
    },
    MediaState {
        id: String,
        state: MediaState,
    },
    /// To the caller: the invite reached the callee, who is being rung.
    CallRinging {
        call_id: String,
        to: String,
    },
    /// To the callee.
    CallIncoming {
        call_id: String,
        from: String,
        from_name: String,
        metadata: String,
    },
    /// To both: the call is on; both may now join the private `room`.
    CallAccepted {
        call_id: String,
        room: String,
        peer: String,
    },
    CallEnded {
        call_id: String,
        reason: CallEndReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
        /// More rooms follow: ask again with `after` set to the last name here.
        #[serde(default)]
        more: bool,
    },
    Left {
        room: String,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<serde_json::Value>,
    },
    /// To every member: the room's media moved (mesh -> sfu as it grew, or back to mesh
    /// when the SFU failed). Members tear down the old connections and set up the new.
    RoomMedia {
        media: RoomMedia,
    },
    /// The answer to `test_call`: join `room` with `password`; the echo peer there sends
    /// back what it receives, and leaves when you do.
    TestCall {
        room: String,
        password: String,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// The `type` of the request this answers, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys.
        serde_json::to_string(self).expect("ServerMessage serialises")
    }
}

/// Stable error codes; the wire form is the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadMessage,
    UnknownType,
    BinaryUnsupported,
    TooLarge,
    RateLimited,
    NotJoined,
    AlreadyJoined,
    InvalidName,
    InvalidRoom,
    InvalidCapacity,
    WrongPassword,
    RoomNotLocked,
    TooManyAttempts,
    RoomFull,
    PrivateRoom,
    ServerFull,
    TooManyRooms,
    UnknownPeer,
    SelfTarget,
    UnknownCall,
    Busy,
    NotCallee,
    NotCaller,
    InvalidMetadata,
    ResumeFailed,
    EchoUnavailable,
    /// The room's SFU could not be opened, or went away mid-call.
    SfuUnavailable,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        Self::BadJson,
        Self::BadMessage,
        Self::UnknownType,
        Self::BinaryUnsupported,
        Self::TooLarge,
        Self::RateLimited,
        Self::NotJoined,
        Self::AlreadyJoined,
        Self::InvalidName,
        Self::InvalidRoom,
        Self::InvalidCapacity,
        Self::WrongPassword,
        Self::RoomNotLocked,
        Self::TooManyAttempts,
        Self::RoomFull,
        Self::PrivateRoom,
        Self::ServerFull,
        Self::TooManyRooms,
        Self::UnknownPeer,
        Self::SelfTarget,
        Self::UnknownCall,
        Self::Busy,
        Self::NotCallee,
        Self::NotCaller,
        Self::InvalidMetadata,
        Self::ResumeFailed,
        Self::EchoUnavailable,
        Self::SfuUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadMessage => "bad_message",
            Self::UnknownType => "unknown_type",
            Self::BinaryUnsupported => "binary_unsupported",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::InvalidName => "invalid_name",
            Self::InvalidRoom => "invalid_room",
            Self::InvalidCapacity => "invalid_capacity",
            Self::WrongPassword => "wrong_password",
            Self::RoomNotLocked => "room_not_locked",
            Self::TooManyAttempts => "too_many_attempts",
            Self::RoomFull => "room_full",
            Self::PrivateRoom => "private_room",
            Self::ServerFull => "server_full",
            Self::TooManyRooms => "too_many_rooms",
            Self::UnknownPeer => "unknown_peer",
            Self::SelfTarget => "self_target",
            Self::UnknownCall => "unknown_call",
            Self::Busy => "busy",
            Self::NotCallee => "not_callee",
            Self::NotCaller => "not_caller",
            Self::InvalidMetadata => "invalid_metadata",
            Self::ResumeFailed => "resume_failed",
            Self::EchoUnavailable => "echo_unavailable",
            Self::SfuUnavailable => "sfu_unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the server refuses, as it is reported to the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolViolation {
    pub code: ErrorCode,
    pub message: String,
    pub request: Option<String>,
}

impl ProtocolViolation {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            request: None,
        }
    }

    fn bad(message: &str, request: Option<String>) -> Self {
        Self {
            code: ErrorCode::BadMessage,
            message: message.to_string(),
            request,
        }
    }

    /// The error frame for the client. Its message is cut to [`MAX_ERROR_CHARS`]: it may
    /// quote what the client sent, and an answer must never be larger than the question.
    pub fn into_message(self) -> ServerMessage {
        let mut message = self.message;
        if let Some((cut, _)) = message.char_indices().nth(MAX_ERROR_CHARS) {
            message.truncate(cut);
            message.push('…');
        }
        ServerMessage::Error {
            code: self.code,
            message,
            request: self.request,
        }
    }
}

/// Checks a display name: trimmed, 1..=64 characters, no control characters.
pub fn validate_name(name: &str) -> Result<String, ProtocolViolation> {
    let name = validate_label(name, MAX_NAME_CHARS, ErrorCode::InvalidName, "name")?;
    // Clients mark their own entry this way; a member called "Ann (you)" would pass
    // for everyone's own self.
    if name.to_lowercase().contains("(you)") {
        return Err(ProtocolViolation::new(
            ErrorCode::InvalidName,
            "\"(you)\" is how clients mark yourself; pick another name",
        ));
    }
    Ok(name)
}

/// Checks a room name with the same rules as a display name.
pub fn validate_room(room: &str) -> Result<String, ProtocolViolation> {
    validate_label(room, MAX_ROOM_CHARS, ErrorCode::InvalidRoom, "room")
}

/// Characters that make a name display as something else: bidirectional overrides,
/// embeddings, isolates and marks (a name shown reversed, reversing the chat after it),
/// and zero-width spaces and joiners' invisible kin. Joiners themselves (U+200C, U+200D)
/// stay: emoji sequences and some scripts need them.
fn hides_or_turns_text(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

fn validate_label(
    raw: &str,
    max: usize,
    code: ErrorCode,
    what: &str,
) -> Result<String, ProtocolViolation> {
    // One spelling per name: "é" composed or not must not be two people.
    let normalized: String = raw.trim().nfc().collect();
    let s = normalized.as_str();
    if s.is_empty() {
        return Err(ProtocolViolation::new(code, format!("{what} is empty")));
    }
    if s.chars().count() > max {
        return Err(ProtocolViolation::new(
            code,
            format!("{what} is longer than {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ProtocolViolation::new(
            code,
            format!("{what} contains control characters"),
        ));
    }
    if s.chars().any(hides_or_turns_text) {
        return Err(ProtocolViolation::new(
            code,
            format!("{what} contains invisible or direction-changing characters"),
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
