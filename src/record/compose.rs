//! The recording's picture: every tile in one grid, as the call view's grid places them
//! (`ui::layout::grid_shape`: at most 3 x 3, 16:9 cells, rows centred), each picture
//! fitted into its cell with its own aspect kept. A tile without a picture (camera off,
//! or nothing arrived yet) is a grey cell.

use crate::media::{MediaError, VideoFrame};
use crate::ui::layout::{PAGE_SIZE, grid_shape};

/// Pixels between cells and around the grid.
const GAP: usize = 8;
/// Luma of the background and of a cell without a picture.
const BACKGROUND_Y: u8 = 16;
const EMPTY_TILE_Y: u8 = 48;

/// A rectangle in pixels; all four are even, so chroma lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

fn even(v: f32) -> usize {
    (v.max(0.0) as usize) & !1
}

/// Where `n` tiles go in a `width` x `height` picture (the first [`PAGE_SIZE`] of them:
/// the call view pages the rest, a recording shows the first page).
pub fn grid(n: usize, width: usize, height: usize) -> Vec<Rect> {
    let n = n.min(PAGE_SIZE);
    if n == 0 {
        return Vec::new();
    }
    let inner = (
        width.saturating_sub(2 * GAP) as f32,
        height.saturating_sub(2 * GAP) as f32,
    );
    let (cols, rows, w, h) = grid_shape(n, inner.0, inner.1);
    let g = GAP as f32;
    let top = GAP as f32 + (inner.1 - rows as f32 * (h + g) + g).max(0.0) / 2.0;
    (0..n)
        .map(|i| {
            let (row, col) = (i / cols, i % cols);
            let in_row = cols.min(n - row * cols);
            let row_w = in_row as f32 * (w + g) - g;
            let left = GAP as f32 + (inner.0 - row_w).max(0.0) / 2.0;
            Rect {
                x: even(left + col as f32 * (w + g)),
                y: even(top + row as f32 * (h + g)),
                w: even(w),
                h: even(h),
            }
        })
        .collect()
}

/// The largest even size of `w` x `h`'s shape inside `cell`, centred in it.
pub fn fit(w: usize, h: usize, cell: Rect) -> Rect {
    let scale = (cell.w as f32 / w as f32).min(cell.h as f32 / h as f32);
    let (fw, fh) = (
        even(w as f32 * scale).clamp(2, cell.w),
        even(h as f32 * scale).clamp(2, cell.h),
    );
    Rect {
        x: cell.x + even((cell.w - fw) as f32 / 2.0),
        y: cell.y + even((cell.h - fh) as f32 / 2.0),
        w: fw,
        h: fh,
    }
}

/// Paints tiles into one reused picture.
pub struct Compositor {
    canvas: VideoFrame,
}

impl Compositor {
    pub fn new(width: usize, height: usize) -> Result<Self, MediaError> {
        Ok(Self {
            canvas: VideoFrame::black(width, height, 0)?,
        })
    }

    /// The grid of `tiles` (None: a tile without a picture).
    pub fn compose(&mut self, tiles: &[Option<&VideoFrame>]) -> &VideoFrame {
        let (w, h) = (self.canvas.width, self.canvas.height);
        self.canvas.y.fill(BACKGROUND_Y);
        self.canvas.u.fill(128);
        self.canvas.v.fill(128);
        for (cell, tile) in grid(tiles.len(), w, h).into_iter().zip(tiles) {
            match tile {
                Some(frame) => paint(
                    &mut self.canvas,
                    frame,
                    fit(frame.width, frame.height, cell),
                ),
                None => fill(&mut self.canvas, cell, EMPTY_TILE_Y),
            }
        }
        &self.canvas
    }
}

/// Paints `src` scaled into `at` of `dst` (`at` even and inside `dst`).
fn paint(dst: &mut VideoFrame, src: &VideoFrame, at: Rect) {
    let dw = dst.width;
    let (sw, sh) = (src.width, src.height);
    resample(&src.y, (sw, sh), &mut dst.y, dw, at);
    let half = Rect {
        x: at.x / 2,
        y: at.y / 2,
        w: at.w / 2,
        h: at.h / 2,
    };
    resample(&src.u, (sw / 2, sh / 2), &mut dst.u, dw / 2, half);
    resample(&src.v, (sw / 2, sh / 2), &mut dst.v, dw / 2, half);
}

/// Nearest-neighbour scaling of one plane into a rectangle of another. Cheap enough for
/// every tile of every frame even in an unoptimised build (the SIMD resizer's generic
/// code is compiled with this crate's settings); tiles are near their sources' size,
/// so little is lost.
fn resample(src: &[u8], (sw, sh): (usize, usize), dst: &mut [u8], stride: usize, at: Rect) {
    let xs: Vec<usize> = (0..at.w).map(|x| (x * sw + sw / 2) / at.w).collect();
    for y in 0..at.h {
        let sy = (y * sh + sh / 2) / at.h;
        let row = &src[sy * sw..(sy + 1) * sw];
        let start = (at.y + y) * stride + at.x;
        for (d, &x) in dst[start..start + at.w].iter_mut().zip(&xs) {
            *d = row[x];
        }
    }
}

fn fill(dst: &mut VideoFrame, r: Rect, luma: u8) {
    for row in r.y..r.y + r.h {
        dst.y[row * dst.width + r.x..row * dst.width + r.x + r.w].fill(luma);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::SyntheticVideo;
    use crate::media::barcode;

    fn inside(r: Rect, w: usize, h: usize) -> bool {
        r.x + r.w <= w && r.y + r.h <= h
    }

    fn overlap(a: Rect, b: Rect) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn the_grid_follows_the_call_views_shapes_and_stays_inside() {
        // Two side by side, three as two over one (the last row centred), four as 2 x 2.
        let two = grid(2, 1280, 720);
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].y, two[1].y);
        assert!(two[0].w > 600 && two[0].w * 9 / 16 <= two[0].h + 2);
        let three = grid(3, 1280, 720);
        assert!(three[2].y > three[0].y);
        let mid = three[2].x + three[2].w / 2;
        assert!(mid.abs_diff(640) <= 2, "the last row is centred: {three:?}");
        assert_eq!(grid(4, 1280, 720)[3].y, grid(4, 1280, 720)[2].y);
        for n in 1..=12 {
            let cells = grid(n, 1280, 720);
            assert_eq!(cells.len(), n.min(9));
            for (i, a) in cells.iter().enumerate() {
                assert!(inside(*a, 1280, 720), "{n}: {a:?}");
                assert!(a.x % 2 == 0 && a.y % 2 == 0 && a.w % 2 == 0 && a.h % 2 == 0);
                for b in &cells[i + 1..] {
                    assert!(!overlap(*a, *b), "{n}: {a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn a_picture_keeps_its_shape_in_its_cell() {
        let cell = Rect {
            x: 10,
            y: 20,
            w: 640,
            h: 360,
        };
        let r = fit(640, 480, cell);
        assert_eq!((r.w, r.h), (480, 360));
        assert_eq!(r.x, 10 + 80);
        assert!(inside(r, 650, 380));
    }

    #[test]
    fn each_tiles_barcode_is_read_back_from_its_place_in_the_composite() {
        let a = SyntheticVideo::new(640, 480, 30.0)
            .unwrap()
            .frame_at(7, 1_000);
        let b = SyntheticVideo::new(1280, 720, 30.0)
            .unwrap()
            .frame_at(42, 2_000);
        let mut c = Compositor::new(1280, 720).unwrap();
        let out = c.compose(&[Some(&a), Some(&b), None]).clone();
        let cells = grid(3, 1280, 720);
        let read = |r: Rect| {
            let at = r.y * 1280 + r.x;
            barcode::read(&out.y[at..], r.w, r.h, 1280).map(|b| b.frame_id)
        };
        assert_eq!(read(fit(640, 480, cells[0])), Some(7));
        assert_eq!(read(fit(1280, 720, cells[1])), Some(42));
        assert_eq!(read(cells[2]), None, "an empty tile");
        let centre = (cells[2].y + cells[2].h / 2) * 1280 + cells[2].x + cells[2].w / 2;
        assert_eq!(out.y[centre], EMPTY_TILE_Y);
    }
}
