//! `gravity=auto`: where a crop window keeps most of what the eye goes to, measured the
//! way imgproxy's smart crop (libvips' `attention` strategy) measures it: edge energy,
//! saturation and skin tone, summed over every window position.
//!
//! The decoded picture is averaged into a grid of at most [`GRID`] cells a side (one pass
//! over the pixels), each cell scored, and a summed-area table of the scores gives every
//! window position's total in constant time. The best position wins; ties go to the one
//! nearest the centre, so a flat picture is cropped as `gravity=center` crops it.
//!
//! Written here rather than taken from a crate: the crates that do smart cropping
//! (`smartcrop`'s ports) decode and resize on their own and need the `image` crate's
//! buffers; this works on the pipeline's decoded RGBA with no copy of the pixels.

use super::decode::Decoded;
use super::geometry::{Plan, Rect};

/// Longest side of the scoring grid, in cells.
pub const GRID: u32 = 160;

/// Scratch memory the scoring needs, at most: the cell sums, the summed-area table and
/// two rows of sampled luma ([`samples_per_row`], under `8 × GRID`).
pub const SCRATCH_BYTES: u64 = (GRID as u64) * (GRID as u64) * CELL_BYTES
    + (GRID as u64 + 1) * (GRID as u64 + 1) * 8
    + 2 * (8 * GRID as u64) * 4;

/// Cells of `step` pixels a side are sampled every `step / 4` pixels (at least every
/// pixel): four or more samples a cell a side.
fn sample_every(step: u32) -> usize {
    (step as usize / 4).max(1)
}

/// Samples in a row `width` pixels wide: under `8 × GRID`, as `width ≤ step × GRID` and
/// `step / sample_every(step) < 8`.
pub(crate) fn samples_per_row(width: u32, step: u32) -> usize {
    (width as usize).div_ceil(sample_every(step))
}
/// Per cell: luma, saturation, skin and alpha sums (u32) and the pixel count (u32).
const CELL_BYTES: u64 = 5 * 4;

/// Weight of how far a cell's mean saturation (0–255) is from the picture's against its
/// mean edge energy (the sum of a pixel's luma steps to its left and upper neighbours,
/// 0–510).
const SATURATION_WEIGHT: f64 = 0.25;
/// Weight of the share of a cell's pixels that look like skin.
const SKIN_WEIGHT: f64 = 48.0;

/// The classic RGB skin rule (Kovač et al., daylight): broad on purpose, as a bonus.
fn skin(r: u8, g: u8, b: u8) -> bool {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    r > 95 && g > 40 && b > 20 && r > g && r > b && r - g.min(b) > 15 && (r - g).abs() > 15
}

/// Where a `window` (in `image` pixels) inside `region` of `image` holds the most
/// saliency: its top-left corner, relative to the region, the window kept inside it.
pub fn best_window(image: &Decoded, region: Rect, window: (u32, u32)) -> (u32, u32) {
    let region = Rect {
        x: region.x.min(image.width.saturating_sub(1)),
        y: region.y.min(image.height.saturating_sub(1)),
        ..region
    };
    let (w, h) = (
        region.w.min(image.width - region.x).max(1),
        region.h.min(image.height - region.y).max(1),
    );
    let (win_w, win_h) = (window.0.clamp(1, w), window.1.clamp(1, h));
    if win_w == w && win_h == h {
        return (0, 0);
    }
    let step = w.max(h).div_ceil(GRID).max(1);
    let (gw, gh) = (w.div_ceil(step), h.div_ceil(step));
    let cells = gw as usize * gh as usize;
    // Edge energy (the luma step to the left and upper neighbours: fine detail counts,
    // a blurred background does not), saturation, skin, alpha and the pixel count.
    let mut sums = vec![[0u32; 5]; cells];
    let row_bytes = image.width as usize * 4;
    let (x0, x1) = (region.x as usize * 4, (region.x + w) as usize * 4);
    // Weighted by alpha: what is transparent is not seen, its silhouette is.
    let luma = |px: &[u8]| {
        let l = (77 * i32::from(px[0]) + 150 * i32::from(px[1]) + 29 * i32::from(px[2])) >> 8;
        l * i32::from(px[3]) / 255
    };
    // Every pixel of a large picture is more than the grid needs: a sample every
    // `every` pixels (at least four a cell a side) sees the same detail at a fraction
    // of the reads; the luma of the sampled row above is kept, not computed again.
    let every = sample_every(step);
    let samples = samples_per_row(w, step);
    let mut above: Vec<i32> = Vec::with_capacity(samples);
    let mut here_row: Vec<i32> = Vec::with_capacity(samples);
    for (y, row) in image
        .rgba
        .chunks_exact(row_bytes)
        .skip(region.y as usize)
        .take(h as usize)
        .map(|row| &row[x0..x1])
        .enumerate()
        .step_by(every)
    {
        let base = (y / step as usize) * gw as usize;
        here_row.clear();
        for (i, px) in row.chunks_exact(4).step_by(every).enumerate() {
            let [r, g, b, a] = [px[0], px[1], px[2], px[3]];
            let cell = &mut sums[base + i * every / step as usize];
            let here = luma(px);
            let left = here_row.last().copied().unwrap_or(here);
            let up = above.get(i).copied().unwrap_or(here);
            cell[0] += (here - left).unsigned_abs() + (here - up).unsigned_abs();
            here_row.push(here);
            cell[1] += u32::from(r.max(g).max(b) - r.min(g).min(b));
            cell[2] += u32::from(skin(r, g, b));
            cell[3] += u32::from(a);
            cell[4] += 1;
        }
        std::mem::swap(&mut above, &mut here_row);
    }
    let mean = |i: usize, k: usize| f64::from(sums[i][k]) / f64::from(sums[i][4].max(1));
    // Saturation counts where it differs from the picture's own: a grey subject on a
    // saturated background stands out as much as a red one on grey.
    let typical_saturation = (0..cells).map(|i| mean(i, 1)).sum::<f64>() / cells as f64;
    // The summed-area table of the scores, (gw + 1) × (gh + 1).
    let stride = gw as usize + 1;
    let mut table = vec![0f64; stride * (gh as usize + 1)];
    for y in 0..gh as usize {
        let mut row_sum = 0.0;
        for x in 0..gw as usize {
            let i = y * gw as usize + x;
            let opacity = mean(i, 3) / 255.0;
            let saturation = (mean(i, 1) - typical_saturation).abs();
            let score =
                (mean(i, 0) + SATURATION_WEIGHT * saturation + SKIN_WEIGHT * mean(i, 2)) * opacity;
            row_sum += score;
            table[(y + 1) * stride + x + 1] = table[y * stride + x + 1] + row_sum;
        }
    }
    // The window in cells (at least one), every position scored.
    let (ww, wh) = (
        ((f64::from(win_w) / f64::from(step)).round() as u32).clamp(1, gw),
        ((f64::from(win_h) / f64::from(step)).round() as u32).clamp(1, gh),
    );
    let total = |x: usize, y: usize| {
        let (x1, y1) = (x + ww as usize, y + wh as usize);
        table[y1 * stride + x1] - table[y * stride + x1] - table[y1 * stride + x]
            + table[y * stride + x]
    };
    let (cx, cy) = (f64::from(gw - ww) / 2.0, f64::from(gh - wh) / 2.0);
    let mut best = (0usize, 0usize);
    let mut best_score = f64::NEG_INFINITY;
    let mut best_distance = f64::INFINITY;
    for y in 0..=(gh - wh) as usize {
        for x in 0..=(gw - ww) as usize {
            let score = total(x, y);
            let distance = (x as f64 - cx).abs() + (y as f64 - cy).abs();
            // Within a millionth of the best: a tie, and the nearer the centre wins.
            let margin = best_score.abs() * 1e-6 + 1e-9;
            if score > best_score + margin
                || (score >= best_score - margin && distance < best_distance)
            {
                (best, best_score, best_distance) = ((x, y), score, distance);
            }
        }
    }
    // Cells to pixels in proportion, so the first and last positions reach the edges
    // whatever the rounding to cells, and the middle one is exactly centred.
    let place = |cell: usize, free_cells: u32, win: u32, side: u32| -> u32 {
        let free = side.saturating_sub(win);
        let cell = cell as u64;
        if free_cells == 0 || (2 * cell).abs_diff(u64::from(free_cells)) <= 1 {
            return free / 2;
        }
        u32::try_from((cell * u64::from(free) + u64::from(free_cells) / 2) / u64::from(free_cells))
            .unwrap_or(free)
            .min(free)
    };
    (
        place(best.0, gw - ww, win_w, w),
        place(best.1, gh - wh, win_h, h),
    )
}

/// `plan` with its crop window moved inside `within` (the trimmed picture, or all of
/// it) to where [`best_window`] finds the most saliency in `decoded` (the whole picture,
/// oriented, `scale` × the plan's coordinates). Unchanged when the window fills `within`.
pub fn placed(mut plan: Plan, decoded: &Decoded, scale: (f64, f64), within: Rect) -> Plan {
    let source = plan.source;
    if source.w >= within.w && source.h >= within.h {
        return plan;
    }
    let to_decoded = |v: u32, s: f64| (f64::from(v) * s).round() as u32;
    let region = Rect {
        x: to_decoded(within.x, scale.0),
        y: to_decoded(within.y, scale.1),
        w: to_decoded(within.w, scale.0).max(1),
        h: to_decoded(within.h, scale.1).max(1),
    };
    let window = (to_decoded(source.w, scale.0), to_decoded(source.h, scale.1));
    let (x, y) = best_window(decoded, region, window);
    let free = |inside: u32, win: u32| inside - win.min(inside);
    plan.source.x =
        within.x + ((f64::from(x) / scale.0).round() as u32).min(free(within.w, source.w));
    plan.source.y =
        within.y + ((f64::from(y) / scale.1).round() as u32).min(free(within.h, source.h));
    plan
}

#[cfg(test)]
mod tests;
