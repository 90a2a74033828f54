//! Specs of the wire protocol (kept beside it, not in it, for its size).

use super::*;

#[test]
fn a_media_state_from_a_peer_without_recording_parses_as_not_recording() {
    let old: MediaState =
        serde_json::from_str(r#"{"audio_muted":true,"has_camera":true}"#).unwrap();
    assert!(old.audio_muted && old.has_camera && !old.recording);
    let new = MediaState {
        recording: true,
        ..old
    };
    let wire = serde_json::to_value(new).unwrap();
    assert_eq!(wire["recording"], true);
    assert_eq!(serde_json::from_value::<MediaState>(wire).unwrap(), new);
}

#[test]
fn every_error_code_has_a_distinct_wire_name_matching_serde() {
    let mut seen = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        let wire = serde_json::to_value(code).unwrap();
        assert_eq!(wire.as_str().unwrap(), code.as_str());
        assert!(seen.insert(code.as_str()), "duplicate {code}");
    }
}

#[test]
fn every_client_type_round_trips_and_is_listed() {
    let samples = vec![
        ClientMessage::Join {
            room: "r".into(),
            name: "n".into(),
            password: Some("p".into()),
            capacity: Some(3),
            state: None,
            sfu: true,
            broadcast: true,
            role: Some(Role::Viewer),
        },
        ClientMessage::Leave,
        ClientMessage::Relay {
            to: "x".into(),
            payload: serde_json::json!({"sdp": "v=0"}),
        },
        ClientMessage::MediaState {
            state: MediaState::default(),
        },
        ClientMessage::CallInvite {
            to: "x".into(),
            metadata: "m".into(),
        },
        ClientMessage::CallAccept {
            call_id: "c".into(),
        },
        ClientMessage::CallDecline {
            call_id: "c".into(),
            reason: Some("busy".into()),
        },
        ClientMessage::CallCancel {
            call_id: "c".into(),
        },
        ClientMessage::CallHangup {
            call_id: "c".into(),
        },
        ClientMessage::ListRooms {
            after: Some("standup".into()),
        },
        ClientMessage::Ping { nonce: None },
        ClientMessage::Resume { token: "t".into() },
        ClientMessage::TestCall,
    ];
    assert_eq!(samples.len(), ClientMessage::TYPES.len());
    for m in samples {
        let text = serde_json::to_string(&m).unwrap();
        assert!(ClientMessage::TYPES.contains(&m.type_name()));
        assert_eq!(ClientMessage::parse(&text).unwrap(), m, "{text}");
    }
}

#[test]
fn names_are_normalised_and_may_not_hide_or_turn_text() {
    assert_eq!(validate_name(" Cafe\u{301} ").unwrap(), "Caf\u{e9}");
    for bad in [
        "evil\u{202E}txt",
        "a\u{200B}b",
        "\u{2066}x\u{2069}",
        "\u{FEFF}bom",
    ] {
        let err = validate_name(bad).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidName, "{bad:?}");
    }
    assert!(validate_room("r\u{200F}").is_err(), "rooms too");
    assert!(validate_name("Ann (You)").is_err(), "nobody else is you");
    assert!(validate_room("lunch (you)").is_ok(), "rooms may say it");
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    assert_eq!(validate_name(family).unwrap(), family, "emoji joiners stay");
}

#[test]
fn an_error_never_echoes_more_than_a_few_hundred_bytes_of_input() {
    let huge = "x".repeat(65_000);
    for input in [
        format!(r#"{{"type":"{huge}"}}"#),
        format!(r#"{{"type":"join","room":1,"name":"{huge}"}}"#),
    ] {
        let err = ClientMessage::parse(&input).unwrap_err().into_message();
        let frame = err.to_json();
        assert!(
            frame.len() < 1024,
            "{} bytes for {} in",
            frame.len(),
            input.len()
        );
    }
    // Errors the hub words itself may quote input too (an unknown peer id, say).
    let quoting = ProtocolViolation::new(ErrorCode::UnknownPeer, format!("no member {huge:?}"));
    assert!(quoting.into_message().to_json().len() < 1024);
}

#[test]
fn parse_tells_bad_json_unknown_type_and_bad_fields_apart() {
    let code = |t: &str| ClientMessage::parse(t).unwrap_err().code;
    assert_eq!(code("{"), ErrorCode::BadJson);
    assert_eq!(code("[1]"), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"room":"a"}"#), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
    assert_eq!(code(r#"{"type":"join","room":"a"}"#), ErrorCode::BadMessage);
    assert_eq!(
        code(r#"{"type":"join","room":"a","name":5}"#),
        ErrorCode::BadMessage
    );
}

#[test]
fn names_are_trimmed_and_bounded() {
    assert_eq!(validate_name("  Ada ").unwrap(), "Ada");
    assert_eq!(
        validate_name("   ").unwrap_err().code,
        ErrorCode::InvalidName
    );
    assert!(validate_name(&"é".repeat(64)).is_ok());
    assert!(validate_name(&"é".repeat(65)).is_err());
    assert_eq!(
        validate_room("a\u{7}b").unwrap_err().code,
        ErrorCode::InvalidRoom
    );
}
