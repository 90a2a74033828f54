//! What a track is for: the camera, a shared screen or the microphone. Events, sinks and
//! the UI speak in roles; track ids (`<member>-camera`, `<member>-mic`,
//! `<member>-screen-<n>`) are a wire detail read in one place.

use serde::{Deserialize, Serialize};

use super::peer::MediaKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackRole {
    Camera,
    Screen,
    #[serde(rename = "mic")]
    Microphone,
}

impl TrackRole {
    /// The role's word in track ids, stream ids and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Screen => "screen",
            Self::Microphone => "mic",
        }
    }

    /// A remote track's role, from its ids: confab and its web client put "screen" in a
    /// share's ids; audio is the microphone; other video the camera.
    pub fn of_remote(track_id: &str, stream_id: &str, kind: MediaKind) -> Self {
        let screen = Self::Screen.as_str();
        match kind {
            MediaKind::Audio => Self::Microphone,
            MediaKind::Video if track_id.contains(screen) || stream_id.contains(screen) => {
                Self::Screen
            }
            MediaKind::Video => Self::Camera,
        }
    }
}

impl std::fmt::Display for TrackRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_roles_come_from_the_ids_and_the_kind() {
        let role = TrackRole::of_remote;
        assert_eq!(
            role("m1-camera", "camera", MediaKind::Video),
            TrackRole::Camera
        );
        assert_eq!(
            role("m1-screen-2", "screen", MediaKind::Video),
            TrackRole::Screen
        );
        // The web client names a share's stream, not its track.
        assert_eq!(
            role("{3f2a}", "screen-1", MediaKind::Video),
            TrackRole::Screen
        );
        assert_eq!(
            role("m1-mic", "camera", MediaKind::Audio),
            TrackRole::Microphone
        );
        assert_eq!(
            serde_json::to_string(&TrackRole::Microphone).unwrap(),
            "\"mic\""
        );
    }
}
