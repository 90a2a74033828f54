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
