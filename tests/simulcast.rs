//! Simulcast through Janus: a publisher sends its 1280x720 camera in three layers
//! (1280x720, 640x360, 320x180); a subscriber receives the layer it asks for, and a
//! switch brings the other layer's pictures from a keyframe on. Run under `.ci/netns`
//! (Janus from `support/janus.rs`).

mod support;

use confab::call::{CallConfig, Command, Event, TrackRole};
use confab::sfu::SfuTarget;
use support::engine::{EVENT_LIMIT, Shown, TestPeer, config, synthetic};
use support::janus::Janus;
use tokio::sync::mpsc::UnboundedReceiver;

fn sfu_config(janus: &Janus, url: &str, name: &str) -> CallConfig {
    let mut c = config(url, "simulcast", name);
    c.bind_addrs = vec![janus.bind_addr()];
    c.sfu = Some(SfuTarget::for_room(&janus.url(), "simulcast"));
    c.video.bitrate_bps = 1_200_000;
    c
}

/// Waits for `peer`'s camera to show at `size`, then reads `count` more frames: all at
/// that size, their barcode ids going up. Returns the ids and whether the first frame
/// at that size was a keyframe. Frames before (the other layer still draining) are
/// skipped; any frame of the other size after is a failure.
async fn frames_at(
    frames: &mut UnboundedReceiver<Shown>,
    peer: &str,
    size: (usize, usize),
    count: usize,
) -> (Vec<u32>, bool) {
    let deadline = tokio::time::Instant::now() + EVENT_LIMIT;
    let mut ids = Vec::new();
    let mut first_keyframe = None;
    let mut seen = 0;
    while seen < count {
        let f = tokio::time::timeout_at(deadline, frames.recv())
            .await
            .unwrap_or_else(|_| panic!("{seen} of {count} frames at {size:?} in {EVENT_LIMIT:?}"))
            .expect("the engine runs");
        if f.peer != peer || f.track != TrackRole::Camera {
            continue;
        }
        let at_size = (f.width, f.height) == size;
        match first_keyframe {
            None if !at_size => continue,
            None => first_keyframe = Some(f.keyframe),
            Some(_) => assert!(
                at_size,
                "a {}x{} frame among the {size:?} ones",
                f.width, f.height
            ),
        }
        seen += 1;
        ids.extend(f.id);
    }
    (ids, first_keyframe.unwrap_or(false))
}

fn in_order(ids: &[u32]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

async fn until_relayed(viewer: &mut TestPeer, cam: &str, layer: u8) {
    viewer
        .until(
            &format!("layer {layer} of {cam}'s camera relayed"),
            |e| match e {
                Event::LayerRelayed {
                    peer,
                    track: TrackRole::Camera,
                    layer: l,
                } if peer == cam && *l == layer => Some(()),
                _ => None,
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_the_layer_it_asks_for_and_a_switch_starts_at_a_keyframe() {
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let cam =
        TestPeer::join_with(sfu_config(&janus, &url, "cam"), synthetic(1280, 720, 440.0)).await;
    let mut v = sfu_config(&janus, &url, "viewer");
    v.sfu_layer = Some(0);
    let (mut viewer, mut frames) = TestPeer::join_watching(v, synthetic(320, 180, 660.0)).await;
    let cam_id = cam.id.clone();

    until_relayed(&mut viewer, &cam_id, 0).await;
    let (small, keyframe) = frames_at(&mut frames, &cam_id, (320, 180), 45).await;
    assert!(keyframe, "the small layer starts at a keyframe");
    assert!(small.len() >= 40, "barcodes read in {} of 45", small.len());
    assert!(in_order(&small), "small layer ids out of order: {small:?}");

    viewer.send(Command::ForceLayer(Some(2)));
    until_relayed(&mut viewer, &cam_id, 2).await;
    let (large, keyframe) = frames_at(&mut frames, &cam_id, (1280, 720), 45).await;
    assert!(keyframe, "the large layer starts at a keyframe");
    assert!(large.len() >= 40, "barcodes read in {} of 45", large.len());
    assert!(in_order(&large), "large layer ids out of order: {large:?}");
    assert!(
        large[0] > *small.last().unwrap(),
        "the switch goes on from where the small layer was"
    );

    // Back down: the choice is the subscriber's, both ways.
    viewer.send(Command::ForceLayer(Some(0)));
    until_relayed(&mut viewer, &cam_id, 0).await;
    let (again, _) = frames_at(&mut frames, &cam_id, (320, 180), 15).await;
    assert!(in_order(&again) && again[0] > *large.last().unwrap());

    let _ = (viewer.leave().await, cam.leave().await);
}

/// The next camera frame of `peer`'s.
async fn next_camera_frame(frames: &mut UnboundedReceiver<Shown>, peer: &str) -> Shown {
    let deadline = tokio::time::Instant::now() + EVENT_LIMIT;
    loop {
        let f = tokio::time::timeout_at(deadline, frames.recv())
            .await
            .unwrap_or_else(|_| panic!("no frame of {peer}'s camera in {EVENT_LIMIT:?}"))
            .expect("the engine runs");
        if f.peer == peer && f.track == TrackRole::Camera {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_gets_a_camera_in_the_small_layer_until_its_tile_is_drawn_then_the_tiles_layer() {
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let cam =
        TestPeer::join_with(sfu_config(&janus, &url, "cam"), synthetic(1280, 720, 440.0)).await;
    let mut v = sfu_config(&janus, &url, "window");
    v.draws_tiles = true;
    let (mut window, mut frames) = TestPeer::join_watching(v, synthetic(320, 180, 660.0)).await;
    let cam_id = cam.id.clone();

    // No tile reported yet: the small layer, not the largest for a picture nobody sees
    // yet. Janus relays the first keyframe it sees of any layer, then switches at the
    // asked layer's, which the same keyframe request brought: a frame or two.
    let mut before = Vec::new();
    let first = loop {
        let f = next_camera_frame(&mut frames, &cam_id).await;
        if (f.width, f.height) == (320, 180) {
            break f;
        }
        before.push(f);
        assert!(before.len() <= 5, "not the small layer: {before:?}");
    };
    assert!(first.keyframe, "{first:?} after {before:?}");
    let (small, _) = frames_at(&mut frames, &cam_id, (320, 180), 15).await;
    assert!(in_order(&small), "small layer ids out of order: {small:?}");

    // Drawn full size: the largest layer, from a keyframe on, ids going on.
    window.send(Command::ShowTile {
        peer: cam_id.clone(),
        track: TrackRole::Camera,
        size: Some((1280, 720)),
    });
    until_relayed(&mut window, &cam_id, 2).await;
    let (large, keyframe) = frames_at(&mut frames, &cam_id, (1280, 720), 30).await;
    assert!(keyframe, "the large layer starts at a keyframe");
    assert!(large.len() >= 25, "barcodes read in {} of 30", large.len());
    assert!(in_order(&large), "large layer ids out of order: {large:?}");
    assert!(
        large[0] > *small.last().unwrap(),
        "{small:?} then {large:?}"
    );

    let _ = (window.leave().await, cam.leave().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulcast_bench_prices_each_layer_and_times_switches_both_ways() {
    support::test_logs();
    let janus = Janus::start();
    let r = confab::bench::run_simulcast(confab::bench::SimulcastBenchArgs {
        frames: 60,
        fps: 30.0,
        bitrate_kbps: 1200,
        janus: Some(janus.url()),
        bind: janus.bind_addr().trim_end_matches(":0").to_owned(),
        switches: 2,
    })
    .await
    .expect("simulcast bench runs");
    eprint!("{r}");
    let ms = &r.layer_ms_per_frame;
    assert_eq!(ms.len(), 3, "{r}");
    assert!(ms.iter().all(|m| *m > 0.0), "{r}");
    let bytes = &r.layer_bytes_per_frame;
    assert!(bytes[0] < bytes[1] && bytes[1] < bytes[2], "{r}");
    let l = r.layered_ms_per_frame;
    assert!(l[0] > l[1] && l[1] > l[2] && l[2] > ms[2], "{r}");
    let s = r.switch.expect("switches timed");
    assert_eq!(s.switches, 2);
    assert!(s.to_picture_ms.0 > 0.0 && s.to_relayed_ms.0 > 0.0, "{s:?}");
}
