//! cpal device listing and lookup shared by the microphone and the speaker.

use std::sync::atomic::{AtomicU64, Ordering};

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{BufferSize, Device, ErrorKind, SupportedBufferSize, SupportedStreamConfig};

use crate::media::MediaError;

/// A microphone or speaker as cpal reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDeviceInfo {
    /// The backend's id (ALSA: `pulse`, `default`, `hw:CARD=..`): what `open` takes.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    pub default_rate: u32,
    pub channels: u16,
    pub is_default: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Input,
    Output,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Input => "microphone",
            Direction::Output => "speaker",
        }
    }
}

pub(super) fn device_name(d: &Device) -> String {
    d.description()
        .map(|x| x.name().to_string())
        .unwrap_or_else(|_| d.to_string())
}

/// The backend's id, falling back to the name when the backend has none.
pub(super) fn device_id(d: &Device) -> String {
    d.id()
        .map(|i| i.id().to_string())
        .unwrap_or_else(|_| device_name(d))
}

pub(super) fn default_config(
    d: &Device,
    dir: Direction,
) -> Result<SupportedStreamConfig, MediaError> {
    let c = match dir {
        Direction::Input => d.default_input_config(),
        Direction::Output => d.default_output_config(),
    };
    c.map_err(|e| {
        MediaError::Device(format!(
            "{} {}: no default format: {e}",
            dir.label(),
            device_name(d)
        ))
    })
}

/// Whether an error a cpal stream reports has ended it. cpal's ALSA worker carries on
/// after anything but a vanished device, and some errors pass: the ALSA `pulse` plugin
/// (alsa-plugins up to at least 1.2.12) fails `snd_pcm_avail_delay` with EIO, not
/// "no data yet", while the server has not sent timing information, typically just
/// after the stream starts (alsa-project/alsa-plugins#65). Taking that for the end of
/// the stream lost the microphone or the speaker for the whole call.
pub(super) fn ends_stream(e: &cpal::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::DeviceNotAvailable
            | ErrorKind::StreamInvalidated
            | ErrorKind::HostUnavailable
            | ErrorKind::PermissionDenied
    )
}

/// Logs an error the stream survives: underruns quietly, others as warnings, fewer
/// as they repeat (1st, 2nd, 4th, 8th...).
pub(super) fn log_passing_error(what: &str, e: &cpal::Error, count: &AtomicU64) {
    if e.kind() == ErrorKind::Xrun {
        tracing::debug!("{what} underrun: {e}");
        return;
    }
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!("{what}: {e} (carrying on; {n} such errors so far)");
    }
}

/// A buffer of about `ms` milliseconds if the device allows it: backend defaults can
/// be hundreds of milliseconds, which would be heard as latency.
pub(super) fn buffer_size(c: &SupportedStreamConfig, ms: u32) -> BufferSize {
    let want = c.sample_rate() * ms / 1000;
    match c.buffer_size() {
        SupportedBufferSize::Range { min, max } => BufferSize::Fixed(want.clamp(*min, *max)),
        SupportedBufferSize::Unknown => BufferSize::Default,
    }
}

fn list(dir: Direction) -> Result<Vec<AudioDeviceInfo>, MediaError> {
    let host = cpal::default_host();
    let default = match dir {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    }
    .map(|d| device_id(&d));
    let devices = match dir {
        Direction::Input => host.input_devices().map(|i| i.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|i| i.collect::<Vec<_>>()),
    }
    .map_err(|e| MediaError::Device(format!("listing {}s: {e}", dir.label())))?;
    let mut out = Vec::new();
    for d in devices {
        let (id, name) = (device_id(&d), device_name(&d));
        match default_config(&d, dir) {
            Ok(c) => out.push(AudioDeviceInfo {
                is_default: default.as_deref() == Some(id.as_str()),
                id,
                name,
                default_rate: c.sample_rate(),
                channels: c.channels(),
            }),
            Err(e) => tracing::debug!("skipping {}: {e}", name),
        }
    }
    Ok(out)
}

/// Capture devices (an empty list on a machine without sound).
pub fn list_microphones() -> Result<Vec<AudioDeviceInfo>, MediaError> {
    list(Direction::Input)
}

/// Playback devices (an empty list on a machine without sound).
pub fn list_speakers() -> Result<Vec<AudioDeviceInfo>, MediaError> {
    list(Direction::Output)
}

/// The device with this id (or name), or the default one for `None`.
pub(super) fn find(name: Option<&str>, dir: Direction) -> Result<Device, MediaError> {
    let host = cpal::default_host();
    let Some(name) = name else {
        let d = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return d.ok_or_else(|| MediaError::Device(format!("no default {}", dir.label())));
    };
    let devices = match dir {
        Direction::Input => host.input_devices().map(|i| i.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|i| i.collect::<Vec<_>>()),
    }
    .map_err(|e| MediaError::Device(format!("listing {}s: {e}", dir.label())))?;
    devices
        .into_iter()
        .find(|d| device_id(d) == name || device_name(d) == name)
        .ok_or_else(|| MediaError::Device(format!("no {} named {name:?}", dir.label())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_device_or_stream_ends_it() {
        let err = |k| cpal::Error::with_message(k, "test");
        for k in [ErrorKind::DeviceNotAvailable, ErrorKind::StreamInvalidated] {
            assert!(ends_stream(&err(k)), "{k:?}");
        }
        // The pulse plugin's EIO before timing data arrives maps to BackendError.
        for k in [
            ErrorKind::BackendError,
            ErrorKind::Xrun,
            ErrorKind::DeviceBusy,
        ] {
            assert!(!ends_stream(&err(k)), "{k:?}");
        }
        let count = AtomicU64::new(0);
        for _ in 0..5 {
            log_passing_error("speaker", &err(ErrorKind::BackendError), &count);
        }
        log_passing_error("speaker", &err(ErrorKind::Xrun), &count);
        assert_eq!(
            count.load(Ordering::Relaxed),
            5,
            "underruns are not counted"
        );
    }
}
