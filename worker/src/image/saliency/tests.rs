use super::*;
use crate::image::geometry::Size;

fn all(image: &Decoded) -> Rect {
    Rect {
        x: 0,
        y: 0,
        w: image.width,
        h: image.height,
    }
}

fn best(image: &Decoded, window: (u32, u32)) -> (u32, u32) {
    best_window(image, all(image), window)
}

/// A flat grey picture with a fine black-and-white checkerboard over `patch`.
fn with_patch(width: u32, height: u32, patch: Rect) -> Decoded {
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let inside = (patch.x..patch.x + patch.w).contains(&x)
                && (patch.y..patch.y + patch.h).contains(&y);
            let v = match inside {
                true if (x / 4 + y / 4) % 2 == 0 => 0,
                true => 255,
                false => 128,
            };
            rgba.extend_from_slice(&[v, v, v, 255]);
        }
    }
    Decoded {
        width,
        height,
        rgba,
        has_alpha: false,
        icc: None,
    }
}

fn covers(corner: (u32, u32), window: (u32, u32), patch: Rect) -> bool {
    corner.0 <= patch.x
        && corner.1 <= patch.y
        && corner.0 + window.0 >= patch.x + patch.w
        && corner.1 + window.1 >= patch.y + patch.h
}

#[test]
fn a_flat_picture_is_cropped_at_the_centre() {
    let flat = with_patch(
        600,
        300,
        Rect {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        },
    );
    assert_eq!(best(&flat, (300, 300)), (150, 0));
    assert_eq!(best(&flat, (600, 100)), (0, 100));
    assert_eq!(best(&flat, (600, 300)), (0, 0), "no crop");
}

#[test]
fn the_window_goes_to_the_detail_on_either_axis_and_at_any_size() {
    // Every placement of a patch on a 3×3 grid of a wide and a tall picture, at sizes
    // where one grid cell is one pixel and where it is many.
    for (width, height, window) in [
        (900, 300, (300, 300)),
        (300, 900, (300, 300)),
        (3000, 1000, (1000, 1000)),
        (160, 80, (40, 40)),
    ] {
        for (fx, fy) in [
            (0, 0),
            (1, 0),
            (2, 0),
            (0, 1),
            (2, 1),
            (0, 2),
            (1, 2),
            (2, 2),
        ] {
            let patch = Rect {
                x: (width - window.0 / 2) * fx / 2,
                y: (height - window.1 / 2) * fy / 2,
                w: window.0 / 2,
                h: window.1 / 2,
            };
            let corner = best(&with_patch(width, height, patch), window);
            assert!(
                covers(corner, window, patch),
                "{width}×{height}, window {window:?}: {corner:?} misses {patch:?}"
            );
            assert!(corner.0 + window.0 <= width && corner.1 + window.1 <= height);
        }
    }
}

#[test]
fn transparent_detail_does_not_count() {
    let patch = Rect {
        x: 0,
        y: 0,
        w: 100,
        h: 100,
    };
    let mut image = with_patch(400, 100, patch);
    for px in image.rgba.chunks_exact_mut(4) {
        if px[0] != 128 {
            px[3] = 0;
        }
    }
    // Only the patch's silhouette counts: the window takes it at its edge, never
    // centres on the hidden checkerboard.
    let (x, _) = best(&image, (100, 100));
    assert!(x >= 90, "{x}");
}

#[test]
fn placing_a_plan_maps_the_decoded_window_back_to_the_source() {
    // The plan is in full-size pixels (2000×1000); the decode is a quarter of that.
    let patch = Rect {
        x: 380,
        y: 0,
        w: 100,
        h: 250,
    };
    let decoded = with_patch(500, 250, patch);
    let plan = Plan {
        source: Rect {
            x: 500,
            y: 0,
            w: 1000,
            h: 1000,
        },
        resize: Size { w: 200, h: 200 },
        canvas: None,
    };
    let oriented = Rect {
        x: 0,
        y: 0,
        w: 2000,
        h: 1000,
    };
    let placed = placed(plan, &decoded, (0.25, 0.25), oriented);
    assert_eq!((placed.source.w, placed.source.h), (1000, 1000));
    assert!(placed.source.x + placed.source.w <= 2000);
    assert!(
        placed.source.x <= 380 * 4 && placed.source.x + 1000 >= 480 * 4,
        "{placed:?}"
    );
    // No crop, no move.
    let whole = Plan {
        source: Rect {
            x: 0,
            y: 0,
            w: 2000,
            h: 1000,
        },
        ..plan
    };
    assert_eq!(placed_again(whole, &decoded, oriented), whole);
}

fn placed_again(plan: Plan, decoded: &Decoded, oriented: Rect) -> Plan {
    placed(plan, decoded, (0.25, 0.25), oriented)
}

#[test]
fn a_trimmed_region_keeps_the_window_inside_it() {
    // Detail at the left edge (trimmed away) and right of centre (kept): the window goes
    // to the kept detail and stays inside the kept region.
    let mut image = with_patch(
        400,
        100,
        Rect {
            x: 0,
            y: 0,
            w: 60,
            h: 100,
        },
    );
    let kept_detail = with_patch(
        400,
        100,
        Rect {
            x: 300,
            y: 20,
            w: 40,
            h: 60,
        },
    );
    for (i, px) in kept_detail.rgba.chunks_exact(4).enumerate() {
        let x = i % 400;
        if (300..340).contains(&x) {
            image.rgba[i * 4..i * 4 + 4].copy_from_slice(px);
        }
    }
    let region = Rect {
        x: 100,
        y: 0,
        w: 300,
        h: 100,
    };
    let (x, _) = best_window(&image, region, (100, 100));
    // Relative to the region: the window [100 + x, 200 + x] holds 300..340.
    assert!(100 + x <= 300 && 200 + x >= 340, "{x}");
    let plan = Plan {
        source: Rect {
            x: 200,
            y: 0,
            w: 100,
            h: 100,
        },
        resize: Size { w: 100, h: 100 },
        canvas: None,
    };
    let p = placed(plan, &image, (1.0, 1.0), region);
    assert!(p.source.x <= 300 && p.source.x + 100 >= 340, "{p:?}");
    assert!(p.source.x >= 100, "inside the kept region: {p:?}");
    // Without the trim, the left edge's detail (larger) would win.
    let whole = placed(plan, &image, (1.0, 1.0), all(&image));
    assert!(whole.source.x < 60, "{whole:?}");
}

#[test]
fn the_scratch_bound_holds_for_the_largest_grid() {
    // The grid never exceeds GRID cells a side, whatever the picture's shape.
    for (w, h) in [
        (1u32, 1u32),
        (159, 161),
        (16384, 3),
        (3, 16384),
        (4096, 4096),
        (161, 161),
    ] {
        let step = w.max(h).div_ceil(GRID).max(1);
        let cells = u64::from(w.div_ceil(step)) * u64::from(h.div_ceil(step));
        let table = u64::from(w.div_ceil(step) + 1) * u64::from(h.div_ceil(step) + 1) * 8;
        let rows = 2 * samples_per_row(w, step) as u64 * 4;
        assert!(
            cells * CELL_BYTES + table + rows <= SCRATCH_BYTES,
            "{w}×{h}"
        );
    }
}
