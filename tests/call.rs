//! The call engine end to end on loopback: real peer connections, real H.264
//! and Opus, content checked by barcode ids and tone frequency.

mod support;

use std::time::Duration;

use confab::call::{Command, Event, LocalMedia, MediaKind, TrackRole};
use confab::headless::{self, HeadlessOptions};
use confab::media::{MediaError, SyntheticAudio, SyntheticVideo, VideoFrame, VideoSource, now_us};
use confab::signaling::protocol::{CallEndReason, LeaveReason};
use support::engine::{TestPeer, synthetic};
use support::from;

fn opts(url: &str, room: &str, name: &str, tone: f32, seconds: f64) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, room, name);
    o.seconds = seconds;
    o.tone_hz = tone;
    o.size = (640, 480);
    o.bitrate_bps = 800_000;
    o.bind_addrs = vec!["127.0.0.1:0".into()];
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_for_five_seconds_see_each_others_frames_in_order_and_hear_each_others_tone() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let a = tokio::spawn(headless::run(opts(&url, "pair", "ada", 440.0, 5.0)));
    let b = tokio::spawn(headless::run(opts(&url, "pair", "bob", 660.0, 5.0)));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    for (me, other, other_tone) in [(&a, &b, 660.0), (&b, &a, 440.0)] {
        let got = from(me, &other.name);
        let v = &got.video;
        assert!(
            other.sent.video_frames >= 100,
            "{} sent only {}",
            other.name,
            other.sent.video_frames
        );
        assert!(
            v.frames_decoded as f64 >= 0.9 * other.sent.video_frames as f64,
            "{} decoded {} of {} frames {} sent",
            me.name,
            v.frames_decoded,
            other.sent.video_frames,
            other.name
        );
        assert_eq!((v.width, v.height), (640, 480));
        assert!(v.ids_in_order, "barcode ids out of order at {}", me.name);
        assert!(v.ids_read as f64 >= 0.95 * v.frames_decoded as f64, "{v:?}");
        let lat = v
            .latency_ms
            .as_ref()
            .expect("glass-to-glass latency measured");
        assert!(lat.p50 > 0.0 && lat.p50 < 500.0, "{lat:?}");
        let au = &got.audio;
        // A packet every 20 ms from the moment the pair connected (how long connecting
        // takes is the join benchmark's business, not this test's).
        let connected_ms = got.connect_ms.expect("connected");
        let expected = (me.seconds * 1000.0 - connected_ms as f64) / 20.0;
        assert!(
            au.packets_received as f64 >= 0.9 * expected,
            "{} packets, {expected:.0} expected after connecting at {connected_ms} ms: {au:?}",
            au.packets_received
        );
        let tone = au.tone_hz.expect("tone measured");
        assert!(
            (tone - other_tone).abs() < 5.0,
            "{} heard {tone} Hz, expected {other_tone}",
            me.name
        );
        assert!(au.level_dbfs.unwrap() > -25.0, "{au:?}");
        assert!(au.clicks >= 3, "marker clicks detected: {au:?}");
        let click = au.latency_ms.as_ref().expect("click latency measured");
        assert!(click.p50 < 500.0, "{click:?}");
        assert!(got.connect_ms.is_some() && got.first_frame_ms.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_peer_mesh_decodes_both_others_at_every_peer() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let tones = [("p1", 440.0), ("p2", 660.0), ("p3", 880.0)];
    let runs: Vec<_> = tones
        .iter()
        .map(|(n, t)| {
            let mut o = opts(&url, "mesh", n, *t, 4.0);
            o.size = (320, 240);
            o.bitrate_bps = 300_000;
            tokio::spawn(headless::run(o))
        })
        .collect();
    let mut reports = Vec::new();
    for r in runs {
        reports.push(r.await.unwrap().unwrap());
    }
    for me in &reports {
        assert_eq!(me.peers.len(), 2, "{}: {:?}", me.name, me.peers);
        for (other, tone) in tones.iter().filter(|(n, _)| *n != me.name) {
            let got = from(me, other);
            assert!(
                got.video.frames_decoded >= 30,
                "{} from {other}: {:?}",
                me.name,
                got.video
            );
            assert!(got.video.ids_in_order);
            assert_eq!((got.video.width, got.video.height), (320, 240));
            let heard = got.audio.tone_hz.expect("tone");
            assert!(
                (heard - tone).abs() < 5.0,
                "{} heard {heard} from {other}",
                me.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_crosses_the_data_channel_both_ways_even_when_written_before_it_opens() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut a = TestPeer::join(&url, "chat", "ada", LocalMedia::default()).await;
    let mut b = TestPeer::join(&url, "chat", "bob", LocalMedia::default()).await;
    // Written at once: the data channel is certainly not open yet.
    b.send(Command::Chat("hello from bob".into()));
    let (from, name, text) = a
        .until("chat", |e| match e {
            Event::Chat { from, name, text } => Some((from.clone(), name.clone(), text.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        (from.as_str(), name.as_str(), text.as_str()),
        (b.id.as_str(), "bob", "hello from bob")
    );
    a.send(Command::Chat("hi bob".into()));
    a.send(Command::Chat("second".into()));
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(
            b.until("chat", |e| match e {
                Event::Chat { text, .. } => Some(text.clone()),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(got, ["hi bob", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_added_mid_call_is_decoded_remotely_and_stopping_it_removes_the_track() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let a = TestPeer::join(&url, "share", "ada", synthetic(320, 240, 440.0)).await;
    let mut b = TestPeer::join(&url, "share", "bob", synthetic(320, 240, 660.0)).await;
    let a_id = a.id.clone();
    b.until_stats("camera frames", &a_id, |s| s.frames_decoded >= 10)
        .await;

    a.send(Command::StartScreenShare(Box::new(
        SyntheticVideo::new(640, 360, 15.0).unwrap(),
    )));
    b.until("screen track", |e| match e {
        Event::TrackAdded { peer, track, kind } if *peer == a_id && *track == TrackRole::Screen => {
            assert_eq!(*kind, MediaKind::Video);
            Some(())
        }
        _ => None,
    })
    .await;
    b.seen_or_until("sharing state", |e| match e {
        Event::PeerMediaState { id, state } if *id == a_id && state.screen_sharing => Some(()),
        _ => None,
    })
    .await;
    // Stats tick every second; wait until the screen's frames show in the analyser.
    loop {
        let screen = b.analyzer.video(&a_id, TrackRole::Screen);
        if screen.frames_decoded >= 10 {
            assert_eq!((screen.width, screen.height), (640, 360));
            assert!(screen.ids_in_order);
            break;
        }
        b.until("a stats tick", |e| {
            matches!(e, Event::Stats(_)).then_some(())
        })
        .await;
    }
    let camera = b.analyzer.video(&a_id, TrackRole::Camera);
    assert_eq!(
        (camera.width, camera.height),
        (320, 240),
        "camera still flows beside the share"
    );

    a.send(Command::StopScreenShare);
    b.until("screen track removed", |e| match e {
        Event::TrackRemoved { peer, track } if *peer == a_id && *track == TrackRole::Screen => {
            Some(())
        }
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_camera_and_microphone_mid_call_swaps_the_source_behind_the_same_tracks() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let a = TestPeer::join(&url, "switch", "ada", synthetic(320, 240, 440.0)).await;
    let mut b = TestPeer::join(&url, "switch", "bob", synthetic(320, 240, 660.0)).await;
    let a_id = a.id.clone();
    b.until_stats("camera frames", &a_id, |s| s.frames_decoded >= 10)
        .await;
    let before = b.seen.len();

    a.send(Command::SetCamera(Box::new(
        SyntheticVideo::new(160, 120, 30.0).unwrap(),
    )));
    a.send(Command::SetMicrophone(Box::new(SyntheticAudio::new(880.0))));
    // The tone is measured over the last 2 s: wait for the new one to dominate.
    let mut ticks = 0;
    loop {
        let video = b.analyzer.video(&a_id, TrackRole::Camera);
        let tone = b.analyzer.audio(&a_id).tone_hz.unwrap_or(0.0);
        if (video.width, video.height) == (160, 120) && (tone - 880.0).abs() < 5.0 {
            break;
        }
        ticks += 1;
        assert!(
            ticks < 15,
            "new sources not seen after {ticks} s: {}x{}, {tone} Hz",
            video.width,
            video.height
        );
        b.until("a stats tick", |e| {
            matches!(e, Event::Stats(_)).then_some(())
        })
        .await;
    }
    let renegotiated: Vec<_> = b.seen[before..]
        .iter()
        .filter(|e| {
            matches!(e, Event::TrackAdded { peer, .. } | Event::TrackRemoved { peer, .. } if *peer == a_id)
        })
        .collect();
    assert!(
        renegotiated.is_empty(),
        "the same tracks carry the new sources: {renegotiated:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_renegotiating_at_once_still_converge() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut a = TestPeer::join(&url, "glare", "ada", synthetic(160, 120, 440.0)).await;
    let mut b = TestPeer::join(&url, "glare", "bob", synthetic(160, 120, 660.0)).await;
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    a.connected_to(&b_id).await;
    b.connected_to(&a_id).await;
    // Both add a track in the same instant: two offers cross on the wire.
    a.send(Command::StartScreenShare(Box::new(
        SyntheticVideo::new(320, 240, 10.0).unwrap(),
    )));
    b.send(Command::StartScreenShare(Box::new(
        SyntheticVideo::new(320, 240, 10.0).unwrap(),
    )));
    b.until("a's screen", |e| {
        matches!(e, Event::TrackAdded { peer, track, .. } if *peer == a_id && *track == TrackRole::Screen)
            .then_some(())
    })
    .await;
    a.until("b's screen", |e| {
        matches!(e, Event::TrackAdded { peer, track, .. } if *peer == b_id && *track == TrackRole::Screen)
            .then_some(())
    })
    .await;
    let sa = a.until_stats("stats", &b_id, |s| s.connected).await;
    let sb = b.until_stats("stats", &a_id, |s| s.connected).await;
    assert!(sa.connected && sb.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_from_the_receiver_brings_a_keyframe_at_once() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut a = TestPeer::join(&url, "pli", "ada", synthetic(640, 480, 440.0)).await;
    let mut b = TestPeer::join(&url, "pli", "bob", LocalMedia::default()).await;
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    b.until_stats("frames", &a_id, |s| s.frames_decoded >= 30)
        .await;
    // A call starts at 500 kbit/s and climbs: the keyframe is paced at the estimate, so
    // ask once ada's estimate is well past the configured 800 kbit/s.
    a.until_stats("the climb", &b_id, |s| {
        s.send_estimate_kbps.is_some_and(|e| e >= 1500.0)
    })
    .await;
    // No periodic keyframes are configured, so the next IDR answers our PLI.
    let asked = now_us();
    b.send(Command::RequestKeyframe {
        peer: a_id.clone(),
        track: TrackRole::Camera,
    });
    let arrived = b
        .until("keyframe", |e| match e {
            Event::KeyframeReceived { peer, track, at_us }
                if *peer == a_id && *track == TrackRole::Camera && *at_us >= asked =>
            {
                Some(*at_us)
            }
            _ => None,
        })
        .await;
    // The next frame answers it, not a timeout: a few frame intervals at most, with
    // room for a loaded machine (how fast is the network bench's recovery figure).
    let ms = (arrived - asked) as f64 / 1000.0;
    assert!(ms < 250.0, "keyframe arrived {ms:.1} ms after the PLI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_peer_and_a_killed_one_are_dropped_by_the_others() {
    // A killed peer is one that does not come back within the resume grace period.
    let srv = support::server_with(|c| c.resume_grace = Duration::from_millis(500)).await;
    let url = srv.ws_url();
    let mut a = TestPeer::join(&url, "drop", "ada", synthetic(160, 120, 440.0)).await;
    let b = TestPeer::join(&url, "drop", "bob", synthetic(160, 120, 660.0)).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "headless",
            "--server",
            &url,
            "--room",
            "drop",
            "--name",
            "carl",
            "--size",
            "160x120",
            "--seconds",
            "120",
            "--bind",
            "127.0.0.1",
        ])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .expect("confab headless starts");
    let carl = a
        .until("carl joins", |e| match e {
            Event::PeerJoined { id, name, .. } if name == "carl" => Some(id.clone()),
            _ => None,
        })
        .await;
    let (b_id, carl_id) = (b.id.clone(), carl.clone());
    a.until_stats("media from carl", &carl_id, |s| s.frames_decoded > 5)
        .await;
    a.until_stats("media from bob", &b_id, |s| s.frames_decoded > 5)
        .await;

    let left_at = std::time::Instant::now();
    b.leave().await;
    let reason = a
        .until("bob leaves", |e| match e {
            Event::PeerLeft { id, reason } if *id == b_id => Some(*reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, LeaveReason::Left);
    assert!(
        left_at.elapsed() < Duration::from_secs(2),
        "took {:?}",
        left_at.elapsed()
    );
    let after = a
        .until("stats", |e| match e {
            Event::Stats(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert!(
        after.iter().all(|s| s.id != b_id),
        "connection to bob still open: {after:?}"
    );

    let killed_at = std::time::Instant::now();
    child.start_kill().unwrap();
    let reason = a
        .until("carl vanishes", |e| match e {
            Event::PeerLeft { id, reason } if *id == carl_id => Some(*reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, LeaveReason::Disconnected);
    assert!(
        killed_at.elapsed() < Duration::from_secs(2),
        "took {:?}",
        killed_at.elapsed()
    );
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_accepted_goes_private_and_one_declined_tells_why() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut a = TestPeer::join(&url, "lobby", "ada", synthetic(160, 120, 440.0)).await;
    let mut b = TestPeer::join(&url, "lobby", "bob", synthetic(160, 120, 660.0)).await;
    let mut c = TestPeer::join(&url, "lobby", "cy", LocalMedia::default()).await;
    let (a_id, b_id, c_id) = (a.id.clone(), b.id.clone(), c.id.clone());

    a.send(Command::Invite {
        to: b_id.clone(),
        metadata: "{\"video\":true}".into(),
    });
    let call_id = b
        .until("ring", |e| match e {
            Event::IncomingCall {
                call_id,
                from,
                from_name,
                metadata,
            } => {
                assert_eq!(
                    (from.as_str(), from_name.as_str(), metadata.as_str()),
                    (a_id.as_str(), "ada", "{\"video\":true}")
                );
                Some(call_id.clone())
            }
            _ => None,
        })
        .await;
    b.send(Command::Accept(call_id.clone()));
    for p in [&mut a, &mut b] {
        let room = p
            .until("joined the call room", |e| match e {
                Event::Joined { room, .. } if room.starts_with("call:") => Some(room.clone()),
                _ => None,
            })
            .await;
        assert!(room.ends_with(&call_id));
    }
    // In the private room only the two see each other, and media flows.
    b.until_stats("frames from ada in the call", &a_id, |s| {
        s.frames_decoded >= 10
    })
    .await;
    let left: Vec<String> = {
        let mut ids = Vec::new();
        while ids.len() < 2 {
            ids.push(
                c.until("left lobby", |e| match e {
                    Event::PeerLeft { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .await,
            );
        }
        ids
    };
    assert!(left.contains(&a_id) && left.contains(&b_id));

    a.send(Command::Hangup);
    for p in [&mut a, &mut b] {
        let reason = p
            .until("call ended", |e| match e {
                Event::CallEnded { reason, .. } => Some(*reason),
                _ => None,
            })
            .await;
        assert_eq!(reason, CallEndReason::Hangup);
        p.until("back in the lobby", |e| match e {
            Event::Joined { room, .. } if room == "lobby" => Some(()),
            _ => None,
        })
        .await;
    }

    // A declined call: the caller hears the reason, nobody moves.
    a.send(Command::Invite {
        to: c_id.clone(),
        metadata: String::new(),
    });
    let call_id = c
        .until("ring", |e| match e {
            Event::IncomingCall { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .await;
    c.send(Command::Decline {
        call_id,
        reason: Some("busy".into()),
    });
    let (reason, detail) = a
        .until("declined", |e| match e {
            Event::CallEnded { reason, detail, .. } => Some((*reason, detail.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        (reason, detail.as_deref()),
        (CallEndReason::Declined, Some("busy"))
    );
}

/// A camera that works for a while and then vanishes, as an unplugged one does.
struct VanishingCamera {
    inner: SyntheticVideo,
    left: u32,
}

impl VideoSource for VanishingCamera {
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        if self.left == 0 {
            return Err(MediaError::Device("camera unplugged".into()));
        }
        self.left -= 1;
        self.inner.next_frame()
    }
    fn describe(&self) -> String {
        "test camera".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_vanishes_mid_call_is_reported_and_the_call_goes_on() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let mut media = synthetic(160, 120, 440.0);
    media.camera = Some(Box::new(VanishingCamera {
        inner: SyntheticVideo::new(160, 120, 30.0).unwrap(),
        left: 45,
    }));
    let mut a = TestPeer::join(&url, "unplug", "ada", media).await;
    let mut b = TestPeer::join(&url, "unplug", "bob", LocalMedia::default()).await;
    let a_id = a.id.clone();
    let msg = a
        .until("device error", |e| match e {
            Event::Error(m) => Some(m.clone()),
            _ => None,
        })
        .await;
    assert!(msg.contains("camera unplugged"), "{msg}");
    b.until("ada has no camera now", |e| match e {
        Event::PeerMediaState { id, state } if *id == a_id && !state.has_camera => Some(()),
        _ => None,
    })
    .await;
    // Audio keeps flowing after the camera died.
    let before = b
        .until_stats("audio", &a_id, |s| s.audio_packets_received > 0)
        .await;
    b.until_stats("more audio", &a_id, |s| {
        s.audio_packets_received > before.audio_packets_received + 20
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaking_into_a_muted_microphone_is_reported_until_unmuted() {
    let srv = support::server().await;
    let url = srv.ws_url();
    // The synthetic tone (about -13.5 dBFS) stands for someone speaking.
    let mut a = TestPeer::join(&url, "muted", "ada", synthetic(160, 120, 440.0)).await;
    let speaking = |e: &Event| match e {
        Event::SpeakingWhileMuted(s) => Some(*s),
        _ => None,
    };
    // Heard while unmuted: nothing to say (a few ticks of it).
    for _ in 0..2 {
        a.until("a stats tick", |e| {
            matches!(e, Event::Stats(_)).then_some(())
        })
        .await;
    }
    assert!(a.seen.iter().all(|e| speaking(e).is_none()), "{:?}", a.seen);
    a.send(Command::SetAudioMuted(true));
    assert!(a.until("speaking while muted", speaking).await);
    a.send(Command::SetAudioMuted(false));
    assert!(!a.until("unmuted", speaking).await);
}
