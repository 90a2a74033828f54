//! The pre-join screen's "Check" section: `confab doctor`'s checks, one line per item
//! with its verdict, what was found and what to do.

use eframe::egui::{self, Color32, RichText};

use crate::doctor::Status;
use crate::ui::app::App;

impl App {
    pub(crate) fn check_section(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Check").show(ui, |ui| {
            ui.horizontal(|ui| {
                let running = self.model.checks.running;
                if ui
                    .add_enabled(!running, egui::Button::new("Run checks"))
                    .on_hover_text(
                        "Tries the display, cameras, microphones, speakers, screens and the \
                         encoder, then the server: as `confab doctor` does",
                    )
                    .clicked()
                {
                    self.model.run_checks();
                }
                if running {
                    ui.spinner();
                    ui.label("Checking… (devices are tried for a second each)");
                }
            });
            let Some(report) = &self.model.checks.report else {
                return;
            };
            egui::Grid::new("prejoin-checks")
                .num_columns(3)
                .spacing([10.0, 4.0])
                .show(ui, |ui| {
                    for c in &report.checks {
                        let (text, color) = match c.status {
                            Status::Ok => ("OK", Color32::from_rgb(60, 170, 90)),
                            Status::Warn => ("WARN", Color32::from_rgb(220, 160, 40)),
                            Status::Fail => ("FAIL", Color32::from_rgb(220, 80, 60)),
                        };
                        ui.label(RichText::new(text).strong().color(color));
                        ui.label(c.item);
                        ui.vertical(|ui| {
                            ui.label(&c.detail);
                            if let Some(a) = &c.advice {
                                ui.weak(format!("-> {a}"));
                            }
                        });
                        ui.end_row();
                    }
                });
            ui.label(if report.call_can_work() {
                "A call can work here."
            } else {
                "A call cannot work here until the FAIL lines are fixed."
            });
        });
    }
}
