//! Call layouts: grid and speaker view, pinning, a shared screen on the stage, paging,
//! hiding the self view and a tile full screen. Tiles are found by their accessible
//! names ("Video: Bob", "Screen: Bob").

use super::*;
use confab::call::{MediaKind, TrackRole};
use confab::media::VideoFrame;
use eframe::egui::{self, Key, Modifiers, PointerButton, Rect};

/// In a call with Bob (from `in_call`) and then `others`, in that order.
fn in_call_with(rig: &Rig, others: &[&str]) {
    in_call(rig);
    for name in others {
        rig.events
            .send(UiEvent::Engine(Event::PeerJoined {
                id: format!("{}1", name.to_lowercase().replace(' ', "")),
                name: (*name).into(),
                state: MediaState {
                    has_camera: true,
                    has_microphone: true,
                    ..Default::default()
                },
            }))
            .unwrap();
    }
}

fn tile(h: &Harness<'static, App>, who: &str) -> Option<Rect> {
    h.query_by_label(&format!("Video: {who}")).map(|n| n.rect())
}

/// Two clicks in one frame: kittest's clicks are frames apart, too slow for a double.
fn double_click(h: &mut Harness<'static, App>, label: &str) {
    let at = h.get_by_label(label).rect().center();
    let input = &mut h.input_mut().events;
    input.push(egui::Event::PointerMoved(at));
    for pressed in [true, false, true, false] {
        input.push(egui::Event::PointerButton {
            pos: at,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::default(),
        });
    }
    h.step();
    h.run();
}

fn area(r: Rect) -> f32 {
    r.width() * r.height()
}

/// Who is drawn largest, and whether everyone else is the same (smaller) size.
fn largest(h: &Harness<'static, App>, who: &[&str]) -> (String, bool) {
    let mut sized: Vec<(f32, &str)> = who
        .iter()
        .map(|w| (area(tile(h, w).expect(w)), *w))
        .collect();
    sized.sort_by(|a, b| b.0.total_cmp(&a.0));
    let rest_equal = sized[1..].iter().all(|(a, _)| (a - sized[1].0).abs() < 1.0);
    (
        sized[0].1.to_string(),
        sized[0].0 > sized[1].0 * 2.0 && rest_equal,
    )
}

fn all_equal(h: &Harness<'static, App>, who: &[&str]) -> bool {
    let first = area(tile(h, who[0]).expect(who[0]));
    who.iter()
        .all(|w| (area(tile(h, w).expect(w)) - first).abs() < 1.0)
}

const PEOPLE: [&str; 4] = ["Bob", "Carol", "Dave", "Ada (you)"];

#[test]
fn switching_to_speaker_view_puts_whoever_speaks_on_the_stage() {
    let (app, rig) = app();
    in_call_with(&rig, &["Carol", "Dave"]);
    let mut h = harness(app);
    h.run();
    assert!(all_equal(&h, &PEOPLE), "the grid: all the same size");
    h.get_by_label("Speaker view").click();
    h.run();
    assert_eq!(
        largest(&h, &PEOPLE),
        ("Bob".into(), true),
        "nobody spoke yet: the first other member"
    );
    rig.media.sound.set_level("dave1", Some(-12.0));
    h.run();
    assert_eq!(largest(&h, &PEOPLE), ("Dave".into(), true));
    h.get_by_label("Grid view").click();
    h.run();
    assert!(all_equal(&h, &PEOPLE));
}

#[test]
fn a_pinned_participant_takes_the_stage_until_unpinned() {
    let (app, rig) = app();
    in_call_with(&rig, &["Carol", "Dave"]);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Pin").is_none(), "offered on hover only");
    h.get_by_label("Video: Carol").hover();
    h.run();
    h.get_by_label("Pin").click();
    h.run();
    assert_eq!(largest(&h, &PEOPLE), ("Carol".into(), true));
    // Speaking doesn't move a pin, even in speaker view.
    h.get_by_label("Speaker view").click();
    rig.media.sound.set_level("dave1", Some(-12.0));
    h.run();
    assert_eq!(largest(&h, &PEOPLE), ("Carol".into(), true));
    h.get_by_label("Unpin").click();
    h.run();
    assert_eq!(largest(&h, &PEOPLE), ("Dave".into(), true));
}

#[test]
fn a_shared_screen_takes_the_stage_by_itself() {
    let (app, rig) = app();
    in_call_with(&rig, &["Carol"]);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Screen: Bob").is_none());
    rig.events
        .send(UiEvent::Engine(Event::TrackAdded {
            peer: "bob1".into(),
            track: TrackRole::Screen,
            kind: MediaKind::Video,
        }))
        .unwrap();
    let frame = VideoFrame::black(64, 36, 0).unwrap();
    rig.media.video.store("bob1", TrackRole::Screen, &frame);
    h.run();
    let screen = area(h.get_by_label("Screen: Bob").rect());
    for who in ["Bob", "Carol", "Ada (you)"] {
        assert!(screen > 4.0 * area(tile(&h, who).unwrap()), "{who}");
    }
}

#[test]
fn more_than_nine_tiles_go_on_pages() {
    let (app, rig) = app();
    let guests: Vec<String> = (1..=10).map(|i| format!("Guest {i}")).collect();
    let names: Vec<&str> = guests.iter().map(String::as_str).collect();
    in_call_with(&rig, &names);
    let mut h = harness(app);
    h.run();
    // Twelve, in room order: us (we were first), Bob, ten guests.
    h.get_by_label("Page 1 of 2");
    let shown = |h: &Harness<'static, App>| {
        ["Bob", "Guest 8", "Guest 9", "Guest 10", "Ada (you)"]
            .into_iter()
            .filter(|w| tile(h, w).is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(shown(&h), ["Bob", "Ada (you)"]);
    h.get_by_label("Next page").click();
    h.run();
    h.get_by_label("Page 2 of 2");
    assert_eq!(shown(&h), ["Guest 8", "Guest 9", "Guest 10"]);
    // Fewer people: the page that is left is shown, and the pager goes.
    for i in 1..=10 {
        rig.events
            .send(UiEvent::Engine(Event::PeerLeft {
                id: format!("guest{i}1"),
                reason: confab::signaling::protocol::LeaveReason::Left,
            }))
            .unwrap();
    }
    h.run();
    assert!(h.query_by_label_contains("Page").is_none());
    assert_eq!(shown(&h), ["Bob", "Ada (you)"]);
    assert!(h.query_by_label("Video: Guest 1").is_none());
}

#[test]
fn the_self_view_hides_and_a_double_clicked_tile_fills_the_window_until_escape() {
    let (app, rig) = app();
    in_call_with(&rig, &["Carol"]);
    let mut h = harness(app);
    h.run();
    assert!(tile(&h, "Ada (you)").is_some());
    h.get_by_label("Hide self view").click();
    h.run();
    assert!(tile(&h, "Ada (you)").is_none());
    assert!(tile(&h, "Bob").is_some());

    double_click(&mut h, "Video: Bob");
    let full = tile(&h, "Bob").unwrap();
    // The whole 1180 x 700 window, but the harness's own 8-point margin.
    assert!(full.width() >= 1164.0 && full.height() >= 684.0, "{full:?}");
    assert!(tile(&h, "Carol").is_none());
    assert!(h.query_by_label("Hang up").is_none(), "the whole window");
    h.key_press(Key::Escape);
    h.run();
    assert!(tile(&h, "Carol").is_some());
    h.get_by_label("Hang up");
}
