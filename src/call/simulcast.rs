//! Simulcast on the sending side, pure: the layers a camera is sent as through an SFU
//! (sizes and bitrates from the source and the configured bitrate) and how often the
//! small layers are encoded when the encoder is short of CPU. Time is passed in.

use std::time::{Duration, Instant};

/// Layers a camera sends through an SFU: full, half and quarter size (1280x720 ->
/// 640x360 -> 320x180).
pub const LAYERS: usize = 3;

/// One layer: its picture size and bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    pub width: usize,
    pub height: usize,
    pub bitrate_bps: u32,
}

/// The layers of a `source`-sized camera whose largest layer gets `top_bps`, smallest
/// first. Each layer halves the previous one's width and height (kept even, at least
/// 16) and gets a third of its bitrate: a quarter of the pixels needs more than a
/// quarter of the bits for the same quality. Always `count` layers (the track has an
/// SSRC for each), even if a tiny source makes two of them the same size.
pub fn layers((w, h): (usize, usize), top_bps: u32, count: usize) -> Vec<LayerSpec> {
    let count = count.max(1);
    (0..count)
        .map(|i| {
            let div = 1usize << (count - 1 - i);
            let even = |v: usize| ((v / div) & !1).max(16).min(v);
            LayerSpec {
                width: even(w),
                height: even(h),
                bitrate_bps: (top_bps / 3u32.pow((count - 1 - i) as u32)).max(30_000),
            }
        })
        .collect()
}

/// The largest layer's rate when all `count` layers together may send `total_bps`
/// (each layer takes a third of the one above): what the estimate allows the camera is
/// what all its layers send, not the largest one alone.
pub fn top_for_total(total_bps: u32, count: usize) -> u32 {
    let shares: f64 = (0..count.max(1)).map(|k| 3f64.powi(-(k as i32))).sum();
    (f64::from(total_bps) / shares) as u32
}

/// What `count` layers send together when the largest sends `top_bps`.
pub fn total_for_top(top_bps: u32, count: usize) -> u32 {
    let shares: f64 = (0..count.max(1)).map(|k| 3f64.powi(-(k as i32))).sum();
    (f64::from(top_bps) * shares).min(f64::from(u32::MAX)) as u32
}

/// The least a layer of `width` x `height` is worth sending at: 0.65 bit/s per pixel
/// (Chromium's simulcast minimums: 600 kbit/s at 720p, 150 at 360p), at least 30 kbit/s.
pub fn min_bps(width: usize, height: usize) -> u32 {
    ((width * height) as f64 * 0.65).max(30_000.0) as u32
}

/// A layer switched off comes back only when its share is this much above its minimum,
/// so an estimate at the edge does not flip it (each return costs a keyframe).
const BACK_MARGIN: f64 = 1.25;

/// How many layers, from the smallest, are sent when all together may send `total_bps`
/// and `current` are sent now: the most whose largest still gets its [`min_bps`]. Behind
/// a narrow uplink a blurred, frame-skipping 720p helps no subscriber; what the link
/// carries goes to the layers below instead (Chromium does the same). Never below one.
pub fn active_layers(
    source: (usize, usize),
    total_bps: u32,
    count: usize,
    current: usize,
) -> usize {
    let sizes = layers(source, 0, count);
    (1..=count.max(1))
        .rev()
        .find(|&k| {
            let top = &sizes[k - 1];
            let margin = if k > current { BACK_MARGIN } else { 1.0 };
            f64::from(top_for_total(total_bps, k))
                >= f64::from(min_bps(top.width, top.height)) * margin
        })
        .unwrap_or(1)
}

/// Each layer's bitrate when the `active` smallest share `total_bps` (the rest get 0).
pub fn rates(total_bps: u32, count: usize, active: usize) -> Vec<u32> {
    let top = top_for_total(total_bps, active);
    (0..count.max(1))
        .map(|i| match i < active {
            true => (top / 3u32.pow((active - 1 - i) as u32)).max(30_000),
            false => 0,
        })
        .collect()
}

/// Share of the frame interval the encodes of one frame may take before the small
/// layers are encoded less often, and below which they go back up.
const BUSY_HIGH: f64 = 0.6;
const BUSY_LOW: f64 = 0.3;
/// How long the load must stay low before the small layers' rate goes back up.
const RELAX_AFTER: Duration = Duration::from_secs(2);
/// How long the load must stay high before the small layers' rate goes down again
/// (it takes a moment for a change to show in the average).
const SHED_AFTER: Duration = Duration::from_millis(500);
/// At most every third frame is skipped for the small layers: 30 fps -> 10 fps.
const MAX_EVERY: u32 = 3;
/// Weight of a new frame in the load average.
const ALPHA: f64 = 0.1;

/// Keeps the extra encode CPU of simulcast bounded: when encoding one frame in every
/// layer takes more than `BUSY_HIGH` of the frame interval, the small layers are
/// encoded every 2nd (then 3rd) frame; the largest layer keeps its full rate.
#[derive(Debug)]
pub struct SmallLayerPacer {
    every: u32,
    frame: u64,
    load: Option<f64>,
    since: Option<Instant>,
}

impl Default for SmallLayerPacer {
    fn default() -> Self {
        Self {
            every: 1,
            frame: 0,
            load: None,
            since: None,
        }
    }
}

impl SmallLayerPacer {
    /// Whether the small layers are encoded for the next frame (counts the frame).
    pub fn small_layers_now(&mut self) -> bool {
        let now = self.frame.is_multiple_of(u64::from(self.every));
        self.frame += 1;
        now
    }

    /// The small layers are encoded every this many frames.
    pub fn every(&self) -> u32 {
        self.every
    }

    /// After a frame: how long its encodes took, at `now`, with frames `interval` apart.
    /// Returns the new `every` when it changed.
    pub fn record(&mut self, now: Instant, busy: Duration, interval: Duration) -> Option<u32> {
        let sample = busy.as_secs_f64() / interval.as_secs_f64().max(1e-3);
        let load = match self.load {
            Some(l) => l + ALPHA * (sample - l),
            None => sample,
        };
        self.load = Some(load);
        let (wanted, after) = if load > BUSY_HIGH && self.every < MAX_EVERY {
            (self.every + 1, SHED_AFTER)
        } else if load < BUSY_LOW && self.every > 1 {
            (self.every - 1, RELAX_AFTER)
        } else {
            self.since = None;
            return None;
        };
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) < after {
            return None;
        }
        self.every = wanted;
        self.since = None;
        Some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_720p_camera_is_sent_as_720p_360p_and_180p_with_falling_bitrates() {
        let l = layers((1280, 720), 1_500_000, LAYERS);
        let sizes: Vec<_> = l.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(320, 180), (640, 360), (1280, 720)]);
        assert_eq!(l[2].bitrate_bps, 1_500_000);
        assert_eq!(l[1].bitrate_bps, 500_000);
        assert_eq!(l[0].bitrate_bps, 166_666);
    }

    #[test]
    fn the_layers_together_send_what_the_camera_may() {
        let total = 1_300_000;
        let l = layers((1280, 720), top_for_total(total, LAYERS), LAYERS);
        let sum: u32 = l.iter().map(|l| l.bitrate_bps).sum();
        assert!(sum <= total && sum > total - 1_000, "{sum}");
        assert_eq!(top_for_total(total, 1), total);
        let top = 1_000_000;
        let back = top_for_total(total_for_top(top, LAYERS), LAYERS);
        assert!(back.abs_diff(top) <= 1, "{back}");
        assert_eq!(total_for_top(top, 1), top);
    }

    #[test]
    fn a_tiny_source_still_has_every_layer_none_below_16_pixels() {
        let l = layers((32, 32), 100_000, LAYERS);
        let sizes: Vec<_> = l.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(16, 16), (16, 16), (32, 32)]);
        assert!(l.iter().all(|l| l.bitrate_bps >= 30_000));
    }

    #[test]
    fn behind_a_narrow_uplink_the_large_layers_go_and_their_share_goes_to_the_rest() {
        let hd = (1280, 720);
        assert_eq!(active_layers(hd, 2_500_000, LAYERS, LAYERS), 3);
        // 500 kbit/s would give 720p 346k, under its 600k: 360p takes 375k, 180p 125k.
        assert_eq!(active_layers(hd, 500_000, LAYERS, LAYERS), 2);
        assert_eq!(rates(500_000, LAYERS, 2), [125_000, 375_000, 0]);
        // 120 kbit/s: 360p would get 90k of its 150k; 180p alone.
        assert_eq!(active_layers(hd, 120_000, LAYERS, 2), 1);
        assert_eq!(active_layers(hd, 10_000, LAYERS, 1), 1, "never none");
        assert_eq!(rates(120_000, LAYERS, 1), [120_000, 0, 0]);
    }

    #[test]
    fn a_layer_comes_back_only_with_room_to_spare() {
        let hd = (1280, 720);
        // 720p's minimum is 599k: all three need 865k, with the margin 1.08M.
        assert_eq!(active_layers(hd, 900_000, LAYERS, 3), 3, "kept");
        assert_eq!(active_layers(hd, 900_000, LAYERS, 2), 2, "not back yet");
        assert_eq!(active_layers(hd, 1_100_000, LAYERS, 2), 3, "back");
    }

    const FRAME: Duration = Duration::from_millis(33);

    fn run(p: &mut SmallLayerPacer, t: &mut Instant, busy_ms: u64, frames: u32) {
        for _ in 0..frames {
            *t += FRAME;
            p.record(*t, Duration::from_millis(busy_ms), FRAME);
        }
    }

    #[test]
    fn small_layers_keep_full_rate_while_encoding_is_cheap() {
        let mut p = SmallLayerPacer::default();
        let mut t = Instant::now();
        run(&mut p, &mut t, 8, 300);
        assert_eq!(p.every(), 1);
        assert!((0..10).all(|_| p.small_layers_now()));
    }

    #[test]
    fn short_of_cpu_the_small_layers_drop_to_every_second_then_third_frame() {
        let mut p = SmallLayerPacer::default();
        let mut t = Instant::now();
        // 25 ms of a 33 ms frame: 75 % busy.
        run(&mut p, &mut t, 25, 10);
        assert_eq!(p.every(), 1, "not at the first busy frames");
        run(&mut p, &mut t, 25, 20);
        assert_eq!(p.every(), 2, "after half a second busy");
        let plan: Vec<bool> = (0..4).map(|_| p.small_layers_now()).collect();
        assert_eq!(plan.iter().filter(|x| **x).count(), 2, "{plan:?}");
        run(&mut p, &mut t, 25, 30);
        assert_eq!(p.every(), 3);
        run(&mut p, &mut t, 30, 100);
        assert_eq!(p.every(), 3, "never below a third of the rate");
    }

    #[test]
    fn the_small_layers_recover_only_after_two_quiet_seconds() {
        let mut p = SmallLayerPacer::default();
        let mut t = Instant::now();
        run(&mut p, &mut t, 25, 20);
        assert_eq!(p.every(), 2);
        // Between the thresholds: stays.
        run(&mut p, &mut t, 15, 200);
        assert_eq!(p.every(), 2, "45 % busy is neither short nor idle");
        run(&mut p, &mut t, 5, 60);
        assert_eq!(p.every(), 2, "quiet, but not for two seconds yet");
        run(&mut p, &mut t, 5, 40);
        assert_eq!(p.every(), 1);
    }
}
