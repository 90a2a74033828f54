//! What the user does in a call, shared by buttons and shortcuts: each turns into a
//! command for the engine or the engine thread.

use crate::call::Command;
use crate::signaling::protocol::{is_echo_room, is_private_room};

use super::bridge::UiCommand;
use super::model::{ChatLine, Model, Screen};

impl Model {
    pub fn toggle_mic(&mut self) {
        self.engine(Command::SetAudioMuted(!self.call.state.audio_muted));
    }

    /// Push-to-talk: while muted, holding the key unmutes until it is let go.
    pub fn push_to_talk(&mut self, held: bool) {
        let st = self.call.state;
        if held && !self.call.talking_held && st.audio_muted && st.has_microphone {
            self.call.talking_held = true;
            self.engine(Command::SetAudioMuted(false));
        } else if !held && self.call.talking_held {
            self.call.talking_held = false;
            self.engine(Command::SetAudioMuted(true));
        }
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

    /// See and hear yourself through the server's echo peer before a real call.
    pub fn test_call(&mut self) {
        self.enter(true);
    }

    /// Into the room only to watch: no camera or microphone opens, nothing is sent.
    pub fn watch(&mut self) {
        self.join_role = super::bridge::JoinRole::Watch;
        self.enter(false);
    }

    /// Creates the room as a broadcast: we present, whoever joins later watches.
    pub fn start_broadcast(&mut self) {
        self.join_role = super::bridge::JoinRole::Broadcast;
        self.enter(false);
    }

    /// The test call needs a name (the echo's roster shows it), not a room.
    pub fn can_test_call(&self) -> bool {
        !self.settings.name.trim().is_empty() && self.screen == Screen::Lobby
    }

    /// Our round trip to the echo in a test call, from the last statistics.
    pub fn test_call_round_trip_ms(&self) -> Option<f64> {
        if !is_echo_room(&self.call.room) {
            return None;
        }
        self.call
            .stats
            .values()
            .find_map(|h| h.back().and_then(|s| s.rtt_ms))
    }

    /// Starts recording the call into the videos folder, or stops.
    pub fn toggle_recording(&mut self) {
        if self.call.state.recording {
            self.engine(Command::StopRecording);
            return;
        }
        let name = crate::record::file_name(&self.call.room, crate::media::now_us());
        self.engine(Command::StartRecording {
            path: recordings_dir().join(name),
            settings: crate::record::RecordSettings::default(),
        });
    }

    pub fn hang_up(&mut self) {
        if is_private_room(&self.call.room) {
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
            from: format!("{} (you)", self.call.my_name),
            text: text.clone(),
        });
        self.chat_draft.clear();
        self.engine(Command::Chat(text));
    }
}

/// Where recordings go: the user's videos folder, else the home folder, else here.
fn recordings_dir() -> std::path::PathBuf {
    let user = directories::UserDirs::new();
    user.as_ref()
        .and_then(|u| u.video_dir().map(|d| d.to_path_buf()))
        .filter(|d| d.is_dir())
        .or_else(|| user.as_ref().map(|u| u.home_dir().to_path_buf()))
        .unwrap_or_else(|| ".".into())
}
