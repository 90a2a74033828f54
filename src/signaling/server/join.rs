//! Joining a room: names, passwords and their throttling, capacity, and the room list.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::signaling::protocol::{
    ErrorCode, MediaState, Member, ProtocolViolation, ROOM_NAMES_LISTED, RoomInfo, ServerMessage,
    is_echo_room, is_private_room, validate_name, validate_room,
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
        sfu: bool,
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
        let entry = st.clients.get_mut(id).expect("checked above");
        entry.room = Some(room.clone());
        entry.name = name.clone();
        entry.state = state;
        let (welcome_now, job) = self.sfu_on_join(st, &room, id, creating, sfu);
        if welcome_now {
            let welcome = self.welcome(st, id, members, false);
            self.reply(st, id, &welcome);
            let joined = ServerMessage::PeerJoined {
                member: Member {
                    id: id.to_string(),
                    name,
                    state,
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
