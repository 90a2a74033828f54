//! Settings remembered between runs: TOML in the XDG config directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::quality::Quality;

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
    /// A short sound when someone joins or leaves.
    pub join_sounds: bool,
    /// Where the window was and how the call was laid out.
    pub window: super::window::WindowState,
    pub quality: Quality,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: String::new(),
            name: default_name(),
            room: "lobby".into(),
            camera: String::new(),
            microphone: String::new(),
            speaker: String::new(),
            echo_cancellation: true,
            noise_suppression: true,
            relay_only: false,
            join_sounds: true,
            window: Default::default(),
            quality: Quality::default(),
        }
    }
}

/// The name others see until the user types one: the OS user's full name, else the login.
pub fn default_name() -> String {
    let login = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    name_from_passwd(passwd.as_deref(), login.as_deref())
}

/// The full name in `login`'s passwd entry (the GECOS field's first part, `&` standing
/// for the capitalised login, as finger reads it), else the login, else "me".
pub fn name_from_passwd(passwd: Option<&str>, login: Option<&str>) -> String {
    let login = login.map(str::trim).filter(|l| !l.is_empty());
    let Some(login) = login else {
        return "me".into();
    };
    let full = passwd.and_then(|text| {
        let entry = text
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 5 && f[0] == login)?;
        let gecos = entry[4].split(',').next().unwrap_or_default();
        let mut cap = login.chars();
        let capitalised: String = cap
            .next()
            .map(|c| c.to_uppercase().chain(cap).collect())
            .unwrap_or_default();
        let name = gecos.replace('&', &capitalised).trim().to_string();
        (!name.is_empty()).then_some(name)
    });
    full.unwrap_or_else(|| login.to_string())
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

    use crate::ui::quality::{CameraMode, Resolution, ScreenPreference};

    #[test]
    fn the_default_name_is_the_full_name_from_passwd_else_the_login() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      ada:x:1000:1000:Ada Lovelace,,,:/home/ada:/bin/bash\n\
                      bob:x:1001:1001::/home/bob:/bin/sh\n\
                      carl:x:1002:1002:& Sagan,Room 4:/home/carl:/bin/sh\n";
        let name = |login| name_from_passwd(Some(passwd), login);
        assert_eq!(name(Some("ada")), "Ada Lovelace");
        assert_eq!(name(Some("carl")), "Carl Sagan", "& is the login");
        assert_eq!(name(Some("bob")), "bob", "no full name: the login");
        assert_eq!(name(Some("eve")), "eve", "not in passwd (LDAP): the login");
        assert_eq!(name_from_passwd(None, Some("ada")), "ada");
        assert_eq!(name(None), "me");
        assert_eq!(name(Some(" ")), "me");
    }

    #[test]
    fn settings_round_trip_through_toml_and_bad_files_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/settings.toml");
        assert_eq!(Settings::load(&path), Settings::default());
        let s = Settings {
            server: "ws://10.0.0.2:8787/ws".into(),
            name: "Ada".into(),
            echo_cancellation: false,
            camera: "file:/clips/talk.y4m".into(),
            quality: Quality {
                max_video_kbps: 600,
                camera: CameraMode {
                    resolution: Resolution::P360,
                    fps: 15,
                },
                screen: ScreenPreference::Motion,
            },
            ..Settings::default()
        };
        assert_ne!(s.quality, Quality::default());
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), s);
        // A file from before the quality settings keeps its defaults.
        std::fs::write(&path, "name = \"Bob\"\n").unwrap();
        assert_eq!(Settings::load(&path).quality, Quality::default());
        std::fs::write(&path, "name = [1, 2").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
    }
}
