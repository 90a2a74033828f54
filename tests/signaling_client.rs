//! The client library: typed requests and events, and reconnect-and-rejoin.

mod support;

use std::time::Duration;

use confab::signaling::protocol::{MediaState, ServerMessage};
use confab::signaling::{
    ClientEvent, ClientOptions, JoinParams, Server, ServerConfig, SignalingClient,
};
use tokio::sync::mpsc::UnboundedReceiver;

async fn next(ev: &mut UnboundedReceiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(support::STEP, ev.recv())
        .await
        .expect("an event within 5 s")
        .expect("client alive")
}

fn params(room: &str, name: &str) -> JoinParams {
    JoinParams {
        room: room.into(),
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_list_relay_and_state_through_the_client_library() {
    let srv = support::server().await;
    let (a, mut a_ev) = SignalingClient::connect(&srv.ws_url(), ClientOptions::default())
        .await
        .unwrap();
    let (b, mut b_ev) = SignalingClient::connect(&srv.ws_url(), ClientOptions::default())
        .await
        .unwrap();
    let wa = a.join(params("team", "Ada")).await.unwrap();
    assert!(wa.members.is_empty());
    // The event stream marks where the room begins.
    assert_eq!(next(&mut a_ev).await, ClientEvent::Joined(wa.clone()));
    let rooms = b.list_rooms().await.unwrap();
    assert_eq!(
        (rooms.len(), rooms[0].name.as_str(), rooms[0].members),
        (1, "team", 1)
    );
    let wb = b.join(params("team", "Bob")).await.unwrap();
    assert_eq!(wb.members[0].id, wa.id);
    assert_eq!(next(&mut b_ev).await, ClientEvent::Joined(wb.clone()));
    match next(&mut a_ev).await {
        ClientEvent::Message(ServerMessage::PeerJoined { member }) => assert_eq!(member.id, wb.id),
        other => panic!("{other:?}"),
    }
    a.relay(&wb.id, serde_json::json!({"hello": 1})).unwrap();
    match next(&mut b_ev).await {
        ClientEvent::Message(ServerMessage::Relay { from, payload }) => {
            assert_eq!(
                (from.as_str(), payload),
                (wa.id.as_str(), serde_json::json!({"hello": 1}))
            )
        }
        other => panic!("{other:?}"),
    }
    let muted = MediaState {
        audio_muted: true,
        has_microphone: true,
        ..Default::default()
    };
    b.set_media_state(muted).unwrap();
    match next(&mut a_ev).await {
        ClientEvent::Message(ServerMessage::MediaState { id, state }) => {
            assert_eq!((id, state), (wb.id.clone(), muted))
        }
        other => panic!("{other:?}"),
    }
    // A refused join comes back as an error value, and the client stays usable.
    let (c, _c_ev) = SignalingClient::connect(&srv.ws_url(), ClientOptions::default())
        .await
        .unwrap();
    let err = c.join(params("team", "")).await.unwrap_err();
    assert!(err.to_string().contains("invalid_name"), "{err}");
    assert!(c.join(params("team", "Cy")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = SignalingClient::connect(&format!("ws://{addr}/ws"), ClientOptions::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_client_reconnects_and_rejoins_the_same_room() {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let srv = Server::start(cfg.clone()).await.unwrap();
    let addr = srv.local_addr();
    let opts = ClientOptions {
        backoff_min: Duration::from_millis(50),
        ..ClientOptions::default()
    };
    let (a, mut a_ev) = SignalingClient::connect(&srv.ws_url(), opts).await.unwrap();
    let first = a.join(params("standup", "Ada")).await.unwrap();
    assert!(matches!(next(&mut a_ev).await, ClientEvent::Joined(_)));
    srv.shutdown().await.unwrap();
    match next(&mut a_ev).await {
        ClientEvent::Disconnected { retry_in, .. } => assert!(retry_in.is_some()),
        other => panic!("{other:?}"),
    }
    let srv = Server::start(ServerConfig {
        listen: addr,
        ..cfg
    })
    .await
    .unwrap();
    let welcome = loop {
        match next(&mut a_ev).await {
            ClientEvent::Reconnected(w) => break w,
            ClientEvent::Disconnected { .. } => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(welcome.room, "standup");
    assert_ne!(welcome.id, first.id, "a new connection gets a new id");
    // Others see the rejoined member under its name.
    let (b, _b_ev) = SignalingClient::connect(&srv.ws_url(), ClientOptions::default())
        .await
        .unwrap();
    let wb = b.join(params("standup", "Bob")).await.unwrap();
    assert_eq!(
        wb.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["Ada"]
    );
}
