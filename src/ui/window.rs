//! The window as the user left it (size, place, maximised, the call's layout) and its
//! light or dark look: chosen, or the system's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use eframe::egui::{self, Theme, ThemePreference};
use serde::{Deserialize, Serialize};

use super::layout::LayoutMode;

/// Smaller than this is a window someone shrank by accident (or a bad file).
const MIN_SIZE: [f32; 2] = [640.0, 400.0];
const DEFAULT_SIZE: [f32; 2] = [1180.0, 700.0];
/// How often the system's preference is read again (it has no event we can hear).
const THEME_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThemeChoice {
    #[default]
    System,
    Light,
    Dark,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowState {
    /// Inner size and outer position in points, as last seen windowed.
    pub size: Option<[f32; 2]>,
    pub position: Option<[f32; 2]>,
    pub maximized: bool,
    pub layout: LayoutMode,
    pub hide_self: bool,
    pub theme: ThemeChoice,
}

impl WindowState {
    /// The size to open with: the remembered one within sane bounds, else the default.
    pub fn open_size(&self) -> [f32; 2] {
        match self.size {
            Some([w, h]) if w.is_finite() && h.is_finite() => [
                w.clamp(MIN_SIZE[0], 16_384.0),
                h.clamp(MIN_SIZE[1], 16_384.0),
            ],
            _ => DEFAULT_SIZE,
        }
    }

    /// The place to open at, unless it is far off any plausible screen (then the system
    /// places the window).
    pub fn open_position(&self) -> Option<[f32; 2]> {
        self.position.filter(|p| {
            p.iter()
                .all(|c| c.is_finite() && (-200.0..16_384.0).contains(c))
        })
    }

    /// Records what the viewport reports; nothing while full screen or minimised (the
    /// windowed geometry is what to come back to).
    pub fn observe(&mut self, v: &egui::ViewportInfo) {
        if v.fullscreen == Some(true) || v.minimized == Some(true) {
            return;
        }
        if let Some(m) = v.maximized {
            self.maximized = m;
        }
        if self.maximized {
            return;
        }
        if let Some(r) = v.inner_rect {
            self.size = Some([r.width(), r.height()]);
        }
        if let Some(r) = v.outer_rect {
            self.position = Some([r.left(), r.top()]);
        }
    }

    pub fn theme_preference(&self) -> ThemePreference {
        match self.theme {
            ThemeChoice::System => ThemePreference::System,
            ThemeChoice::Light => ThemePreference::Light,
            ThemeChoice::Dark => ThemePreference::Dark,
        }
    }
}

/// The desktop's light/dark preference from `gsettings get org.gnome.desktop.interface
/// color-scheme` (what the XDG portal reports on GNOME and most others), else from a GTK
/// theme name ("Adwaita-dark", `GTK_THEME=Adwaita:dark`).
pub fn parse_color_scheme(color_scheme: Option<&str>, gtk_theme: Option<&str>) -> Option<Theme> {
    let scheme = color_scheme.map(|s| s.trim().trim_matches('\'').to_ascii_lowercase());
    match scheme.as_deref() {
        Some("prefer-dark") => return Some(Theme::Dark),
        Some("prefer-light") => return Some(Theme::Light),
        _ => {}
    }
    let gtk = gtk_theme?.trim().trim_matches('\'').to_ascii_lowercase();
    if gtk.is_empty() {
        return None;
    }
    Some(if gtk.ends_with("dark") {
        Theme::Dark
    } else {
        Theme::Light
    })
}

/// Reads the desktop's preference now (blocking: runs a command).
fn read_system_theme() -> Option<Theme> {
    let get = |key: &str| {
        let out = std::process::Command::new("gsettings")
            .args(["get", "org.gnome.desktop.interface", key])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let env = std::env::var("GTK_THEME").ok();
    parse_color_scheme(
        get("color-scheme").as_deref(),
        env.or_else(|| get("gtk-theme")).as_deref(),
    )
}

/// What the desktop prefers, as a thread keeps finding out: 0 unknown, 1 light, 2 dark.
#[derive(Clone, Default)]
pub struct SystemTheme(Arc<AtomicU8>);

impl SystemTheme {
    /// Starts the thread that reads the preference now and then, waking the UI on a change.
    pub fn watch(ctx: egui::Context) -> SystemTheme {
        let theme = SystemTheme::default();
        let seen = theme.0.clone();
        let spawned = std::thread::Builder::new()
            .name("system-theme".into())
            .spawn(move || {
                loop {
                    let now = match read_system_theme() {
                        None => 0,
                        Some(Theme::Light) => 1,
                        Some(Theme::Dark) => 2,
                    };
                    if seen.swap(now, Ordering::Relaxed) != now {
                        ctx.request_repaint();
                    }
                    std::thread::sleep(THEME_POLL);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("not following the system theme: {e}");
        }
        theme
    }

    pub fn get(&self) -> Option<Theme> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Theme::Light),
            2 => Some(Theme::Dark),
            _ => None,
        }
    }
}

/// Applies the chosen look: a choice, or the system's (what the windowing system says,
/// else what the desktop's settings say, else dark).
pub fn apply_theme(ctx: &egui::Context, state: &WindowState, system: Option<Theme>) {
    let pref = state.theme_preference();
    let fallback = system.unwrap_or(Theme::Dark);
    let (now_pref, now_fallback) = ctx.options(|o| (o.theme_preference, o.fallback_theme));
    if now_pref != pref || now_fallback != fallback {
        ctx.options_mut(|o| {
            o.theme_preference = pref;
            o.fallback_theme = fallback;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desktops_colour_scheme_wins_over_the_gtk_theme_name() {
        let p = parse_color_scheme;
        assert_eq!(
            p(Some("'prefer-dark'\n"), Some("Adwaita")),
            Some(Theme::Dark)
        );
        assert_eq!(
            p(Some("'prefer-light'"), Some("Adwaita-dark")),
            Some(Theme::Light)
        );
        assert_eq!(
            p(Some("'default'"), Some("'Adwaita-dark'")),
            Some(Theme::Dark)
        );
        assert_eq!(p(None, Some("Adwaita:dark")), Some(Theme::Dark));
        assert_eq!(p(Some("'default'"), Some("'Yaru'")), Some(Theme::Light));
        assert_eq!(p(None, None), None);
        assert_eq!(p(Some("'default'"), Some("")), None);
    }

    #[test]
    fn the_window_reopens_where_it_was_within_sane_bounds() {
        let mut w = WindowState::default();
        assert_eq!((w.open_size(), w.open_position()), (DEFAULT_SIZE, None));
        let mut v = egui::ViewportInfo {
            inner_rect: Some(egui::Rect::from_min_size(
                egui::pos2(110.0, 130.0),
                egui::vec2(900.0, 600.0),
            )),
            outer_rect: Some(egui::Rect::from_min_size(
                egui::pos2(100.0, 100.0),
                egui::vec2(910.0, 630.0),
            )),
            maximized: Some(false),
            ..Default::default()
        };
        w.observe(&v);
        assert_eq!(w.open_size(), [900.0, 600.0]);
        assert_eq!(w.open_position(), Some([100.0, 100.0]));
        // Full screen is not the size to come back to.
        v.fullscreen = Some(true);
        v.inner_rect = Some(egui::Rect::from_min_size(
            egui::pos2(0.0, 0.0),
            egui::vec2(1920.0, 1080.0),
        ));
        w.observe(&v);
        assert_eq!(w.open_size(), [900.0, 600.0]);
        // A tiny or far-off window from a bad file is not reproduced.
        w.size = Some([10.0, 10.0]);
        w.position = Some([1e9, 5.0]);
        assert_eq!(w.open_size(), MIN_SIZE);
        assert_eq!(w.open_position(), None);
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;
    use crate::ui::settings::Settings;

    #[test]
    fn the_window_and_layout_survive_a_restart_and_old_files_get_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        let s = Settings {
            window: WindowState {
                size: Some([900.0, 640.0]),
                position: Some([40.0, 60.0]),
                maximized: false,
                layout: LayoutMode::Speaker,
                hide_self: true,
                theme: ThemeChoice::Light,
            },
            ..Settings::default()
        };
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), s);
        // A file from before these settings: the rest of it still counts.
        std::fs::write(&path, "name = \"Ada\"\n").unwrap();
        let old = Settings::load(&path);
        assert_eq!(old.name, "Ada");
        assert_eq!(old.window, WindowState::default());
        assert_eq!(old.window.theme, ThemeChoice::System);
    }
}
