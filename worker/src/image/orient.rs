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

/// Applies `orientation` (EXIF semantics) to the pixels.
pub fn apply(decoded: Decoded, orientation: u8) -> Decoded {
    use image::imageops;
    if orientation <= 1 || orientation > 8 {
        return decoded;
    }
    let Decoded {
        width,
        height,
        rgba,
        has_alpha,
        icc,
    } = decoded;
    let Some(img) = image::RgbaImage::from_raw(width, height, rgba) else {
        unreachable!("decode produced width*height*4 bytes")
    };
    let out = match orientation {
        2 => imageops::flip_horizontal(&img),
        3 => imageops::rotate180(&img),
        4 => imageops::flip_vertical(&img),
        5 => imageops::flip_horizontal(&imageops::rotate90(&img)),
        6 => imageops::rotate90(&img),
        7 => imageops::flip_horizontal(&imageops::rotate270(&img)),
        _ => imageops::rotate270(&img),
    };
    let (width, height) = out.dimensions();
    Decoded {
        width,
        height,
        rgba: out.into_raw(),
        has_alpha,
        icc,
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
