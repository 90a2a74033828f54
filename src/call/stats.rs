//! Per-peer call statistics, sampled every second from the media counters and
//! the peer connection's own stats.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::decode::RecvCounters;
use super::encode::SendCounters;
use super::peer::{ConnectionState, MediaKind, PeerStats};

/// One second of one peer, as the UI plots it and reports record it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeerCallStats {
    pub id: String,
    pub name: String,
    pub connected: bool,
    pub connect_ms: Option<u64>,
    pub video_in_kbps: f64,
    pub video_in_fps: f64,
    pub video_in_width: u32,
    pub video_in_height: u32,
    pub frames_decoded: u64,
    /// W3C freezes of the video received so far, and their total length.
    pub freezes: u32,
    pub freeze_s: f64,
    /// How long pictures are held to show them evenly through jitter (the video's
    /// jitter buffer, `frame_timing.rs`; 0 on a steady link).
    pub video_delay_ms: f64,
    pub decode_ms: f64,
    pub video_out_kbps: f64,
    pub video_out_fps: f64,
    pub encode_ms: f64,
    pub audio_in_kbps: f64,
    pub audio_out_kbps: f64,
    pub audio_packets_received: u64,
    pub audio_concealed: u64,
    pub packets_lost: i64,
    pub nack_sent: u64,
    pub nack_received: u64,
    /// FEC repair packets sent to this peer, and packets of its media they rebuilt here.
    pub fec_sent: u64,
    pub fec_recovered: u64,
    pub pli_sent: u64,
    pub pli_received: u64,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: f64,
    /// Capture-to-decoded latency from the barcode, median of the last interval.
    pub glass_to_glass_ms: Option<f64>,
    /// What the bandwidth estimator allows towards this peer.
    pub send_estimate_kbps: Option<f64>,
    /// How media travels: the selected candidate pair's types, e.g. "srflx -> srflx".
    pub path: Option<String>,
    /// The selected pair's local port (`confab bench network` tells the directions of
    /// the shaped link by it).
    pub local_port: Option<u16>,
    /// ICE restarts towards this member after its path went away.
    pub ice_restarts: u32,
    /// This peer's link carries far less than the others': it is sent the camera's
    /// second, smaller stream (mesh).
    pub small_stream: bool,
}

/// What this side sent over the whole call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SentTotals {
    pub video_frames_encoded: u64,
    /// Frames written to at least one connected peer.
    pub video_frames: u64,
    pub video_keyframes: u64,
    pub encode_ms: f64,
    pub audio_frames: u64,
    /// Audio frames left out in silence (Opus DTX).
    pub audio_frames_left_out: u64,
    /// Camera and microphone bytes written to peers, summed over them.
    pub uplink_bytes: u64,
}

impl SentTotals {
    pub fn from_counters(camera: Option<&SendCounters>, mic: Option<&SendCounters>) -> Self {
        let mut t = SentTotals::default();
        if let Some(c) = camera {
            t.video_frames_encoded = c.frames.load(Ordering::Relaxed);
            t.video_frames = c.delivered.load(Ordering::Relaxed);
            t.video_keyframes = c.keyframes.load(Ordering::Relaxed);
            t.encode_ms = c.mean_encode_ms();
            t.uplink_bytes += c.bytes_out.load(Ordering::Relaxed);
        }
        if let Some(c) = mic {
            t.audio_frames = c.delivered.load(Ordering::Relaxed);
            t.audio_frames_left_out = c.left_out.load(Ordering::Relaxed);
            t.uplink_bytes += c.bytes_out.load(Ordering::Relaxed);
        }
        t
    }
}

#[derive(Default, Clone, Copy)]
struct Totals {
    at: Option<Instant>,
    video_in_bytes: u64,
    video_in_frames: u64,
    audio_in_bytes: u64,
    video_out_bytes: u64,
    video_out_frames: u64,
    audio_out_bytes: u64,
}

type Remote = (MediaKind, Arc<RecvCounters>);

/// Remembers the previous totals so rates come out per second, and the streams a
/// peer has ended so its counts never go back (a stopped screen share, a publisher
/// that left Janus before its member left the room).
#[derive(Default)]
pub struct StatsTracker {
    previous: HashMap<String, Totals>,
    live: HashMap<String, HashMap<String, Remote>>,
    ended: HashMap<String, Vec<Remote>>,
}

impl StatsTracker {
    pub fn forget(&mut self, id: &str) {
        self.previous.remove(id);
        self.live.remove(id);
        self.ended.remove(id);
    }

    /// Moves the streams of `id` that are gone (or replaced under the same key)
    /// to its ended list.
    fn retire(&mut self, id: &str, remote: &HashMap<String, Remote>) {
        let before = self.live.insert(id.to_string(), remote.clone());
        let ended = self.ended.entry(id.to_string()).or_default();
        for (key, old) in before.into_iter().flatten() {
            if !remote
                .get(&key)
                .is_some_and(|new| Arc::ptr_eq(&new.1, &old.1))
            {
                ended.push(old);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &mut self,
        id: &str,
        name: &str,
        connection: ConnectionState,
        connected_after: Option<Duration>,
        transport: &PeerStats,
        remote: &HashMap<String, (MediaKind, Arc<RecvCounters>)>,
        camera: Option<&SendCounters>,
        mic: Option<&SendCounters>,
    ) -> PeerCallStats {
        let now = Instant::now();
        let mut t = Totals {
            at: Some(now),
            ..Totals::default()
        };
        let mut s = PeerCallStats {
            id: id.to_string(),
            name: name.to_string(),
            connected: connection == ConnectionState::Connected,
            connect_ms: connected_after.map(|d| d.as_millis() as u64),
            ..Default::default()
        };
        let mut latencies = Vec::new();
        let mut decode_us = 0;
        self.retire(id, remote);
        let ended = self.ended.get(id).into_iter().flatten();
        let streams = remote.values().map(|r| (r, true));
        for ((kind, c), live) in streams.chain(ended.map(|r| (r, false))) {
            let bytes = c.bytes.load(Ordering::Relaxed);
            match kind {
                MediaKind::Video => {
                    t.video_in_bytes += bytes;
                    let decoded = c.decoded.load(Ordering::Relaxed);
                    t.video_in_frames += decoded;
                    s.frames_decoded += decoded;
                    decode_us += c.decode_us_total.load(Ordering::Relaxed);
                    let w = c.width.load(Ordering::Relaxed) as u32;
                    if live && w > s.video_in_width {
                        s.video_in_width = w;
                        s.video_in_height = c.height.load(Ordering::Relaxed) as u32;
                    }
                    if live {
                        latencies.append(&mut c.latency_us.locked());
                    }
                    if live {
                        let held = c.held_us.load(Ordering::Relaxed) as f64 / 1000.0;
                        s.video_delay_ms = s.video_delay_ms.max(held);
                    }
                    let q = c.quality.locked();
                    s.freezes += q.freezes;
                    s.freeze_s += q.freeze_ms / 1000.0;
                }
                MediaKind::Audio => {
                    t.audio_in_bytes += bytes;
                    s.audio_packets_received += c.units.load(Ordering::Relaxed);
                    s.audio_concealed += c.concealed.load(Ordering::Relaxed);
                }
            }
        }
        if s.frames_decoded > 0 {
            s.decode_ms = decode_us as f64 / s.frames_decoded as f64 / 1000.0;
        }
        if let Some(c) = camera {
            t.video_out_bytes = c.bytes.load(Ordering::Relaxed);
            t.video_out_frames = c.frames.load(Ordering::Relaxed);
            s.encode_ms = c.mean_encode_ms();
        }
        if let Some(c) = mic {
            t.audio_out_bytes = c.bytes.load(Ordering::Relaxed);
        }
        let prev = self.previous.insert(id.to_string(), t).unwrap_or_default();
        if let Some(then) = prev.at {
            let secs = now.duration_since(then).as_secs_f64().max(1e-3);
            let kbps = |a: u64, b: u64| a.saturating_sub(b) as f64 * 8.0 / 1000.0 / secs;
            s.video_in_kbps = kbps(t.video_in_bytes, prev.video_in_bytes);
            s.audio_in_kbps = kbps(t.audio_in_bytes, prev.audio_in_bytes);
            s.video_out_kbps = kbps(t.video_out_bytes, prev.video_out_bytes);
            s.audio_out_kbps = kbps(t.audio_out_bytes, prev.audio_out_bytes);
            s.video_in_fps = t.video_in_frames.saturating_sub(prev.video_in_frames) as f64 / secs;
            s.video_out_fps =
                t.video_out_frames.saturating_sub(prev.video_out_frames) as f64 / secs;
        }
        for track in &transport.inbound {
            s.packets_lost += track.packets_lost;
            s.nack_sent += track.nack_sent;
            s.pli_sent += track.pli_sent;
            s.jitter_ms = s.jitter_ms.max(track.jitter * 1000.0);
        }
        for track in &transport.outbound {
            s.nack_received += track.nack_received;
            s.pli_received += track.pli_received;
        }
        s.fec_sent = transport.fec_sent;
        s.fec_recovered = transport.fec_recovered;
        s.rtt_ms = transport.rtt.map(|d| d.as_secs_f64() * 1000.0);
        s.send_estimate_kbps = transport.send_estimate_bps.map(|b| b / 1000.0);
        s.local_port = transport.local_port;
        s.path = transport
            .path
            .as_ref()
            .map(|(local, remote)| format!("{local} -> {remote}"));
        if !latencies.is_empty() {
            latencies.sort_unstable();
            s.glass_to_glass_ms = Some(latencies[latencies.len() / 2] as f64 / 1000.0);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(decoded: u64) -> Remote {
        let c = RecvCounters::default();
        c.decoded.store(decoded, Ordering::Relaxed);
        c.width.store(640, Ordering::Relaxed);
        c.height.store(360, Ordering::Relaxed);
        (MediaKind::Video, Arc::new(c))
    }

    fn sample(t: &mut StatsTracker, remote: &HashMap<String, Remote>) -> PeerCallStats {
        let idle = PeerStats::default();
        let state = ConnectionState::Connected;
        t.sample("p1", "p1", state, None, &idle, remote, None, None)
    }

    #[test]
    fn frames_of_a_stream_that_ended_still_count() {
        let mut t = StatsTracker::default();
        let (camera, screen) = (video(100), video(40));
        let both = HashMap::from([("cam".into(), camera.clone()), ("scr".into(), screen)]);
        assert_eq!(sample(&mut t, &both).frames_decoded, 140);
        // The screen share stops; the camera goes on.
        camera.1.decoded.store(130, Ordering::Relaxed);
        let one = HashMap::from([("cam".into(), camera.clone())]);
        let s = sample(&mut t, &one);
        assert_eq!(s.frames_decoded, 170);
        // The rate is the camera's 30 new frames, not a drop.
        assert!(s.video_in_fps > 0.0, "{s:?}");
        // Then the publisher goes: nothing live, nothing forgotten, no picture size.
        let s = sample(&mut t, &HashMap::new());
        assert_eq!((s.frames_decoded, s.video_in_width), (170, 0));
    }

    #[test]
    fn a_stream_replaced_under_the_same_key_keeps_the_old_ones_frames() {
        let mut t = StatsTracker::default();
        let first = HashMap::from([("cam".into(), video(50))]);
        sample(&mut t, &first);
        let second = HashMap::from([("cam".into(), video(7))]);
        assert_eq!(sample(&mut t, &second).frames_decoded, 57);
        // Sampled again, the same stream is not counted twice.
        assert_eq!(sample(&mut t, &second).frames_decoded, 57);
    }

    #[test]
    fn a_forgotten_peer_starts_from_nothing() {
        let mut t = StatsTracker::default();
        sample(&mut t, &HashMap::from([("cam".into(), video(50))]));
        sample(&mut t, &HashMap::new());
        t.forget("p1");
        assert_eq!(sample(&mut t, &HashMap::new()).frames_decoded, 0);
    }
}
