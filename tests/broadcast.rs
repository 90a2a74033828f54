//! Broadcast rooms: its creator presents, whoever joins later only watches. A viewer
//! opens no source and sends nothing, sees and hears the presenter, and chats; the
//! presenter sees how many watch. Through the server's SFU when it has one, in a mesh
//! otherwise (viewers then connect only to presenters). Run under `.ci/netns`.

mod support;

use confab::call::{Command, Event};
use confab::headless::{self, HeadlessOptions, Report};
use support::engine::{TestPeer, config, synthetic};
use support::from;
use support::janus::Janus;

const TONE: f32 = 550.0;

/// Ada creates the broadcast, two viewers join it by its name (no role asked for), one
/// of them chats; returns what the viewers saw and what Ada saw.
async fn broadcast(url: &str, bind: &str) -> (Vec<Report>, TestPeer) {
    let mut cfg = config(url, "launch", "ada");
    cfg.bind_addrs = vec![bind.to_owned()];
    cfg.video.bitrate_bps = 300_000;
    cfg.broadcast = true;
    let mut ada = TestPeer::join_with(cfg, synthetic(320, 180, TONE)).await;
    let viewers: Vec<_> = ["v1", "v2"]
        .into_iter()
        .map(|name| {
            let mut o = HeadlessOptions::new(url, "launch", name);
            o.seconds = 5.0;
            o.size = (320, 180);
            o.bind_addrs = vec![bind.to_owned()];
            if name == "v1" {
                o.chat = Some("hello from the audience".into());
            } else {
                // Asked for, rather than the broadcast's default: no source is opened.
                o.viewer = true;
            }
            tokio::spawn(headless::run(o))
        })
        .collect();
    ada.seen_or_until("two watching", |e| {
        matches!(e, Event::Viewers(2)).then_some(())
    })
    .await;
    ada.send(Command::Chat("welcome, everyone".into()));
    let reports = support::reports(viewers).await;
    (reports, ada)
}

fn check_viewers(reports: &[Report]) {
    for v in reports {
        eprint!("{}", v.summary());
        assert!(v.errors.is_empty(), "{}: {:?}", v.name, v.errors);
        assert!(v.viewer && v.broadcast, "{}: not told it watches", v.name);
        // Nothing opened, nothing sent.
        assert_eq!(
            (
                v.sent.video_frames_encoded,
                v.sent.audio_frames,
                v.sent.uplink_bytes
            ),
            (0, 0, 0),
            "{} sent {:?}",
            v.name,
            v.sent
        );
        let ada = from(v, "ada");
        assert!(
            ada.video.frames_decoded >= 60 && ada.video.ids_in_order,
            "{} saw {:?}",
            v.name,
            ada.video
        );
        let heard = ada.audio.tone_hz.expect("Ada's tone");
        assert!((heard - TONE).abs() < 5.0, "{} heard {heard} Hz", v.name);
        assert_eq!(ada.chat, ["welcome, everyone"], "{}", v.name);
        // The other viewer sends no pictures to see.
        let other = if v.name == "v1" { "v2" } else { "v1" };
        if let Some(o) = v.peers.iter().find(|p| p.name == other) {
            assert_eq!(o.video.frames_decoded, 0, "{}: {o:?}", v.name);
        }
    }
    // A viewer's chat reaches the other viewer too, with or without a connection.
    let v2 = reports.iter().find(|r| r.name == "v2").unwrap();
    assert_eq!(from(v2, "v1").chat, ["hello from the audience"]);
}

/// Ada got the audience's chat and never a track from it.
async fn presenter_heard_the_audience(ada: &mut TestPeer) {
    ada.seen_or_until("the audience's chat", |e| match e {
        Event::Chat { text, .. } if text == "hello from the audience" => Some(()),
        _ => None,
    })
    .await;
    let tracks = ada.tracks_added();
    assert!(tracks.is_empty(), "viewers sent {tracks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_through_the_sfu_has_viewers_who_watch_and_send_nothing() {
    let janus = Janus::start();
    let srv = janus.server(4).await;
    let (reports, mut ada) = broadcast(&srv.ws_url(), &janus.bind_addr()).await;
    check_viewers(&reports);
    for v in &reports {
        assert_eq!(
            v.media.first().map(String::as_str),
            Some("sfu"),
            "{}",
            v.name
        );
    }
    presenter_heard_the_audience(&mut ada).await;
    let sent = ada.leave().await;
    assert!(sent.video_frames > 60, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_without_an_sfu_connects_viewers_only_to_the_presenter() {
    let srv = support::server().await;
    let (reports, mut ada) = broadcast(&srv.ws_url(), "127.0.0.1:0").await;
    check_viewers(&reports);
    for v in &reports {
        assert_eq!(
            v.media.first().map(String::as_str),
            Some("mesh"),
            "{}",
            v.name
        );
        // Connected to Ada only.
        let connected: Vec<&str> = v
            .peers
            .iter()
            .filter(|p| p.connect_ms.is_some())
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(connected, ["ada"], "{}", v.name);
    }
    presenter_heard_the_audience(&mut ada).await;
    let sent = ada.leave().await;
    assert!(sent.video_frames > 60, "{sent:?}");
}
