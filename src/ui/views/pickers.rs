//! The device pickers (devices, synthetic sources and files) and the microphone meter,
//! shared by the pre-join screen and the call's Devices panel.

use eframe::egui::{self, Key};

use super::widgets::choice_combo;
use crate::ui::app::App;
use crate::ui::bridge::UiCommand;
use crate::ui::choices::{AudioChoice, SpeakerChoice, VideoChoice};
use crate::ui::model::Screen;
use crate::ui::prejoin::Field;
use crate::ui::sources::{audio_file_entry, video_file_entry};
use crate::ui::video::SELF_ID;

impl App {
    /// Microphone choices; "no microphone" only before joining (in a call, mute instead).
    pub(crate) fn microphone_picker(
        &mut self,
        ui: &mut egui::Ui,
        with_none: bool,
    ) -> egui::Response {
        let before = self.model.microphone.clone();
        let file = Some(before.clone()).filter(|m| matches!(m, AudioChoice::File(_)));
        let choices = with_none
            .then_some(AudioChoice::None)
            .into_iter()
            .chain([AudioChoice::TestTone])
            .chain(file)
            .chain(self.model.microphones.clone())
            .chain([audio_file_entry()]);
        let r = choice_combo(
            ui,
            ("microphone", with_none),
            None,
            &mut self.model.microphone,
            choices,
            AudioChoice::label,
        );
        if self.model.microphone == audio_file_entry() {
            self.model.ask_audio_file(before);
        }
        r
    }

    /// The path field "Audio file..." opens, under the microphone menu.
    pub(crate) fn audio_file_field(&mut self, ui: &mut egui::Ui) {
        if !self.model.files.audio.open {
            return;
        }
        let entry = &mut self.model.files.audio;
        let (use_it, cancel) = file_field(
            ui,
            "Audio file (WAV)",
            "Use audio file",
            "/path/to/clip.wav",
            &mut entry.path,
        );
        if use_it {
            self.model.use_audio_file();
        } else if cancel {
            self.model.files.audio.open = false;
            self.model.field_errors.clear(Field::Microphone);
        }
    }

    /// The path field "Video file..." opens, under the camera menu.
    pub(crate) fn video_file_field(&mut self, ui: &mut egui::Ui) {
        if !self.model.files.video.open {
            return;
        }
        let entry = &mut self.model.files.video;
        let (use_it, cancel) = file_field(
            ui,
            "Video file (y4m)",
            "Use video file",
            "/path/to/clip.y4m",
            &mut entry.path,
        );
        if use_it {
            self.model.use_video_file();
        } else if cancel {
            self.model.files.video.open = false;
            self.model.field_errors.clear(Field::Camera);
        }
    }

    pub(crate) fn camera_picker(&mut self, ui: &mut egui::Ui, with_none: bool) -> egui::Response {
        let before = self.model.camera.clone();
        let file = Some(before.clone()).filter(|c| matches!(c, VideoChoice::File(_)));
        let choices = with_none
            .then_some(VideoChoice::None)
            .into_iter()
            .chain([VideoChoice::TestPattern])
            .chain(file)
            .chain(self.model.cameras.clone())
            .chain([video_file_entry()]);
        let r = choice_combo(
            ui,
            ("camera", with_none),
            Some(260.0),
            &mut self.model.camera,
            choices,
            VideoChoice::label,
        );
        // "Video file..." asks for the path; the source changes once it is given.
        if self.model.camera == video_file_entry() {
            self.model.ask_video_file(before);
        }
        r
    }

    pub(crate) fn speaker_picker(&mut self, ui: &mut egui::Ui) -> egui::Response {
        let before = self.model.speaker.clone();
        let choices = [SpeakerChoice::Default]
            .into_iter()
            .chain(self.model.speakers.clone());
        let r = choice_combo(
            ui,
            "speaker",
            None,
            &mut self.model.speaker,
            choices,
            SpeakerChoice::label,
        );
        if self.model.speaker != before {
            if self.model.screen == Screen::Call {
                self.model
                    .send(UiCommand::SwitchSpeaker(self.model.speaker.clone()));
            }
            self.model.save_settings();
        }
        r
    }

    /// The microphone's level from -60 to 0 dBFS.
    pub(crate) fn level_meter(&self, ui: &mut egui::Ui, width: f32) -> egui::Response {
        let level = self.media.sound.level(SELF_ID);
        let (fraction, text) = match level {
            Some(db) => (
                ((db + 60.0) / 60.0).clamp(0.0, 1.0),
                format!("{db:.0} dBFS"),
            ),
            None if self.model.microphone == AudioChoice::None => (0.0, "No microphone".into()),
            None => (0.0, "…".into()),
        };
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(width)
                .text(text),
        )
    }
}

/// A path field with "Use" and "Cancel"; returns which was pressed (Enter uses).
fn file_field(
    ui: &mut egui::Ui,
    label: &str,
    button: &str,
    hint: &str,
    path: &mut String,
) -> (bool, bool) {
    let (mut use_it, mut cancel) = (false, false);
    ui.horizontal(|ui| {
        let l = ui.label(label);
        let r = ui
            .add(
                egui::TextEdit::singleline(path)
                    .hint_text(hint)
                    .desired_width(200.0),
            )
            .labelled_by(l.id);
        let entered = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        use_it = ui.button(button).clicked() || entered;
        cancel = ui.button("Cancel").clicked();
    });
    (use_it, cancel)
}
