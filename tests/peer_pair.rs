//! Two `Peer`s in one process over loopback, signaling relayed through channels.
//! Timeouts only bound failures; every wait is on an event.

#[path = "support/peer_pair.rs"]
mod harness;

use std::time::{Duration, Instant};

use confab::call::{
    ConnectionState, KeyframeWanted, MediaKind, Peer, PeerConfig, PeerEvent, RemoteMedia,
};
use harness::{
    LinkOptions, Loss, STEP, Side, assert_no_errors, connected_pair, pair, remote_track, settle,
    synthetic_au, synthetic_opus,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const FRAME: Duration = Duration::from_millis(33);
const PTIME: Duration = Duration::from_millis(20);

async fn receive(rx: &mut mpsc::Receiver<RemoteMedia>, n: usize) -> Vec<RemoteMedia> {
    let mut got = Vec::with_capacity(n);
    timeout(STEP, async {
        while got.len() < n {
            match rx.recv().await {
                Some(m) => got.push(m),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} media units arrived", got.len()));
    assert_eq!(got.len(), n, "media channel closed early");
    got
}

fn frames(media: Vec<RemoteMedia>) -> Vec<(Vec<u8>, bool)> {
    media
        .into_iter()
        .map(|m| match m {
            RemoteMedia::Video(f) => (f.data.to_vec(), f.complete),
            RemoteMedia::Audio(_) => panic!("audio on a video track"),
        })
        .collect()
}

/// Paced like a camera would be, only faster; pacing is load shaping, not synchronisation.
async fn send_video(sender: &confab::call::VideoTrackSender, range: std::ops::Range<usize>) {
    let mut tick = tokio::time::interval(Duration::from_millis(8));
    for i in range {
        tick.tick().await;
        sender
            .send(&synthetic_au(i, 30), FRAME)
            .await
            .expect("send AU");
    }
}

async fn send_audio(sender: &confab::call::AudioTrackSender, n: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..n {
        tick.tick().await;
        sender
            .send(&synthetic_opus(i), PTIME)
            .await
            .expect("send opus");
    }
}

async fn expect_video(
    side: &mut Side,
    id: &str,
    range: std::ops::Range<usize>,
) -> mpsc::Receiver<RemoteMedia> {
    let (kind, mut rx) = remote_track(side, id).await;
    assert_eq!(kind, MediaKind::Video);
    let got = frames(receive(&mut rx, range.len()).await);
    for (i, (data, complete)) in range.zip(got) {
        assert!(complete, "{id}: AU {i} flagged incomplete on loopback");
        assert!(
            data == synthetic_au(i, 30),
            "{id}: AU {i} differs ({} bytes)",
            data.len()
        );
    }
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_both_ways_and_delivers_h264_access_units_and_opus_intact() {
    let start = Instant::now();
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let a_cam = a.peer.add_video_track("a-cam", "a").await.unwrap();
    let a_mic = a.peer.add_audio_track("a-mic", "a").await.unwrap();
    let b_cam = b.peer.add_video_track("b-cam", "b").await.unwrap();
    let b_mic = b.peer.add_audio_track("b-mic", "b").await.unwrap();

    a.connected().await;
    b.connected().await;
    let connected = start.elapsed();
    settle(&mut a, &mut b, &[&a_cam, &a_mic, &b_cam, &b_mic]).await;
    println!(
        "connected after {connected:?}, negotiated after {:?}",
        start.elapsed()
    );
    println!(
        "negotiation a {:?} b {:?}",
        a.negotiation(),
        b.negotiation()
    );

    let senders = tokio::spawn(async move {
        tokio::join!(
            send_video(&a_cam, 0..90),
            send_audio(&a_mic, 50),
            send_video(&b_cam, 0..90),
            send_audio(&b_mic, 50)
        );
    });

    expect_video(&mut b, "a-cam", 0..90).await;
    expect_video(&mut a, "b-cam", 0..90).await;
    for (side, id) in [(&mut b, "a-mic"), (&mut a, "b-mic")] {
        let (kind, mut rx) = remote_track(side, id).await;
        assert_eq!(kind, MediaKind::Audio);
        let got = receive(&mut rx, 50).await;
        for (i, m) in got.into_iter().enumerate() {
            let RemoteMedia::Audio(p) = m else {
                panic!("video on audio track")
            };
            assert_eq!(p.data.to_vec(), synthetic_opus(i), "{id}: packet {i}");
        }
    }
    senders.await.unwrap();

    let stats = a.peer.stats().await;
    println!("stats a: {stats:#?}");
    let cam = stats
        .outbound
        .iter()
        .find(|t| t.track_id == "a-cam")
        .expect("outbound a-cam");
    assert!(cam.packets_sent >= 90 && cam.bytes_sent > 90 * 1500);
    let inbound = stats
        .inbound
        .iter()
        .find(|t| t.track_id == "b-cam")
        .expect("inbound b-cam");
    assert!(inbound.packets_received >= 90);
    assert_no_errors(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_advertises_both_h264_profiles_with_rtx_flexfec_and_opus_with_fec_and_dtx() {
    // A lone peer: nothing has narrowed its codecs by negotiation yet.
    let (peer, _events) = Peer::new(PeerConfig::loopback()).await.unwrap();
    peer.add_video_track("cam", "s").await.unwrap();
    peer.add_audio_track("mic", "s").await.unwrap();
    let sdp = peer.create_offer().await.unwrap().sdp;
    for line in [
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=fmtp:103 apt=102",
        "a=fmtp:107 apt=106",
        "a=rtcp-fb:102 nack pli",
        "a=rtcp-fb:102 ccm fir",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1",
        "a=ssrc-group:FID ",
        "a=rtpmap:118 flexfec-03/90000",
        "a=ssrc-group:FEC-FR ",
    ] {
        assert!(sdp.contains(line), "offer lacks {line:?}:\n{sdp}");
    }
    peer.close().await.unwrap();
    // Janus has no use for FEC: a connection to it offers none.
    let config = PeerConfig {
        fec: false,
        ..PeerConfig::loopback()
    };
    let (peer, _events) = Peer::new(config).await.unwrap();
    peer.add_video_track("cam", "s").await.unwrap();
    let sdp = peer.create_offer().await.unwrap().sdp;
    assert!(!sdp.contains("flexfec") && !sdp.contains("FEC-FR"), "{sdp}");
    peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_flows_both_ways_in_order() {
    let (mut a, mut b, took) = connected_pair(LinkOptions::default()).await;
    println!("connected after {took:?}");
    let t0 = Instant::now();
    a.expect("DataOpen", STEP, |e| matches!(e, PeerEvent::DataOpen))
        .await;
    b.expect("DataOpen", STEP, |e| matches!(e, PeerEvent::DataOpen))
        .await;
    println!("chat open {:?} after connected", t0.elapsed());

    for i in 0..20 {
        a.peer.send_data(&format!("a says {i}")).await.unwrap();
        b.peer.send_data(&format!("b says {i}")).await.unwrap();
    }
    for (side, from) in [(&mut b, "a"), (&mut a, "b")] {
        for i in 0..20 {
            let want = format!("{from} says {i}");
            let got = side
                .expect(&want, STEP, |e| matches!(e, PeerEvent::Data(_)))
                .await;
            assert!(
                matches!(got, PeerEvent::Data(ref s) if *s == want),
                "got {got:?}, want {want}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_video_track_renegotiates_and_its_removal_ends_it_remotely() {
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let cam = a.peer.add_video_track("a-cam", "a").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&cam]).await;
    send_video(&cam, 0..5).await;
    let mut cam_rx = expect_video(&mut b, "a-cam", 0..5).await;

    let offers_before = a.negotiation().offers_sent + b.negotiation().offers_sent;
    let screen = a.peer.add_video_track("a-screen", "a").await.unwrap();
    settle(&mut a, &mut b, &[&screen]).await;
    assert!(
        a.negotiation().offers_sent + b.negotiation().offers_sent > offers_before,
        "adding a track renegotiated"
    );
    send_video(&screen, 0..10).await;
    expect_video(&mut b, "a-screen", 0..10).await;

    a.peer.remove_track(&screen).await.unwrap();
    b.expect(
        "RemoteTrackEnded a-screen",
        STEP,
        |e| matches!(e, PeerEvent::RemoteTrackEnded { track_id } if track_id == "a-screen"),
    )
    .await;

    // The first track is unaffected.
    settle(&mut a, &mut b, &[&cam]).await;
    send_video(&cam, 5..10).await;
    let got = frames(receive(&mut cam_rx, 5).await);
    assert!(
        got.iter()
            .zip(5..10)
            .all(|((d, c), i)| *c && *d == synthetic_au(i, 30))
    );
    assert_no_errors(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_both_sides_add_a_track_at_once_and_both_tracks_arrive() {
    // Descriptions take 150 ms, so two offers made at the same moment always cross.
    let opts = LinkOptions {
        description_delay: Duration::from_millis(150),
        ..Default::default()
    };
    let (mut a, mut b, took) = connected_pair(opts).await;
    println!("connected (with 150 ms signaling latency) after {took:?}");
    settle(&mut a, &mut b, &[]).await;
    let (ra, ib) = (a.negotiation().rollbacks, b.negotiation().offers_ignored);

    let (va, vb) = tokio::join!(
        a.peer.add_video_track("a-glare", "a"),
        b.peer.add_video_track("b-glare", "b")
    );
    let (va, vb) = (va.unwrap(), vb.unwrap());
    settle(&mut a, &mut b, &[&va, &vb]).await;
    println!(
        "negotiation a {:?} b {:?}",
        a.negotiation(),
        b.negotiation()
    );
    assert!(a.negotiation().rollbacks > ra, "polite side rolled back");
    assert!(
        b.negotiation().offers_ignored > ib,
        "impolite side ignored the crossing offer"
    );

    tokio::join!(send_video(&va, 0..10), send_video(&vb, 0..10));
    expect_video(&mut b, "a-glare", 0..10).await;
    expect_video(&mut a, "b-glare", 0..10).await;
    assert_no_errors(&a, &b);
}

/// Joining is a glare (both sides offer); the polite side's answer says all it sends, so
/// it sends no second offer. Its next track must still be offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_offer_that_settled_nothing_was_skipped_the_next_track_is_still_offered() {
    let opts = LinkOptions {
        description_delay: Duration::from_millis(150),
        ..Default::default()
    };
    let (mut a, mut b, _) = connected_pair(opts).await;
    settle(&mut a, &mut b, &[]).await;
    assert!(
        a.negotiation().rollbacks >= 1 && a.negotiation().offers_skipped >= 1,
        "the join was a glare and the polite side skipped its repeat offer: {:?}",
        a.negotiation()
    );
    let offers = a.negotiation().offers_sent;
    let cam = a.peer.add_video_track("a-late", "a").await.unwrap();
    settle(&mut a, &mut b, &[&cam]).await;
    assert!(
        a.negotiation().offers_sent > offers,
        "{:?}",
        a.negotiation()
    );
    send_video(&cam, 0..10).await;
    expect_video(&mut b, "a-late", 0..10).await;
    assert_no_errors(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_that_overtake_the_offer_are_queued_not_lost() {
    let opts = LinkOptions {
        description_delay: Duration::from_millis(300),
        ..Default::default()
    };
    let (a, b, took) = connected_pair(opts).await;
    println!("connected after {took:?} with 300 ms description latency");
    let queued = a.negotiation().candidates_queued + b.negotiation().candidates_queued;
    assert!(queued > 0, "some candidate arrived before its description");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_from_the_receiver_reaches_the_sender_as_a_keyframe_request_quickly() {
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let cam = a.peer.add_video_track("a-cam", "a").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&cam]).await;
    send_video(&cam, 0..3).await;
    let _rx = expect_video(&mut b, "a-cam", 0..3).await;

    let mut delays = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        pli_reaches_sender(&mut a, &b, "a-cam").await;
        delays.push(t0.elapsed());
    }
    println!("PLI -> KeyframeRequested delays: {delays:?}");
    assert!(
        delays.iter().all(|d| *d < Duration::from_millis(100)),
        "{delays:?}"
    );

    let out = a.peer.stats().await;
    let inb = b.peer.stats().await;
    let sent = out.outbound.iter().find(|t| t.track_id == "a-cam").unwrap();
    let recv = inb.inbound.iter().find(|t| t.track_id == "a-cam").unwrap();
    println!(
        "pli received (sender stats) {}, pli sent (receiver stats) {}",
        sent.pli_received, recv.pli_sent
    );
    assert!(sent.pli_received >= 5 && recv.pli_sent >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_sets_the_flag_of_the_encoder_feeding_that_track_and_no_other() {
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let (camera_wants, screen_wants) = (KeyframeWanted::default(), KeyframeWanted::default());
    let cam = a
        .peer
        .add_video_track_for("a-cam", "a", &camera_wants)
        .await
        .unwrap();
    let screen = a
        .peer
        .add_video_track_for("a-screen-1", "screen", &screen_wants)
        .await
        .unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&cam, &screen]).await;
    send_video(&cam, 0..3).await;
    let _rx = expect_video(&mut b, "a-cam", 0..3).await;
    // Whatever the first frames asked for is not this test's business.
    camera_wants.take();
    screen_wants.take();

    // The tap sets the flag before it reports the request.
    pli_reaches_sender(&mut a, &b, "a-cam").await;
    assert!(camera_wants.take(), "the camera's encoder is asked");
    assert!(!camera_wants.take(), "once");
    assert!(!screen_wants.take(), "the screen's encoder is not");
    assert_no_errors(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_side_ends_its_remote_tracks_and_is_seen_by_the_other() {
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let b_cam = b.peer.add_video_track("b-cam", "b").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&b_cam]).await;
    send_video(&b_cam, 0..2).await;
    let mut rx = expect_video(&mut a, "b-cam", 0..2).await;

    let t0 = Instant::now();
    a.peer.close().await.unwrap();
    a.expect("Closed", STEP, |e| {
        matches!(e, PeerEvent::ConnectionState(ConnectionState::Closed))
    })
    .await;
    a.expect(
        "RemoteTrackEnded b-cam",
        STEP,
        |e| matches!(e, PeerEvent::RemoteTrackEnded { track_id } if track_id == "b-cam"),
    )
    .await;
    assert!(
        rx.recv().await.is_none(),
        "the media channel ends with the track"
    );
    assert!(matches!(
        a.peer.send_data("late").await,
        Err(confab::call::CallError::Closed)
    ));

    // The remote only learns from silence (ICE consent, ~5 s by default).
    let ev = b
        .expect(
            "terminal state",
            Duration::from_secs(30),
            |e| matches!(e, PeerEvent::ConnectionState(s) if s.is_terminal()),
        )
        .await;
    println!("remote saw {ev:?} {:?} after close", t0.elapsed());
}

/// What `side` counted for the remote track `track`.
async fn inbound_stats(side: &Side, track: &str) -> confab::call::TrackStats {
    let stats = side.peer.stats().await;
    stats
        .inbound
        .into_iter()
        .find(|t| t.track_id == track)
        .unwrap_or_else(|| panic!("{}: no inbound stats for {track}", side.name))
}

/// A connected pair over a link shaped by `loss`, `a` with a negotiated camera track.
async fn camera_over(loss: &Loss, fec: bool) -> (Side, Side, confab::call::VideoTrackSender) {
    let opts = LinkOptions {
        loss: Some(loss.clone()),
        without_fec: !fec,
        ..Default::default()
    };
    let (mut a, mut b) = pair(opts).await;
    let cam = a.peer.add_video_track("a-cam", "a").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&cam]).await;
    (a, b, cam)
}

/// Each AU received, (index, complete), in arrival order up to AU `last`; a complete one
/// is checked byte for byte. AUs are identified by RTP timestamp, not by arrival order.
async fn aus_until(rx: &mut mpsc::Receiver<RemoteMedia>, last: usize) -> Vec<(usize, bool)> {
    let step = 90_000.0 * FRAME.as_secs_f64();
    let mut first_ts = None;
    let mut got = Vec::new();
    timeout(STEP, async {
        loop {
            let Some(RemoteMedia::Video(f)) = rx.recv().await else {
                panic!("video track ended")
            };
            let ts0 = *first_ts.get_or_insert(f.rtp_timestamp);
            let i = (f64::from(f.rtp_timestamp.wrapping_sub(ts0)) / step).round() as usize;
            if f.complete {
                assert!(f.data == synthetic_au(i, 30), "complete AU {i} differs");
            }
            got.push((i, f.complete));
            if i == last {
                break;
            }
        }
    })
    .await
    .expect("the last AU arrives");
    got
}

/// Sends AUs 0..65 from `a` to `b`, without FEC, over a link that applies `loss` to AUs 3..60. Returns
/// both sides and each AU received (index, complete) in arrival order, up to the last; a
/// complete AU is checked byte for byte.
async fn through_loss(loss: &Loss) -> (Side, Side, Vec<(usize, bool)>) {
    let (a, mut b, cam) = camera_over(loss, false).await;

    send_video(&cam, 0..3).await;
    // The track shows up with its first packet; its queue holds what follows.
    let (_, mut rx) = remote_track(&mut b, "a-cam").await;
    loss.set(true);
    send_video(&cam, 3..60).await;
    loss.set(false);
    send_video(&cam, 60..65).await;

    let got = aus_until(&mut rx, 64).await;
    println!(
        "dropped {} datagrams; AUs received {got:?}",
        loss.dropped.load(std::sync::atomic::Ordering::SeqCst)
    );
    (a, b, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_packets_flag_their_access_unit_incomplete_and_request_a_keyframe() {
    // Every 20th video-sized datagram is dropped once media flows, and no retransmission
    // gets through to repair it.
    let loss = Loss::new(20, 900).without_retransmissions();
    let (mut a, b, got) = through_loss(&loss).await;
    assert!(
        got.iter().any(|(_, complete)| !complete),
        "losses were noticed"
    );
    a.expect(
        "KeyframeRequested after loss",
        STEP,
        |e| matches!(e, PeerEvent::KeyframeRequested { track_id } if track_id == "a-cam"),
    )
    .await;
    let inbound = inbound_stats(&b, "a-cam").await;
    assert!(inbound.pli_sent >= 1, "{inbound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_video_packet_is_repaired_by_retransmission_without_a_keyframe_request() {
    // Every 15th video-sized datagram is dropped (a retransmission too, now and then).
    let loss = Loss::new(15, 900);
    let (_a, b, got) = through_loss(&loss).await;
    let complete: Vec<usize> = got
        .iter()
        .map(|&(i, complete)| {
            assert!(complete, "AU {i} left incomplete");
            i
        })
        .collect();
    let dropped = loss.dropped.load(std::sync::atomic::Ordering::SeqCst);
    assert!(dropped >= 5, "the link really lost packets: {dropped}");
    assert_eq!(complete, (0..65).collect::<Vec<_>>(), "every AU, in order");
    let inbound = inbound_stats(&b, "a-cam").await;
    // Packets were lost yet every AU is whole: the NACKed retransmissions filled the holes.
    assert!(inbound.nack_sent >= 1, "{inbound:?}");
    assert_eq!(inbound.pli_sent, 0, "no keyframe was needed: {inbound:?}");
    // Each loss is asked for once, and again only if its repair was lost too (about one
    // in twenty here): not once per NACK interval until a limit.
    let retransmitted = loss.retransmitted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        retransmitted <= dropped + dropped / 2,
        "{retransmitted} retransmissions for {dropped} losses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_lossy_path_fec_rebuilds_lost_video_packets_with_no_retransmission_getting_through() {
    // Every 25th video-sized datagram is lost, repair packets included, and so is every
    // retransmission: only FEC can make a damaged access unit whole.
    let loss = Loss::new(25, 900).without_retransmissions();
    let (a, mut b, cam) = camera_over(&loss, true).await;
    send_video(&cam, 0..3).await;
    let (_, mut rx) = remote_track(&mut b, "a-cam").await;
    loss.set(true);
    // The sender protects once its estimator has learnt the path's steady loss.
    let mut next = 3;
    let mut protecting_from = None;
    while protecting_from.is_none() && next < 600 {
        send_video(&cam, next..next + 15).await;
        next += 15;
        if a.peer.stats().await.fec_sent > 0 {
            protecting_from = Some(next);
        }
    }
    let from = protecting_from.expect("the sender protects a path losing 1 in 25");
    // From the next keyframe on (an earlier loss may have left a reference missing),
    // three GOPs under protection.
    let keyframe = from.next_multiple_of(30);
    let last = keyframe + 90;
    send_video(&cam, next..last + 1).await;
    let dropped_before = loss.dropped.load(std::sync::atomic::Ordering::SeqCst);

    let got = aus_until(&mut rx, last).await;
    let under: Vec<&(usize, bool)> = got.iter().filter(|(i, _)| *i >= keyframe).collect();
    let seen = under.len();
    let incomplete: Vec<usize> = under.iter().filter(|(_, c)| !c).map(|(i, _)| *i).collect();
    let stats = b.peer.stats().await;
    let share = a.peer.stats().await.fec_share;
    println!(
        "FEC from AU {from}; dropped {dropped_before}; rebuilt {}; AUs {seen} checked; \
         {share:.2} repair per media packet",
        stats.fec_recovered
    );
    // The path loses under 4 %: the least protection.
    assert!(share > 0.0 && share < 0.15, "protection {share:.2}");
    assert!(seen > 80, "AUs {keyframe}..={last} arrived: {seen}");
    assert_eq!(incomplete, Vec::<usize>::new(), "every AU under FEC whole");
    assert!(
        stats.fec_recovered >= 3,
        "packets were lost and rebuilt: {}",
        stats.fec_recovered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_link_brings_the_send_estimate_down_to_what_it_carries() {
    const LINK_BPS: u64 = 600_000;
    let loss = Loss::bottleneck(LINK_BPS);
    let (a, _b, cam) = camera_over(&loss, true).await;
    // About 2.7 Mbit/s of video into a 0.6 Mbit/s link, for as long as the test needs.
    let sender = tokio::spawn(async move { send_video(&cam, 0..100_000).await });

    // Sample the estimate every 250 ms (it is a measurement: there is no event to await).
    let mut samples = Vec::new();
    let settled = timeout(Duration::from_secs(20), async {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let e = a.peer.stats().await.send_estimate_bps;
            samples.push(e.map_or(0, |e| e as u64 / 1000));
            // Three samples in a row within reach of the link: the estimate has settled there.
            let fits = |k: &u64| *k > 0 && *k * 1000 <= LINK_BPS * 3 / 2;
            if samples.len() >= 3 && samples[samples.len() - 3..].iter().all(fits) {
                return;
            }
        }
    })
    .await;
    sender.abort();
    println!("estimate (kbit/s) every 250 ms: {samples:?}");
    assert!(
        settled.is_ok(),
        "the estimate never came down to the link's {} kbit/s: {samples:?}",
        LINK_BPS / 1000
    );
    assert!(
        samples.iter().any(|k| *k * 1000 > LINK_BPS * 2),
        "it started above the link (so it really moved): {samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_reports_give_the_sender_rtt_and_loss_per_track() {
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let mic = a.peer.add_audio_track("a-mic", "a").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&mic]).await;
    // Real-time audio for 3 s: long enough for SR (1 s) -> RR carrying its LSR (1 s).
    let mut tick = tokio::time::interval(PTIME);
    for i in 0..150 {
        tick.tick().await;
        mic.send(&synthetic_opus(i), PTIME).await.unwrap();
    }
    let stats = a.peer.stats().await;
    let out = stats
        .outbound
        .iter()
        .find(|t| t.track_id == "a-mic")
        .unwrap();
    println!("sender view of a-mic: {out:?}; ICE rtt {:?}", stats.rtt);
    let rtt = out.rtt.expect("an RR with LSR arrived");
    assert!(rtt < Duration::from_millis(50), "loopback RTT {rtt:?}");
    assert_eq!(out.packets_lost, 0);
    assert!(stats.rtt.is_some());
}

/// `receiver` sends a PLI for `track`; waits until `sender` reports the request.
async fn pli_reaches_sender(sender: &mut Side, receiver: &Side, track: &str) {
    receiver.peer.request_keyframe(track).await.unwrap();
    sender
        .expect(
            "KeyframeRequested",
            STEP,
            |e| matches!(e, PeerEvent::KeyframeRequested { track_id } if track_id == track),
        )
        .await;
}
