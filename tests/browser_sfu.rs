//! Browser guests in SFU rooms: the page (`assets/web/sfu.js`) takes the room's media
//! through Debian's Janus (`support/janus.rs`) beside headless peers doing the same
//! (`confab headless --sfu`); presence and chat stay on confab's server. Run under
//! `.ci/netns`: Janus needs the veth the helper adds, and Chromium gathers on it too.

mod support;

use support::browser::*;
use support::from;
use support::janus::Janus;

use confab::headless::{self, HeadlessOptions, VideoInput};
use confab::sfu::SfuTarget;
use serde_json::{Value, json};

/// A headless peer whose media goes through `janus`'s VideoRoom for confab room `room`.
fn sfu_peer(
    janus: &Janus,
    url: &str,
    room: &str,
    name: &str,
    tone: f32,
    seconds: f64,
) -> HeadlessOptions {
    let mut o = HeadlessOptions::new(url, room, name);
    o.seconds = seconds;
    o.tone_hz = tone;
    o.size = (320, 240);
    // Room for the largest of three simulcast layers at 320x240 from the first second
    // (the estimate to Janus starts at the configured rate).
    o.bitrate_bps = 450_000;
    o.bind_addrs = vec![janus.bind_addr()];
    o.sfu = Some(SfuTarget::for_room(&janus.url(), room));
    o
}

fn events<'a>(snap: &'a Value, kind: &str) -> Vec<&'a Value> {
    snap["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// The roles of `name`'s tiles on the page, sorted.
fn tiles_of(snap: &Value, name: &str) -> Vec<String> {
    let mut roles: Vec<String> = snap["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == name)
        .map(|t| t["role"].as_str().unwrap().to_owned())
        .collect();
    roles.sort();
    roles
}

/// The link names Janus only (`?sfu=`): the page finds the VideoRoom from the room's
/// name as the engine does, so it meets the headless peers without a room number. The
/// guest shares its screen mid-call (a `configure` with a new offer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_in_a_janus_room_sees_and_is_seen_by_two_headless_peers_shares_and_chats() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let janus = Janus::start();
    let fx = fixture(25);
    let srv = support::server().await;
    let url = srv.ws_url();
    let page = format!("{}&sfu={}", page_url(&srv, "sfu", "gia"), janus.url());
    let guest = spawn_guest(
        &fx,
        &page,
        16.0,
        json!([
            {"at": 5, "do": "screen"},
            {"at": 8, "do": "chat", "text": "hello from chromium"},
            {"at": 9, "do": "snapshot"},
        ]),
    );
    // The headless peers come once the page is in: their chat goes to who is there.
    until_page_joined(&srv, |m| m.rooms > 0).await;
    let peers: Vec<_> = [("hal", 440.0), ("ivy", 660.0)]
        .into_iter()
        .map(|(name, tone)| {
            let mut o = sfu_peer(&janus, &url, "sfu", name, tone, 12.0);
            o.chat = Some(format!("hello from {name}"));
            tokio::spawn(headless::run(o))
        })
        .collect();
    let g = guest_result(guest).await;
    let mut reports = Vec::new();
    for p in peers {
        reports.push(p.await.unwrap().expect("headless run"));
    }

    let mid = &g["snapshots"][0]["snapshot"];
    let last = &g["final"]["snapshot"];
    assert_eq!(mid["sfu"]["state"], "joined", "{mid:#}");
    assert_eq!(
        mid["sfu"]["room"].as_u64(),
        Some(SfuTarget::for_room(&janus.url(), "sfu").room),
        "the room the engine picks for \"sfu\""
    );
    for r in &reports {
        assert!(r.errors.is_empty(), "{}: {:?}", r.name, r.errors);
        // The guest's barcodes in order and its tone, through Janus.
        assert_headless_got_guest(r, "gia", 60, true);
        let gia = from(r, "gia");
        assert_eq!(gia.chat, ["hello from chromium"], "{}", r.name);
        // The shared screen is its own stream, described as one to Janus.
        let screen = gia.screen.as_ref().expect("gia's screen");
        assert!(screen.frames_decoded >= 10, "{}: {screen:?}", r.name);
        // The page decoded the peer's barcodes in order; one camera tile each.
        assert_page_got_frames(last, &r.name, 100);
        assert_eq!(tiles_of(mid, &r.name), ["camera"], "{mid:#}");
    }
    let chat: Vec<(&str, &str)> = last["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["from"].as_str().unwrap(), l["text"].as_str().unwrap()))
        .collect();
    for name in ["hal", "ivy"] {
        let line = format!("hello from {name}");
        assert!(chat.contains(&(name, line.as_str())), "{chat:?}");
    }
    // No mesh: every byte went through the two connections to Janus.
    let st = &mid["peers"];
    assert!(
        st.as_array().unwrap().iter().all(|p| p["sfu"] == true),
        "{st:#}"
    );
    let sub = &g["snapshots"][0]["stats"]["sfu-subscriber"];
    let audio: Vec<&Value> = sub["audio_in"].as_array().unwrap().iter().collect();
    assert_eq!(audio.len(), 2, "{sub:#}");
    for a in audio {
        assert_eq!(a["codec"], "audio/opus", "{sub:#}");
        assert!(a["packets_received"].as_u64().unwrap() >= 150, "{sub:#}");
        assert!(a["total_audio_energy"].as_f64().unwrap() > 0.0, "{sub:#}");
    }
    let publ = &g["snapshots"][0]["stats"]["sfu-publisher"];
    assert_eq!(publ["video_out"][0]["codec"], "video/H264", "{publ:#}");
    assert!(last["tiles"].as_array().unwrap().is_empty(), "{last:#}");
    let _ = srv.shutdown().await;
}

/// hal leaves after a few seconds, ivy (camera and a shared screen) stays: Janus says
/// hal's feed is gone, its tile leaves the page, and ivy's pictures go on. jo, who comes
/// after hal left, is seen too (Janus may give it hal's m-sections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_leaves_disappears_from_the_guests_view_and_the_others_go_on() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let janus = Janus::start();
    let fx = fixture(25);
    let srv = support::server().await;
    let url = srv.ws_url();
    let target = SfuTarget::for_room(&janus.url(), "leave");
    let page = format!(
        "{}&sfu={}&sfu_room={}",
        page_url(&srv, "leave", "gia"),
        janus.url(),
        target.room
    );
    let guest = spawn_guest(
        &fx,
        &page,
        16.0,
        json!([{"at": 4, "do": "snapshot"}, {"at": 11, "do": "snapshot"}]),
    );
    until_page_joined(&srv, |m| m.rooms > 0).await;
    let hal = tokio::spawn(headless::run(sfu_peer(
        &janus, &url, "leave", "hal", 440.0, 6.0,
    )));
    let mut o = sfu_peer(&janus, &url, "leave", "ivy", 660.0, 15.0);
    o.share_screen = Some(VideoInput::Y4m(fx.video.clone()));
    let ivy = tokio::spawn(headless::run(o));
    let hal = hal.await.unwrap().unwrap();
    let jo = tokio::spawn(headless::run(sfu_peer(
        &janus, &url, "leave", "jo", 880.0, 6.0,
    )));
    let g = guest_result(guest).await;
    let (ivy, jo) = (ivy.await.unwrap().unwrap(), jo.await.unwrap().unwrap());
    for r in [&hal, &ivy, &jo] {
        assert!(r.errors.is_empty(), "{}: {:?}", r.name, r.errors);
    }

    let (before, after) = (
        &g["snapshots"][0]["snapshot"],
        &g["snapshots"][1]["snapshot"],
    );
    assert_eq!(tiles_of(before, "hal"), ["camera"], "{before:#}");
    assert_eq!(tiles_of(before, "ivy"), ["camera", "screen"], "{before:#}");
    // Gone from the view, and Janus said so (not only confab's peer_left).
    assert!(tiles_of(after, "hal").is_empty(), "{after:#}");
    let hal_id = page_peer(after, "hal")["id"].clone();
    assert!(
        events(after, "sfu_feed_gone")
            .iter()
            .any(|e| e["id"] == hal_id),
        "{:#}",
        after["events"]
    );
    assert_page_got_frames(after, "hal", 60);
    // ivy goes on: more of her frames, in order, after hal left.
    assert_eq!(tiles_of(after, "ivy"), ["camera", "screen"], "{after:#}");
    let frames = |s: &Value| page_peer(s, "ivy")["camera"]["frames"].as_u64().unwrap();
    let last = &g["final"]["snapshot"];
    assert!(frames(last) >= frames(after) + 60, "{last:#}");
    assert_page_got_frames(last, "ivy", 200);
    assert_headless_got_guest(&ivy, "gia", 150, true);
    assert_eq!(tiles_of(after, "jo"), ["camera"], "{after:#}");
    assert_page_got_frames(last, "jo", 60);
    let _ = srv.shutdown().await;
}

/// Stands in for the server side of room modes (not built yet): serves the page and
/// passes its WebSocket through to the real server, adding `media` to the welcome and,
/// after a message from the page that has a value at a JSON pointer (`on`), a
/// `room_media` message.
struct MediaTap {
    addr: std::net::SocketAddr,
}

impl MediaTap {
    async fn start(upstream: String, welcome: Value, on: Vec<(&str, Value, Value)>) -> MediaTap {
        use axum::extract::ws::{Message as Axm, WebSocketUpgrade};
        let on: Vec<(String, Value, Value)> = on
            .into_iter()
            .map(|(p, v, m)| (p.to_owned(), v, m))
            .collect();
        let ctx = std::sync::Arc::new((upstream, welcome, on));
        let ws = axum::routing::get(move |up: WebSocketUpgrade| {
            let ctx = ctx.clone();
            async move {
                up.on_upgrade(move |mut page| async move {
                    use futures::{SinkExt, StreamExt};
                    use tokio_tungstenite::tungstenite::Message as Tm;
                    let (upstream, welcome, on) = &*ctx;
                    let (mut server, _) =
                        match tokio_tungstenite::connect_async(upstream.as_str()).await {
                            Ok(s) => s,
                            Err(e) => panic!("the real server at {upstream}: {e}"),
                        };
                    loop {
                        tokio::select! {
                            m = page.recv() => {
                                let t = match m {
                                    Some(Ok(Axm::Text(t))) => t,
                                    Some(Ok(Axm::Close(_))) | Some(Err(_)) | None => break,
                                    Some(Ok(_)) => continue,
                                };
                                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                                let switch = on
                                    .iter()
                                    .find(|(p, want, _)| v.pointer(p) == Some(want))
                                    .map(|(_, _, media)| media.clone());
                                if server.send(Tm::text(t.as_str())).await.is_err() {
                                    break;
                                }
                                if let Some(media) = switch {
                                    let m = json!({"type": "room_media", "media": media});
                                    let _ = page.send(Axm::text(m.to_string())).await;
                                }
                            }
                            m = server.next() => {
                                // Pings are answered by the library as it reads.
                                let t = match m {
                                    Some(Ok(Tm::Text(t))) => t,
                                    Some(Ok(Tm::Close(_))) | Some(Err(_)) | None => break,
                                    Some(Ok(_)) => continue,
                                };
                                let mut v: Value = serde_json::from_str(t.as_str()).unwrap();
                                if v["type"] == "welcome" {
                                    v["media"] = welcome.clone();
                                }
                                if page.send(Axm::text(v.to_string())).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                })
            }
        });
        let app = axum::Router::new()
            .route("/ws", ws)
            .merge(confab::signaling::web_router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        MediaTap { addr }
    }
}

/// The welcome says the room's media is in a Janus VideoRoom: the page publishes there
/// and makes no mesh. A `room_media` back to mesh closes that and negotiates with hal (a
/// mesh peer): pictures both ways; one to sfu again takes the page back to Janus. The
/// page's chat (a relay in an SFU room) and its mute (a media state) set them off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcomes_media_puts_a_guest_in_janus_and_room_media_moves_it_to_mesh_and_back() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let janus = Janus::start();
    let fx = fixture(25);
    let srv = support::server().await;
    let sfu = json!({"mode": "sfu", "url": janus.url(), "room": 4242});
    let tap = MediaTap::start(
        srv.ws_url(),
        sfu.clone(),
        vec![
            (
                "/payload/text",
                json!("mesh please"),
                json!({"mode": "mesh"}),
            ),
            ("/state/audio_muted", json!(true), sfu.clone()),
        ],
    )
    .await;
    let peer = tokio::spawn(headless::run(hal(&srv.ws_url(), "switch", 22.0)));
    let guest = spawn_guest(
        &fx,
        &format!("http://{}/?room=switch&name=gia&audio=raw", tap.addr),
        18.0,
        json!([
            {"at": 4, "do": "snapshot"},
            {"at": 5, "do": "chat", "text": "mesh please"},
            {"at": 14, "do": "snapshot"},
            {"at": 15, "do": "mute"},
        ]),
    );
    let g = guest_result(guest).await;
    let report = peer.await.unwrap().unwrap();
    let (in_sfu, in_mesh, back) = (
        &g["snapshots"][0]["snapshot"],
        &g["snapshots"][1]["snapshot"],
        &g["final"]["snapshot"],
    );

    // In Janus from the welcome: published, and no connection to hal.
    assert_eq!(in_sfu["sfu"]["state"], "joined", "{in_sfu:#}");
    assert_eq!(in_sfu["sfu"]["room"], 4242);
    assert_eq!(in_sfu["sfu"]["publisher"], "connected", "{in_sfu:#}");
    assert!(in_sfu["peers"].as_array().unwrap().is_empty(), "{in_sfu:#}");
    // Chat went through the server there.
    assert_eq!(from(&report, "gia").chat, ["mesh please"]);

    // Mesh: the Janus side closed, pictures and sound both ways with hal.
    assert_eq!(in_mesh["sfu"], Value::Null, "{in_mesh:#}");
    let modes: Vec<&Value> = events(back, "room_media")
        .iter()
        .map(|e| &e["mode"])
        .collect();
    assert_eq!(modes, ["sfu", "mesh", "sfu"], "{:#}", back["events"]);
    assert_page_got_frames(in_mesh, "hal", 100);
    assert_eq!(page_peer(in_mesh, "hal")["connection"], "connected");
    // (No tone check: the analyser measures it at the end, muted by then.)
    assert_headless_got_guest(&report, "gia", 60, false);

    // And back in Janus: the mesh connection went with the move.
    assert_eq!(back["sfu"]["state"], "joined", "{back:#}");
    assert_eq!(back["sfu"]["publisher"], "connected", "{back:#}");
    assert!(back["peers"].as_array().unwrap().is_empty(), "{back:#}");
    let _ = srv.shutdown().await;
}

/// A link may name only a Janus on the page's own host; one that is not listening is
/// reported on the page, with its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_janus_elsewhere_is_refused_and_an_unreachable_one_is_reported() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = fixture(5);
    let srv = support::server().await;
    let port = support::closed_port();
    let look = json!([{"at": 3, "do": "snapshot"}]);
    let closed = format!("ws://127.0.0.1:{port}");
    let cases = [
        (
            "ws://10.1.2.3:8188".to_owned(),
            "Ignoring sfu=ws://10.1.2.3:8188".to_owned(),
            Value::Null,
        ),
        (
            closed.clone(),
            format!("cannot reach Janus at {closed}"),
            json!("failed"),
        ),
    ];
    for (janus, says, sfu_state) in cases {
        let page = format!("{}&sfu={janus}", page_url(&srv, "nojanus", "gia"));
        let g = guest_result(spawn_guest(&fx, &page, 4.0, look.clone())).await;
        let snap = &g["snapshots"][0]["snapshot"];
        assert!(
            snap["notice_text"].as_str().unwrap().contains(&says),
            "{snap:#}"
        );
        assert_eq!(snap["sfu"]["state"], sfu_state, "{snap:#}");
    }
    let _ = srv.shutdown().await;
}

/// A room the server made with a `pin` (here: made by the test through Janus's API): the
/// page joins it with the pin from the welcome's media; without it Janus refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_joins_a_pinned_videoroom_with_the_pin_from_the_welcome() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let janus = Janus::start();
    let (api, _news) = confab::sfu::Janus::connect(&janus.url(), None)
        .await
        .unwrap();
    let admin = api.attach().await.unwrap();
    let create = confab::sfu::videoroom::create_room(4343, 4, Some("s3cret"), None);
    admin.request(create, None).await.expect("room created");
    let no_pin = json!({"request": "join", "ptype": "publisher", "room": 4343, "display": "x"});
    let refused = admin
        .request(no_pin, None)
        .await
        .expect_err("no pin, no entry");
    assert!(refused.to_string().contains("(pin)"), "{refused}");

    let fx = fixture(5);
    let srv = support::server().await;
    let media = json!({"mode": "sfu", "url": janus.url(), "room": 4343, "pin": "s3cret"});
    let tap = MediaTap::start(srv.ws_url(), media, vec![]).await;
    let g = guest_result(spawn_guest(
        &fx,
        &format!("http://{}/?room=pinned&name=gia", tap.addr),
        4.0,
        json!([{"at": 3, "do": "snapshot"}]),
    ))
    .await;
    let snap = &g["snapshots"][0]["snapshot"];
    assert_eq!(snap["sfu"]["state"], "joined", "{snap:#}");
    assert_eq!(snap["sfu"]["publisher"], "connected", "{snap:#}");
    let _ = srv.shutdown().await;
}

/// The server itself moves the room (`confab serve --sfu`, here past a mesh of one): a
/// guest that started in a mesh follows it into the VideoRoom with the pin the server
/// made, and sees and is seen by a headless peer that never named Janus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_follows_the_server_moving_its_room_to_janus() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let janus = Janus::start();
    let fx = fixture(20);
    let srv = janus.server(1).await;
    let guest = spawn_guest(
        &fx,
        &page_url(&srv, "grow", "gia"),
        14.0,
        json!([{"at": 10, "do": "snapshot"}]),
    );
    until_page_joined(&srv, |m| m.rooms > 0).await;
    let mut o = sfu_peer(&janus, &srv.ws_url(), "grow", "hal", 440.0, 10.0);
    // No Janus of its own: the server says where media goes.
    o.sfu = None;
    let hal = headless::run(o).await.expect("headless run");
    let g = guest_result(guest).await;
    assert!(hal.errors.is_empty(), "{:?}", hal.errors);
    assert_eq!(hal.media, ["sfu"], "the second member moved the room");
    let mid = &g["snapshots"][0]["snapshot"];
    assert_eq!(mid["sfu"]["state"], "joined", "{mid:#}");
    assert_page_got_frames(&g["final"]["snapshot"], "hal", 100);
    assert_headless_got_guest(&hal, "gia", 60, true);
    let _ = srv.shutdown().await;
}

/// A guest joining a broadcast watches: the page closes the camera and microphone it
/// opened, sends nothing, and sees the presenter (here in a mesh: no SFU on the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_in_a_broadcast_watches_and_sends_nothing() {
    use confab::call::Event;
    use support::engine::{TestPeer, config, synthetic};
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = fixture(12);
    let srv = support::server().await;
    let mut cfg = config(&srv.ws_url(), "launch", "ada");
    cfg.broadcast = true;
    let mut ada = TestPeer::join_with(cfg, synthetic(320, 240, 440.0)).await;
    let guest = spawn_guest(
        &fx,
        &page_url(&srv, "launch", "gia"),
        8.0,
        json!([{"at": 6, "do": "snapshot"}]),
    );
    ada.seen_or_until("a viewer", |e| matches!(e, Event::Viewers(1)).then_some(()))
        .await;
    let g = guest_result(guest).await;
    let last = &g["final"]["snapshot"];
    assert_page_got_frames(last, "ada", 60);
    let tracks = ada.tracks_added();
    assert!(tracks.is_empty(), "the viewer sent {tracks:?}");
    let sent = ada.leave().await;
    assert!(sent.video_frames > 60, "{sent:?}");
    let _ = srv.shutdown().await;
}

/// A guest that starts a broadcast from the page presents: a headless member joining
/// after it (asking no role) watches, sees the guest's camera, and the page's title
/// counts one watching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_starts_a_broadcast_from_the_page_and_sees_its_audience() {
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = fixture(14);
    let srv = support::server().await;
    let url = format!("{}&as=broadcast", page_url(&srv, "stage", "gia"));
    // The snapshot while hal watches (it joins just after the page, for 7 s).
    let guest = spawn_guest(&fx, &url, 11.0, json!([{"at": 5, "do": "snapshot"}]));
    until_page_joined(&srv, |m| m.rooms > 0).await;
    let hal = headless::run(hal(&srv.ws_url(), "stage", 7.0))
        .await
        .expect("headless run");
    let g = guest_result(guest).await;
    assert!(hal.viewer && hal.broadcast, "hal was not told it watches");
    assert_headless_got_guest(&hal, "gia", 60, true);
    assert_eq!(hal.sent.uplink_bytes, 0, "the viewer sent {:?}", hal.sent);
    let snap = &g["snapshots"][0]["snapshot"];
    assert_eq!(snap["broadcast"], true, "{snap:#}");
    assert_eq!(snap["viewer"], false, "{snap:#}");
    let title = snap["room_title"].as_str().unwrap_or_default();
    assert!(title.ends_with("1 watching"), "title: {title:?}");
    let _ = srv.shutdown().await;
}

/// "Watch only" on the page: no camera or microphone is asked for, nothing is sent,
/// and the member that presents is seen, in an ordinary room too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_joins_to_watch_opens_no_device_and_sees_the_room() {
    use support::engine::{TestPeer, config, synthetic};
    require_browser();
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = fixture(12);
    let srv = support::server().await;
    let ada = TestPeer::join_with(
        config(&srv.ws_url(), "lecture", "ada"),
        synthetic(320, 240, 440.0),
    )
    .await;
    let url = format!("{}&as=watch", page_url(&srv, "lecture", "gia"));
    let guest = spawn_guest(&fx, &url, 8.0, json!([{"at": 6, "do": "snapshot"}]));
    let g = guest_result(guest).await;
    let snap = &g["snapshots"][0]["snapshot"];
    assert_eq!(snap["devices_asked"], false, "{snap:#}");
    assert_eq!(snap["viewer"], true, "{snap:#}");
    assert_eq!(snap["media"]["has_camera"], false, "{snap:#}");
    assert_page_got_frames(&g["final"]["snapshot"], "ada", 60);
    let tracks = ada.tracks_added();
    assert!(tracks.is_empty(), "the viewer sent {tracks:?}");
    let _ = ada.leave().await;
    let _ = srv.shutdown().await;
}
