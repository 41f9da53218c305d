//! Oracles: values computed from the documented formulas by hand (tone, saturation,
//! sharpening of a step), and the moments of a Gaussian (a blurred impulse keeps its
//! mass and spreads with variance σ²).

use super::*;

fn solid(w: usize, h: usize, px: [u8; 4]) -> Vec<u8> {
    px.repeat(w * h)
}

/// `w × h` pixels: `left` in the columns before `at`, `right` from it on.
fn split(w: usize, h: usize, at: usize, left: [u8; 4], right: [u8; 4]) -> Vec<u8> {
    (0..w * h)
        .flat_map(|i| if i % w < at { left } else { right })
        .collect()
}

/// `apply` with the filters `set` changes from none, on a `w × h` image.
fn filter(rgba: &mut [u8], w: usize, h: usize, alpha: bool, set: impl FnOnce(&mut Filters)) {
    apply(rgba, w as u32, h as u32, alpha, &with(set));
}

fn with(f: impl FnOnce(&mut Filters)) -> Filters {
    let mut filters = Filters::NONE;
    f(&mut filters);
    filters
}

#[test]
fn no_filter_changes_nothing() {
    let mut rgba: Vec<u8> = (0..=255).collect::<Vec<u8>>().repeat(4);
    let before = rgba.clone();
    apply(&mut rgba, 16, 16, true, &Filters::NONE);
    assert_eq!(rgba, before);
}

#[test]
fn tone_follows_its_formulas() {
    // brightness: v·b, clamped.
    let b = tone_table(&with(|f| f.brightness = 200));
    assert_eq!((b[60], b[127], b[200]), (120, 254, 255));
    let half = tone_table(&with(|f| f.brightness = 50));
    assert_eq!((half[60], half[255]), (30, 128));
    // contrast: (v − 127.5)·c + 127.5.
    let c = tone_table(&with(|f| f.contrast = 200));
    assert_eq!(
        (c[100], c[127], c[128], c[200], c[20]),
        (73, 127, 129, 255, 0)
    );
    // gamma: 255·(v/255)^(1/g); 2 lightens, 0.5 darkens.
    let g = tone_table(&with(|f| f.gamma = 200));
    assert_eq!((g[0], g[64], g[255]), (0, 128, 255));
    let d = tone_table(&with(|f| f.gamma = 50));
    assert_eq!((d[128], d[255]), (64, 255));
}

#[test]
fn tone_leaves_alpha_alone() {
    let mut rgba = solid(2, 2, [60, 60, 60, 77]);
    apply(&mut rgba, 2, 2, true, &with(|f| f.brightness = 200));
    assert!(rgba.chunks_exact(4).all(|px| px == [120, 120, 120, 77]));
}

#[test]
fn saturation_mixes_with_luma() {
    let mut grey = solid(1, 1, [200, 100, 50, 255]);
    apply(&mut grey, 1, 1, false, &with(|f| f.saturation = 0));
    // 0.2126·200 + 0.7152·100 + 0.0722·50 = 117.65
    assert_eq!(grey, [118, 118, 118, 255]);
    let mut double = solid(1, 1, [200, 100, 50, 255]);
    apply(&mut double, 1, 1, false, &with(|f| f.saturation = 200));
    // luma + 2·(v − luma): 282.35 → 255, 82.35, −17.65 → 0
    assert_eq!(double, [255, 82, 0, 255]);
}

#[test]
fn box_widths_add_up_to_the_gaussian_variance() {
    for sigma in [0.5, 1.0, 2.5, 7.0, 40.0, 125.0] {
        let widths = box_widths(sigma);
        let variance: f64 = widths.iter().map(|&w| ((w * w) as f64 - 1.0) / 12.0).sum();
        let want = sigma * sigma;
        assert!(
            (variance - want).abs() <= (want * 0.15).max(1.0),
            "σ={sigma}: widths {widths:?} give variance {variance}, want {want}"
        );
        assert!(widths.iter().all(|w| w % 2 == 1), "{widths:?}");
    }
}

#[test]
fn a_blurred_impulse_keeps_its_mass_and_spreads_by_sigma() {
    let (w, h) = (101usize, 101usize);
    for radius in [4u8, 10, 20] {
        let mut rgba = solid(w, h, [0, 0, 0, 255]);
        let centre = (50 * w + 50) * 4;
        // A bright square of 5×5 (a single pixel would round away): mass 25·200.
        for y in 48..53 {
            for x in 48..53 {
                rgba[(y * w + x) * 4] = 200;
            }
        }
        assert_eq!(rgba[centre], 200);
        filter(&mut rgba, w, h, false, |f| f.blur = radius);
        let red = |x: usize, y: usize| f64::from(rgba[(y * w + x) * 4]);
        let mass: f64 = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| red(x, y))
            .sum();
        assert!(
            (mass - 5000.0).abs() < 5000.0 * 0.05,
            "radius {radius}: mass {mass}"
        );
        // Variance along x of the blurred square: σ² plus the square's own (5²−1)/12.
        let var_x: f64 = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| red(x, y) * (x as f64 - 50.0).powi(2))
            .sum::<f64>()
            / mass;
        let sigma = f64::from(radius) / 2.0;
        let want = sigma * sigma + 2.0;
        assert!(
            (var_x - want).abs() < want * 0.15,
            "radius {radius}: variance {var_x}, want {want}"
        );
        // Alpha and the other channels untouched where they were flat.
        assert!(rgba.chunks_exact(4).all(|px| px[1] == 0 && px[3] == 255));
    }
}

#[test]
fn blur_keeps_a_flat_image_flat_at_any_radius_and_size() {
    for (w, h, radius) in [(1, 1, 250u8), (3, 40, 250), (40, 3, 9), (17, 33, 1)] {
        let mut rgba = solid(w, h, [12, 34, 56, 255]);
        filter(&mut rgba, w, h, false, |f| f.blur = radius);
        assert!(
            rgba.chunks_exact(4).all(|px| px == [12, 34, 56, 255]),
            "{w}x{h} radius {radius}: {:?}",
            &rgba[..8]
        );
        // Semi-transparent: premultiplied in 8 bits, a colour comes back within
        // 255 / (2·alpha) of itself (here ±2 at alpha 78), alpha exactly.
        let mut rgba = solid(w, h, [12, 34, 56, 78]);
        filter(&mut rgba, w, h, true, |f| f.blur = radius);
        for px in rgba.chunks_exact(4) {
            let close = px[..3]
                .iter()
                .zip([12u8, 34, 56])
                .all(|(a, b)| a.abs_diff(b) <= 2);
            assert!(close && px[3] == 78, "{w}x{h} radius {radius}: {px:?}");
        }
    }
}

#[test]
fn blur_does_not_bleed_the_colour_of_transparent_pixels() {
    // Left half opaque blue, right half transparent red: premultiplied, the red never
    // shows (Sharp, libvips and browsers blur premultiplied colour the same way).
    let (w, h) = (20usize, 4usize);
    let mut rgba = split(w, h, 10, [0, 0, 255, 255], [255, 0, 0, 0]);
    filter(&mut rgba, w, h, true, |f| f.blur = 6);
    for px in rgba.chunks_exact(4).filter(|px| px[3] > 0) {
        assert!(px[0] <= 1, "red bled into {px:?}");
    }
}

#[test]
fn sharpen_overshoots_a_step_by_its_formula() {
    // Columns 0–3 at 100, 4–7 at 200, in 3 rows: the 3×3 binomial across the step is
    // (100 + 2·100 + 200)/4 = 125 at x = 3 and 175 at x = 4 (rows are all alike).
    let (w, h) = (8usize, 3usize);
    let mut rgba = split(w, h, 4, [100, 100, 100, 255], [200, 200, 200, 255]);
    filter(&mut rgba, w, h, false, |f| f.sharpen = 10);
    for y in 0..h {
        let at = |x: usize| rgba[(y * w + x) * 4];
        // amount 1: v + (v − blurred)
        assert_eq!((at(0), at(3), at(4), at(7)), (100, 75, 225, 200), "row {y}");
    }
    let mut strong = split(w, h, 4, [100, 100, 100, 255], [200, 200, 200, 255]);
    filter(&mut strong, w, h, false, |f| f.sharpen = 100);
    // amount 10: 100 + 10·(100 − 125) < 0 → 0; 200 + 10·25 → 255.
    assert_eq!((strong[3 * 4], strong[4 * 4]), (0, 255));
}

#[test]
fn sharpening_with_alpha_leaves_no_grey_fringe() {
    // A white shape fading out (alpha 255, 255, 64, 0, 0): its colour is white wherever
    // it shows, before and after (premultiplied, colour and coverage move together).
    let (w, h) = (10usize, 3usize);
    let alphas = [255u8, 255, 255, 255, 64, 0, 0, 0, 0, 0];
    let mut rgba: Vec<u8> = (0..w * h)
        .flat_map(|i| [255, 255, 255, alphas[i % w]])
        .collect();
    filter(&mut rgba, w, h, true, |f| f.sharpen = 20);
    for px in rgba.chunks_exact(4).filter(|px| px[3] > 0) {
        assert!(px[..3].iter().all(|&c| c >= 250), "grey fringe: {px:?}");
    }
}

#[test]
fn the_smallest_blur_still_blurs() {
    let (w, h) = (9usize, 9usize);
    let mut rgba = solid(w, h, [0, 0, 0, 255]);
    rgba[(4 * w + 4) * 4] = 255;
    filter(&mut rgba, w, h, false, |f| f.blur = 1);
    assert!(
        rgba[(4 * w + 4) * 4] < 255,
        "blur=1 left the impulse as it was"
    );
    assert!(rgba[(4 * w + 5) * 4] > 0, "blur=1 spread nothing");
}

#[test]
fn sharpen_keeps_a_flat_image_flat() {
    for (w, h) in [(1usize, 1usize), (1, 5), (5, 1), (9, 7)] {
        let mut rgba = solid(w, h, [90, 91, 92, 255]);
        filter(&mut rgba, w, h, false, |f| f.sharpen = 100);
        assert!(
            rgba.chunks_exact(4).all(|px| px == [90, 91, 92, 255]),
            "{w}x{h}"
        );
    }
}

#[test]
fn the_scratch_model_covers_what_the_filters_allocate() {
    // The buffers `gaussian` and `unsharp` allocate, by construction: a row, dropped
    // before two strips of STRIP columns (blur); two rows (sharpen).
    for (w, h) in [(1u32, 1u32), (4096, 1), (1, 4096), (4096, 4096), (17, 3000)] {
        let (uw, uh) = (w as u64, h as u64);
        let blur_alloc = (uw * 4).max(2 * uh * STRIP as u64 * 4);
        assert!(scratch_bytes(&with(|f| f.blur = 1), (w, h)) >= blur_alloc);
        assert!(scratch_bytes(&with(|f| f.sharpen = 1), (w, h)) >= 2 * uw * 4);
        assert_eq!(scratch_bytes(&Filters::NONE, (w, h)), 0);
    }
}
