//! Joining a room: names, passwords and their throttling, capacity, and the room list.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::signaling::protocol::{
    ErrorCode, MediaState, Member, ProtocolViolation, ROOM_NAMES_LISTED, Role, RoomInfo,
    ServerMessage, is_echo_room, is_private_room, validate_name, validate_room,
};

/// Wrong passwords a room takes per window before it refuses every attempt for a while
/// (a 4-digit PIN then takes days, not seconds).
const PASSWORD_ATTEMPTS: usize = 5;
/// Wrong passwords one address may try per window, over all rooms: ten connections or
/// ten rooms are no faster than one.
const PASSWORD_ATTEMPTS_PER_IP: usize = 10;
const PASSWORD_WINDOW: Duration = Duration::from_secs(60);
/// Addresses with recent wrong passwords kept before the stale ones are swept out.
const FAILED_IPS_KEPT: usize = 10_000;
/// Rooms per `list_rooms` answer: a page stays a few kilobytes however many rooms exist.
pub(super) const ROOM_PAGE: usize = 100;

impl Hub {
    /// A page of the open rooms after `after`, in name order, and whether more follow.
    /// Locked rooms and call rooms are not listed: their names are their members' business.
    pub(super) fn room_page(&self, after: Option<&str>) -> (Vec<RoomInfo>, bool) {
        let st = self.read();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut open = st
            .rooms
            .range::<str, _>((start, Bound::Unbounded))
            .filter(|(_, r)| r.private.is_none() && r.password.is_none());
        let rooms = open
            .by_ref()
            .take(ROOM_PAGE)
            .map(|(name, r)| RoomInfo {
                name: name.clone(),
                members: r.members.len(),
                capacity: Some(r.capacity),
                names: r
                    .members
                    .iter()
                    .filter_map(|id| st.clients.get(id).map(|c| c.name.clone()))
                    .take(ROOM_NAMES_LISTED)
                    .collect(),
                broadcast: r.broadcast,
            })
            .collect();
        (rooms, open.next().is_some())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        self: &Arc<Self>,
        id: &str,
        room: &str,
        name: &str,
        password: Option<String>,
        capacity: Option<usize>,
        state: MediaState,
        create: Create,
        role: Option<Role>,
    ) -> Result<(), ProtocolViolation> {
        let name = validate_name(name)?;
        let room = validate_room(room)?;
        if let Some(c) = capacity
            && !(2..=MAX_CAPACITY).contains(&c)
        {
            return Err(ProtocolViolation::new(
                ErrorCode::InvalidCapacity,
                format!("capacity must be between 2 and {MAX_CAPACITY}"),
            ));
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let entry = st.clients.get(id).ok_or_else(not_joined)?;
        if let Some(current) = &entry.room {
            return Err(ProtocolViolation::new(
                ErrorCode::AlreadyJoined,
                format!("already in room {current:?}; leave first"),
            ));
        }
        let creating = !st.rooms.contains_key(&room);
        match st.rooms.get_mut(&room) {
            Some(r) => {
                if let Some(allowed) = &r.private {
                    // A test call's room admits whoever holds its key: the echo peer
                    // joins on a connection of its own.
                    let has_key = r.password.is_some() && r.password == password;
                    if !allowed.iter().any(|a| a == id) && !has_key {
                        return Err(private_room());
                    }
                } else if r.password.is_some() {
                    let now = Instant::now();
                    let recent = |failed: &mut VecDeque<Instant>| {
                        failed.retain(|t| now.duration_since(*t) < PASSWORD_WINDOW);
                        failed.len()
                    };
                    let by_ip = entry
                        .ip
                        .map_or(0, |ip| st.failed_by_ip.get_mut(&ip).map_or(0, &recent));
                    if recent(&mut r.failed_joins) >= PASSWORD_ATTEMPTS
                        || by_ip >= PASSWORD_ATTEMPTS_PER_IP
                    {
                        return Err(ProtocolViolation::new(
                            ErrorCode::TooManyAttempts,
                            "too many wrong passwords; try again in a minute",
                        ));
                    }
                    if r.password != password {
                        r.failed_joins.push_back(now);
                        if let Some(ip) = entry.ip {
                            if st.failed_by_ip.len() >= FAILED_IPS_KEPT {
                                st.failed_by_ip.retain(|_, f| recent(f) > 0);
                            }
                            st.failed_by_ip.entry(ip).or_default().push_back(now);
                        }
                        return Err(ProtocolViolation::new(
                            ErrorCode::WrongPassword,
                            "wrong or missing password for this room",
                        ));
                    }
                } else if password.as_deref().is_some_and(|p| !p.is_empty()) {
                    // Someone made this room unlocked first; joining it would silently drop
                    // the protection the joiner asked for.
                    return Err(ProtocolViolation::new(
                        ErrorCode::RoomNotLocked,
                        "this room exists without a password, so it is not the one you mean; \
                         pick another name",
                    ));
                }
                if r.members.len() >= r.capacity {
                    return Err(ProtocolViolation::new(
                        ErrorCode::RoomFull,
                        "the room is full",
                    ));
                }
            }
            None => {
                if is_private_room(&room) || is_echo_room(&room) {
                    return Err(private_room());
                }
                if st.rooms.len() >= self.config.max_rooms {
                    return Err(ProtocolViolation::new(
                        ErrorCode::TooManyRooms,
                        "the server has no room for another room",
                    ));
                }
                st.rooms.insert(
                    room.clone(),
                    Room {
                        members: Vec::new(),
                        password: password.filter(|p| !p.is_empty()),
                        capacity: capacity.unwrap_or(self.config.default_capacity),
                        private: None,
                        failed_joins: VecDeque::new(),
                        sfu: Default::default(),
                        broadcast: create.broadcast,
                    },
                );
            }
        }
        let members = self.roster(st, &room, id);
        let name = unique_name(&name, members.iter().map(|m| m.name.as_str()));
        st.rooms
            .get_mut(&room)
            .expect("room exists or was just created")
            .members
            .push(id.to_string());
        // In a broadcast whoever did not create it watches unless they ask to present.
        let broadcast = st.rooms.get(&room).is_some_and(|r| r.broadcast);
        let viewer = match role {
            Some(r) => r == Role::Viewer,
            None => broadcast && !creating,
        };
        let entry = st.clients.get_mut(id).expect("checked above");
        entry.room = Some(room.clone());
        entry.name = name.clone();
        entry.viewer = viewer;
        // A viewer sends nothing, whatever state it claims.
        entry.state = if viewer { MediaState::default() } else { state };
        let state = entry.state;
        // A broadcast's audience can be large: its media goes through the SFU if any.
        let sfu = create.sfu || create.broadcast;
        let (welcome_now, job) = self.sfu_on_join(st, &room, id, creating, sfu);
        if welcome_now {
            let welcome = self.welcome(st, id, members, false);
            self.reply(st, id, &welcome);
            let joined = ServerMessage::PeerJoined {
                member: Member {
                    id: id.to_string(),
                    name,
                    state,
                    viewer,
                },
            };
            self.broadcast(st, &room, id, &joined);
        }
        drop(guard);
        if let Some(job) = job {
            self.sfu_open(job);
        }
        Ok(())
    }
}

/// What a join asks for when it creates the room.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Create {
    pub(super) sfu: bool,
    pub(super) broadcast: bool,
}

/// `name`, or `name (2)`, `name (3)`… if a member of the room already goes by it (case
/// aside): two "Alice"s in one room is how one impersonates the other.
fn unique_name<'a>(name: &str, taken: impl Iterator<Item = &'a str> + Clone) -> String {
    let free = |candidate: &str| {
        !taken
            .clone()
            .any(|t| t.to_lowercase() == candidate.to_lowercase())
    };
    if free(name) {
        return name.to_string();
    }
    (2..)
        .map(|n| format!("{name} ({n})"))
        .find(|c| free(c))
        .expect("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{Notify, mpsc};

    /// Joins `room` as `name` and returns the id and what the server sent it.
    fn join(
        hub: &Arc<Hub>,
        room: &str,
        name: &str,
        broadcast: bool,
        role: Option<Role>,
    ) -> (String, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let outbox = Outbox::new(tx, Arc::new(Notify::new()), Arc::default());
        let id = hub.register(outbox, None, None).unwrap();
        let state = MediaState {
            has_camera: true,
            has_microphone: true,
            ..MediaState::default()
        };
        hub.handle(
            &id,
            crate::signaling::protocol::ClientMessage::Join {
                room: room.into(),
                name: name.into(),
                password: None,
                capacity: None,
                state: Some(state),
                sfu: false,
                broadcast,
                role,
            },
        );
        (id, rx)
    }

    fn welcome(rx: &mut mpsc::Receiver<Queued>) -> crate::signaling::protocol::Welcome {
        while let Ok(q) = rx.try_recv() {
            if let Outbound::Text(t) = q.out
                && let Ok(ServerMessage::Welcome(w)) = serde_json::from_str(t.as_str())
            {
                return w;
            }
        }
        panic!("no welcome");
    }

    #[test]
    fn in_a_broadcast_its_creator_presents_and_later_joiners_watch_unless_they_ask() {
        let hub = Hub::new(ServerConfig::default());
        let (_, mut ada) = join(&hub, "launch", "Ada", true, None);
        let w = welcome(&mut ada);
        assert!(w.broadcast && !w.viewer);
        let (_, mut bob) = join(&hub, "launch", "Bob", false, None);
        let w = welcome(&mut bob);
        assert!(w.broadcast && w.viewer, "a later joiner watches");
        let (_, mut cy) = join(&hub, "launch", "Cy", false, Some(Role::Presenter));
        let w = welcome(&mut cy);
        assert!(!w.viewer, "one who asks presents");
        // Everyone knows who watches; a viewer's claimed camera is not believed.
        let bob = w.members.iter().find(|m| m.name == "Bob").unwrap();
        assert!(bob.viewer && !bob.state.has_camera, "{bob:?}");
        let ada = w.members.iter().find(|m| m.name == "Ada").unwrap();
        assert!(!ada.viewer && ada.state.has_camera);
        // Nor is a camera it announces later.
        let bob_id = bob.id.clone();
        hub.handle(
            &bob_id,
            crate::signaling::protocol::ClientMessage::MediaState {
                state: MediaState {
                    has_camera: true,
                    ..MediaState::default()
                },
            },
        );
        let st = hub.read();
        assert!(!st.clients[&bob_id].state.has_camera);
    }

    #[test]
    fn in_an_ordinary_room_only_one_who_asks_watches() {
        let hub = Hub::new(ServerConfig::default());
        let (_, mut ada) = join(&hub, "team", "Ada", false, None);
        assert!(!welcome(&mut ada).viewer);
        let (_, mut bob) = join(&hub, "team", "Bob", true, None);
        let w = welcome(&mut bob);
        assert!(
            !w.viewer && !w.broadcast,
            "broadcast only counts when creating"
        );
        let (_, mut cy) = join(&hub, "team", "Cy", false, Some(Role::Viewer));
        assert!(welcome(&mut cy).viewer);
    }

    #[test]
    fn a_name_already_in_the_room_gets_a_number() {
        assert_eq!(unique_name("Ada", ["Bob"].into_iter()), "Ada");
        assert_eq!(unique_name("Ada", ["ada", "Bob"].into_iter()), "Ada (2)");
        assert_eq!(
            unique_name("Ada", ["Ada", "Ada (2)"].into_iter()),
            "Ada (3)"
        );
    }
}
