//! What a tile says about its person: the network bars and their figures.

use super::*;
use confab::call::PeerCallStats;

/// One second of Bob's statistics: counters grow from `base` by a second's worth.
fn second(i: u64, lost_per_s: i64, lost_before: i64, rtt_ms: f64) -> PeerCallStats {
    PeerCallStats {
        id: "bob1".into(),
        name: "Bob".into(),
        connected: true,
        audio_packets_received: 50 * i,
        video_in_kbps: 800.0,
        packets_lost: lost_before + lost_per_s * i as i64,
        rtt_ms: Some(rtt_ms),
        ..PeerCallStats::default()
    }
}

fn stats(rig: &Rig, s: PeerCallStats) {
    rig.events
        .send(UiEvent::Engine(Event::Stats(vec![s])))
        .unwrap();
}

#[test]
fn the_network_bars_on_a_tile_follow_the_peers_statistics() {
    let (app, rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    assert!(
        h.query_by_label_contains("Network of Bob").is_none(),
        "no verdict before any statistics"
    );
    for i in 0..6 {
        stats(&rig, second(i, 0, 0, 30.0));
    }
    h.run();
    h.get_by_label("Network of Bob: good (4 of 4)");
    // A lossy, slow stretch: 40 of about 140 packets a second lost.
    for i in 6..12 {
        stats(&rig, second(i, 40, -240, 600.0));
    }
    h.run();
    h.get_by_label("Network of Bob: poor (0 of 4)").hover();
    h.run_steps(30);
    h.get_by_label_contains("round trip 600 ms");
}

#[test]
fn a_remote_camera_tile_tells_the_engine_its_size_before_and_as_its_picture_is_drawn() {
    use confab::call::TrackRole;
    use confab::media::VideoFrame;
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    let _ = sent(&mut rig);
    // Through an SFU the layer received follows these sizes: Bob's tile, drawn before
    // his first picture (so that picture comes in the layer it needs)...
    let size = |told: &[String]| -> (f32, f32) {
        let last = told.last().expect("the tile's size sent to the engine");
        let nums: Vec<f32> = last
            .trim_start_matches("ShowTile(bob1, camera, Some((")
            .trim_end_matches(")))")
            .split(", ")
            .map(|n| n.parse().unwrap())
            .collect();
        (nums[0], nums[1])
    };
    let (w, h0) = size(&rig.tiles);
    assert!(
        w > 200.0 && (w / h0 - 16.0 / 9.0).abs() < 0.05,
        "{:?}",
        rig.tiles
    );
    // ...then the picture as drawn in it: a 4:3 one is narrower than the tile.
    let frame = VideoFrame::black(48, 36, 0).unwrap();
    rig.media.video.store("bob1", TrackRole::Camera, &frame);
    h.run();
    let _ = sent(&mut rig);
    let (w, h) = size(&rig.tiles);
    assert!((h - h0).abs() < 2.0, "{:?}", rig.tiles);
    assert!((w / h - 4.0 / 3.0).abs() < 0.05, "{:?}", rig.tiles);
}

#[test]
fn a_member_who_leaves_and_comes_back_has_the_tiles_size_told_again() {
    use confab::signaling::protocol::LeaveReason;
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    let _ = sent(&mut rig);
    assert_eq!(rig.tiles.len(), 1, "{:?}", rig.tiles);
    rig.events
        .send(UiEvent::Engine(Event::PeerLeft {
            id: "bob1".into(),
            reason: LeaveReason::Left,
        }))
        .unwrap();
    h.run();
    // Back under the same id (a resumed session): the engine knows nothing of his tile
    // now, so its size is told again, the same as before.
    bob_joins(&rig);
    h.run();
    let _ = sent(&mut rig);
    assert_eq!(rig.tiles.len(), 2, "{:?}", rig.tiles);
    assert_eq!(rig.tiles[0], rig.tiles[1]);
}
