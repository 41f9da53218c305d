//! Fit geometry: from the (oriented) source size, the target box and the fit mode, the
//! plan for one transform — which source region to read, what size to resize it to,
//! and for `pad` the canvas it lands on. Pure arithmetic, like imgproxy's `calcScale`:
//! the codecs never see a fit mode.
//!
//! Cropping is planned in source pixels, before resizing, so `cover` of an extreme
//! aspect ratio never builds an intermediate larger than the output.

use super::options::{Fit, Gravity, MAX_SIDE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The region of the source to use (the whole source unless cropping).
    pub source: Rect,
    /// The size that region is resized to.
    pub resize: Size,
    /// For `pad`: the canvas size and where the resized image sits on it.
    pub canvas: Option<(Size, u32, u32)>,
}

impl Plan {
    /// The output image size.
    pub fn output(&self) -> Size {
        self.canvas.map_or(self.resize, |(size, _, _)| size)
    }
}

fn px(v: f64) -> u32 {
    (v.round().max(1.0)).min(f64::from(u32::MAX)) as u32
}

fn whole(source: Size) -> Rect {
    Rect {
        x: 0,
        y: 0,
        w: source.w,
        h: source.h,
    }
}

/// Scales the whole source by `s`, keeping every side within 1..=MAX_SIDE.
fn scaled(source: Size, s: f64) -> Plan {
    let s = s
        .min(f64::from(MAX_SIDE) / f64::from(source.w))
        .min(f64::from(MAX_SIDE) / f64::from(source.h));
    Plan {
        source: whole(source),
        resize: Size {
            w: px(f64::from(source.w) * s).min(MAX_SIDE),
            h: px(f64::from(source.h) * s).min(MAX_SIDE),
        },
        canvas: None,
    }
}

/// A `w × h` window of the source, placed by gravity.
fn window(source: Size, w: f64, h: f64, gravity: Gravity) -> Rect {
    let w = px(w).min(source.w);
    let h = px(h).min(source.h);
    Rect {
        x: ((f64::from(source.w - w)) * gravity.fx()).round() as u32,
        y: ((f64::from(source.h - h)) * gravity.fy()).round() as u32,
        w,
        h,
    }
}

pub fn plan(source: Size, target: (Option<u32>, Option<u32>), fit: Fit, gravity: Gravity) -> Plan {
    let (sw, sh) = (f64::from(source.w.max(1)), f64::from(source.h.max(1)));
    let source = Size {
        w: source.w.max(1),
        h: source.h.max(1),
    };
    let never_enlarge = matches!(fit, Fit::ScaleDown | Fit::Crop);
    match target {
        (None, None) => scaled(source, 1.0),
        (Some(tw), None) => {
            let s = f64::from(tw) / sw;
            scaled(source, if never_enlarge { s.min(1.0) } else { s })
        }
        (None, Some(th)) => {
            let s = f64::from(th) / sh;
            scaled(source, if never_enlarge { s.min(1.0) } else { s })
        }
        (Some(tw), Some(th)) => {
            let (tw_f, th_f) = (f64::from(tw), f64::from(th));
            let inside = (tw_f / sw).min(th_f / sh);
            let fill = (tw_f / sw).max(th_f / sh);
            match fit {
                Fit::ScaleDown => scaled(source, inside.min(1.0)),
                Fit::Contain => scaled(source, inside),
                Fit::Pad => {
                    let mut plan = scaled(source, inside);
                    let free_w = tw.saturating_sub(plan.resize.w);
                    let free_h = th.saturating_sub(plan.resize.h);
                    plan.canvas = Some((
                        Size { w: tw, h: th },
                        (f64::from(free_w) * gravity.fx()).round() as u32,
                        (f64::from(free_h) * gravity.fy()).round() as u32,
                    ));
                    plan
                }
                Fit::Squeeze => Plan {
                    source: whole(source),
                    resize: Size { w: tw, h: th },
                    canvas: None,
                },
                Fit::Cover => Plan {
                    source: window(source, tw_f / fill, th_f / fill, gravity),
                    resize: Size { w: tw, h: th },
                    canvas: None,
                },
                Fit::Crop => {
                    if source.w <= tw && source.h <= th {
                        return scaled(source, 1.0);
                    }
                    let s = fill.min(1.0);
                    let out = Size {
                        w: tw.min(px(sw * s)),
                        h: th.min(px(sh * s)),
                    };
                    Plan {
                        source: window(source, f64::from(out.w) / s, f64::from(out.h) / s, gravity),
                        resize: out,
                        canvas: None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Gravity = Gravity { x: 500, y: 500 };

    fn size(w: u32, h: u32) -> Size {
        Size { w, h }
    }

    fn out(source: (u32, u32), target: (Option<u32>, Option<u32>), fit: Fit) -> (u32, u32) {
        let o = plan(size(source.0, source.1), target, fit, C).output();
        (o.w, o.h)
    }

    #[test]
    fn every_mode_with_and_without_enlargement() {
        use Fit::*;
        let big = (4000, 2000);
        let small = (400, 200);
        let both = (Some(800), Some(800));
        let table = [
            (big, both, ScaleDown, (800, 400)),
            (small, both, ScaleDown, (400, 200)),
            (big, both, Contain, (800, 400)),
            (small, both, Contain, (800, 400)),
            (big, both, Cover, (800, 800)),
            (small, both, Cover, (800, 800)),
            (big, both, Crop, (800, 800)),
            (small, both, Crop, (400, 200)),
            (big, both, Pad, (800, 800)),
            (small, both, Pad, (800, 800)),
            (big, (Some(1000), None), ScaleDown, (1000, 500)),
            (small, (Some(1000), None), ScaleDown, (400, 200)),
            (small, (Some(1000), None), Contain, (1000, 500)),
            (big, (None, Some(100)), Cover, (200, 100)),
            (big, (None, None), ScaleDown, (4000, 2000)),
            ((8000, 100), (None, None), ScaleDown, (4096, 51)),
        ];
        for (source, target, fit, want) in table {
            assert_eq!(
                out(source, target, fit),
                want,
                "{source:?} {target:?} {fit:?}"
            );
        }
    }

    #[test]
    fn cover_crops_in_source_space_by_gravity() {
        let p = plan(size(4000, 2000), (Some(800), Some(800)), Fit::Cover, C);
        assert_eq!(
            p.source,
            Rect {
                x: 1000,
                y: 0,
                w: 2000,
                h: 2000
            }
        );
        let left = plan(
            size(4000, 2000),
            (Some(800), Some(800)),
            Fit::Cover,
            Gravity { x: 0, y: 500 },
        );
        assert_eq!(left.source.x, 0);
        let right = plan(
            size(4000, 2000),
            (Some(800), Some(800)),
            Fit::Cover,
            Gravity { x: 1000, y: 500 },
        );
        assert_eq!(right.source.x + right.source.w, 4000);
    }

    #[test]
    fn crop_never_enlarges_a_partly_small_source() {
        // 1000×300 into 800×800: wider than the box, shorter than it.
        let p = plan(size(1000, 300), (Some(800), Some(800)), Fit::Crop, C);
        assert_eq!(p.resize, size(800, 300));
        assert_eq!(
            p.source,
            Rect {
                x: 100,
                y: 0,
                w: 800,
                h: 300
            }
        );
    }

    #[test]
    fn pad_centres_by_gravity() {
        let p = plan(size(4000, 2000), (Some(800), Some(800)), Fit::Pad, C);
        assert_eq!(p.resize, size(800, 400));
        assert_eq!(p.canvas, Some((size(800, 800), 0, 200)));
        let top = plan(
            size(4000, 2000),
            (Some(800), Some(800)),
            Fit::Pad,
            Gravity { x: 500, y: 0 },
        );
        assert_eq!(top.canvas, Some((size(800, 800), 0, 0)));
    }

    #[test]
    fn extreme_aspect_ratios_and_1x1_stay_at_least_one_pixel() {
        for fit in [
            Fit::ScaleDown,
            Fit::Contain,
            Fit::Cover,
            Fit::Crop,
            Fit::Pad,
        ] {
            for source in [(1, 1), (10_000, 1), (1, 10_000), (50_000, 3)] {
                for target in [
                    (Some(1), Some(1)),
                    (Some(4096), Some(4096)),
                    (Some(100), None),
                    (None, Some(7)),
                ] {
                    let p = plan(size(source.0, source.1), target, fit, C);
                    let o = p.output();
                    assert!(
                        o.w >= 1 && o.h >= 1 && o.w <= 4096 && o.h <= 4096,
                        "{source:?} {target:?} {fit:?}: {p:?}"
                    );
                    assert!(
                        p.source.x + p.source.w <= source.0 && p.source.y + p.source.h <= source.1,
                        "{p:?}"
                    );
                    assert!(p.source.w >= 1 && p.source.h >= 1);
                }
            }
        }
    }

    #[test]
    fn cover_of_an_extreme_source_reads_only_the_window() {
        let p = plan(size(1, 10_000), (Some(4096), Some(4096)), Fit::Cover, C);
        assert_eq!(p.resize, size(4096, 4096));
        assert_eq!(p.source.w, 1);
        assert_eq!(p.source.h, 1);
    }
}
