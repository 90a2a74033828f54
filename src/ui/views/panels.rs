//! The side panels: roster, chat, statistics.

use eframe::egui::{self, Key, RichText};

use crate::call::{Command, PeerCallStats};
use crate::media::AUDIO_RATE;
use crate::signaling::protocol::{is_echo_room, is_private_room};

use super::widgets::marks;
use crate::ui::app::App;

impl App {
    pub(crate) fn side_panel(&mut self, ui: &mut egui::Ui) {
        self.roster(ui);
        if self.model.chat_open {
            ui.separator();
            self.chat_panel(ui);
        }
        if self.model.devices_open {
            ui.separator();
            self.devices_panel(ui);
        }
        if self.model.stats_open {
            ui.separator();
            self.stats_panel(ui);
        }
    }

    pub(crate) fn roster(&mut self, ui: &mut egui::Ui) {
        ui.strong(format!("In the room ({})", self.model.call.peers.len() + 1));
        let owner = self.model.call.owner().map(str::to_string);
        let owner_mark = |ui: &mut egui::Ui, id: &str| {
            if owner.as_deref() == Some(id) {
                ui.weak("owner")
                    .on_hover_text("In the room longest: the room is theirs");
            }
        };
        ui.horizontal(|ui| {
            ui.label(format!("{} (you)", self.model.call.my_name));
            owner_mark(ui, &self.model.call.me);
        });
        let mut invite = None;
        let room = &self.model.call.room;
        let private = is_private_room(room) || is_echo_room(room);
        for (id, p) in &self.model.call.peers {
            ui.horizontal(|ui| {
                ui.label(format!("{}{}", p.name, marks(&p.state)));
                owner_mark(ui, id);
                if !private
                    && ui
                        .small_button("Call")
                        .on_hover_text("Ring for a private call")
                        .clicked()
                {
                    invite = Some(id.clone());
                }
            });
        }
        if let Some(to) = invite {
            self.model.engine(Command::Invite {
                to,
                metadata: String::new(),
            });
        }
    }

    pub(crate) fn chat_panel(&mut self, ui: &mut egui::Ui) {
        ui.strong("Chat");
        egui::ScrollArea::vertical()
            .max_height(200.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for line in &self.model.call.chat {
                    ui.label(format!("{}: {}", line.from, line.text));
                }
            });
        ui.horizontal(|ui| {
            // Leave room for the button: the panel is narrow.
            let width = (ui.available_width() - 60.0).max(60.0);
            let r = ui
                .add(
                    egui::TextEdit::singleline(&mut self.model.chat_draft)
                        .hint_text("Message")
                        .desired_width(width),
                )
                .on_hover_text("Message");
            let enter = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            if ui.button("Send").clicked() || enter {
                self.model.send_chat();
            }
        });
    }

    pub(crate) fn stats_panel(&mut self, ui: &mut egui::Ui) {
        ui.strong("Statistics");
        for (id, history) in &self.model.call.stats {
            let Some(s) = history.back() else { continue };
            let name = self
                .model
                .call
                .peers
                .get(id)
                .map_or(id.as_str(), |p| p.name.as_str());
            ui.label(RichText::new(name).strong());
            ui.label(format!(
                "in {:.0} kbit/s {:.0} fps {}x{} | out {:.0} kbit/s {:.0} fps{}",
                s.video_in_kbps,
                s.video_in_fps,
                s.video_in_width,
                s.video_in_height,
                s.video_out_kbps,
                s.video_out_fps,
                if s.small_stream {
                    " (small stream: slow link)"
                } else {
                    ""
                }
            ));
            ui.label(format!(
                "freezes {} ({:.1} s) | NACKs {} | keyframe requests {} | FEC rebuilt {}",
                s.freezes, s.freeze_s, s.nack_sent, s.pli_sent, s.fec_recovered
            ))
            .on_hover_text("Freezes: pauses longer than 3 frame intervals (and 150 ms over the average) in the video received; NACKs and keyframe requests are what was asked of the sender; FEC rebuilt: packets of the received video rebuilt from repair packets, with no retransmission");
            ui.label(format!(
                "RTT {} | lost {} | glass-to-glass {} | video buffer {:.0} ms | link estimate {}",
                s.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
                s.packets_lost,
                s.glass_to_glass_ms
                    .map_or("-".into(), |g| format!("{g:.0} ms")),
                s.video_delay_ms,
                s.send_estimate_kbps
                    .map_or("-".into(), |k| format!("{k:.0} kbit/s")),
            ))
            .on_hover_text("Video buffer: how long pictures are held so that a path's jitter does not show as judder (0 on a steady link)");
            if let Some(a) = self.media.sound.playout(id) {
                let ms = |samples: u64| samples as f64 * 1000.0 / AUDIO_RATE as f64;
                ui.label(format!(
                    "audio buffer {:.0} ms (starts at {:.0}) | made up {:.0} ms | ran dry {} | stretched -{:.0}/+{:.0} ms | silent {:.1} s",
                    a.mean_delay_ms(),
                    ms(a.start_depth),
                    ms(a.concealed_samples + a.silent_samples),
                    a.underruns,
                    ms(a.removed_for_acceleration),
                    ms(a.inserted_for_deceleration),
                    ms(a.paused_samples) / 1000.0,
                ))
                .on_hover_text("The speaker's jitter buffer for this member: the audio it holds on average (the delay it adds), what it starts with (learnt from how unevenly packets arrive), audio it made up after running dry, delay it gave back or built up by time-stretching, and how long the member sent silence (DTX: next to nothing on the wire)");
            }
            if let Some(path) = &s.path {
                let restarts = match s.ice_restarts {
                    0 => String::new(),
                    n => format!(" | ICE restarts {n}"),
                };
                ui.label(format!("path {path}{restarts}"))
                    .on_hover_text("The candidate pair media travels on: host (direct), srflx/prflx (through a NAT), relay (through TURN); ICE restarts: how often the path was lost and found again");
            }
            let series = |f: fn(&PeerCallStats) -> f64| -> Vec<[f64; 2]> {
                history
                    .iter()
                    .enumerate()
                    .map(|(i, s)| [i as f64, f(s)])
                    .collect()
            };
            egui_plot::Plot::new(format!("plot-{id}"))
                .height(90.0)
                .show_axes([false, true])
                .legend(egui_plot::Legend::default())
                .show(ui, |p| {
                    p.line(egui_plot::Line::new(
                        "in kbit/s",
                        series(|s| s.video_in_kbps),
                    ));
                    p.line(egui_plot::Line::new(
                        "out kbit/s",
                        series(|s| s.video_out_kbps),
                    ));
                    p.line(egui_plot::Line::new(
                        "estimate kbit/s",
                        series(|s| s.send_estimate_kbps.unwrap_or(0.0)),
                    ));
                });
        }
    }
}
