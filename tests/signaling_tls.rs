//! `confab serve --tls-listen`: the page and signaling over HTTPS/WSS beside the plain
//! listener, into the same rooms; bad certificates are refused up front with the file named.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use confab::signaling::protocol::ServerMessage;
use confab::signaling::{
    ClientEvent, ClientOptions, JoinParams, Server, ServerConfig, ServerError, SignalingClient,
    SignalingError, TlsConfig,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Raw, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

fn trusting(cert: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The next JSON message on a WebSocket (pings skipped), failing after [`STEP`].
async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("frame ok");
        if let Message::Text(t) = frame {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

async fn tls_server(dir: &Path) -> (Server, PathBuf) {
    let (cert, key) = support::self_signed(dir);
    let srv = support::server_with(|c| {
        c.tls = Some(TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: cert.clone(),
            key,
        });
    })
    .await;
    (srv, cert)
}

#[tokio::test]
async fn the_page_and_signaling_over_tls_reach_the_same_rooms_as_plain_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, cert) = tls_server(dir.path()).await;
    let addr = srv.tls_addr().expect("a TLS listener");
    let config = trusting(&cert);

    // The page, over HTTPS, with its type and policy.
    let mut https = tls_connect(addr, config.clone()).await.unwrap();
    https
        .write_all(b"GET /?room=r HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    https.read_to_string(&mut response).await.unwrap();
    let head = response.split("\r\n\r\n").next().unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy:"), "{head}");

    // A WSS client and a plain one in one room relay to each other.
    let mut plain = Raw::joined(&srv, "r", "plain").await;
    let stream = tls_connect(addr, config).await.unwrap();
    let (mut secure, _) = tokio_tungstenite::client_async(format!("wss://{addr}/ws"), stream)
        .await
        .expect("the WebSocket upgrade over TLS");
    secure
        .send(Message::Text(
            json!({"type":"join","room":"r","name":"secure"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let welcome = next_json(&mut secure).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let secure_id = welcome["id"].as_str().unwrap().to_string();
    plain.expect("peer_joined").await;
    plain.relay(&secure_id, json!({"hello": "over tls"})).await;
    let relayed = next_json(&mut secure).await;
    assert_eq!(relayed["type"], "relay", "{relayed}");
    assert_eq!(relayed["from"], plain.id.as_str());
    assert_eq!(relayed["payload"]["hello"], "over tls");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_turned_away_and_the_listener_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, cert) = tls_server(dir.path()).await;
    let addr = srv.tls_addr().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut buf))
        .await
        .expect("the server hangs up");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    // A proper client still gets through.
    let mut https = tls_connect(addr, trusting(&cert)).await.unwrap();
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    https.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn a_missing_or_wrong_certificate_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path());
    let refusal = async |cert: &Path, key: &Path| {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(TlsConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
            ..ServerConfig::default()
        };
        match Server::start(config).await {
            Err(ServerError::Tls(m)) => m,
            Err(e) => panic!("a TLS error, not {e}"),
            Ok(_) => panic!("the server started"),
        }
    };
    let m = refusal(&dir.path().join("missing.pem"), &key).await;
    assert!(m.contains("missing.pem"), "{m}");
    // The key given as the certificate: no certificate in it.
    let m = refusal(&key, &key).await;
    assert!(m.contains("key.pem") && m.contains("no certificate"), "{m}");
    // A key that does not belong to the certificate.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = support::self_signed(other.path());
    let m = refusal(&cert, &other_key).await;
    assert!(m.contains("cert.pem"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_joins_over_wss_only_when_it_trusts_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, cert) = tls_server(dir.path()).await;
    let url = format!("wss://{}/ws", srv.tls_addr().unwrap());
    let options = |ca_file| ClientOptions {
        reconnect: false,
        ca_file,
        ..ClientOptions::default()
    };
    // Not trusted: refused, and the reason says why.
    match SignalingClient::connect(&url, options(None)).await {
        Err(SignalingError::Connect { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        Err(e) => panic!("a connect error, not {e}"),
        Ok(_) => panic!("connected to an untrusted server"),
    }
    // Trusted through the CA file: a room shared with a plain client.
    let (client, mut events) = SignalingClient::connect(&url, options(Some(cert)))
        .await
        .expect("connects over wss");
    let mut plain = Raw::joined(&srv, "r", "plain").await;
    let welcome = client
        .join(JoinParams {
            room: "r".into(),
            name: "secure".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(welcome.members[0].id, plain.id);
    plain.expect("peer_joined").await;
    plain.relay(&welcome.id, json!({"over": "wss"})).await;
    loop {
        let ev = tokio::time::timeout(STEP, events.recv())
            .await
            .expect("an event in time")
            .expect("client alive");
        if let ClientEvent::Message(ServerMessage::Relay { from, payload }) = ev {
            assert_eq!((from, payload), (plain.id.clone(), json!({"over": "wss"})));
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_idle_after_its_handshake_is_closed_at_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path());
    let srv = support::server_with(|c| {
        c.header_timeout = Duration::from_millis(300);
        c.tls = Some(TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: cert.clone(),
            key,
        });
    })
    .await;
    let mut idle = tls_connect(srv.tls_addr().unwrap(), trusting(&cert))
        .await
        .expect("handshake");
    // Says nothing after the handshake: the server hangs up (EOF or a reset).
    let mut got = Vec::new();
    let read = tokio::time::timeout(STEP, idle.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after {STEP:?}");
    assert!(got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"));
}
