//! A cpal microphone as an [`AudioSource`]: native rate and channels in the device
//! callback, downmix there, resample to 48 kHz and cut 20 ms frames in `next_frame`.

use crate::sync::LockExt;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

use super::aec::AudioProcessor;
use super::audio::{
    Direction, buffer_size, default_config, device_name, ends_stream, find, log_passing_error,
};
use super::resample::StreamResampler;
use crate::media::{AUDIO_FRAME_SAMPLES, AUDIO_RATE, AudioFrame, AudioSource, MediaError, now_us};

/// A device that delivers nothing for this long is treated as gone.
const STALL: Duration = Duration::from_secs(2);

#[derive(Default)]
struct RingState {
    samples: VecDeque<f32>,
    error: Option<String>,
    dropped: u64,
}

/// The bounded ring between the device callback and `next_frame`.
struct Ring {
    state: Mutex<RingState>,
    ready: Condvar,
    capacity: usize,
}

impl Ring {
    fn push(&self, mono: impl Iterator<Item = f32>) {
        let mut s = self.state.locked();
        s.samples.extend(mono);
        // A consumer that stalls loses the oldest audio, never grows the ring.
        let excess = s.samples.len().saturating_sub(self.capacity);
        if excess > 0 {
            s.samples.drain(..excess);
            s.dropped += excess as u64;
        }
        drop(s);
        self.ready.notify_one();
    }

    fn fail(&self, msg: String) {
        self.state.locked().error = Some(msg);
        self.ready.notify_one();
    }
}

pub struct MicrophoneSource {
    ring: Arc<Ring>,
    resampler: StreamResampler,
    rate: u32,
    /// 48 kHz samples not yet handed out.
    pending: Vec<f32>,
    input: Vec<f32>,
    processor: Option<AudioProcessor>,
    description: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MicrophoneSource {
    /// Opens the input device with this id or name (`None`: the default) at its native format.
    pub fn open(name: Option<&str>) -> Result<Self, MediaError> {
        let name = name.map(str::to_string);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // cpal streams are not Send everywhere: a thread owns the stream for its life.
        let thread = std::thread::Builder::new()
            .name("mic-stream".into())
            .spawn(move || {
                let opened = start(name.as_deref());
                match opened {
                    Ok((stream, ring, rate, desc)) => {
                        let _ = ready_tx.send(Ok((ring, rate, desc)));
                        let _ = stop_rx.recv();
                        drop(stream);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let (ring, rate, description) = ready_rx
            .recv()
            .map_err(|_| MediaError::Device("microphone thread died".into()))??;
        Ok(Self {
            ring,
            resampler: StreamResampler::new(rate, AUDIO_RATE)?,
            rate,
            pending: Vec::with_capacity(AUDIO_FRAME_SAMPLES * 2),
            input: Vec::new(),
            processor: None,
            description,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Runs echo cancellation / noise suppression on every frame (the speaker must
    /// feed a clone of the same processor).
    pub fn with_processor(mut self, processor: AudioProcessor) -> Self {
        self.processor = Some(processor);
        self
    }

    /// Device sample rate (before resampling to 48 kHz).
    pub fn device_rate(&self) -> u32 {
        self.rate
    }

    /// Device samples dropped because `next_frame` was not called in time.
    pub fn dropped_samples(&self) -> u64 {
        self.ring.state.lock().map(|s| s.dropped).unwrap_or(0)
    }
}

type Opened = (cpal::Stream, Arc<Ring>, u32, String);

fn start(name: Option<&str>) -> Result<Opened, MediaError> {
    let device = find(name, Direction::Input)?;
    let dev_name = device_name(&device);
    let supported = default_config(&device, Direction::Input)?;
    let rate = supported.sample_rate();
    let channels = supported.channels().max(1) as usize;
    let config = StreamConfig {
        channels: channels as u16,
        sample_rate: rate,
        buffer_size: buffer_size(&supported, 10),
    };
    let ring = Arc::new(Ring {
        state: Mutex::new(RingState::default()),
        ready: Condvar::new(),
        capacity: rate as usize, // one second
    });
    let stream = match supported.sample_format() {
        SampleFormat::F32 => build::<f32>(&device, config, channels, &ring),
        SampleFormat::I16 => build::<i16>(&device, config, channels, &ring),
        SampleFormat::I32 => build::<i32>(&device, config, channels, &ring),
        SampleFormat::U16 => build::<u16>(&device, config, channels, &ring),
        SampleFormat::U8 => build::<u8>(&device, config, channels, &ring),
        f => {
            return Err(MediaError::Device(format!(
                "microphone {dev_name}: unsupported sample format {f:?}"
            )));
        }
    }
    .map_err(|e| MediaError::Device(format!("microphone {dev_name}: {e}")))?;
    stream
        .play()
        .map_err(|e| MediaError::Device(format!("microphone {dev_name}: {e}")))?;
    let desc = format!("microphone {dev_name} ({rate} Hz, {channels} ch)");
    Ok((stream, ring, rate, desc))
}

fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    channels: usize,
    ring: &Arc<Ring>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let data_ring = ring.clone();
    let err_ring = ring.clone();
    let scale = 1.0 / channels as f32;
    let passing = AtomicU64::new(0);
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _| {
            data_ring.push(
                data.chunks(channels)
                    .map(|frame| frame.iter().map(|s| s.to_sample::<f32>()).sum::<f32>() * scale),
            );
        },
        move |e| {
            // An overrun loses a little audio; only a lost device ends the capture (and
            // a capture that stops delivering fails `next_frame` after STALL anyway).
            if ends_stream(&e) {
                err_ring.fail(e.to_string());
            } else {
                log_passing_error("microphone", &e, &passing);
            }
        },
        None,
    )
}

impl AudioSource for MicrophoneSource {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        while self.pending.len() < AUDIO_FRAME_SAMPLES {
            let deadline = Instant::now() + STALL;
            let mut s = self.ring.state.locked();
            loop {
                if let Some(e) = s.error.take() {
                    return Err(MediaError::Device(format!("{}: {e}", self.description)));
                }
                if !s.samples.is_empty() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(MediaError::Device(format!(
                        "{}: no audio for {} s",
                        self.description,
                        STALL.as_secs()
                    )));
                }
                s = self
                    .ring
                    .ready
                    .wait_timeout(s, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            self.input.clear();
            self.input.extend(s.samples.drain(..));
            drop(s);
            self.resampler.push(&self.input, &mut self.pending)?;
        }
        let mut samples: Vec<f32> = self.pending.drain(..AUDIO_FRAME_SAMPLES).collect();
        if let Some(p) = self.processor.as_mut() {
            p.process_capture(&mut samples)?;
        }
        // The newest sample taken was captured about now; this frame started earlier
        // by its own length plus whatever is still waiting behind it.
        let behind_us =
            (self.pending.len() + AUDIO_FRAME_SAMPLES) as u64 * 1_000_000 / AUDIO_RATE as u64;
        Ok(AudioFrame {
            samples,
            capture_us: now_us().saturating_sub(behind_us),
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for MicrophoneSource {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
