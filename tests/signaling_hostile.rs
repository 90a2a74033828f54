//! What hostile clients and pages can do to a server: a client that stops reading costs a
//! bounded number of bytes, given back once it is cut off; a page from another site
//! cannot open the signaling socket.

mod support;

use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use support::{Raw, STEP, server_with, small_window};
use tokio_tungstenite::tungstenite::Message;

/// Whatever has already arrived for `c`, without waiting.
fn arrived(c: &mut Raw) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(Some(Ok(Message::Text(t)))) = c.ws.next().now_or_never() {
        out.push(serde_json::from_str(t.as_str()).expect("server sends JSON"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_is_cut_off_once_a_mebibyte_waits_for_it() {
    let srv = server_with(|c| {
        c.rate_per_sec = 100_000.0;
        c.rate_burst = 100_000.0;
    })
    .await;
    let mut sender = Raw::joined(&srv, "r", "sender").await;
    // Joins, then never reads again (and stays connected).
    let sleeper = small_window(srv.local_addr(), &srv.ws_url(), "r", "sleeper").await;
    sender.expect("peer_joined").await;

    let blob = "x".repeat(60_000);
    let mut cut_off_after = None;
    for sent in 1..=1500 {
        sender.relay(&sleeper.id, json!({ "blob": blob })).await;
        let left = arrived(&mut sender)
            .into_iter()
            .any(|m| m["type"] == "peer_left" && m["id"] == sleeper.id.as_str());
        if left {
            cut_off_after = Some(sent);
            break;
        }
    }
    // The socket buffers take a little; beyond them at most a mebibyte waits in the server.
    // A queue bounded only by its 512 frames would take 30 MB.
    let sent = cut_off_after.expect("the sleeper was cut off");
    println!("cut off after {sent} relays of 60 KB");
    assert!(sent < 300, "cut off only after {sent} relays of 60 KB");

    println!("queued at cut-off: {}", srv.metrics().outbound_bytes);
    // What was queued for it is given back although its writer is stuck on a socket that
    // will never drain: the connection gives up on the writer.
    let deadline = Instant::now() + STEP;
    while srv.metrics().outbound_bytes > 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still queued",
            srv.metrics().outbound_bytes
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(sleeper);
}

/// Opens `/ws` as a browser page from `origin` would (None: a native client).
async fn open_from(
    srv: &confab::signaling::Server,
    origin: Option<&str>,
) -> Result<Raw, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = srv.ws_url().into_client_request().unwrap();
    if let Some(o) = origin {
        request.headers_mut().insert("origin", o.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(Raw {
        ws,
        id: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_site_cannot_open_the_signaling_socket() {
    let srv = server_with(|c| c.allowed_origins = vec!["https://meet.example.org".into()]).await;
    let own = format!("http://{}", srv.local_addr());
    let mut allowed = Vec::new();
    for origin in [None, Some(own.as_str()), Some("https://meet.example.org")] {
        let mut c = open_from(&srv, origin)
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e}"));
        c.join(json!({"type":"join","room":"r","name":"ok"})).await;
        allowed.push(c);
    }
    match open_from(&srv, Some("http://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        Ok(_) => panic!("a foreign origin got a socket"),
        Err(e) => panic!("refused, but not with 403: {e}"),
    }
    assert_eq!(srv.metrics().connections, 3, "only the three allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_and_binary_frames_count_against_the_rate_limit() {
    use futures::SinkExt;
    let srv = support::flooding_server().await;
    let mut f = Raw::joined(&srv, "r", "flood").await;
    // The join took one token: 4 frames pass, 20 are refused, the next one closes.
    for i in 0..25 {
        let frame = if i % 2 == 0 {
            Message::Ping(vec![1, 2, 3].into())
        } else {
            Message::Binary(vec![0; 16].into())
        };
        f.ws.send(frame).await.unwrap();
    }
    let (close, limited) = f.until_closed().await;
    assert_eq!(limited, 20, "refused before the close");
    assert_eq!(close, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_learns_nothing_about_other_peoples_calls() {
    let srv = server_with(|_| {}).await;
    let mut a = Raw::joined(&srv, "r", "Alice").await;
    let mut b = Raw::joined(&srv, "r", "Bob").await;
    let mut eve = Raw::joined(&srv, "r", "Eve").await;
    a.send(json!({"type":"call_invite","to":b.id})).await;
    let call_id = next_of(&mut a, "call_ringing").await["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Eve answers and declines a call she is not part of, and one that does not exist:
    // the same answers, so she cannot tell which calls exist.
    for (ty, real) in [
        ("call_accept", true),
        ("call_accept", false),
        ("call_decline", true),
    ] {
        let id = if real {
            call_id.as_str()
        } else {
            "0123456789ab"
        };
        eve.send(json!({"type":ty,"call_id":id})).await;
        let err = eve.expect_error("unknown_call").await;
        assert!(
            !err["message"].as_str().unwrap().contains("callee"),
            "{err}"
        );
    }
    // Bob's call still rings, untouched.
    let incoming = next_of(&mut b, "call_incoming").await;
    assert_eq!(incoming["call_id"], call_id.as_str());
}

/// The next message of type `ty`, passing over presence and the like.
async fn next_of(c: &mut Raw, ty: &str) -> Value {
    loop {
        let m = c.recv().await;
        if m["type"] == ty {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_join_into_a_room_someone_made_unlocked_is_refused() {
    let srv = server_with(|_| {}).await;
    let mut squatter = Raw::joined(&srv, "team", "Mallory").await;
    let mut victim = Raw::connect(&srv).await;
    victim
        .send(json!({"type":"join","room":"team","name":"Alice","password":"s3cret"}))
        .await;
    victim.expect_error("room_not_locked").await;
    // Alice never entered: Mallory hears nothing of her.
    squatter.expect_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_rooms_password_is_throttled() {
    let srv = server_with(|_| {}).await;
    let mut owner = Raw::connect(&srv).await;
    owner
        .join(json!({"type":"join","room":"vault","name":"Owner","password":"0005"}))
        .await;
    let mut guesser = Raw::connect(&srv).await;
    let mut answers = Vec::new();
    for pin in 0..8 {
        let password = format!("{pin:04}");
        guesser
            .send(json!({"type":"join","room":"vault","name":"G","password":password}))
            .await;
        let m = guesser.recv().await;
        answers.push(m["code"].as_str().unwrap_or("welcome").to_string());
    }
    // Five wrong guesses, then the room refuses every attempt, the right PIN (0005) too.
    let expected: Vec<&str> =
        [["wrong_password"; 5].as_slice(), &["too_many_attempts"; 3]].concat();
    assert_eq!(answers, expected);
    owner.expect_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_with_a_taken_name_gets_a_number_and_is_told() {
    let srv = server_with(|_| {}).await;
    let mut first = Raw::joined(&srv, "r", "Alice").await;
    let mut second = Raw::connect(&srv).await;
    let welcome = second
        .join(json!({"type":"join","room":"r","name":"alice"}))
        .await;
    assert_eq!(welcome["name"], "alice (2)");
    let joined = first.expect("peer_joined").await;
    assert_eq!(joined["member"]["name"], "alice (2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_private_room_counts_against_the_room_limit() {
    let srv = server_with(|c| c.max_rooms = 1).await;
    let mut a = Raw::joined(&srv, "r", "Alice").await;
    let mut b = Raw::joined(&srv, "r", "Bob").await;
    a.send(json!({"type":"call_invite","to":b.id})).await;
    let call_id = next_of(&mut b, "call_incoming").await["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    next_of(&mut a, "call_ringing").await;
    b.send(json!({"type":"call_accept","call_id":call_id}))
        .await;
    b.expect_error("too_many_rooms").await;
    a.expect_nothing_pending().await;
    assert_eq!(srv.metrics().rooms, 1);
}
