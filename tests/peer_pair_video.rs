//! Pictures between two `Peer`s (the harness of `peer_pair.rs`): what their RTP
//! carries besides the pictures. Timeouts only bound failures.

// Shared with `peer_pair.rs`; this file uses a part of it.
#[allow(dead_code)]
#[path = "support/peer_pair.rs"]
mod harness;

use std::time::Duration;

use confab::call::RemoteMedia;
use harness::{LinkOptions, STEP, assert_no_errors, pair, remote_track, settle, synthetic_au};
use tokio::time::timeout;

const FRAME: Duration = Duration::from_millis(33);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pictures_rtp_timestamp_follows_its_capture_time_across_skipped_frames() {
    let (mut a, mut b) = pair(LinkOptions::default()).await;
    let cam = a.peer.add_video_track("a-cam", "a").await.unwrap();
    a.connected().await;
    b.connected().await;
    settle(&mut a, &mut b, &[&cam]).await;
    // 30 fps, with two frames the encoder skipped before the fourth and one before
    // the sixth: the timestamps keep the capture clock, not a frame count.
    let captured_ms = [1000.0, 1033.3, 1066.7, 1166.7, 1200.0, 1266.7];
    let sender = cam.clone();
    tokio::spawn(async move {
        for (i, ms) in captured_ms.iter().enumerate() {
            let au = synthetic_au(i, 30);
            let at = (ms * 1000.0) as u64;
            sender
                .send_layer(0, true, &au, at, FRAME)
                .await
                .expect("send AU");
        }
    });
    let (_, mut rx) = remote_track(&mut b, "a-cam").await;
    let mut stamps = Vec::new();
    while stamps.len() < captured_ms.len() {
        match timeout(STEP, rx.recv()).await {
            Ok(Some(RemoteMedia::Video(f))) => stamps.push(f.rtp_timestamp),
            Ok(Some(RemoteMedia::Audio(_))) => panic!("audio on a video track"),
            Ok(None) | Err(_) => {
                panic!("{} of {} pictures arrived", stamps.len(), captured_ms.len())
            }
        }
    }
    for (i, w) in stamps.windows(2).enumerate() {
        let got_ms = f64::from(w[1].wrapping_sub(w[0])) / 90.0;
        let want_ms = captured_ms[i + 1] - captured_ms[i];
        assert!(
            (got_ms - want_ms).abs() < 0.1,
            "frame {}: {got_ms} ms, captured {want_ms} apart",
            i + 1
        );
    }
    assert_no_errors(&a, &b);
}
