//! Janus API and VideoRoom messages: built and read here, pure (no I/O), so the whole
//! vocabulary confab uses is specified by the tests below.
//!
//! Janus API: <https://janus.conf.meetecho.com/docs/rest.html>; VideoRoom (1.x,
//! multistream): <https://janus.conf.meetecho.com/docs/videoroom.html>.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::SfuError;

pub const PLUGIN: &str = "janus.plugin.videoroom";
/// Janus answers `create` for a room that is already there with this code.
pub const ROOM_EXISTS: i64 = 427;

/// An SDP as Janus carries it (`jsep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsep {
    /// "offer" or "answer".
    pub kind: String,
    pub sdp: String,
}

impl Jsep {
    pub fn to_json(&self) -> Value {
        json!({ "type": self.kind, "sdp": self.sdp })
    }

    fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            kind: v.get("type")?.as_str()?.to_owned(),
            sdp: v.get("sdp")?.as_str()?.to_owned(),
        })
    }
}

/// A Janus API frame, addressed and with its transaction.
pub fn envelope(
    janus: &str,
    transaction: &str,
    session: Option<u64>,
    handle: Option<u64>,
) -> Value {
    let mut v = json!({ "janus": janus, "transaction": transaction });
    if let Some(s) = session {
        v["session_id"] = s.into();
    }
    if let Some(h) = handle {
        v["handle_id"] = h.into();
    }
    v
}

/// Room settings confab asks for: H.264 (the profile our encoder makes) and Opus only.
/// `pin`: what joining it takes; `admin_key`: what creating rooms takes, when Janus is
/// configured with one.
pub fn create_room(
    room: u64,
    publishers: u32,
    pin: Option<&str>,
    admin_key: Option<&str>,
) -> Value {
    let mut v = json!({
        "request": "create",
        "room": room,
        "publishers": publishers,
        "videocodec": "h264",
        "audiocodec": "opus",
        "h264_profile": "42e01f",
        // Our sender follows its own estimate; Janus's REMB only caps it.
        "bitrate": 3_000_000,
        "notify_joining": false,
        "permanent": false,
    });
    if let Some(pin) = pin {
        v["pin"] = pin.into();
    }
    if let Some(key) = admin_key {
        v["admin_key"] = key.into();
    }
    v
}

/// Whether `room` exists (the reply's `exists`): a restarted server looks for the
/// VideoRooms its rooms had.
pub fn room_exists(room: u64) -> Value {
    json!({ "request": "exists", "room": room })
}

/// The answer to [`room_exists`].
pub fn exists_in(reply: &Value) -> bool {
    reply
        .get("exists")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Removes a room confab created.
pub fn destroy_room(room: u64) -> Value {
    json!({ "request": "destroy", "room": room })
}

pub fn join_publisher(room: u64, display: &str, pin: Option<&str>) -> Value {
    let mut v =
        json!({ "request": "join", "ptype": "publisher", "room": room, "display": display });
    if let Some(pin) = pin {
        v["pin"] = pin.into();
    }
    v
}

/// Sent with our offer; Janus answers in the event that follows. `descriptions` (mid,
/// text) reach subscribers as `feed_description`: how a screen is told from a camera.
pub fn configure(descriptions: &[(String, String)]) -> Value {
    let mut v = json!({ "request": "configure", "audio": true, "video": true });
    if !descriptions.is_empty() {
        v["descriptions"] = descriptions
            .iter()
            .map(|(mid, d)| json!({ "mid": mid, "description": d }))
            .collect();
    }
    v
}

/// One publisher stream to subscribe to: every stream of a feed (mid None) or one, and
/// the simulcast layer to start its video in (Janus's default: the largest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub feed: u64,
    pub mid: Option<String>,
    pub substream: Option<u8>,
}

/// One subscriber connection carrying these streams (multistream).
pub fn join_subscriber(
    room: u64,
    streams: &[StreamRequest],
    private_id: Option<u64>,
    pin: Option<&str>,
) -> Value {
    let mut v = json!({
        "request": "join",
        "ptype": "subscriber",
        "room": room,
        "streams": stream_list(streams),
    });
    if let Some(p) = private_id {
        v["private_id"] = p.into();
    }
    if let Some(pin) = pin {
        v["pin"] = pin.into();
    }
    v
}

/// Adds streams to a running subscription; Janus offers again (`updated`).
pub fn subscribe(streams: &[StreamRequest]) -> Value {
    json!({ "request": "subscribe", "streams": stream_list(streams) })
}

/// Sent with our answer to Janus's offer.
pub fn start() -> Value {
    json!({ "request": "start" })
}

pub fn leave() -> Value {
    json!({ "request": "leave" })
}

pub fn unpublish() -> Value {
    json!({ "request": "unpublish" })
}

fn stream_list(streams: &[StreamRequest]) -> Value {
    streams
        .iter()
        .map(|r| {
            let mut v = json!({ "feed": r.feed });
            if let Some(mid) = &r.mid {
                v["mid"] = mid.as_str().into();
            }
            if let Some(layer) = r.substream {
                v["substream"] = layer.into();
            }
            v
        })
        .collect()
}

/// What a `janus` frame from the server is.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `success` of a request: `data` (create, attach) or a plugin's synchronous reply.
    Success {
        transaction: String,
        data: Value,
        plugin: Option<Value>,
    },
    Error {
        transaction: String,
        code: i64,
        reason: String,
    },
    /// An asynchronous request was taken; its `event` follows.
    Ack { transaction: String },
    /// A plugin event: the reply to a request (`transaction` set) or news.
    Event {
        transaction: Option<String>,
        handle: u64,
        data: Value,
        jsep: Option<Jsep>,
    },
    /// Anything else (webrtcup, media, hangup, slowlink, detached, timeout, ...).
    Other { kind: String, frame: Value },
}

pub fn parse(text: &str) -> Result<Incoming, SfuError> {
    let v: Value = serde_json::from_str(text)?;
    let kind = v["janus"]
        .as_str()
        .ok_or_else(|| SfuError::Protocol(format!("no \"janus\" in {text}")))?
        .to_owned();
    let transaction = v["transaction"].as_str().map(str::to_owned);
    let tx = || {
        transaction
            .clone()
            .ok_or_else(|| SfuError::Protocol(format!("{kind} without a transaction")))
    };
    Ok(match kind.as_str() {
        "success" => Incoming::Success {
            transaction: tx()?,
            data: v["data"].clone(),
            plugin: v.get("plugindata").map(|p| p["data"].clone()),
        },
        "error" => Incoming::Error {
            transaction: tx()?,
            code: v["error"]["code"].as_i64().unwrap_or(0),
            reason: v["error"]["reason"].as_str().unwrap_or("").to_owned(),
        },
        "ack" => Incoming::Ack { transaction: tx()? },
        "event" => Incoming::Event {
            transaction,
            handle: v["sender"].as_u64().unwrap_or(0),
            data: v["plugindata"]["data"].clone(),
            jsep: v.get("jsep").and_then(Jsep::from_json),
        },
        _ => Incoming::Other { kind, frame: v },
    })
}

/// A plugin reply that is an error (`error_code`), as an error.
pub fn plugin_error(data: &Value) -> Option<SfuError> {
    let code = data.get("error_code")?.as_i64()?;
    Some(SfuError::Plugin {
        code,
        reason: data["error"].as_str().unwrap_or("").to_owned(),
    })
}

/// A publisher as VideoRoom lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Publisher {
    pub id: u64,
    #[serde(default)]
    pub display: Option<String>,
    /// What it publishes; a stream it stopped may stay listed as `disabled`.
    #[serde(default)]
    pub streams: Vec<PubStream>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PubStream {
    pub mid: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub disabled: bool,
}

/// One m-section of a subscription, as `attached`/`updated` list them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubStream {
    pub mid: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub feed_id: Option<u64>,
    #[serde(default)]
    pub feed_display: Option<String>,
    /// The publisher's own mid of this stream.
    #[serde(default)]
    pub feed_mid: Option<String>,
    #[serde(default)]
    pub feed_description: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// What a VideoRoom event means to confab.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// Our publisher joined: our feed id and who already publishes.
    Joined {
        id: u64,
        private_id: Option<u64>,
        publishers: Vec<Publisher>,
    },
    /// Publishers that started publishing.
    Publishers(Vec<Publisher>),
    /// A feed stopped publishing (`unpublished`) or left the room (`leaving`).
    Gone(u64),
    /// A subscription's m-sections (after join: `attached`; after a change: `updated`).
    Streams(Vec<SubStream>),
    /// Anything else (configured, started, ...).
    Other,
}

pub fn room_event(data: &Value) -> Result<RoomEvent, SfuError> {
    let list = |key: &str| -> Result<Vec<Publisher>, SfuError> {
        Ok(match data.get(key) {
            Some(v) => serde_json::from_value(v.clone())?,
            None => Vec::new(),
        })
    };
    Ok(match data["videoroom"].as_str() {
        Some("joined") => RoomEvent::Joined {
            id: data["id"]
                .as_u64()
                .ok_or_else(|| SfuError::Protocol(format!("joined without an id: {data}")))?,
            private_id: data["private_id"].as_u64(),
            publishers: list("publishers")?,
        },
        Some("attached" | "updated") => {
            RoomEvent::Streams(serde_json::from_value(data["streams"].clone())?)
        }
        Some("event") if data.get("publishers").is_some() => {
            RoomEvent::Publishers(list("publishers")?)
        }
        // `leaving` is "ok" when the event is about ourselves.
        Some("event") => match (data["unpublished"].as_u64(), data["leaving"].as_u64()) {
            (Some(id), _) | (None, Some(id)) => RoomEvent::Gone(id),
            _ => RoomEvent::Other,
        },
        _ => RoomEvent::Other,
    })
}

/// `sdp` with the `msid` of the m-sections in `names` (mid -> stream id, track id)
/// replaced. Janus names subscriber tracks by mid only (`janus3`) and gives a departed
/// publisher's m-sections to the next one, while webrtc-rs never announces a track id
/// it has seen before: renamed per feed, the newcomer's media shows.
pub fn with_msids(sdp: &str, names: &HashMap<String, (String, String)>) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for section in split_sections(sdp) {
        let name = section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .and_then(|mid| names.get(mid));
        let Some((stream, track)) = name else {
            out.push_str(section);
            continue;
        };
        for line in section.split_inclusive('\n') {
            if line.starts_with("a=msid:") {
                let end = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
                out.push_str(&format!("a=msid:{stream} {track}{end}"));
            } else {
                out.push_str(line);
            }
        }
    }
    out
}

/// Our offer's m-sections that carry a track: mid, track id (from `msid`), and whether
/// it is video. What `configure`'s `descriptions` are made from.
pub fn local_tracks(sdp: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for section in split_sections(sdp).into_iter().skip(1) {
        let video = section.starts_with("m=video");
        let mut mid = None;
        let mut track = None;
        for line in section.lines().map(str::trim_end) {
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.to_owned());
            } else if let Some(msid) = line.strip_prefix("a=msid:") {
                track = msid.split_whitespace().nth(1).map(str::to_owned);
            }
        }
        if let (Some(mid), Some(track)) = (mid, track) {
            out.push((mid, track, video));
        }
    }
    out
}

/// The session part and each m-section, as they are in `sdp` (joined, they are `sdp`).
pub(super) fn split_sections(sdp: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = sdp.match_indices("\nm=").map(|(i, _)| i + 1).collect();
    starts.insert(0, 0);
    starts.push(sdp.len());
    starts.windows(2).map(|w| &sdp[w[0]..w[1]]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_addressed_and_carry_their_transaction() {
        let v = envelope("message", "t7", Some(1), Some(2));
        assert_eq!(
            v,
            json!({"janus":"message","transaction":"t7","session_id":1,"handle_id":2})
        );
        assert_eq!(
            envelope("create", "t1", None, None),
            json!({"janus":"create","transaction":"t1"})
        );
    }

    #[test]
    fn whether_a_room_exists_is_in_the_plugins_answer() {
        assert_eq!(room_exists(5)["request"], "exists");
        let reply = parse(
            r#"{"janus":"success","session_id":1,"sender":7,"transaction":"t",
                "plugindata":{"plugin":"janus.plugin.videoroom",
                "data":{"videoroom":"success","room":5,"exists":true}}}"#,
        )
        .unwrap();
        let Incoming::Success { plugin, .. } = reply else {
            panic!("{reply:?}")
        };
        assert!(exists_in(&plugin.unwrap()));
        assert!(!exists_in(
            &json!({"videoroom": "success", "exists": false})
        ));
        assert!(!exists_in(&json!({})), "no answer, no room");
    }

    #[test]
    fn a_room_is_h264_constrained_baseline_and_opus() {
        let v = create_room(1234, 16, None, None);
        assert_eq!(v["videocodec"], "h264");
        assert_eq!(v["audiocodec"], "opus");
        assert_eq!(v["h264_profile"], "42e01f");
        assert_eq!(v["publishers"], 16);
        assert!(v.get("pin").is_none() && v.get("admin_key").is_none());
    }

    #[test]
    fn a_room_the_server_makes_takes_its_pin_to_join() {
        let v = create_room(1, 16, Some("p1n"), Some("adm"));
        assert_eq!((&v["pin"], &v["admin_key"]), (&json!("p1n"), &json!("adm")));
        assert_eq!(join_publisher(1, "m1", Some("p1n"))["pin"], "p1n");
        assert_eq!(join_subscriber(1, &[], None, Some("p1n"))["pin"], "p1n");
        assert!(join_publisher(1, "m1", None).get("pin").is_none());
    }

    #[test]
    fn a_subscription_names_every_feed_as_a_stream_and_its_first_layer() {
        let feed = |feed, mid: Option<&str>, substream| StreamRequest {
            feed,
            mid: mid.map(str::to_owned),
            substream,
        };
        let v = join_subscriber(
            5,
            &[feed(11, None, None), feed(12, None, Some(0))],
            Some(99),
            None,
        );
        assert_eq!(v["ptype"], "subscriber");
        assert_eq!(v["streams"], json!([{"feed":11},{"feed":12,"substream":0}]));
        assert_eq!(v["private_id"], 99);
        assert_eq!(
            subscribe(&[feed(13, None, Some(2)), feed(11, Some("3"), None)])["streams"],
            json!([{"feed":13,"substream":2},{"feed":11,"mid":"3"}])
        );
    }

    #[test]
    fn frames_are_read_by_kind() {
        let s = parse(r#"{"janus":"success","transaction":"a","data":{"id":42}}"#).unwrap();
        assert!(matches!(s, Incoming::Success { ref data, plugin: None, .. } if data["id"] == 42));
        let e = parse(r#"{"janus":"error","transaction":"b","error":{"code":458,"reason":"No such session"}}"#).unwrap();
        assert_eq!(
            e,
            Incoming::Error {
                transaction: "b".into(),
                code: 458,
                reason: "No such session".into()
            }
        );
        let ev = parse(
            r#"{"janus":"event","session_id":1,"sender":7,"transaction":"c",
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","configured":"ok"}},
                "jsep":{"type":"answer","sdp":"v=0"}}"#,
        )
        .unwrap();
        let Incoming::Event {
            transaction,
            handle,
            jsep,
            ..
        } = ev
        else {
            panic!("{ev:?}")
        };
        assert_eq!((transaction.as_deref(), handle), (Some("c"), 7));
        assert_eq!(jsep.unwrap().kind, "answer");
        assert!(matches!(
            parse(r#"{"janus":"webrtcup","session_id":1,"sender":7}"#).unwrap(),
            Incoming::Other { ref kind, .. } if kind == "webrtcup"
        ));
        assert!(parse(r#"{"janus":"ack"}"#).is_err());
    }

    #[test]
    fn videoroom_events_are_read_by_meaning() {
        let joined = json!({"videoroom":"joined","room":1,"id":100,"private_id":5,
            "publishers":[{"id":101,"display":"m1","streams":[]}]});
        assert_eq!(
            room_event(&joined).unwrap(),
            RoomEvent::Joined {
                id: 100,
                private_id: Some(5),
                publishers: vec![Publisher {
                    id: 101,
                    display: Some("m1".into()),
                    streams: Vec::new(),
                }]
            }
        );
        let news = json!({"videoroom":"event","room":1,"publishers":[{"id":102,"display":"m2",
            "streams":[{"type":"audio","mid":"0"},{"type":"video","mid":"3","disabled":true}]}]});
        let RoomEvent::Publishers(p) = room_event(&news).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].id, 102);
        assert!(!p[0].streams[0].disabled && p[0].streams[1].disabled);
        for key in ["unpublished", "leaving"] {
            let gone = json!({"videoroom":"event","room":1, key: 102});
            assert_eq!(room_event(&gone).unwrap(), RoomEvent::Gone(102));
        }
        let ours = json!({"videoroom":"event","leaving":"ok"});
        assert_eq!(room_event(&ours).unwrap(), RoomEvent::Other);
        let streams = json!({"videoroom":"updated","streams":[
            {"type":"audio","mindex":0,"mid":"0","feed_id":101,"feed_display":"m1"},
            {"type":"data","mindex":2,"mid":"2","sources":1},
            {"type":"video","mindex":1,"mid":"1","active":false}]});
        let RoomEvent::Streams(s) = room_event(&streams).unwrap() else {
            panic!()
        };
        assert_eq!(s[0].feed_display.as_deref(), Some("m1"));
        assert_eq!((s[1].kind.as_str(), s[1].feed_id), ("data", None));
        assert!(!s[2].active);
    }

    #[test]
    fn a_plugin_error_is_an_error() {
        let e = plugin_error(&json!({"videoroom":"event","error_code":427,"error":"Room exists"}));
        assert!(matches!(
            e,
            Some(SfuError::Plugin {
                code: ROOM_EXISTS,
                ..
            })
        ));
        assert!(plugin_error(&json!({"videoroom":"created"})).is_none());
    }

    #[test]
    fn named_sections_get_their_msid_and_nothing_else_changes() {
        let sdp = "v=0\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:janus janus0\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=msid:janus janus4\r\n";
        let names = HashMap::from([(
            "4".to_owned(),
            ("feed-9".to_owned(), "feed-9-m4-0".to_owned()),
        )]);
        let out = with_msids(sdp, &names);
        assert_eq!(
            out,
            sdp.replace("a=msid:janus janus4", "a=msid:feed-9 feed-9-m4-0")
        );
        assert_eq!(with_msids(sdp, &HashMap::new()), sdp);
    }

    #[test]
    fn our_tracks_are_found_with_their_mids() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:camera m1-mic\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=msid:camera m1-camera\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=msid:screen m1-screen-1\r\n";
        assert_eq!(
            local_tracks(sdp),
            vec![
                ("0".into(), "m1-mic".into(), false),
                ("1".into(), "m1-camera".into(), true),
                ("3".into(), "m1-screen-1".into(), true)
            ]
        );
        let c = configure(&[("3".into(), "screen".into())]);
        assert_eq!(
            c["descriptions"],
            json!([{"mid":"3","description":"screen"}])
        );
        assert!(configure(&[]).get("descriptions").is_none());
    }
}
