//! Which simulcast layer a subscriber asks Janus for, per feed (pure, time passed in):
//! the layer nearest the feed's tile in size, no more than the bandwidth carries. A
//! 3 x 3 grid's 421x237 tile takes 320x180 (scaled up 1.3 times) rather than 640x360
//! (decoded at four times the pixels only to be scaled down): a thumbnail costs what a
//! thumbnail needs, as in Jitsi's and Meet's grids.
//! Down at once (a tile shrank, the estimate fell); up only once the bandwidth has
//! allowed the larger layer with a margin for a second, so a wobbling estimate does not
//! flip layers (each switch costs a keyframe).

use std::time::{Duration, Instant};

use crate::call::simulcast::LayerSpec;

/// A layer up needs its bitrate times this within the budget...
const UP_MARGIN: f64 = 1.25;
/// ...for this long.
const UP_AFTER: Duration = Duration::from_secs(1);

/// Where a feed is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tile {
    /// Nowhere small (no window: a headless analyser): the largest layer.
    #[default]
    Any,
    /// In a tile not drawn yet: the smallest layer until it is. Its first picture comes
    /// soonest, and a member joining a big room does not start with every feed's
    /// largest keyframe at once.
    Pending,
    /// In a tile this size (pixels).
    Size(u32, u32),
}

/// What the engine knows about one feed's video when it chooses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    pub tile: Tile,
    /// This feed's share of the downlink estimate; None: no estimate, no limit.
    pub budget_bps: Option<u32>,
    /// A layer asked for outright (headless tests, a "high quality" toggle).
    pub forced: Option<u8>,
    /// How many layers, from the smallest, the publisher sends now; None: all.
    pub sent: Option<u8>,
}

#[derive(Debug, Default)]
pub struct LayerChoice {
    current: Option<u8>,
    /// Per layer: since when the budget has carried it with the margin.
    carried_since: Vec<Option<Instant>>,
    /// The current layer stands in for a tile not drawn yet: nothing to flap against.
    provisional: bool,
}

impl LayerChoice {
    /// The layer (0 = smallest of `layers`) to receive at `now`.
    pub fn update(&mut self, now: Instant, layers: &[LayerSpec], wants: Wants) -> u8 {
        let sent = wants.sent.map_or(layers.len(), |n| usize::from(n.max(1)));
        let layers = &layers[..sent.min(layers.len())];
        let top = layers.len().saturating_sub(1) as u8;
        self.carried_since.resize(layers.len(), None);
        for (since, l) in self.carried_since.iter_mut().zip(layers) {
            let carried = wants
                .budget_bps
                .is_none_or(|b| f64::from(l.bitrate_bps) * UP_MARGIN <= f64::from(b));
            match carried {
                true => _ = since.get_or_insert(now),
                false => *since = None,
            }
        }
        if let Some(f) = wants.forced {
            let f = f.min(top);
            self.current = Some(f);
            return f;
        }
        let by_tile = match wants.tile {
            Tile::Any => top,
            Tile::Pending => 0,
            Tile::Size(w, h) => nearest(layers, (w, h)),
        };
        let by_budget = match wants.budget_bps {
            None => top,
            Some(b) => layers
                .iter()
                .rposition(|l| l.bitrate_bps <= b)
                .map_or(0, |i| i as u8),
        };
        let down_to = by_tile.min(by_budget);
        let provisional = std::mem::replace(&mut self.provisional, wants.tile == Tile::Pending);
        let chosen = match self.current {
            // The first choice has nothing to flap against.
            None => down_to,
            Some(_) if provisional => down_to,
            Some(c) if down_to < c => down_to,
            Some(c) => (c + 1..=by_tile)
                .rev()
                .find(|&l| {
                    wants.budget_bps.is_none()
                        || self.carried_since[usize::from(l)]
                            .is_some_and(|s| now.saturating_duration_since(s) >= UP_AFTER)
                })
                .unwrap_or(c),
        };
        self.current = Some(chosen);
        chosen
    }
}

/// The layer whose size is nearest the tile's (by the larger of the width and height
/// ratios, in octaves: between two layers the boundary is their geometric mean).
fn nearest(layers: &[LayerSpec], (w, h): (u32, u32)) -> u8 {
    let octaves = |l: &LayerSpec| {
        let rw = l.width as f64 / f64::from(w.max(1));
        let rh = l.height as f64 / f64::from(h.max(1));
        // The side the tile fills: the picture is fitted into it.
        rw.min(rh).log2().abs()
    };
    layers
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| octaves(a).total_cmp(&octaves(b)))
        .map_or(0, |(i, _)| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::simulcast::{LAYERS, layers};

    fn ladder() -> Vec<LayerSpec> {
        // 320x180 @ 166k, 640x360 @ 500k, 1280x720 @ 1.5M.
        layers((1280, 720), 1_500_000, LAYERS)
    }

    fn tile(w: u32, h: u32) -> Wants {
        Wants {
            tile: Tile::Size(w, h),
            ..Wants::default()
        }
    }

    #[test]
    fn a_thumbnail_takes_the_small_layer_and_a_full_tile_the_large_one() {
        let now = Instant::now();
        let l = ladder();
        assert_eq!(LayerChoice::default().update(now, &l, tile(240, 135)), 0);
        assert_eq!(
            LayerChoice::default().update(now, &l, tile(340, 190)),
            0,
            "a little larger than 180p still takes 180p"
        );
        assert_eq!(LayerChoice::default().update(now, &l, tile(600, 340)), 1);
        assert_eq!(
            LayerChoice::default().update(now, &l, tile(421, 237)),
            0,
            "a 3 x 3 grid's tile is nearer 180p than 360p"
        );
        assert_eq!(LayerChoice::default().update(now, &l, tile(520, 292)), 1);
        assert_eq!(LayerChoice::default().update(now, &l, tile(1280, 720)), 2);
        assert_eq!(LayerChoice::default().update(now, &l, tile(1920, 1080)), 2);
        assert_eq!(
            LayerChoice::default().update(now, &l, Wants::default()),
            2,
            "no tile size known: the largest"
        );
    }

    #[test]
    fn a_feed_whose_tile_is_not_drawn_yet_starts_small_and_goes_up_once_it_is() {
        let mut c = LayerChoice::default();
        let l = ladder();
        let now = Instant::now();
        let pending = Wants {
            tile: Tile::Pending,
            ..Wants::default()
        };
        assert_eq!(c.update(now, &l, pending), 0);
        assert_eq!(
            c.update(now, &l, tile(1280, 720)),
            2,
            "no estimate holds it"
        );
        let mut c = LayerChoice::default();
        let budget = Wants {
            budget_bps: Some(3_000_000),
            ..pending
        };
        assert_eq!(c.update(now, &l, budget), 0);
        let drawn = Wants {
            tile: Tile::Size(640, 360),
            ..budget
        };
        assert_eq!(c.update(now, &l, drawn), 1, "the budget had room: at once");
        let grown = Wants {
            tile: Tile::Size(1280, 720),
            ..budget
        };
        assert_eq!(
            c.update(now, &l, grown),
            1,
            "from then on, up after a second"
        );
    }

    #[test]
    fn the_budget_caps_the_layer_whatever_the_tile() {
        let now = Instant::now();
        let l = ladder();
        let w = |b| Wants {
            tile: Tile::Size(1280, 720),
            budget_bps: Some(b),
            forced: None,
            sent: None,
        };
        assert_eq!(LayerChoice::default().update(now, &l, w(2_000_000)), 2);
        assert_eq!(LayerChoice::default().update(now, &l, w(800_000)), 1);
        assert_eq!(LayerChoice::default().update(now, &l, w(200_000)), 0);
        assert_eq!(
            LayerChoice::default().update(now, &l, w(50_000)),
            0,
            "never below the smallest"
        );
    }

    #[test]
    fn down_at_once_up_after_a_second_of_room() {
        let mut c = LayerChoice::default();
        let l = ladder();
        let t0 = Instant::now();
        let w = |b| Wants {
            tile: Tile::Any,
            budget_bps: Some(b),
            forced: None,
            sent: None,
        };
        assert_eq!(c.update(t0, &l, w(2_000_000)), 2);
        let t = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(c.update(t(100), &l, w(600_000)), 1, "down at once");
        // Room for the large layer again (1.5M x 1.25 <= 2M)...
        assert_eq!(c.update(t(200), &l, w(2_000_000)), 1);
        assert_eq!(
            c.update(t(900), &l, w(2_000_000)),
            1,
            "...not for a second yet"
        );
        // A dip resets the second.
        assert_eq!(c.update(t(1000), &l, w(1_700_000)), 1);
        assert_eq!(c.update(t(1100), &l, w(2_000_000)), 1);
        assert_eq!(c.update(t(2000), &l, w(2_000_000)), 1);
        assert_eq!(c.update(t(2100), &l, w(2_000_000)), 2);
    }

    #[test]
    fn a_growing_tile_goes_up_at_once_when_the_bandwidth_had_room() {
        let mut c = LayerChoice::default();
        let l = ladder();
        let t0 = Instant::now();
        let w = |(x, y)| Wants {
            tile: Tile::Size(x, y),
            budget_bps: Some(3_000_000),
            forced: None,
            sent: None,
        };
        assert_eq!(c.update(t0, &l, w((320, 180))), 0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(c.update(later, &l, w((1280, 720))), 2);
        assert_eq!(c.update(later, &l, w((320, 180))), 0, "and down at once");
    }

    #[test]
    fn a_layer_the_publisher_stopped_is_not_asked_for_and_is_again_when_it_returns() {
        let mut c = LayerChoice::default();
        let l = ladder();
        let t0 = Instant::now();
        let w = |sent| Wants {
            tile: Tile::Size(1280, 720),
            budget_bps: None,
            forced: None,
            sent,
        };
        assert_eq!(c.update(t0, &l, w(None)), 2);
        assert_eq!(c.update(t0, &l, w(Some(2))), 1, "its uplink narrowed");
        assert_eq!(c.update(t0, &l, w(Some(1))), 0);
        assert_eq!(c.update(t0, &l, w(Some(3))), 2, "back");
        let forced = Wants {
            forced: Some(2),
            ..w(Some(2))
        };
        assert_eq!(c.update(t0, &l, forced), 1, "even forced");
    }

    #[test]
    fn a_forced_layer_wins_and_switches_at_once() {
        let mut c = LayerChoice::default();
        let l = ladder();
        let now = Instant::now();
        let forced = |f| Wants {
            tile: Tile::Size(160, 90),
            budget_bps: Some(100_000),
            forced: Some(f),
            sent: None,
        };
        assert_eq!(c.update(now, &l, forced(0)), 0);
        assert_eq!(c.update(now, &l, forced(2)), 2);
        assert_eq!(c.update(now, &l, forced(7)), 2, "clamped to the largest");
    }
}
