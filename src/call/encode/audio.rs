//! The microphone's encode stage: capture and Opus (with DTX) on a thread, fan-out to
//! every peer's track on a task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::call::peer::AudioTrackSender;
use crate::call::send::{Fanout, Unit, spawn_fanout};
use crate::call::sink::MediaSink;
use crate::call::track::TrackRole;
use crate::media::{AUDIO_FRAME_SAMPLES, AudioFrame, AudioSource, OpusEncoder, level_dbfs};

use super::{CaptureFailure, SendCounters};

/// Every Opus packet carries 20 ms.
const OPUS_FRAME: Duration = Duration::from_millis(20);

enum AudioCtl {
    Replace(Box<dyn AudioSource>),
    ExpectedLoss(i32),
}

impl AudioCtl {
    fn apply(self, source: &mut Box<dyn AudioSource>, ok: &mut bool, encoder: &mut OpusEncoder) {
        match self {
            AudioCtl::Replace(n) => {
                *source = n;
                *ok = true;
            }
            AudioCtl::ExpectedLoss(p) => {
                if let Err(e) = encoder.set_expected_loss(p) {
                    tracing::debug!("Opus expected loss: {e}");
                }
            }
        }
    }
}

/// One local audio track: capture and Opus on a thread, fan-out on a task.
pub struct AudioCapture {
    pub fanout: Arc<Fanout<AudioTrackSender>>,
    pub counters: Arc<SendCounters>,
    muted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    ctl: std::sync::mpsc::Sender<AudioCtl>,
    heard: Arc<Heard>,
}

/// The loudest frame the microphone heard since it was last read, muted or not (what a
/// "you are muted" notice needs: the frames sent while muted are silence).
#[derive(Debug, Default)]
struct Heard {
    /// dBFS above the floor, as f32 bits: non-negative floats order like their bits,
    /// so `fetch_max` keeps the loudest.
    above_floor: AtomicU32,
    any: AtomicBool,
}

/// The quietest level recorded (digital silence).
const FLOOR_DBFS: f32 = -120.0;

impl Heard {
    fn record(&self, dbfs: f32) {
        let v = (dbfs - FLOOR_DBFS).max(0.0);
        self.above_floor.fetch_max(v.to_bits(), Ordering::Relaxed);
        self.any.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> Option<f32> {
        self.any
            .swap(false, Ordering::Relaxed)
            .then(|| f32::from_bits(self.above_floor.swap(0, Ordering::Relaxed)) + FLOOR_DBFS)
    }
}

impl AudioCapture {
    pub fn start(
        track: TrackRole,
        source: Box<dyn AudioSource>,
        bitrate_bps: u32,
        failures: mpsc::UnboundedSender<CaptureFailure>,
        preview: Arc<dyn MediaSink>,
    ) -> AudioCapture {
        let fanout = Fanout::<AudioTrackSender>::new();
        let counters = Arc::new(SendCounters::default());
        let muted = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ctl, ctl_rx) = std::sync::mpsc::channel::<AudioCtl>();
        let (tx, rx) = mpsc::channel::<Unit>(16);
        spawn_fanout(fanout.clone(), rx, counters.clone());
        let heard = Arc::new(Heard::default());
        let (m, s, c, track) = (muted.clone(), stop.clone(), counters.clone(), track);
        let h = heard.clone();
        std::thread::Builder::new()
            .name(format!("capture-{track}"))
            .spawn(move || {
                let mut source = source;
                let opus = OpusEncoder::new(bitrate_bps).and_then(|mut e| {
                    e.set_dtx(true)?;
                    Ok(e)
                });
                let mut encoder = match opus {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = failures.send(CaptureFailure {
                            track,
                            message: format!("cannot start Opus: {e}"),
                        });
                        return;
                    }
                };
                let mut source_ok = true;
                while !s.load(Ordering::Relaxed) {
                    while let Ok(ctl) = ctl_rx.try_recv() {
                        ctl.apply(&mut source, &mut source_ok, &mut encoder);
                    }
                    if !source_ok {
                        match ctl_rx.recv_timeout(Duration::from_millis(200)) {
                            Ok(ctl) => ctl.apply(&mut source, &mut source_ok, &mut encoder),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            Err(_) => return,
                        }
                        continue;
                    }
                    let mut frame = match source.next_frame() {
                        Ok(f) => f,
                        Err(e) => {
                            source_ok = false;
                            let _ = failures.send(CaptureFailure {
                                track,
                                message: format!("{} stopped: {e}", source.describe()),
                            });
                            continue;
                        }
                    };
                    h.record(level_dbfs(&frame.samples));
                    // Muted is digital silence: DTX leaves it out but for the comfort
                    // noise refreshes, which keep the far end's clock running.
                    if m.load(Ordering::Relaxed) {
                        frame = AudioFrame {
                            samples: vec![0.0; AUDIO_FRAME_SAMPLES],
                            capture_us: frame.capture_us,
                        };
                    }
                    // What we send is what a recording of the call hears from us.
                    preview.local_audio(track, &frame.samples);
                    let started = Instant::now();
                    let Ok(packet) = encoder.encode(&frame) else {
                        continue;
                    };
                    c.encode_us_total
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    c.frames.fetch_add(1, Ordering::Relaxed);
                    c.bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
                    // A frame left out still goes down the line, empty: the track's
                    // timestamp moves on by it.
                    c.left_out
                        .fetch_add(u64::from(packet.is_empty()), Ordering::Relaxed);
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        tx.try_send(Unit::single(packet, OPUS_FRAME))
                    {
                        return;
                    }
                }
            })
            .expect("spawning a capture thread");
        AudioCapture {
            fanout,
            counters,
            muted,
            stop,
            ctl,
            heard,
        }
    }

    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// The loudest the microphone heard (dBFS) since the last call, also while muted;
    /// None if no frame arrived since.
    pub fn take_heard_dbfs(&self) -> Option<f32> {
        self.heard.take()
    }

    pub fn replace_source(&self, source: Box<dyn AudioSource>) {
        let _ = self.ctl.send(AudioCtl::Replace(source));
    }

    /// The loss the peers measure on our audio (percent, the worst of them): Opus puts
    /// more into its in-band copy of the previous frame.
    pub fn set_expected_loss(&self, percent: i32) {
        let _ = self.ctl.send(AudioCtl::ExpectedLoss(percent));
    }
}

impl Drop for AudioCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_microphone_level_read_is_the_loudest_since_the_last_read() {
        let h = Heard::default();
        assert_eq!(h.take(), None, "nothing heard yet");
        for l in [-60.0, -18.5, -140.0, -30.0] {
            h.record(l);
        }
        assert_eq!(h.take(), Some(-18.5));
        assert_eq!(h.take(), None, "read once");
        h.record(-140.0);
        assert_eq!(
            h.take(),
            Some(FLOOR_DBFS),
            "below the floor reads as the floor"
        );
    }
}
