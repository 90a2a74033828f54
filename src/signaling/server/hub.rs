//! The hub: who is connected, rooms, presence and relay, behind one short-held
//! reader-writer lock: relays, room lists, pings and errors only read, so they run side by
//! side; joins, leaves and calls write.

use crate::sync::RwLockExt;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;

use super::*;
use crate::signaling::protocol::{
    CallEndReason, ClientMessage, ErrorCode, LeaveReason, MediaState, Member, PROTOCOL_VERSION,
    ProtocolViolation, ServerMessage, Welcome,
};

pub(super) struct ClientEntry {
    /// Where the connection comes from (unknown when served outside the accept loop).
    pub(super) ip: Option<IpAddr>,
    /// The `Host` the client asked for: how it reaches this server.
    pub(super) host: Option<String>,
    pub(super) name: String,
    pub(super) room: Option<String>,
    pub(super) state: MediaState,
    /// Only watches (see `Role`).
    pub(super) viewer: bool,
    pub(super) call: Option<String>,
    pub(super) out: Outbox,
    /// What takes this member back after its connection was lost (see `resume.rs`).
    pub(super) resume_token: String,
    /// Set while the member's connection is lost and it may still resume.
    pub(super) away: Option<Away>,
}

pub(super) struct Room {
    pub(super) members: Vec<String>,
    pub(super) password: Option<String>,
    pub(super) capacity: usize,
    /// For a private call room: the only two ids that may join; empty once the call ended.
    pub(super) private: Option<Vec<String>>,
    /// Recent wrong passwords, for throttling guesses.
    pub(super) failed_joins: VecDeque<Instant>,
    /// Mesh or SFU (`sfu.rs`).
    pub(super) sfu: RoomSfu,
    /// A broadcast: only those who ask present (its creator does).
    pub(super) broadcast: bool,
}

#[derive(Default)]
pub(super) struct HubState {
    pub(super) clients: HashMap<String, ClientEntry>,
    /// Ordered, so a page of the room list starts where the last one ended.
    pub(super) rooms: BTreeMap<String, Room>,
    pub(super) calls: HashMap<String, Call>,
    /// Recent wrong passwords per address.
    pub(super) failed_by_ip: HashMap<IpAddr, VecDeque<Instant>>,
}

/// Shared server state: who is connected, rooms, calls.
pub struct Hub {
    pub(super) config: ServerConfig,
    pub(super) state: RwLock<HubState>,
    pub(super) metrics: Metrics,
    /// The STUN responder's address, named in every welcome.
    stun: Option<std::net::SocketAddr>,
    /// Bumped by every [`Hub::lock`]: the state may have changed (`snapshot.rs`).
    pub(super) changes: std::sync::atomic::AtomicU64,
    /// Test calls' echo peers (`--echo`), when offered.
    pub(super) echo: Option<Echo>,
}

impl Hub {
    #[cfg(test)]
    pub(super) fn new(config: ServerConfig) -> Arc<Hub> {
        Self::with_services(config, None, None)
    }

    /// `listen`: where the plain listener is bound, for echo peers to reach it.
    pub(super) fn with_services(
        config: ServerConfig,
        stun: Option<std::net::SocketAddr>,
        listen: Option<std::net::SocketAddr>,
    ) -> Arc<Hub> {
        let echo = config
            .echo
            .clone()
            .zip(listen)
            .map(|(echo, listen)| Echo::new(echo, listen));
        Arc::new(Hub {
            config,
            state: RwLock::new(HubState::default()),
            metrics: Metrics::default(),
            stun,
            changes: Default::default(),
            echo,
        })
    }

    /// The welcome for member `id` (in its room) with `members`, the others in join order.
    pub(super) fn welcome(
        &self,
        st: &HubState,
        id: &str,
        members: Vec<Member>,
        resumed: bool,
    ) -> ServerMessage {
        let entry = st.clients.get(id).expect("a welcome is for a client");
        let owner = members
            .first()
            .map_or_else(|| id.to_string(), |m| m.id.clone());
        let grace = self.config.resume_grace;
        let room = entry.room.as_ref().and_then(|r| st.rooms.get(r));
        let media = room.map(|r| r.sfu.media.clone()).unwrap_or_default();
        ServerMessage::Welcome(Welcome {
            protocol: PROTOCOL_VERSION,
            id: id.to_string(),
            room: entry.room.clone().unwrap_or_default(),
            name: entry.name.clone(),
            members,
            owner,
            ice_servers: self.ice_servers(id, entry.host.as_deref()),
            heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
            resume_token: (!grace.is_zero()).then(|| entry.resume_token.clone()),
            resume_grace_ms: grace.as_millis() as u64,
            resumed,
            media,
            viewer: entry.viewer,
            broadcast: room.is_some_and(|r| r.broadcast),
        })
    }

    /// The ICE servers for member `id`, who reached the server at `host`: our own STUN
    /// responder first, then the configured ones.
    fn ice_servers(
        &self,
        id: &str,
        host: Option<&str>,
    ) -> Vec<crate::signaling::protocol::IceServer> {
        let own = self
            .stun
            .and_then(|addr| stun::stun_url(addr, host))
            .map(|url| crate::signaling::protocol::IceServer {
                urls: vec![url],
                username: None,
                credential: None,
            });
        own.into_iter()
            .chain(self.config.ice.servers_for(id))
            .collect()
    }

    /// For changes. A panic while holding the lock is a bug, but the state is still
    /// consistent enough to keep serving everyone else.
    pub(super) fn lock(&self) -> RwLockWriteGuard<'_, HubState> {
        self.changes.fetch_add(1, Ordering::Relaxed);
        self.state.write_locked()
    }

    /// For lookups: queueing frames needs no more (outboxes are shared).
    pub(super) fn read(&self) -> RwLockReadGuard<'_, HubState> {
        self.state.read_locked()
    }

    pub(super) fn kick_all(&self) {
        for c in self.read().clients.values() {
            c.out.kick();
        }
    }

    pub(super) fn register(
        &self,
        out: Outbox,
        ip: Option<IpAddr>,
        host: Option<String>,
    ) -> Option<String> {
        let mut st = self.lock();
        if st.clients.len() >= self.config.max_clients {
            return None;
        }
        let id = loop {
            let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            if !st.clients.contains_key(&id) {
                break id;
            }
        };
        st.clients.insert(
            id.clone(),
            ClientEntry {
                ip,
                host,
                name: String::new(),
                room: None,
                state: MediaState::default(),
                viewer: false,
                call: None,
                out,
                resume_token: new_token(),
                away: None,
            },
        );
        self.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    pub(super) fn send_to(&self, st: &HubState, id: &str, frame: &Utf8Bytes) {
        if let Some(c) = st.clients.get(id) {
            c.out.push(Outbound::Text(frame.clone()));
        }
    }

    pub(super) fn reply(&self, st: &HubState, id: &str, msg: &ServerMessage) {
        self.send_to(st, id, &Utf8Bytes::from(msg.to_json()));
    }

    /// Presence to everyone in `room` but `except`. Members who are away get none: the
    /// welcome that resumes them states the room as it is then; nor do members whose
    /// welcome waits for the room's SFU.
    pub(super) fn broadcast(&self, st: &HubState, room: &str, except: &str, msg: &ServerMessage) {
        let Some(r) = st.rooms.get(room) else { return };
        let frame = Utf8Bytes::from(msg.to_json());
        for m in r
            .members
            .iter()
            .filter(|m| *m != except && !r.sfu.is_waiting(m))
        {
            if st.clients.get(m).is_some_and(|c| c.away.is_none()) {
                self.send_to(st, m, &frame);
            }
        }
    }

    /// The members of `room` but `except`, in join order, as a welcome lists them.
    pub(super) fn roster(&self, st: &HubState, room: &str, except: &str) -> Vec<Member> {
        let Some(r) = st.rooms.get(room) else {
            return Vec::new();
        };
        r.members
            .iter()
            .filter(|m| *m != except && !r.sfu.is_waiting(m))
            .filter_map(|m| {
                st.clients.get(m).map(|c| Member {
                    id: m.clone(),
                    name: c.name.clone(),
                    state: c.state,
                    viewer: c.viewer,
                })
            })
            .collect()
    }

    /// Sends an error to one client and counts it.
    pub(super) fn refuse(&self, id: &str, v: ProtocolViolation) {
        self.count_error(v.code);
        let st = self.read();
        self.reply(&st, id, &v.into_message());
    }

    pub(super) fn handle(self: &Arc<Self>, id: &str, msg: ClientMessage) {
        self.metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        let request = msg.type_name();
        if let Err(mut v) = self.dispatch(id, msg) {
            v.request.get_or_insert_with(|| request.to_string());
            self.refuse(id, v);
        }
    }

    pub(super) fn dispatch(
        self: &Arc<Self>,
        id: &str,
        msg: ClientMessage,
    ) -> Result<(), ProtocolViolation> {
        match msg {
            ClientMessage::Join {
                room,
                name,
                password,
                capacity,
                state,
                sfu,
                broadcast,
                role,
            } => self.join(
                id,
                &room,
                &name,
                password,
                capacity,
                state.unwrap_or_default(),
                Create { sfu, broadcast },
                role,
            ),
            ClientMessage::Leave => {
                let mut st = self.lock();
                let room = st.clients.get(id).and_then(|c| c.room.clone());
                let Some(room) = room else {
                    return Err(not_joined());
                };
                self.leave_room(&mut st, id, LeaveReason::Left);
                self.reply(&st, id, &ServerMessage::Left { room });
                Ok(())
            }
            ClientMessage::Relay { to, payload } => self.relay(id, &to, &payload.to_string()),
            ClientMessage::MediaState { state } => {
                let mut st = self.lock();
                let entry = st.clients.get_mut(id).ok_or_else(not_joined)?;
                let room = entry.room.clone().ok_or_else(not_joined)?;
                if entry.viewer {
                    // A viewer sends nothing, whatever it says; its state stays empty.
                    return Ok(());
                }
                entry.state = state;
                // A member still waiting for its welcome is announced with its state then.
                if st.rooms.get(&room).is_some_and(|r| r.sfu.is_waiting(id)) {
                    return Ok(());
                }
                let msg = ServerMessage::MediaState {
                    id: id.to_string(),
                    state,
                };
                self.broadcast(&st, &room, id, &msg);
                Ok(())
            }
            ClientMessage::CallInvite { to, metadata } => self.call_invite(id, &to, metadata),
            ClientMessage::CallAccept { call_id } => self.call_accept(id, &call_id),
            ClientMessage::CallDecline { call_id, reason } => {
                if let Some(r) = &reason
                    && r.chars().count() > crate::signaling::protocol::MAX_REASON_CHARS
                {
                    return Err(ProtocolViolation::new(
                        ErrorCode::BadMessage,
                        "reason is too long",
                    ));
                }
                self.call_end_by(id, &call_id, EndRequest::Decline(reason))
            }
            ClientMessage::CallCancel { call_id } => {
                self.call_end_by(id, &call_id, EndRequest::Cancel)
            }
            ClientMessage::CallHangup { call_id } => {
                self.call_end_by(id, &call_id, EndRequest::Hangup)
            }
            ClientMessage::ListRooms { after } => {
                let (rooms, more) = self.room_page(after.as_deref());
                let st = self.read();
                self.reply(&st, id, &ServerMessage::Rooms { rooms, more });
                Ok(())
            }
            ClientMessage::Ping { nonce } => {
                let st = self.read();
                self.reply(&st, id, &ServerMessage::Pong { nonce });
                Ok(())
            }
            ClientMessage::TestCall => self.test_call(id),
            // The connection task takes it (it changes who the connection is).
            ClientMessage::Resume { .. } => Err(ProtocolViolation::new(
                ErrorCode::ResumeFailed,
                "resume must come from a connection",
            )),
        }
    }

    /// Removes `id` from its room (if any), telling the others why.
    pub(super) fn leave_room(&self, st: &mut HubState, id: &str, reason: LeaveReason) {
        let Some(room) = st.clients.get_mut(id).and_then(|c| c.room.take()) else {
            return;
        };
        let mut now_empty = false;
        let mut was_private = false;
        let mut was_seen = true;
        if let Some(r) = st.rooms.get_mut(&room) {
            r.members.retain(|m| m != id);
            now_empty = r.members.is_empty();
            was_private = r.private.is_some();
            was_seen = !r.sfu.is_waiting(id);
            r.sfu.waiting.retain(|m| m != id);
        }
        if was_seen {
            self.broadcast(
                st,
                &room,
                id,
                &ServerMessage::PeerLeft {
                    id: id.to_string(),
                    reason,
                },
            );
        }
        if now_empty {
            // Its SFU's lease ends with it.
            st.rooms.remove(&room);
        } else {
            self.fall_back_if_small(st, &room);
        }
        // A ringing call belongs to the room it was placed in.
        if let Some(call_id) = st.clients.get(id).and_then(|c| c.call.clone()) {
            let ringing = st
                .calls
                .get(&call_id)
                .is_some_and(|c| c.phase == CallPhase::Ringing);
            let in_this_call_room = was_private && room == private_room_name(&call_id);
            if ringing {
                self.end_call(
                    st,
                    &call_id,
                    CallEndReason::Cancelled,
                    Some("left the room".into()),
                );
            } else if in_this_call_room {
                self.end_call(
                    st,
                    &call_id,
                    CallEndReason::Hangup,
                    Some("left the call".into()),
                );
            }
        }
    }

    /// Relays a payload given as JSON text. The frame is assembled around the
    /// client's bytes: relay is the hot path, and re-serialising it would cost more
    /// than everything else the server does per message.
    pub(super) fn relay(&self, id: &str, to: &str, payload: &str) -> Result<(), ProtocolViolation> {
        let st = self.read();
        let room = st
            .clients
            .get(id)
            .and_then(|c| c.room.as_ref())
            .ok_or_else(not_joined)?;
        let target = self.target(&st, id, to, room)?;
        // Member ids are hex, so `from` needs no escaping.
        let frame = format!(r#"{{"type":"relay","from":"{id}","payload":{payload}}}"#);
        target.out.push(Outbound::Text(Utf8Bytes::from(frame)));
        self.metrics
            .messages_relayed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Resolves a member id that must be in `room` and is not the sender.
    pub(super) fn target<'a>(
        &self,
        st: &'a HubState,
        from: &str,
        to: &str,
        room: &str,
    ) -> Result<&'a ClientEntry, ProtocolViolation> {
        if to == from {
            return Err(ProtocolViolation::new(
                ErrorCode::SelfTarget,
                "cannot address yourself",
            ));
        }
        // Online elsewhere or not at all: the same answer, so ids can't be probed.
        st.clients
            .get(to)
            .filter(|t| t.room.as_deref() == Some(room))
            .ok_or_else(|| {
                ProtocolViolation::new(
                    ErrorCode::UnknownPeer,
                    format!("no member with id {to:?} in your room"),
                )
            })
    }

    pub(super) fn disconnect(&self, id: &str, reason: LeaveReason) {
        let mut st = self.lock();
        // End the call first so the other party hears "disconnected", not "cancelled".
        if let Some(call_id) = st.clients.get(id).and_then(|c| c.call.clone()) {
            self.end_call(&mut st, &call_id, CallEndReason::Disconnected, None);
        }
        self.leave_room(&mut st, id, reason);
        st.clients.remove(id);
    }
}

/// 128 random bits, as hex: unguessable, so only the member's own client can resume it.
pub(super) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) fn not_joined() -> ProtocolViolation {
    ProtocolViolation::new(ErrorCode::NotJoined, "join a room first")
}

pub(super) fn private_room() -> ProtocolViolation {
    ProtocolViolation::new(
        ErrorCode::PrivateRoom,
        "this room belongs to a call between two other members",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::time::Duration;
    use tokio::sync::{Notify, mpsc};

    /// Random but plausible client messages: known types, fields drawn from a
    /// small pool of ids, rooms and call ids so that they often hit real state.
    fn random_message(rng: &mut impl Rng, ids: &[String], calls: &[String]) -> String {
        let pick = |rng: &mut dyn rand::RngCore, pool: &[String]| -> String {
            if pool.is_empty() || rng.random_ratio(1, 5) {
                format!("{:x}", rng.random::<u16>())
            } else {
                pool[rng.random_range(0..pool.len())].clone()
            }
        };
        let room = ["a", "b", "call:x", "", " "][rng.random_range(0..5)];
        let msg = match rng.random_range(0..12) {
            0 => {
                serde_json::json!({"type":"join","room":room,"name":"n","capacity":rng.random_range(0..5)})
            }
            1 => serde_json::json!({"type":"leave"}),
            2 => serde_json::json!({"type":"relay","to":pick(rng, ids),"payload":{"x":1}}),
            3 => {
                serde_json::json!({"type":"media_state","state":{"audio_muted":rng.random::<bool>()}})
            }
            4 => serde_json::json!({"type":"call_invite","to":pick(rng, ids),"metadata":"m"}),
            5 => serde_json::json!({"type":"call_accept","call_id":pick(rng, calls)}),
            6 => serde_json::json!({"type":"call_decline","call_id":pick(rng, calls),"reason":"r"}),
            7 => serde_json::json!({"type":"call_cancel","call_id":pick(rng, calls)}),
            8 => serde_json::json!({"type":"call_hangup","call_id":pick(rng, calls)}),
            9 => serde_json::json!({"type":"list_rooms"}),
            10 => serde_json::json!({"type":"ping","nonce":rng.random::<u32>()}),
            _ => serde_json::json!({"type":"join","room":room,"name":"n","password":"p"}),
        };
        let mut text = msg.to_string();
        // Sometimes corrupt a byte: the parser must refuse, never panic.
        if rng.random_ratio(1, 10) && !text.is_empty() {
            let i = rng.random_range(0..text.len());
            if text.is_char_boundary(i) && text.is_char_boundary(i + 1) {
                text.replace_range(i..i + 1, "\u{1}");
            }
        }
        text
    }

    #[tokio::test]
    async fn random_traffic_never_panics_and_never_relays_across_rooms() {
        let hub = Hub::new(ServerConfig {
            ring_timeout: Duration::from_millis(50),
            ..ServerConfig::default()
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut clients = Vec::new();
        for _ in 0..12 {
            let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
            let outbox = Outbox::new(tx, Arc::new(Notify::new()), Arc::default());
            let id = hub.register(outbox, None, None).unwrap();
            clients.push((id, rx));
        }
        let ids: Vec<String> = clients.iter().map(|(id, _)| id.clone()).collect();
        let mut calls: Vec<String> = Vec::new();
        for step in 0..20_000 {
            let who = rng.random_range(0..clients.len());
            let text = random_message(&mut rng, &ids, &calls);
            let id = clients[who].0.clone();
            if let Some(relay) = FastRelay::parse(&text) {
                let _ = hub.relay(&id, &relay.to, relay.payload.get());
            } else if let Ok(msg) = ClientMessage::parse(&text) {
                hub.handle(&id, msg);
            }
            // Drain every queue, checking that relays only come from roommates.
            for (me, rx) in clients.iter_mut() {
                while let Ok(out) = rx.try_recv() {
                    let Outbound::Text(t) = out.out else { continue };
                    let Ok(msg) = serde_json::from_str::<ServerMessage>(t.as_str()) else {
                        panic!("server sent invalid JSON: {t}");
                    };
                    match msg {
                        ServerMessage::Relay { from, .. } => {
                            let st = hub.lock();
                            let mine = st.clients.get(me.as_str()).and_then(|c| c.room.clone());
                            let theirs = st.clients.get(&from).and_then(|c| c.room.clone());
                            assert_eq!(mine, theirs, "relay crossed rooms at step {step}");
                        }
                        ServerMessage::CallRinging { call_id, .. } => calls.push(call_id),
                        _ => {}
                    }
                }
            }
            if step % 5000 == 4999 {
                // Some leave for good mid-way; the rest must carry on.
                let (gone, _) = clients.remove(0);
                hub.disconnect(&gone, LeaveReason::Disconnected);
            }
        }
        let st = hub.lock();
        for (name, room) in &st.rooms {
            assert!(!room.members.is_empty(), "empty room {name} left behind");
            for m in &room.members {
                assert_eq!(
                    st.clients.get(m).and_then(|c| c.room.as_deref()),
                    Some(name.as_str())
                );
            }
        }
    }
}
