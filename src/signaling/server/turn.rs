//! The server's own TURN relay (`--turn-listen`), webrtc-rs's `turn` server over UDP and
//! TCP on the same port, as coturn does: two peers behind symmetric NATs, one that must
//! hide its addresses, or one behind a firewall that lets only TCP out talk through it.
//! It checks the same time-limited REST credentials the welcome hands out (coturn's
//! `use-auth-secret` scheme), so nothing but the shared secret connects the two.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::RelayAddressGenerator;
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

use super::turn_stream::StreamConn;
use crate::signaling::ice::turn_credentials;

/// Where the relay listens and what it tells peers.
#[derive(Debug, Clone)]
pub struct TurnRelayConfig {
    /// UDP and TCP address for TURN clients.
    pub listen: SocketAddr,
    /// The address peers reach relayed ports at. Needed when `listen` is a wildcard;
    /// otherwise the listen address.
    pub external_ip: Option<IpAddr>,
    /// TURN over TLS (`turns:`) here too, with the server's certificate and key.
    pub tls: Option<TurnTls>,
}

#[derive(Debug, Clone)]
pub struct TurnTls {
    pub listen: SocketAddr,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TurnRelayConfig {
    /// The address relayed ports are announced at, or why there is none.
    pub fn relay_ip(&self) -> Result<IpAddr, String> {
        match (self.external_ip, self.listen.ip()) {
            (Some(ip), _) => Ok(ip),
            (None, ip) if !ip.is_unspecified() => Ok(ip),
            _ => Err(format!(
                "the TURN relay listens on {}, so it needs --turn-external-ip: the address \
                 other hosts reach it at",
                self.listen
            )),
        }
    }
}

/// Accepts usernames `<expiry unix secs>:<anything>` whose expiry has not passed; the key
/// comes from the shared secret, as coturn's `use-auth-secret` does.
struct RestAuth {
    secret: String,
}

impl AuthHandler for RestAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        from: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expiry = username
            .split(':')
            .next()
            .and_then(|e| e.parse::<u64>().ok())
            .ok_or_else(|| turn::Error::Other(format!("{from}: malformed TURN username")))?;
        if expiry < now {
            return Err(turn::Error::Other(format!(
                "{from}: TURN credentials expired"
            )));
        }
        let user = username.split_once(':').map_or("", |(_, u)| u);
        let (name, password) = turn_credentials(&self.secret, expiry, user);
        Ok(generate_auth_key(&name, realm, &password))
    }
}

/// A running relay; [`TurnRelay::close`] stops it and frees every allocation.
pub struct TurnRelay {
    server: Server,
    addr: SocketAddr,
    relay_ip: IpAddr,
    tls_port: Option<u16>,
}

pub(super) const REALM: &str = "confab";

impl TurnRelay {
    pub async fn start(config: &TurnRelayConfig, secret: &str) -> Result<TurnRelay, String> {
        let relay_ip = config.relay_ip()?;
        let cannot = |e: std::io::Error| format!("cannot relay TURN on {}: {e}", config.listen);
        let socket = tokio::net::UdpSocket::bind(config.listen)
            .await
            .map_err(cannot)?;
        let addr = socket.local_addr().map_err(cannot)?;
        // TCP on the port UDP got (a port 0 picks one for both).
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(cannot)?;
        let secure = match &config.tls {
            Some(t) => {
                let acceptor = crate::signaling::tls::acceptor(&t.cert, &t.key)?;
                let listener = tokio::net::TcpListener::bind(t.listen)
                    .await
                    .map_err(|e| format!("cannot relay TURN over TLS on {}: {e}", t.listen))?;
                Some((listener, acceptor))
            }
            None => None,
        };
        let tls_port = match &secure {
            Some((l, _)) => Some(l.local_addr().map_err(cannot)?.port()),
            None => None,
        };
        let relay_ports = || -> Box<dyn RelayAddressGenerator + Send + Sync> {
            Box::new(RelayAddressGeneratorStatic {
                relay_address: relay_ip,
                address: config.listen.ip().to_string(),
                net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
            })
        };
        let server = Server::new(ServerConfig {
            conn_configs: vec![
                ConnConfig {
                    conn: Arc::new(socket),
                    relay_addr_generator: relay_ports(),
                },
                ConnConfig {
                    conn: Arc::new(StreamConn::new(tcp, None).map_err(cannot)?),
                    relay_addr_generator: relay_ports(),
                },
            ]
            .into_iter()
            .chain(
                secure
                    .map(|(listener, acceptor)| {
                        Ok::<_, String>(ConnConfig {
                            conn: Arc::new(
                                StreamConn::new(listener, Some(acceptor)).map_err(cannot)?,
                            ),
                            relay_addr_generator: relay_ports(),
                        })
                    })
                    .transpose()?,
            )
            .collect(),
            realm: REALM.into(),
            auth_handler: Arc::new(RestAuth {
                secret: secret.to_owned(),
            }),
            // The crate's default (10 minutes), spelled out.
            channel_bind_timeout: Duration::from_secs(600),
            alloc_close_notify: None,
        })
        .await
        .map_err(|e| format!("TURN relay: {e}"))?;
        tracing::info!(%addr, %relay_ip, "TURN relay listening (UDP and TCP)");
        Ok(TurnRelay {
            server,
            addr,
            relay_ip,
            tls_port,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URLs the welcome names: the announced address, the port bound, UDP first.
    pub fn urls(&self) -> Vec<String> {
        let host = match self.relay_ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let port = self.addr.port();
        let mut urls: Vec<String> = ["udp", "tcp"]
            .map(|t| format!("turn:{host}:{port}?transport={t}"))
            .to_vec();
        // The certificate must name this address (an IP SAN, or a name resolving to it).
        if let Some(tls) = self.tls_port {
            urls.push(format!("turns:{host}:{tls}?transport=tcp"));
        }
        urls
    }

    pub async fn close(&self) {
        let _ = self.server.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_takes_the_welcomes_credentials_and_refuses_expired_or_malformed_ones() {
        let auth = RestAuth {
            secret: "s3cret".into(),
        };
        let from: SocketAddr = "10.1.0.2:5000".parse().unwrap();
        let later = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let (user, password) = turn_credentials("s3cret", later, "m1");
        // The key a client derives from what the welcome gave it (RFC 8489 long-term).
        let expected = generate_auth_key(&user, REALM, &password);
        assert_eq!(auth.auth_handle(&user, REALM, from).unwrap(), expected);

        let (other, _) = turn_credentials("wrong", later, "m1");
        // Same username, another secret's password: the keys differ, so the integrity
        // check fails.
        let (_, wrong_password) = turn_credentials("wrong", later, "m1");
        assert_ne!(
            auth.auth_handle(&other, REALM, from).unwrap(),
            generate_auth_key(&other, REALM, &wrong_password)
        );
        let (expired, _) = turn_credentials("s3cret", 1_000, "m1");
        assert!(auth.auth_handle(&expired, REALM, from).is_err());
        assert!(auth.auth_handle("alice", REALM, from).is_err());
    }

    #[test]
    fn a_wildcard_relay_needs_the_address_others_reach_it_at() {
        let mut c = TurnRelayConfig {
            listen: "0.0.0.0:3479".parse().unwrap(),
            external_ip: None,
            tls: None,
        };
        assert!(c.relay_ip().unwrap_err().contains("--turn-external-ip"));
        c.external_ip = Some("203.0.113.5".parse().unwrap());
        assert_eq!(c.relay_ip().unwrap().to_string(), "203.0.113.5");
        c = TurnRelayConfig {
            listen: "10.0.0.1:3479".parse().unwrap(),
            external_ip: None,
            tls: None,
        };
        assert_eq!(c.relay_ip().unwrap().to_string(), "10.0.0.1");
    }
}
