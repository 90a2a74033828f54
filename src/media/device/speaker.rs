//! Playback of every peer's decoded audio: a small jitter buffer per peer, mixed at
//! 48 kHz in 10 ms blocks, fed to the echo canceller, resampled to the device rate.

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
use crate::media::{AUDIO_RATE, MediaError, now_us};

/// 10 ms at 48 kHz: the mixing block (also the echo canceller's frame).
const BLOCK: usize = AEC_BLOCK;
/// Playback starts (and restarts after an underrun) with 60 ms buffered.
const TARGET: usize = AUDIO_RATE as usize * 60 / 1000;
/// Above 200 ms the oldest audio is dropped back to the target: late is worse than lost.
const MAX: usize = AUDIO_RATE as usize * 200 / 1000;
/// Buffered audio that never drained below TARGET + SLACK over a whole WINDOW is latency
/// left over from a burst; it is cut back to TARGET.
const SLACK: usize = AUDIO_RATE as usize * 20 / 1000;
const WINDOW_BLOCKS: u32 = 100;
/// Cuts are crossfaded over 2 ms so they don't click.
const CROSSFADE: usize = AUDIO_RATE as usize * 2 / 1000;
/// A peer silent for this long is forgotten.
const FORGET_US: u64 = 10_000_000;

#[derive(Default)]
struct PeerBuffer {
    queue: VecDeque<f32>,
    playing: bool,
    level: f32,
    last_arrival_us: u64,
    underruns: u64,
    dropped: u64,
    /// Fewest samples left after a block in the current window, and the window's length.
    low_water: Option<usize>,
    window: u32,
}

impl PeerBuffer {
    fn push(&mut self, pcm: &[f32], arrival_us: u64) {
        self.queue.extend(pcm);
        self.last_arrival_us = arrival_us;
        if self.queue.len() > MAX {
            self.cut(self.queue.len() - TARGET);
        }
    }

    /// Drops the oldest `n` samples, fading what was there into what follows.
    fn cut(&mut self, n: usize) {
        let n = n.min(self.queue.len());
        let fade = CROSSFADE.min(self.queue.len() - n);
        // On the stack: this runs inside the device callback.
        let mut head = [0.0f32; CROSSFADE];
        for (h, s) in head.iter_mut().zip(self.queue.iter().take(fade)) {
            *h = *s;
        }
        self.queue.drain(..n);
        for (i, old) in head[..fade].iter().enumerate() {
            let t = (i + 1) as f32 / (fade + 1) as f32;
            self.queue[i] = old * (1.0 - t) + self.queue[i] * t;
        }
        self.dropped += n as u64;
        self.restart_window();
    }

    fn restart_window(&mut self) {
        self.low_water = None;
        self.window = 0;
    }

    /// After each played block: trims latency a burst left behind.
    fn track_depth(&mut self) {
        let depth = self.queue.len();
        self.low_water = Some(self.low_water.map_or(depth, |l| l.min(depth)));
        self.window += 1;
        if self.window >= WINDOW_BLOCKS {
            let low = self.low_water.unwrap_or(0);
            self.restart_window();
            if low > TARGET + SLACK {
                self.cut(low - TARGET);
            }
        }
    }

    /// Adds one block of this peer into `mix`; silence while (re)buffering.
    fn mix_into(&mut self, mix: &mut [f32]) {
        if !self.playing && self.queue.len() >= TARGET {
            self.playing = true;
        }
        let mut energy = 0.0;
        if self.playing {
            let n = self.queue.len().min(mix.len());
            for (m, s) in mix.iter_mut().zip(self.queue.drain(..n)) {
                *m += s;
                energy += s * s;
            }
            if n < mix.len() {
                self.playing = false;
                self.underruns += 1;
                self.restart_window();
            } else {
                self.track_depth();
            }
        }
        let rms = (energy / mix.len() as f32).sqrt();
        // Fast attack, ~300 ms release: steady enough for a speaking ring.
        self.level = if rms > self.level {
            rms
        } else {
            self.level * 0.97 + rms * 0.03
        };
    }
}

struct Mixer {
    peers: HashMap<String, PeerBuffer>,
    processor: Option<AudioProcessor>,
    resampler: StreamResampler,
    /// Mixed audio at the device rate, not yet played.
    out: VecDeque<f32>,
    /// Device-rate frames handed to the device so far.
    played: u64,
    block: Vec<f32>,
    resampled: Vec<f32>,
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
    pub fn push(&self, peer: &str, pcm: &[f32], arrival_us: u64) {
        let mut m = self.mixer.locked();
        let now = now_us();
        m.peers.retain(|_, p| {
            !p.queue.is_empty() || now.saturating_sub(p.last_arrival_us) < FORGET_US
        });
        m.peers
            .entry(peer.to_string())
            .or_default()
            .push(pcm, arrival_us);
    }

    /// Stops playing a peer at once (it left the call).
    pub fn remove_peer(&self, peer: &str) {
        self.mixer.locked().peers.remove(peer);
    }

    /// Played level of each peer (linear RMS, 0..1, smoothed), e.g. for a speaking ring.
    pub fn levels(&self) -> Vec<(String, f32)> {
        let m = self.mixer.locked();
        let mut v: Vec<_> = m.peers.iter().map(|(k, p)| (k.clone(), p.level)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn level(&self, peer: &str) -> Option<f32> {
        let m = self.mixer.locked();
        m.peers.get(peer).map(|p| p.level)
    }

    /// (underruns, samples dropped as too late) of one peer's jitter buffer.
    pub fn buffer_stats(&self, peer: &str) -> Option<(u64, u64)> {
        let m = self.mixer.locked();
        m.peers.get(peer).map(|p| (p.underruns, p.dropped))
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
    fn jitter_buffer_waits_for_60_ms_then_plays_and_rebuffers_on_underrun() {
        let mut p = PeerBuffer::default();
        let mut mix = vec![0.0; BLOCK];
        p.push(&vec![0.5; TARGET - 1], 0);
        p.mix_into(&mut mix);
        assert!(
            mix.iter().all(|s| *s == 0.0),
            "must not start below the target"
        );
        p.push(&[0.5], 0);
        p.mix_into(&mut mix);
        assert!(mix.iter().all(|s| *s == 0.5));
        assert!(p.level > 0.4);
        // Drain all but half a block: the next block underruns and playback pauses.
        while p.queue.len() >= BLOCK {
            p.mix_into(&mut vec![0.0; BLOCK]);
        }
        p.push(&vec![0.5; BLOCK / 2], 0);
        p.mix_into(&mut vec![0.0; BLOCK]);
        assert!(!p.playing);
        assert_eq!(p.underruns, 1);
    }

    #[test]
    fn latency_left_by_a_burst_is_trimmed_back_to_the_target_without_a_gap() {
        let mut p = PeerBuffer::default();
        // A burst: 150 ms at once (under MAX, so kept), then real time, 10 ms per block.
        let ramp = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| i as f32 * 1e-6)
                .collect::<Vec<_>>()
        };
        let burst = AUDIO_RATE as usize * 150 / 1000;
        p.push(&ramp(0, burst), 0);
        let mut fed = burst;
        let mut played = Vec::new();
        for _ in 0..3 * WINDOW_BLOCKS {
            p.push(&ramp(fed, BLOCK), 0);
            fed += BLOCK;
            let mut mix = vec![0.0; BLOCK];
            p.mix_into(&mut mix);
            played.extend(mix);
        }
        assert_eq!(p.underruns, 0, "no gap while trimming");
        assert!(
            p.queue.len() <= TARGET + SLACK,
            "{} ms still buffered",
            p.queue.len() * 1000 / AUDIO_RATE as usize
        );
        assert_eq!(p.dropped as usize + p.queue.len() + played.len(), fed);
        // The ramp runs on, with one forward jump where the excess was cut (crossfaded).
        let jumps = played.windows(2).filter(|w| w[1] - w[0] > 2e-6).count();
        assert!((1..=CROSSFADE + 1).contains(&jumps), "{jumps} jumps");
        assert!(played.windows(2).all(|w| w[1] >= w[0]), "never backwards");
    }

    #[test]
    fn steady_audio_at_the_target_is_never_trimmed() {
        let mut p = PeerBuffer::default();
        p.push(&vec![0.1; TARGET], 0);
        for _ in 0..3 * WINDOW_BLOCKS {
            p.push(&vec![0.1; BLOCK], 0);
            p.mix_into(&mut vec![0.0; BLOCK]);
        }
        assert_eq!((p.dropped, p.underruns), (0, 0));
    }

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
        };
        m.peers
            .entry("a".into())
            .or_default()
            .push(&vec![0.25; TARGET], 0);
        m.peers
            .entry("b".into())
            .or_default()
            .push(&vec![0.5; TARGET], 0);
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
        assert!((m.peers["a"].level - 0.25).abs() < 0.01);
        assert!((m.peers["b"].level - 0.5).abs() < 0.01);
        assert_eq!(m.peers["c"].level, 0.0);
    }

    #[test]
    fn jitter_buffer_drops_back_to_target_when_too_full() {
        let mut p = PeerBuffer::default();
        p.push(&vec![0.1; MAX + 10], 0);
        assert_eq!(p.queue.len(), TARGET);
        assert_eq!(p.dropped, (MAX + 10 - TARGET) as u64);
    }
}
