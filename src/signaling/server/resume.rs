//! Members outlive a lost connection for a grace period: they stay in their room (the
//! others see no `peer_left`; media flows peer to peer meanwhile), relays and call
//! messages sent to them wait in a bounded queue (presence does not: the resumed welcome
//! states the room), and a new connection takes them back with `resume` and the
//! token of their welcome.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use super::*;
use crate::signaling::protocol::{ErrorCode, LeaveReason, ProtocolViolation};

/// A member whose connection is gone.
pub(super) struct Away {
    /// Frames queued meanwhile (bounded like any outbox: overflowing ends the grace).
    parked: mpsc::Receiver<Queued>,
    /// Ends the member when the grace period is over.
    timer: AbortHandle,
}

impl Hub {
    /// Keeps `id` for the grace period after its connection was lost (`reason` is what the
    /// others hear if it does not come back). False if there is nothing to keep: resuming
    /// is off, or the member is in no room.
    pub(super) fn park(self: &Arc<Self>, id: &str, reason: LeaveReason) -> bool {
        let grace = self.config.resume_grace;
        let mut st = self.lock();
        let Some(c) = st.clients.get_mut(id) else {
            return false;
        };
        if grace.is_zero() || c.room.is_none() {
            return false;
        }
        // Kept members hold no connection, so the per-address cap would not see them:
        // an address may have as many away as it may have connected.
        let ip = c.ip;
        let cap = self.config.max_per_ip;
        if cap != 0
            && ip.is_some()
            && st
                .clients
                .values()
                .filter(|o| o.away.is_some() && o.ip == ip)
                .count()
                >= cap
        {
            return false;
        }
        let c = st.clients.get_mut(id).expect("looked up above");
        let (tx, parked) = mpsc::channel(OUTBOUND_QUEUE);
        let overflow = Arc::new(Notify::new());
        c.out = Outbox::new(tx, overflow.clone(), self.metrics.outbound_bytes.clone());
        let hub = Arc::downgrade(self);
        let member = id.to_string();
        let timer = tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                // More waiting for it than a connected client may have queued.
                _ = overflow.notified() => {}
            }
            if let Some(hub) = hub.upgrade() {
                hub.disconnect(&member, reason);
            }
        })
        .abort_handle();
        c.away = Some(Away { parked, timer });
        tracing::debug!(%id, "connection lost; member kept for {grace:?}");
        true
    }

    /// Gives the member holding `token` to connection `conn` (which has not joined
    /// anything): same id, room and calls. Sends the resumed welcome with the room as it
    /// is now, then what waited: relays and call messages (presence is in the welcome).
    /// Returns the member's id, which the connection goes on as.
    ///
    /// The member need not be away yet: a client whose address changed reconnects long
    /// before the server notices its old connection is dead (heartbeat timeout). The new
    /// connection then takes over, and the old one is closed without a word to the room.
    pub(super) fn resume(&self, conn: &str, token: &str) -> Result<String, ProtocolViolation> {
        let mut st = self.lock();
        let st = &mut *st;
        match st.clients.get(conn) {
            Some(c) if c.room.is_none() => {}
            _ => {
                return Err(ProtocolViolation::new(
                    ErrorCode::AlreadyJoined,
                    "resume is for a connection that has not joined a room",
                ));
            }
        }
        let member = st
            .clients
            .iter()
            .find(|(id, c)| *id != conn && c.resume_token == token)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                ProtocolViolation::new(
                    ErrorCode::ResumeFailed,
                    "nothing to resume with this token (the grace period is over, or the \
                     server restarted); join again",
                )
            })?;
        let fresh = st.clients.remove(conn).expect("checked above");
        let entry = st.clients.get_mut(&member).expect("found above");
        let away = entry.away.take();
        match &away {
            Some(away) => away.timer.abort(),
            // Its connection task ends and, no longer the owner, leaves the member be.
            None => entry.out.kick(),
        }
        entry.out = fresh.out;
        entry.ip = fresh.ip;
        entry.host = fresh.host;
        // A token takes a member back once.
        entry.resume_token = new_token();
        let room = entry.room.clone().expect("away members are in a room");
        let members = self.roster(st, &room, &member);
        let welcome = self.welcome(st, &member, members, true);
        self.reply(st, &member, &welcome);
        // Only relays and call messages waited: presence skips away members.
        let out = &st.clients[&member].out;
        if let Some(mut away) = away {
            while let Ok(q) = away.parked.try_recv() {
                if let Outbound::Text(t) = q.out {
                    out.push(Outbound::Text(t));
                }
            }
        }
        tracing::debug!(%member, "resumed");
        Ok(member)
    }

    /// Connection `outbox` of member `id` ended: the member is kept for a resume (`lost`)
    /// or leaves, unless another connection took it over meanwhile.
    pub(super) fn connection_ended(
        self: &Arc<Self>,
        id: &str,
        outbox: &Outbox,
        lost: bool,
        reason: LeaveReason,
    ) {
        let owner = self
            .read()
            .clients
            .get(id)
            .is_some_and(|c| c.out.same(outbox));
        if owner && !(lost && self.park(id, reason)) {
            self.disconnect(id, reason);
        }
    }
}
