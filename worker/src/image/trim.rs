//! `trim`: the part of the picture a transform starts from. Given sides are resolved on
//! the picture's size ([`kept`]); `trim=border` is found on the decoded pixels
//! ([`inside_border`]) and the geometry planned again on what is left.

use super::decode::Decoded;
use super::geometry::Rect;
use super::options::{BorderTrim, Trim};

/// What `trim` keeps of an upright `size` picture (for `trim=border`, all of it: the
/// border is found after decoding). At least one pixel is kept whatever is asked.
pub fn kept(trim: &Trim, size: (u32, u32)) -> Rect {
    let (w, h) = (size.0.max(1), size.1.max(1));
    match *trim {
        Trim::Sides {
            top,
            right,
            bottom,
            left,
            width,
            height,
        } => {
            let x = left.min(w - 1);
            let y = top.min(h - 1);
            let rest_w = w - x;
            let rest_h = h - y;
            Rect {
                x,
                y,
                w: width
                    .unwrap_or(rest_w.saturating_sub(right))
                    .clamp(1, rest_w),
                h: height
                    .unwrap_or(rest_h.saturating_sub(bottom))
                    .clamp(1, rest_h),
            }
        }
        Trim::None | Trim::Border(_) => Rect { x: 0, y: 0, w, h },
    }
}

/// The part of `image` inside a border of one colour (the given one, else the top-left
/// pixel's), `keep` pixels of border left on each side (`keep` in `image`'s pixels). A
/// picture that is all border is kept whole.
pub fn inside_border(image: &Decoded, trim: &BorderTrim, keep: u32) -> Rect {
    let (w, h) = (image.width as usize, image.height as usize);
    let whole = Rect {
        x: 0,
        y: 0,
        w: image.width,
        h: image.height,
    };
    if w == 0 || h == 0 {
        return whole;
    }
    let colour = trim.color.map_or(
        [image.rgba[0], image.rgba[1], image.rgba[2], image.rgba[3]],
        |c| c.0,
    );
    let reach = 255 - trim.tolerance;
    let border = |x: usize, y: usize| {
        let px = &image.rgba[(y * w + x) * 4..(y * w + x) * 4 + 4];
        px.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= reach)
    };
    let row_is_border = |y: usize, from: usize, to: usize| (from..to).all(|x| border(x, y));
    let Some(top) = (0..h).find(|&y| !row_is_border(y, 0, w)) else {
        return whole;
    };
    // A row that is not all border exists, so bottom ≥ top.
    let bottom = (top..h)
        .rev()
        .find(|&y| !row_is_border(y, 0, w))
        .unwrap_or(top);
    let column_is_border = |x: usize| (top..=bottom).all(|y| border(x, y));
    let left = (0..w).find(|&x| !column_is_border(x)).unwrap_or(0);
    let right = (left..w)
        .rev()
        .find(|&x| !column_is_border(x))
        .unwrap_or(left);
    let keep = keep as usize;
    let (x0, y0) = (left.saturating_sub(keep), top.saturating_sub(keep));
    let (x1, y1) = ((right + 1 + keep).min(w), (bottom + 1 + keep).min(h));
    let to = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Rect {
        x: to(x0),
        y: to(y0),
        w: to(x1 - x0),
        h: to(y1 - y0),
    }
}

#[cfg(test)]
mod tests;
