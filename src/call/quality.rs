//! What a person watching a remote video sees, from the times frames were shown: freezes
//! as the W3C stats define them, the long gaps a viewer notices, and a per-second
//! timeline of frame rate and resolution. Pure: times are passed in (µs).

use serde::{Deserialize, Serialize};

/// Frames the running average interval is taken over (Chromium's window).
const AVERAGE_OVER: usize = 30;
/// A gap this long is a stall anyone notices, whatever the frame rate.
pub const VISIBLE_GAP_US: u64 = 200_000;

/// One second of received video.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct VideoSecond {
    /// Seconds since the first frame.
    pub t: u32,
    pub frames: u32,
    pub width: u32,
    pub height: u32,
}

/// A gap between two shown frames longer than [`VISIBLE_GAP_US`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Gap {
    /// When the frame after the gap was shown (wall clock, µs).
    pub ended_us: u64,
    pub ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VideoQuality {
    /// W3C `freezeCount`: frame intervals longer than max(3 x average, average + 150 ms).
    pub freezes: u32,
    /// W3C `totalFreezesDuration`, in ms.
    pub freeze_ms: f64,
    /// Every gap over 200 ms, in order.
    pub gaps: Vec<Gap>,
    pub timeline: Vec<VideoSecond>,
    /// W3C `totalInterFrameDelay` and `totalSquaredInterFrameDelay` (seconds, seconds
    /// squared) over `inter_frame_delays` intervals: how evenly frames were shown.
    pub total_inter_frame_delay: f64,
    pub total_squared_inter_frame_delay: f64,
    pub inter_frame_delays: u64,
    /// When the first frame was shown (wall clock, µs).
    pub first_us: Option<u64>,
    #[serde(skip)]
    last_us: Option<u64>,
    #[serde(skip)]
    intervals: std::collections::VecDeque<u64>,
}

impl VideoQuality {
    /// A frame of `width` x `height` was shown at `at_us`.
    pub fn on_frame(&mut self, at_us: u64, width: u32, height: u32) {
        let first = *self.first_us.get_or_insert(at_us);
        if let Some(last) = self.last_us {
            let interval = at_us.saturating_sub(last);
            if let Some(average) = self.average_interval() {
                let threshold = (3 * average).max(average + 150_000);
                if interval > threshold {
                    self.freezes += 1;
                    self.freeze_ms += interval as f64 / 1000.0;
                }
            }
            if interval > VISIBLE_GAP_US {
                self.gaps.push(Gap {
                    ended_us: at_us,
                    ms: interval as f64 / 1000.0,
                });
            }
            let seconds = interval as f64 / 1e6;
            self.total_inter_frame_delay += seconds;
            self.total_squared_inter_frame_delay += seconds * seconds;
            self.inter_frame_delays += 1;
            self.intervals.push_back(interval);
            if self.intervals.len() > AVERAGE_OVER {
                self.intervals.pop_front();
            }
        }
        self.last_us = Some(self.last_us.map_or(at_us, |l| l.max(at_us)));
        let t = (at_us.saturating_sub(first) / 1_000_000) as u32;
        while self.timeline.len() <= t as usize {
            let t = self.timeline.len() as u32;
            self.timeline.push(VideoSecond {
                t,
                ..VideoSecond::default()
            });
        }
        let second = &mut self.timeline[t as usize];
        second.frames += 1;
        second.width = width;
        second.height = height;
    }

    fn average_interval(&self) -> Option<u64> {
        (!self.intervals.is_empty())
            .then(|| self.intervals.iter().sum::<u64>() / self.intervals.len() as u64)
    }

    /// The standard deviation of the intervals between shown frames, in ms: judder (a
    /// steady 30 fps is 0; a link that jitters by 20 ms shows as about that much).
    pub fn inter_frame_delay_sd_ms(&self) -> f64 {
        let n = self.inter_frame_delays as f64;
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.total_inter_frame_delay / n;
        let var = (self.total_squared_inter_frame_delay / n - mean * mean).max(0.0);
        var.sqrt() * 1000.0
    }

    /// Time spent in gaps over 200 ms that ended after `from_us`, in ms.
    pub fn gap_ms_after(&self, from_us: u64) -> f64 {
        self.gaps
            .iter()
            .filter(|g| g.ended_us > from_us)
            .map(|g| {
                let start = g.ended_us - (g.ms * 1000.0) as u64;
                (g.ended_us - start.max(from_us)) as f64 / 1000.0
            })
            .fold(0.0, |a, b| a + b)
    }

    /// Frames per second over the whole seconds from `from_s` on (the last, partial
    /// second left out).
    pub fn fps_from(&self, from_s: usize) -> f64 {
        let whole = self.timeline.len().saturating_sub(1);
        if whole <= from_s {
            return 0.0;
        }
        let seconds = &self.timeline[from_s..whole];
        seconds.iter().map(|s| f64::from(s.frames)).sum::<f64>() / seconds.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn shown(times_ms: impl IntoIterator<Item = u64>) -> VideoQuality {
        let mut q = VideoQuality::default();
        for t in times_ms {
            q.on_frame(t * MS, 1280, 720);
        }
        q
    }

    #[test]
    fn a_steady_30_fps_stream_has_no_freezes_and_30_frames_a_second() {
        let q = shown((0..300).map(|i| i * 100 / 3));
        assert_eq!((q.freezes, q.freeze_ms), (0, 0.0));
        assert!(q.gaps.is_empty());
        assert_eq!(q.timeline.len(), 10);
        assert!((q.fps_from(0) - 30.0).abs() < 1.0, "{}", q.fps_from(0));
        assert_eq!((q.timeline[3].width, q.timeline[3].height), (1280, 720));
    }

    #[test]
    fn frames_shown_unevenly_show_as_spread_intervals() {
        let even = shown((0..300).map(|i| i * 100 / 3));
        assert!(
            even.inter_frame_delay_sd_ms() < 1.0,
            "{}",
            even.inter_frame_delay_sd_ms()
        );
        // Every other frame 20 ms late: intervals of 53 and 13 ms.
        let uneven = shown((0..300).map(|i| i * 100 / 3 + if i % 2 == 1 { 20 } else { 0 }));
        let sd = uneven.inter_frame_delay_sd_ms();
        assert!((sd - 20.0).abs() < 1.0, "{sd}");
    }

    #[test]
    fn a_half_second_stall_is_one_freeze_of_its_length() {
        let mut times: Vec<u64> = (0..60).map(|i| i * 33).collect();
        let resume = 59 * 33 + 500;
        times.extend((0..30).map(|i| resume + i * 33));
        let q = shown(times);
        assert_eq!(q.freezes, 1);
        assert!((q.freeze_ms - 500.0).abs() < 1.0, "{}", q.freeze_ms);
        assert_eq!(q.gaps.len(), 1);
        assert_eq!(q.gaps[0].ended_us, resume * MS);
    }

    #[test]
    fn a_slow_but_even_stream_is_not_frozen() {
        // 5 fps throughout: every interval is the average.
        let q = shown((0..50).map(|i| i * 200));
        assert_eq!(q.freezes, 0);
        assert!((q.fps_from(0) - 5.0).abs() < 0.01);
    }

    #[test]
    fn gap_time_counts_only_what_lies_after_the_start() {
        let q = shown([0, 1000, 1033, 3033]);
        // Gaps: 0..1000 and 1033..3033; from 2000 on only 1033 ms of the second counts.
        assert!((q.gap_ms_after(2000 * MS) - 1033.0).abs() < 1.0);
        assert!((q.gap_ms_after(0) - 3000.0).abs() < 1.0);
    }
}
