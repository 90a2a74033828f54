//! Mid-call device choices: each change swaps the source behind the same track.

use eframe::egui::{self};

use super::lobby::field_error;
use crate::ui::app::App;
use crate::ui::bridge::UiCommand;
use crate::ui::prejoin::Field;
use crate::ui::window::ThemeChoice;

impl App {
    /// Mid-call device choices: each change swaps the source behind the same track.
    pub(crate) fn devices_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.strong("Devices");
            if ui.small_button("Refresh").clicked() {
                self.model.send(UiCommand::RefreshDevices);
            }
        });
        egui::Grid::new("call-devices")
            .num_columns(2)
            .spacing([8.0, 6.0])
            .show(ui, |ui| {
                let l = ui.label("Camera");
                let before = self.model.camera.clone();
                self.camera_picker(ui, false).labelled_by(l.id);
                if self.model.camera != before {
                    self.model
                        .send(UiCommand::SwitchCamera(self.model.camera.clone()));
                    self.model.save_settings();
                }
                ui.end_row();
                let l = ui.label("Microphone");
                let before = self.model.microphone.clone();
                self.microphone_picker(ui, false).labelled_by(l.id);
                if self.model.microphone != before {
                    self.model
                        .send(UiCommand::SwitchMicrophone(self.model.microphone.clone()));
                    self.model.save_settings();
                }
                ui.end_row();
                let l = ui.label("Speaker");
                self.speaker_picker(ui).labelled_by(l.id);
                ui.end_row();
            });
        self.video_file_field(ui);
        field_error(ui, &self.model.field_errors, Field::Camera);
        self.audio_file_field(ui);
        field_error(ui, &self.model.field_errors, Field::Microphone);
        let mut aec = self.model.settings.echo_cancellation;
        if ui
            .checkbox(&mut aec, "Echo cancellation and noise suppression")
            .changed()
        {
            self.model.set_echo_cancellation(aec);
        }
        let mut sounds = self.model.settings.join_sounds;
        if ui
            .checkbox(&mut sounds, "Sound when someone joins or leaves")
            .changed()
        {
            self.model.settings.join_sounds = sounds;
            self.model.save_settings();
        }
        ui.horizontal(|ui| {
            ui.label("Look");
            let mut theme = self.model.settings.window.theme;
            for (choice, label) in [
                (ThemeChoice::System, "Like the system"),
                (ThemeChoice::Light, "Light"),
                (ThemeChoice::Dark, "Dark"),
            ] {
                ui.selectable_value(&mut theme, choice, label);
            }
            if theme != self.model.settings.window.theme {
                self.model.settings.window.theme = theme;
                self.model.save_settings();
            }
        });
    }
}
