//! The network: the signaling server (round trip), the STUN server it hands out (this
//! machine's address as the internet sees it, and what kind of NAT is in between), and
//! its TURN relay (credentials accepted, a relay allocated).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::stun::message::{
    BINDING_REQUEST, BINDING_SUCCESS, Getter, Message, Setter, TransactionId,
};
use rtc::stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use webrtc_util::Conn;

use super::Check;
use crate::signaling::protocol::IceServer;
use crate::signaling::{ClientOptions, JoinParams, SignalingClient};

const ANSWER_WITHIN: Duration = Duration::from_secs(3);

pub(super) async fn checks(server: Option<&str>) -> Vec<Check> {
    let Some(url) = server else {
        return vec![Check::warn(
            "server",
            "none given: the app starts its own (this machine and, if allowed, its network)",
            "to check a server for calls beyond this network: confab doctor --server ws://HOST:8787/ws",
        )];
    };
    let (check, ice) = signaling(url).await;
    let mut out = vec![check];
    if let Some(ice) = ice {
        out.push(stun(&ice).await);
        out.push(turn(&ice).await);
    }
    out
}

/// Reaches the server, times a request, and asks for its ICE servers (by joining a room
/// of its own for a moment).
async fn signaling(url: &str) -> (Check, Option<Vec<IceServer>>) {
    let opts = ClientOptions {
        reconnect: false,
        request_timeout: ANSWER_WITHIN,
        ..Default::default()
    };
    let fail = |e: String| {
        Check::fail(
            "server",
            format!("{url}: {e}"),
            "check the address, that `confab serve` runs there, and that no firewall blocks its TCP port",
        )
    };
    let client = match SignalingClient::connect(url, opts).await {
        Ok((c, _events)) => c,
        Err(e) => return (fail(e.to_string()), None),
    };
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        if let Err(e) = client.list_rooms().await {
            return (fail(e.to_string()), None);
        }
        best = best.min(t.elapsed());
    }
    let room = format!("doctor-{:08x}", rand::random::<u32>());
    let welcome = client
        .join(JoinParams {
            room,
            name: "confab doctor".into(),
            ..Default::default()
        })
        .await;
    let _ = client.leave().await;
    client.close();
    let check = Check::ok(
        "server",
        format!("{url}: round trip {:.1} ms", best.as_secs_f64() * 1e3),
    );
    match welcome {
        Ok(w) => (check, Some(w.ice_servers)),
        Err(e) => (fail(format!("reachable, but joining failed: {e}")), None),
    }
}

/// `host:port` of a `stun:`/`turn:` URL (3478 when none is given).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once(':')?.1;
    let hostport = rest.split('?').next()?;
    Some(
        if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_owned()
        } else {
            format!("{hostport}:3478")
        },
    )
}

async fn resolve(hostport: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(hostport)
        .await
        .ok()?
        .find(SocketAddr::is_ipv4)
}

/// Our address as `to` sees it (a STUN binding; TURN servers answer one too).
async fn mapped(socket: &UdpSocket, to: SocketAddr) -> Option<SocketAddr> {
    let mut req = Message::new();
    let setters: Vec<Box<dyn Setter>> =
        vec![Box::new(BINDING_REQUEST), Box::new(TransactionId::new())];
    req.build(&setters).ok()?;
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&req.raw, to).await.ok()?;
        let answer = tokio::time::timeout(ANSWER_WITHIN / 3, async {
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.ok()?;
                let mut res = Message::new();
                if from == to
                    && res.unmarshal_binary(&buf[..n]).is_ok()
                    && res.typ == BINDING_SUCCESS
                    && res.transaction_id == req.transaction_id
                {
                    let mut xor = XorMappedAddress::default();
                    xor.get_from(&res).ok()?;
                    return Some(SocketAddr::new(xor.ip, xor.port));
                }
            }
        })
        .await;
        if let Ok(found) = answer {
            return found;
        }
    }
    None
}

/// The address this machine sends from towards `to` (no packet is sent).
async fn local_ip(to: SocketAddr) -> Option<std::net::IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    s.connect(to).await.ok()?;
    Some(s.local_addr().ok()?.ip())
}

fn urls<'a>(
    ice: &'a [IceServer],
    scheme: &'a str,
) -> impl Iterator<Item = (&'a IceServer, &'a str)> {
    ice.iter().flat_map(move |s| {
        s.urls
            .iter()
            .filter(move |u| u.starts_with(scheme))
            .map(move |u| (s, u.as_str()))
    })
}

async fn stun(ice: &[IceServer]) -> Check {
    let Some((_, url)) = urls(ice, "stun:").next() else {
        return Check::warn(
            "stun",
            "the server hands out no STUN server",
            "calls beyond this network need one: run `confab serve` with its STUN responder (the default)",
        );
    };
    let Some(stun_addr) = resolve(&host_port(url).unwrap_or_default()).await else {
        return Check::warn(
            "stun",
            format!("{url}: cannot resolve it"),
            "check the server's --stun-listen address",
        );
    };
    let Ok(socket) = UdpSocket::bind("0.0.0.0:0").await else {
        return Check::warn("stun", "no UDP socket", "check this machine's network");
    };
    let Some(seen) = mapped(&socket, stun_addr).await else {
        return Check::warn(
            "stun",
            format!("{url}: no answer in {} s", ANSWER_WITHIN.as_secs()),
            "UDP to the server is blocked: calls beyond this network need TURN over TCP (turn:...?transport=tcp or turns:)",
        );
    };
    let local = local_ip(stun_addr).await;
    if local == Some(seen.ip()) {
        return Check::ok(
            "stun",
            format!("{url}: this machine is {seen}, with no NAT in between"),
        );
    }
    // A second destination shows whether the NAT keeps one mapping for every destination.
    let other = match urls(ice, "turn:").next() {
        Some((_, u)) => resolve(&host_port(u).unwrap_or_default())
            .await
            .filter(|a| *a != stun_addr),
        None => None,
    };
    let second = match other {
        Some(a) => mapped(&socket, a).await,
        None => None,
    };
    match second {
        Some(s) if s != seen => Check::warn(
            "stun",
            format!("{url}: seen as {seen}, and as {s} by another address: a symmetric NAT"),
            "direct calls with others behind such NATs fail; the server's TURN relay carries them",
        ),
        Some(_) => Check::ok(
            "stun",
            format!(
                "{url}: seen as {seen}, one mapping for every destination (a cone NAT: direct calls work)"
            ),
        ),
        None => Check::ok("stun", format!("{url}: seen as {seen}, behind a NAT")),
    }
}

async fn turn(ice: &[IceServer]) -> Check {
    let all: Vec<(&IceServer, &str)> = urls(ice, "turn").collect();
    let Some((server, url)) = all
        .iter()
        .find(|(_, u)| u.starts_with("turn:") && !u.contains("transport=tcp"))
        .copied()
    else {
        return match all.first() {
            Some((_, u)) => Check::ok(
                "turn",
                format!("{u}: offered (TCP/TLS relays are not tried here)"),
            ),
            None => Check::warn(
                "turn",
                "the server offers no relay",
                "people behind symmetric NATs or strict firewalls cannot be reached: run `confab serve --turn-listen ...` or coturn",
            ),
        };
    };
    let (Some(user), Some(pass)) = (server.username.clone(), server.credential.clone()) else {
        return Check::fail(
            "turn",
            format!("{url}: offered without credentials"),
            "the server's TURN set-up is incomplete",
        );
    };
    let hostport = host_port(url).unwrap_or_default();
    let result = async {
        let conn = Arc::new(UdpSocket::bind("0.0.0.0:0").await?);
        let client = turn::client::Client::new(turn::client::ClientConfig {
            stun_serv_addr: hostport.clone(),
            turn_serv_addr: hostport.clone(),
            username: user,
            password: pass,
            realm: String::new(),
            software: "confab doctor".into(),
            rto_in_ms: 0,
            conn,
            vnet: None,
        })
        .await?;
        client.listen().await?;
        let relay = tokio::time::timeout(ANSWER_WITHIN, client.allocate())
            .await
            .map_err(|_| turn::Error::Other("no answer".into()))??;
        let at = relay.local_addr()?;
        let _ = relay.close().await;
        let _ = client.close().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(at)
    }
    .await;
    match result {
        Ok(at) => Check::ok(
            "turn",
            format!("{url}: credentials accepted, relay at {at}"),
        ),
        Err(e) => Check::fail(
            "turn",
            format!("{url}: {e}"),
            "the relay refuses the server's credentials or is unreachable: check its shared secret and UDP port",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_urls_give_host_and_port() {
        assert_eq!(
            host_port("stun:10.0.0.1:3478").as_deref(),
            Some("10.0.0.1:3478")
        );
        assert_eq!(
            host_port("stun:example.org").as_deref(),
            Some("example.org:3478")
        );
        assert_eq!(
            host_port("turn:relay.example.org:443?transport=tcp").as_deref(),
            Some("relay.example.org:443")
        );
    }
}
