//! EXIF orientation (values 1–8): read from the JPEG's APP1 segment and applied to the
//! decoded pixels, so every derivative is upright and the tag can be dropped.

use std::io::Cursor;

use super::decode::Decoded;

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
            let place: fn(usize, usize, usize, usize) -> (usize, usize) = match orientation {
                5 => |x, y, _, _| (y, x),
                6 => |x, y, _, h| (h - 1 - y, x),
                7 => |x, y, w, h| (h - 1 - y, w - 1 - x),
                _ => |x, y, w, _| (y, w - 1 - x),
            };
            let mut out = vec![0u8; rgba.len()];
            for (y, line) in rgba.chunks_exact(row).enumerate() {
                for (x, px) in line.chunks_exact(4).enumerate() {
                    let (nx, ny) = place(x, y, w, h);
                    let at = (ny * h + nx) * 4;
                    out[at..at + 4].copy_from_slice(px);
                }
            }
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
