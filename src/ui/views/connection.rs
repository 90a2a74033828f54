//! The pre-join screen's "Connection" section: which server, sharing the built-in one on
//! the local network, relay only. Tucked away: most people never change it.

use eframe::egui;

use super::lobby::field_error;
use super::widgets::guest_link;
use crate::ui::app::App;
use crate::ui::prejoin::Field;

impl App {
    /// Returns the server field's id (Enter there joins too).
    pub(crate) fn connection_section(&mut self, ui: &mut egui::Ui) -> Option<egui::Id> {
        // A new server error opens the section, so it is seen beside its field.
        let error = self
            .model
            .field_errors
            .get(Field::Server)
            .map(str::to_string);
        let open = (error.is_some() && error != self.shown_server_error).then_some(true);
        self.shown_server_error = error;
        let mut server_id = None;
        egui::CollapsingHeader::new("Connection")
            .open(open)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    let l = ui.label("Server");
                    let r = ui
                        .add(
                            egui::TextEdit::singleline(&mut self.model.settings.server)
                                .hint_text("empty: built-in server")
                                .desired_width(260.0),
                        )
                        .labelled_by(l.id);
                    if r.changed() {
                        self.model.server_changed();
                    }
                    server_id = Some(r.id);
                });
                field_error(ui, &self.model.field_errors, Field::Server);
                if self.model.settings.server.trim().is_empty() {
                    self.built_in_server(ui);
                }
                ui.checkbox(
                    &mut self.model.settings.relay_only,
                    "Relay only (others never learn my address)",
                )
                .on_hover_text(
                    "Media goes through the server's TURN relay, as a browser's \
                     iceTransportPolicy \"relay\": private, a little more delay, and \
                     only with a server that offers a relay",
                );
            });
        server_id
    }

    fn built_in_server(&mut self, ui: &mut egui::Ui) {
        let Some(e) = self.model.embedded.clone() else {
            ui.label("Built-in server starting…");
            return;
        };
        let mut open = e.lan_open;
        if ui
            .checkbox(&mut open, "Let others on my network join")
            .changed()
        {
            self.model.share_on_lan(open);
        }
        if e.lan_open {
            ui.label(format!(
                "Built-in server: others on your network join with {}, or from a browser: {}",
                e.lan_url,
                guest_link(&e.lan_url, &self.model.settings.room)
            ))
            .on_hover_text(
                "Browsers on other machines send camera and microphone only over HTTPS: \
                 for that, run `confab serve --tls-listen` with a certificate and use it as \
                 the server.",
            );
        } else {
            ui.label("Built-in server: only this computer can join.");
        }
    }
}
