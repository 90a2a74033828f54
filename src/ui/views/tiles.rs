//! The tiles, placed by the layout model (`ui/layout.rs`): a grid, or a stage (pinned, a
//! shared screen or the active speaker) with a strip; one tile full screen on a
//! double-click. Each tile is video or initials, with its name and marks.

use std::time::Instant;

use eframe::egui::{self, Align2, Color32, FontId, Rect, RichText, Sense, Stroke, Vec2, pos2};

use crate::call::TrackRole;
use crate::signaling::protocol::MediaState;

use super::widgets::{marks, paint_placeholder, paint_video};
use crate::ui::app::App;
use crate::ui::choices::VideoChoice;
use crate::ui::layout::{Area, Arrangement, LayoutMode, Placed, SPEAKING_DBFS, Slot};
use crate::ui::netquality::{MAX_BARS, net_quality};
use crate::ui::video::{SELF_ID, TileKey};

/// Room under the tiles for the page buttons, when there are pages.
const PAGER_H: f32 = 32.0;

fn to_area(r: Rect) -> Area {
    Area::new(r.left(), r.top(), r.width(), r.height())
}

fn to_rect(a: Area) -> Rect {
    Rect::from_min_size(pos2(a.x, a.y), Vec2::new(a.w, a.h))
}

impl App {
    /// The tiles there are now: people in room order, then shared screens with a picture.
    pub(crate) fn call_tiles(&self) -> Vec<TileKey> {
        self.model.call_tiles(|id| {
            self.textures
                .contains_key(&(id.to_string(), TrackRole::Screen))
        })
    }

    /// The active speaker follows the members' audio levels (muted ones count as silent).
    fn follow_speaker(&mut self, ctx: &egui::Context) {
        let levels: Vec<(String, Option<f32>)> = self
            .model
            .call
            .peers
            .iter()
            .map(|(id, p)| {
                let level = self.media.sound.level(id).filter(|_| !p.state.audio_muted);
                (id.clone(), level)
            })
            .collect();
        self.model.layout.speaker.update(&levels, Instant::now());
        if self.model.layout.mode == LayoutMode::Speaker {
            // Levels arrive without repaints: look again soon so the stage can follow.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    pub(crate) fn tiles(&mut self, ui: &mut egui::Ui) {
        self.follow_speaker(ui.ctx());
        let tiles = self.call_tiles();
        let full = ui.available_rect_before_wrap();
        let mut arrangement = self.model.layout.arrange(&tiles, to_area(full));
        if arrangement.pages > 1 {
            let mut area = full;
            area.max.y -= PAGER_H;
            arrangement = self.model.layout.arrange(&tiles, to_area(area));
            self.pager(ui, &arrangement, full);
        }
        if arrangement.tiles.is_empty() && self.model.layout.hide_self {
            ui.centered_and_justified(|ui| ui.weak("Your self view is hidden"));
        }
        for placed in &arrangement.tiles {
            self.tile(ui, placed);
        }
    }

    /// "Previous page", "Page n of m", "Next page" under the tiles.
    fn pager(&mut self, ui: &mut egui::Ui, a: &Arrangement, area: Rect) {
        let bar = Rect::from_min_max(pos2(area.left(), area.bottom() - PAGER_H), area.max);
        let mut turn = 0;
        ui.scope_builder(egui::UiBuilder::new().max_rect(bar), |ui| {
            ui.horizontal_centered(|ui| {
                if ui
                    .add_enabled(a.page > 0, egui::Button::new("Previous page"))
                    .clicked()
                {
                    turn = -1;
                }
                ui.label(format!("Page {} of {}", a.page + 1, a.pages));
                if ui
                    .add_enabled(a.page + 1 < a.pages, egui::Button::new("Next page"))
                    .clicked()
                {
                    turn = 1;
                }
            });
        });
        if turn != 0 {
            self.model.turn_page(a.page, a.pages, turn);
        }
    }

    /// Name, media state and whether the path is being found again, for a tile.
    fn tile_owner(&self, member: &str) -> Option<(String, MediaState, bool)> {
        if member == SELF_ID {
            let c = &self.model.call;
            return Some((c.my_name.clone(), c.state, false));
        }
        let p = self.model.call.peers.get(member)?;
        Some((p.name.clone(), p.state, p.reconnecting))
    }

    /// Through an SFU, the simulcast layer received follows the tile (`rect`, in points).
    fn report_tile(&mut self, member: &str, rect: Rect, ppp: f32) {
        let size = ((rect.width() * ppp) as u32, (rect.height() * ppp) as u32);
        if self.reported_tiles.get(member) == Some(&size) {
            return;
        }
        self.reported_tiles.insert(member.to_owned(), size);
        self.model.engine(crate::call::Command::ShowTile {
            peer: member.to_owned(),
            track: TrackRole::Camera,
            size: Some(size),
        });
    }

    fn tile(&mut self, ui: &mut egui::Ui, placed: &Placed) {
        let (member, role) = &placed.tile;
        let Some((name, state, reconnecting)) = self.tile_owner(member) else {
            return;
        };
        let rect = to_rect(placed.area);
        let is_self = member == SELF_ID;
        let screen = *role == TrackRole::Screen;
        let video = self
            .textures
            .get(&placed.tile)
            .filter(|_| screen || (state.has_camera && !state.video_muted));
        match video {
            Some(tex) => {
                // Our own camera as in a mirror; screens and the synthetic pattern as sent.
                let mirror =
                    is_self && !screen && matches!(self.model.camera, VideoChoice::Camera(..));
                let drawn = paint_video(ui, tex, rect, mirror);
                if !is_self && !screen && self.last_layout.get(member) != Some(&drawn) {
                    let ppp = ui.ctx().pixels_per_point();
                    tracing::debug!(
                        target: "confab::ui::layout",
                        peer = %member, x = drawn.min.x * ppp, y = drawn.min.y * ppp,
                        w = drawn.width() * ppp, h = drawn.height() * ppp,
                        "remote tile"
                    );
                    self.last_layout.insert(member.clone(), drawn);
                    self.report_tile(member, drawn, ppp);
                }
            }
            None => {
                if !is_self && !screen {
                    // Its first picture comes in the layer this tile needs.
                    let ppp = ui.ctx().pixels_per_point();
                    self.report_tile(member, rect, ppp);
                }
                let why = if !state.has_camera {
                    "No camera"
                } else {
                    "Camera off"
                };
                paint_placeholder(ui, rect, &name, why);
            }
        }
        let speaking = !is_self
            && !screen
            && !state.audio_muted
            && self
                .media
                .sound
                .level(member)
                .is_some_and(|l| l > SPEAKING_DBFS);
        if speaking {
            ui.painter().rect_stroke(
                rect,
                6.0,
                Stroke::new(3.0, Color32::from_rgb(60, 200, 90)),
                egui::StrokeKind::Inside,
            );
        }
        if reconnecting && !screen {
            // Over the frozen picture: the call is not over, it is finding a new path.
            ui.painter()
                .rect_filled(rect, 6.0, Color32::from_black_alpha(140));
            // A label, not painted text: screen readers (and tests) see it.
            ui.put(
                Rect::from_center_size(rect.center(), Vec2::new(rect.width(), 32.0)),
                egui::Label::new(
                    RichText::new("Reconnecting…")
                        .size(20.0)
                        .color(Color32::WHITE),
                ),
            );
        }
        let you = if is_self { " (you)" } else { "" };
        let caption = if screen {
            format!("{name}'s screen")
        } else {
            format!("{name}{you}{}", marks(&state))
        };
        let font = if placed.slot == Slot::Strip {
            12.0
        } else {
            14.0
        };
        ui.painter().text(
            rect.left_bottom() + Vec2::new(8.0, -8.0),
            Align2::LEFT_BOTTOM,
            caption,
            FontId::proportional(font),
            Color32::WHITE,
        );
        self.tile_actions(ui, placed, rect, &format!("{name}{you}"));
        if !is_self && !screen {
            self.net_bars(ui, member, &name, rect);
        }
    }

    /// Bars for the peer's network in the tile's top-left corner, the figures on hover.
    fn net_bars(&self, ui: &mut egui::Ui, member: &str, name: &str, tile: Rect) {
        let Some(q) = self.model.call.stats.get(member).and_then(net_quality) else {
            return;
        };
        let at = Rect::from_min_size(tile.min + Vec2::new(8.0, 8.0), Vec2::new(30.0, 20.0));
        let p = ui.painter();
        p.rect_filled(at.expand(3.0), 4.0, Color32::from_black_alpha(120));
        let on = match q.bars {
            4 | 3 => Color32::from_rgb(80, 200, 100),
            2 => Color32::from_rgb(230, 180, 50),
            _ => Color32::from_rgb(220, 70, 60),
        };
        let w = at.width() / f32::from(MAX_BARS);
        for i in 0..MAX_BARS {
            let h = at.height() * f32::from(i + 1) / f32::from(MAX_BARS);
            let bar = Rect::from_min_max(
                pos2(at.left() + w * f32::from(i) + 1.0, at.bottom() - h),
                pos2(at.left() + w * f32::from(i + 1) - 1.0, at.bottom()),
            );
            let fill = if i < q.bars {
                on
            } else {
                Color32::from_gray(90)
            };
            p.rect_filled(bar, 1.0, fill);
        }
        let id = ui.scope_id().with(("net", member));
        let response = ui.interact(at, id, Sense::hover());
        // Screen readers (and tests) read the verdict; the tooltip has the figures.
        let label = format!("Network of {name}: {} ({} of {MAX_BARS})", q.word(), q.bars);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
        response.on_hover_text(q.details());
    }

    /// Double-click for full screen; Pin and Full screen on hover, also in its menu.
    fn tile_actions(&mut self, ui: &mut egui::Ui, placed: &Placed, rect: Rect, who: &str) {
        let tile = &placed.tile;
        let id = ui.scope_id().with(("tile", &tile.0, tile.1));
        let response = ui.interact(rect, id, Sense::click());
        // Tests and screen readers find a tile by this.
        let label = match tile.1 {
            TrackRole::Screen => format!("Screen: {who}"),
            _ => format!("Video: {who}"),
        };
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Group, true, label.as_str()));
        let pinned = self.model.layout.pinned.as_ref() == Some(tile);
        let full = placed.slot == Slot::Full;
        let mut pin = false;
        let mut full_screen = response.double_clicked();
        response.context_menu(|ui| {
            if ui.button(if pinned { "Unpin" } else { "Pin" }).clicked() {
                pin = true;
                ui.close();
            }
            let text = if full {
                "Leave full screen"
            } else {
                "Full screen"
            };
            if ui.button(text).clicked() {
                full_screen = true;
                ui.close();
            }
        });
        let hovered = ui.rect_contains_pointer(rect);
        if hovered || pinned || full {
            let bar = Rect::from_min_max(
                pos2(rect.left() + 8.0, rect.top() + 6.0),
                pos2(rect.right() - 6.0, rect.top() + 34.0),
            );
            ui.scope_builder(egui::UiBuilder::new().max_rect(bar), |ui| {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if full {
                        full_screen |= ui
                            .button("Leave full screen")
                            .on_hover_text("Esc, or double-click")
                            .clicked();
                        return;
                    }
                    // Pin rightmost: it stays put while Full screen comes and goes.
                    if pinned {
                        pin |= ui.button("Unpin").clicked();
                    } else {
                        pin |= ui
                            .button("Pin")
                            .on_hover_text("Keep on the stage")
                            .clicked();
                    }
                    if hovered {
                        full_screen |= ui
                            .button("Full screen")
                            .on_hover_text("Or double-click the tile")
                            .clicked();
                    }
                });
            });
        }
        if pin {
            self.model.toggle_pin(tile);
        }
        if full_screen {
            self.model.toggle_full_screen(tile);
        }
    }
}
