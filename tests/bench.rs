//! The signaling benchmark must measure what it claims: every client held,
//! relays counted with latencies, and no relay crossing rooms.

use confab::bench::{SignalingBenchArgs, run_signaling};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_signaling_bench_holds_every_client_and_keeps_rooms_apart() {
    let r = run_signaling(SignalingBenchArgs {
        clients: 60,
        rooms: 6,
        seconds: 1.5,
        rate: 10.0,
        url: None,
    })
    .await
    .expect("bench runs");
    assert_eq!(r.clients_held, 60, "{r}");
    assert_eq!(r.connect_failures, 0);
    assert_eq!(r.cross_room, 0);
    assert_eq!(r.errors_received, 0);
    // 60 clients at 10/s for 1.5 s send ~900 relays; allow for start-up staggering.
    assert!(r.relayed > 450, "{r}");
    assert!(r.latency_p50_ms > 0.0 && r.latency_p50_ms <= r.latency_p99_ms);
    assert!(r.server_rss_mib.is_some_and(|m| m > 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_call_bench_measures_latency_cpu_and_codec_time() {
    let r = confab::bench::run_call(confab::bench::CallBenchArgs {
        seconds: 3.0,
        shape: confab::bench::CallShape {
            size: "320x240".into(),
            fps: 30.0,
            bitrate_kbps: 300,
        },
        runs: 1,
        keep_reports: None,
        peers: vec![2],
        mode: vec![confab::bench::Mode::Mesh],
    })
    .await
    .expect("call bench runs");
    assert!(
        // Two peers for 3 s at 30 fps, less the join: at least a second of video each.
        r.frames_sent > 60 && r.frames_decoded as f64 > 0.8 * r.frames_sent as f64,
        "{r}"
    );
    assert!(r.join_to_first_frame_ms > 0.0, "{r}");
    assert!(
        r.glass_to_glass_p50_ms > 0.0 && r.glass_to_glass_p50_ms <= r.glass_to_glass_p95_ms,
        "{r}"
    );
    assert!(r.audio_latency_p50_ms > 0.0, "{r}");
    assert!(r.cpu_seconds_per_call_second_per_peer > 0.0, "{r}");
    assert!(
        r.encode_ms_per_frame > 0.0 && r.decode_ms_per_frame > 0.0,
        "{r}"
    );
    assert!(r.video_kbps > 50.0, "{r}");
}
