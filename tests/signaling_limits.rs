//! The server's limits on what one client or one address can take: connections, slow
//! or idle sockets, room lists, room sizes, password guesses, ring timers, oversized
//! frames, and who may connect at all.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use confab::signaling::Server;
use serde_json::json;
use support::{Raw, STEP, http_get, server_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to the server from `from` (any 127/8 address is this machine).
async fn tcp_from(srv: &Server, from: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(srv.local_addr()).await.expect("tcp connect")
}

/// A WebSocket from `from`, or the handshake's error.
async fn ws_from(srv: &Server, from: IpAddr) -> Result<Raw, tokio_tungstenite::tungstenite::Error> {
    let tcp = tcp_from(srv, from).await;
    let (ws, _) = tokio_tungstenite::client_async(
        srv.ws_url(),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await?;
    Ok(Raw {
        ws,
        id: String::new(),
    })
}

/// Reads until the server closes the connection; panics if it is still open after `STEP`.
async fn closed_by_server(tcp: &mut TcpStream) {
    let mut sink = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut sink))
        .await
        .expect("the server closes the connection")
        .ok();
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_at_the_header_deadline() {
    let srv = server_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    // Connects and says nothing.
    let mut idle = tcp_from(&srv, ip("127.0.0.1")).await;
    // Slowloris: a header that never ends, a byte at a time.
    let mut slow = tcp_from(&srv, ip("127.0.0.1")).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let dripping = tokio::spawn(async move {
        // Ends when the server has closed the connection (the write fails).
        while writer.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    closed_by_server(&mut idle).await;
    let mut sink = Vec::new();
    tokio::time::timeout(STEP, reader.read_to_end(&mut sink))
        .await
        .expect("the slow sender is cut off")
        .ok();
    drop(reader);
    tokio::time::timeout(STEP, dripping).await.unwrap().unwrap();

    // A prompt request on a kept-alive connection is answered, then the idle rest is cut.
    let mut prompt = tcp_from(&srv, ip("127.0.0.1")).await;
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, prompt.read_to_end(&mut answer))
        .await
        .expect("answered, then closed when idle")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_holds_at_most_its_share_of_connections() {
    let srv = server_with(|c| c.max_per_ip = 3).await;
    let home = ip("127.0.0.1");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(ws_from(&srv, home).await.expect("within the share"));
    }
    assert!(ws_from(&srv, home).await.is_err(), "a fourth is refused");
    // Another address has its own share.
    let _other = ws_from(&srv, ip("127.0.0.2"))
        .await
        .expect("another address");
    // Closing one frees its place (the server finishes the close on its own time).
    let mut first = held.remove(0);
    first.ws.close(None).await.unwrap();
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = ws_from(&srv, home).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a closed connection gives its place back");
}

/// An address of this namespace that is not loopback. Only added inside a private
/// network namespace (`.ci/netns`, where `lo` is the only interface).
fn non_loopback_address() -> IpAddr {
    support::internet::assert_private_netns();
    let out = std::process::Command::new("ip")
        .args(["addr", "replace", "10.77.0.1/32", "dev", "lo"])
        .output()
        .expect("ip(8) runs");
    assert!(out.status.success(), "{out:?}");
    ip("10.77.0.1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_get_in_only_once_the_server_is_opened_to_the_lan() {
    let lan = non_loopback_address();
    let srv = server_with(|c| {
        c.lan_open = false;
        c.listen = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    let srv_lan = SocketAddr::new(lan, srv.local_addr().port());
    let mut refused = TcpStream::connect(srv_lan).await.unwrap();
    // Closed at once, before a byte is read.
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut got = Vec::new();
    tokio::time::timeout(STEP, refused.read_to_end(&mut got))
        .await
        .unwrap()
        .ok();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(ws_from(&srv, ip("127.0.0.1")).await.is_ok(), "this machine");

    srv.set_lan_open(true);
    assert!(srv.lan_open());
    let from_lan = || async { TcpStream::connect(srv_lan).await.unwrap() };
    assert!(
        http_get(from_lan().await, "x", "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Metrics stay with this machine.
    assert!(
        http_get(from_lan().await, "x", "/metrics")
            .await
            .starts_with("HTTP/1.1 403")
    );
    let local = tcp_from(&srv, ip("127.0.0.1")).await;
    let got = http_get(local, "x", "/metrics").await;
    assert!(got.starts_with("HTTP/1.1 200") && got.contains("confab_connections"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_lists_come_in_bounded_pages_at_their_own_rate() {
    let srv = server_with(|c| c.max_per_ip = 0).await;
    let mut members = Vec::new();
    for i in 0..150 {
        let room = format!("{i:03}-{}", "r".repeat(60));
        members.push(Raw::joined(&srv, &room, "m").await);
    }
    let mut locked = Raw::connect(&srv).await;
    locked
        .join(json!({"type":"join","room":"000-secret","name":"s","password":"pw"}))
        .await;

    let mut guest = Raw::connect(&srv).await;
    guest.send(json!({"type":"list_rooms"})).await;
    let first = guest.recv().await;
    assert!(first.to_string().len() < 16 * 1024, "a page stays small");
    let page = first["rooms"].as_array().unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(first["more"], true);
    assert!(
        page.iter().all(|r| r["name"] != "000-secret"),
        "locked rooms are unlisted"
    );
    let last = page.last().unwrap()["name"].clone();
    guest.send(json!({"type":"list_rooms","after":last})).await;
    let second = guest.expect("rooms").await;
    assert_eq!(second["rooms"].as_array().unwrap().len(), 50);
    assert_eq!(second["more"], false);

    // Five lists in a burst, then one a second; other messages are not held up.
    for _ in 0..5 {
        guest.send(json!({"type":"list_rooms"})).await;
    }
    let mut limited = 0;
    for _ in 0..5 {
        let m = guest.recv().await;
        if m["type"] == "error" {
            assert_eq!(m["code"], "rate_limited");
            assert_eq!(m["request"], "list_rooms");
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited} of 7 lists refused");
    guest.expect_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_without_a_capacity_of_its_own_takes_the_servers_default() {
    let srv = server_with(|c| c.default_capacity = 3).await;
    let _a = Raw::joined(&srv, "r", "a").await;
    let _b = Raw::joined(&srv, "r", "b").await;
    let _c = Raw::joined(&srv, "r", "c").await;
    let mut d = Raw::connect(&srv).await;
    d.send(json!({"type":"join","room":"r","name":"d"})).await;
    d.expect_error("room_full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_one_address_are_throttled_across_rooms() {
    let srv = server().await;
    let mut owners = Vec::new();
    for room in ["a", "b", "c"] {
        let mut o = Raw::connect(&srv).await;
        o.join(json!({"type":"join","room":room,"name":"o","password":"right"}))
            .await;
        owners.push(o);
    }
    // Four guesses per room stay under each room's own limit; the address's limit of ten
    // stops the eleventh, whichever room it is for, and even the right password.
    let mut guesser = ws_from(&srv, ip("127.0.0.1")).await.unwrap();
    for i in 0..10 {
        let room = ["a", "b", "c"][i % 3];
        guesser
            .send(json!({"type":"join","room":room,"name":"g","password":format!("{i:04}")}))
            .await;
        guesser.expect_error("wrong_password").await;
    }
    guesser
        .send(json!({"type":"join","room":"c","name":"g","password":"right"}))
        .await;
    guesser.expect_error("too_many_attempts").await;
    // Someone elsewhere is not locked out by it.
    let mut other = ws_from(&srv, ip("127.0.0.3")).await.unwrap();
    other
        .join(json!({"type":"join","room":"c","name":"h","password":"right"}))
        .await;
}

async fn server() -> Server {
    server_with(|_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_cancelled_at_once_leave_no_ring_timers_behind() {
    let srv = server_with(|c| {
        c.rate_per_sec = 10_000.0;
        c.rate_burst = 10_000.0;
    })
    .await;
    let mut a = Raw::joined(&srv, "r", "a").await;
    let mut b = Raw::joined(&srv, "r", "b").await;
    a.expect("peer_joined").await;
    for _ in 0..300 {
        a.send(json!({"type":"call_invite","to":b.id,"metadata":""}))
            .await;
        let call_id = a.expect("call_ringing").await["call_id"].clone();
        a.send(json!({"type":"call_cancel","call_id":call_id}))
            .await;
        a.expect("call_ended").await;
        b.expect("call_incoming").await;
        b.expect("call_ended").await;
    }
    // The timers' tasks go when the runtime gets to them; the 30 s ring is far off.
    let mut left = srv.metrics().ring_timers;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = srv.metrics().ring_timers;
    }
    assert_eq!(left, 0, "ring timers outlived their calls");
    assert_eq!(srv.metrics().calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_a_mebibyte_is_refused_with_close_code_1009() {
    let srv = server().await;
    let mut c = Raw::connect(&srv).await;
    c.send_text(&"x".repeat((1 << 20) + 1)).await;
    let (code, _) = c.until_closed().await;
    assert_eq!(code, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_names_the_rooms_owner_the_member_present_longest() {
    let srv = server().await;
    let mut a = Raw::connect(&srv).await;
    let wa = a.join(json!({"type":"join","room":"r","name":"a"})).await;
    assert_eq!(wa["owner"], a.id.as_str(), "a new room is its creator's");
    let mut b = Raw::connect(&srv).await;
    let wb = b.join(json!({"type":"join","room":"r","name":"b"})).await;
    assert_eq!(wb["owner"], a.id.as_str());
    a.expect("peer_joined").await;
    a.send(json!({"type":"leave"})).await;
    a.expect("left").await;
    let mut c = Raw::connect(&srv).await;
    let wc = c.join(json!({"type":"join","room":"r","name":"c"})).await;
    assert_eq!(
        wc["owner"],
        b.id.as_str(),
        "the next longest present takes over"
    );
}

#[tokio::test]
async fn confab_serve_raises_its_open_file_limit_to_the_hard_limit() {
    let mut child = tokio::process::Command::new("prlimit")
        .args(["--nofile=256:4096", "--"])
        .arg(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-stun"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux) runs");
    // The first line comes once the server listens, after the limit was raised.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(30), out.read_exact(&mut first))
        .await
        .expect("the server starts")
        .unwrap();
    let pid = child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
    child.kill().await.unwrap();
}
