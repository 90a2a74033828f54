//! Signaling server specification, exercised with real WebSocket clients on loopback.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Raw, server, server_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_a_welcome_with_the_roster_and_members_see_it_join() {
    let srv = server().await;
    let mut a = Raw::joined(&srv, "lobby", "Ada").await;
    let mut b = Raw::connect(&srv).await;
    let w = b
        .join(json!({"type":"join","room":"lobby","name":"  Bob ",
                     "state":{"has_camera":true,"has_microphone":true}}))
        .await;
    assert_eq!(w["protocol"], 1);
    assert_eq!(w["room"], "lobby");
    assert_ne!(w["id"], a.id.as_str());
    assert_eq!(w["members"].as_array().unwrap().len(), 1);
    assert_eq!(w["members"][0]["id"], a.id.as_str());
    assert_eq!(w["members"][0]["name"], "Ada");
    assert!(w["ice_servers"].is_array());
    let j = a.expect("peer_joined").await;
    assert_eq!(j["member"]["id"], b.id.as_str());
    assert_eq!(j["member"]["name"], "Bob", "names are trimmed");
    assert_eq!(j["member"]["state"]["has_camera"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reaches_only_the_addressed_member_of_the_same_room() {
    let srv = server().await;
    let mut a = Raw::joined(&srv, "r1", "a").await;
    let mut b = Raw::joined(&srv, "r1", "b").await;
    let mut c = Raw::joined(&srv, "r1", "c").await;
    let mut other = Raw::joined(&srv, "r2", "x").await;
    a.expect("peer_joined").await;
    a.expect("peer_joined").await;
    b.expect("peer_joined").await;

    let payload = json!({"kind":"description","sdp":{"type":"offer","sdp":"v=0\r\n"}});
    a.relay(&b.id, payload.clone()).await;
    let m = b.expect("relay").await;
    assert_eq!(m["from"], a.id.as_str());
    assert_eq!(m["payload"], payload);

    // Across rooms: refused exactly as an id nobody has (so ids in other rooms can't be
    // probed), and nothing reaches the other room.
    a.relay(&other.id, json!({"secret":1})).await;
    let elsewhere = a.expect_error("unknown_peer").await;
    a.relay("ffffffffffff", json!({"secret":1})).await;
    let nobody = a.expect_error("unknown_peer").await;
    assert_eq!(
        elsewhere["message"]
            .as_str()
            .unwrap()
            .replace(&other.id, "ID"),
        nobody["message"]
            .as_str()
            .unwrap()
            .replace("ffffffffffff", "ID"),
    );
    other.relay(&a.id, json!({"secret":2})).await;
    other.expect_error("unknown_peer").await;
    other.expect_nothing_pending().await;
    c.expect_nothing_pending().await;
    a.expect_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_state_is_broadcast_to_the_room_only() {
    let srv = server().await;
    let mut a = Raw::joined(&srv, "r1", "a").await;
    let mut b = Raw::joined(&srv, "r1", "b").await;
    let mut x = Raw::joined(&srv, "r2", "x").await;
    a.expect("peer_joined").await;
    b.send(
        json!({"type":"media_state","state":{"audio_muted":true,"video_muted":false,
        "has_camera":true,"has_microphone":true,"screen_sharing":true}}),
    )
    .await;
    let m = a.expect("media_state").await;
    assert_eq!(m["id"], b.id.as_str());
    assert_eq!(m["state"]["audio_muted"], true);
    assert_eq!(m["state"]["screen_sharing"], true);
    b.expect_nothing_pending().await;
    x.expect_nothing_pending().await;
    // A later joiner sees the current state in its roster.
    let mut c = Raw::connect(&srv).await;
    let w = c.join(json!({"type":"join","room":"r1","name":"c"})).await;
    let bs = w["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == b.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(bs["state"]["audio_muted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_closing_and_dropping_each_produce_peer_left_with_a_reason() {
    // A dropped connection may come back (resume) until the grace period ends.
    let grace = Duration::from_millis(300);
    let srv = server_with(|c| c.resume_grace = grace).await;
    let mut a = Raw::joined(&srv, "r", "a").await;

    let mut b = Raw::joined(&srv, "r", "b").await;
    a.expect("peer_joined").await;
    b.send(json!({"type":"leave"})).await;
    assert_eq!(b.expect("left").await["room"], "r");
    let m = a.expect("peer_left").await;
    assert_eq!(
        (m["id"].as_str().unwrap(), m["reason"].as_str().unwrap()),
        (b.id.as_str(), "left")
    );

    let mut c = Raw::joined(&srv, "r", "c").await;
    a.expect("peer_joined").await;
    c.ws.close(None).await.unwrap();
    let m = a.expect("peer_left").await;
    assert_eq!(
        (m["id"].as_str().unwrap(), m["reason"].as_str().unwrap()),
        (c.id.as_str(), "left")
    );

    // An abrupt TCP drop (no close frame) is an outage: the member leaves when the grace
    // period is over, not before, and not much later.
    let d = Raw::joined(&srv, "r", "d").await;
    a.expect("peer_joined").await;
    let d_id = d.id.clone();
    let dropped = Instant::now();
    drop(d);
    let m = a.expect("peer_left").await;
    assert!(
        (grace..grace + Duration::from_secs(1)).contains(&dropped.elapsed()),
        "took {:?}",
        dropped.elapsed()
    );
    assert_eq!(
        (m["id"].as_str().unwrap(), m["reason"].as_str().unwrap()),
        (d_id.as_str(), "disconnected")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_times_out_by_heartbeat() {
    let srv = server_with(|c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.heartbeat_timeout = Duration::from_millis(400);
        // A silent link may be an outage: kept for the grace period, then gone.
        c.resume_grace = Duration::from_millis(200);
    })
    .await;
    let mut a = Raw::joined(&srv, "r", "a").await;
    // `silent` never reads again, so it never answers the server's pings.
    let silent = Raw::joined(&srv, "r", "silent").await;
    a.expect("peer_joined").await;
    let m = a.expect("peer_left").await;
    assert_eq!(m["id"], silent.id.as_str());
    assert_eq!(m["reason"], "timed_out");
    // `a` kept answering pings (by reading) and is still welcome.
    a.expect_nothing_pending().await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_list_names_the_first_four_members_in_joining_order() {
    let srv = server().await;
    let mut held = Vec::new();
    for name in ["ann", "bob", "cy", "di", "ed"] {
        held.push(Raw::joined(&srv, "team", name).await);
    }
    let mut guest = Raw::connect(&srv).await;
    guest.send(json!({"type":"list_rooms"})).await;
    let rooms = guest.expect("rooms").await;
    assert_eq!(rooms["rooms"][0]["members"], 5);
    assert_eq!(
        rooms["rooms"][0]["names"],
        json!(["ann", "bob", "cy", "di"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_capacity_guard_a_room_and_only_open_rooms_are_listed() {
    let srv = server().await;
    let mut owner = Raw::connect(&srv).await;
    owner
        .join(json!({"type":"join","room":"private","name":"o","password":"pw","capacity":2}))
        .await;
    let _open = Raw::joined(&srv, "open", "p").await;

    let mut guest = Raw::connect(&srv).await;
    guest.send(json!({"type":"list_rooms"})).await;
    let rooms = guest.expect("rooms").await;
    // A locked room's name and size are its members' business; an open room without a
    // capacity of its own has the server's default, and says who is in it.
    assert_eq!(
        rooms["rooms"],
        json!([{"name":"open","members":1,"capacity":50,"names":["p"]}])
    );
    assert_eq!(rooms["more"], false);
    guest
        .send(json!({"type":"join","room":"private","name":"g"}))
        .await;
    guest.expect_error("wrong_password").await;
    guest
        .send(json!({"type":"join","room":"private","name":"g","password":"nope"}))
        .await;
    let e = guest.expect_error("wrong_password").await;
    assert_eq!(e["request"], "join");
    guest
        .join(json!({"type":"join","room":"private","name":"g","password":"pw"}))
        .await;

    let mut third = Raw::connect(&srv).await;
    third
        .send(json!({"type":"join","room":"private","name":"t","password":"pw"}))
        .await;
    third.expect_error("room_full").await;
}

/// Two members of one room, each having seen the other.
async fn pair(srv: &confab::signaling::Server) -> (Raw, Raw) {
    let a = Raw::joined(srv, "ring", "Alice").await;
    let mut b = Raw::joined(srv, "ring", "Bob").await;
    let mut a = a;
    a.expect("peer_joined").await;
    b.expect_nothing_pending().await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_call_moves_both_into_a_private_room_until_hang_up() {
    let srv = server().await;
    let (mut a, mut b) = pair(&srv).await;
    a.send(json!({"type":"call_invite","to":b.id,"metadata":"{\"video\":true}"}))
        .await;
    let ringing = a.expect("call_ringing").await;
    let call_id = ringing["call_id"].as_str().unwrap().to_string();
    assert_eq!(ringing["to"], b.id.as_str());
    let inc = b.expect("call_incoming").await;
    assert_eq!(inc["call_id"], call_id.as_str());
    assert_eq!(inc["from"], a.id.as_str());
    assert_eq!(inc["from_name"], "Alice");
    assert_eq!(inc["metadata"], "{\"video\":true}");

    b.send(json!({"type":"call_accept","call_id":call_id}))
        .await;
    let acc_b = b.expect("call_accepted").await;
    let acc_a = a.expect("call_accepted").await;
    assert_eq!(acc_a["room"], acc_b["room"]);
    assert_eq!(acc_a["peer"], b.id.as_str());
    assert_eq!(acc_b["peer"], a.id.as_str());
    let room = acc_a["room"].as_str().unwrap().to_string();

    // Nobody else may enter the call's room, and it is not listed.
    let mut eve = Raw::connect(&srv).await;
    eve.send(json!({"type":"join","room":room,"name":"eve"}))
        .await;
    eve.expect_error("private_room").await;
    eve.send(json!({"type":"list_rooms"})).await;
    assert!(
        eve.expect("rooms").await["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != room.as_str())
    );

    a.send(json!({"type":"leave"})).await;
    a.expect("left").await;
    assert_eq!(b.expect("peer_left").await["id"], a.id.as_str());
    b.send(json!({"type":"leave"})).await;
    b.expect("left").await;
    let wa = a
        .join(json!({"type":"join","room":room,"name":"Alice"}))
        .await;
    assert!(wa["members"].as_array().unwrap().is_empty());
    let wb = b
        .join(json!({"type":"join","room":room,"name":"Bob"}))
        .await;
    assert_eq!(wb["members"][0]["id"], a.id.as_str());
    a.expect("peer_joined").await;

    a.send(json!({"type":"call_hangup","call_id":call_id}))
        .await;
    for c in [&mut a, &mut b] {
        let end = c.expect("call_ended").await;
        assert_eq!(
            (
                end["call_id"].as_str().unwrap(),
                end["reason"].as_str().unwrap()
            ),
            (call_id.as_str(), "hangup")
        );
    }
    // The call is over: its id is unknown now.
    b.send(json!({"type":"call_hangup","call_id":call_id}))
        .await;
    b.expect_error("unknown_call").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_tells_the_caller_why() {
    let srv = server().await;
    let (mut a, mut b) = pair(&srv).await;
    a.send(json!({"type":"call_invite","to":b.id,"metadata":""}))
        .await;
    a.expect("call_ringing").await;
    let call_id = b.expect("call_incoming").await["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    b.send(json!({"type":"call_decline","call_id":call_id,"reason":"in a meeting"}))
        .await;
    let end = a.expect("call_ended").await;
    assert_eq!(end["reason"], "declined");
    assert_eq!(end["detail"], "in a meeting");
    assert_eq!(b.expect("call_ended").await["reason"], "declined");
    // Both are free to call again.
    b.send(json!({"type":"call_invite","to":a.id})).await;
    b.expect("call_ringing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_stops_ringing_at_the_callee() {
    let srv = server().await;
    let (mut a, mut b) = pair(&srv).await;
    a.send(json!({"type":"call_invite","to":b.id})).await;
    let call_id = a.expect("call_ringing").await["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    b.expect("call_incoming").await;
    a.send(json!({"type":"call_cancel","call_id":call_id}))
        .await;
    assert_eq!(b.expect("call_ended").await["reason"], "cancelled");
    assert_eq!(a.expect("call_ended").await["reason"], "cancelled");
    b.send(json!({"type":"call_accept","call_id":call_id}))
        .await;
    b.expect_error("unknown_call").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_times_out() {
    let srv = server_with(|c| c.ring_timeout = Duration::from_millis(300)).await;
    let (mut a, mut b) = pair(&srv).await;
    a.send(json!({"type":"call_invite","to":b.id})).await;
    let call_id = a.expect("call_ringing").await["call_id"].clone();
    b.expect("call_incoming").await;
    for c in [&mut a, &mut b] {
        let end = c.expect("call_ended").await;
        assert_eq!(end["call_id"], call_id);
        assert_eq!(end["reason"], "timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_in_a_call_is_busy_and_a_vanished_party_ends_the_call() {
    // Vanished: gone, and not back within the grace period.
    let srv = server_with(|c| c.resume_grace = Duration::from_millis(200)).await;
    let (mut a, mut b) = pair(&srv).await;
    let mut c = Raw::joined(&srv, "ring", "Carol").await;
    a.expect("peer_joined").await;
    b.expect("peer_joined").await;
    a.send(json!({"type":"call_invite","to":b.id})).await;
    a.expect("call_ringing").await;
    b.expect("call_incoming").await;
    c.send(json!({"type":"call_invite","to":b.id})).await;
    c.expect_error("busy").await;
    c.send(json!({"type":"call_invite","to":a.id})).await;
    c.expect_error("busy").await;
    drop(a);
    let end = b.expect("call_ended").await;
    assert_eq!(end["reason"], "disconnected");
    assert_eq!(b.expect("peer_left").await["reason"], "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_then_closed_with_a_policy_close_code() {
    let srv = support::flooding_server().await;
    let mut f = Raw::joined(&srv, "r", "flood").await;
    // The join took one token: 4 pings pass, 20 are refused, the next one closes.
    // Sending no more than that keeps unread data from turning the close into a reset.
    for _ in 0..25 {
        f.send(json!({"type":"ping"})).await;
    }
    let (close, limited) = f.until_closed().await;
    assert_eq!(limited, 20, "rate_limited errors before the close");
    assert_eq!(close, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_room_limits_refuse_clearly() {
    let srv = server_with(|c| {
        c.max_clients = 2;
        c.max_rooms = 1;
    })
    .await;
    let _a = Raw::joined(&srv, "only", "a").await;
    let mut b = Raw::connect(&srv).await;
    b.send(json!({"type":"join","room":"second","name":"b"}))
        .await;
    b.expect_error("too_many_rooms").await;
    let mut c = Raw::connect(&srv).await;
    c.expect_error("server_full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_over_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = server().await;
    let mut a = Raw::joined(&srv, "r", "a").await;
    let b = Raw::joined(&srv, "r", "b").await;
    a.expect("peer_joined").await;
    a.relay(&b.id, json!(1)).await;
    a.send_text("{").await;
    a.expect_error("bad_json").await;
    let get = |path: &'static str| {
        let addr = srv.local_addr();
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let health = get("/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let metrics = get("/metrics").await;
    for line in [
        "confab_connections 2",
        "confab_rooms 1",
        "confab_messages_relayed_total 1",
        "confab_errors_total{code=\"bad_json\"} 1",
        "confab_errors_total{code=\"room_full\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}
