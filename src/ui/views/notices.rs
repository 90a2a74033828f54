//! What floats over the call: "You are muted" while the microphone hears speech, and
//! the short join/leave toasts.

use std::time::Instant;

use eframe::egui::{self, Align2, Color32, RichText, Vec2};

use crate::ui::app::{App, SHORTCUT_MIC};

/// Above the controls bar.
const MUTED_OFFSET: Vec2 = Vec2::new(0.0, -64.0);
/// Above the controls bar, left of the side panel's scroll bar.
const TOASTS_OFFSET: Vec2 = Vec2::new(-24.0, -56.0);

impl App {
    pub(crate) fn notices(&mut self, ctx: &egui::Context) {
        self.muted_notice(ctx);
        self.toasts(ctx);
    }

    /// Join and leave toasts, stacked in the bottom-right corner above the controls.
    fn toasts(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        let live: Vec<String> = self.model.toasts.live(now).map(str::to_owned).collect();
        if live.is_empty() {
            return;
        }
        egui::Area::new(egui::Id::unique("toasts"))
            .anchor(Align2::RIGHT_BOTTOM, TOASTS_OFFSET)
            .order(egui::Order::Foreground)
            .interactable(false)
            .show(ctx, |ui| {
                for text in live {
                    egui::Frame::popup(ui.style()).show(ui, |ui| ui.label(text));
                }
            });
        if let Some(next) = self.model.toasts.next_expiry(now) {
            ctx.request_repaint_after(next);
        }
    }

    /// Shown while the engine hears speech into the muted microphone (not while Space
    /// talks: then the microphone is open).
    fn muted_notice(&mut self, ctx: &egui::Context) {
        let call = &self.model.call;
        if !(call.speaking_while_muted && call.state.audio_muted && !call.talking_held) {
            return;
        }
        let mut unmute = false;
        egui::Area::new(egui::Id::unique("muted-notice"))
            .anchor(Align2::CENTER_BOTTOM, MUTED_OFFSET)
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style())
                    .fill(Color32::from_rgb(150, 40, 40))
                    .show(ui, |ui| {
                        ui.horizontal(|ui| {
                            ui.label(
                                RichText::new("You are muted")
                                    .strong()
                                    .size(18.0)
                                    .color(Color32::WHITE),
                            );
                            unmute = ui.button("Unmute microphone").clicked();
                            ui.label(
                                RichText::new(format!(
                                    "or hold Space to talk ({} unmutes)",
                                    ctx.format_shortcut(&SHORTCUT_MIC)
                                ))
                                .color(Color32::WHITE),
                            );
                        });
                    });
            });
        if unmute {
            self.model.toggle_mic();
        }
    }
}
