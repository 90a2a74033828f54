//! Silence on the wire (Opus DTX) between two engines on loopback: a muted microphone
//! costs a comfort noise refresh now and then, and the far end takes the silence as a
//! pause, not as lost audio.

mod support;

use confab::call::{Command, Event};
use confab::headless::AudioReport;
use support::engine::{TestPeer, synthetic};

async fn tick(p: &mut TestPeer) {
    p.until("a stats tick", |e| {
        matches!(e, Event::Stats(_)).then_some(())
    })
    .await;
}

/// Waits, a stats tick at a time, until what `p` heard from `from` satisfies `f`.
async fn until_heard(
    p: &mut TestPeer,
    from: &str,
    f: impl Fn(&AudioReport) -> bool,
) -> AudioReport {
    loop {
        let heard = p.analyzer.audio(from);
        if f(&heard) {
            return heard;
        }
        tick(p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_microphone_sends_next_to_nothing_and_is_heard_at_once_when_unmuted() {
    let srv = support::server().await;
    let url = srv.ws_url();
    let a = TestPeer::join(&url, "dtx", "ada", synthetic(160, 120, 440.0)).await;
    let mut b = TestPeer::join(&url, "dtx", "bob", synthetic(160, 120, 660.0)).await;
    let a_id = a.id.clone();
    until_heard(&mut b, &a_id, |r| r.packets_received >= 50).await;
    a.send(Command::SetAudioMuted(true));
    let quiet = until_heard(&mut b, &a_id, |r| r.playout.paused_ms > 0.0).await;
    let paused = until_heard(&mut b, &a_id, |r| {
        r.playout.paused_ms >= quiet.playout.paused_ms + 2000.0
    })
    .await;
    let packets = paused.packets_received - quiet.packets_received;
    let seconds = (paused.playout.paused_ms - quiet.playout.paused_ms) / 1000.0;
    // A refresh and a DTX frame every 400 ms: 5 a second, against 50 unmuted.
    assert!(
        (packets as f64) < 8.0 * seconds + 3.0,
        "{packets} packets in {seconds:.1} s of silence: {paused:?}"
    );
    a.send(Command::SetAudioMuted(false));
    // Two seconds of the tone again: all the tone measure hears.
    let back = until_heard(&mut b, &a_id, |r| {
        r.packets_received >= paused.packets_received + 100
    })
    .await;
    let tone = back.tone_hz.expect("tone measured");
    assert!((tone - 440.0).abs() < 5.0, "{tone} Hz: {back:?}");
    assert!(back.level_dbfs.unwrap() > -25.0, "{back:?}");
    // Neither the silence nor its end was taken for lost audio.
    let lost = |r: &AudioReport| {
        let p = &r.playout;
        (p.underruns, r.concealed, p.concealed_ms, p.silent_ms)
    };
    assert_eq!(
        lost(&back),
        lost(&quiet),
        "before: {quiet:?}, after: {back:?}"
    );
    let sent = a.leave().await;
    assert!(
        sent.audio_frames_left_out >= 50,
        "{} frames left out",
        sent.audio_frames_left_out
    );
    b.leave().await;
}
