//! The network bench must impair what it claims to, and the call must hold up through
//! it. Its own test binary: the shaper takes every UDP packet of the namespace, so no
//! other test may run beside it (cargo runs test binaries one after another, and the
//! tests here one at a time).

use confab::bench::{NetworkBenchArgs, Profile};

/// One shaper at a time.
static SHAPER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn small_call(profile: Profile, seconds: f64) -> NetworkBenchArgs {
    NetworkBenchArgs {
        profile: Some(profile),
        seconds,
        shape: confab::bench::CallShape {
            size: "320x240".into(),
            fps: 30.0,
            bitrate_kbps: 300,
        },
        seed: 7,
        keep_reports: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_bench_loses_call_packets_and_the_receivers_ask_for_them() {
    use confab::bench::run_profile;
    let _one = SHAPER.lock().await;
    // The frame rate is counted from 3 s on.
    let args = small_call(Profile::Loss10, 6.0);
    let rows = run_profile(&args, Profile::Loss10)
        .await
        .expect("runs (root, in a namespace with only lo)");
    assert_eq!(rows.len(), 2, "one row per direction");
    for r in &rows {
        assert!(r.link_dropped > 0, "the link lost nothing: {r:?}");
        // Loss on the call's own packets is what the receivers ask to have repaired.
        assert!(r.nacks > 0, "no NACKs, so no call packet was lost: {r:?}");
        // (Smaller than sent, maybe: at 10 % loss FEC takes a share of the 300 kbit/s.)
        assert!(r.fps > 0.0 && r.width > 0, "video still arrived: {r:?}");
        // The viewer's audio went through the playout, and lost packets were made up.
        assert!(r.audio_delay_ms > 0.0, "no audio played: {r:?}");
        assert!(r.audio_concealed_ms > 0.0, "no audio lost: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_jittery_path_pictures_are_held_about_as_long_as_it_jitters() {
    use confab::bench::run_profile;
    let _one = SHAPER.lock().await;
    let args = small_call(Profile::Jitter, 8.0);
    let rows = run_profile(&args, Profile::Jitter)
        .await
        .expect("runs (root, in a namespace with only lo)");
    for r in &rows {
        // 50 ms +- 20 ms: frames come up to 40 ms later than the fastest. Shown at the
        // pace they were captured, they wait for the late ones (their 95th percentile),
        // and no longer than the path's spread and a little.
        assert!(
            (15.0..=80.0).contains(&r.video_hold_ms),
            "held {} ms: {r:?}",
            r.video_hold_ms
        );
        assert!(r.fps > 20.0 && r.freezes == 0, "{r:?}");
    }
}
