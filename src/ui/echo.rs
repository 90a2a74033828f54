//! The call's echo path: one canceller (webrtc-audio-processing) that the speaker's mix
//! feeds as the reference and the microphone runs through.

use crate::media::AudioSource;
use crate::media::device::{AudioProcessor, Speaker};

use super::choices::AudioChoice;

/// Absent before a call, or when the processor could not start (then audio goes
/// unprocessed and the log says why).
#[derive(Clone, Default)]
pub(super) struct EchoPath(Option<AudioProcessor>);

impl EchoPath {
    pub(super) fn start(enabled: bool) -> Self {
        let processor = AudioProcessor::new()
            .inspect_err(|e| tracing::warn!("no echo cancellation: {e}"))
            .ok();
        if let Some(p) = &processor {
            p.set_enabled(enabled);
        }
        Self(processor)
    }

    /// Echo cancellation and noise suppression on or off, at once.
    pub(super) fn set_enabled(&self, on: bool) {
        if let Some(p) = &self.0 {
            p.set_enabled(on);
        }
    }

    /// What this speaker plays becomes the reference the canceller removes.
    pub(super) fn feed_from(&self, speaker: &Speaker) {
        speaker.set_echo_reference(self.0.clone());
    }

    /// Opens a microphone choice; a real microphone runs through the canceller.
    pub(super) fn open_microphone(
        &self,
        choice: &AudioChoice,
    ) -> Result<Option<Box<dyn AudioSource>>, String> {
        choice.open(self.0.as_ref())
    }
}
