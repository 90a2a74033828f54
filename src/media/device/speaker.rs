//! Playback of every peer's decoded audio: a jitter buffer per peer (`media/playout.rs`),
//! mixed at 48 kHz in 10 ms blocks, fed to the echo canceller, resampled to the device
//! rate.

use crate::sync::LockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};

use super::aec::{AEC_BLOCK, AudioProcessor};
use super::audio::{
    Direction, buffer_size, default_config, device_name, ends_stream, find, log_passing_error,
};
use super::resample::StreamResampler;
use crate::media::{AUDIO_RATE, Arrival, MediaError, PLAYOUT_BLOCK, Playout, PlayoutStats, now_us};

/// 10 ms at 48 kHz: the mixing block (also the echo canceller's frame).
const BLOCK: usize = AEC_BLOCK;
const _: () = assert!(BLOCK == PLAYOUT_BLOCK);
/// A peer silent for this long is forgotten.
const FORGET_US: u64 = 10_000_000;

struct Mixer {
    peers: HashMap<String, Playout>,
    processor: Option<AudioProcessor>,
    resampler: StreamResampler,
    /// Mixed audio at the device rate, not yet played.
    out: VecDeque<f32>,
    /// Device-rate frames handed to the device so far.
    played: u64,
    block: Vec<f32>,
    resampled: Vec<f32>,
    /// The most the device took in one callback, in 48 kHz samples, and its rate.
    burst: usize,
    rate: u32,
}

impl Mixer {
    fn mix_block(&mut self) {
        self.block.clear();
        self.block.resize(BLOCK, 0.0);
        for p in self.peers.values_mut() {
            p.mix_into(&mut self.block);
        }
        for s in &mut self.block {
            *s = s.clamp(-1.0, 1.0);
        }
        if let Some(p) = self.processor.as_mut()
            && let Err(e) = p.process_render(&self.block)
        {
            tracing::warn!("echo reference: {e}");
        }
        self.resampled.clear();
        if let Err(e) = self.resampler.push(&self.block, &mut self.resampled) {
            tracing::warn!("speaker resampling: {e}");
        }
        self.out.extend(&self.resampled);
    }

    /// Device-rate mono samples for the callback.
    fn fill(&mut self, frames: usize, mut put: impl FnMut(f32)) {
        // What the device takes at once must stay buffered on top of the jitter's margin.
        let burst = frames * AUDIO_RATE as usize / self.rate.max(1) as usize;
        if burst > self.burst {
            self.burst = burst;
            for p in self.peers.values_mut() {
                p.set_reserve(burst);
            }
        }
        while self.out.len() < frames {
            self.mix_block();
        }
        for s in self.out.drain(..frames) {
            put(s);
        }
        self.played += frames as u64;
    }
}

/// The local speaker. `push` is cheap and thread-safe (it only appends to a queue).
pub struct Speaker {
    mixer: Arc<Mutex<Mixer>>,
    error: Arc<Mutex<Option<String>>>,
    description: String,
    rate: u32,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Speaker {
    /// Opens the output device with this id or name (`None`: the default) at its native format.
    ///
    /// A PulseAudio null sink that no client asked for low latency has rendered up to
    /// 2 s ahead and reads a new stream only once that time has passed: the first
    /// ~2 s pushed are then dropped by the jitter buffer, with no error (tests/support/pulse.rs).
    pub fn open(name: Option<&str>) -> Result<Self, MediaError> {
        let name = name.map(str::to_string);
        let error = Arc::new(Mutex::new(None));
        let err2 = error.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // cpal streams are not Send everywhere: a thread owns the stream for its life.
        let thread = std::thread::Builder::new()
            .name("speaker-stream".into())
            .spawn(move || match start(name.as_deref(), err2) {
                Ok((stream, mixer, rate, desc)) => {
                    let _ = ready_tx.send(Ok((mixer, rate, desc)));
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        let (mixer, rate, description) = ready_rx
            .recv()
            .map_err(|_| MediaError::Device("speaker thread died".into()))??;
        Ok(Self {
            mixer,
            error,
            description,
            rate,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Decoded 48 kHz mono audio of one peer, as it arrives.
    pub fn push(&self, peer: &str, pcm: &[f32], arrival: Arrival) {
        let mut m = self.mixer.locked();
        let now = now_us();
        m.peers
            .retain(|_, p| !p.is_empty() || now.saturating_sub(p.last_arrival_us()) < FORGET_US);
        let burst = m.burst;
        m.peers
            .entry(peer.to_string())
            .or_insert_with(|| {
                let mut p = Playout::default();
                p.set_reserve(burst);
                p
            })
            .receive(pcm, arrival);
    }

    /// Stops playing a peer at once (it left the call).
    pub fn remove_peer(&self, peer: &str) {
        self.mixer.locked().peers.remove(peer);
    }

    /// Played level of each peer (linear RMS, 0..1, smoothed), e.g. for a speaking ring.
    pub fn levels(&self) -> Vec<(String, f32)> {
        let m = self.mixer.locked();
        let mut v: Vec<_> = m
            .peers
            .iter()
            .map(|(k, p)| (k.clone(), p.level()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn level(&self, peer: &str) -> Option<f32> {
        let m = self.mixer.locked();
        m.peers.get(peer).map(|p| p.level())
    }

    /// What one peer's jitter buffer did so far.
    pub fn buffer_stats(&self, peer: &str) -> Option<PlayoutStats> {
        let m = self.mixer.locked();
        m.peers.get(peer).map(Playout::stats)
    }

    /// Feeds what is played to this echo canceller (the microphone's, cloned).
    pub fn set_echo_reference(&self, processor: Option<AudioProcessor>) {
        self.mixer.locked().processor = processor;
    }

    /// The device error that stopped playback, if any.
    pub fn error(&self) -> Option<MediaError> {
        let e = self.error.locked();
        e.as_ref()
            .map(|e| MediaError::Device(format!("{}: {e}", self.description)))
    }

    /// Frames the device has taken so far (at [`Self::device_rate`]).
    pub fn played_frames(&self) -> u64 {
        self.mixer.locked().played
    }

    pub fn device_rate(&self) -> u32 {
        self.rate
    }

    pub fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Opened = (cpal::Stream, Arc<Mutex<Mixer>>, u32, String);

fn start(name: Option<&str>, error: Arc<Mutex<Option<String>>>) -> Result<Opened, MediaError> {
    let device = find(name, Direction::Output)?;
    let dev_name = device_name(&device);
    let supported = default_config(&device, Direction::Output)?;
    let rate = supported.sample_rate();
    let channels = supported.channels().max(1) as usize;
    let config = StreamConfig {
        channels: channels as u16,
        sample_rate: rate,
        buffer_size: buffer_size(&supported, 20),
    };
    let mixer = Arc::new(Mutex::new(Mixer {
        peers: HashMap::new(),
        processor: None,
        resampler: StreamResampler::new(AUDIO_RATE, rate)?,
        out: VecDeque::new(),
        played: 0,
        block: Vec::with_capacity(BLOCK),
        resampled: Vec::new(),
        burst: 0,
        rate,
    }));
    let stream = match supported.sample_format() {
        SampleFormat::F32 => build::<f32>(&device, config, channels, &mixer, error),
        SampleFormat::I16 => build::<i16>(&device, config, channels, &mixer, error),
        SampleFormat::I32 => build::<i32>(&device, config, channels, &mixer, error),
        SampleFormat::U16 => build::<u16>(&device, config, channels, &mixer, error),
        SampleFormat::U8 => build::<u8>(&device, config, channels, &mixer, error),
        f => {
            return Err(MediaError::Device(format!(
                "speaker {dev_name}: unsupported sample format {f:?}"
            )));
        }
    }
    .map_err(|e| MediaError::Device(format!("speaker {dev_name}: {e}")))?;
    stream
        .play()
        .map_err(|e| MediaError::Device(format!("speaker {dev_name}: {e}")))?;
    let desc = format!("speaker {dev_name} ({rate} Hz, {channels} ch)");
    Ok((stream, mixer, rate, desc))
}

fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    channels: usize,
    mixer: &Arc<Mutex<Mixer>>,
    error: Arc<Mutex<Option<String>>>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let mixer = mixer.clone();
    let passing = AtomicU64::new(0);
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _| {
            let mut m = mixer.locked();
            let n = data.len() / channels;
            let mut frames = data.chunks_mut(channels);
            m.fill(n, |s| {
                if let Some(frame) = frames.next() {
                    frame.fill(s.to_sample::<T>());
                }
            });
        },
        move |e| {
            // An underrun is heard as a click; only a lost device ends playback.
            if ends_stream(&e) {
                *error.locked() = Some(e.to_string());
            } else {
                log_passing_error("speaker", &e, &passing);
            }
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_mixed_and_levels_kept_apart() {
        let mut m = Mixer {
            peers: HashMap::new(),
            processor: None,
            resampler: StreamResampler::new(AUDIO_RATE, 24_000).unwrap(),
            out: VecDeque::new(),
            played: 0,
            block: Vec::new(),
            resampled: Vec::new(),
            burst: 0,
            rate: 24_000,
        };
        m.peers
            .entry("a".into())
            .or_default()
            .push(&[0.25; 2880], 0);
        m.peers.entry("b".into()).or_default().push(&[0.5; 2880], 0);
        m.peers.entry("c".into()).or_default();
        let mut got = Vec::new();
        // 40 ms at the 24 kHz device rate.
        m.fill(960, |s| got.push(s));
        assert_eq!(got.len(), 960);
        // Past the resampler's start-up, the mix is the sum of both peers.
        assert!(
            got[480..].iter().all(|s| (s - 0.75).abs() < 0.02),
            "{:?}",
            &got[480..490]
        );
        assert!((m.peers["a"].level() - 0.25).abs() < 0.01);
        assert!((m.peers["b"].level() - 0.5).abs() < 0.01);
        assert_eq!(m.peers["c"].level(), 0.0);
    }
}
