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
fn a_remote_camera_tile_tells_the_engine_the_size_it_is_drawn_at() {
    use confab::call::TrackRole;
    use confab::media::VideoFrame;
    let (app, mut rig) = app();
    in_call(&rig);
    let mut h = harness(app);
    h.run();
    let _ = sent(&mut rig);
    // A 16:9 picture from Bob: through an SFU the layer received follows this size.
    let frame = VideoFrame::black(64, 36, 0).unwrap();
    rig.media.video.store("bob1", TrackRole::Camera, &frame);
    h.run();
    let told: Vec<String> = sent(&mut rig)
        .into_iter()
        .filter(|c| c.starts_with("ShowTile(bob1, camera, Some(("))
        .collect();
    let last = told.last().expect("the tile's size sent to the engine");
    let nums: Vec<f32> = last
        .trim_start_matches("ShowTile(bob1, camera, Some((")
        .trim_end_matches(")))")
        .split(", ")
        .map(|n| n.parse().unwrap())
        .collect();
    let (w, h) = (nums[0], nums[1]);
    assert!(w > 200.0, "{last}");
    assert!(
        (w / h - 16.0 / 9.0).abs() < 0.05,
        "the picture as drawn: {last}"
    );
}
