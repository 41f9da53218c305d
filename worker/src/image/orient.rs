//! EXIF orientation (values 1–8): read from the JPEG's APP1 segment and applied to the
//! decoded pixels, so every derivative is upright and the tag can be dropped.

use std::io::Cursor;

use super::decode::Decoded;
use super::geometry::Rect;
use super::options::Flip;

/// The EXIF orientation of a JPEG, 1 (upright) when absent or unreadable.
pub fn orientation(bytes: &[u8]) -> u8 {
    exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()
        .and_then(|exif| {
            exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .and_then(|f| f.value.get_uint(0))
        })
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1)
}

/// Whether the orientation swaps width and height (5–8 rotate by 90°).
pub fn swaps_axes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// Applies `orientation` (EXIF semantics) to the pixels. Flips and the half turn
/// (2–4) work in place; the quarter turns and transpositions (5–8) write one new buffer,
/// so at most two copies of the pixels are ever alive (the footprint model counts them).
pub fn apply(decoded: Decoded, orientation: u8) -> Decoded {
    let Decoded {
        width,
        height,
        mut rgba,
        has_alpha,
        icc,
    } = decoded;
    let (w, h) = (width as usize, height as usize);
    let row = w * 4;
    if rgba.len() != row * h {
        unreachable!("decode produced width*height*4 bytes")
    }
    let (width, height, rgba) = match orientation {
        2 => {
            for line in rgba.chunks_exact_mut(row) {
                reverse_pixels(line);
            }
            (width, height, rgba)
        }
        3 => {
            reverse_pixels(&mut rgba);
            (width, height, rgba)
        }
        4 => {
            for y in 0..h / 2 {
                let (top, bottom) = rgba.split_at_mut((h - 1 - y) * row);
                top[y * row..(y + 1) * row].swap_with_slice(&mut bottom[..row]);
            }
            (width, height, rgba)
        }
        5..=8 => {
            // Where the stored pixel (x, y) lands in the h × w output.
            let out = match orientation {
                5 => transposed(&rgba, w, h, |x, y| (y, x)),
                6 => transposed(&rgba, w, h, |x, y| (h - 1 - y, x)),
                7 => transposed(&rgba, w, h, |x, y| (h - 1 - y, w - 1 - x)),
                _ => transposed(&rgba, w, h, |x, y| (y, w - 1 - x)),
            };
            drop(rgba);
            (height, width, out)
        }
        _ => (width, height, rgba),
    };
    Decoded {
        width,
        height,
        rgba,
        has_alpha,
        icc,
    }
}

/// An orientation as the matrix it applies to centred pixel coordinates (x right, y
/// down): the eight EXIF values are the eight symmetries of a rectangle, so any chain of
/// them (EXIF, then the URL's `flip`, then its `rotate`) is one of them again, applied
/// in one pass over the pixels.
fn matrix(orientation: u8) -> [[i8; 2]; 2] {
    match orientation {
        2 => [[-1, 0], [0, 1]],
        3 => [[-1, 0], [0, -1]],
        4 => [[1, 0], [0, -1]],
        5 => [[0, 1], [1, 0]],
        6 => [[0, -1], [1, 0]],
        7 => [[0, -1], [-1, 0]],
        8 => [[0, 1], [-1, 0]],
        _ => [[1, 0], [0, 1]],
    }
}

/// Where `rect` of a `size` picture lands when `orientation` is applied to the picture
/// (`size` is the picture before; the result is in the picture after).
pub fn map_rect(orientation: u8, size: (u32, u32), rect: Rect) -> Rect {
    let m = matrix(orientation);
    let (w, h) = (i64::from(size.0), i64::from(size.1));
    let (ow, oh) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    // Corners in doubled, centred coordinates: exact for every pixel edge.
    let corner = |x: u32, y: u32| {
        let (cx, cy) = (2 * i64::from(x) - w, 2 * i64::from(y) - h);
        let tx = i64::from(m[0][0]) * cx + i64::from(m[0][1]) * cy;
        let ty = i64::from(m[1][0]) * cx + i64::from(m[1][1]) * cy;
        ((tx + ow) / 2, (ty + oh) / 2)
    };
    let a = corner(rect.x, rect.y);
    let b = corner(rect.x + rect.w, rect.y + rect.h);
    let to = |v: i64| u32::try_from(v).unwrap_or(0);
    Rect {
        x: to(a.0.min(b.0)),
        y: to(a.1.min(b.1)),
        w: to((a.0 - b.0).abs()),
        h: to((a.1 - b.1).abs()),
    }
}

/// The orientation that applies `first`, then `second`.
pub fn then(first: u8, second: u8) -> u8 {
    let (a, b) = (matrix(second), matrix(first));
    let product = [
        [
            a[0][0] * b[0][0] + a[0][1] * b[1][0],
            a[0][0] * b[0][1] + a[0][1] * b[1][1],
        ],
        [
            a[1][0] * b[0][0] + a[1][1] * b[1][0],
            a[1][0] * b[0][1] + a[1][1] * b[1][1],
        ],
    ];
    (1..=8).find(|&o| matrix(o) == product).unwrap_or(1)
}

/// The URL's `flip` (h, v or both) then its clockwise `rotate` (degrees), as one
/// orientation.
pub fn of_flip_rotate(flip: Flip, rotate: u16) -> u8 {
    let flipped = match flip {
        Flip::None => 1,
        Flip::Horizontal => 2,
        Flip::Both => 3,
        Flip::Vertical => 4,
    };
    let turned = match rotate {
        90 => 6,
        180 => 3,
        270 => 8,
        _ => 1,
    };
    then(flipped, turned)
}

/// The one spelling of an orientation as `flip` (none or h) then `rotate`, so that
/// `flip=hv` and `rotate=180` (the same pixels) share a derivative.
pub fn flip_rotate_of(orientation: u8) -> (Flip, u16) {
    [Flip::None, Flip::Horizontal]
        .into_iter()
        .flat_map(|flip| [0, 90, 180, 270].map(|rotate| (flip, rotate)))
        .find(|&(flip, rotate)| of_flip_rotate(flip, rotate) == orientation)
        .unwrap_or((Flip::None, 0))
}

/// The `w × h` pixels of `rgba` written to an `h × w` image at `place(x, y)`, one 32×32
/// tile of the source at a time: a tile's reads and writes stay in cache, where a walk
/// along the source's rows writes down a column of the output, a cache line per pixel.
fn transposed(
    rgba: &[u8],
    w: usize,
    h: usize,
    place: impl Fn(usize, usize) -> (usize, usize),
) -> Vec<u8> {
    const TILE: usize = 32;
    let mut out = vec![0u8; rgba.len()];
    for ty in (0..h).step_by(TILE) {
        for tx in (0..w).step_by(TILE) {
            for y in ty..(ty + TILE).min(h) {
                let line = &rgba[y * w * 4..(y + 1) * w * 4];
                for x in tx..(tx + TILE).min(w) {
                    let (nx, ny) = place(x, y);
                    let at = (ny * h + nx) * 4;
                    out[at..at + 4].copy_from_slice(&line[x * 4..x * 4 + 4]);
                }
            }
        }
    }
    out
}

/// Reverses the order of the 4-byte pixels in `pixels`.
fn reverse_pixels(pixels: &mut [u8]) {
    let n = pixels.len() / 4;
    for i in 0..n / 2 {
        let j = n - 1 - i;
        let (left, right) = pixels.split_at_mut(j * 4);
        left[i * 4..i * 4 + 4].swap_with_slice(&mut right[..4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×3 image whose top-left pixel is red, the rest black.
    fn marked() -> Decoded {
        let mut rgba = vec![0u8; 2 * 3 * 4];
        rgba[0] = 255;
        rgba[3] = 255;
        Decoded {
            width: 2,
            height: 3,
            rgba,
            has_alpha: false,
            icc: None,
        }
    }

    fn red_at(d: &Decoded) -> (u32, u32) {
        let i = d.rgba.chunks_exact(4).position(|p| p[0] == 255).unwrap() as u32;
        (i % d.width, i / d.width)
    }

    #[test]
    fn a_rectangle_goes_where_its_pixels_go() {
        // Oracle: the pixels themselves. A 7×4 picture with a marked 3×2 rectangle at
        // (1, 1), turned by each orientation: the marked pixels' bounding box.
        let (w, h) = (7u32, 4u32);
        let rect = Rect {
            x: 1,
            y: 1,
            w: 3,
            h: 2,
        };
        let mut rgba = vec![0u8; (w * h * 4) as usize];
        for y in rect.y..rect.y + rect.h {
            for x in rect.x..rect.x + rect.w {
                rgba[((y * w + x) * 4) as usize] = 255;
            }
        }
        for orientation in 1..=8 {
            let turned = apply(
                Decoded {
                    width: w,
                    height: h,
                    rgba: rgba.clone(),
                    has_alpha: false,
                    icc: None,
                },
                orientation,
            );
            let marked: Vec<(u32, u32)> = turned
                .rgba
                .chunks_exact(4)
                .enumerate()
                .filter(|(_, p)| p[0] == 255)
                .map(|(i, _)| (i as u32 % turned.width, i as u32 / turned.width))
                .collect();
            let (x0, y0) = (
                marked.iter().map(|p| p.0).min().unwrap(),
                marked.iter().map(|p| p.1).min().unwrap(),
            );
            let (x1, y1) = (
                marked.iter().map(|p| p.0).max().unwrap(),
                marked.iter().map(|p| p.1).max().unwrap(),
            );
            assert_eq!(
                map_rect(orientation, (w, h), rect),
                Rect {
                    x: x0,
                    y: y0,
                    w: x1 - x0 + 1,
                    h: y1 - y0 + 1
                },
                "orientation {orientation}"
            );
        }
    }

    /// Each of `steps` applied to the pixels one after another.
    fn step_by_step(steps: &[u8]) -> Decoded {
        steps.iter().fold(lettered(), |d, &o| apply(d, o))
    }

    /// A 3×2 image whose six pixels are all different.
    fn lettered() -> Decoded {
        let rgba = (0..6u8)
            .flat_map(|i| [i * 40, 255 - i * 40, i, 255])
            .collect();
        Decoded {
            width: 3,
            height: 2,
            rgba,
            has_alpha: false,
            icc: None,
        }
    }

    #[test]
    fn a_chain_of_orientations_is_one_orientation() {
        // The oracle: the two transforms applied to the pixels one after the other.
        for first in 1..=8 {
            for second in 1..=8 {
                let once = apply(lettered(), then(first, second));
                let steps = step_by_step(&[first, second]);
                assert_eq!(
                    (once.width, once.height, once.rgba),
                    (steps.width, steps.height, steps.rgba),
                    "{first} then {second}"
                );
            }
        }
    }

    #[test]
    fn flip_comes_before_a_clockwise_rotation() {
        // flip=h,rotate=90 on [a b c / d e f]: mirrored [c b a / f e d], then turned
        // clockwise: the bottom-left (f) goes to the top-left.
        let out = apply(lettered(), of_flip_rotate(Flip::Horizontal, 90));
        assert_eq!((out.width, out.height), (2, 3));
        let first = lettered().rgba;
        assert_eq!(&out.rgba[..4], &first[5 * 4..6 * 4]);
        // rotate=90 alone: the bottom-left (d) goes to the top-left.
        let out = apply(lettered(), of_flip_rotate(Flip::None, 90));
        assert_eq!(&out.rgba[..4], &first[3 * 4..4 * 4]);
        assert_eq!(
            of_flip_rotate(Flip::Both, 0),
            of_flip_rotate(Flip::None, 180)
        );
        assert_eq!(
            of_flip_rotate(Flip::Vertical, 0),
            of_flip_rotate(Flip::Horizontal, 180)
        );
    }

    #[test]
    fn every_flip_and_rotation_has_one_spelling_that_means_the_same() {
        for flip in [Flip::None, Flip::Horizontal, Flip::Vertical, Flip::Both] {
            for rotate in [0, 90, 180, 270] {
                let o = of_flip_rotate(flip, rotate);
                let (f, r) = flip_rotate_of(o);
                assert!(matches!(f, Flip::None | Flip::Horizontal));
                assert_eq!(of_flip_rotate(f, r), o, "{flip:?} {rotate}");
            }
        }
    }

    #[test]
    fn quarter_turns_move_every_pixel_across_tile_boundaries() {
        // 70×45 (tiles of 32 with ragged edges): every pixel distinct, checked against
        // the EXIF definitions pixel by pixel.
        let (w, h) = (70usize, 45usize);
        let image = || Decoded {
            width: w as u32,
            height: h as u32,
            rgba: (0..w * h).flat_map(|i| (i as u32).to_le_bytes()).collect(),
            has_alpha: true,
            icc: None,
        };
        let id = |d: &Decoded, x: usize, y: usize| {
            let at = (y * d.width as usize + x) * 4;
            u32::from_le_bytes([d.rgba[at], d.rgba[at + 1], d.rgba[at + 2], d.rgba[at + 3]])
        };
        for orientation in 5..=8u8 {
            let out = apply(image(), orientation);
            assert_eq!((out.width, out.height), (h as u32, w as u32));
            for y in 0..h {
                for x in 0..w {
                    let (nx, ny) = match orientation {
                        5 => (y, x),
                        6 => (h - 1 - y, x),
                        7 => (h - 1 - y, w - 1 - x),
                        _ => (y, w - 1 - x),
                    };
                    assert_eq!(
                        id(&out, nx, ny),
                        (y * w + x) as u32,
                        "{orientation}: ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn all_eight_orientations_put_the_stored_corner_where_exif_says() {
        // Where the stored top-left pixel ends up after correction, per EXIF.
        let table = [
            (1, (2, 3), (0, 0)),
            (2, (2, 3), (1, 0)),
            (3, (2, 3), (1, 2)),
            (4, (2, 3), (0, 2)),
            (5, (3, 2), (0, 0)),
            (6, (3, 2), (2, 0)),
            (7, (3, 2), (2, 1)),
            (8, (3, 2), (0, 1)),
        ];
        for (o, dims, corner) in table {
            let out = apply(marked(), o);
            assert_eq!((out.width, out.height), dims, "orientation {o}");
            assert_eq!(red_at(&out), corner, "orientation {o}");
            assert_eq!(swaps_axes(o), dims == (3, 2));
        }
    }

    #[test]
    fn missing_exif_is_upright() {
        assert_eq!(orientation(&crate::image::testing::jpeg_of(8, 8)), 1);
        assert_eq!(orientation(b"garbage"), 1);
    }
}
