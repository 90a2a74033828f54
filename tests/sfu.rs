//! SFU rooms: confab peers whose media goes through Debian's Janus (VideoRoom), started
//! per test with a loopback-only config (`support/janus.rs`). Run under `.ci/netns`.

mod support;

use confab::call::{Command, Event, TrackRole};
use confab::headless::{self, HeadlessOptions};
use confab::media::SyntheticVideo;
use confab::sfu::SfuTarget;
use support::engine::{TestPeer, config, synthetic};
use support::from;
use support::janus::Janus;

fn opts(janus: &Janus, url: &str, name: &str, tone: f32, seconds: f64) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, "sfu", name);
    o.seconds = seconds;
    o.tone_hz = tone;
    o.size = (320, 240);
    o.bitrate_bps = 300_000;
    o.bind_addrs = vec![janus.bind_addr()];
    o.sfu = Some(SfuTarget::for_room(&janus.url(), "sfu"));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_in_a_janus_room_decode_everyone_in_order_hear_their_tones_and_chat() {
    support::test_logs();
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let tones = [("p1", 440.0), ("p2", 660.0), ("p3", 880.0)];
    let runs: Vec<_> = tones
        .iter()
        .map(|(n, t)| {
            let mut o = opts(&janus, &url, n, *t, 6.0);
            // Chat goes through confab's signaling server, media through Janus.
            o.chat = Some(format!("hello from {n}"));
            tokio::spawn(headless::run(o))
        })
        .collect();
    let reports = support::reports(runs).await;
    for me in &reports {
        eprint!("{}", me.summary());
    }
    for me in &reports {
        assert!(me.errors.is_empty(), "{}: {:?}", me.name, me.errors);
        assert_eq!(me.peers.len(), 2, "{}: {:?}", me.name, me.peers);
        for (other, tone) in tones.iter().filter(|(n, _)| *n != me.name) {
            let got = from(me, other);
            let v = &got.video;
            let sent = &reports.iter().find(|r| r.name == *other).unwrap().sent;
            // 30 fps for 6 s: an encoder starved into skipping frames fails here.
            assert!(sent.video_frames >= 150, "{other} sent {sent:?}");
            assert!(
                v.frames_decoded as f64 >= 0.8 * sent.video_frames as f64,
                "{} decoded {} of the {} frames {other} sent",
                me.name,
                v.frames_decoded,
                sent.video_frames
            );
            assert!(v.ids_in_order, "{} from {other}: ids out of order", me.name);
            assert!(v.ids_read as f64 >= 0.95 * v.frames_decoded as f64, "{v:?}");
            assert_eq!((v.width, v.height), (320, 240));
            assert_eq!(got.chat, [format!("hello from {other}")], "{}", me.name);
            // Statistics are per member though the media shares one connection.
            let stats = got.last_stats.as_ref().expect("stats for every member");
            // The last sample is up to a second old: most of this member's frames,
            // never another's too.
            assert!(
                stats.frames_decoded <= v.frames_decoded
                    && stats.frames_decoded as f64 >= 0.6 * v.frames_decoded as f64,
                "{}: stats say {} frames from {other}, decoded {}",
                me.name,
                stats.frames_decoded,
                v.frames_decoded
            );
            assert!(
                stats.video_in_kbps > 0.0 && stats.audio_in_kbps > 0.0,
                "{stats:?}"
            );
            assert!(stats.connected, "{stats:?}");
            let heard = got.audio.tone_hz.expect("a tone");
            assert!(
                (heard - tone).abs() < 5.0,
                "{} heard {heard} Hz from {other}",
                me.name
            );
        }
    }
}

async fn join(janus: &Janus, url: &str, name: &str, tone: f32) -> TestPeer {
    let mut cfg = config(url, "leave", name);
    cfg.bind_addrs = vec![janus.bind_addr()];
    cfg.sfu = Some(SfuTarget::for_room(&janus.url(), "leave"));
    TestPeer::join_with(cfg, synthetic(320, 240, tone)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_leaves_disappears_from_every_subscriber() {
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut a = join(&janus, &url, "ada", 440.0).await;
    let mut b = join(&janus, &url, "bob", 660.0).await;
    let c = join(&janus, &url, "cyd", 880.0).await;
    let (a_id, b_id, c_id) = (a.id.clone(), b.id.clone(), c.id.clone());
    for (me, others) in [(&mut a, [&b_id, &c_id]), (&mut b, [&a_id, &c_id])] {
        for o in others {
            me.seen_picture_from(o).await;
        }
    }
    c.leave().await;
    for me in [&mut a, &mut b] {
        for track in [TrackRole::Camera, TrackRole::Microphone] {
            me.seen_or_until(&format!("cyd's {track} removed"), |e| match e {
                Event::TrackRemoved { peer, track: t } if *peer == c_id && *t == track => Some(()),
                _ => None,
            })
            .await;
        }
        me.seen_or_until("cyd leaves", |e| match e {
            Event::PeerLeft { id, .. } if *id == c_id => Some(()),
            _ => None,
        })
        .await;
    }
    // The others still reach each other: a keyframe asked of bob comes (through Janus,
    // which passes the PLI on to bob's publisher connection).
    a.send(Command::RequestKeyframe {
        peer: b_id.clone(),
        track: TrackRole::Camera,
    });
    a.until("a fresh keyframe from bob", |e| match e {
        Event::KeyframeReceived { peer, .. } if *peer == b_id => Some(()),
        _ => None,
    })
    .await;
    // A publisher coming after one left is seen too (Janus may reuse the left one's
    // m-sections for it).
    let dan = join(&janus, &url, "dan", 990.0).await;
    let dan_id = dan.id.clone();
    for me in [&mut a, &mut b] {
        me.seen_picture_from(&dan_id).await;
    }
    let _ = (a.leave().await, b.leave().await, dan.leave().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_janus_stops_the_call_at_start_with_its_address() {
    let srv = support::server().await;
    let port = support::closed_port();
    let mut o = HeadlessOptions::new(&srv.ws_url(), "nojanus", "ada");
    o.bind_addrs = vec!["127.0.0.1:0".into()];
    o.sfu = Some(SfuTarget {
        url: format!("ws://127.0.0.1:{port}"),
        room: 1,
        pin: None,
        api_secret: None,
    });
    let err = headless::run(o).await.expect_err("no call without the SFU");
    let msg = err.to_string();
    assert!(
        msg.contains("Janus") && msg.contains(&port.to_string()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_shared_in_an_sfu_room_arrives_as_a_screen_and_goes_when_stopped() {
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut a = join(&janus, &url, "ada", 440.0).await;
    let b = join(&janus, &url, "bob", 660.0).await;
    let b_id = b.id.clone();
    a.seen_picture_from(&b_id).await;
    let screen = |a: &mut TestPeer| {
        a.seen
            .retain(|e| !matches!(e, Event::KeyframeReceived { .. }))
    };
    // Twice: a second share gets new m-sections or reuses the first one's.
    for round in 1..=2 {
        b.send(Command::StartScreenShare(Box::new(
            SyntheticVideo::new(640, 360, 10.0).unwrap(),
        )));
        a.until(&format!("bob's screen, share {round}"), |e| match e {
            Event::KeyframeReceived { peer, track, .. }
                if *peer == b_id && *track == TrackRole::Screen =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
        b.send(Command::StopScreenShare);
        a.until(
            &format!("bob's screen removed, share {round}"),
            |e| match e {
                Event::TrackRemoved { peer, track }
                    if *peer == b_id && *track == TrackRole::Screen =>
                {
                    Some(())
                }
                _ => None,
            },
        )
        .await;
        screen(&mut a);
    }
    // The camera never stopped.
    assert!(
        !a.seen.iter().any(|e| matches!(
            e,
            Event::TrackRemoved {
                track: TrackRole::Camera,
                ..
            }
        )),
        "{:?}",
        a.seen
    );
    let _ = (a.leave().await, b.leave().await);
}

/// A headless peer drawing as a small window would (`--window`): one other member in
/// a 640x360 grid beside its own tile is a ~316x178 tile, so it receives the 320x180
/// layer of a 640x360 camera (the middle one: the camera's announced size says so); a
/// peer with no window receives the largest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_in_a_small_window_receives_the_small_layer_one_without_the_largest() {
    support::test_logs();
    let janus = Janus::start();
    let srv = support::server().await;
    let url = srv.ws_url();
    let runs: Vec<_> = [("ada", 440.0), ("bob", 660.0)]
        .into_iter()
        .map(|(name, tone)| {
            let mut o = opts(&janus, &url, name, tone, 6.0);
            o.size = (640, 360);
            o.bitrate_bps = 1_200_000;
            if name == "bob" {
                o.window = Some((640, 360));
            }
            tokio::spawn(headless::run(o))
        })
        .collect();
    let reports = support::reports(runs).await;
    for r in &reports {
        eprint!("{}", r.summary());
    }
    let (ada, bob) = (&reports[0], &reports[1]);
    // Not `ids_in_order`: before bob's tile is known the largest layer may come, and
    // the switch repeats the id of the picture it switches at.
    let small = &from(bob, "ada").video;
    assert!(small.frames_decoded > 30, "{small:?}");
    assert!(small.last_id > small.first_id, "{small:?}");
    assert_eq!((small.width, small.height), (320, 180), "bob's window");
    let sizes: Vec<u32> = small
        .quality
        .timeline
        .iter()
        .skip(1)
        .map(|s| s.height)
        .collect();
    assert!(
        sizes.iter().all(|h| *h == 180),
        "bob's picture heights per second: {sizes:?}"
    );
    let large = &from(ada, "bob").video;
    assert!(large.ids_in_order && large.frames_decoded > 30, "{large:?}");
    assert_eq!((large.width, large.height), (640, 360), "ada has no window");
}
