//! Room membership and ringing calls: the welcome, signaling events, room switches.

use crate::signaling::protocol::{ServerMessage, Welcome};
use crate::signaling::{ClientEvent, JoinParams};

use super::*;
use crate::call::negotiation::Signal;
use crate::call::peer::{IceServerConfig, IceTransport, SdpType};

impl Engine {
    pub(super) async fn on_welcome(&mut self, w: Welcome) {
        self.me = w.id.clone();
        let ice: Vec<_> = w
            .ice_servers
            .iter()
            .map(|s| IceServerConfig {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let ca_file = crate::signaling::ClientOptions::default().ca_file;
        self.ice = self.tunnels.route(&ice, ca_file.as_deref()).await;
        let relays = self
            .ice
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| u.starts_with("turn"));
        if self.config.ice_transport == IceTransport::Relay && !relays {
            self.emit(Event::Error(
                "relay only, but the server names no TURN relay: no call can connect".into(),
            ));
        }
        self.membership.room.room = w.room.clone();
        if w.viewer && !self.viewer {
            // Told to watch (a broadcast we did not create): send nothing at all.
            self.local.camera = None;
            self.local.mic = None;
            self.local.screen = None;
            self.local.state = MediaState::default();
        }
        self.viewer = w.viewer;
        self.emit(Event::Joined {
            id: w.id.clone(),
            room: w.room.clone(),
            name: w.name.clone(),
            present: w.members.iter().map(|m| m.id.clone()).collect(),
        });
        self.emit(Event::Role {
            viewer: w.viewer,
            broadcast: w.broadcast,
        });
        self.viewers = w
            .members
            .iter()
            .filter(|m| m.viewer)
            .map(|m| m.id.clone())
            .collect();
        if !self.viewers.is_empty() {
            self.emit(Event::Viewers(self.viewers.len()));
        }
        self.emit(Event::LocalMediaState(self.local.state));
        if self.config.sfu.is_none() {
            if w.media.is_mesh() && self.sfu.is_none() {
                self.emit(Event::MediaMode { sfu: false });
            }
            self.follow_media(w.media.clone()).await;
        }
        for m in w.members {
            self.remember_state(&m.id, Some(m.state));
            self.emit(Event::PeerJoined {
                id: m.id.clone(),
                name: m.name.clone(),
                state: m.state,
            });
            self.add_peer(m).await;
        }
    }

    /// The same member again: peers that left meanwhile go, ones that came get a
    /// connection; the rest never noticed.
    async fn on_resumed(&mut self, w: Welcome) {
        // The room's media may have moved while we were away.
        self.follow_media(w.media.clone()).await;
        let present: std::collections::HashSet<&str> =
            w.members.iter().map(|m| m.id.as_str()).collect();
        let known: std::collections::HashSet<String> = self
            .peers
            .keys()
            .chain(self.sfu.iter().flat_map(|s| s.members.keys()))
            .cloned()
            .collect();
        let gone: Vec<String> = known
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.remove_peer(&id).await;
            self.emit(Event::PeerLeft {
                id,
                reason: crate::signaling::protocol::LeaveReason::Disconnected,
            });
        }
        for m in w.members {
            if !known.contains(&m.id) {
                self.emit(Event::PeerJoined {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    state: m.state,
                });
                self.add_peer(m).await;
            }
        }
        // A restart under way may have lost its offer or answer with the old link.
        let now = std::time::Instant::now();
        for p in self.peers.values_mut() {
            p.reconnect.hurry(now);
        }
        self.emit(Event::Resumed);
    }

    pub(super) async fn on_signaling(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Joined(_) => self.membership.awaiting_join_marker = false,
            ClientEvent::Message(
                ServerMessage::PeerJoined { .. }
                | ServerMessage::PeerLeft { .. }
                | ServerMessage::Relay { .. }
                | ServerMessage::MediaState { .. },
            ) if self.membership.awaiting_join_marker => {}
            ClientEvent::Message(msg) => self.on_server_message(msg).await,
            ClientEvent::Disconnected { reason, .. } => {
                // Media flows peer to peer: the calls go on while the server is away.
                self.emit(Event::Reconnecting { reason });
            }
            ClientEvent::Reconnected(w) if w.resumed && w.id == self.me => {
                self.on_resumed(w).await;
            }
            ClientEvent::Reconnected(w) => {
                // A new member: the others know us by another id now (our publisher in
                // the room's SFU too).
                self.close_all_peers().await;
                if self.config.sfu.is_none() {
                    self.close_sfu().await;
                }
                self.on_welcome(w).await;
            }
            ClientEvent::RejoinFailed(v) => {
                self.emit(Event::Error(format!("could not rejoin the room: {v}")));
            }
            ClientEvent::Closed => {}
        }
    }

    pub(super) async fn on_server_message(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::PeerJoined { member } => {
                self.remember_state(&member.id, Some(member.state));
                if member.viewer && self.viewers.insert(member.id.clone()) {
                    self.emit(Event::Viewers(self.viewers.len()));
                }
                self.emit(Event::PeerJoined {
                    id: member.id.clone(),
                    name: member.name.clone(),
                    state: member.state,
                });
                self.add_peer(member).await;
            }
            ServerMessage::PeerLeft { id, reason } => {
                self.remember_state(&id, None);
                self.unconnected.remove(&id);
                if self.viewers.remove(&id) {
                    self.emit(Event::Viewers(self.viewers.len()));
                }
                self.remove_peer(&id).await;
                self.emit(Event::PeerLeft { id, reason });
            }
            ServerMessage::Relay { from, payload } => {
                if let Some(text) = chat::relayed_text(&payload) {
                    // Chat in an SFU room; the server keeps rooms apart, so `from` is
                    // a roommate.
                    let name = self
                        .sfu
                        .as_ref()
                        .and_then(|s| s.members.get(&from).cloned())
                        .or_else(|| self.unconnected.get(&from).cloned())
                        .unwrap_or_else(|| from.clone());
                    self.emit(Event::Chat { from, name, text });
                    return;
                }
                let signal: Signal = match serde_json::from_value(payload) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%from, "unreadable signal: {e}");
                        return;
                    }
                };
                if signal == Signal::Restart {
                    self.restart_asked(&from).await;
                    return;
                }
                let Some(p) = self.peers.get_mut(&from) else {
                    tracing::debug!(%from, "signal from an unknown member");
                    return;
                };
                if let Signal::Description { sdp_type, sdp } = &signal {
                    let offer = *sdp_type == SdpType::Offer;
                    p.reconnect
                        .on_remote_description(offer, sdp, std::time::Instant::now());
                }
                let ignored = p.negotiator.stats().offers_ignored;
                match p.negotiator.on_signal(&p.peer, signal).await {
                    Ok(mut out) => {
                        // While the path is being restored, the other side's signaling
                        // link may have died with our offer under way: it would roll
                        // back for ours, but never had it. Send it again (a duplicate
                        // costs it one more answer, which we drop).
                        if p.negotiator.stats().offers_ignored > ignored
                            && p.reconnect.interrupted()
                        {
                            out.extend(p.negotiator.pending_offer());
                        }
                        self.relay(&from, out)
                    }
                    Err(e) => self.emit(Event::Error(format!("negotiation with {from}: {e}"))),
                }
            }
            ServerMessage::MediaState { id, state } => {
                let layers_before = self
                    .states
                    .get(&id)
                    .map(|s| (s.camera_layers, s.camera_size));
                self.remember_state(&id, Some(state));
                if let Some(p) = self.peers.get_mut(&id) {
                    p.state = state;
                }
                self.emit(Event::PeerMediaState { id, state });
                if layers_before != Some((state.camera_layers, state.camera_size)) {
                    self.choose_layers().await;
                }
            }
            ServerMessage::CallRinging { call_id, to } => {
                self.membership.outgoing_ring = Some(call_id.clone());
                self.emit(Event::CallRinging { call_id, to });
            }
            ServerMessage::CallIncoming {
                call_id,
                from,
                from_name,
                metadata,
            } => {
                if self.config.auto_answer {
                    let _ =
                        self.client
                            .send(crate::signaling::protocol::ClientMessage::CallAccept {
                                call_id: call_id.clone(),
                            });
                }
                self.emit(Event::IncomingCall {
                    call_id,
                    from,
                    from_name,
                    metadata,
                });
            }
            ServerMessage::CallAccepted {
                call_id,
                room,
                peer,
            } => {
                self.membership.outgoing_ring = None;
                self.membership.active_call = Some(call_id.clone());
                self.emit(Event::CallAccepted {
                    call_id,
                    peer,
                    room: room.clone(),
                });
                let mut target = self.membership.room.clone();
                target.room = room;
                target.password = None;
                self.membership.previous_room = Some(self.membership.room.clone());
                self.switch_room(target).await;
            }
            ServerMessage::CallEnded {
                call_id,
                reason,
                detail,
            } => {
                if self.membership.outgoing_ring.as_deref() == Some(call_id.as_str()) {
                    self.membership.outgoing_ring = None;
                }
                let was_active = self.membership.active_call.as_deref() == Some(call_id.as_str());
                self.emit(Event::CallEnded {
                    call_id,
                    reason,
                    detail,
                });
                if was_active {
                    self.membership.active_call = None;
                    if let Some(back) = self.membership.previous_room.take() {
                        self.switch_room(back).await;
                    }
                }
            }
            ServerMessage::Error { code, message, .. } => {
                self.emit(Event::Error(format!("{code}: {message}")));
            }
            ServerMessage::Welcome(_)
            | ServerMessage::Rooms { .. }
            | ServerMessage::Left { .. }
            | ServerMessage::Pong { .. }
            | ServerMessage::TestCall { .. } => {}
            ServerMessage::RoomMedia { media } => self.follow_media(media).await,
        }
    }

    pub(super) async fn switch_room(&mut self, target: JoinParams) {
        self.membership.awaiting_join_marker = true;
        self.close_all_peers().await;
        if self.config.sfu.is_none() {
            self.close_sfu().await;
        }
        self.states.clear();
        self.viewers.clear();
        self.unconnected.clear();
        let _ = self.client.leave().await;
        let mut target = target;
        target.state = self.local.state;
        match self.client.join(target.clone()).await {
            Ok(w) => {
                self.membership.room = target;
                self.on_welcome(w).await;
            }
            Err(e) => self.emit(Event::Error(format!("cannot join {}: {e}", target.room))),
        }
    }
}
