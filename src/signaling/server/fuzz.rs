//! Property test over the two parsers every client frame meets: the protocol parser and
//! the relay fast path. Seeded, so a failure names the input that broke it.
//! `CONFAB_FUZZ_CASES=N` runs N inputs instead of the CI default (the long run before
//! issue 11 was resolved: see docs/PROTOCOL.md).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::FastRelay;
use crate::signaling::protocol::{ClientMessage, ServerMessage};

const CI_CASES: u64 = 5_000;

/// A plausible message, then possibly mangled: valid ones must parse, broken ones must
/// be refused, and none may panic.
fn input(rng: &mut StdRng) -> String {
    let scalar = |rng: &mut StdRng| -> Value {
        match rng.random_range(0..8) {
            0 => json!(null),
            1 => json!(rng.random::<bool>()),
            2 => json!(rng.random::<i64>()),
            3 => json!(rng.random::<f64>() * 1e300),
            4 => json!("x".repeat(rng.random_range(0..300))),
            5 => json!("\u{202E}\u{200B}é\u{1F600}\\\"{[".repeat(rng.random_range(0..4))),
            6 => json!([]),
            _ => json!({}),
        }
    };
    let mut nested = scalar(rng);
    for _ in 0..rng.random_range(0..150) {
        nested = if rng.random() {
            json!([nested])
        } else {
            json!({ "k": nested })
        };
    }
    let types = ClientMessage::TYPES;
    let ty: Value = if rng.random_ratio(1, 8) {
        scalar(rng)
    } else {
        json!(types[rng.random_range(0..types.len())])
    };
    let mut msg = json!({ "type": ty });
    // Relays are most of the traffic and the fast path's whole diet.
    if rng.random_ratio(1, 3) {
        msg = json!({ "type": "relay", "to": "0123456789ab", "payload": nested.clone() });
    }
    for field in [
        "room", "name", "password", "capacity", "to", "payload", "call_id", "reason", "metadata",
        "state", "nonce", "after", "extra",
    ] {
        if rng.random_ratio(1, 4) {
            let v = match rng.random_range(0..4) {
                0 => nested.clone(),
                1 => json!("abc"),
                2 => json!(rng.random_range(0..2000)),
                _ => scalar(rng),
            };
            msg[field] = v;
        }
    }
    let mut text = msg.to_string();
    match rng.random_range(0..7) {
        // Cut short.
        0 if !text.is_empty() => {
            let mut at = rng.random_range(0..text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
        }
        // A byte flipped to some ASCII.
        1 if !text.is_empty() => {
            let at = rng.random_range(0..text.len());
            if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                let c = char::from(rng.random_range(0x20u8..0x7f));
                text.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
            }
        }
        // Raw noise.
        2 => {
            let bytes: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        // Deep brackets, unbalanced or not.
        3 => {
            let n = rng.random_range(0..40_000);
            text = format!(
                r#"{{"type":"relay","to":"a","payload":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n.saturating_sub(rng.random_range(0..2)))
            );
        }
        // A number grown past what an f64 holds, or long enough to need checking.
        4 => {
            if let Some(at) = text.find(|c: char| c.is_ascii_digit()) {
                let long = "7".repeat(400);
                let grown = ["9e999", "-1e-999", "1E+308", &long][rng.random_range(0..4)];
                text.insert_str(at + 1, grown);
            }
        }
        _ => {}
    }
    text
}

/// What every input must satisfy.
fn check(text: &str) {
    let general = ClientMessage::parse(text);
    if let Err(v) = &general {
        // Errors never echo much of what was sent.
        let wire = v.clone().into_message().to_json();
        assert!(
            wire.len() < 1024,
            "error of {} bytes for {text:?}",
            wire.len()
        );
    }
    let Some(fast) = FastRelay::parse(text) else {
        return;
    };
    // The fast path takes only what the general path would take, and reads it alike.
    match general {
        Ok(ClientMessage::Relay { to, payload }) => {
            assert_eq!(to, fast.to, "{text:?}");
            let raw: Value = serde_json::from_str(fast.payload.get()).expect("raw is JSON");
            assert_eq!(raw, payload, "{text:?}");
            // The frame built around the raw payload is a valid relay for the receiver.
            let frame = format!(
                r#"{{"type":"relay","from":"0123456789ab","payload":{}}}"#,
                fast.payload.get()
            );
            match serde_json::from_str::<ServerMessage>(&frame) {
                Ok(ServerMessage::Relay { payload: got, .. }) => assert_eq!(got, payload),
                other => panic!("relayed frame unreadable: {other:?} for {text:?}"),
            }
        }
        other => panic!("fast path took {text:?}, general path said {other:?}"),
    }
}

#[test]
fn the_parsers_never_panic_never_echo_much_and_the_fast_path_agrees_with_the_general_one() {
    let cases = std::env::var("CONFAB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES);
    let seed = std::env::var("CONFAB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut fast, mut accepted) = (0u64, 0u64);
    for _ in 0..cases {
        let text = input(&mut rng);
        check(&text);
        fast += u64::from(FastRelay::parse(&text).is_some());
        accepted += u64::from(ClientMessage::parse(&text).is_ok());
    }
    println!("{cases} inputs (seed {seed}): {accepted} accepted, {fast} on the fast path");
    // The generator must reach both paths, or the property says little.
    assert!(
        accepted > cases / 100 && fast > cases / 1000,
        "{accepted} / {fast}"
    );
}
