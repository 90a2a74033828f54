//! The desktop app's lobby and call view, driven through egui_kittest: each test
//! clicks like a person and asserts the command sent to the engine or what is drawn.

use std::sync::Arc;

use confab::call::{ConnectionState, Event};
use confab::signaling::protocol::MediaState;
use confab::ui::{App, Screen, Settings, UiCommand, UiEvent, VideoFrames, command_name};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use tokio::sync::mpsc::UnboundedReceiver;

struct Rig {
    commands: UnboundedReceiver<UiCommand>,
    events: std::sync::mpsc::Sender<UiEvent>,
}

fn app() -> (App, Rig) {
    let (cmd_tx, commands) = tokio::sync::mpsc::unbounded_channel();
    let (events, ev_rx) = std::sync::mpsc::channel();
    let settings = Settings {
        server: "ws://127.0.0.1:1/ws".into(),
        name: "Ada".into(),
        room: "team".into(),
        ..Settings::default()
    };
    let app = App::new(
        cmd_tx,
        ev_rx,
        Arc::new(VideoFrames::default()),
        settings,
        None,
    );
    (app, Rig { commands, events })
}

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size([1180.0, 700.0])
        .build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// The engine commands sent so far, by name.
fn sent(rig: &mut Rig) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(c) = rig.commands.try_recv() {
        out.push(match c {
            UiCommand::Engine(c) => command_name(&c),
            other => format!("{other:?}"),
        });
    }
    out
}

/// Puts the app into a call with Bob, who has a camera and a microphone.
fn in_call(rig: &Rig) {
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
    ev(Event::Joined {
        id: "me1".into(),
        room: "team".into(),
    });
    ev(Event::LocalMediaState(MediaState {
        has_camera: true,
        has_microphone: true,
        ..Default::default()
    }));
    ev(Event::PeerJoined {
        id: "bob1".into(),
        name: "Bob".into(),
        state: MediaState {
            has_camera: true,
            has_microphone: true,
            ..Default::default()
        },
    });
    ev(Event::Connection {
        id: "bob1".into(),
        state: ConnectionState::Connected,
    });
}

#[test]
fn joining_from_the_lobby_sends_the_form_to_the_engine() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    h.get_by_label("Join").click();
    // A spinner keeps repainting while joining: step rather than run to rest.
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(
        cmds[0].starts_with(
            "Join(JoinRequest { server: \"ws://127.0.0.1:1/ws\", room: \"team\", name: \"Ada\""
        ),
        "{cmds:?}"
    );
    assert_eq!(h.state().screen, Screen::Joining);
    // A refused join brings the lobby back with the reason shown.
    rig.events
        .send(UiEvent::JoinFailed("wrong_password: nope".into()))
        .unwrap();
    h.run();
    assert_eq!(h.state().screen, Screen::Lobby);
    h.get_by_label_contains("wrong_password");
}

#[test]
fn the_call_view_toggles_send_commands_and_draw_the_peer_state() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert_eq!(h.state().screen, Screen::Call);
    h.get_by_label("Mute").click();
    h.run();
    h.get_by_label("Stop camera").click();
    h.run();
    h.get_by_label("Hang up").click();
    h.run();
    assert_eq!(
        sent(&mut rig),
        ["SetAudioMuted(true)", "SetVideoMuted(true)", "Leave"]
    );

    // Bob mutes: his roster entry says so.
    rig.events
        .send(UiEvent::Engine(Event::PeerMediaState {
            id: "bob1".into(),
            state: MediaState {
                has_camera: true,
                has_microphone: true,
                audio_muted: true,
                ..Default::default()
            },
        }))
        .unwrap();
    h.run();
    h.get_by_label("Bob · muted");
}

#[test]
fn an_incoming_call_rings_and_accepting_answers_it() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    rig.events
        .send(UiEvent::Engine(Event::IncomingCall {
            call_id: "c9".into(),
            from: "bob1".into(),
            from_name: "Bob".into(),
            metadata: String::new(),
        }))
        .unwrap();
    h.run();
    h.get_by_label("Bob is calling");
    h.get_by_label("Accept").click();
    h.run();
    assert_eq!(sent(&mut rig), ["Accept(c9)"]);
    assert!(
        h.query_by_label("Bob is calling").is_none(),
        "the dialog closes"
    );

    // Ringing Bob from the roster.
    h.get_by_label("Call").click();
    h.run();
    assert_eq!(sent(&mut rig), ["Invite(bob1)"]);
}

#[test]
fn chat_counts_unread_messages_and_sends_what_is_typed() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    rig.events
        .send(UiEvent::Engine(Event::Chat {
            from: "bob1".into(),
            name: "Bob".into(),
            text: "hi".into(),
        }))
        .unwrap();
    h.run();
    h.get_by_label("Chat (1)").click();
    h.run();
    h.get_by_label("Bob: hi");
    h.state_mut().chat_draft = "hello Bob".into();
    h.run();
    let send = h.get_by_label("Send").rect();
    assert!(
        send.max.x <= 1180.0,
        "the Send button is inside the window: {send:?}"
    );
    h.get_by_label("Send").click();
    h.run();
    assert_eq!(sent(&mut rig), ["Chat(hello Bob)"]);
    h.get_by_label("Ada (you): hello Bob");
    assert!(
        h.query_by_label("Chat (1)").is_none(),
        "opening the chat clears the count"
    );
}

#[test]
fn keyboard_shortcuts_toggle_the_microphone_and_hang_up() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    h.key_press_modifiers(
        confab::ui::SHORTCUT_MIC.modifiers,
        confab::ui::SHORTCUT_MIC.logical_key,
    );
    h.run();
    h.key_press_modifiers(
        confab::ui::SHORTCUT_HANGUP.modifiers,
        confab::ui::SHORTCUT_HANGUP.logical_key,
    );
    h.run();
    assert_eq!(sent(&mut rig), ["SetAudioMuted(true)", "Leave"]);
}

#[test]
fn devices_found_on_the_machine_are_offered_beside_the_synthetic_ones() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    rig.events
        .send(UiEvent::Devices {
            cameras: vec![confab::ui::VideoChoice::Camera(0, "USB Cam".into())],
            microphones: vec![confab::ui::AudioChoice::Microphone(
                "pulse".into(),
                "Pulse mic".into(),
            )],
        })
        .unwrap();
    h.run();
    h.get_by_label("Camera").click();
    h.run();
    h.get_by_label("Test pattern (synthetic, not a camera)");
    h.get_by_label("USB Cam").click();
    h.run();
    assert_eq!(
        h.state().camera,
        confab::ui::VideoChoice::Camera(0, "USB Cam".into())
    );
    // Choosing a camera starts its preview; joining sends the choice and remembers it.
    assert_eq!(sent(&mut rig), ["Preview(Camera(0, \"USB Cam\"))"]);
    h.get_by_label("Join").click();
    h.run_steps(3);
    assert!(sent(&mut rig)[0].contains("camera: Camera(0, \"USB Cam\")"));
    assert_eq!(h.state().settings.camera, "camera:0");
}

#[test]
fn share_screen_asks_the_engine_side_to_capture_a_screen() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    h.get_by_label("Share screen").click();
    h.run();
    assert_eq!(sent(&mut rig), ["ShareScreen"]);
}
