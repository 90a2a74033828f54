//! Playout of one peer's decoded audio: the jitter buffer between arrival and the speaker
//! (or the headless analyser's clock), played in 10 ms blocks. NetEQ's job, smaller:
//!
//! - it learns how much the arrivals jitter and (re)starts with just that much buffered;
//! - it gives back delay a burst left, and builds some when the buffer runs low, by
//!   time-stretching: one pitch period removed or repeated, crossfaded, so a voice keeps
//!   its pitch, instead of cutting or pausing;
//! - on an underrun it continues the last pitch period, fading, until audio is back;
//! - a sender gone quiet (Opus DTX) is let run dry without counting it as an underrun,
//!   and the time it left out keeps the jitter's timeline whole; meanwhile its
//!   background noise goes on (`comfort.rs`).
//!
//! Pure: the caller's clock decides when a block is played. Period-wise stretching is
//! hand-written because streaming WSOLA crates delay every sample by a frame even when
//! nothing is stretched.

use std::collections::VecDeque;

use serde::Serialize;

use super::AUDIO_RATE;
use super::comfort::ComfortNoise;

const RATE: usize = AUDIO_RATE as usize;
/// One played block: 10 ms.
pub const BLOCK: usize = RATE / 100;

const fn ms(n: usize) -> usize {
    RATE * n / 1000
}

/// The fewest samples we want left over a window of playing: the jitter's reserve.
const MARGIN: usize = ms(15);
/// A window's low water above MARGIN + SLACK is delay to give back.
const SLACK: usize = ms(10);
/// Blocks per low-water window (half a second).
const WINDOW: u32 = 50;
/// (Re)start depth: the learnt jitter plus MARGIN, within these.
const MIN_START: usize = ms(30);
const MAX_START: usize = ms(200);
/// Beyond this the oldest audio is cut (a burst after a stall): late is worse than lost.
const MAX: usize = ms(300);
/// Pitch periods searched: 2.5 ms (400 Hz) to 10 ms (100 Hz).
const MIN_PERIOD: usize = RATE / 400;
const MAX_PERIOD: usize = BLOCK;
/// A period is removed or repeated only where the waveform repeats this well (or is quiet).
const MIN_SIMILARITY: f32 = 0.6;
const QUIET: f32 = 1e-4;
/// Resuming after concealment crossfades over 2 ms so it does not click.
const CROSSFADE: usize = ms(2);
/// Concealment fades to nothing over this long.
const EXPAND_FADE: usize = ms(80);
/// Arrivals the jitter is learnt from (3 s of 20 ms packets); a longer pause starts anew.
const JITTER_PACKETS: usize = 150;
const PAUSE_US: u64 = 250_000;
/// How much of the history is kept for concealment.
const HISTORY: usize = 2 * MAX_PERIOD;

/// What the playout did, in samples (48 kHz), as WebRTC's inbound audio stats count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PlayoutStats {
    /// Blocks played (each 10 ms), and the sum of what was buffered at each, for the mean
    /// jitter-buffer delay.
    pub blocks: u64,
    pub buffered_sum: u64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
    /// Played from the last pitch period after an underrun (fading).
    pub concealed_samples: u64,
    /// Silence played after an underrun, once audio was back (a peer that stopped for
    /// good is not counted).
    pub silent_samples: u64,
    /// Played while the sender was quiet on purpose (DTX): its comfort noise fading,
    /// then silence. Not an underrun.
    pub paused_samples: u64,
    pub removed_for_acceleration: u64,
    pub inserted_for_deceleration: u64,
    /// Dropped at once because far too much was buffered.
    pub cut_samples: u64,
    /// The depth playback (re)starts at, as last learnt.
    pub start_depth: u64,
}

impl PlayoutStats {
    /// Mean audio buffered when a block was played, ms.
    pub fn mean_delay_ms(&self) -> f64 {
        if self.blocks == 0 {
            return 0.0;
        }
        self.buffered_sum as f64 / self.blocks as f64 * 1000.0 / RATE as f64
    }
}

/// Arrival jitter: each arrival's delay against the samples before it, over recent ones.
#[derive(Default)]
struct ArrivalJitter {
    samples: u64,
    last_us: Option<u64>,
    delays: VecDeque<i64>,
    /// How much later than the earliest the late arrivals come (95th percentile),
    /// samples; worked out on arrival, not in the sound card's callback.
    spread: usize,
}

impl ArrivalJitter {
    /// `samples` arrived at `arrival_us`, `left_out` after the ones before them.
    fn arrived(&mut self, samples: usize, arrival_us: u64, left_out: usize) {
        let left_out_us = (left_out as u64) * 1_000_000 / RATE as u64;
        if self
            .last_us
            .is_some_and(|l| arrival_us.saturating_sub(l) > PAUSE_US + left_out_us)
        {
            // A pause nobody announced (an outage, a stalled sender): the timeline
            // before it says nothing now.
            self.samples = 0;
            self.delays.clear();
        } else {
            self.samples += left_out as u64;
        }
        self.last_us = Some(arrival_us);
        let due_us = (self.samples * 1_000_000 / RATE as u64) as i64;
        self.delays.push_back(arrival_us as i64 - due_us);
        if self.delays.len() > JITTER_PACKETS {
            self.delays.pop_front();
        }
        self.samples += samples as u64;
        let mut d: Vec<i64> = self.delays.iter().copied().collect();
        d.sort_unstable();
        let p95 = d[(d.len() - 1) * 95 / 100];
        self.spread = ((p95 - d[0]).max(0) as u64 * RATE as u64 / 1_000_000) as usize;
    }
}

/// The last pitch period played, repeated while the buffer is dry: where in it, and how
/// many samples so far (the fade). Inline, as all of the playout's working storage: the
/// speaker runs it in the sound card's callback, which must not allocate.
struct Expansion {
    period: [f32; MAX_PERIOD],
    len: usize,
    at: usize,
    done: usize,
}

impl Expansion {
    fn next(&mut self) -> (f32, f32) {
        let gain = 1.0 - (self.done as f32 / EXPAND_FADE as f32).min(1.0);
        let s = self.period[self.at];
        self.at = (self.at + 1) % self.len;
        self.done += 1;
        (s, gain)
    }
}

/// What came with a packet's audio besides its samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrival {
    /// Wall-clock µs.
    pub at_us: u64,
    /// Samples the sender left out in silence just before (DTX).
    pub left_out: usize,
    /// The sender went quiet: running dry after this is meant.
    pub quiet: bool,
}

impl Arrival {
    /// Audio that arrived at `at_us` and says nothing more.
    pub fn at(at_us: u64) -> Self {
        Self {
            at_us,
            ..Default::default()
        }
    }
}

/// One peer's audio between its arrival and the speaker.
#[derive(Default)]
pub struct Playout {
    queue: VecDeque<f32>,
    playing: bool,
    /// The last packet said the sender went quiet; and the buffer ran dry since.
    quiet: bool,
    pausing: bool,
    jitter: ArrivalJitter,
    /// The last samples played, for concealment.
    history: VecDeque<f32>,
    /// Concealment under way.
    expanding: Option<Expansion>,
    /// The background a quiet sender left, played through its pause.
    comfort: ComfortNoise,
    /// Silence since running dry, counted once audio is back.
    silent_pending: u64,
    /// Lowest depth after a block in this window, the window's length so far, and delay
    /// still to give back (set at a window's end).
    low_water: Option<usize>,
    window: u32,
    to_remove: usize,
    level: f32,
    last_arrival_us: u64,
    /// Samples the consumer takes at once beyond a block (a device's callback): kept on
    /// top of the margin.
    reserve: usize,
    stats: PlayoutStats,
}

impl Playout {
    /// Decoded audio as it arrives (wall-clock µs).
    pub fn push(&mut self, pcm: &[f32], arrival_us: u64) {
        self.receive(pcm, Arrival::at(arrival_us));
    }

    /// Decoded audio as it arrives, with what its packet said of the sender.
    pub fn receive(&mut self, pcm: &[f32], arrival: Arrival) {
        let arrival_us = arrival.at_us;
        self.jitter.arrived(pcm.len(), arrival_us, arrival.left_out);
        if arrival.left_out > 0 && !self.playing {
            // Comfort noise from before the pause, never played: stale now.
            self.queue.clear();
        }
        self.quiet = arrival.quiet;
        self.queue.extend(pcm);
        self.last_arrival_us = arrival_us;
        if self.queue.len() > MAX {
            let keep = self.start_depth();
            self.cut(self.queue.len() - keep);
        }
    }

    /// Adds the next block (at most [`BLOCK`] samples) of this peer into `mix`.
    pub fn mix_into(&mut self, mix: &mut [f32]) {
        let n = mix.len().min(BLOCK);
        let mut block = [0.0f32; BLOCK];
        let block = &mut block[..n];
        if !self.playing && !self.queue.is_empty() && self.queue.len() >= self.start_depth() {
            self.playing = true;
            self.resume();
        }
        // Samples of this block already in the history.
        let mut kept = 0;
        if self.playing {
            self.stretch(n);
            let k = self.queue.len().min(n);
            for (b, s) in block.iter_mut().zip(self.queue.drain(..k)) {
                *b = s;
            }
            if k < n {
                self.playing = false;
                if self.quiet {
                    self.pausing = true;
                } else {
                    self.stats.underruns += 1;
                }
                self.restart_window();
                // The concealment continues from the very last sample played.
                self.remember(&block[..k]);
                if self.pausing {
                    // The sender's encoder heard no voice for a while before it went
                    // quiet: what played last is its background.
                    self.comfort.learn(self.history.make_contiguous());
                }
                kept = k;
                self.conceal(&mut block[k..]);
            } else {
                self.track_depth();
            }
        } else if self.expanding.is_some() {
            self.conceal(block);
        }
        // A pause is no delay.
        if self.playing || !self.pausing {
            self.stats.blocks += 1;
            self.stats.buffered_sum += self.queue.len() as u64;
        }
        let mut energy = 0.0;
        for (m, b) in mix.iter_mut().zip(block.iter()) {
            *m += b;
            energy += b * b;
        }
        self.remember(&block[kept..]);
        let rms = (energy / n.max(1) as f32).sqrt();
        // Fast attack, ~300 ms release: steady enough for a speaking ring.
        self.level = if rms > self.level {
            rms
        } else {
            self.level * 0.97 + rms * 0.03
        };
    }

    fn remember(&mut self, played: &[f32]) {
        self.history.extend(played);
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    /// The depth playback (re)starts at: the learnt jitter plus a margin.
    pub fn start_depth(&self) -> usize {
        (self.jitter.spread + self.margin()).clamp(MIN_START + self.reserve, MAX_START)
    }

    /// A consumer taking `samples` at a time (48 kHz) needs that much more buffered.
    pub fn set_reserve(&mut self, samples: usize) {
        self.reserve = samples.saturating_sub(BLOCK).min(MAX_START / 2);
    }

    fn margin(&self) -> usize {
        MARGIN + self.reserve
    }

    pub fn stats(&self) -> PlayoutStats {
        PlayoutStats {
            start_depth: self.start_depth() as u64,
            ..self.stats
        }
    }

    /// Played level (linear RMS, smoothed).
    pub fn level(&self) -> f32 {
        self.level
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn last_arrival_us(&self) -> u64 {
        self.last_arrival_us
    }

    /// Gives back delay (one period removed) or builds some (one repeated) before a block.
    fn stretch(&mut self, n: usize) {
        let depth = self.queue.len();
        // Delay is given back at most one period every other block: at most half again
        // as fast, not double speed.
        let rested = self.stats.blocks.is_multiple_of(2);
        if self.to_remove > 0 && rested && depth >= n + 2 * MAX_PERIOD {
            if let Some(p) = self.period_at_front() {
                // Two periods become one: the first fading into the second.
                self.replace_front(p, p, |x, i| {
                    let t = (i + 1) as f32 / (p + 1) as f32;
                    x[i] * (1.0 - t) + x[p + i] * t
                });
                self.to_remove = self.to_remove.saturating_sub(p);
                self.stats.removed_for_acceleration += p as u64;
            }
        } else if self.to_remove == 0 && depth >= 2 * MIN_PERIOD && depth < n + MARGIN / 2 {
            // Running low: stretch now rather than run dry later.
            if let Some(p) = self.period_at_front().filter(|p| 2 * p <= depth) {
                // Two periods become three: the second fading back into the first between
                // them.
                self.replace_front(p, 3 * p, |x, i| match i / p {
                    0 => x[i],
                    1 => {
                        let (i, t) = (i - p, (i - p + 1) as f32 / (p + 1) as f32);
                        x[p + i] * (1.0 - t) + x[i] * t
                    }
                    _ => x[i - p],
                });
                self.stats.inserted_for_deceleration += p as u64;
            }
        }
    }

    /// The pitch period of the audio at the front of the queue, if it repeats (or is quiet).
    fn period_at_front(&mut self) -> Option<usize> {
        let max = MAX_PERIOD.min(self.queue.len() / 2);
        best_period(&self.queue.make_contiguous()[..2 * max], max)
    }

    /// Replaces the front 2 `p` samples `x` with `len` made by `sample(x, i)`.
    fn replace_front(&mut self, p: usize, len: usize, sample: impl Fn(&[f32], usize) -> f32) {
        let mut x = [0.0f32; 2 * MAX_PERIOD];
        for (d, s) in x.iter_mut().zip(self.queue.drain(..2 * p)) {
            *d = s;
        }
        for i in (0..len).rev() {
            self.queue.push_front(sample(&x[..2 * p], i));
        }
    }

    /// Fills `out` by repeating the last pitch period played, fading.
    fn conceal(&mut self, out: &mut [f32]) {
        if self.expanding.is_none() {
            let h = self.history.make_contiguous();
            let p = best_period(h, h.len() / 2).unwrap_or(MAX_PERIOD.min(h.len()));
            if p == 0 {
                self.count_made_up(0, out.len());
                return;
            }
            let mut period = [0.0f32; MAX_PERIOD];
            period[..p].copy_from_slice(&h[h.len() - p..]);
            self.expanding = Some(Expansion {
                period,
                len: p,
                at: 0,
                done: 0,
            });
        }
        let Some(e) = self.expanding.as_mut() else {
            return;
        };
        let mut faded = 0;
        for o in out.iter_mut() {
            let (s, gain) = e.next();
            *o = s * gain;
            if self.pausing {
                *o += self.comfort.next() * (1.0 - gain);
            }
            faded += usize::from(gain > 0.0);
        }
        self.count_made_up(faded, out.len() - faded);
    }

    fn count_made_up(&mut self, concealed: usize, silent: usize) {
        if self.pausing {
            self.stats.paused_samples += (concealed + silent) as u64;
        } else {
            self.stats.concealed_samples += concealed as u64;
            self.silent_pending += silent as u64;
        }
    }

    /// Back from concealment: the first samples fade from the concealment into the audio.
    fn resume(&mut self) {
        let paused = std::mem::take(&mut self.pausing);
        self.stats.silent_samples += std::mem::take(&mut self.silent_pending);
        let Some(mut e) = self.expanding.take() else {
            return;
        };
        for i in 0..CROSSFADE.min(self.queue.len()) {
            let (s, gain) = e.next();
            let mut was = s * gain;
            if paused {
                was += self.comfort.next() * (1.0 - gain);
            }
            let t = (i + 1) as f32 / (CROSSFADE + 1) as f32;
            self.queue[i] = was * (1.0 - t) + self.queue[i] * t;
        }
    }

    /// Drops the oldest `n` samples, fading what was there into what follows.
    fn cut(&mut self, n: usize) {
        let n = n.min(self.queue.len());
        let fade = CROSSFADE.min(self.queue.len() - n);
        let mut head = [0.0f32; CROSSFADE];
        for (h, s) in head.iter_mut().zip(self.queue.iter().take(fade)) {
            *h = *s;
        }
        self.queue.drain(..n);
        for (i, old) in head[..fade].iter().enumerate() {
            let t = (i + 1) as f32 / (fade + 1) as f32;
            self.queue[i] = old * (1.0 - t) + self.queue[i] * t;
        }
        self.stats.cut_samples += n as u64;
        self.restart_window();
    }

    fn restart_window(&mut self) {
        self.low_water = None;
        self.window = 0;
        self.to_remove = 0;
    }

    /// After each played block: a window whose low water stayed well above the margin
    /// has that much delay to give back.
    fn track_depth(&mut self) {
        let depth = self.queue.len();
        self.low_water = Some(self.low_water.map_or(depth, |l| l.min(depth)));
        self.window += 1;
        if self.window >= WINDOW {
            let low = self.low_water.unwrap_or(0);
            self.restart_window();
            if low > self.margin() + SLACK {
                self.to_remove = low - self.margin();
            }
        }
    }
}

/// The lag in `MIN_PERIOD..=max` at which `x` best repeats itself (normalised
/// correlation of `x[..p]` with `x[p..2p]`); any lag when it is quiet; `None` when
/// nothing repeats well enough.
fn best_period(x: &[f32], max: usize) -> Option<usize> {
    let max = max.min(x.len() / 2);
    if max < MIN_PERIOD {
        return None;
    }
    let energy: f32 = x[..2 * max].iter().map(|s| s * s).sum::<f32>() / (2 * max) as f32;
    if energy < QUIET {
        return Some(max);
    }
    let mut best = (MIN_SIMILARITY, None);
    for p in MIN_PERIOD..=max {
        let (a, b) = (&x[..p], &x[p..2 * p]);
        let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
        for (u, v) in a.iter().zip(b) {
            ab += u * v;
            aa += u * u;
            bb += v * v;
        }
        let c = ab / (aa * bb).sqrt().max(f32::MIN_POSITIVE);
        if c > best.0 {
            best = (c, Some(p));
        }
    }
    best.1
}

#[cfg(test)]
#[path = "playout_tests.rs"]
mod tests;
