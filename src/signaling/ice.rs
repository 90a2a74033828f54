//! ICE servers handed out in the welcome, with TURN REST credentials as coturn's
//! `use-auth-secret` expects: username `<expiry unix secs>:<member id>`,
//! password `base64(HMAC-SHA1(secret, username))`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::protocol::IceServer;

#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    pub stun: Vec<String>,
    pub turn: Vec<String>,
    pub turn_secret: Option<String>,
    pub turn_ttl: Duration,
}

impl IceConfig {
    /// The list a member receives; TURN appears only when a shared secret is set.
    pub fn servers_for(&self, member_id: &str) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun.is_empty() {
            out.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.turn_secret) {
            let expiry = SystemTime::now()
                .checked_add(self.turn_ttl)
                .unwrap_or_else(SystemTime::now)
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (username, credential) = turn_credentials(secret, expiry, member_id);
            out.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        out
    }
}

/// Time-limited TURN credentials for `user`, valid until `expiry_unix`.
pub fn turn_credentials(secret: &str, expiry_unix: u64, user: &str) -> (String, String) {
    let username = format!("{expiry_unix}:{user}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_password_matches_openssl_hmac_sha1() {
        // Reference: printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let (user, pass) = turn_credentials("s3cret", 1_700_000_000, "alice");
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }

    #[test]
    fn turn_is_offered_only_with_a_secret_and_expires_after_ttl() {
        let mut cfg = IceConfig {
            stun: vec!["stun:127.0.0.1:3478".into()],
            turn: vec!["turn:127.0.0.1:3478".into()],
            turn_secret: None,
            turn_ttl: Duration::from_secs(600),
        };
        assert_eq!(cfg.servers_for("m1").len(), 1);
        cfg.turn_secret = Some("k".into());
        let servers = cfg.servers_for("m1");
        let turn = &servers[1];
        let user = turn.username.as_deref().unwrap();
        let (expiry, id) = user.split_once(':').unwrap();
        assert_eq!(id, "m1");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expiry: u64 = expiry.parse().unwrap();
        assert!((now + 590..=now + 610).contains(&expiry));
        assert_eq!(
            turn.credential.as_deref().unwrap(),
            turn_credentials("k", expiry, "m1").1
        );
    }
}
