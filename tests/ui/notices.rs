//! What floats over the call: "You are muted", the join/leave toasts.

use super::*;

fn muted(rig: &Rig) {
    rig.events
        .send(UiEvent::Engine(Event::LocalMediaState(MediaState {
            has_camera: true,
            has_microphone: true,
            audio_muted: true,
            ..Default::default()
        })))
        .unwrap();
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
    rig.events
        .send(UiEvent::Engine(Event::LocalMediaState(MediaState {
            has_camera: true,
            has_microphone: true,
            ..Default::default()
        })))
        .unwrap();
    h.run();
    assert!(h.query_by_label("You are muted").is_none());
}
