//! The network bench must impair what it claims to. Its own test binary: the shaper takes
//! every UDP packet of the namespace, so no other test may run beside it (cargo runs test
//! binaries one after another).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_bench_loses_call_packets_and_the_receivers_ask_for_them() {
    use confab::bench::{NetworkBenchArgs, Profile, run_profile};
    let args = NetworkBenchArgs {
        profile: Some(Profile::Loss10),
        // The frame rate is counted from 3 s on.
        seconds: 6.0,
        shape: confab::bench::CallShape {
            size: "320x240".into(),
            fps: 30.0,
            bitrate_kbps: 300,
        },
        seed: 7,
        keep_reports: None,
    };
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
