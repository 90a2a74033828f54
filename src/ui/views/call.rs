//! The call view: the top bar, the controls, the side panel and the incoming-call dialog.

use eframe::egui::{self, Color32, RichText};

use crate::call::Command;
use crate::signaling::protocol::is_echo_room;

use crate::ui::app::{App, SHORTCUT_CAMERA, SHORTCUT_HANGUP, SHORTCUT_MIC, SHORTCUT_SHARE};
use crate::ui::bridge::UiCommand;
use crate::ui::layout::LayoutMode;

impl App {
    pub(crate) fn call_view(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_MIC)) {
            self.model.toggle_mic();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_CAMERA)) {
            self.model.toggle_camera();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_SHARE)) {
            self.model.toggle_share();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_HANGUP)) {
            self.model.hang_up();
        }
        // Space held while muted talks; not while typing (chat) or on a focused button.
        let space = !ctx.egui_wants_keyboard_input()
            && ctx.memory(|m| m.focused().is_none())
            && ctx.input(|i| i.key_down(egui::Key::Space));
        self.model.push_to_talk(space);
        if self.model.layout.full_screen.is_some()
            && ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Escape))
        {
            self.model.layout.full_screen = None;
        }
        // A full-screen tile has the whole window; one whose owner left is forgotten.
        if let Some(full) = self.model.layout.full_screen.clone() {
            if self.call_tiles().contains(&full) {
                egui::CentralPanel::no_frame().show(ui, |ui| self.tiles(ui));
                self.notices(&ctx);
                self.incoming_dialog(&ctx);
                return;
            }
            self.model.layout.full_screen = None;
        }
        egui::Panel::top("call-top").show(ui, |ui| {
            ui.horizontal(|ui| {
                if is_echo_room(&self.model.call.room) {
                    ui.strong("Test call");
                    let rtt = self
                        .model
                        .test_call_round_trip_ms()
                        .map_or("measuring the round trip…".into(), |r| {
                            format!("round trip {r:.0} ms")
                        });
                    ui.label(format!(
                        "You see and hear yourself, sent to the server's echo and back: {rtt}"
                    ));
                } else {
                    ui.strong(&self.model.call.room);
                }
                if let Some(since) = self.model.call.since {
                    let s = since.elapsed().as_secs();
                    ui.label(format!("{:02}:{:02}", s / 60, s % 60));
                }
                if let Some(audience) = self.model.call.audience() {
                    ui.label(audience);
                }
                if self.model.call.via_sfu {
                    ui.label("via SFU").on_hover_text(
                        "Everyone's media goes through the server's SFU: one upload each, \
                         whatever the room's size",
                    );
                }
                if let Some(to) = &self.model.call.ringing_out {
                    let name = self
                        .model
                        .call
                        .peers
                        .get(to)
                        .map_or(to.as_str(), |p| p.name.as_str());
                    ui.label(format!("Ringing {name}…"));
                }
                if self.model.call.talking_held {
                    ui.label(RichText::new("Talking: let go of Space to mute").strong());
                }
                // Everyone sees that the call is recorded, and by whom.
                let recording = self.model.call.recording();
                if !recording.is_empty() {
                    let red = Color32::from_rgb(220, 40, 40);
                    // A red dot (the default fonts have no glyph for one), then the word.
                    let (dot, _) =
                        ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                    ui.painter().circle_filled(dot.center(), 5.0, red);
                    ui.label(RichText::new("Recording").color(red).strong())
                        .on_hover_text(format!("Recorded by {}", recording.join(", ")));
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    self.layout_controls(ui);
                });
            });
            self.error_banner(ui);
        });
        egui::Panel::bottom("call-controls").show(ui, |ui| {
            ui.horizontal(|ui| {
                let st = self.model.call.state;
                let mic = if st.audio_muted { "Unmute" } else { "Mute" };
                // Turned off before joining: the button opens the microphone.
                let can_open_mic = self.model.microphone_to_open().is_some();
                if ui
                    .add_enabled(
                        st.has_microphone || can_open_mic,
                        egui::Button::new(if st.has_microphone { mic } else { "Unmute" }),
                    )
                    .on_hover_text(format!(
                        "Microphone ({}); while muted, hold Space to talk",
                        ctx.format_shortcut(&SHORTCUT_MIC)
                    ))
                    .clicked()
                {
                    if st.has_microphone {
                        self.model.toggle_mic();
                    } else {
                        self.model.open_microphone_in_call();
                    }
                }
                let cam = if st.video_muted || !st.has_camera {
                    "Start camera"
                } else {
                    "Stop camera"
                };
                let can_open_camera = self.model.camera_to_open().is_some();
                if ui
                    .add_enabled(st.has_camera || can_open_camera, egui::Button::new(cam))
                    .on_hover_text(format!(
                        "Camera ({})",
                        ctx.format_shortcut(&SHORTCUT_CAMERA)
                    ))
                    .clicked()
                {
                    if st.has_camera {
                        self.model.toggle_camera();
                    } else {
                        self.model.open_camera_in_call();
                    }
                }
                let share_tip = format!("Screen ({})", ctx.format_shortcut(&SHORTCUT_SHARE));
                if st.screen_sharing {
                    if ui.button("Stop sharing").on_hover_text(share_tip).clicked() {
                        self.model.toggle_share();
                    }
                } else {
                    // The picker: which screen to share.
                    let mut pick = None;
                    ui.menu_button("Share screen", |ui| {
                        if self.model.screens.is_empty() {
                            ui.label("No screen found");
                        }
                        for s in &self.model.screens {
                            if ui.button(&s.name).clicked() {
                                pick = Some(s.index);
                            }
                        }
                        if ui.button("Look again").clicked() {
                            self.model.send(UiCommand::RefreshDevices);
                        }
                    })
                    .response
                    .on_hover_text(share_tip);
                    if let Some(i) = pick {
                        self.model.share_screen(i);
                    }
                }
                let (record, tip) = if st.recording {
                    let to = self.model.call.recording_to.as_deref().unwrap_or("a file");
                    ("Stop recording", format!("Recording to {to}"))
                } else {
                    (
                        "Record",
                        "Record the call (everyone's video and sound) into your videos folder; everyone sees that you record"
                            .to_string(),
                    )
                };
                if ui.button(record).on_hover_text(tip).clicked() {
                    self.model.toggle_recording();
                }
                let chat = match self.model.call.unread {
                    0 => "Chat".to_string(),
                    n => format!("Chat ({n})"),
                };
                if ui.selectable_label(self.model.chat_open, chat).clicked() {
                    self.model.chat_open = !self.model.chat_open;
                    self.model.call.unread = 0;
                }
                if ui
                    .selectable_label(self.model.stats_open, "Statistics")
                    .clicked()
                {
                    self.model.stats_open = !self.model.stats_open;
                }
                if ui
                    .selectable_label(self.model.devices_open, "Devices")
                    .clicked()
                {
                    self.model.devices_open = !self.model.devices_open;
                }
                if ui
                    .button(RichText::new("Hang up").color(Color32::from_rgb(220, 60, 60)))
                    .on_hover_text(format!(
                        "Hang up ({})",
                        ctx.format_shortcut(&SHORTCUT_HANGUP)
                    ))
                    .clicked()
                {
                    self.model.hang_up();
                }
            });
        });
        egui::Panel::right("call-side")
            .default_size(260.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.side_panel(ui));
            });
        egui::CentralPanel::default_margins().show(ui, |ui| self.tiles(ui));
        self.notices(&ctx);
        self.incoming_dialog(&ctx);
    }

    /// Grid or speaker view, and the self view shown or hidden.
    fn layout_controls(&mut self, ui: &mut egui::Ui) {
        // Right to left: the last added is leftmost.
        let mut hide = self.model.layout.hide_self;
        if ui.checkbox(&mut hide, "Hide self view").changed() {
            self.model.layout.hide_self = hide;
        }
        ui.separator();
        let mode = self.model.layout.mode;
        for (m, text, tip) in [
            (
                LayoutMode::Speaker,
                "Speaker view",
                "Whoever speaks large, the others in a strip",
            ),
            (LayoutMode::Grid, "Grid view", "Everyone the same size"),
        ] {
            if ui
                .selectable_label(mode == m, text)
                .on_hover_text(tip)
                .clicked()
            {
                self.model.set_layout_mode(m);
            }
        }
    }

    pub(crate) fn incoming_dialog(&mut self, ctx: &egui::Context) {
        let Some(inc) = self.model.call.incoming.clone() else {
            return;
        };
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("incoming-call")).show(ctx, |ui| {
            ui.heading(format!("{} is calling", inc.from_name));
            ui.horizontal(|ui| {
                if ui.button("Accept").clicked() {
                    answer = Some(true);
                }
                if ui.button("Decline").clicked() {
                    answer = Some(false);
                }
            });
        });
        match answer {
            Some(true) => self.model.engine(Command::Accept(inc.call_id)),
            Some(false) => self.model.engine(Command::Decline {
                call_id: inc.call_id,
                reason: Some("declined".into()),
            }),
            None => return,
        }
        self.model.set_incoming(None);
    }
}
