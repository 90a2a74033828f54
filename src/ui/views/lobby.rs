//! The pre-join screen: a large mirrored self-preview with the camera and microphone
//! toggles and level on it and the device menus under it; beside it the name, room and
//! password, who is in the room, and one Join button that Enter presses. The server and
//! network sharing are tucked under "Connection" (`connection.rs`).

use std::time::{Duration, Instant};

use eframe::egui::{self, Color32, Key, Rect, RichText, Sense, UiBuilder, Vec2};

use crate::call::TrackRole;

use super::widgets::{paint_placeholder, paint_video};
use crate::ui::app::App;
use crate::ui::choices::{AudioChoice, VideoChoice};
use crate::ui::model::Screen;
use crate::ui::prejoin::{Field, FieldErrors};
use crate::ui::video::SELF_ID;

const ERROR_RED: Color32 = Color32::from_rgb(220, 80, 60);

/// The error beside `field`, if there is one.
pub(super) fn field_error(ui: &mut egui::Ui, errors: &FieldErrors, field: Field) {
    if let Some(e) = errors.get(field) {
        ui.colored_label(ERROR_RED, e);
    }
}

impl App {
    pub(crate) fn lobby(&mut self, ui: &mut egui::Ui) {
        self.model.lobby_tick(Instant::now());
        // Wake up to refresh who is in the rooms even when nothing else moves.
        ui.ctx().request_repaint_after(Duration::from_secs(10));
        let mut text_fields = Vec::new();
        egui::CentralPanel::default_margins().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.heading("confab");
                self.error_banner(ui);
                ui.add_space(8.0);
                let preview_w = ((ui.available_width() - 32.0) * 0.6).clamp(240.0, 760.0);
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(preview_w);
                        self.self_preview(ui, preview_w);
                        ui.add_space(8.0);
                        self.lobby_devices(ui);
                    });
                    ui.add_space(32.0);
                    ui.vertical(|ui| {
                        text_fields = self.join_form(ui);
                    });
                });
            });
        });
        // Enter joins: from a text field or with nothing focused (a focused button or an
        // open menu takes Enter for itself).
        let ctx = ui.ctx().clone();
        let focus_ok = ctx
            .memory(|m| m.focused())
            .is_none_or(|f| text_fields.contains(&f));
        if self.model.can_join()
            && focus_ok
            && !egui::Popup::is_any_open(&ctx)
            && ctx.input(|i| i.key_pressed(Key::Enter))
        {
            self.model.join();
        }
    }

    /// The self-preview, mirrored, with the toggles and the level drawn on it.
    fn self_preview(&mut self, ui: &mut egui::Ui, width: f32) {
        let (rect, _) =
            ui.allocate_exact_size(Vec2::new(width, width * 9.0 / 16.0), Sense::hover());
        let camera = self.model.camera.clone();
        let preview = (SELF_ID.to_string(), TrackRole::Camera);
        match self
            .textures
            .get(&preview)
            .filter(|_| camera != VideoChoice::None)
        {
            // The synthetic pattern is not a view of the user: shown as it is sent.
            Some(tex) => {
                paint_video(ui, tex, rect, matches!(camera, VideoChoice::Camera(..)));
            }
            None => {
                let why = match camera {
                    VideoChoice::None => "Camera off",
                    VideoChoice::File(_) => "Opening the video file…",
                    _ => "Starting the camera…",
                };
                paint_placeholder(ui, rect, &self.model.settings.name, why);
            }
        }
        if matches!(camera, VideoChoice::TestPattern | VideoChoice::File(_)) {
            // Never let a synthetic or file source pass for the camera.
            ui.put(
                Rect::from_min_size(rect.min + Vec2::splat(8.0), Vec2::new(rect.width(), 20.0)),
                egui::Label::new(
                    RichText::new(camera.label())
                        .color(Color32::WHITE)
                        .background_color(Color32::from_black_alpha(160)),
                ),
            );
        }
        let bar = Rect::from_min_max(
            rect.left_bottom() + Vec2::new(12.0, -52.0),
            rect.right_bottom() + Vec2::new(-12.0, -8.0),
        );
        ui.scope_builder(UiBuilder::new().max_rect(bar), |ui| {
            ui.horizontal_centered(|ui| {
                let (mic_on, cam_on) = (
                    self.model.microphone != AudioChoice::None,
                    self.model.camera != VideoChoice::None,
                );
                let toggle = |on: bool, off_text: &str, on_text: &str| {
                    let (text, fill) = if on {
                        (off_text, Color32::from_black_alpha(170))
                    } else {
                        (on_text, Color32::from_rgb(190, 50, 50))
                    };
                    egui::Button::new(RichText::new(text).color(Color32::WHITE))
                        .fill(fill)
                        .min_size(Vec2::new(0.0, 32.0))
                };
                if ui
                    .add(toggle(mic_on, "Turn microphone off", "Turn microphone on"))
                    .clicked()
                {
                    self.model.toggle_preview_microphone();
                }
                if ui
                    .add(toggle(cam_on, "Turn camera off", "Turn camera on"))
                    .clicked()
                {
                    self.model.toggle_preview_camera();
                }
                ui.add_space(8.0);
                // The meter's own text (the level) is its accessible label.
                let w = (ui.available_width() - 8.0).clamp(60.0, 260.0);
                self.level_meter(ui, w);
            });
        });
    }

    /// The device menus under the preview.
    fn lobby_devices(&mut self, ui: &mut egui::Ui) {
        egui::Grid::new("prejoin-devices")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                let l = ui.label("Camera");
                ui.vertical(|ui| {
                    let before = self.model.camera.clone();
                    self.camera_picker(ui, true).labelled_by(l.id);
                    if self.model.camera != before {
                        let c = self.model.camera.clone();
                        self.model.preview_camera(c);
                    }
                    self.video_file_field(ui);
                    field_error(ui, &self.model.field_errors, Field::Camera);
                });
                ui.end_row();
                let l = ui.label("Microphone");
                ui.vertical(|ui| {
                    let before = self.model.microphone.clone();
                    self.microphone_picker(ui, true).labelled_by(l.id);
                    if self.model.microphone != before {
                        let m = self.model.microphone.clone();
                        self.model.preview_microphone(m);
                    }
                    self.audio_file_field(ui);
                    field_error(ui, &self.model.field_errors, Field::Microphone);
                });
                ui.end_row();
                let l = ui.label("Speaker");
                self.speaker_picker(ui).labelled_by(l.id);
                ui.end_row();
            });
        let mut aec = self.model.settings.echo_cancellation;
        if ui
            .checkbox(&mut aec, "Echo cancellation and noise suppression")
            .changed()
        {
            self.model.set_echo_cancellation(aec);
        }
    }

    /// Name, room, password, who is there, Join, the rooms, the connection; returns the
    /// text fields' ids.
    fn join_form(&mut self, ui: &mut egui::Ui) -> Vec<egui::Id> {
        let mut ids = Vec::new();
        ui.heading("Ready to join?");
        ui.add_space(8.0);
        let errors = self.model.field_errors.clone();
        egui::Grid::new("prejoin-form")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                let fields = [
                    (Field::Name, "Name"),
                    (Field::Room, "Room"),
                    (Field::Password, "Password"),
                ];
                for (field, label) in fields {
                    let l = ui.label(label);
                    ui.vertical(|ui| {
                        let m = &mut self.model;
                        let edit = match field {
                            Field::Name => egui::TextEdit::singleline(&mut m.settings.name),
                            Field::Room => egui::TextEdit::singleline(&mut m.settings.room),
                            _ => egui::TextEdit::singleline(&mut m.password)
                                .password(true)
                                .hint_text("optional"),
                        };
                        let r = ui.add(edit.desired_width(240.0)).labelled_by(l.id);
                        if r.changed() {
                            self.model.field_errors.clear(field);
                        }
                        ids.push(r.id);
                        if field == Field::Room
                            && let Some(who) = self.model.room_presence()
                        {
                            ui.weak(who);
                        }
                        field_error(ui, &errors, field);
                    });
                    ui.end_row();
                }
            });
        ui.add_space(12.0);
        ui.horizontal(|ui| {
            let join = egui::Button::new(
                RichText::new("Join")
                    .size(20.0)
                    .strong()
                    .color(Color32::WHITE),
            )
            .fill(Color32::from_rgb(40, 120, 220))
            .min_size(Vec2::new(180.0, 44.0));
            if ui
                .add_enabled(self.model.can_join(), join)
                .on_hover_text("Enter")
                .clicked()
            {
                self.model.join();
            }
            if ui
                .add_enabled(self.model.can_join(), egui::Button::new("Watch"))
                .on_hover_text("Join only to watch and listen: no camera or microphone opens")
                .clicked()
            {
                self.model.watch();
            }
            if ui
                .add_enabled(self.model.can_join(), egui::Button::new("Broadcast"))
                .on_hover_text(
                    "Start the room as a broadcast: you present, whoever joins later watches",
                )
                .clicked()
            {
                self.model.start_broadcast();
            }
            if ui
                .add_enabled(self.model.can_test_call(), egui::Button::new("Test call"))
                .on_hover_text(
                    "See and hear yourself through the server and back, before a real call",
                )
                .clicked()
            {
                self.model.test_call();
            }
            if self.model.screen == Screen::Joining {
                ui.spinner();
                ui.label("Joining…");
            }
        });
        ui.add_space(12.0);
        self.room_list(ui);
        ui.add_space(8.0);
        ids.extend(self.connection_section(ui));
        self.quality_section(ui);
        self.check_section(ui);
        ids
    }

    /// The rooms on the server: a click picks one.
    fn room_list(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Rooms on the server");
            if ui.small_button("Refresh").clicked() {
                self.model.refresh_rooms();
            }
        });
        if self.model.rooms_known && self.model.rooms.is_empty() {
            ui.weak("None yet: yours will be the first");
        }
        let mut pick = None;
        for r in &self.model.rooms {
            let cap = r.capacity.map(|c| format!("/{c}")).unwrap_or_default();
            let kind = if r.broadcast { ", broadcast" } else { "" };
            if ui
                .link(format!("{} ({}{cap}{kind})", r.name, r.members))
                .clicked()
            {
                pick = Some(r.name.clone());
            }
        }
        if let Some(room) = pick {
            self.model.settings.room = room;
            self.model.field_errors.clear(Field::Room);
        }
    }
}
