//! The desktop app's lobby and call view, driven through egui_kittest: each test
//! clicks like a person and asserts the command sent to the engine or what is drawn.

use std::sync::Arc;

use confab::call::{Command, ConnectionState, Event};
use confab::media::device::ScreenInfo;
use confab::signaling::protocol::MediaState;
use confab::ui::{
    App, AudioChoice, DeviceList, Screen, Settings, SpeakerChoice, UiCommand, UiEvent, UiSink,
    VideoChoice, command_name,
};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use tokio::sync::mpsc::UnboundedReceiver;

struct Rig {
    commands: UnboundedReceiver<UiCommand>,
    events: std::sync::mpsc::Sender<UiEvent>,
    media: Arc<UiSink>,
    rooms_asked: usize,
    /// The join (true) and leave chimes asked for.
    chimes: Vec<bool>,
    /// Tile sizes told to the engine, by `sent` (the layout's business, not a click's).
    tiles: Vec<String>,
}

fn app() -> (App, Rig) {
    app_with("ws://127.0.0.1:1/ws")
}

/// The app with `server` in its form (empty: the built-in server).
fn app_with(server: &str) -> (App, Rig) {
    let (cmd_tx, commands) = tokio::sync::mpsc::unbounded_channel();
    let (events, ev_rx) = std::sync::mpsc::channel();
    let settings = Settings {
        server: server.into(),
        name: "Ada".into(),
        room: "team".into(),
        ..Settings::default()
    };
    let media = Arc::new(UiSink::default());
    let app = App::new(cmd_tx, ev_rx, media.clone(), settings, None);
    (
        app,
        Rig {
            commands,
            events,
            media,
            rooms_asked: 0,
            chimes: Vec::new(),
            tiles: Vec::new(),
        },
    )
}

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size([1180.0, 700.0])
        .build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// The commands sent so far, by name; the pre-join screen's background room-list
/// requests, the join chimes and the tile sizes left out (`rooms_asked`, `chimes` and
/// `tiles` keep them).
fn sent(rig: &mut Rig) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(c) = rig.commands.try_recv() {
        if let UiCommand::RefreshRooms { .. } = c {
            rig.rooms_asked += 1;
            continue;
        }
        if let UiCommand::Chime { rising } = c {
            rig.chimes.push(rising);
            continue;
        }
        if let UiCommand::Engine(c @ Command::ShowTile { .. }) = c {
            rig.tiles.push(command_name(&c));
            continue;
        }
        out.push(match c {
            UiCommand::Engine(c) => command_name(&c),
            other => format!("{other:?}"),
        });
    }
    out
}

/// Puts the app into a call with Bob, who has a camera and a microphone.
/// Our own media state as the engine reports it: camera and microphone present, then `set`.
fn local_state(rig: &Rig, set: impl FnOnce(&mut MediaState)) {
    let mut st = MediaState {
        has_camera: true,
        has_microphone: true,
        ..Default::default()
    };
    set(&mut st);
    rig.events
        .send(UiEvent::Engine(Event::LocalMediaState(st)))
        .unwrap();
}

fn in_call(rig: &Rig) {
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
    ev(Event::Joined {
        id: "me1".into(),
        room: "team".into(),
        name: "Ada".into(),
        present: Vec::new(),
    });
    local_state(rig, |_| {});
    bob_joins(rig);
}

/// Bob (camera and microphone on) joins and his connection is up.
fn bob_joins(rig: &Rig) {
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
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
    assert_eq!(h.state().model.screen, Screen::Joining);
    // A refused join brings the lobby back with the reason beside the password.
    rig.events
        .send(UiEvent::JoinFailed(
            "signaling: the server refused: wrong_password: nope".into(),
        ))
        .unwrap();
    h.run();
    assert_eq!(h.state().model.screen, Screen::Lobby);
    let error = h.get_by_label("Wrong password (nope)").rect();
    assert_beside(&h, error, "Password", ["Room", "Name"]);
}

/// `error` is drawn just under the field labelled `field`, nearer to it than to `others`.
fn assert_beside<const N: usize>(
    h: &Harness<'static, App>,
    error: eframe::egui::Rect,
    field: &str,
    others: [&str; N],
) {
    let field_rect = h.get_by_label(field).rect();
    let gap = |r: eframe::egui::Rect| (error.top() - r.bottom()).abs();
    assert!(
        error.top() >= field_rect.bottom() - 1.0 && gap(field_rect) < 40.0,
        "{error:?} under {field} {field_rect:?}"
    );
    for o in others {
        let r = h.get_by_label(o).rect();
        assert!(gap(field_rect) < gap(r), "{field} is nearer than {o}");
    }
}

#[test]
fn relay_only_in_the_lobby_asks_the_engine_for_relayed_media() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    assert!(
        h.query_by_label_contains("Relay only").is_none(),
        "tucked under Connection"
    );
    h.get_by_label("Connection").click();
    h.run();
    h.get_by_label_contains("Relay only").click();
    h.run();
    h.get_by_label("Join").click();
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(cmds[0].contains("relay_only: true"), "{cmds:?}");
    assert!(h.state().model.settings.relay_only);
}

#[test]
fn a_tile_whose_media_path_is_gone_says_reconnecting_until_it_is_back() {
    let (app, rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Reconnecting…").is_none());
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
    ev(Event::PeerReconnecting {
        id: "bob1".into(),
        reconnecting: true,
    });
    h.run();
    h.get_by_label("Reconnecting…");
    ev(Event::PeerReconnecting {
        id: "bob1".into(),
        reconnecting: false,
    });
    h.run();
    assert!(h.query_by_label("Reconnecting…").is_none());
}

#[test]
fn the_call_view_toggles_send_commands_and_draw_the_peer_state() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert_eq!(h.state().model.screen, Screen::Call);
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
    assert_eq!(sent(&mut rig), ["Ring(true)"], "the ring sounds");
    h.get_by_label("Accept").click();
    h.run();
    assert_eq!(sent(&mut rig), ["Accept(c9)", "Ring(false)"]);
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
    h.state_mut().model.chat_draft = "hello Bob".into();
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

/// Muted (by the engine's account), then Space held for a while.
fn muted_and_holding_space(rig: &Rig, app: App) -> Harness<'static, App> {
    in_call(rig);
    local_state(rig, |s| s.audio_muted = true);
    let mut h = harness(app);
    h.run();
    h.key_down(eframe::egui::Key::Space);
    h.run();
    h.run();
    h
}

#[test]
fn holding_space_while_muted_talks_until_it_is_let_go() {
    let (app, mut rig) = app();
    let mut h = muted_and_holding_space(&rig, app);
    assert!(h.query_by_label_contains("let go of Space").is_some());
    h.key_up(eframe::egui::Key::Space);
    h.run();
    assert_eq!(
        sent(&mut rig),
        ["SetAudioMuted(false)", "SetAudioMuted(true)"]
    );
    assert!(h.query_by_label_contains("let go of Space").is_none());
}

#[test]
fn space_does_nothing_while_not_muted() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    h.key_down(eframe::egui::Key::Space);
    h.run();
    h.key_up(eframe::egui::Key::Space);
    h.run();
    assert!(sent(&mut rig).is_empty());
}

#[test]
fn devices_found_on_the_machine_are_offered_beside_the_synthetic_ones() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    rig.events
        .send(UiEvent::Devices(DeviceList {
            cameras: vec![VideoChoice::Camera(0, "USB Cam".into())],
            microphones: vec![AudioChoice::Microphone("pulse".into(), "Pulse mic".into())],
            ..DeviceList::default()
        }))
        .unwrap();
    h.run();
    h.get_by_label("Camera").click();
    h.run();
    h.get_by_label("Test pattern (synthetic, not a camera)");
    h.get_by_label("USB Cam").click();
    h.run();
    assert_eq!(
        h.state().model.camera,
        VideoChoice::Camera(0, "USB Cam".into())
    );
    // Choosing a camera starts its preview; joining sends the choice and remembers it.
    assert_eq!(sent(&mut rig), ["Preview(Camera(0, \"USB Cam\"))"]);
    h.get_by_label("Join").click();
    h.run_steps(3);
    assert!(sent(&mut rig)[0].contains("camera: Camera(0, \"USB Cam\")"));
    assert_eq!(h.state().model.settings.camera, "camera:0");
}

#[test]
fn share_screen_offers_a_picker_of_the_screens_found() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    h.get_by_label("Share screen").click();
    h.run();
    h.get_by_label("No screen found");
    let screen = |index, w, h| ScreenInfo {
        index,
        name: format!("Screen {} ({w}x{h})", index + 1),
        width: w,
        height: h,
    };
    rig.events
        .send(UiEvent::Devices(DeviceList {
            screens: vec![screen(0, 1280, 720), screen(1, 1920, 1080)],
            ..DeviceList::default()
        }))
        .unwrap();
    h.run();
    h.get_by_label("Screen 2 (1920x1080)").click();
    h.run();
    assert_eq!(sent(&mut rig), ["ShareScreen(1)"]);
    // The shortcut shares the screen picked last.
    local_state(&rig, |s| s.screen_sharing = true);
    h.run();
    h.get_by_label("Stop sharing").click();
    h.run();
    assert_eq!(sent(&mut rig), ["StopScreenShare"]);
}

#[test]
fn devices_switch_mid_call_and_echo_cancellation_toggles() {
    let (app, mut rig) = app();
    in_call(&rig);
    rig.events
        .send(UiEvent::Devices(DeviceList {
            cameras: vec![VideoChoice::Camera(1, "USB Cam".into())],
            microphones: vec![AudioChoice::Microphone("pulse".into(), "Pulse mic".into())],
            speakers: vec![SpeakerChoice::Device("hdmi".into(), "HDMI out".into())],
            ..DeviceList::default()
        }))
        .unwrap();
    let mut h = harness(app);
    h.run();
    h.get_by_label("Devices").click();
    h.run();
    for (picker, choice) in [
        ("Camera", "USB Cam"),
        ("Microphone", "Pulse mic"),
        ("Speaker", "HDMI out"),
    ] {
        h.get_by_label(picker).click();
        h.run();
        h.get_by_label(choice).click();
        h.run();
    }
    h.get_by_label("Echo cancellation and noise suppression")
        .click();
    h.run();
    assert_eq!(
        sent(&mut rig),
        [
            "SwitchCamera(Camera(1, \"USB Cam\"))",
            "SwitchMicrophone(Microphone(\"pulse\", \"Pulse mic\"))",
            "SwitchSpeaker(Device(\"hdmi\", \"HDMI out\"))",
            "SetEchoCancellation(false)",
        ]
    );
    let s = &h.state().model.settings;
    assert_eq!(
        (
            s.camera.as_str(),
            s.microphone.as_str(),
            s.speaker.as_str(),
            s.echo_cancellation
        ),
        ("camera:1", "mic:pulse", "speaker:hdmi", false),
        "the choices are remembered"
    );
}

#[test]
fn the_lobby_meters_the_chosen_microphone() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    h.get_by_label("No microphone");
    h.get_by_label("Microphone").click();
    h.run();
    h.get_by_label("Test tone (synthetic, not a microphone)")
        .click();
    h.run();
    assert_eq!(sent(&mut rig), ["PreviewMicrophone(TestTone)"]);
    // The meter draws what the bridge measured.
    rig.media.sound.set_level(confab::ui::SELF_ID, Some(-20.0));
    h.run();
    h.get_by_label("-20 dBFS");
}

#[test]
fn the_guest_link_is_the_web_client_on_the_servers_address() {
    assert_eq!(
        confab::ui::guest_link("ws://192.168.1.5:8787/ws", "team a"),
        "http://192.168.1.5:8787/?room=team+a"
    );
    assert_eq!(
        confab::ui::guest_link("wss://confab.example/ws", "r&d"),
        "https://confab.example/?room=r%26d"
    );
}

#[test]
fn the_built_in_server_serves_this_computer_until_shared_on_the_network() {
    let (app, mut rig) = app_with("");
    rig.events
        .send(UiEvent::ServerReady {
            url: "ws://127.0.0.1:8787/ws".into(),
            lan_url: "ws://192.168.1.5:8787/ws".into(),
        })
        .unwrap();
    let mut h = harness(app);
    h.run();
    h.get_by_label("Connection").click();
    h.run();
    h.get_by_label("Built-in server: only this computer can join.");
    assert!(
        h.query_by_label_contains("192.168.1.5").is_none(),
        "no LAN address is handed out before sharing"
    );
    h.get_by_label("Let others on my network join").click();
    h.run();
    assert_eq!(sent(&mut rig), ["ShareOnLan(true)"]);
    h.get_by_label_contains("others on your network join with ws://192.168.1.5:8787/ws");
    h.get_by_label("Let others on my network join").click();
    h.run();
    assert_eq!(sent(&mut rig), ["ShareOnLan(false)"]);
    h.get_by_label("Built-in server: only this computer can join.");
}

#[test]
fn the_roster_shows_the_name_the_room_gave_us_and_who_owns_the_room() {
    let (app, rig) = app();
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
    // "Ada" was taken: the room calls us "Ada (2)"; Bob was there first and owns it.
    ev(Event::Joined {
        id: "me1".into(),
        room: "team".into(),
        name: "Ada (2)".into(),
        present: vec!["bob1".into()],
    });
    let present = MediaState {
        has_camera: true,
        has_microphone: true,
        ..Default::default()
    };
    ev(Event::PeerJoined {
        id: "bob1".into(),
        name: "Bob".into(),
        state: present,
    });
    let mut h = harness(app);
    h.run();
    h.get_by_label("Ada (2) (you)");
    // The mark is drawn on the owner's row: the name at the same height.
    let owner_row = |h: &Harness<'static, App>| {
        // Names exactly: the tiles' labels hold them too.
        let y = |text: &str| h.query_by_label(text).map(|n| n.rect().center().y);
        let mark = h.get_by_label_contains("owner").rect().center().y;
        ["Bob", "Ada (2) (you)"]
            .into_iter()
            .find(|name| y(name).is_some_and(|at| (at - mark).abs() < 4.0))
            .unwrap_or("nobody")
            .to_string()
    };
    assert_eq!(owner_row(&h), "Bob");
    ev(Event::PeerLeft {
        id: "bob1".into(),
        reason: confab::signaling::protocol::LeaveReason::Left,
    });
    h.run();
    assert_eq!(
        owner_row(&h),
        "Ada (2) (you)",
        "the next longest present owns it"
    );
}

#[path = "ui/prejoin.rs"]
mod prejoin;

#[path = "ui/layout.rs"]
mod layout;

#[path = "ui/notices.rs"]
mod notices;

#[path = "ui/tiles.rs"]
mod tiles;

#[path = "ui/files.rs"]
mod files;
#[path = "ui/window.rs"]
mod window;

#[path = "ui/quality.rs"]
mod quality;

#[path = "ui/checks.rs"]
mod checks;
#[path = "ui/test_call.rs"]
mod test_call;

#[path = "ui/record.rs"]
mod record;
