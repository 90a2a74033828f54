//! [`Peer::stats`]: webrtc-rs's stats report joined with our own feedback counts.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::statistics::report::RTCStatsReportEntry;
use webrtc::peer_connection::StatsSelector;

use super::types::{MediaKind, PeerStats, TrackStats};
use super::{LocalTrack, Peer};

impl Peer {
    /// The congestion controller's latest send estimate (bit/s), for the encoders' rate:
    /// read from what the feedback tap kept, no stats report needed.
    pub fn send_estimate(&self) -> Option<f64> {
        let bps = f64::from_bits(self.shared.send_estimate.load(Ordering::Relaxed));
        (bps > 0.0).then_some(bps)
    }

    /// Whether the estimate has moved from its start: the remote gives transport-wide
    /// feedback (aiortc gives none, and a peer's estimate then stays where it started).
    pub fn estimated(&self) -> bool {
        self.shared.estimated.load(Ordering::Relaxed)
    }

    /// What of the send estimate the encoders may fill: the rest carries FEC repair and
    /// retransmissions.
    pub fn media_estimate(&self) -> Option<f64> {
        self.send_estimate().map(|e| self.shared.fec.media_rate(e))
    }

    /// The loss the remote's latest reports show on our audio (0..1), the worst track's.
    pub fn audio_loss(&self) -> Option<f64> {
        let audio: Vec<u32> = self
            .local_tracks
            .locked()
            .values()
            .filter(|t| t.kind() == MediaKind::Audio)
            .map(|t| t.ssrc())
            .collect();
        let feedback = self.shared.feedback.locked();
        audio
            .iter()
            .filter_map(|s| feedback.get(s))
            .map(|f| f.fraction_lost)
            .reduce(f64::max)
    }

    /// Statistics from the 0.21 stats report, keyed by track.
    pub async fn stats(&self) -> PeerStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut stats = PeerStats::default();

        let locals: HashMap<u32, LocalTrack> = self
            .local_tracks
            .locked()
            .values()
            .map(|t| (t.ssrc(), t.clone()))
            .collect();
        let feedback = self.shared.feedback.locked().clone();
        for out in report.outbound_rtp_streams() {
            let ssrc = out.sent_rtp_stream_stats.rtp_stream_stats.ssrc;
            let local = locals.get(&ssrc);
            let fb = feedback.get(&ssrc).copied().unwrap_or_default();
            let clock = match local.map(|l| l.kind()) {
                Some(MediaKind::Audio) => 48_000.0,
                _ => 90_000.0,
            };
            stats.outbound.push(TrackStats {
                track_id: local.map(|l| l.track_id().to_owned()).unwrap_or_default(),
                kind: local.map(|l| l.kind()),
                ssrc,
                bytes_sent: out.sent_rtp_stream_stats.bytes_sent,
                packets_sent: out.sent_rtp_stream_stats.packets_sent,
                packets_lost: fb.packets_lost,
                nack_received: fb.nack,
                pli_received: fb.pli,
                fir_received: fb.fir,
                jitter: f64::from(fb.jitter) / clock,
                rtt: fb.rtt,
                retransmitted_packets: out.retransmitted_packets_sent,
                ..Default::default()
            });
            // One estimate for the connection, copied onto every outbound stream.
            if out.target_bitrate > 0.0 {
                stats.send_estimate_bps = Some(out.target_bitrate);
            }
        }
        let remotes: HashMap<String, (MediaKind, u64)> = self
            .shared
            .remote
            .locked()
            .iter()
            .map(|(id, e)| (id.clone(), (e.kind, e.dropped.load(Ordering::Relaxed))))
            .collect();
        // What the sender says it sent (its RTCP SR), by SSRC: set against what arrived
        // it tells loss on the last hop from loss before it (an SFU relays both).
        let sent_by_sender = self.shared.sender_reports.locked().clone();
        for inb in report.inbound_rtp_streams() {
            let rs = &inb.received_rtp_stream_stats;
            let remote = remotes.get(&inb.track_identifier);
            // rtc 0.21 stores the jitter of the reports it generates in RTP timestamp
            // units (as RTCP carries it), not in seconds as its outbound side does.
            let clock = match remote.map(|r| r.0) {
                Some(MediaKind::Audio) => 48_000.0,
                _ => 90_000.0,
            };
            stats.inbound.push(TrackStats {
                track_id: inb.track_identifier.clone(),
                kind: remote.map(|r| r.0),
                ssrc: rs.rtp_stream_stats.ssrc,
                bytes_received: inb.bytes_received,
                packets_received: rs.packets_received,
                packets_lost: rs.packets_lost,
                sender_packets_sent: sent_by_sender
                    .get(&rs.rtp_stream_stats.ssrc)
                    .copied()
                    .unwrap_or(0),
                nack_sent: inb.nack_count as u64,
                pli_sent: inb.pli_count as u64,
                fir_sent: inb.fir_count as u64,
                jitter: rs.jitter / clock,
                retransmitted_packets: inb.retransmitted_packets_received,
                dropped_by_consumer: remote.map_or(0, |r| r.1),
                ..Default::default()
            });
        }
        // 0.21 names candidate entries with a prefix that pairs leave off.
        let candidate = |prefix: &str, id: &str| {
            [format!("{prefix}{id}"), id.to_string()]
                .iter()
                .find_map(|key| match report.get(key) {
                    Some(
                        RTCStatsReportEntry::LocalCandidate(c)
                        | RTCStatsReportEntry::RemoteCandidate(c),
                    ) => Some((c.candidate_type.to_string(), c.port)),
                    _ => None,
                })
        };
        for pair in report.candidate_pairs() {
            if pair.nominated {
                let local = candidate("RTCLocalIceCandidate_", &pair.local_candidate_id);
                // A remote candidate nobody signalled was learned from its checks.
                let remote = candidate("RTCRemoteIceCandidate_", &pair.remote_candidate_id)
                    .map_or_else(|| "prflx".into(), |(kind, _)| kind);
                stats.local_port = local.as_ref().map(|(_, port)| *port);
                stats.path = local.map(|(kind, _)| (kind, remote));
            }
            if pair.nominated || stats.rtt.is_none() {
                if pair.current_round_trip_time > 0.0 {
                    stats.rtt = Some(Duration::from_secs_f64(pair.current_round_trip_time));
                }
                stats.transport_bytes_sent = pair.bytes_sent;
                stats.transport_bytes_received = pair.bytes_received;
            }
        }
        stats.fec_sent = self.shared.fec.sent.load(Ordering::Relaxed);
        stats.fec_recovered = self.shared.fec.recovered.load(Ordering::Relaxed);
        stats.fec_share = 1.0 / self.shared.fec.media_share() - 1.0;
        stats
    }
}
