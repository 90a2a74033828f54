//! Echo cancellation and noise suppression with WebRTC's audio processing module
//! (webrtc-audio-processing 0.5, Debian's C library).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use webrtc_audio_processing::{
    Config, EchoCancellation, EchoCancellationSuppressionLevel, InitializationConfig,
    NUM_SAMPLES_PER_FRAME, NoiseSuppression, NoiseSuppressionLevel, Processor,
};

use crate::media::MediaError;

/// 10 ms at 48 kHz: the only frame size the module accepts.
const BLOCK: usize = NUM_SAMPLES_PER_FRAME as usize;

/// One echo canceller shared by the microphone (capture stream) and the speaker
/// (reverse stream): clones share the same module and the same on/off switch.
#[derive(Clone)]
pub struct AudioProcessor {
    inner: Processor,
    enabled: Arc<AtomicBool>,
    scratch: Vec<f32>,
}

impl AudioProcessor {
    /// AEC (delay-agnostic, so the speaker's buffering needs no measurement) and
    /// noise suppression, enabled.
    pub fn new() -> Result<Self, MediaError> {
        let mut inner = Processor::new(&InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            ..InitializationConfig::default()
        })
        .map_err(|e| MediaError::Device(format!("audio processing: {e}")))?;
        inner.set_config(Config {
            echo_cancellation: Some(EchoCancellation {
                suppression_level: EchoCancellationSuppressionLevel::High,
                enable_extended_filter: true,
                enable_delay_agnostic: true,
                stream_delay_ms: None,
            }),
            noise_suppression: Some(NoiseSuppression {
                suppression_level: NoiseSuppressionLevel::High,
            }),
            enable_high_pass_filter: true,
            ..Config::default()
        });
        Ok(Self {
            inner,
            enabled: Arc::new(AtomicBool::new(true)),
            scratch: Vec::with_capacity(BLOCK),
        })
    }

    /// Turns processing of the capture stream on or off for every clone, at once.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Cleans near-end (microphone) audio in place: 48 kHz mono, a multiple of 10 ms.
    pub fn process_capture(&mut self, samples: &mut [f32]) -> Result<(), MediaError> {
        if !self.is_enabled() {
            return Ok(());
        }
        check_len(samples.len())?;
        for block in samples.chunks_mut(BLOCK) {
            self.inner
                .process_capture_frame(block)
                .map_err(|e| MediaError::Device(format!("echo cancellation: {e}")))?;
        }
        Ok(())
    }

    /// Feeds far-end audio (what the speaker plays), 48 kHz mono, a multiple of 10 ms.
    /// Fed even while disabled, so the filter is converged when turned back on.
    pub fn process_render(&mut self, samples: &[f32]) -> Result<(), MediaError> {
        check_len(samples.len())?;
        for block in samples.chunks(BLOCK) {
            // The module may modify the reverse stream; what is played stays untouched.
            self.scratch.clear();
            self.scratch.extend_from_slice(block);
            self.inner
                .process_render_frame(&mut self.scratch)
                .map_err(|e| MediaError::Device(format!("echo cancellation: {e}")))?;
        }
        Ok(())
    }
}

fn check_len(n: usize) -> Result<(), MediaError> {
    if n == 0 || !n.is_multiple_of(BLOCK) {
        return Err(MediaError::Invalid(format!(
            "audio processing needs multiples of {BLOCK} samples, got {n}"
        )));
    }
    Ok(())
}

/// 10 ms at 48 kHz, for callers that feed the processor in blocks.
pub(super) const AEC_BLOCK: usize = BLOCK;
