//! Drawing helpers the views share.

use eframe::egui::{self, Align2, Color32, FontId, Rect, TextureHandle, Vec2, pos2};

use crate::signaling::protocol::MediaState;

/// The web client's address for a room, from the server's WebSocket URL.
pub fn guest_link(ws_url: &str, room: &str) -> String {
    let base = ws_url
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    let base = base.strip_suffix("/ws").unwrap_or(&base);
    let room: String = url::form_urlencoded::byte_serialize(room.trim().as_bytes()).collect();
    format!("{base}/?room={room}")
}

/// A drop-down of `choices` showing `label`s, setting `selected`.
pub(crate) fn choice_combo<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    id_salt: impl egui::AsIdSalt,
    width: Option<f32>,
    selected: &mut T,
    choices: impl IntoIterator<Item = T>,
    label: impl Fn(&T) -> String,
) -> egui::Response {
    let mut combo = egui::ComboBox::from_id_salt(id_salt).selected_text(label(selected));
    if let Some(w) = width {
        combo = combo.width(w);
    }
    combo
        .show_ui(ui, |ui| {
            for c in choices {
                let text = label(&c);
                ui.selectable_value(selected, c, text);
            }
        })
        .response
}

/// Mute, camera-off, sharing and recording marks after a name.
pub fn marks(s: &MediaState) -> String {
    let mut m = Vec::new();
    if !s.has_microphone {
        m.push("no mic");
    } else if s.audio_muted {
        m.push("muted");
    }
    if !s.has_camera {
        m.push("no camera");
    } else if s.video_muted {
        m.push("camera off");
    }
    if s.screen_sharing {
        m.push("sharing");
    }
    if s.recording {
        m.push("recording");
    }
    if m.is_empty() {
        String::new()
    } else {
        format!(" · {}", m.join(" · "))
    }
}

/// Draws a texture as large as fits in `rect`, keeping its aspect, mirrored left to right
/// when `mirror` (the self-view: people expect to see themselves as in a mirror); returns
/// where.
pub(crate) fn paint_video(ui: &egui::Ui, tex: &TextureHandle, rect: Rect, mirror: bool) -> Rect {
    let [w, h] = tex.size();
    let scale = (rect.width() / w as f32).min(rect.height() / h as f32);
    let size = Vec2::new(w as f32 * scale, h as f32 * scale);
    let drawn = Rect::from_center_size(rect.center(), size);
    ui.painter().rect_filled(rect, 6.0, Color32::BLACK);
    ui.painter().image(
        tex.id(),
        drawn,
        if mirror {
            Rect::from_min_max(pos2(1.0, 0.0), pos2(0.0, 1.0))
        } else {
            Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0))
        },
        Color32::WHITE,
    );
    drawn
}

/// A tile without video: initials and why.
pub(crate) fn paint_placeholder(ui: &egui::Ui, rect: Rect, name: &str, why: &str) {
    let p = ui.painter();
    p.rect_filled(rect, 6.0, Color32::from_gray(40));
    let initials: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase();
    p.circle_filled(rect.center(), 32.0, Color32::from_rgb(70, 90, 140));
    p.text(
        rect.center(),
        Align2::CENTER_CENTER,
        initials,
        FontId::proportional(26.0),
        Color32::WHITE,
    );
    p.text(
        rect.center() + Vec2::new(0.0, 48.0),
        Align2::CENTER_CENTER,
        why,
        FontId::proportional(13.0),
        Color32::LIGHT_GRAY,
    );
}
