//! Signaling that survives an outage: when a member's link to the server drops, its
//! client comes back as the same member (`resume`), the others never see it leave, and
//! the call's media, which flows peer to peer, never stops.

mod support;

use std::time::Duration;

use confab::headless::{self, HeadlessOptions};
use serde_json::json;
use support::proxy::Proxy;
use support::{Raw, from, server_with};

fn opts(url: &str, name: &str, tone: f32) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, "outage", name);
    o.seconds = 6.0;
    o.tone_hz = tone;
    o.size = (320, 240);
    o.bitrate_bps = 300_000;
    o.bind_addrs = vec!["127.0.0.1:0".into()];
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_link_drops_resumes_and_the_call_never_stops() {
    let srv = server_with(|_| {}).await;
    // Ann reaches the server through a proxy that the test cuts mid-call.
    let proxy = Proxy::start(srv.local_addr()).await;
    let ann_url = format!("ws://{}/ws", proxy.addr);
    let ann = tokio::spawn(headless::run(opts(&ann_url, "ann", 440.0)));
    let bob = tokio::spawn(headless::run(opts(&srv.ws_url(), "bob", 660.0)));
    // The scenario's timeline: an outage two seconds in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        srv.metrics().connections,
        2,
        "both in the call before the cut"
    );
    proxy.cut();
    let (ann, bob) = (ann.await.unwrap().unwrap(), bob.await.unwrap().unwrap());

    assert!(proxy.accepted() >= 2, "ann's client never came back");
    for (me, other) in [(&ann, "bob"), (&bob, "ann")] {
        let got = from(me, other);
        // Only the goodbye at the end of the call, never a disconnect.
        assert!(
            matches!(got.left.as_deref(), None | Some("Left")),
            "{} saw {other} leave: {:?}",
            me.name,
            got.left
        );
        let v = &got.video;
        assert!(v.ids_in_order, "{}: {v:?}", me.name);
        // Frames kept coming through the outage: no more missing than a clean call
        // loses (the encoder's own skips), nowhere near the outage's 30 a second.
        assert!(v.frames_decoded >= 120, "{} from {other}: {v:?}", me.name);
        assert!(v.id_gaps < 15, "{} from {other}: {v:?}", me.name);
    }
    assert_eq!(ann.id, from(&bob, "ann").id, "ann is the same member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_takes_the_member_back_once_and_replays_what_it_missed() {
    let srv = server_with(|_| {}).await;
    let proxy = Proxy::start(srv.local_addr()).await;
    let proxied = format!("ws://{}/ws", proxy.addr);
    let mut ann = Raw::connect_url(&proxied).await;
    let welcome = ann
        .join(json!({"type":"join","room":"r","name":"ann"}))
        .await;
    let token = welcome["resume_token"].as_str().unwrap().to_string();
    assert_eq!(welcome["resume_grace_ms"], 30_000);
    let mut bob = Raw::joined(&srv, "r", "bob").await;
    ann.expect("peer_joined").await;

    proxy.cut();
    // What was under way when the link broke is lost with it; from the moment the
    // server knows she is away, what is sent to her waits.
    while srv.metrics().away == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While ann is away, bob relays to her and cal comes and goes: the relay waits,
    // the presence changes are summed up by the resumed welcome.
    bob.relay(&ann.id, json!({"n": 1})).await;
    bob.expect_nothing_pending().await;
    let cal = Raw::joined(&srv, "r", "cal").await;
    bob.expect("peer_joined").await;

    let mut back = Raw::connect_url(&proxied).await;
    back.send(json!({"type":"resume","token":token})).await;
    let w = back.expect("welcome").await;
    assert_eq!(w["resumed"], true);
    assert_eq!(w["id"], ann.id.as_str());
    let members: Vec<&str> = w["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["bob", "cal"]);
    assert_ne!(w["resume_token"], token.as_str(), "a token works once");
    let relay = back.expect("relay").await;
    assert_eq!(relay["payload"], json!({"n": 1}));
    back.expect_nothing_pending().await;
    // Bob never heard ann leave; cal's arrival is all that happened.
    bob.expect_nothing_pending().await;
    drop(cal);

    // The same token again, or one never issued: refused, and that connection can join.
    let mut again = Raw::connect_url(&proxied).await;
    again.send(json!({"type":"resume","token":token})).await;
    let e = again.expect_error("resume_failed").await;
    assert_eq!(e["request"], "resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_come_back_leaves_when_the_grace_ends() {
    let srv = server_with(|c| c.resume_grace = Duration::from_millis(300)).await;
    let proxy = Proxy::start(srv.local_addr()).await;
    let mut ann = Raw::connect_url(&format!("ws://{}/ws", proxy.addr)).await;
    ann.join(json!({"type":"join","room":"r","name":"ann"}))
        .await;
    let mut bob = Raw::joined(&srv, "r", "bob").await;
    proxy.cut();
    let left = bob.expect("peer_left").await;
    assert_eq!(left["id"], ann.id.as_str());
    assert_eq!(left["reason"], "disconnected");
    // A goodbye is not an outage: leaving by closing the socket is at once.
    let mut cal = Raw::joined(&srv, "r", "cal").await;
    bob.expect("peer_joined").await;
    cal.ws.close(None).await.unwrap();
    assert_eq!(bob.expect("peer_left").await["reason"], "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_takes_over_a_connection_the_server_still_thinks_alive() {
    // A client whose address changed comes back long before the server could notice
    // that its old connection is dead: the resume takes the member over at once.
    let srv = server_with(|_| {}).await;
    let mut ann = Raw::connect(&srv).await;
    let welcome = ann
        .join(json!({"type":"join","room":"r","name":"ann"}))
        .await;
    let token = welcome["resume_token"].as_str().unwrap().to_string();
    let mut bob = Raw::joined(&srv, "r", "bob").await;
    ann.expect("peer_joined").await;

    let mut back = Raw::connect(&srv).await;
    back.send(json!({"type":"resume","token":token})).await;
    let w = back.expect("welcome").await;
    assert_eq!(w["resumed"], true);
    assert_eq!(w["id"], ann.id.as_str());
    // The old connection is closed; the room heard nothing of it.
    let (code, _) = ann.until_closed().await;
    assert_ne!(code, 0, "the old connection got a close frame");
    bob.expect_nothing_pending().await;
    // What bob sends now reaches ann on her new connection, and she is still there
    // once the old connection's end has been handled.
    bob.relay(&ann.id, json!({"n": 2})).await;
    assert_eq!(back.expect("relay").await["payload"], json!({"n": 2}));
    let mut cal = Raw::connect(&srv).await;
    let w = cal
        .join(json!({"type":"join","room":"r","name":"cal"}))
        .await;
    let names: Vec<&str> = w["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob"]);
}

/// The next relayed description from a headless peer, passing over its candidates.
async fn next_description(page: &mut Raw) -> serde_json::Value {
    loop {
        let m = page.recv().await;
        if m["type"] == "relay" && m["payload"]["kind"] == "description" {
            return m;
        }
    }
}

/// A polite browser page asks for an ICE restart instead of offering one (Chromium that
/// rolls back its own restart offer shows no more video): a confab peer asked sends
/// its offer still waiting for an answer again, since it may have gone down with the
/// asker's link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_asked_for_a_restart_sends_its_unanswered_offer_again() {
    let srv = server_with(|_| {}).await;
    // A member that never answers: whatever the ids make of politeness, ann's offer
    // comes (at once, or after the polite side's wait for the other's) and waits.
    let mut page = Raw::joined(&srv, "outage", "page").await;
    let ann = tokio::spawn(headless::run(opts(&srv.ws_url(), "ann", 440.0)));
    let offer = next_description(&mut page).await;
    assert_eq!(offer["payload"]["sdp_type"], "offer");
    let ann_id = offer["from"].as_str().unwrap().to_owned();

    page.relay(&ann_id, json!({"kind": "restart"})).await;
    let again = next_description(&mut page).await;
    assert_eq!(again["payload"]["sdp_type"], "offer");
    assert_eq!(
        again["payload"]["sdp"], offer["payload"]["sdp"],
        "the same offer, not a new one"
    );
    ann.abort();
}
