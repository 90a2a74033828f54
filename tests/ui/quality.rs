//! The pre-join screen's Quality section: what is picked is joined with and kept in the
//! settings file.

use super::*;
use confab::ui::{CameraMode, Quality, Resolution, ScreenPreference};

fn pick(h: &mut Harness<'static, App>, menu: &str, choice: &str) {
    h.get_by_label(menu).click();
    h.run();
    h.get_by_label(choice).click();
    h.run();
}

#[test]
fn quality_picked_before_joining_is_joined_with_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    let (cmd_tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    let (_events, ev_rx) = std::sync::mpsc::channel::<UiEvent>();
    let settings = Settings {
        server: "ws://127.0.0.1:1/ws".into(),
        name: "Ada".into(),
        room: "team".into(),
        ..Settings::default()
    };
    let app = App::new(
        cmd_tx,
        ev_rx,
        Arc::new(UiSink::default()),
        settings,
        Some(path.clone()),
    );
    let mut h = harness(app);
    h.run();
    h.get_by_label("Quality").click();
    h.run();
    pick(&mut h, "Maximum video bitrate", "600 kbit/s");
    pick(&mut h, "Camera resolution", "360p (640x360)");
    pick(&mut h, "Camera frame rate", "15 fps");
    pick(
        &mut h,
        "Screen share favours",
        &ScreenPreference::Motion.label(),
    );
    let want = Quality {
        max_video_kbps: 600,
        camera: CameraMode {
            resolution: Resolution::P360,
            fps: 15,
        },
        screen: ScreenPreference::Motion,
    };
    // Saved as soon as it changes, before any join.
    assert_eq!(Settings::load(&path).quality, want);

    h.get_by_label("Join").click();
    h.run_steps(3);
    let mut join = None;
    while let Ok(c) = commands.try_recv() {
        if let UiCommand::Join(j) = c {
            join = Some(j);
        }
    }
    assert_eq!(join.expect("a join").quality, want);
}
