//! The device pickers and the microphone meter, shared by the pre-join screen and the
//! call's Devices panel.

use eframe::egui;

use super::widgets::choice_combo;
use crate::ui::app::App;
use crate::ui::bridge::UiCommand;
use crate::ui::choices::{AudioChoice, SpeakerChoice, VideoChoice};
use crate::ui::model::Screen;
use crate::ui::video::SELF_ID;

impl App {
    /// Microphone choices; "no microphone" only before joining (in a call, mute instead).
    pub(crate) fn microphone_picker(
        &mut self,
        ui: &mut egui::Ui,
        with_none: bool,
    ) -> egui::Response {
        let choices = with_none
            .then_some(AudioChoice::None)
            .into_iter()
            .chain([AudioChoice::TestTone])
            .chain(self.model.microphones.clone());
        choice_combo(
            ui,
            ("microphone", with_none),
            None,
            &mut self.model.microphone,
            choices,
            AudioChoice::label,
        )
    }

    pub(crate) fn camera_picker(&mut self, ui: &mut egui::Ui, with_none: bool) -> egui::Response {
        let choices = with_none
            .then_some(VideoChoice::None)
            .into_iter()
            .chain([VideoChoice::TestPattern])
            .chain(self.model.cameras.clone());
        choice_combo(
            ui,
            ("camera", with_none),
            Some(260.0),
            &mut self.model.camera,
            choices,
            VideoChoice::label,
        )
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
