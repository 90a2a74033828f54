//! Settings remembered between runs: TOML in the XDG config directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Empty: use the built-in server.
    pub server: String,
    pub name: String,
    pub room: String,
    pub camera: String,
    pub microphone: String,
    pub speaker: String,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    /// Media only through the server's TURN relays: peers never learn our addresses.
    pub relay_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: String::new(),
            name: std::env::var("USER").unwrap_or_else(|_| "me".into()),
            room: "lobby".into(),
            camera: String::new(),
            microphone: String::new(),
            speaker: String::new(),
            echo_cancellation: true,
            noise_suppression: true,
            relay_only: false,
        }
    }
}

impl Settings {
    /// `$XDG_CONFIG_HOME/confab/settings.toml` (or the platform's equivalent).
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "confab", "confab")
            .map(|d| d.config_dir().join("settings.toml"))
    }

    /// Missing or unreadable settings fall back to defaults (logged, not fatal).
    pub fn load(path: &Path) -> Settings {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!("ignoring {}: {e}", path.display());
                Settings::default()
            }),
            Err(_) => Settings::default(),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_toml_and_bad_files_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/settings.toml");
        assert_eq!(Settings::load(&path), Settings::default());
        let s = Settings {
            server: "ws://10.0.0.2:8787/ws".into(),
            name: "Ada".into(),
            echo_cancellation: false,
            ..Settings::default()
        };
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), s);
        std::fs::write(&path, "name = [1, 2").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
    }
}
