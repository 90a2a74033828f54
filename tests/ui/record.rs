//! Recording from the call view: the Record toggle asks the engine to record and to stop,
//! and everyone's recording shows as a red mark and on the recorder's tile.

use super::*;

#[test]
fn record_toggles_the_recording_and_our_own_shows_the_mark() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Recording").is_none(), "nobody records");
    h.get_by_label("Record").click();
    h.run();
    assert_eq!(sent(&mut rig), ["StartRecording"]);
    // The engine started: our state says so, and where the file goes.
    local_state(&rig, |s| s.recording = true);
    rig.events
        .send(UiEvent::Engine(Event::RecordingStarted {
            path: "/videos/confab-team.mp4".into(),
        }))
        .unwrap();
    h.run();
    h.get_by_label("Recording");
    h.get_by_label("Recording to /videos/confab-team.mp4");
    h.get_by_label("Stop recording").click();
    h.run();
    assert_eq!(sent(&mut rig), ["StopRecording"]);
    local_state(&rig, |_| {});
    h.run();
    assert!(h.query_by_label("Recording").is_none());
    h.get_by_label("Record");
}

#[test]
fn a_peer_that_records_is_marked_for_everyone_and_on_its_tile() {
    let (app, rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Recording").is_none());
    assert!(h.query_all_by_label("Bob · recording").next().is_none());
    let bob = |recording| MediaState {
        has_camera: true,
        has_microphone: true,
        recording,
        ..Default::default()
    };
    rig.events
        .send(UiEvent::Engine(Event::PeerMediaState {
            id: "bob1".into(),
            state: bob(true),
        }))
        .unwrap();
    h.run();
    h.get_by_label("Recording").hover();
    h.run_steps(30);
    h.get_by_label_contains("Recorded by Bob");
    assert!(
        h.query_all_by_label("Bob · recording").next().is_some(),
        "his tile says he records"
    );
    rig.events
        .send(UiEvent::Engine(Event::PeerMediaState {
            id: "bob1".into(),
            state: bob(false),
        }))
        .unwrap();
    h.run();
    assert!(h.query_by_label("Recording").is_none());
}
