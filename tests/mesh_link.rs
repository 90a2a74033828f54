//! A mesh with one member behind a narrow link. Its own test binary: the shaper takes
//! the namespace's NFQUEUE, so no other test may run beside it (cargo runs test
//! binaries one after another).

mod support;

use confab::bench::{Profile, Shaper};
use confab::headless::{self, HeadlessOptions};
use support::{fps_from, from};

/// cy's own address (on `lo`): only what is sent to it is shaped.
const CY: &str = "10.78.0.3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_a_slow_link_gets_a_small_stream_and_the_others_keep_the_large_one() {
    support::test_logs();
    let out = std::process::Command::new("ip")
        .args(["addr", "replace", &format!("{CY}/32"), "dev", "lo"])
        .output()
        .expect("running ip");
    assert!(out.status.success(), "ip addr: {out:?}");
    let shaper = Shaper::start_matching(Profile::HalfMbit, 5, &["-d", CY])
        .expect("root, in a namespace with only lo");
    let srv = support::server().await;
    let url = srv.ws_url();
    let runs: Vec<_> = [("ada", 440.0), ("bob", 660.0), ("cy", 880.0)]
        .into_iter()
        .map(|(name, tone)| {
            let mut o = HeadlessOptions::new(&url, "slow-one", name);
            o.seconds = 16.0;
            o.tone_hz = tone;
            if name == "ada" {
                // 540p at 2 Mbit/s: four times what cy's link carries.
                o.size = (960, 540);
                o.bitrate_bps = 2_000_000;
            } else {
                o.size = (320, 180);
                o.bitrate_bps = 250_000;
            }
            let addr = if name == "cy" { CY } else { "127.0.0.1" };
            o.bind_addrs = vec![format!("{addr}:0")];
            tokio::spawn(headless::run(o))
        })
        .collect();
    let reports = support::reports(runs).await;
    let shaped = shaper.stop().expect("the shaper stops");
    for me in &reports {
        eprint!("{}", me.summary());
    }
    assert!(
        shaped.lost + shaped.overflowed > 0,
        "cy's link never filled"
    );
    let [ada, bob, cy] = [&reports[0], &reports[1], &reports[2]];
    for me in [bob, cy] {
        assert!(me.errors.is_empty(), "{}: {:?}", me.name, me.errors);
        let v = &from(me, "ada").video;
        assert!(v.ids_in_order, "{} from ada: {v:?}", me.name);
        // Pictures through the last seconds, not only before the link filled.
        let late = fps_from(me, "ada", 8.0);
        let seen = late.iter().filter(|fps| **fps > 0.0).count();
        assert!(
            late.len() >= 6 && seen + 1 >= late.len(),
            "{} sees ada at {late:?} fps",
            me.name
        );
    }
    // bob's link is clean: ada's picture reaches him whole, though cy's link is slow.
    let to_bob = &from(bob, "ada").video;
    assert_eq!((to_bob.width, to_bob.height), (960, 540), "{to_bob:?}");
    // cy is sent what his link carries.
    let to_cy = &from(cy, "ada").video;
    assert!(to_cy.height <= 270, "cy gets {to_cy:?}");
    let sending = |to: &str| {
        from(ada, to)
            .last_stats
            .as_ref()
            .is_some_and(|s| s.small_stream)
    };
    assert!(sending("cy") && !sending("bob"), "ada's statistics");
}
