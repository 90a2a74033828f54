//! The test call's echo peer (`confab serve --echo`, and the desktop's built-in server):
//! a call engine inside the server process that joins the caller's private room and
//! sends back the pictures and sound it decodes, so the caller sees and hears
//! themselves through the real network path, both ways, before a real call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{
    self, AudioInfo, CallConfig, Command, Event, FrameInfo, LocalMedia, MediaSink, TrackRole,
};
use crate::media::{MirrorFeed, VideoFrame, mirror};
use crate::signaling::{EchoConfig, EchoJob, EchoService};

/// How the echo appears in the roster.
pub const ECHO_NAME: &str = "Echo test";
/// Test calls at once when nothing else is said: each decodes and encodes a stream.
pub const DEFAULT_SESSIONS: usize = 4;
/// The caller has this long to come into the room before the echo gives up.
const CALLER_WAIT: Duration = Duration::from_secs(30);
/// A test call is a check, not a call: it ends after this.
pub const MAX_TEST_CALL: Duration = Duration::from_secs(10 * 60);
/// How long a leaving engine may take to close its connections.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// Runs echo peers on the runtime it was made on.
pub struct EchoPeers {
    runtime: tokio::runtime::Handle,
}

impl EchoPeers {
    /// The server's echo settings; call it inside the runtime the server runs on.
    pub fn config(max_sessions: usize) -> EchoConfig {
        EchoConfig {
            service: Arc::new(EchoPeers {
                runtime: tokio::runtime::Handle::current(),
            }),
            max_sessions,
        }
    }
}

impl EchoService for EchoPeers {
    fn start(&self, job: EchoJob) {
        self.runtime.spawn(run(job));
    }
}

/// Who is in the test call with the echo, by id: the engine reports members present at
/// the join both in `Joined` and as `PeerJoined`.
#[derive(Default)]
struct Callers {
    present: std::collections::HashSet<String>,
    came: bool,
}

impl Callers {
    fn came(&self) -> bool {
        self.came
    }

    /// Takes an engine event; true once everyone who came has left.
    fn all_gone_after(&mut self, ev: &Event) -> bool {
        match ev {
            Event::Joined { present, .. } => {
                self.came |= !present.is_empty();
                self.present.extend(present.iter().cloned());
            }
            Event::PeerJoined { id, .. } => {
                self.came = true;
                self.present.insert(id.clone());
            }
            Event::PeerLeft { id, .. } => {
                self.present.remove(id);
            }
            _ => {}
        }
        self.came && self.present.is_empty()
    }
}

/// Hands what the echo decodes to its own sources.
struct MirrorSink(MirrorFeed);

impl MediaSink for MirrorSink {
    fn video(&self, _: &str, track: TrackRole, frame: &VideoFrame, _: &FrameInfo) {
        // The camera comes back; a shared screen is not the caller's picture.
        if track == TrackRole::Camera {
            self.0.video(frame);
        }
    }

    fn audio(&self, _: &str, track: TrackRole, pcm: &[f32], _: &AudioInfo) {
        if track == TrackRole::Microphone {
            self.0.audio(pcm);
        }
    }
}

async fn run(job: EchoJob) {
    let (feed, video, audio) = mirror();
    let mut config = CallConfig::new(&job.server_url, &job.room, ECHO_NAME);
    config.password = Some(job.password.clone());
    config.bind_addrs = vec![SocketAddr::new(job.bind, 0).to_string()];
    let media = LocalMedia {
        camera: Some(Box::new(video)),
        microphone: Some(Box::new(audio)),
    };
    let (handle, mut events) = match call::start(config, media, Arc::new(MirrorSink(feed))).await {
        Ok(started) => started,
        Err(e) => {
            tracing::warn!(room = %job.room, "the echo peer could not join: {e}");
            return;
        }
    };
    tracing::info!(room = %job.room, "test call: echo peer waiting");
    let caller_wait = tokio::time::sleep(CALLER_WAIT);
    let lifetime = tokio::time::sleep(MAX_TEST_CALL);
    tokio::pin!(caller_wait, lifetime);
    let mut callers = Callers::default();
    loop {
        tokio::select! {
            _ = &mut caller_wait, if !callers.came() => {
                tracing::info!(room = %job.room, "test call: nobody came");
                break;
            }
            _ = &mut lifetime => {
                handle.send(Command::Chat(format!(
                    "A test call ends after {} minutes.",
                    MAX_TEST_CALL.as_secs() / 60
                )));
                break;
            }
            ev = events.recv() => match ev {
                None => break,
                // Chat comes back too: the data channel is part of the path.
                Some(Event::Chat { text, .. }) => {
                    handle.send(Command::Chat(text));
                }
                Some(ev) => {
                    if callers.all_gone_after(&ev) {
                        break;
                    }
                }
            }
        }
    }
    handle.send(Command::Leave);
    let _ = tokio::time::timeout(LEAVE_WAIT, async {
        while let Some(ev) = events.recv().await {
            if matches!(ev, Event::Left(_)) {
                break;
            }
        }
    })
    .await;
    tracing::info!(room = %job.room, "test call: echo peer left");
    // Dropping the job frees its place.
    drop(job);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::protocol::{LeaveReason, MediaState};

    fn joined(present: &[&str]) -> Event {
        Event::Joined {
            id: "echo".into(),
            room: "echo:1".into(),
            name: ECHO_NAME.into(),
            present: present.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn came(id: &str) -> Event {
        Event::PeerJoined {
            id: id.into(),
            name: id.into(),
            state: MediaState::default(),
        }
    }

    fn left(id: &str) -> Event {
        Event::PeerLeft {
            id: id.into(),
            reason: LeaveReason::Left,
        }
    }

    #[test]
    fn the_echo_leaves_when_its_caller_does_whoever_joined_first() {
        // The echo first, the caller after.
        let mut c = Callers::default();
        assert!(!c.all_gone_after(&joined(&[])));
        assert!(!c.came());
        assert!(!c.all_gone_after(&came("ada")));
        assert!(c.all_gone_after(&left("ada")));

        // The caller first: named at the join and again as joined.
        let mut c = Callers::default();
        assert!(!c.all_gone_after(&joined(&["ada"])));
        assert!(!c.all_gone_after(&came("ada")));
        assert!(c.came());
        assert!(c.all_gone_after(&left("ada")));
    }
}
