//! The pre-join screen: Enter joins, who is in the room, errors beside their fields, the
//! camera and microphone toggles.

use super::*;
use confab::signaling::protocol::RoomInfo;
use eframe::egui::Key;

#[test]
fn enter_joins_from_the_pre_join_screen() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    h.key_press(Key::Enter);
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(cmds[0].starts_with("Join(JoinRequest {"), "{cmds:?}");
    assert_eq!(h.state().model.screen, Screen::Joining);
}

#[test]
fn enter_in_the_room_field_joins_the_room_typed() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    h.state_mut().model.settings.room.clear();
    h.run();
    // Nothing to join yet: Enter does nothing.
    h.key_press(Key::Enter);
    h.run();
    assert!(sent(&mut rig).is_empty());
    h.get_by_label("Room").focus();
    h.run();
    h.get_by_label("Room").type_text("design");
    h.run();
    h.key_press(Key::Enter);
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(cmds[0].contains("room: \"design\""), "{cmds:?}");
}

#[test]
fn who_is_in_the_room_shows_before_joining() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    sent(&mut rig);
    assert_eq!(rig.rooms_asked, 1, "the screen asks the server at once");
    rig.events
        .send(UiEvent::Rooms(Ok(vec![
            RoomInfo {
                name: "team".into(),
                members: 3,
                capacity: None,
                names: Vec::new(),
                broadcast: false,
            },
            RoomInfo {
                name: "board".into(),
                members: 2,
                capacity: Some(2),
                names: vec!["Ann".into(), "Bob".into()],
                broadcast: false,
            },
        ])))
        .unwrap();
    h.run();
    h.get_by_label("3 people are in this room");
    h.get_by_label("board (2/2)").click();
    h.run();
    assert_eq!(h.state().model.settings.room, "board");
    h.get_by_label("This room is full: Ann and Bob");
}

#[test]
fn an_unreachable_server_is_said_beside_the_server_field() {
    let (app, rig) = app();
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Server").is_none(), "tucked away");
    rig.events
        .send(UiEvent::Rooms(Err(
            "cannot connect to ws://127.0.0.1:1/ws: Connection refused (os error 111)".into(),
        )))
        .unwrap();
    h.run();
    h.run();
    // The section opens by itself to show it.
    let error = h
        .get_by_label("Server unreachable: Connection refused (os error 111)")
        .rect();
    assert_beside(&h, error, "Server", ["Password"]);
    // A full room goes beside the room.
    rig.events
        .send(UiEvent::JoinFailed(
            "signaling: the server refused: room_full: at most 2".into(),
        ))
        .unwrap();
    h.run();
    let error = h.get_by_label("This room is full (at most 2)").rect();
    assert_beside(&h, error, "Room", ["Password", "Name"]);
}

#[test]
fn the_camera_and_microphone_toggles_turn_the_preview_off_and_back_on() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    rig.events
        .send(UiEvent::Devices(DeviceList {
            cameras: vec![
                VideoChoice::Camera(0, "USB Cam".into()),
                VideoChoice::Camera(1, "Desk Cam".into()),
            ],
            microphones: vec![AudioChoice::Microphone("pulse".into(), "Pulse mic".into())],
            ..DeviceList::default()
        }))
        .unwrap();
    h.run();
    sent(&mut rig);
    // Off at the start (nothing remembered): on picks the first camera found.
    h.get_by_label("Turn camera on").click();
    h.run();
    h.get_by_label("Camera").click();
    h.run();
    h.get_by_label("Desk Cam").click();
    h.run();
    h.get_by_label("Turn camera off").click();
    h.run();
    h.get_by_label("Turn camera on").click();
    h.run();
    h.get_by_label("Turn microphone on").click();
    h.run();
    assert_eq!(
        sent(&mut rig),
        [
            "Preview(Camera(0, \"USB Cam\"))",
            "Preview(Camera(1, \"Desk Cam\"))",
            "Preview(None)",
            "Preview(Camera(1, \"Desk Cam\"))",
            "PreviewMicrophone(Microphone(\"pulse\", \"Pulse mic\"))",
        ],
        "back on is the camera turned off, not the first one"
    );
    // Off means the device is not opened for the call either.
    h.get_by_label("Turn camera off").click();
    h.run();
    h.key_press(Key::Enter);
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert!(
        cmds.last().is_some_and(|c| c.contains("camera: None")),
        "{cmds:?}"
    );
}

#[test]
fn with_no_camera_found_turning_it_on_says_so_instead_of_showing_the_test_pattern() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    h.get_by_label("Turn camera on").click();
    h.run();
    h.get_by_label("No camera found");
    assert!(sent(&mut rig).is_empty());
    assert_eq!(h.state().model.camera, VideoChoice::None);
}

#[test]
fn watch_joins_to_watch_and_broadcast_starts_a_broadcast() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    h.get_by_label("Watch").click();
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(cmds[0].contains("role: Watch"), "{cmds:?}");
    assert_eq!(h.state().model.screen, Screen::Joining);
    // The next join is an ordinary one again.
    h.state_mut().model.screen = Screen::Lobby;
    h.run();
    h.get_by_label("Broadcast").click();
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert!(cmds[0].contains("role: Broadcast"), "{cmds:?}");
    h.state_mut().model.screen = Screen::Lobby;
    h.run();
    h.key_press(Key::Enter);
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert!(cmds[0].contains("role: Present"), "{cmds:?}");
}

#[test]
fn joining_a_listed_broadcast_joins_to_watch() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    rig.events
        .send(UiEvent::Rooms(Ok(vec![RoomInfo {
            name: "team".into(),
            members: 1,
            capacity: None,
            names: vec!["Ada".into()],
            broadcast: true,
        }])))
        .unwrap();
    h.run_steps(3);
    h.key_press(Key::Enter);
    h.run_steps(3);
    let cmds = sent(&mut rig);
    let join = cmds
        .iter()
        .find(|c| c.starts_with("Join("))
        .expect("a join");
    assert!(
        join.contains("room: \"team\"") && join.contains("role: Watch"),
        "{cmds:?}"
    );
}
