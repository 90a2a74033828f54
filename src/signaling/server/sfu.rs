//! Room modes: a room's media goes through a mesh until its creator asks for an SFU or
//! a join takes it past `mesh_max` members; then through a Janus VideoRoom. The hub
//! decides here, synchronously; the VideoRoom is opened by an [`SfuService`] (Janus in
//! `sfu/rooms.rs`, a fake in the specs), which answers through the [`SfuJob`] it got.
//!
//! A joiner whose join opens the VideoRoom (or comes while it opens) waits for its
//! welcome until the service answered, so it never starts a mesh only to leave it; the
//! members already there carry on in the mesh meanwhile and are told with `room_media`.

use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::*;
use crate::signaling::protocol::{ErrorCode, Member, RoomMedia, ServerMessage};

/// What opens VideoRooms: `confab::sfu::JanusRooms`, or a test's stand-in.
pub trait SfuService: Send + Sync + 'static {
    /// Opens a VideoRoom for `job.room` and answers with [`SfuJob::opened`] or
    /// [`SfuJob::failed`]; once open, says [`SfuJob::lost`] if it goes, and closes it
    /// when the lease `opened` returned ends.
    fn open(&self, job: SfuJob);

    /// After a server restart: the room's media went through the VideoRoom `media`
    /// names. Answers like [`SfuService::open`], with `media` itself if that VideoRoom
    /// is still there (members carry on in it) or another one.
    fn adopt(&self, job: SfuJob, media: RoomMedia) {
        let _ = media;
        self.open(job);
    }
}

/// The SFU a server offers and when rooms move to it.
#[derive(Clone)]
pub struct SfuConfig {
    pub service: Arc<dyn SfuService>,
    /// The most members a room takes in a mesh; one more moves it to the SFU.
    pub mesh_max: usize,
}

/// A mesh costs each member an upload and an encode per other member: past four, a
/// desktop's uplink and CPU give out.
pub const DEFAULT_MESH_MAX: usize = 4;

impl std::fmt::Debug for SfuConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SfuConfig")
            .field("mesh_max", &self.mesh_max)
            .finish_non_exhaustive()
    }
}

/// One attempt to open a room's VideoRoom, and how its outcome reaches the hub.
pub struct SfuJob {
    /// The confab room.
    pub room: String,
    attempt: u64,
    hub: Weak<Hub>,
}

/// A room's media and where its SFU stands.
#[derive(Default)]
pub(super) struct RoomSfu {
    pub(super) media: RoomMedia,
    phase: Phase,
    /// Numbers the attempts: an answer about an earlier one is ignored.
    attempt: u64,
    /// Joined, but their welcome waits for the VideoRoom: the others do not see them yet.
    pub(super) waiting: Vec<String>,
}

#[derive(Default)]
enum Phase {
    #[default]
    Mesh,
    Opening,
    /// In use; dropping the sender ends the lease, and the service closes the VideoRoom.
    Open {
        _lease: oneshot::Sender<()>,
    },
    /// The SFU went away while the room was too big for a mesh.
    Lost,
}

/// What a join does to the room's media.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OnJoin {
    /// Welcome the joiner now, into the media the room has.
    Welcome,
    /// Open the VideoRoom; the joiner waits for it.
    Open,
    /// The VideoRoom is opening: the joiner waits for it.
    Wait,
}

impl RoomSfu {
    /// `creating`: this join makes the room; `asked`: its `sfu` flag; `members`: how many
    /// the room has with the joiner.
    pub(super) fn on_join(
        &self,
        creating: bool,
        asked: bool,
        members: usize,
        mesh_max: usize,
    ) -> OnJoin {
        match self.phase {
            Phase::Opening => OnJoin::Wait,
            Phase::Open { .. } => OnJoin::Welcome,
            Phase::Mesh | Phase::Lost if (creating && asked) || members > mesh_max => OnJoin::Open,
            Phase::Mesh | Phase::Lost => OnJoin::Welcome,
        }
    }

    /// A room the state file says went through the SFU: its welcomes name that
    /// VideoRoom while the service looks for it again (`SfuService::adopt`).
    pub(super) fn restored(media: RoomMedia) -> Self {
        Self {
            media,
            phase: Phase::Opening,
            attempt: 1,
            waiting: Vec::new(),
        }
    }

    pub(super) fn is_waiting(&self, id: &str) -> bool {
        self.waiting.iter().any(|w| w == id)
    }
}

impl SfuJob {
    /// The VideoRoom is up: the room's members move to `media`. The lease ends (its
    /// sender is dropped) when the room no longer uses it; None if it never will (the
    /// room emptied meanwhile).
    pub fn opened(&self, media: RoomMedia) -> Option<oneshot::Receiver<()>> {
        let hub = self.hub.upgrade()?;
        let mut st = hub.lock();
        let r = st.rooms.get_mut(&self.room)?;
        if r.sfu.attempt != self.attempt || !matches!(r.sfu.phase, Phase::Opening) {
            return None;
        }
        let (lease, ended) = oneshot::channel();
        r.sfu.phase = Phase::Open { _lease: lease };
        r.sfu.media = media.clone();
        tracing::info!(room = %self.room, ?media, "the room's media goes through the SFU");
        hub.broadcast(&st, &self.room, "", &ServerMessage::RoomMedia { media });
        hub.welcome_waiting(&mut st, &self.room);
        Some(ended)
    }

    /// The VideoRoom could not be opened: the room stays a mesh and its members are told.
    pub fn failed(&self, why: &str) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut st = hub.lock();
        let Some(r) = st.rooms.get_mut(&self.room) else {
            return;
        };
        if r.sfu.attempt != self.attempt || !matches!(r.sfu.phase, Phase::Opening) {
            return;
        }
        if !r.sfu.media.is_mesh() {
            // Its members were in the SFU (before a restart): as if it were lost.
            r.sfu.phase = Phase::Lost;
            hub.welcome_waiting(&mut st, &self.room);
            return self.lost_in(&hub, &mut st, why);
        }
        r.sfu.phase = Phase::Mesh;
        tracing::warn!(room = %self.room, "no SFU for the room, it stays a mesh: {why}");
        hub.welcome_waiting(&mut st, &self.room);
        let msg = format!("the SFU is unavailable ({why}); the room stays a mesh");
        hub.tell_sfu_error(&st, &self.room, msg);
    }

    /// The open VideoRoom went away (Janus died, its session ended).
    pub fn lost(&self, why: &str) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut st = hub.lock();
        let Some(r) = st.rooms.get_mut(&self.room) else {
            return;
        };
        if r.sfu.attempt != self.attempt || !matches!(r.sfu.phase, Phase::Open { .. }) {
            return;
        }
        r.sfu.phase = Phase::Lost;
        self.lost_in(&hub, &mut st, why);
    }

    /// The room (now `Lost`) goes back to a mesh if it is small enough; its members are
    /// told either way.
    fn lost_in(&self, hub: &Hub, st: &mut HubState, why: &str) {
        let members = st.rooms.get(&self.room).map_or(0, |r| r.members.len());
        let mesh_max = hub.mesh_max();
        tracing::warn!(room = %self.room, members, "the room's SFU went away: {why}");
        let msg = if hub.fall_back_if_small(st, &self.room) {
            format!("the SFU went away ({why}); the room is back to a mesh")
        } else {
            format!(
                "the SFU went away ({why}); {members} members are too many for a mesh \
                 (at most {mesh_max}): media stops until members leave or the SFU is back"
            )
        };
        hub.tell_sfu_error(st, &self.room, msg);
    }
}

impl Hub {
    /// `sfu_unavailable` to every member of `room`, counted like any error sent.
    fn tell_sfu_error(&self, st: &HubState, room: &str, message: String) {
        let msg = ServerMessage::Error {
            code: ErrorCode::SfuUnavailable,
            message,
            request: None,
        };
        self.broadcast(st, room, "", &msg);
        for _ in st.rooms.get(room).iter().flat_map(|r| &r.members) {
            self.count_error(ErrorCode::SfuUnavailable);
        }
    }

    fn mesh_max(&self) -> usize {
        self.config.sfu.as_ref().map_or(usize::MAX, |s| s.mesh_max)
    }

    /// Decides for a join into `room` (the joiner already among its members) and
    /// returns the job to start once the lock is released, if any. `welcome` is false
    /// when the joiner waits.
    pub(super) fn sfu_on_join(
        self: &Arc<Self>,
        st: &mut HubState,
        room: &str,
        id: &str,
        creating: bool,
        asked: bool,
    ) -> (bool, Option<SfuJob>) {
        let Some(config) = &self.config.sfu else {
            return (true, None);
        };
        let Some(r) = st.rooms.get_mut(room) else {
            return (true, None);
        };
        if r.private.is_some() {
            return (true, None);
        }
        match r
            .sfu
            .on_join(creating, asked, r.members.len(), config.mesh_max)
        {
            OnJoin::Welcome => (true, None),
            OnJoin::Wait => {
                r.sfu.waiting.push(id.to_string());
                (false, None)
            }
            OnJoin::Open => {
                r.sfu.waiting.push(id.to_string());
                r.sfu.phase = Phase::Opening;
                r.sfu.attempt += 1;
                tracing::info!(%room, members = r.members.len(), "opening an SFU room");
                let job = SfuJob {
                    room: room.to_string(),
                    attempt: r.sfu.attempt,
                    hub: Arc::downgrade(self),
                };
                (false, Some(job))
            }
        }
    }

    /// Starts a job `sfu_on_join` returned; never under the lock (a service may answer
    /// at once).
    pub(super) fn sfu_open(&self, job: SfuJob) {
        if let Some(config) = &self.config.sfu {
            config.service.open(job);
        }
    }

    /// Looks for a restored room's VideoRoom again (`RoomSfu::restored`); never under
    /// the lock. A room that emptied meanwhile takes nothing.
    pub(super) fn sfu_adopt(self: &Arc<Self>, room: &str, media: RoomMedia) {
        let attempt = self.read().rooms.get(room).map(|r| r.sfu.attempt);
        let (Some(config), Some(attempt)) = (&self.config.sfu, attempt) else {
            return;
        };
        let job = SfuJob {
            room: room.to_string(),
            attempt,
            hub: Arc::downgrade(self),
        };
        config.service.adopt(job, media);
    }

    /// Welcomes the joiners that waited, one by one as if they joined now: each is
    /// listed to the ones after it and told of by `peer_joined` to the ones before.
    fn welcome_waiting(&self, st: &mut HubState, room: &str) {
        loop {
            let Some(r) = st.rooms.get_mut(room) else {
                return;
            };
            if r.sfu.waiting.is_empty() {
                return;
            }
            let id = r.sfu.waiting.remove(0);
            let Some(entry) = st.clients.get(&id) else {
                continue;
            };
            let joined = ServerMessage::PeerJoined {
                member: Member {
                    id: id.clone(),
                    name: entry.name.clone(),
                    state: entry.state,
                    viewer: entry.viewer,
                },
            };
            let members = self.roster(st, room, &id);
            let welcome = self.welcome(st, &id, members, false);
            self.reply(st, &id, &welcome);
            self.broadcast(st, room, &id, &joined);
        }
    }

    /// A room whose SFU went away goes back to a mesh once it is small enough; true if
    /// it did (its members are told with `room_media`).
    pub(super) fn fall_back_if_small(&self, st: &mut HubState, room: &str) -> bool {
        let mesh_max = self.mesh_max();
        let Some(r) = st.rooms.get_mut(room) else {
            return false;
        };
        if !matches!(r.sfu.phase, Phase::Lost) || r.members.len() > mesh_max {
            return false;
        }
        r.sfu.phase = Phase::Mesh;
        r.sfu.media = RoomMedia::Mesh;
        tracing::info!(%room, "the room is back to a mesh");
        let msg = ServerMessage::RoomMedia {
            media: RoomMedia::Mesh,
        };
        self.broadcast(st, room, "", &msg);
        true
    }
}

#[cfg(test)]
mod specs {
    use std::sync::Mutex;

    use tokio::sync::{Notify, mpsc};

    use super::*;
    use crate::signaling::protocol::{ClientMessage, LeaveReason, MediaState};

    /// Keeps the jobs it is given; the spec answers them as Janus would.
    #[derive(Default)]
    struct Jobs(Mutex<Vec<SfuJob>>);

    impl SfuService for Jobs {
        fn open(&self, job: SfuJob) {
            self.0.lock().unwrap().push(job);
        }
    }

    impl Jobs {
        fn take(&self) -> Vec<SfuJob> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    struct Client {
        id: String,
        rx: mpsc::Receiver<Queued>,
    }

    impl Client {
        /// Everything the server sent since the last look.
        fn got(&mut self) -> Vec<ServerMessage> {
            let mut out = Vec::new();
            while let Ok(q) = self.rx.try_recv() {
                if let Outbound::Text(t) = q.out {
                    out.push(serde_json::from_str(t.as_str()).unwrap());
                }
            }
            out
        }
    }

    fn hub(mesh_max: usize) -> (Arc<Hub>, Arc<Jobs>) {
        let jobs = Arc::new(Jobs::default());
        let config = ServerConfig {
            sfu: Some(SfuConfig {
                service: jobs.clone(),
                mesh_max,
            }),
            ..ServerConfig::default()
        };
        (Hub::new(config), jobs)
    }

    fn join(hub: &Arc<Hub>, room: &str, name: &str, sfu: bool) -> Client {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let outbox = Outbox::new(tx, Arc::new(Notify::new()), Arc::default());
        let id = hub.register(outbox, None, None).unwrap();
        hub.handle(
            &id,
            ClientMessage::Join {
                room: room.into(),
                name: name.into(),
                password: None,
                capacity: None,
                state: Some(MediaState::default()),
                sfu,
                broadcast: false,
                role: None,
            },
        );
        Client { id, rx }
    }

    fn sfu_media(room: u64) -> RoomMedia {
        RoomMedia::Sfu {
            url: "ws://janus".into(),
            room,
            pin: Some("pin".into()),
            api_secret: None,
        }
    }

    fn welcome(got: &[ServerMessage]) -> &crate::signaling::protocol::Welcome {
        got.iter()
            .find_map(|m| match m {
                ServerMessage::Welcome(w) => Some(w),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no welcome in {got:?}"))
    }

    fn sfu_errors(got: &[ServerMessage]) -> Vec<&str> {
        got.iter()
            .filter_map(|m| match m {
                ServerMessage::Error {
                    code: ErrorCode::SfuUnavailable,
                    message,
                    ..
                } => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    fn moved_to(got: &[ServerMessage]) -> Vec<&RoomMedia> {
        got.iter()
            .filter_map(|m| match m {
                ServerMessage::RoomMedia { media } => Some(media),
                _ => None,
            })
            .collect()
    }

    /// Four members in a mesh; the fifth's join is waiting for its VideoRoom.
    fn full_mesh_and_a_fifth(hub: &Arc<Hub>, jobs: &Jobs) -> (Vec<Client>, Client, SfuJob) {
        let mut four: Vec<Client> = (1..=4)
            .map(|n| join(hub, "team", &format!("m{n}"), false))
            .collect();
        for c in &mut four {
            assert!(welcome(&c.got()).media.is_mesh());
        }
        assert!(jobs.take().is_empty(), "four fit in a mesh");
        let mut fifth = join(hub, "team", "m5", false);
        let job = jobs.take().pop().expect("the fifth opens an SFU room");
        assert_eq!(job.room, "team");
        assert!(fifth.got().is_empty(), "the fifth waits for the VideoRoom");
        for c in &mut four {
            assert!(c.got().is_empty(), "nobody sees the fifth yet");
        }
        (four, fifth, job)
    }

    #[test]
    fn a_join_past_mesh_max_moves_the_room_to_the_sfu_and_the_joiner_is_welcomed_into_it() {
        let (hub, jobs) = hub(4);
        let (mut four, mut fifth, job) = full_mesh_and_a_fifth(&hub, &jobs);
        let _lease = job.opened(sfu_media(7)).expect("the room wants it");
        for c in &mut four {
            let got = c.got();
            assert_eq!(moved_to(&got), [&sfu_media(7)]);
            assert!(
                matches!(got.last(), Some(ServerMessage::PeerJoined { member }) if member.id == fifth.id),
                "{got:?}"
            );
        }
        let got = fifth.got();
        let w = welcome(&got);
        assert_eq!(w.media, sfu_media(7));
        assert_eq!(w.members.len(), 4);
        // Later joiners learn it from their welcome, and open nothing more.
        let mut sixth = join(&hub, "team", "m6", false);
        assert_eq!(welcome(&sixth.got()).media, sfu_media(7));
        assert!(jobs.take().is_empty());
    }

    #[test]
    fn a_creator_that_asks_gets_an_sfu_room_from_its_first_welcome() {
        let (hub, jobs) = hub(4);
        let mut ada = join(&hub, "big", "ada", true);
        assert!(ada.got().is_empty());
        let job = jobs.take().pop().expect("asked for");
        let _lease = job.opened(sfu_media(9));
        let got = ada.got();
        assert_eq!(welcome(&got).media, sfu_media(9));
        assert!(moved_to(&got).is_empty(), "the welcome says it all");
        // Only the creator's ask counts: a member asking in a mesh room changes nothing.
        let _bob = join(&hub, "small", "bob", false);
        let mut cyd = join(&hub, "small", "cyd", true);
        assert!(welcome(&cyd.got()).media.is_mesh());
        assert!(jobs.take().is_empty());
    }

    #[test]
    fn without_an_sfu_every_room_is_a_mesh_however_big() {
        let hub = Hub::new(ServerConfig::default());
        for n in 0..8 {
            let mut c = join(&hub, "team", &format!("m{n}"), n == 0);
            assert!(welcome(&c.got()).media.is_mesh());
        }
    }

    #[test]
    fn an_sfu_that_cannot_be_opened_leaves_the_room_a_mesh_and_everyone_is_told() {
        let (hub, jobs) = hub(4);
        let (mut four, mut fifth, job) = full_mesh_and_a_fifth(&hub, &jobs);
        job.failed("cannot reach Janus at ws://janus");
        let got = fifth.got();
        assert!(welcome(&got).media.is_mesh());
        assert_eq!(welcome(&got).members.len(), 4);
        for got in four.iter_mut().map(Client::got).chain([got]) {
            let errors = sfu_errors(&got);
            assert_eq!(errors.len(), 1, "{got:?}");
            assert!(errors[0].contains("cannot reach Janus at ws://janus"));
            assert!(moved_to(&got).is_empty());
        }
        // The next join past the threshold tries again.
        let _sixth = join(&hub, "team", "m6", false);
        assert_eq!(jobs.take().len(), 1);
        // An answer about the old attempt means nothing now.
        assert!(job.opened(sfu_media(1)).is_none());
    }

    #[test]
    fn a_small_room_whose_sfu_dies_falls_back_to_a_mesh() {
        let (hub, jobs) = hub(4);
        let mut ada = join(&hub, "r", "ada", true);
        let job = jobs.take().pop().unwrap();
        let _lease = job.opened(sfu_media(3));
        let mut bob = join(&hub, "r", "bob", false);
        ada.got();
        bob.got();
        job.lost("the session closed");
        for c in [&mut ada, &mut bob] {
            let got = c.got();
            assert_eq!(moved_to(&got), [&RoomMedia::Mesh]);
            assert!(sfu_errors(&got)[0].contains("back to a mesh"), "{got:?}");
        }
        let mut cyd = join(&hub, "r", "cyd", false);
        assert!(welcome(&cyd.got()).media.is_mesh());
    }

    #[test]
    fn a_big_room_whose_sfu_dies_is_told_and_falls_back_once_small_enough() {
        let (hub, jobs) = hub(2);
        let mut members: Vec<Client> = (0..3)
            .map(|n| join(&hub, "r", &format!("m{n}"), false))
            .collect();
        let job = jobs.take().pop().expect("the third is past 2");
        let _lease = job.opened(sfu_media(4));
        for c in &mut members {
            c.got();
        }
        job.lost("keepalive failed");
        for c in &mut members {
            let got = c.got();
            assert!(moved_to(&got).is_empty());
            assert!(
                sfu_errors(&got)[0].contains("too many for a mesh"),
                "{got:?}"
            );
        }
        hub.disconnect(&members.remove(2).id, LeaveReason::Left);
        for c in &mut members {
            assert_eq!(moved_to(&c.got()), [&RoomMedia::Mesh]);
        }
    }

    #[test]
    fn the_videoroom_is_released_when_the_room_empties() {
        let (hub, jobs) = hub(4);
        let ada = join(&hub, "r", "ada", true);
        let job = jobs.take().pop().unwrap();
        let mut lease = job.opened(sfu_media(5)).unwrap();
        assert!(
            lease
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Empty)
        );
        hub.disconnect(&ada.id, LeaveReason::Left);
        assert_eq!(lease.try_recv(), Err(oneshot::error::TryRecvError::Closed));
        // A room that emptied while its VideoRoom opened takes none.
        let bob = join(&hub, "s", "bob", true);
        let job = jobs.take().pop().unwrap();
        hub.disconnect(&bob.id, LeaveReason::Left);
        assert!(job.opened(sfu_media(6)).is_none());
    }

    #[test]
    fn a_joiner_that_leaves_while_waiting_was_never_seen() {
        let (hub, jobs) = hub(1);
        let mut ada = join(&hub, "r", "ada", false);
        ada.got();
        let bob = join(&hub, "r", "bob", false);
        let job = jobs.take().pop().unwrap();
        hub.disconnect(&bob.id, LeaveReason::Left);
        let _ = job.opened(sfu_media(8));
        let got = ada.got();
        assert!(
            !got.iter().any(|m| matches!(
                m,
                ServerMessage::PeerJoined { .. } | ServerMessage::PeerLeft { .. }
            )),
            "{got:?}"
        );
    }

    #[test]
    fn the_decision() {
        let s = RoomSfu::default();
        assert_eq!(s.on_join(true, true, 1, 4), OnJoin::Open);
        assert_eq!(s.on_join(true, false, 1, 4), OnJoin::Welcome);
        assert_eq!(s.on_join(false, true, 2, 4), OnJoin::Welcome);
        assert_eq!(s.on_join(false, false, 4, 4), OnJoin::Welcome);
        assert_eq!(s.on_join(false, false, 5, 4), OnJoin::Open);
        let opening = RoomSfu {
            phase: Phase::Opening,
            ..RoomSfu::default()
        };
        assert_eq!(opening.on_join(false, false, 2, 4), OnJoin::Wait);
        let (lease, _ended) = oneshot::channel();
        let open = RoomSfu {
            phase: Phase::Open { _lease: lease },
            ..RoomSfu::default()
        };
        assert_eq!(open.on_join(false, false, 9, 4), OnJoin::Welcome);
        let lost = RoomSfu {
            phase: Phase::Lost,
            ..RoomSfu::default()
        };
        assert_eq!(lost.on_join(false, false, 6, 4), OnJoin::Open);
    }
}
