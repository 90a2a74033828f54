//! TURN over TCP and TLS (`turn:...?transport=tcp`, `turns:`), for networks that let
//! only TCP out (a hotel's or an office's firewall). webrtc-rs 0.21 allocates only over
//! UDP, so each such server gets a local UDP port the stack allocates through: every
//! datagram a local socket sends there goes, framed, over its own TCP (or TLS) stream to
//! the real server, and what comes back returns as datagrams. The server sees an ordinary
//! TURN-over-TCP client (RFC 8656 §3.1); relayed addresses and peers are unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::peer::IceServerConfig;
use crate::signaling::turn_frame::carry_stream;

/// How a TURN URL is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTurn {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl StreamTurn {
    /// `Some` for a TURN URL over TCP or TLS; `None` for UDP TURN, STUN or nonsense.
    pub fn parse(url: &str) -> Option<StreamTurn> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("turns:") {
            (true, r)
        } else {
            (false, url.strip_prefix("turn:")?)
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let transport = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("transport="))
            .unwrap_or(if tls { "tcp" } else { "udp" });
        if transport != "tcp" {
            return None;
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().ok()?),
            _ => (hostport, if tls { 5349 } else { 3478 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| StreamTurn {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// The tunnels of one call, one per TURN URL over a stream, kept across welcomes so
/// that connections relayed through them stay up; dropping them closes every stream.
#[derive(Default)]
pub struct Tunnels {
    open: HashMap<String, (String, JoinHandle<()>)>,
}

impl Drop for Tunnels {
    fn drop(&mut self) {
        for (_, task) in self.open.values() {
            task.abort();
        }
    }
}

impl Tunnels {
    /// `servers` with every TCP/TLS TURN URL replaced by a local UDP port tunnelled to
    /// it. A URL whose tunnel cannot open is left out (logged).
    pub async fn route(
        &mut self,
        servers: &[IceServerConfig],
        ca_file: Option<&Path>,
    ) -> Vec<IceServerConfig> {
        let mut out = Vec::new();
        for s in servers {
            let mut urls = Vec::new();
            for url in &s.urls {
                let Some(target) = StreamTurn::parse(url) else {
                    urls.push(url.clone());
                    continue;
                };
                if let Some((local, _)) = self.open.get(url) {
                    urls.push(local.clone());
                    continue;
                }
                match open(target, ca_file).await {
                    Ok((local, task)) => {
                        tracing::debug!(%url, %local, "TURN over a stream, through a local port");
                        let local = format!("turn:{local}?transport=udp");
                        urls.push(local.clone());
                        self.open.insert(url.clone(), (local, task));
                    }
                    Err(e) => tracing::warn!(%url, "TURN over TCP/TLS unavailable: {e}"),
                }
            }
            if !urls.is_empty() {
                out.push(IceServerConfig { urls, ..s.clone() });
            }
        }
        out
    }
}

/// A local UDP port for `target`: one stream per local sender, opened at its first
/// datagram (one allocation per stream, as TURN over TCP has it).
async fn open(
    target: StreamTurn,
    ca_file: Option<&Path>,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let tls = match target.tls {
        true => Some(crate::signaling::tls::client_config(ca_file)?),
        false => None,
    };
    let socket = Arc::new(
        UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?,
    );
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let mut streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            streams.retain(|_, tx| !tx.is_closed());
            let tx = streams.entry(from).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(256);
                let (socket, target, tls) = (Arc::clone(&socket), target.clone(), tls.clone());
                tokio::spawn(async move {
                    if let Err(e) = carry(socket, from, target, tls, rx).await {
                        tracing::debug!("TURN stream for {from} ended: {e}");
                    }
                });
                tx
            });
            // A full queue drops, as the network would.
            let _ = tx.try_send(buf[..n].to_vec());
        }
    });
    Ok((local, task))
}

/// One stream: `rx` (datagrams from `from`) out, messages back to `from`.
async fn carry(
    socket: Arc<UdpSocket>,
    from: SocketAddr,
    target: StreamTurn,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => pump(tcp, socket, from, rx).await,
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(std::io::Error::other)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            pump(stream, socket, from, rx).await
        }
    }
}

async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    socket: Arc<UdpSocket>,
    from: SocketAddr,
    rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    carry_stream(stream, rx, move |msg| {
        let socket = Arc::clone(&socket);
        async move {
            socket.send_to(&msg, from).await?;
            Ok(true)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_turn_over_tcp_or_tls_goes_through_a_tunnel() {
        let t = |u| StreamTurn::parse(u);
        assert_eq!(
            t("turn:10.0.0.1:443?transport=tcp"),
            Some(StreamTurn {
                host: "10.0.0.1".into(),
                port: 443,
                tls: false
            })
        );
        assert_eq!(
            t("turns:turn.example.org?transport=tcp"),
            Some(StreamTurn {
                host: "turn.example.org".into(),
                port: 5349,
                tls: true
            })
        );
        assert_eq!(t("turns:[::1]:443").map(|s| s.host), Some("::1".into()));
        assert_eq!(t("turn:10.0.0.1:3478?transport=udp"), None);
        assert_eq!(t("turn:10.0.0.1:3478"), None);
        assert_eq!(t("stun:10.0.0.1:3478"), None);
        assert_eq!(t("turn:?transport=tcp"), None);
    }
}
