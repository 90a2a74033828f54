//! Room modes with a real Janus (`support/janus.rs`): the server moves a room's media to
//! a VideoRoom when its creator asks or it grows past `mesh_max`, and back to a mesh
//! when Janus dies; engines follow without anyone rejoining. Run under `.ci/netns`.

mod support;

use std::time::Duration;

use confab::call::{Event, TrackRole};
use confab::headless::{self, HeadlessOptions};
use confab::media::now_us;
use serde_json::json;
use support::Raw;
use support::engine::{TestPeer, config, synthetic};
use support::janus::{Janus, sfu_server};

/// The longest a viewer may go without a picture from someone while the room moves.
const MOVE_GAP_MS: f64 = 2000.0;

/// One room at a time: each is several encoders and a Janus on a 2-core machine, and
/// peers starved of CPU show gaps these tests would count.
static ONE_ROOM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn peer(url: &str, room: &str, name: &str, tone: f32, bind: &str, ask_sfu: bool) -> TestPeer {
    let mut cfg = config(url, room, name);
    cfg.bind_addrs = vec![bind.to_owned()];
    cfg.video.bitrate_bps = 300_000;
    cfg.ask_sfu = ask_sfu;
    TestPeer::join_with(cfg, synthetic(320, 180, tone)).await
}

/// Waits for a keyframe of `other`'s camera among the events from `since` (an index
/// into `me.seen`) on: its media arrives.
async fn picture_since(me: &mut TestPeer, since: usize, other: &str) {
    let other = other.to_owned();
    let from_other = |e: &Event| match e {
        Event::KeyframeReceived { peer, track, .. }
            if *peer == other && *track == TrackRole::Camera =>
        {
            Some(())
        }
        _ => None,
    };
    if me.seen[since..].iter().any(|e| from_other(e).is_some()) {
        return;
    }
    me.until(&format!("a picture from {other}"), from_other)
        .await
}

async fn until_mode(me: &mut TestPeer, sfu: bool) {
    me.seen_or_until(&format!("media mode sfu={sfu}"), |e| match e {
        Event::MediaMode { sfu: s } if *s == sfu => Some(()),
        _ => None,
    })
    .await
}

/// Waits until `me` decoded `more` frames of `other`'s camera beyond what it has now:
/// the analyser counts them as they are decoded, so this looks every 50 ms.
async fn until_more_frames(me: &TestPeer, other: &str, more: u64) {
    let base = me.analyzer.video(other, TrackRole::Camera).frames_decoded;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = me.analyzer.video(other, TrackRole::Camera).frames_decoded;
        if now >= base + more {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: only {} more frames from {other} in 20 s",
            me.name,
            now - base
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `me` decoded `other`'s frame ids in order, at the size sent.
fn in_order(me: &TestPeer, other: &TestPeer) -> confab::headless::VideoReport {
    let v = me.analyzer.video(&other.id, TrackRole::Camera);
    assert!(
        v.frames_decoded > 0,
        "{} got nothing from {}",
        me.name,
        other.name
    );
    assert!(
        v.ids_in_order,
        "{} from {}: ids out of order {v:?}",
        me.name, other.name
    );
    assert!(v.ids_read as f64 >= 0.95 * v.frames_decoded as f64, "{v:?}");
    assert_eq!((v.width, v.height), (320, 180));
    v
}

/// [`in_order`], and none lost for longer than `MOVE_GAP_MS`.
fn in_order_without_long_gaps(me: &TestPeer, other: &TestPeer) {
    let v = in_order(me, other);
    let longest = v.quality.gaps.iter().map(|g| g.ms).fold(0.0, f64::max);
    eprintln!(
        "{} from {}: {} frames, longest gap {longest:.0} ms",
        me.name, other.name, v.frames_decoded
    );
    assert!(
        longest <= MOVE_GAP_MS,
        "{} went {longest} ms without a picture from {}: {:?}",
        me.name,
        other.name,
        v.quality.gaps
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_member_moves_a_four_member_mesh_to_the_sfu_and_pictures_go_on() {
    let _one = ONE_ROOM.lock().await;
    let janus = Janus::start();
    let srv = janus.server(4).await;
    let (url, bind) = (srv.ws_url(), janus.bind_addr());
    let mut four = Vec::new();
    for (n, name) in ["ada", "bob", "cyd", "dan"].iter().enumerate() {
        four.push(peer(&url, "grow", name, 400.0 + 100.0 * n as f32, &bind, false).await);
    }
    let ids: Vec<String> = four.iter().map(|p| p.id.clone()).collect();
    for me in four.iter_mut() {
        let mine = me.id.clone();
        for other in ids.iter().filter(|o| **o != mine) {
            // Half a second of pictures in the mesh first.
            until_more_frames(me, other, 15).await;
        }
        until_mode(me, false).await;
    }
    let moved_at = now_us();
    let mut eve = peer(&url, "grow", "eve", 900.0, &bind, false).await;
    for me in four.iter_mut() {
        until_mode(me, true).await;
        let moved = me.seen.len();
        let mine = me.id.clone();
        for other in ids.iter().chain([&eve.id]).filter(|o| **o != mine) {
            picture_since(me, moved, other).await;
        }
    }
    // The fifth never had a mesh: its welcome said sfu.
    until_mode(&mut eve, true).await;
    assert!(!eve.seen.contains(&Event::MediaMode { sfu: false }));
    for other in &ids {
        eve.seen_picture_from(other).await;
    }
    // A second of pictures through the SFU, then the record: in order, no long gap.
    for me in four.iter() {
        for other in four.iter().filter(|o| o.id != me.id) {
            until_more_frames(me, &other.id, 30).await;
            in_order_without_long_gaps(me, other);
            let first = me
                .analyzer
                .video(&other.id, TrackRole::Camera)
                .first_frame_us;
            assert!(
                first.is_some_and(|t| t < moved_at),
                "{} had pictures from {} before the move: {first:?} vs {moved_at}",
                me.name,
                other.name
            );
        }
        until_more_frames(me, &eve.id, 30).await;
        in_order(me, &eve);
    }
    for other in four.iter() {
        until_more_frames(&eve, &other.id, 30).await;
        in_order(&eve, other);
    }
    // Nobody left or joined again on the way.
    for me in four.iter().chain([&eve]) {
        assert!(
            !me.seen.iter().any(|e| matches!(e, Event::PeerLeft { .. })),
            "{}: {:?}",
            me.name,
            me.seen
        );
    }
    for p in four.into_iter().chain([eve]) {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_creator_asks_is_an_sfu_room_from_the_first_welcome() {
    let _one = ONE_ROOM.lock().await;
    let janus = Janus::start();
    let srv = janus.server(4).await;
    // On the wire: the creator's very first welcome names the VideoRoom and its pin.
    let mut raw = Raw::connect(&srv).await;
    let w = raw
        .join(json!({"type":"join","room":"wire","name":"raw","sfu":true}))
        .await;
    assert_eq!(w["media"]["mode"], "sfu", "{w}");
    assert_eq!(w["media"]["url"], janus.url());
    assert!(w["media"]["room"].as_u64().is_some_and(|r| r > 0), "{w}");
    assert!(
        w["media"]["pin"].as_str().is_some_and(|p| p.len() >= 16),
        "{w}"
    );
    // Engines: both publish to it from the start, never in a mesh.
    let (url, bind) = (srv.ws_url(), janus.bind_addr());
    let mut ada = peer(&url, "asked", "ada", 440.0, &bind, true).await;
    let mut bob = peer(&url, "asked", "bob", 660.0, &bind, false).await;
    let (a, b) = (ada.id.clone(), bob.id.clone());
    ada.seen_picture_from(&b).await;
    bob.seen_picture_from(&a).await;
    until_more_frames(&ada, &b, 30).await;
    until_more_frames(&bob, &a, 30).await;
    in_order(&ada, &bob);
    in_order(&bob, &ada);
    for me in [&ada, &bob] {
        let modes: Vec<&Event> = me
            .seen
            .iter()
            .filter(|e| matches!(e, Event::MediaMode { .. }))
            .collect();
        assert_eq!(modes, [&Event::MediaMode { sfu: true }], "{}", me.name);
    }
    let _ = (ada.leave().await, bob.leave().await);
}

fn sfu_opts(url: &str, janus: &Janus, name: &str, tone: f32) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, "six", name);
    o.seconds = 10.0;
    o.tone_hz = tone;
    o.size = (320, 180);
    o.bitrate_bps = 200_000;
    o.bind_addrs = vec![janus.bind_addr()];
    o.ask_sfu = true;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_headless_peers_in_an_sfu_room_decode_everyone_in_order() {
    let _one = ONE_ROOM.lock().await;
    support::test_logs();
    let janus = Janus::start();
    let srv = janus.server(4).await;
    let url = srv.ws_url();
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let runs: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            tokio::spawn(headless::run(sfu_opts(
                &url,
                &janus,
                name,
                300.0 + 100.0 * n as f32,
            )))
        })
        .collect();
    let reports = support::reports(runs).await;
    for me in &reports {
        eprint!("{}", me.summary());
    }
    for me in &reports {
        assert!(me.errors.is_empty(), "{}: {:?}", me.name, me.errors);
        assert_eq!(me.media, ["sfu"], "{}", me.name);
        assert_eq!(me.peers.len(), 5, "{}: {:?}", me.name, me.peers);
        for other in reports.iter().filter(|r| r.name != me.name) {
            let v = &support::from(me, &other.name).video;
            assert!(
                v.frames_decoded as f64 >= 0.6 * other.sent.video_frames as f64,
                "{} decoded {} of the {} frames {} sent",
                me.name,
                v.frames_decoded,
                other.sent.video_frames,
                other.name
            );
            assert!(
                v.ids_in_order,
                "{} from {}: ids out of order",
                me.name, other.name
            );
            assert!(v.ids_read as f64 >= 0.95 * v.frames_decoded as f64, "{v:?}");
            assert_eq!((v.width, v.height), (320, 180));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_janus_leaves_the_room_a_mesh_and_its_members_are_told() {
    let _one = ONE_ROOM.lock().await;
    let port = support::closed_port();
    let srv = sfu_server(&format!("ws://127.0.0.1:{port}"), 4).await;
    let url = srv.ws_url();
    let mut ada = peer(&url, "nojanus", "ada", 440.0, "127.0.0.1:0", true).await;
    let told = ada
        .seen_or_until("the SFU's failure", |e| match e {
            Event::Error(m) if m.contains("sfu_unavailable") => Some(m.clone()),
            _ => None,
        })
        .await;
    assert!(
        told.contains(&port.to_string()) && told.contains("mesh"),
        "{told}"
    );
    assert!(ada.seen.contains(&Event::MediaMode { sfu: false }));
    let mut bob = peer(&url, "nojanus", "bob", 660.0, "127.0.0.1:0", false).await;
    let (a, b) = (ada.id.clone(), bob.id.clone());
    ada.seen_picture_from(&b).await;
    bob.seen_picture_from(&a).await;
    until_more_frames(&ada, &b, 30).await;
    until_more_frames(&bob, &a, 30).await;
    in_order_without_long_gaps(&ada, &bob);
    in_order_without_long_gaps(&bob, &ada);
    for me in [&ada, &bob] {
        assert!(
            !me.seen.contains(&Event::MediaMode { sfu: true }),
            "{}",
            me.name
        );
    }
    let _ = (ada.leave().await, bob.leave().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_dying_mid_call_in_a_small_room_falls_back_to_a_mesh_and_pictures_resume() {
    let _one = ONE_ROOM.lock().await;
    let mut janus = Janus::start();
    let srv = janus.server(4).await;
    let (url, bind) = (srv.ws_url(), janus.bind_addr());
    let mut ada = peer(&url, "fragile", "ada", 440.0, &bind, true).await;
    let mut bob = peer(&url, "fragile", "bob", 660.0, &bind, false).await;
    let (a, b) = (ada.id.clone(), bob.id.clone());
    ada.seen_picture_from(&b).await;
    bob.seen_picture_from(&a).await;
    janus.kill();
    for (me, other) in [(&mut ada, &b), (&mut bob, &a)] {
        until_mode(me, false).await;
        let fell_back = me.seen.len();
        me.seen_or_until("told why", |e| match e {
            Event::Error(m) if m.contains("sfu_unavailable") && m.contains("back to a mesh") => {
                Some(())
            }
            _ => None,
        })
        .await;
        picture_since(me, fell_back, other).await;
    }
    until_more_frames(&ada, &b, 30).await;
    until_more_frames(&bob, &a, 30).await;
    for (me, other) in [(&ada, &bob), (&bob, &ada)] {
        let v = me.analyzer.video(&other.id, TrackRole::Camera);
        assert!(v.ids_in_order, "{} from {}: {v:?}", me.name, other.name);
        assert_eq!((v.width, v.height), (320, 180));
    }
    let _ = (ada.leave().await, bob.leave().await);
}

#[test]
fn serve_says_what_its_sfu_flag_takes() {
    for (flags, says) in [
        (
            &["--sfu", "ws://127.0.0.1:8188"][..],
            "janus=ws://HOST:PORT",
        ),
        (&["--sfu", "janus=127.0.0.1:8188"][..], "ws://"),
        (
            &["--sfu", "janus=ws://127.0.0.1:8188", "--mesh-max", "0"][..],
            "--mesh-max",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-stun"])
            .args(flags)
            .output()
            .expect("confab runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
}

/// `confab headless` as a process, media bound where Janus reaches it; its JSON report.
async fn headless_report(url: &str, janus: &Janus, name: &str) -> serde_json::Value {
    let bind = janus.bind_addr();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["headless", "--server", url, "--room", "cli", "--name", name])
        .args(["--bind", bind.trim_end_matches(":0"), "--seconds", "6"])
        .args(["--size", "320x180", "--bitrate-kbps", "200"])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output()
        .await
        .expect("confab headless runs");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confab_serve_with_sfu_moves_a_room_past_mesh_max_for_headless_processes() {
    let _one = ONE_ROOM.lock().await;
    let janus = Janus::start();
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-stun"])
        .args([
            "--sfu",
            &format!("janus={}", janus.url()),
            "--mesh-max",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("confab serve starts");
    let url = support::first_line_url(serve.stdout.take().unwrap()).await;
    let (a, b) = tokio::join!(
        headless_report(&url, &janus, "ada"),
        headless_report(&url, &janus, "bob")
    );
    // Whoever came second moved the room: the first saw a mesh, then both the SFU.
    let mut modes = [a["media"].to_string(), b["media"].to_string()];
    modes.sort();
    assert_eq!(modes, [r#"["mesh","sfu"]"#, r#"["sfu"]"#], "{a}\n{b}");
    for (me, other) in [(&a, &b), (&b, &a)] {
        assert_eq!(me["errors"], json!([]), "{me}");
        let v = &me["peers"][0]["video"];
        assert_eq!(me["peers"][0]["name"], other["name"]);
        assert!(v["frames_decoded"].as_u64().unwrap() >= 60, "{v}");
        assert_eq!(v["ids_in_order"], true, "{v}");
    }
}
