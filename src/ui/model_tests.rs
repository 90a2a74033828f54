//! Specs of the UI model (kept beside it, not in it, for its size).

use super::*;
use crate::call::PeerCallStats;
use crate::signaling::protocol::LeaveReason;
use tokio::sync::mpsc::UnboundedReceiver;

fn model() -> (Model, UnboundedReceiver<UiCommand>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Without join chimes: these tests read the commands that matter to them.
    let settings = Settings {
        name: "Ada".into(),
        join_sounds: false,
        ..Settings::default()
    };
    (Model::new(tx, settings, None), rx)
}

fn engine(m: &mut Model, e: Event) {
    m.apply(UiEvent::Engine(e));
}

fn joined_with_bob(m: &mut Model) {
    engine(
        m,
        Event::Joined {
            id: "me".into(),
            room: "team".into(),
            name: "Ada".into(),
            present: Vec::new(),
        },
    );
    engine(
        m,
        Event::PeerJoined {
            id: "bob".into(),
            name: "Bob".into(),
            state: MediaState::default(),
        },
    );
}

#[test]
fn a_peer_who_leaves_takes_its_statistics_along() {
    let (mut m, _rx) = model();
    joined_with_bob(&mut m);
    assert_eq!(m.screen, Screen::Call);
    let stats = PeerCallStats {
        id: "bob".into(),
        ..PeerCallStats::default()
    };
    engine(&mut m, Event::Stats(vec![stats]));
    assert_eq!(m.call.stats["bob"].len(), 1);
    engine(
        &mut m,
        Event::PeerLeft {
            id: "bob".into(),
            reason: LeaveReason::Left,
        },
    );
    assert!(m.call.peers.is_empty());
    assert!(m.call.stats.is_empty());
}

#[test]
fn a_presenter_sees_how_many_watch_and_a_viewer_that_it_only_watches() {
    let (mut m, _rx) = model();
    joined_with_bob(&mut m);
    assert_eq!(m.call.audience(), None, "an ordinary room says nothing");
    engine(
        &mut m,
        Event::Role {
            viewer: false,
            broadcast: true,
        },
    );
    assert_eq!(m.call.audience().as_deref(), Some("0 watching"));
    engine(&mut m, Event::Viewers(3));
    assert_eq!(m.call.audience().as_deref(), Some("3 watching"));
    engine(
        &mut m,
        Event::Role {
            viewer: true,
            broadcast: true,
        },
    );
    assert_eq!(
        m.call.audience().as_deref(),
        Some("Watching: you send nothing")
    );
}

#[test]
fn the_call_shows_when_media_goes_through_the_sfu() {
    let (mut m, _rx) = model();
    joined_with_bob(&mut m);
    assert!(!m.call.via_sfu);
    engine(&mut m, Event::MediaMode { sfu: true });
    assert!(m.call.via_sfu);
    engine(&mut m, Event::MediaMode { sfu: false });
    assert!(!m.call.via_sfu);
}

#[test]
fn chat_counts_as_unread_only_while_the_panel_is_closed() {
    let (mut m, _rx) = model();
    joined_with_bob(&mut m);
    let chat = |text: &str| Event::Chat {
        from: "bob".into(),
        name: "Bob".into(),
        text: text.into(),
    };
    engine(&mut m, chat("one"));
    m.chat_open = true;
    engine(&mut m, chat("two"));
    assert_eq!(m.call.unread, 1);
    assert_eq!(m.call.chat.len(), 2);
}

#[test]
fn the_ring_sounds_while_a_call_is_incoming_and_stops_when_accepted() {
    let (mut m, mut rx) = model();
    joined_with_bob(&mut m);
    engine(
        &mut m,
        Event::IncomingCall {
            call_id: "c1".into(),
            from: "bob".into(),
            from_name: "Bob".into(),
            metadata: String::new(),
        },
    );
    assert!(matches!(rx.try_recv(), Ok(UiCommand::Ring(true))));
    engine(
        &mut m,
        Event::CallAccepted {
            call_id: "c1".into(),
            peer: "bob".into(),
            room: "call:c1".into(),
        },
    );
    assert!(matches!(rx.try_recv(), Ok(UiCommand::Ring(false))));
    assert!(m.call.incoming.is_none());
}

#[test]
fn hanging_up_a_private_call_ends_the_call_but_leaving_a_room_leaves() {
    let (mut m, mut rx) = model();
    joined_with_bob(&mut m);
    m.hang_up();
    assert!(matches!(
        rx.try_recv(),
        Ok(UiCommand::Engine(Command::Leave))
    ));
    engine(
        &mut m,
        Event::Joined {
            id: "me".into(),
            room: "call:c1".into(),
            name: "Ada".into(),
            present: vec!["bob".into()],
        },
    );
    m.hang_up();
    assert!(matches!(
        rx.try_recv(),
        Ok(UiCommand::Engine(Command::Hangup))
    ));
}
