//! Recording the call (`record/`): the engine starts and stops the recorder, tells it who
//! joins and leaves, and says in our media state that we record.

use std::path::PathBuf;

use super::*;
use crate::record::{RecordSettings, RecordSummary, RecordTap, Recorder};

/// The tap every sink call passes through, and the recorder it feeds while one runs.
pub(super) struct Recording {
    pub(super) tap: Arc<RecordTap>,
    active: Option<Recorder>,
}

impl Recording {
    pub(super) fn new(tap: Arc<RecordTap>) -> Self {
        Self { tap, active: None }
    }

    /// Keeps the recorder's tiles and mix in step with the room.
    pub(super) fn observe(&self, e: &Event) {
        let Some(r) = &self.active else { return };
        let feeder = r.feeder();
        match e {
            Event::PeerJoined { id, state, .. } => {
                feeder.joined(id);
                feeder.camera(id, state.has_camera && !state.video_muted);
            }
            Event::PeerLeft { id, .. } => feeder.left(id),
            Event::TrackRemoved { peer, track } => feeder.track_removed(peer, *track),
            Event::PeerMediaState { id, state } => {
                feeder.camera(id, state.has_camera && !state.video_muted)
            }
            Event::LocalMediaState(state) => {
                feeder.camera(crate::record::SELF, state.has_camera && !state.video_muted)
            }
            _ => {}
        }
    }
}

impl Engine {
    pub(super) fn start_recording(&mut self, path: PathBuf, settings: RecordSettings) {
        if self.local.recording.active.is_some() {
            self.emit(Event::Error("already recording".into()));
            return;
        }
        let mut members: Vec<(&String, &RemotePeer)> = self.peers.iter().collect();
        members.sort_by_key(|(_, p)| p.created);
        let members: Vec<String> = members.into_iter().map(|(id, _)| id.clone()).collect();
        match Recorder::start(&path, settings, &members) {
            Ok(r) => {
                tracing::info!(path = %path.display(), "recording");
                for (id, p) in &self.peers {
                    r.feeder()
                        .camera(id, p.state.has_camera && !p.state.video_muted);
                }
                self.local.recording.tap.attach(r.feeder());
                self.local.recording.active = Some(r);
                self.local.state.recording = true;
                self.publish_state();
                self.emit(Event::RecordingStarted {
                    path: path.display().to_string(),
                });
            }
            Err(e) => self.emit(Event::Error(format!("recording: {e}"))),
        }
    }

    /// A recording that failed on its own (the disk filled up) is reported and ends.
    pub(super) async fn watch_recording(&mut self) {
        if self
            .local
            .recording
            .active
            .as_ref()
            .is_some_and(Recorder::has_stopped)
        {
            self.stop_recording().await;
        }
    }

    /// Stops the recording, if one runs, and waits until its file is complete.
    pub(super) async fn stop_recording(&mut self) {
        let Some(r) = self.local.recording.active.take() else {
            return;
        };
        self.local.recording.tap.detach();
        let path = r.path().display().to_string();
        let done = tokio::task::spawn_blocking(move || r.finish()).await;
        let (summary, error) = match done {
            Ok(Ok(s)) => (s, None),
            Ok(Err(e)) => (RecordSummary::default(), Some(e.to_string())),
            Err(e) => (RecordSummary::default(), Some(e.to_string())),
        };
        self.local.state.recording = false;
        self.publish_state();
        self.emit(Event::RecordingStopped {
            summary: RecordSummary { path, ..summary },
            error,
        });
    }
}
