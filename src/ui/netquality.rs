//! How good a peer's network is, as bars on its tile (0 to 4), from its recent
//! statistics: loss, round trip and freezes. Pure, no egui.

use std::collections::VecDeque;

use crate::call::PeerCallStats;

pub const MAX_BARS: u8 = 4;
/// Seconds of statistics looked at: long enough to smooth, short enough to follow.
const WINDOW: usize = 5;
/// Bytes per video packet, for the packets expected (the stats count audio packets only).
const VIDEO_PACKET_BYTES: f64 = 1_100.0;

#[derive(Debug, Clone, PartialEq)]
pub struct NetQuality {
    pub bars: u8,
    /// Lost of what was expected over the window, in percent.
    pub loss_pct: f64,
    pub rtt_ms: Option<f64>,
    /// Freezes of the received video over the window.
    pub freezes: u32,
    pub connected: bool,
}

impl NetQuality {
    pub fn word(&self) -> &'static str {
        match self.bars {
            4 => "good",
            3 => "fair",
            2 => "weak",
            _ => "poor",
        }
    }

    /// What the tooltip says: the figures behind the bars.
    pub fn details(&self) -> String {
        if !self.connected {
            return "Not connected".into();
        }
        let rtt = self.rtt_ms.map_or("round trip unknown".into(), |r| {
            format!("round trip {r:.0} ms")
        });
        format!(
            "Network {}: {:.1} % lost, {rtt}, {} freeze{} in the last {WINDOW} s",
            self.word(),
            self.loss_pct,
            self.freezes,
            if self.freezes == 1 { "" } else { "s" }
        )
    }
}

/// The quality from a peer's history, oldest first; None before its first second.
pub fn net_quality(history: &VecDeque<PeerCallStats>) -> Option<NetQuality> {
    let last = history.back()?;
    // The window's first sample is the base the counters grew from.
    let first = &history[history.len().saturating_sub(WINDOW + 1)];
    let seconds = (history.len() - 1).min(WINDOW) as f64;
    let lost = (last.packets_lost - first.packets_lost).max(0) as f64;
    let audio = last
        .audio_packets_received
        .saturating_sub(first.audio_packets_received) as f64;
    let video_kbps: f64 = history
        .iter()
        .rev()
        .take(WINDOW)
        .map(|s| s.video_in_kbps)
        .sum::<f64>();
    let video = video_kbps * 1000.0 / 8.0 / VIDEO_PACKET_BYTES;
    let expected = lost + audio + video;
    let loss_pct = if seconds > 0.0 && expected > 0.0 {
        100.0 * lost / expected
    } else {
        0.0
    };
    let freezes = last.freezes.saturating_sub(first.freezes);
    let by_loss = match loss_pct {
        l if l < 2.0 => 4,
        l if l < 5.0 => 3,
        l if l < 10.0 => 2,
        l if l < 20.0 => 1,
        _ => 0,
    };
    let by_rtt = match last.rtt_ms {
        None => 4,
        Some(r) if r < 150.0 => 4,
        Some(r) if r < 300.0 => 3,
        Some(r) if r < 500.0 => 2,
        Some(r) if r < 1000.0 => 1,
        Some(_) => 0,
    };
    let by_freezes = match freezes {
        0 => 4,
        1 => 3,
        _ => 2,
    };
    let bars = if last.connected {
        by_loss.min(by_rtt).min(by_freezes)
    } else {
        0
    };
    Some(NetQuality {
        bars,
        loss_pct,
        rtt_ms: last.rtt_ms,
        freezes,
        connected: last.connected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` seconds at 50 audio packets a second and 1 Mbit/s of video, with `lost`
    /// packets lost each second, `rtt` and a freeze every `freeze_every` seconds.
    fn seconds(n: u64, lost: i64, rtt: f64, freeze_every: Option<u64>) -> VecDeque<PeerCallStats> {
        (0..n)
            .map(|i| PeerCallStats {
                connected: true,
                audio_packets_received: 50 * i,
                video_in_kbps: 1000.0,
                packets_lost: lost * i as i64,
                rtt_ms: Some(rtt),
                freezes: freeze_every.map_or(0, |e| (i / e) as u32),
                ..PeerCallStats::default()
            })
            .collect()
    }

    fn bars(h: &VecDeque<PeerCallStats>) -> u8 {
        net_quality(h).unwrap().bars
    }

    #[test]
    fn a_clean_fast_path_has_every_bar() {
        let q = net_quality(&seconds(10, 0, 40.0, None)).unwrap();
        assert_eq!((q.bars, q.loss_pct, q.freezes), (4, 0.0, 0));
        assert!(q.details().contains("round trip 40 ms"), "{}", q.details());
    }

    #[test]
    fn loss_round_trip_and_freezes_each_take_bars() {
        // About 164 packets a second: 50 audio, ~114 video.
        let q = net_quality(&seconds(10, 10, 40.0, None)).unwrap();
        assert!((5.0..6.5).contains(&q.loss_pct), "{}", q.loss_pct);
        assert_eq!(q.bars, 2, "5-10 % lost");
        assert_eq!(bars(&seconds(10, 60, 40.0, None)), 0, "over a quarter lost");
        assert_eq!(bars(&seconds(10, 0, 350.0, None)), 2, "350 ms round trip");
        assert_eq!(
            bars(&seconds(10, 0, 40.0, Some(2))),
            2,
            "a freeze every 2 s"
        );
        // Only the last seconds count: old loss is forgiven.
        let mut h = seconds(10, 60, 40.0, None);
        let base = h.back().unwrap().clone();
        for i in 1..=6 {
            h.push_back(PeerCallStats {
                audio_packets_received: base.audio_packets_received + 50 * i,
                ..base.clone()
            });
        }
        assert_eq!(bars(&h), 4);
    }

    #[test]
    fn no_bars_while_not_connected_and_no_verdict_before_the_first_second() {
        let mut h = seconds(3, 0, 40.0, None);
        h.back_mut().unwrap().connected = false;
        assert_eq!(bars(&h), 0);
        assert_eq!(net_quality(&h).unwrap().details(), "Not connected");
        assert_eq!(net_quality(&VecDeque::new()), None);
    }
}
