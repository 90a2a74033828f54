//! The tiles: a shared screen large, then one tile per person with video or initials.

use eframe::egui::{self, Align2, Color32, FontId, Rect, Stroke, Vec2, pos2};

use crate::call::TrackRole;
use crate::signaling::protocol::MediaState;

use super::widgets::{marks, paint_fitted, paint_placeholder};
use crate::ui::app::App;
use crate::ui::video::SELF_ID;

/// Above this level (dBFS) a member counts as speaking.
const SPEAKING_DBFS: f32 = -40.0;

impl App {
    pub(crate) fn tiles(&mut self, ui: &mut egui::Ui) {
        let area = ui.available_rect_before_wrap();
        // A shared screen goes large on top; the people share what is left.
        let sharer = self
            .model
            .call
            .peers
            .iter()
            .find(|(id, p)| {
                p.sharing_track
                    && self
                        .textures
                        .contains_key(&((*id).clone(), TrackRole::Screen))
            })
            .map(|(id, _)| id.clone());
        let people_area = match &sharer {
            Some(id) => {
                let split = area.top() + area.height() * 0.7;
                let big = Rect::from_min_max(area.min, pos2(area.right(), split));
                if let Some(tex) = self.textures.get(&(id.clone(), TrackRole::Screen)) {
                    paint_fitted(ui, tex, big.shrink(4.0));
                }
                Rect::from_min_max(pos2(area.left(), split), area.max)
            }
            None => area,
        };
        let mut tiles: Vec<(String, String, MediaState, bool)> = self
            .model
            .call
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), p.name.clone(), p.state, p.reconnecting))
            .collect();
        tiles.push((
            SELF_ID.to_string(),
            self.model.call.my_name.clone(),
            self.model.call.state,
            false,
        ));
        let n = tiles.len();
        let cols = (n as f32).sqrt().ceil() as usize;
        let rows = n.div_ceil(cols);
        let size = Vec2::new(
            people_area.width() / cols as f32,
            people_area.height() / rows as f32,
        );
        for (i, (id, name, state, reconnecting)) in tiles.into_iter().enumerate() {
            let min =
                people_area.min + Vec2::new((i % cols) as f32 * size.x, (i / cols) as f32 * size.y);
            let rect = Rect::from_min_size(min, size).shrink(4.0);
            let key = (id.clone(), TrackRole::Camera);
            let video = self
                .textures
                .get(&key)
                .filter(|_| state.has_camera && !state.video_muted);
            match video {
                Some(tex) => {
                    let drawn = paint_fitted(ui, tex, rect);
                    if id != SELF_ID && self.last_layout.get(&id) != Some(&drawn) {
                        let ppp = ui.ctx().pixels_per_point();
                        tracing::debug!(
                            target: "confab::ui::layout",
                            peer = %id, x = drawn.min.x * ppp, y = drawn.min.y * ppp,
                            w = drawn.width() * ppp, h = drawn.height() * ppp,
                            "remote tile"
                        );
                        self.last_layout.insert(id.clone(), drawn);
                    }
                }
                None => {
                    let why = if !state.has_camera {
                        "No camera"
                    } else {
                        "Camera off"
                    };
                    paint_placeholder(ui, rect, &name, why);
                }
            }
            let speaking = id != SELF_ID
                && self
                    .media
                    .sound
                    .level(&id)
                    .is_some_and(|l| l > SPEAKING_DBFS)
                && !state.audio_muted;
            if speaking {
                ui.painter().rect_stroke(
                    rect,
                    6.0,
                    Stroke::new(3.0, Color32::from_rgb(60, 200, 90)),
                    egui::StrokeKind::Inside,
                );
            }
            if reconnecting {
                // Over the frozen picture: the call is not over, it is finding a new path.
                ui.painter()
                    .rect_filled(rect, 6.0, Color32::from_black_alpha(140));
                // A label, not painted text: screen readers (and tests) see it.
                ui.put(
                    Rect::from_center_size(rect.center(), Vec2::new(rect.width(), 32.0)),
                    egui::Label::new(
                        egui::RichText::new("Reconnecting…")
                            .size(20.0)
                            .color(Color32::WHITE),
                    ),
                );
            }
            let you = if id == SELF_ID { " (you)" } else { "" };
            ui.painter().text(
                rect.left_bottom() + Vec2::new(8.0, -8.0),
                Align2::LEFT_BOTTOM,
                format!("{name}{you}{}", marks(&state)),
                FontId::proportional(14.0),
                Color32::WHITE,
            );
        }
    }
}
