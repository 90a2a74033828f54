//! Bad input: every case gets its own error code, and afterwards the sender's
//! connection still works and the room still relays.

mod support;

use serde_json::{Value, json};
use support::{Raw, server_with};
use tokio_tungstenite::tungstenite::Message;

/// What the offending client sends.
enum Bad {
    Text(String),
    Json(Value),
    Binary,
    /// Built from the ids in play: (sender id, victim id, other-room id).
    With(fn(&str, &str, &str) -> Value),
}

struct Case {
    what: &'static str,
    /// Sent by a member of the room (true) or by a fresh, unjoined connection.
    joined: bool,
    bad: Bad,
    code: &'static str,
}

fn cases() -> Vec<Case> {
    use Bad::*;
    let c = |what, joined, bad, code| Case {
        what,
        joined,
        bad,
        code,
    };
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    vec![
        c("truncated JSON", true, Text("{".into()), "bad_json"),
        c(
            "not JSON at all",
            true,
            Text("hello there".into()),
            "bad_json",
        ),
        c("empty frame", true, Text(String::new()), "bad_json"),
        c("nesting bomb", true, Text(deep), "bad_json"),
        c("JSON array", true, Json(json!([1, 2])), "bad_message"),
        c("JSON string", true, Json(json!("join")), "bad_message"),
        c("JSON null", true, Json(Value::Null), "bad_message"),
        c(
            "object without type",
            true,
            Json(json!({"room":"x"})),
            "bad_message",
        ),
        c("numeric type", true, Json(json!({"type":5})), "bad_message"),
        c(
            "unknown type",
            true,
            Json(json!({"type":"explode"})),
            "unknown_type",
        ),
        c(
            "type in wrong case",
            true,
            Json(json!({"type":"JOIN","room":"a","name":"b"})),
            "unknown_type",
        ),
        c(
            "relay without target",
            true,
            Json(json!({"type":"relay","payload":{}})),
            "bad_message",
        ),
        c(
            "relay without payload",
            true,
            With(|_, v, _| json!({"type":"relay","to":v})),
            "bad_message",
        ),
        c(
            "relay target is a number",
            true,
            Json(json!({"type":"relay","to":5,"payload":{}})),
            "bad_message",
        ),
        c(
            "relay to unknown id",
            true,
            Json(json!({"type":"relay","to":"ffffffffffff","payload":{}})),
            "unknown_peer",
        ),
        c(
            "relay into another room",
            true,
            With(|_, _, o| json!({"type":"relay","to":o,"payload":{"x":1}})),
            "unknown_peer",
        ),
        c(
            "relay to self",
            true,
            With(|s, _, _| json!({"type":"relay","to":s,"payload":{}})),
            "self_target",
        ),
        c(
            "second join",
            true,
            Json(json!({"type":"join","room":"elsewhere","name":"again"})),
            "already_joined",
        ),
        c(
            "media state not an object",
            true,
            Json(json!({"type":"media_state","state":"on"})),
            "bad_message",
        ),
        c(
            "media state field wrong type",
            true,
            Json(json!({"type":"media_state","state":{"audio_muted":"yes"}})),
            "bad_message",
        ),
        c(
            "invite unknown id",
            true,
            Json(json!({"type":"call_invite","to":"ffffffffffff"})),
            "unknown_peer",
        ),
        c(
            "invite self",
            true,
            With(|s, _, _| json!({"type":"call_invite","to":s})),
            "self_target",
        ),
        c(
            "invite into another room",
            true,
            With(|_, _, o| json!({"type":"call_invite","to":o})),
            "unknown_peer",
        ),
        c(
            "invite with huge metadata",
            true,
            With(|_, v, _| json!({"type":"call_invite","to":v,"metadata":"m".repeat(5000)})),
            "invalid_metadata",
        ),
        c(
            "accept unknown call",
            true,
            Json(json!({"type":"call_accept","call_id":"nope"})),
            "unknown_call",
        ),
        c(
            "accept without call id",
            true,
            Json(json!({"type":"call_accept"})),
            "bad_message",
        ),
        c(
            "decline unknown call",
            true,
            Json(json!({"type":"call_decline","call_id":"nope"})),
            "unknown_call",
        ),
        c(
            "cancel unknown call",
            true,
            Json(json!({"type":"call_cancel","call_id":"nope"})),
            "unknown_call",
        ),
        c(
            "hang up unknown call",
            true,
            Json(json!({"type":"call_hangup","call_id":"nope"})),
            "unknown_call",
        ),
        c(
            "message over 64 KiB",
            true,
            With(|_, v, _| json!({"type":"relay","to":v,"payload":"x".repeat(70_000)})),
            "too_large",
        ),
        c("binary frame", true, Binary, "binary_unsupported"),
        c(
            "join with empty name",
            false,
            Json(json!({"type":"join","room":"room","name":"  "})),
            "invalid_name",
        ),
        c(
            "join with 65-character name",
            false,
            Json(json!({"type":"join","room":"room","name":"n".repeat(65)})),
            "invalid_name",
        ),
        c(
            "join with empty room",
            false,
            Json(json!({"type":"join","room":"","name":"n"})),
            "invalid_room",
        ),
        c(
            "join with control character in room",
            false,
            Json(json!({"type":"join","room":"a\u{0}b","name":"n"})),
            "invalid_room",
        ),
        c(
            "join with room as array",
            false,
            Json(json!({"type":"join","room":["a"],"name":"n"})),
            "bad_message",
        ),
        c(
            "join with capacity 0",
            false,
            Json(json!({"type":"join","room":"fresh","name":"n","capacity":0})),
            "invalid_capacity",
        ),
        c(
            "join with capacity -1",
            false,
            Json(json!({"type":"join","room":"fresh","name":"n","capacity":-1})),
            "bad_message",
        ),
        c(
            "join with capacity 100000",
            false,
            Json(json!({"type":"join","room":"fresh","name":"n","capacity":100000})),
            "invalid_capacity",
        ),
        c(
            "join a locked room without password",
            false,
            Json(json!({"type":"join","room":"locked","name":"n"})),
            "wrong_password",
        ),
        c(
            "join a full room",
            false,
            Json(json!({"type":"join","room":"full","name":"n"})),
            "room_full",
        ),
        c(
            "join a call room",
            false,
            Json(json!({"type":"join","room":"call:0123","name":"n"})),
            "private_room",
        ),
        c(
            "relay before join",
            false,
            Json(json!({"type":"relay","to":"x","payload":{}})),
            "not_joined",
        ),
        c(
            "leave before join",
            false,
            Json(json!({"type":"leave"})),
            "not_joined",
        ),
        c(
            "media state before join",
            false,
            Json(json!({"type":"media_state","state":{}})),
            "not_joined",
        ),
        c(
            "invite before join",
            false,
            Json(json!({"type":"call_invite","to":"x"})),
            "not_joined",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_input_gets_its_code_and_the_room_keeps_relaying() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let srv = server_with(|c| c.rate_per_sec = 1000.0).await;
    let mut victim = Raw::joined(&srv, "main", "victim").await;
    let mut sender = Raw::joined(&srv, "main", "sender").await;
    victim.expect("peer_joined").await;
    let other = Raw::joined(&srv, "other", "outsider").await;
    let mut locked = Raw::connect(&srv).await;
    locked
        .join(json!({"type":"join","room":"locked","name":"l","password":"pw"}))
        .await;
    let mut full = Raw::connect(&srv).await;
    full.join(json!({"type":"join","room":"full","name":"f","capacity":2}))
        .await;
    let _full2 = Raw::joined(&srv, "full", "f2").await;

    for (n, case) in cases.iter().enumerate() {
        let mut fresh = if case.joined {
            None
        } else {
            Some(Raw::connect(&srv).await)
        };
        let who: &mut Raw = fresh.as_mut().unwrap_or(&mut sender);
        match &case.bad {
            Bad::Text(t) => who.send_text(t).await,
            Bad::Json(v) => who.send(v.clone()).await,
            Bad::Binary => {
                use futures::SinkExt;
                who.ws
                    .send(Message::Binary(vec![1, 2, 3].into()))
                    .await
                    .unwrap();
            }
            Bad::With(f) => {
                let me = who.id.clone();
                who.send(f(&me, &victim.id, &other.id)).await
            }
        }
        let err = who.recv().await;
        assert_eq!(err["type"], "error", "case {n} ({}): {err}", case.what);
        assert_eq!(err["code"], case.code, "case {n} ({}): {err}", case.what);

        // The offender's connection still works, and the room still relays.
        if let Some(mut f) = fresh {
            let w = f
                .join(json!({"type":"join","room":"main","name":format!("late{n}")}))
                .await;
            assert_eq!(victim.expect("peer_joined").await["member"]["id"], w["id"]);
            f.relay(&victim.id, json!({"case": n})).await;
            let got = victim.expect("relay").await;
            assert_eq!(
                (got["from"].as_str().unwrap(), &got["payload"]),
                (f.id.as_str(), &json!({"case": n}))
            );
            f.send(json!({"type":"leave"})).await;
            f.expect("left").await;
            victim.expect("peer_left").await;
        } else {
            sender.relay(&victim.id, json!({"case": n})).await;
            let got = victim.expect("relay").await;
            assert_eq!(
                got["payload"],
                json!({"case": n}),
                "case {n} ({})",
                case.what
            );
            assert_eq!(got["from"], sender.id.as_str());
        }
    }
    // Nothing leaked into the other room along the way.
    let mut other = other;
    other.expect_nothing_pending().await;
    let m = srv.metrics();
    assert!(m.errors.iter().map(|(_, n)| n).sum::<u64>() >= cases.len() as u64);
}
