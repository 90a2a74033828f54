//! The server's own STUN responder: it answers binding requests with the address they
//! came from, so peers behind ordinary NATs learn their public address (a
//! server-reflexive candidate) with no other infrastructure. Parsing and building use the
//! webrtc-rs stack's STUN types (`rtc::stun`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter, is_stun_message};
use rtc::stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::accept::{Gate, stopped};

/// The answer to `request` from `from`: a binding success naming `from`, or `None` for
/// anything that is not a well-formed binding request (dropped, as RFC 8489 says).
pub(super) fn binding_response(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun_message(request) {
        return None;
    }
    let mut req = Message::new();
    req.unmarshal_binary(request).ok()?;
    if req.typ != BINDING_REQUEST {
        return None;
    }
    let mapped = XorMappedAddress {
        ip: from.ip().to_canonical(),
        port: from.port(),
    };
    let mut res = Message::new();
    let setters: [Box<dyn Setter>; 4] = [
        Box::new(req),
        Box::new(BINDING_SUCCESS),
        Box::new(mapped),
        Box::new(FINGERPRINT),
    ];
    res.build(&setters).ok()?;
    Some(res.raw)
}

/// Answers on `socket` until `stop`; hosts the gate shuts out get no answer.
pub(super) async fn serve(socket: UdpSocket, gate: Arc<Gate>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, from) = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors from earlier answers surface here; the socket is fine.
                Err(e) => {
                    tracing::debug!("STUN receive: {e}");
                    continue;
                }
            },
        };
        if !gate.lets_in(from.ip()) {
            continue;
        }
        if let Some(answer) = binding_response(&buf[..n], from) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

/// The STUN URL for a client that reached the server at `host` (its `Host` header): the
/// address the STUN socket is bound to if that is a specific one, else the host the
/// client used, which is the one it can reach.
pub(super) fn stun_url(bound: SocketAddr, host: Option<&str>) -> Option<String> {
    let ip = bound.ip();
    let name = if ip.is_unspecified() {
        host_part(host?)?.to_string()
    } else {
        match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }
    };
    Some(format!("stun:{name}:{}", bound.port()))
}

/// `host` of `host:port`, `[v6]` of `[v6]:port`; no port is fine too.
fn host_part(authority: &str) -> Option<&str> {
    let authority = authority.trim();
    if authority.is_empty() {
        return None;
    }
    if authority.starts_with('[') {
        return authority.find(']').map(|end| &authority[..=end]);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::Getter;

    fn request() -> Message {
        let mut m = Message::new();
        m.build(&[Box::new(BINDING_REQUEST), Box::new(FINGERPRINT)])
            .unwrap();
        m.new_transaction_id().unwrap();
        m
    }

    #[test]
    fn a_binding_request_is_answered_with_the_address_it_came_from() {
        let req = request();
        let from: SocketAddr = "203.0.113.7:40123".parse().unwrap();
        let raw = binding_response(&req.raw, from).expect("answered");
        let mut res = Message::new();
        res.unmarshal_binary(&raw).unwrap();
        assert_eq!(res.typ, BINDING_SUCCESS);
        assert_eq!(res.transaction_id, req.transaction_id);
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&res).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), from);
        FINGERPRINT.check(&res).expect("fingerprint valid");
    }

    #[test]
    fn anything_but_a_binding_request_gets_no_answer() {
        let from: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert!(binding_response(b"hello", from).is_none());
        assert!(binding_response(&[], from).is_none());
        let mut success = Message::new();
        success
            .build(&[Box::new(BINDING_SUCCESS), Box::new(FINGERPRINT)])
            .unwrap();
        assert!(
            binding_response(&success.raw, from).is_none(),
            "no reflection loops"
        );
        let mut cut = request().raw;
        cut.truncate(cut.len() - 3);
        assert!(binding_response(&cut, from).is_none());
    }

    #[test]
    fn clients_are_told_the_address_they_can_reach() {
        let any: SocketAddr = "0.0.0.0:3478".parse().unwrap();
        assert_eq!(
            stun_url(any, Some("192.168.1.5:8787")).as_deref(),
            Some("stun:192.168.1.5:3478")
        );
        assert_eq!(
            stun_url(any, Some("[fd00::5]:8787")).as_deref(),
            Some("stun:[fd00::5]:3478")
        );
        assert_eq!(
            stun_url(any, Some("meet.example.org")).as_deref(),
            Some("stun:meet.example.org:3478")
        );
        assert_eq!(stun_url(any, None), None);
        let bound: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(
            stun_url(bound, Some("localhost:8787")).as_deref(),
            Some("stun:127.0.0.1:40000")
        );
    }
}
