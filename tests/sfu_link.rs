//! An SFU room behind a narrow link. Its own test binary: the shaper takes every UDP
//! packet of the namespace, so no other test may run beside it (cargo runs test
//! binaries one after another).

mod support;

use confab::bench::{Profile, Shaper};
use confab::headless::{self, HeadlessOptions};
use confab::sfu::SfuTarget;
use support::from;
use support::janus::Janus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_behind_a_narrow_link_sends_what_the_link_to_janus_carries() {
    support::test_logs();
    // Before Janus: the shaper wants a namespace with nothing but `lo`.
    let shaper = Shaper::start(Profile::HalfMbit, 3).expect("root, in a namespace with only lo");
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let runs: Vec<_> = [("ada", 440.0), ("bob", 660.0)]
        .into_iter()
        .map(|(name, tone)| {
            let mut o = HeadlessOptions::new(&url, "narrow", name);
            o.seconds = 10.0;
            o.tone_hz = tone;
            o.size = (640, 360);
            // Three times what the link carries: only the estimate can bring it down.
            o.bitrate_bps = 1_500_000;
            // One layer: this is about the estimate reaching the encoder (simulcast
            // layers behind a narrow uplink are not yet switched off as Chromium does).
            o.simulcast_layers = 1;
            o.bind_addrs = vec![janus.bind_addr()];
            o.sfu = Some(SfuTarget::for_room(&janus.url(), "narrow"));
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
        "the link never overflowed"
    );
    for (me, other) in [(&reports[0], "bob"), (&reports[1], "ada")] {
        let got = from(me, other);
        let timeline = &got.stats_timeline;
        let last: Vec<f64> = timeline
            .iter()
            .filter(|s| s.t >= 6.0)
            .map(|s| s.stats.video_out_kbps)
            .collect();
        assert!(!last.is_empty(), "{}: no statistics", me.name);
        let sent = last.iter().sum::<f64>() / last.len() as f64;
        assert!(
            sent < 550.0,
            "{} still sends {sent:.0} kbit/s into a 500 kbit/s link: {:?}",
            me.name,
            timeline
                .iter()
                .map(|s| (s.t, s.stats.send_estimate_kbps, s.stats.video_out_kbps))
                .collect::<Vec<_>>()
        );
        // Janus takes transport-cc on video only: the audio packets, reported without a
        // number and never as arrived, read as lost and held the estimate on its floor.
        let estimate = timeline
            .last()
            .and_then(|s| s.stats.send_estimate_kbps)
            .unwrap_or(0.0);
        assert!(
            estimate >= 125.0,
            "{}: the estimate fell to {estimate:.0} (its floor is 100)",
            me.name
        );
        // And what it does send arrives: frames keep coming, in order.
        let v = &got.video;
        assert!(v.ids_in_order, "{} from {other}: {v:?}", me.name);
        let late: Vec<f64> = timeline
            .iter()
            .filter(|s| s.t >= 6.0)
            .map(|s| s.stats.video_in_fps)
            .collect();
        assert!(
            late.iter().all(|fps| *fps > 0.0),
            "{} sees {other} at {late:?} fps",
            me.name
        );
    }
}
