//! Which tiles the call view draws, where and on which page, and who the active speaker
//! is: pure, no egui. The view hands in the tiles and the area and paints the result.

use std::time::{Duration, Instant};

use crate::call::TrackRole;

use super::model::Model;
use super::video::{SELF_ID, TileKey};

/// Tiles on one page of the grid (3 x 3).
pub const PAGE_SIZE: usize = 9;
/// The shape tiles keep (most cameras and screens are 16:9).
const ASPECT: f32 = 16.0 / 9.0;
/// Space between tiles, in points.
const GAP: f32 = 8.0;
/// Above this level (dBFS) a member counts as speaking.
pub const SPEAKING_DBFS: f32 = -40.0;
/// A new voice must be this much louder than the current speaker's to take over...
const TAKEOVER_DB: f32 = 6.0;
/// ...for this long, so a cough or a short "yes" doesn't flip the stage.
const TAKEOVER_HOLD: Duration = Duration::from_millis(1200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutMode {
    /// Everyone the same size, paged beyond [`PAGE_SIZE`].
    #[default]
    Grid,
    /// The active speaker large, the others in a strip below.
    Speaker,
}

/// A rectangle in points; egui's `Rect` stays out of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Area {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }
}

/// How a tile is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Alone in the whole window (double-clicked).
    Full,
    /// Large: pinned, a shared screen or the active speaker.
    Stage,
    /// Beside the stage, small.
    Strip,
    Grid,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub tile: TileKey,
    pub area: Area,
    pub slot: Slot,
}

/// What to draw: the tiles of the current page, and the paging.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Arrangement {
    pub tiles: Vec<Placed>,
    /// The page shown (the asked one, clamped to the pages there are).
    pub page: usize,
    pub pages: usize,
}

/// The user's layout choices for the call.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub mode: LayoutMode,
    pub pinned: Option<TileKey>,
    pub full_screen: Option<TileKey>,
    pub hide_self: bool,
    pub page: usize,
    pub speaker: ActiveSpeaker,
}

impl Layout {
    /// Forgets what belonged to the call just left; the mode and self-view choice stay.
    pub fn reset_call(&mut self) {
        self.pinned = None;
        self.full_screen = None;
        self.page = 0;
        self.speaker = ActiveSpeaker::default();
    }

    /// Places `tiles` (the people's cameras in room order, then the shared screens that
    /// have a picture) in `area`. Precedence for the stage: a pin, a shared screen, and in
    /// speaker view the active speaker.
    pub fn arrange(&self, tiles: &[TileKey], area: Area) -> Arrangement {
        let self_tile = (SELF_ID.to_string(), TrackRole::Camera);
        let tiles: Vec<&TileKey> = tiles
            .iter()
            .filter(|t| !(self.hide_self && **t == self_tile))
            .collect();
        if let Some(full) = self.full_screen.as_ref().filter(|f| tiles.contains(f)) {
            return Arrangement {
                tiles: vec![Placed {
                    tile: full.clone(),
                    area,
                    slot: Slot::Full,
                }],
                page: 0,
                pages: 1,
            };
        }
        let speaker = || {
            let current = self
                .speaker
                .current()
                .map(|id| (id.to_string(), TrackRole::Camera));
            let first_remote = tiles
                .iter()
                .find(|t| t.0 != SELF_ID && t.1 == TrackRole::Camera)
                .map(|t| (*t).clone());
            current
                .filter(|c| tiles.contains(&c))
                .or(first_remote)
                .or_else(|| tiles.first().map(|t| (*t).clone()))
        };
        let stage = self
            .pinned
            .clone()
            .filter(|p| tiles.contains(&p))
            .or_else(|| {
                tiles
                    .iter()
                    .find(|t| t.1 == TrackRole::Screen)
                    .map(|t| (*t).clone())
            })
            .or_else(|| (self.mode == LayoutMode::Speaker).then(speaker).flatten());
        match stage {
            Some(stage) => {
                let others: Vec<&TileKey> = tiles.into_iter().filter(|t| **t != stage).collect();
                stage_and_strip(stage, &others, area, self.page)
            }
            None => grid(&tiles, area, self.page),
        }
    }
}

/// The stage above, a strip of small tiles below (paged when they don't fit).
fn stage_and_strip(stage: TileKey, others: &[&TileKey], area: Area, page: usize) -> Arrangement {
    if others.is_empty() {
        return Arrangement {
            tiles: vec![Placed {
                tile: stage,
                area,
                slot: Slot::Stage,
            }],
            page: 0,
            pages: 1,
        };
    }
    let strip_h = (area.h * 0.22).clamp(72.0, 180.0);
    let tile_w = strip_h * ASPECT;
    let per_page = (((area.w + GAP) / (tile_w + GAP)).floor() as usize).max(1);
    let pages = others.len().div_ceil(per_page);
    let page = page.min(pages - 1);
    let shown = &others[page * per_page..others.len().min((page + 1) * per_page)];
    let row_w = shown.len() as f32 * (tile_w + GAP) - GAP;
    let strip_y = area.y + area.h - strip_h;
    let mut out = vec![Placed {
        tile: stage,
        area: Area::new(area.x, area.y, area.w, area.h - strip_h - GAP),
        slot: Slot::Stage,
    }];
    let left = area.x + (area.w - row_w).max(0.0) / 2.0;
    for (i, t) in shown.iter().enumerate() {
        out.push(Placed {
            tile: (*t).clone(),
            area: Area::new(left + i as f32 * (tile_w + GAP), strip_y, tile_w, strip_h),
            slot: Slot::Strip,
        });
    }
    Arrangement {
        tiles: out,
        page,
        pages,
    }
}

/// Up to 3 x 3 equal tiles as large as the area allows at [`ASPECT`], the last row
/// centred.
fn grid(tiles: &[&TileKey], area: Area, page: usize) -> Arrangement {
    if tiles.is_empty() {
        return Arrangement::default();
    }
    let pages = tiles.len().div_ceil(PAGE_SIZE);
    let page = page.min(pages - 1);
    let shown = &tiles[page * PAGE_SIZE..tiles.len().min((page + 1) * PAGE_SIZE)];
    let (cols, rows, w, h) = grid_shape(shown.len(), area.w, area.h);
    let top = area.y + (area.h - rows as f32 * (h + GAP) + GAP).max(0.0) / 2.0;
    let mut out = Vec::with_capacity(shown.len());
    for (i, t) in shown.iter().enumerate() {
        let (row, col) = (i / cols, i % cols);
        let in_row = cols.min(shown.len() - row * cols);
        let row_w = in_row as f32 * (w + GAP) - GAP;
        let left = area.x + (area.w - row_w).max(0.0) / 2.0;
        out.push(Placed {
            tile: (*t).clone(),
            area: Area::new(
                left + col as f32 * (w + GAP),
                top + row as f32 * (h + GAP),
                w,
                h,
            ),
            slot: Slot::Grid,
        });
    }
    Arrangement {
        tiles: out,
        page,
        pages,
    }
}

/// The columns and rows (at most 3 each) giving `n` tiles the largest size at
/// [`ASPECT`] in `w` x `h`, and that size.
pub fn grid_shape(n: usize, w: f32, h: f32) -> (usize, usize, f32, f32) {
    let mut best = (1, 1, 0.0, 0.0);
    for cols in 1..=n.clamp(1, 3) {
        let rows = n.div_ceil(cols);
        if rows > 3 {
            continue;
        }
        let cell_w = ((w + GAP) / cols as f32 - GAP).max(1.0);
        let cell_h = ((h + GAP) / rows as f32 - GAP).max(1.0);
        let tw = cell_w.min(cell_h * ASPECT);
        if tw > best.2 {
            best = (cols, rows, tw, tw / ASPECT);
        }
    }
    best
}

/// Who speaks, by audio level, with hysteresis: the stage follows a new voice only once it
/// has been clearly louder for a while, and stays on the last speaker through silence.
#[derive(Debug, Clone, Default)]
pub struct ActiveSpeaker {
    current: Option<String>,
    challenger: Option<(String, Instant)>,
}

impl ActiveSpeaker {
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Takes the levels (dBFS; None: silent or muted) of the members present now.
    pub fn update(&mut self, levels: &[(String, Option<f32>)], now: Instant) -> Option<&str> {
        let level_of = |id: &str| {
            levels
                .iter()
                .find(|(m, _)| m == id)
                .map(|(_, l)| l.unwrap_or(f32::NEG_INFINITY))
        };
        let current_level = self.current.as_deref().and_then(level_of);
        if current_level.is_none() {
            // Gone from the call.
            self.current = None;
        }
        let loudest = levels
            .iter()
            .filter_map(|(id, l)| l.filter(|l| *l > SPEAKING_DBFS).map(|l| (id, l)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((id, level)) = loudest else {
            self.challenger = None;
            return self.current();
        };
        let Some(current) = current_level else {
            self.current = Some(id.clone());
            self.challenger = None;
            return self.current();
        };
        let clearly_louder = self.current.as_ref() != Some(id)
            && (current <= SPEAKING_DBFS || level >= current + TAKEOVER_DB);
        if !clearly_louder {
            self.challenger = None;
            return self.current();
        }
        match &self.challenger {
            Some((c, since)) if c == id => {
                if now.duration_since(*since) >= TAKEOVER_HOLD {
                    self.current = Some(id.clone());
                    self.challenger = None;
                }
            }
            _ => self.challenger = Some((id.clone(), now)),
        }
        self.current()
    }
}

/// The layout actions of the call view.
impl Model {
    /// The tiles there are, in room order (longest present first), then the shared
    /// screens that have a picture (`screen_shown`).
    pub fn call_tiles(&self, screen_shown: impl Fn(&str) -> bool) -> Vec<TileKey> {
        let call = &self.call;
        let mut people: Vec<&str> = call
            .order
            .iter()
            .map(String::as_str)
            .filter(|id| *id == call.me || call.peers.contains_key(*id))
            .collect();
        // Members not yet in the order (no welcome seen) still get a tile.
        people.extend(
            call.peers
                .keys()
                .map(String::as_str)
                .filter(|id| !call.order.iter().any(|o| o == id)),
        );
        if !people.contains(&call.me.as_str()) {
            people.push(&call.me);
        }
        let mut tiles: Vec<TileKey> = people
            .iter()
            .map(|id| {
                let id = if *id == call.me { SELF_ID } else { id };
                (id.to_string(), TrackRole::Camera)
            })
            .collect();
        tiles.extend(
            call.peers
                .iter()
                .filter(|(id, p)| p.sharing_track && screen_shown(id))
                .map(|(id, _)| (id.clone(), TrackRole::Screen)),
        );
        tiles
    }

    pub fn set_layout_mode(&mut self, mode: LayoutMode) {
        self.layout.mode = mode;
        self.layout.page = 0;
    }

    /// Pins a tile to the stage, or unpins it.
    pub fn toggle_pin(&mut self, tile: &TileKey) {
        let pinned = self.layout.pinned.as_ref() == Some(tile);
        self.layout.pinned = (!pinned).then(|| tile.clone());
        self.layout.page = 0;
    }

    pub fn toggle_full_screen(&mut self, tile: &TileKey) {
        let full = self.layout.full_screen.as_ref() == Some(tile);
        self.layout.full_screen = (!full).then(|| tile.clone());
    }

    /// Turns the page (of the grid or of the strip) by `delta`, within `pages`.
    pub fn turn_page(&mut self, shown: usize, pages: usize, delta: isize) {
        let last = pages.saturating_sub(1);
        self.layout.page = shown.saturating_add_signed(delta).min(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(id: &str) -> TileKey {
        (id.to_string(), TrackRole::Camera)
    }

    fn screen(id: &str) -> TileKey {
        (id.to_string(), TrackRole::Screen)
    }

    /// Self and `n` others, by id "p0", "p1", ...
    fn people(n: usize) -> Vec<TileKey> {
        let mut v: Vec<TileKey> = (0..n).map(|i| cam(&format!("p{i}"))).collect();
        v.push(cam(SELF_ID));
        v
    }

    const AREA: Area = Area {
        x: 0.0,
        y: 0.0,
        w: 1200.0,
        h: 700.0,
    };

    fn drawn(a: &Arrangement) -> Vec<(TileKey, Slot)> {
        a.tiles.iter().map(|p| (p.tile.clone(), p.slot)).collect()
    }

    fn overlap(a: &Area, b: &Area) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn the_grid_fills_the_area_keeps_the_aspect_and_pages_beyond_nine() {
        let layout = Layout::default();
        for n in 0..12 {
            let tiles = people(n);
            let a = layout.arrange(&tiles, AREA);
            let count = tiles.len().min(PAGE_SIZE);
            assert_eq!(a.tiles.len(), count, "{n} others");
            assert_eq!(a.pages, tiles.len().div_ceil(PAGE_SIZE));
            for (i, p) in a.tiles.iter().enumerate() {
                assert!((p.area.w / p.area.h - ASPECT).abs() < 0.01);
                assert!(p.area.x >= 0.0 && p.area.x + p.area.w <= AREA.w + 0.01);
                assert!(p.area.y >= 0.0 && p.area.y + p.area.h <= AREA.h + 0.01);
                for q in &a.tiles[i + 1..] {
                    assert!(!overlap(&p.area, &q.area), "{n}: {p:?} {q:?}");
                }
            }
            // Filling: the tiles touch two opposite sides of the area.
            let left = a.tiles.iter().map(|p| p.area.x).fold(f32::MAX, f32::min);
            let top = a.tiles.iter().map(|p| p.area.y).fold(f32::MAX, f32::min);
            assert!(left < 1.0 || top < 1.0, "{n}: left {left} top {top}");
        }
        // Two people in a wide window: side by side, each half as wide; in a tall one
        // stacked, each as wide as the window.
        let wide = Area::new(0.0, 0.0, 1200.0, 500.0);
        let a = layout.arrange(&people(1), wide);
        assert_eq!(a.tiles[0].area.w, (wide.w - GAP) / 2.0);
        assert_eq!(a.tiles[0].area.y, a.tiles[1].area.y);
        let tall = Area::new(0.0, 0.0, 800.0, 1000.0);
        let a = layout.arrange(&people(1), tall);
        assert_eq!(a.tiles[0].area.w, tall.w);
        assert!(a.tiles[1].area.y > a.tiles[0].area.y);
        // Eleven: 9 on page one, the other two (self last) on page two.
        let tiles = people(10);
        let second = Layout {
            page: 1,
            ..Layout::default()
        }
        .arrange(&tiles, AREA);
        assert_eq!(second.page, 1);
        assert_eq!(
            drawn(&second),
            [(cam("p9"), Slot::Grid), (cam(SELF_ID), Slot::Grid)]
        );
        let past_the_end = Layout {
            page: 7,
            ..Layout::default()
        }
        .arrange(&tiles, AREA);
        assert_eq!(past_the_end.page, 1, "a page that is gone shows the last");
    }

    #[test]
    fn a_pin_takes_the_stage_over_a_shared_screen_which_takes_it_over_the_grid() {
        let mut tiles = people(3);
        let mut layout = Layout::default();
        tiles.push(screen("p1"));
        let a = layout.arrange(&tiles, AREA);
        assert_eq!(a.tiles[0].tile, screen("p1"));
        assert_eq!(a.tiles[0].slot, Slot::Stage);
        assert!(a.tiles[1..].iter().all(|p| p.slot == Slot::Strip));
        assert_eq!(a.tiles.len(), 5);
        layout.pinned = Some(cam("p2"));
        let a = layout.arrange(&tiles, AREA);
        assert_eq!(a.tiles[0].tile, cam("p2"));
        assert!(a.tiles[0].area.w > a.tiles[1].area.w * 2.0);
        // A pinned member who left lets the screen back on stage.
        let gone: Vec<TileKey> = tiles.into_iter().filter(|t| t.0 != "p2").collect();
        assert_eq!(layout.arrange(&gone, AREA).tiles[0].tile, screen("p1"));
    }

    #[test]
    fn full_screen_shows_one_tile_in_the_whole_area_and_hidden_self_is_not_drawn() {
        let tiles = people(2);
        let mut layout = Layout {
            full_screen: Some(cam("p1")),
            ..Layout::default()
        };
        assert_eq!(
            layout.arrange(&tiles, AREA).tiles,
            [Placed {
                tile: cam("p1"),
                area: AREA,
                slot: Slot::Full
            }]
        );
        layout.full_screen = None;
        layout.hide_self = true;
        let a = layout.arrange(&tiles, AREA);
        assert_eq!(
            drawn(&a),
            [(cam("p0"), Slot::Grid), (cam("p1"), Slot::Grid)]
        );
    }

    #[test]
    fn speaker_view_puts_the_active_speaker_on_stage_and_pages_the_strip() {
        let tiles = people(30);
        let mut layout = Layout {
            mode: LayoutMode::Speaker,
            ..Layout::default()
        };
        let a = layout.arrange(&tiles, AREA);
        assert_eq!(
            a.tiles[0].tile,
            cam("p0"),
            "nobody spoke yet: the first other"
        );
        layout
            .speaker
            .update(&[("p7".into(), Some(-20.0))], Instant::now());
        let a = layout.arrange(&tiles, AREA);
        assert_eq!(a.tiles[0].tile, cam("p7"));
        assert!(a.pages > 1);
        let strip: Vec<_> = a.tiles[1..].iter().map(|p| p.tile.clone()).collect();
        assert!(!strip.contains(&cam("p7")));
        layout.page = a.pages - 1;
        let last = layout.arrange(&tiles, AREA);
        assert_eq!(
            last.tiles.last().map(|p| p.tile.clone()),
            Some(cam(SELF_ID))
        );
    }

    #[test]
    fn the_active_speaker_changes_only_for_a_clearly_louder_voice_that_lasts() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut s = ActiveSpeaker::default();
        let lv = |a: Option<f32>, b: Option<f32>| vec![("a".to_string(), a), ("b".to_string(), b)];
        assert_eq!(s.update(&lv(Some(-20.0), None), at(0)), Some("a"));
        // b a little louder: no change, however long.
        assert_eq!(s.update(&lv(Some(-20.0), Some(-17.0)), at(100)), Some("a"));
        assert_eq!(s.update(&lv(Some(-20.0), Some(-17.0)), at(5000)), Some("a"));
        // b clearly louder, but briefly.
        assert_eq!(s.update(&lv(Some(-30.0), Some(-15.0)), at(5100)), Some("a"));
        assert_eq!(s.update(&lv(Some(-20.0), Some(-19.0)), at(5500)), Some("a"));
        assert_eq!(s.update(&lv(Some(-30.0), Some(-15.0)), at(5600)), Some("a"));
        assert_eq!(s.update(&lv(Some(-30.0), Some(-15.0)), at(6000)), Some("a"));
        // ... and long enough.
        assert_eq!(s.update(&lv(Some(-30.0), Some(-15.0)), at(6900)), Some("b"));
        // Silence keeps the last speaker.
        assert_eq!(s.update(&lv(None, None), at(9000)), Some("b"));
        // A speaker who left is dropped; the next voice takes over at once.
        let only_a = vec![("a".to_string(), Some(-25.0))];
        assert_eq!(s.update(&only_a, at(9100)), Some("a"));
    }
}
