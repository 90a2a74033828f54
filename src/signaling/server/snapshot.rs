//! Rooms and members survive a server restart (`--state-file`): the hub's state is
//! written to a file whenever it changed, at most ten times a second, and read back at
//! start. A restored member is away, as if its connection had just dropped: it resumes
//! with its token, keeps its id, and the others never see it leave; one that does not
//! come back within the grace period leaves as usual. Peer connections are untouched, so
//! media flows on while the server is down. Calls are kept too: an accepted one goes on
//! (either side can hang up after resuming), a ringing one rings for a whole ring timeout
//! again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::signaling::protocol::{LeaveReason, MediaState, RoomMedia, is_echo_room};

/// How often the state is looked at; it is compared with what was last written only when
/// the hub was locked for a change meanwhile.
const EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    saved_unix_ms: u64,
    rooms: Vec<SavedRoom>,
    members: Vec<SavedMember>,
    /// Absent in files written before calls were kept.
    #[serde(default)]
    calls: Vec<SavedCall>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedCall {
    id: String,
    caller: String,
    callee: String,
    accepted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedRoom {
    name: String,
    members: Vec<String>,
    password: Option<String>,
    capacity: usize,
    private: Option<Vec<String>>,
    #[serde(default)]
    broadcast: bool,
    /// Through the SFU: its VideoRoom is taken back after a restart if Janus has it.
    #[serde(default, skip_serializing_if = "RoomMedia::is_mesh")]
    media: RoomMedia,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedMember {
    id: String,
    name: String,
    room: String,
    state: MediaState,
    resume_token: String,
    #[serde(default)]
    viewer: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// What would be written now: every member in a room, and the rooms.
    fn snapshot(&self) -> Snapshot {
        let st = self.read();
        // A test call's echo runs in this process: it does not survive a restart, so
        // neither does its room (its caller then fails to resume and is told).
        let rooms = st
            .rooms
            .iter()
            .filter(|(name, _)| !is_echo_room(name))
            .map(|(name, r)| SavedRoom {
                name: name.clone(),
                members: r.members.clone(),
                password: r.password.clone(),
                capacity: r.capacity,
                private: r.private.clone(),
                broadcast: r.broadcast,
                media: r.sfu.media.clone(),
            })
            .collect();
        let mut members: Vec<SavedMember> = st
            .clients
            .iter()
            .filter_map(|(id, c)| {
                Some(SavedMember {
                    id: id.clone(),
                    name: c.name.clone(),
                    room: c.room.clone().filter(|r| !is_echo_room(r))?,
                    state: c.state,
                    resume_token: c.resume_token.clone(),
                    viewer: c.viewer,
                })
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut calls: Vec<SavedCall> = st
            .calls
            .iter()
            .map(|(id, c)| SavedCall {
                id: id.clone(),
                caller: c.caller.clone(),
                callee: c.callee.clone(),
                accepted: c.phase == CallPhase::Accepted,
            })
            .collect();
        calls.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            saved_unix_ms: 0,
            rooms,
            members,
            calls,
        }
    }

    /// Takes back what `path` holds, if it was written within the resume grace: every
    /// member away until it resumes. Returns how many members came back.
    pub(super) fn restore(self: &Arc<Self>, path: &Path) -> Result<usize, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let snap: Snapshot =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let age = Duration::from_millis(unix_ms().saturating_sub(snap.saved_unix_ms));
        if age > self.config.resume_grace {
            tracing::info!(
                "{} is {age:?} old, past the resume grace: starting empty",
                path.display()
            );
            return Ok(0);
        }
        let mut adopt = Vec::new();
        let ids: Vec<String> = {
            let mut st = self.lock();
            for r in snap.rooms {
                // Back to the SFU only if this server still has one; else a mesh.
                let sfu = match r.media {
                    RoomMedia::Sfu { .. } if self.config.sfu.is_some() => {
                        adopt.push((r.name.clone(), r.media.clone()));
                        RoomSfu::restored(r.media)
                    }
                    _ => RoomSfu::default(),
                };
                st.rooms.insert(
                    r.name,
                    Room {
                        members: r.members,
                        password: r.password,
                        capacity: r.capacity,
                        private: r.private,
                        failed_joins: VecDeque::new(),
                        sfu,
                        broadcast: r.broadcast,
                    },
                );
            }
            for m in &snap.members {
                // Parking gives it its own queue; this one only fills the field.
                let (tx, _) = mpsc::channel(1);
                let out = Outbox::new(tx, Default::default(), self.metrics.outbound_bytes.clone());
                st.clients.insert(
                    m.id.clone(),
                    ClientEntry {
                        ip: None,
                        host: None,
                        name: m.name.clone(),
                        room: Some(m.room.clone()),
                        state: m.state,
                        viewer: m.viewer,
                        call: None,
                        out,
                        resume_token: m.resume_token.clone(),
                        away: None,
                    },
                );
            }
            // A member the file names in a room but not among the members is dropped.
            let known: std::collections::HashSet<String> = st.clients.keys().cloned().collect();
            for r in st.rooms.values_mut() {
                r.members.retain(|m| known.contains(m));
            }
            st.rooms.retain(|_, r| !r.members.is_empty());
            // A call both of whose parties came back goes on.
            for c in snap.calls {
                if !(known.contains(&c.caller) && known.contains(&c.callee)) {
                    continue;
                }
                for party in [&c.caller, &c.callee] {
                    if let Some(entry) = st.clients.get_mut(party.as_str()) {
                        entry.call = Some(c.id.clone());
                    }
                }
                let (phase, ring_timer) = if c.accepted {
                    (CallPhase::Accepted, None)
                } else {
                    (CallPhase::Ringing, Some(self.ring_timer(&c.id)))
                };
                st.calls.insert(
                    c.id,
                    Call {
                        caller: c.caller,
                        callee: c.callee,
                        phase,
                        ring_timer,
                    },
                );
            }
            snap.members.into_iter().map(|m| m.id).collect()
        };
        for id in &ids {
            if !self.park(id, LeaveReason::Disconnected) {
                self.disconnect(id, LeaveReason::Disconnected);
            }
        }
        for (room, media) in adopt {
            self.sfu_adopt(&room, media);
        }
        Ok(ids.len())
    }
}

/// Writes the hub's state to `path` whenever it changed, until `stop` (a shutdown
/// empties the rooms on purpose: that is not written). A write goes to a temporary file
/// renamed over the old one, so a crash mid-write leaves the previous state.
pub(super) async fn keep(hub: Arc<Hub>, path: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut last: Option<Snapshot> = None;
    let mut seen = u64::MAX;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = accept::stopped(&mut stop) => return,
        }
        let changes = hub.changes.load(std::sync::atomic::Ordering::Relaxed);
        if changes == seen {
            continue;
        }
        seen = changes;
        let snap = hub.snapshot();
        if last.as_ref() != Some(&snap) {
            let mut stamped = snap.clone();
            stamped.saved_unix_ms = unix_ms();
            match write(&path, &stamped) {
                Ok(()) => tracing::debug!("state written: {} members", snap.members.len()),
                Err(e) => {
                    tracing::warn!("cannot keep the server's state in {}: {e}", path.display())
                }
            }
            last = Some(snap);
        }
    }
}

fn write(path: &Path, snap: &Snapshot) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(snap).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(age_ms: u64) -> Snapshot {
        Snapshot {
            saved_unix_ms: unix_ms() - age_ms,
            rooms: vec![SavedRoom {
                name: "r".into(),
                members: vec!["a".into(), "ghost".into()],
                password: Some("pw".into()),
                capacity: 5,
                private: None,
                broadcast: false,
                media: RoomMedia::Mesh,
            }],
            members: vec![SavedMember {
                id: "a".into(),
                name: "Ann".into(),
                room: "r".into(),
                state: MediaState::default(),
                resume_token: "t".into(),
                viewer: false,
            }],
            calls: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_fresh_state_comes_back_away_and_a_stale_or_broken_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &saved(1000)).unwrap();
        let hub = Hub::new(ServerConfig::default());
        assert_eq!(hub.restore(&path), Ok(1));
        assert_eq!(hub.metrics_snapshot().away, 1);
        // The room keeps its password and size; a member the file does not describe is
        // not made up.
        let back = hub.snapshot();
        assert_eq!(back.rooms[0].members, ["a"]);
        assert_eq!(back.rooms[0].password.as_deref(), Some("pw"));
        assert_eq!(back.rooms[0].capacity, 5);
        assert_eq!(back.members, saved(0).members);

        // Older than the resume grace (30 s): nobody could resume anyway.
        write(&path, &saved(31_000)).unwrap();
        let hub = Hub::new(ServerConfig::default());
        assert_eq!(hub.restore(&path), Ok(0));
        assert_eq!(hub.metrics_snapshot().rooms, 0);

        std::fs::write(&path, "{ not json").unwrap();
        assert!(hub.restore(&path).unwrap_err().contains("state.json"));
        assert_eq!(hub.restore(&dir.path().join("none.json")), Ok(0));
    }

    /// Keeps the jobs it is asked to adopt, with the VideoRoom each names.
    #[derive(Default)]
    struct Adopting(std::sync::Mutex<Vec<(SfuJob, Option<RoomMedia>)>>);

    impl SfuService for Adopting {
        fn open(&self, job: SfuJob) {
            self.0.lock().unwrap().push((job, None));
        }
        fn adopt(&self, job: SfuJob, media: RoomMedia) {
            self.0.lock().unwrap().push((job, Some(media)));
        }
    }

    fn with_sfu(service: Arc<Adopting>) -> Arc<Hub> {
        Hub::new(ServerConfig {
            sfu: Some(SfuConfig {
                service,
                mesh_max: 4,
            }),
            ..ServerConfig::default()
        })
    }

    #[tokio::test]
    async fn an_sfu_room_comes_back_through_its_videoroom_or_else_as_a_mesh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let videoroom = RoomMedia::Sfu {
            url: "ws://janus".into(),
            room: 77,
            pin: Some("pin".into()),
            api_secret: None,
        };
        let mut snap = saved(500);
        snap.rooms[0].media = videoroom.clone();
        write(&path, &snap).unwrap();

        // Janus still has it: the room carries on in it.
        let service = Arc::new(Adopting::default());
        let hub = with_sfu(service.clone());
        assert_eq!(hub.restore(&path), Ok(1));
        let (job, asked) = service.0.lock().unwrap().pop().expect("asked to adopt");
        assert_eq!((job.room.as_str(), asked.as_ref()), ("r", Some(&videoroom)));
        assert_eq!(
            hub.snapshot().rooms[0].media,
            videoroom,
            "named while looked for"
        );
        let _lease = job.opened(videoroom.clone()).expect("the room wants it");
        assert_eq!(hub.snapshot().rooms[0].media, videoroom);

        // Janus is gone: a room small enough goes back to a mesh.
        let service = Arc::new(Adopting::default());
        let hub = with_sfu(service.clone());
        hub.restore(&path).unwrap();
        let (job, _) = service.0.lock().unwrap().pop().unwrap();
        job.failed("cannot reach Janus");
        assert_eq!(hub.snapshot().rooms[0].media, RoomMedia::Mesh);

        // A server started without an SFU this time: a mesh, nothing asked.
        let hub = Hub::new(ServerConfig::default());
        hub.restore(&path).unwrap();
        assert_eq!(hub.snapshot().rooms[0].media, RoomMedia::Mesh);
    }

    fn member(id: &str, room: &str) -> SavedMember {
        SavedMember {
            id: id.into(),
            name: id.into(),
            room: room.into(),
            state: MediaState::default(),
            resume_token: format!("token-{id}"),
            viewer: false,
        }
    }

    #[tokio::test]
    async fn calls_come_back_with_their_parties_and_a_ringing_one_rings_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let room = |name: &str, members: &[&str], private: Option<Vec<String>>| SavedRoom {
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            password: None,
            capacity: 50,
            private,
            broadcast: false,
            media: RoomMedia::Mesh,
        };
        let call = |id: &str, caller: &str, callee: &str, accepted| SavedCall {
            id: id.into(),
            caller: caller.into(),
            callee: callee.into(),
            accepted,
        };
        let snap = Snapshot {
            saved_unix_ms: unix_ms(),
            rooms: vec![
                room("lobby", &["cy", "di", "ed"], None),
                room(
                    "call:c1",
                    &["ann", "bob"],
                    Some(vec!["ann".into(), "bob".into()]),
                ),
            ],
            members: ["ann", "bob"]
                .iter()
                .map(|m| member(m, "call:c1"))
                .chain(["cy", "di"].iter().map(|m| member(m, "lobby")))
                .collect(),
            calls: vec![
                call("c1", "ann", "bob", true),
                call("c2", "cy", "di", false),
                // ed is not among the members: this call cannot go on.
                call("c3", "ed", "cy", false),
            ],
        };
        write(&path, &snap).unwrap();
        let hub = Hub::new(ServerConfig {
            ring_timeout: Duration::from_millis(200),
            ..ServerConfig::default()
        });
        assert_eq!(hub.restore(&path), Ok(4));
        let back = hub.snapshot();
        assert_eq!(back.calls, snap.calls[..2]);
        {
            let st = hub.read();
            assert_eq!(st.clients["ann"].call.as_deref(), Some("c1"));
            assert_eq!(st.clients["di"].call.as_deref(), Some("c2"));
        }
        // The ringing call times out as any would; the accepted one stays.
        assert_eq!(hub.metrics_snapshot().ring_timers, 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while hub.read().calls.contains_key("c2") {
            assert!(tokio::time::Instant::now() < deadline, "c2 never timed out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(hub.read().calls.contains_key("c1"));
        assert_eq!(hub.read().clients["di"].call, None);
    }

    #[test]
    fn test_calls_are_not_kept_their_echo_does_not_survive_a_restart() {
        let hub = Hub::new(ServerConfig::default());
        {
            let mut st = hub.lock();
            for (room, id) in [("echo:1", "ada"), ("team", "bob")] {
                st.rooms.insert(
                    room.into(),
                    Room {
                        members: vec![id.into()],
                        password: None,
                        capacity: 2,
                        private: None,
                        failed_joins: VecDeque::new(),
                        sfu: Default::default(),
                        broadcast: false,
                    },
                );
                let (tx, _) = mpsc::channel(1);
                st.clients.insert(
                    id.into(),
                    ClientEntry {
                        ip: None,
                        host: None,
                        name: id.into(),
                        room: Some(room.into()),
                        state: MediaState::default(),
                        viewer: false,
                        call: None,
                        out: Outbox::new(tx, Default::default(), Default::default()),
                        resume_token: "t".into(),
                        away: None,
                    },
                );
            }
        }
        let snap = hub.snapshot();
        let rooms: Vec<&str> = snap.rooms.iter().map(|r| r.name.as_str()).collect();
        let members: Vec<&str> = snap.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!((rooms, members), (vec!["team"], vec!["bob"]));
    }

    #[test]
    fn a_file_from_before_calls_were_kept_still_reads() {
        let mut v = serde_json::to_value(saved(0)).unwrap();
        v.as_object_mut().unwrap().remove("calls");
        let snap: Snapshot = serde_json::from_value(v).unwrap();
        assert!(snap.calls.is_empty());
    }
}
