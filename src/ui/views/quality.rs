//! The pre-join screen's "Quality" section: the video bitrate ceiling, what the camera
//! sends, and what a shared screen favours. Each change is saved at once.

use eframe::egui;

use super::widgets::choice_combo;
use crate::ui::app::App;
use crate::ui::quality::{BITRATES_KBPS, FRAME_RATES, Resolution, ScreenPreference};

impl App {
    pub(crate) fn quality_section(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Quality").show(ui, |ui| {
            let before = self.model.settings.quality;
            let q = &mut self.model.settings.quality;
            egui::Grid::new("prejoin-quality")
                .num_columns(2)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    let l = ui.label("Maximum video bitrate");
                    choice_combo(
                        ui,
                        "quality-bitrate",
                        None,
                        &mut q.max_video_kbps,
                        BITRATES_KBPS,
                        |k| format!("{k} kbit/s"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Camera resolution");
                    choice_combo(
                        ui,
                        "quality-resolution",
                        None,
                        &mut q.camera.resolution,
                        Resolution::ALL,
                        |r| r.label(),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Camera frame rate");
                    choice_combo(
                        ui,
                        "quality-fps",
                        None,
                        &mut q.camera.fps,
                        FRAME_RATES,
                        |f| format!("{f} fps"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Screen share favours");
                    choice_combo(
                        ui,
                        "quality-screen",
                        None,
                        &mut q.screen,
                        ScreenPreference::ALL,
                        |p| p.label(),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                });
            ui.weak("The most the camera sends: a slow link still gets a smaller picture.");
            if self.model.settings.quality != before {
                self.model.save_settings();
            }
        });
    }
}
