use super::*;
use crate::image::options::{DEFAULT_TRIM_TOLERANCE, Rgba};

fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
    Rect { x, y, w, h }
}

fn sides(top: u32, right: u32, bottom: u32, left: u32) -> Trim {
    Trim::Sides {
        top,
        right,
        bottom,
        left,
        width: None,
        height: None,
    }
}

#[test]
fn given_sides_are_cut_and_at_least_a_pixel_is_kept() {
    assert_eq!(
        kept(&sides(20, 30, 20, 0), (200, 100)),
        rect(0, 20, 170, 60)
    );
    assert_eq!(kept(&Trim::None, (200, 100)), rect(0, 0, 200, 100));
    let window = Trim::Sides {
        top: 10,
        right: 0,
        bottom: 0,
        left: 50,
        width: Some(40),
        height: Some(30),
    };
    assert_eq!(kept(&window, (200, 100)), rect(50, 10, 40, 30));
    // More than the picture holds: clamped, never empty, never outside.
    assert_eq!(
        kept(&sides(500, 500, 500, 500), (200, 100)),
        rect(199, 99, 1, 1)
    );
    assert_eq!(kept(&sides(0, 300, 0, 0), (200, 100)), rect(0, 0, 1, 100));
    let wide = Trim::Sides {
        top: 0,
        right: 0,
        bottom: 0,
        left: 150,
        width: Some(1000),
        height: Some(1000),
    };
    assert_eq!(kept(&wide, (200, 100)), rect(150, 0, 50, 100));
}

/// `fill` everywhere, `inside` over `r`.
fn framed(w: u32, h: u32, fill: [u8; 4], r: Rect, inside: [u8; 4]) -> Decoded {
    let mut rgba = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let hit = (r.x..r.x + r.w).contains(&x) && (r.y..r.y + r.h).contains(&y);
            rgba.extend_from_slice(if hit { &inside } else { &fill });
        }
    }
    Decoded {
        width: w,
        height: h,
        rgba,
        has_alpha: false,
        icc: None,
    }
}

fn auto(color: Option<Rgba>, tolerance: u8) -> BorderTrim {
    BorderTrim {
        color,
        tolerance,
        keep: 0,
    }
}

#[test]
fn a_border_of_one_colour_is_found_on_every_side() {
    let white = [255, 255, 255, 255];
    let photo = [30, 90, 160, 255];
    for r in [
        rect(10, 5, 30, 20),
        rect(1, 5, 30, 20),
        rect(10, 1, 50, 39),
        rect(1, 1, 1, 1),
    ] {
        let image = framed(60, 40, white, r, photo);
        assert_eq!(
            inside_border(&image, &auto(None, DEFAULT_TRIM_TOLERANCE), 0),
            r,
            "{r:?}"
        );
    }
    // keep leaves that much border, within the picture.
    let image = framed(60, 40, white, rect(10, 5, 30, 20), photo);
    assert_eq!(
        inside_border(&image, &auto(None, DEFAULT_TRIM_TOLERANCE), 3),
        rect(7, 2, 36, 26)
    );
    assert_eq!(
        inside_border(&image, &auto(None, DEFAULT_TRIM_TOLERANCE), 100),
        rect(0, 0, 60, 40)
    );
    // All border: nothing to find, the whole picture is kept.
    let blank = framed(60, 40, white, rect(0, 0, 0, 0), photo);
    assert_eq!(
        inside_border(&blank, &auto(None, 245), 0),
        rect(0, 0, 60, 40)
    );
}

#[test]
fn tolerance_and_a_given_colour_decide_what_is_border() {
    // A near-white ring (250) around a lighter grey ring (240) around a photo.
    let mut image = framed(
        60,
        40,
        [250, 250, 250, 255],
        rect(5, 5, 50, 30),
        [240, 240, 240, 255],
    );
    for y in 10..30u32 {
        for x in 10..50u32 {
            let i = ((y * 60 + x) * 4) as usize;
            image.rgba[i..i + 4].copy_from_slice(&[30, 90, 160, 255]);
        }
    }
    // Exact: only the outer ring.
    assert_eq!(
        inside_border(&image, &auto(None, 255), 0),
        rect(5, 5, 50, 30)
    );
    // Within 10 of the corner's colour: both rings.
    assert_eq!(
        inside_border(&image, &auto(None, 245), 0),
        rect(10, 10, 40, 20)
    );
    // White given, within 5: the 250 ring only.
    let white = Some(Rgba([255, 255, 255, 255]));
    assert_eq!(
        inside_border(&image, &auto(white, 250), 0),
        rect(5, 5, 50, 30)
    );
    // Tolerance 0: every colour is border, so the picture is all border: kept whole.
    assert_eq!(inside_border(&image, &auto(None, 0), 0), rect(0, 0, 60, 40));
}
