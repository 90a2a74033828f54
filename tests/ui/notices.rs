//! What floats over the call: "You are muted", the join/leave toasts.

use super::*;

fn muted(rig: &Rig) {
    local_state(rig, |s| s.audio_muted = true);
}

fn speaking_while_muted(rig: &Rig, speaking: bool) {
    rig.events
        .send(UiEvent::Engine(Event::SpeakingWhileMuted(speaking)))
        .unwrap();
}

#[test]
fn speaking_while_muted_shows_you_are_muted_until_the_engine_hears_quiet() {
    let (app, rig) = app();
    in_call(&rig);
    muted(&rig);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("You are muted").is_none());
    speaking_while_muted(&rig, true);
    h.run();
    h.get_by_label("You are muted");
    h.get_by_label_contains("hold Space to talk");
    speaking_while_muted(&rig, false);
    h.run();
    assert!(h.query_by_label("You are muted").is_none());
}

#[test]
fn the_muted_notice_unmutes() {
    let (app, mut rig) = app();
    in_call(&rig);
    muted(&rig);
    speaking_while_muted(&rig, true);
    let mut h = harness(app);
    h.run();
    h.get_by_label("Unmute microphone").click();
    h.run();
    assert_eq!(sent(&mut rig), ["SetAudioMuted(false)"]);
    // Unmuted, the notice goes even before the engine says the speech was heard.
    local_state(&rig, |_| {});
    h.run();
    assert!(h.query_by_label("You are muted").is_none());
}

#[test]
fn joins_and_leaves_show_stacked_toasts_and_chime() {
    let (app, mut rig) = app();
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
    // Carol was there before us: no news.
    ev(Event::Joined {
        id: "me1".into(),
        room: "team".into(),
        name: "Ada".into(),
        present: vec!["carol1".into()],
    });
    ev(Event::PeerJoined {
        id: "carol1".into(),
        name: "Carol".into(),
        state: MediaState::default(),
    });
    ev(Event::PeerJoined {
        id: "bob1".into(),
        name: "Bob".into(),
        state: MediaState::default(),
    });
    let mut h = harness(app);
    h.run();
    h.get_by_label("Bob joined");
    assert!(h.query_by_label("Carol joined").is_none());
    ev(Event::PeerLeft {
        id: "carol1".into(),
        reason: confab::signaling::protocol::LeaveReason::Left,
    });
    h.run();
    // Stacked: the newest under the older.
    let (joined, left) = (
        h.get_by_label("Bob joined").rect(),
        h.get_by_label("Carol left").rect(),
    );
    assert!(left.top() >= joined.bottom(), "{joined:?} {left:?}");
    sent(&mut rig);
    assert_eq!(rig.chimes, [true, false]);
    // That they go after a few seconds is `ui::toasts`' unit test (time passed in).
}

#[test]
fn the_join_sound_can_be_turned_off_and_stays_off() {
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    sent(&mut rig);
    assert_eq!(rig.chimes, [true], "Bob's arrival");
    h.get_by_label("Devices").click();
    h.run();
    h.get_by_label("Sound when someone joins or leaves").click();
    h.run();
    assert!(!h.state().model.settings.join_sounds, "remembered");
    rig.events
        .send(UiEvent::Engine(Event::PeerLeft {
            id: "bob1".into(),
            reason: confab::signaling::protocol::LeaveReason::Left,
        }))
        .unwrap();
    h.run();
    h.get_by_label("Bob left");
    sent(&mut rig);
    assert_eq!(rig.chimes, [true], "no sound, the toast still");
}
