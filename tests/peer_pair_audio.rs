//! Audio between two `Peer`s over a simulated path (the harness of `peer_pair.rs`).
//! Timeouts only bound failures; every wait is on an event.

// Shared with `peer_pair.rs`; this file uses a part of it.
#[allow(dead_code)]
#[path = "support/peer_pair.rs"]
mod harness;

use std::time::Duration;

use confab::call::RemoteMedia;
use harness::{
    LinkOptions, Loss, STEP, assert_no_errors, pair, remote_track, settle, synthetic_opus,
};
use tokio::time::timeout;

const PTIME: Duration = Duration::from_millis(20);

/// A connected pair over `opts` whose `a` has a negotiated microphone track "a-mic".
async fn with_mic(
    opts: LinkOptions,
) -> (harness::Side, harness::Side, confab::call::AudioTrackSender) {
    let (mut a, mut b) = pair(opts).await;
    let mic = a.peer.add_audio_track("a-mic", "a").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&mic]).await;
    (a, b, mic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_over_a_path_that_reorders_is_delivered_in_order_and_whole_once_learnt() {
    // 0-40 ms of jitter on every packet, 20 ms apart: neighbours swap often.
    let mut link = Loss::new(0, usize::MAX);
    link.config.loss = confab::netem::Loss::None;
    link.config.jitter = Duration::from_millis(40);
    link.config.reorder = true;
    let opts = LinkOptions {
        loss: Some(link),
        ..Default::default()
    };
    let (a, mut b, mic) = with_mic(opts).await;
    const PACKETS: usize = 150;
    let sender = tokio::spawn(async move {
        // Paced as a microphone is: the swaps are the link's, not a burst's.
        let mut tick = tokio::time::interval(PTIME);
        for i in 0..PACKETS {
            tick.tick().await;
            mic.send(&synthetic_opus(i), PTIME)
                .await
                .expect("send opus");
        }
    });
    let (_, mut rx) = remote_track(&mut b, "a-mic").await;
    let index: std::collections::HashMap<Vec<u8>, usize> =
        (0..PACKETS).map(|i| (synthetic_opus(i), i)).collect();
    let mut got = Vec::new();
    timeout(STEP, async {
        while got.last() != Some(&(PACKETS - 1)) {
            let Some(RemoteMedia::Audio(p)) = rx.recv().await else {
                panic!("audio track ended")
            };
            got.push(index[&p.data.to_vec()]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the last packet never came: {got:?}"));
    sender.await.unwrap();
    // Never one after its successor: the decoder would conceal it and then play it late.
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    // The first swaps teach the wait; after them hardly a packet is given up.
    let second_half = got.iter().filter(|i| **i >= PACKETS / 2).count();
    assert!(
        second_half >= PACKETS / 2 - 2,
        "{} of the last {} packets: {got:?}",
        second_half,
        PACKETS / 2
    );
    assert_no_errors(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_left_out_in_silence_moves_the_timestamp_on_and_not_the_sequence() {
    let (a, mut b, mic) = with_mic(LinkOptions::default()).await;
    // 10 packets, 5 frames left out (Opus DTX: sent empty), 10 packets.
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PTIME);
        for i in 0..25 {
            tick.tick().await;
            let data = if (10..15).contains(&i) {
                Vec::new()
            } else {
                synthetic_opus(i)
            };
            mic.send(&data, PTIME).await.expect("send opus");
        }
    });
    let (_, mut rx) = remote_track(&mut b, "a-mic").await;
    let index: std::collections::HashMap<Vec<u8>, usize> =
        (0..25).map(|i| (synthetic_opus(i), i)).collect();
    let mut got = Vec::new();
    timeout(STEP, async {
        while got.last().is_none_or(|(i, _, _)| *i != 24) {
            let Some(RemoteMedia::Audio(p)) = rx.recv().await else {
                panic!("audio track ended")
            };
            got.push((index[&p.data.to_vec()], p.sequence_number, p.rtp_timestamp));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the last packet never came: {got:?}"));
    sender.await.unwrap();
    let ids: Vec<usize> = got.iter().map(|g| g.0).collect();
    let sent: Vec<usize> = (0..10).chain(15..25).collect();
    assert_eq!(ids, sent, "nothing is sent for a frame left out");
    for w in got.windows(2) {
        let ((i, s0, t0), (j, s1, t1)) = (w[0], w[1]);
        assert_eq!(s1, s0.wrapping_add(1), "a gap in the sequence: {got:?}");
        let frames = (j - i) as u32;
        assert_eq!(t1.wrapping_sub(t0), frames * 960, "timestamps: {got:?}");
    }
    assert_no_errors(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_the_remote_reports_on_our_audio_is_read_for_opus_to_expect() {
    // Every 5th datagram of 60 bytes or more: each audio packet, some RTCP.
    let link = Loss::new(5, 60);
    let opts = LinkOptions {
        loss: Some(link.clone()),
        ..Default::default()
    };
    let (a, mut b, mic) = with_mic(opts).await;
    assert_eq!(a.peer.audio_loss(), None, "no report yet");
    link.enabled
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PTIME);
        for i in 0..500 {
            tick.tick().await;
            if mic.send(&synthetic_opus(i), PTIME).await.is_err() {
                return;
            }
        }
    });
    let (_, mut rx) = remote_track(&mut b, "a-mic").await;
    // Read as each packet arrives: reports come every second or so.
    let loss = timeout(STEP, async {
        loop {
            rx.recv().await.expect("audio track ended");
            if let Some(l) = a.peer.audio_loss().filter(|l| *l > 0.0) {
                return l;
            }
        }
    })
    .await
    .expect("no report of the loss");
    sender.abort();
    assert!((0.1..=0.35).contains(&loss), "read {loss} for a fifth lost");
}
