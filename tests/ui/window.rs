//! The window as it was left: layout and self view from the settings, and its look.

use super::*;
use confab::ui::{LayoutMode, ThemeChoice, WindowState};
use eframe::egui::Theme;

fn app_with_window(window: WindowState) -> (App, Rig) {
    let (app, rig) = app();
    let settings = Settings {
        window,
        ..app.model.settings.clone()
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (events, ev_rx) = std::sync::mpsc::channel();
    drop(app);
    let app = App::new(tx, ev_rx, rig.media.clone(), settings, None);
    (
        app,
        Rig {
            commands: rx,
            events,
            ..rig
        },
    )
}

#[test]
fn the_remembered_layout_and_self_view_come_back_and_changes_are_kept() {
    let (app, rig) = app_with_window(WindowState {
        layout: LayoutMode::Speaker,
        hide_self: true,
        ..WindowState::default()
    });
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert_eq!(h.state().model.layout.mode, LayoutMode::Speaker);
    assert!(
        h.query_by_label("Video: Ada (you)").is_none(),
        "the self view stays hidden"
    );
    h.get_by_label("Grid view").click();
    h.run();
    h.get_by_label("Hide self view").click();
    h.run();
    let w = &h.state().model.settings.window;
    assert_eq!((w.layout, w.hide_self), (LayoutMode::Grid, false));
}

#[test]
fn the_look_is_the_chosen_one_or_the_systems() {
    let (app, _rig) = app_with_window(WindowState {
        theme: ThemeChoice::Light,
        ..WindowState::default()
    });
    let mut h = harness(app);
    h.run();
    assert_eq!(h.ctx.theme(), Theme::Light);
    h.state_mut().model.settings.window.theme = ThemeChoice::Dark;
    h.run();
    assert_eq!(h.ctx.theme(), Theme::Dark);
    h.state_mut().model.settings.window.theme = ThemeChoice::System;
    h.run();
    assert_eq!(
        h.ctx.options(|o| o.theme_preference),
        eframe::egui::ThemePreference::System
    );
}

#[test]
fn the_look_is_chosen_under_devices_and_remembered() {
    let (app, rig) = app_with_window(WindowState::default());
    let mut h = harness(app);
    in_call(&rig);
    h.run();
    h.get_by_label("Devices").click();
    h.run();
    h.get_by_label("Light").click();
    h.run();
    assert_eq!(h.state().model.settings.window.theme, ThemeChoice::Light);
    assert_eq!(h.ctx.theme(), Theme::Light);
    h.get_by_label("Dark").click();
    h.run();
    assert_eq!(h.ctx.theme(), Theme::Dark);
}
