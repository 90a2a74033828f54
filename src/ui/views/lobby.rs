//! The lobby: server, name, room, devices with a self-preview, and the room list.

use eframe::egui::{self, Sense, Vec2};

use crate::call::TrackRole;

use super::widgets::{choice_combo, guest_link, paint_fitted, paint_placeholder};
use crate::ui::app::App;
use crate::ui::bridge::UiCommand;
use crate::ui::choices::{AudioChoice, SpeakerChoice, VideoChoice};
use crate::ui::model::Screen;
use crate::ui::video::SELF_ID;

impl App {
    pub(crate) fn lobby(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default_margins().show(ui, |ui| {
            ui.heading("confab");
            self.error_banner(ui);
            ui.add_space(8.0);
            egui::Grid::new("lobby-form")
                .num_columns(2)
                .spacing([12.0, 8.0])
                .show(ui, |ui| {
                    let l = ui.label("Server");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.model.settings.server)
                            .hint_text("empty: built-in server"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    if self.model.settings.server.trim().is_empty() {
                        ui.label("");
                        match self.model.embedded.clone() {
                            Some(e) => {
                                ui.vertical(|ui| {
                                    let mut open = e.lan_open;
                                    if ui
                                        .checkbox(&mut open, "Let others on my network join")
                                        .changed()
                                    {
                                        self.model.share_on_lan(open);
                                    }
                                    if e.lan_open {
                                        ui.label(format!(
                                            "Built-in server: others on your network join with \
                                             {}, or from a browser: {}",
                                            e.lan_url,
                                            guest_link(&e.lan_url, &self.model.settings.room)
                                        ))
                                        .on_hover_text(
                                            "Browsers on other machines send camera and \
                                             microphone only over HTTPS: for that, run \
                                             `confab serve --tls-listen` with a certificate and \
                                             use it as the server.",
                                        );
                                    } else {
                                        ui.label("Built-in server: only this computer can join.");
                                    }
                                });
                            }
                            None => {
                                ui.label("Built-in server starting…");
                            }
                        };
                        ui.end_row();
                    }
                    let l = ui.label("Name");
                    ui.text_edit_singleline(&mut self.model.settings.name)
                        .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Room");
                    ui.text_edit_singleline(&mut self.model.settings.room)
                        .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Password");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.model.password)
                            .password(true)
                            .hint_text("optional"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Camera");
                    let before = self.model.camera.clone();
                    self.camera_picker(ui, true).labelled_by(l.id);
                    if self.model.camera != before {
                        self.model
                            .send(UiCommand::Preview(self.model.camera.clone()));
                    }
                    ui.end_row();
                    let l = ui.label("Microphone");
                    let before = self.model.microphone.clone();
                    self.microphone_picker(ui, true).labelled_by(l.id);
                    if self.model.microphone != before {
                        self.model
                            .send(UiCommand::PreviewMicrophone(self.model.microphone.clone()));
                    }
                    ui.end_row();
                    // The meter's own text (the level) is its accessible label.
                    ui.label("Level");
                    self.level_meter(ui);
                    ui.end_row();
                    let l = ui.label("Speaker");
                    self.speaker_picker(ui).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Screen to share");
                    self.screen_picker(ui).labelled_by(l.id);
                    ui.end_row();
                    ui.label("");
                    let mut aec = self.model.settings.echo_cancellation;
                    if ui
                        .checkbox(&mut aec, "Echo cancellation and noise suppression")
                        .changed()
                    {
                        self.model.set_echo_cancellation(aec);
                    }
                    ui.end_row();
                    ui.label("");
                    ui.checkbox(
                        &mut self.model.settings.relay_only,
                        "Relay only (others never learn my address)",
                    )
                    .on_hover_text(
                        "Media goes through the server's TURN relay, as a browser's \
                         iceTransportPolicy \"relay\": private, a little more delay, and \
                         only with a server that offers a relay",
                    );
                    ui.end_row();
                });
            ui.add_space(8.0);
            let preview = (SELF_ID.to_string(), TrackRole::Camera);
            let (rect, _) = ui.allocate_exact_size(Vec2::new(320.0, 180.0), Sense::hover());
            match self
                .textures
                .get(&preview)
                .filter(|_| self.model.camera != VideoChoice::None)
            {
                Some(tex) => {
                    paint_fitted(ui, tex, rect);
                }
                None => paint_placeholder(ui, rect, &self.model.settings.name, "No camera"),
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                let ready = !self.model.settings.name.trim().is_empty()
                    && !self.model.settings.room.trim().is_empty()
                    && self.model.screen == Screen::Lobby;
                if ui.add_enabled(ready, egui::Button::new("Join")).clicked() {
                    self.model.join();
                }
                if self.model.screen == Screen::Joining {
                    ui.spinner();
                    ui.label("Joining…");
                }
            });
            ui.separator();
            ui.horizontal(|ui| {
                ui.label("Rooms on the server");
                if ui.button("Refresh").clicked() {
                    match self.model.server_url() {
                        Some(server) => self.model.send(UiCommand::RefreshRooms { server }),
                        None => self.model.error("no server yet".into()),
                    }
                }
            });
            let mut pick = None;
            for r in &self.model.rooms {
                let cap = r.capacity.map(|c| format!("/{c}")).unwrap_or_default();
                if ui
                    .link(format!("{} ({}{cap})", r.name, r.members))
                    .clicked()
                {
                    pick = Some(r.name.clone());
                }
            }
            if let Some(room) = pick {
                self.model.settings.room = room;
            }
        });
    }

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

    /// Which screen "Share screen" and its shortcut offer first.
    pub(crate) fn screen_picker(&mut self, ui: &mut egui::Ui) -> egui::Response {
        let selected = self
            .model
            .screens
            .iter()
            .find(|s| s.index == self.model.last_screen)
            .map_or_else(|| "No screen found".to_string(), |s| s.name.clone());
        egui::ComboBox::from_id_salt("screen")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                for s in &self.model.screens {
                    ui.selectable_value(&mut self.model.last_screen, s.index, &s.name);
                }
            })
            .response
    }

    /// The microphone's level from -60 to 0 dBFS.
    pub(crate) fn level_meter(&self, ui: &mut egui::Ui) -> egui::Response {
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
                .desired_width(260.0)
                .text(text),
        )
    }
}
