//! The decode stage: one thread per remote track turns access units into pictures and
//! Opus packets into PCM (concealing short gaps), and hands them to the sink.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::sync::LockExt;

use crate::media::{
    AUDIO_FRAME_SAMPLES, Arrival, DTX_PACKET_MAX, H264Decoder, OpusDecoder, References,
    is_keyframe, now_us,
};

use super::frame_timing::FrameTiming;
use super::peer::{AudioPacket, KeyframeRequester, RemoteMedia};
use super::sink::{AudioInfo, FrameInfo, MediaSink};
use super::track::TrackRole;

/// While frozen waiting for an IDR, the request is repeated this often: a lost request or
/// a lost keyframe must not freeze the picture for good.
const ASK_AGAIN: Duration = Duration::from_millis(250);

/// Counters a receive track shares with the stats task.
#[derive(Debug, Default)]
pub struct RecvCounters {
    pub units: AtomicU64,
    pub bytes: AtomicU64,
    pub decoded: AtomicU64,
    pub concealed: AtomicU64,
    pub decode_us_total: AtomicU64,
    pub width: AtomicU64,
    pub height: AtomicU64,
    /// The delay pictures are held for now (`frame_timing.rs`), µs.
    pub held_us: AtomicU64,
    /// Glass-to-glass latency samples (µs) since the stats task last took them.
    pub latency_us: Mutex<Vec<u64>>,
    /// Freezes as a viewer sees them (W3C), over the whole call.
    pub quality: Mutex<super::quality::VideoQuality>,
}

/// What the decode stage of one remote track reads from and writes to.
pub struct DecodeInput {
    pub peer_id: String,
    pub role: TrackRole,
    pub media: mpsc::Receiver<RemoteMedia>,
    /// After a decode error: ask the receive stage for a keyframe.
    pub keyframes: KeyframeRequester,
    pub sink: Arc<dyn MediaSink>,
    pub counters: Arc<RecvCounters>,
    /// (peer, role, wall-clock µs) of every IDR that arrives.
    pub idr_seen: mpsc::UnboundedSender<(String, TrackRole, u64)>,
}

/// Starts the decode thread for one remote track; it ends when the track does.
pub fn spawn_decoder(input: DecodeInput) {
    let DecodeInput {
        peer_id,
        role,
        mut media,
        keyframes,
        sink,
        counters,
        idr_seen,
    } = input;
    let name = format!("decode-{role}");
    let run = move || {
        let mut video: Option<H264Decoder> = None;
        let mut audio: Option<OpusDecoder> = None;
        // The last audio packet's sequence number and timestamp.
        let mut last_audio: Option<(u16, u32)> = None;
        let mut awaiting_keyframe = false;
        let mut references = References::default();
        let mut timing = FrameTiming::default();
        // When a keyframe was last asked for (here or by the receive stage).
        let mut asked: Option<Instant> = None;
        while let Some(unit) = media.blocking_recv() {
            counters.units.fetch_add(1, Ordering::Relaxed);
            match unit {
                RemoteMedia::Video(au) => {
                    counters
                        .bytes
                        .fetch_add(au.data.len() as u64, Ordering::Relaxed);
                    let keyframe = is_keyframe(&au.data);
                    if keyframe {
                        tracing::debug!(%peer_id, %role, complete = au.complete, "keyframe arrived");
                        let _ = idr_seen.send((peer_id.clone(), role, now_us()));
                        awaiting_keyframe = false;
                    }
                    // Only pictures nothing refers to were lost (a temporal layer): go on.
                    let lost_reference = au.after_gap && !keyframe && !references.follows(&au.data);
                    // After a loss, decoding P-frames would only smear; freeze until an IDR.
                    if !au.complete || awaiting_keyframe || lost_reference {
                        if !au.complete && !awaiting_keyframe {
                            // The receive stage asked when it gave up on the gap.
                            asked = Some(Instant::now());
                        }
                        if lost_reference && !awaiting_keyframe {
                            asked = None;
                        }
                        awaiting_keyframe = !keyframe;
                        if awaiting_keyframe {
                            if asked.is_none_or(|a| a.elapsed() >= ASK_AGAIN) {
                                keyframes.request();
                                asked = Some(Instant::now());
                            }
                            continue;
                        }
                    }
                    let dec = match video.as_mut() {
                        Some(d) => d,
                        None => match H264Decoder::new() {
                            Ok(d) => video.insert(d),
                            Err(e) => {
                                tracing::error!("no H.264 decoder: {e}");
                                return;
                            }
                        },
                    };
                    let started = Instant::now();
                    references.decoded(&au.data);
                    match dec.decode(&au.data) {
                        Ok(Some(frame)) => {
                            let decoded_us = now_us();
                            counters
                                .decode_us_total
                                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                            counters.decoded.fetch_add(1, Ordering::Relaxed);
                            counters.width.store(frame.width as u64, Ordering::Relaxed);
                            counters
                                .height
                                .store(frame.height as u64, Ordering::Relaxed);
                            // Held until its turn when the path jitters (the next unit
                            // waits in the queue meanwhile). Timed by its first packet:
                            // a big picture's last comes later for its size, not the path.
                            let arrived_us = decoded_us
                                .saturating_sub(au.first_arrival.elapsed().as_micros() as u64);
                            let learn = !keyframe && !au.repaired;
                            let shown_us =
                                timing.show_at(au.rtp_timestamp, arrived_us, decoded_us, learn);
                            counters
                                .held_us
                                .store((timing.delay_ms() * 1000.0) as u64, Ordering::Relaxed);
                            let wait = shown_us.saturating_sub(now_us());
                            if wait > 0 {
                                std::thread::sleep(Duration::from_micros(wait));
                            }
                            counters.quality.locked().on_frame(
                                shown_us,
                                frame.width as u32,
                                frame.height as u32,
                            );
                            let info = FrameInfo {
                                shown_us,
                                barcode: None,
                                keyframe,
                            };
                            sink.video(&peer_id, role, &frame, &info);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(%peer_id, %role, "decode error: {e}");
                            awaiting_keyframe = true;
                            keyframes.request();
                            asked = Some(Instant::now());
                        }
                    }
                }
                RemoteMedia::Audio(AudioPacket {
                    data,
                    sequence_number,
                    rtp_timestamp,
                    arrival,
                }) => {
                    counters
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    let dec = match audio.as_mut() {
                        Some(d) => d,
                        None => match OpusDecoder::new() {
                            Ok(d) => audio.insert(d),
                            Err(e) => {
                                tracing::error!("no Opus decoder: {e}");
                                return;
                            }
                        },
                    };
                    let arrival_us = now_us().saturating_sub(arrival.elapsed().as_micros() as u64);
                    // Conceal short gaps; a long one is a pause, not loss.
                    let mut left_out = 0;
                    if let Some((last, last_ts)) = last_audio {
                        let missing = sequence_number.wrapping_sub(last).wrapping_sub(1);
                        if missing <= 5 {
                            left_out = left_out_before(last_ts, rtp_timestamp, missing);
                        }
                        if (1..=5).contains(&missing) {
                            for n in 0..missing {
                                // The packet right before this one is in this one's FEC.
                                let rebuilt = if n + 1 == missing {
                                    dec.recover(&data)
                                } else {
                                    dec.conceal()
                                };
                                if let Ok(pcm) = rebuilt {
                                    counters.concealed.fetch_add(1, Ordering::Relaxed);
                                    let info = AudioInfo {
                                        arrival: Arrival::at(arrival_us),
                                        concealed: true,
                                    };
                                    sink.audio(&peer_id, role, &pcm, &info);
                                }
                            }
                        }
                    }
                    last_audio = Some((sequence_number, rtp_timestamp));
                    match dec.decode(&data) {
                        Ok(pcm) => {
                            counters.decoded.fetch_add(1, Ordering::Relaxed);
                            let info = AudioInfo {
                                arrival: Arrival {
                                    at_us: arrival_us,
                                    left_out,
                                    quiet: data.len() <= DTX_PACKET_MAX,
                                },
                                concealed: false,
                            };
                            sink.audio(&peer_id, role, &pcm, &info);
                        }
                        Err(e) => tracing::debug!(%peer_id, "opus decode error: {e}"),
                    }
                }
            }
        }
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(run)
        .expect("spawning a decode thread");
}

/// Samples the sender left out (Opus DTX) between the packet at `last_ts` and the one at
/// `ts`, `missing` packets apart: time beyond its 20 ms frames that passed in silence.
fn left_out_before(last_ts: u32, ts: u32, missing: u16) -> usize {
    let frames = (u32::from(missing) + 1) * OPUS_FRAME_SAMPLES;
    let gap = ts.wrapping_sub(last_ts);
    // A timestamp that went back or leapt (a new source) is not a pause.
    if gap > frames && gap - frames <= MAX_LEFT_OUT {
        (gap - frames) as usize
    } else {
        0
    }
}

const OPUS_FRAME_SAMPLES: u32 = AUDIO_FRAME_SAMPLES as u32;
/// DTX refreshes the comfort noise every 400 ms; a minute of silence is plenty.
const MAX_LEFT_OUT: u32 = 60 * 48_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_out_is_what_the_timestamp_moved_beyond_the_frames() {
        // Back to back: nothing left out.
        assert_eq!(left_out_before(1000, 1960, 0), 0);
        // DTX: the refresh 400 ms after the marker.
        assert_eq!(left_out_before(1000, 1000 + 20 * 960, 0), 19 * 960);
        // Across the wrap, and after two lost packets (concealed, not left out).
        assert_eq!(left_out_before(u32::MAX - 100, 3 * 960 - 101, 2), 0);
        assert_eq!(left_out_before(u32::MAX - 100, 5 * 960 - 101, 2), 2 * 960);
        // A timestamp that went back is no pause.
        assert_eq!(left_out_before(10_000, 5_000, 0), 0);
    }
}
