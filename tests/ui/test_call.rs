//! The lobby's Test call: it asks the engine for a test call, and the call view says
//! what it is and the round trip.

use super::*;
use confab::call::PeerCallStats;

#[test]
fn test_call_asks_the_engine_for_the_echo_not_the_room() {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    sent(&mut rig);
    h.get_by_label("Test call").click();
    h.run_steps(3);
    let cmds = sent(&mut rig);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(cmds[0].contains("test_call: true"), "{cmds:?}");
    assert_eq!(h.state().model.screen, Screen::Joining);
}

#[test]
fn a_test_call_shows_itself_and_its_round_trip() {
    let (app, rig) = app();
    let mut h = harness(app);
    h.run();
    let ev = |e| rig.events.send(UiEvent::Engine(e)).unwrap();
    ev(Event::Joined {
        id: "me1".into(),
        room: "echo:0123456789abcdef".into(),
        name: "Ada".into(),
        present: vec!["echo1".into()],
    });
    ev(Event::PeerJoined {
        id: "echo1".into(),
        name: "Echo test".into(),
        state: MediaState::default(),
    });
    h.run_steps(2);
    assert!(h.query_by_label_contains("Test call").is_some());
    assert!(
        h.query_by_label_contains("measuring the round trip")
            .is_some(),
        "before any statistics"
    );
    assert!(
        h.query_by_label_contains("echo:0123").is_none(),
        "the room's name is no one's business"
    );
    ev(Event::Stats(vec![PeerCallStats {
        id: "echo1".into(),
        name: "Echo test".into(),
        connected: true,
        rtt_ms: Some(23.4),
        ..PeerCallStats::default()
    }]));
    h.run_steps(2);
    assert!(h.query_by_label_contains("round trip 23 ms").is_some());
    // Nobody to ring from a test call.
    assert!(h.query_by_label("Call").is_none());
}

#[test]
fn test_call_on_start_calls_the_built_in_servers_echo_once_it_is_up() {
    let (app, mut rig) = app_with("");
    let mut h = harness(app.join_on_start(true));
    h.run();
    assert!(
        !sent(&mut rig).iter().any(|c| c.starts_with("Join")),
        "nothing to call before the server is up"
    );
    rig.events
        .send(UiEvent::ServerReady {
            url: "ws://127.0.0.1:8787/ws".into(),
            lan_url: "ws://192.168.1.5:8787/ws".into(),
        })
        .unwrap();
    h.run_steps(3);
    let joins: Vec<String> = sent(&mut rig)
        .into_iter()
        .filter(|c| c.starts_with("Join"))
        .collect();
    assert_eq!(joins.len(), 1, "{joins:?}");
    assert!(joins[0].contains("test_call: true"), "{joins:?}");
    assert!(joins[0].contains("ws://127.0.0.1:8787/ws"), "{joins:?}");
}
