//! STUN out of the box: `confab serve` answers binding requests itself and names its
//! responder in every welcome, so peers behind ordinary NATs learn their public address.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Getter, Message};
use rtc::stun::xoraddr::XorMappedAddress;
use serde_json::json;
use support::{Raw, STEP, server_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_stun_and_names_its_responder_in_the_welcome() {
    let srv = server_with(|c| c.stun_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let stun = srv.stun_addr().expect("a STUN responder");

    let mut c = Raw::connect(&srv).await;
    let welcome = c.join(json!({"type":"join","room":"r","name":"n"})).await;
    assert_eq!(
        welcome["ice_servers"][0]["urls"],
        json!([format!("stun:127.0.0.1:{}", stun.port())])
    );

    // A binding request gets our own address back, as a NAT's outside would be seen.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = Message::new();
    req.build(&[Box::new(BINDING_REQUEST), Box::new(FINGERPRINT)])
        .unwrap();
    req.new_transaction_id().unwrap();
    let mut buf = [0u8; 1500];
    // UDP: ask again if an answer is lost (it is not, on loopback, but nothing promises).
    let n = tokio::time::timeout(STEP, async {
        loop {
            socket.send_to(&req.raw, stun).await.unwrap();
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
            {
                return n;
            }
        }
    })
    .await
    .expect("an answer");
    let mut res = Message::new();
    res.unmarshal_binary(&buf[..n]).unwrap();
    assert_eq!(res.typ, BINDING_SUCCESS);
    assert_eq!(res.transaction_id, req.transaction_id);
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&res).unwrap();
    assert_eq!(
        SocketAddr::new(mapped.ip, mapped.port),
        socket.local_addr().unwrap()
    );
}

#[tokio::test]
async fn without_a_responder_the_welcome_names_only_configured_servers() {
    let srv = server_with(|c| c.ice.stun = vec!["stun:stun.example.org:3478".into()]).await;
    let mut c = Raw::connect(&srv).await;
    let welcome = c.join(json!({"type":"join","room":"r","name":"n"})).await;
    assert_eq!(
        welcome["ice_servers"],
        json!([{"urls":["stun:stun.example.org:3478"]}])
    );
}
