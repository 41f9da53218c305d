//! `metadata=none|copyright|keep`: which of the source's EXIF reaches the derivative.
//!
//! - `none` (default): nothing; derivatives are stripped.
//! - `copyright`: only the EXIF Copyright tag (Cloudflare's meaning), in a minimal TIFF block
//!   written by kamadak-exif; nothing when the source has no such tag.
//! - `keep`: the source's EXIF block as it is, except Orientation, which is set to 1 because
//!   the pixels were already turned upright (a viewer would otherwise rotate them twice).
//!   Fields describing the original (PixelXDimension, a thumbnail) are left as they were.
//!
//! The block goes into the output container: JPEG APP1, PNG eXIf and WebP EXIF (VP8X) by
//! img-parts, AVIF by ravif's Exif item. Colour profiles are never carried: pixels are
//! converted to sRGB before encoding.

use std::io::Cursor;

use super::format::OutputFormat;
use super::options::Metadata;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("could not write EXIF into the {0:?} output: {1}")]
    Embed(OutputFormat, String),
}

/// The raw TIFF-structured EXIF block (starting `II*\0` or `MM\0*`) that a derivative with
/// `mode` carries, taken from the source `bytes`; `None` when there is nothing to carry.
/// `made_upright`: the transform applied the EXIF orientation to the pixels (JPEG sources),
/// so a kept block must say 1. Unreadable EXIF is treated as absent: metadata never fails
/// a transform.
pub fn exif_for(bytes: &[u8], mode: Metadata, made_upright: bool) -> Option<Vec<u8>> {
    if mode == Metadata::None {
        return None;
    }
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()?;
    match mode {
        Metadata::None => None,
        Metadata::Keep => {
            let mut block = exif.buf().to_vec();
            if made_upright {
                reset_orientation(&mut block);
            }
            Some(block)
        }
        Metadata::Copyright => {
            let field = exif.get_field(exif::Tag::Copyright, exif::In::PRIMARY)?;
            let mut writer = exif::experimental::Writer::new();
            writer.push_field(field);
            let mut out = Cursor::new(Vec::new());
            writer.write(&mut out, exif.little_endian()).ok()?;
            Some(out.into_inner())
        }
    }
}

/// Sets every IFD0 Orientation entry (tag 0x0112, one BYTE, SHORT or LONG) of a TIFF block
/// to 1, in place.
/// Bounds-checked throughout: a malformed block is left untouched where it cannot be read.
/// (kamadak-exif reads fields but does not expose their offsets, hence this small walk.)
fn reset_orientation(tiff: &mut [u8]) {
    let little = match tiff.get(..4) {
        Some(b"II\x2a\x00") => true,
        Some(b"MM\x00\x2a") => false,
        _ => return,
    };
    let u16_at = |b: &[u8], at: usize| -> Option<u16> {
        let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let Some(ifd) = u32_at(tiff, 4).map(|o| o as usize) else {
        return;
    };
    let Some(count) = u16_at(tiff, ifd) else {
        return;
    };
    for i in 0..usize::from(count) {
        let entry = ifd + 2 + i * 12;
        const ORIENTATION: u16 = 0x0112;
        if u16_at(tiff, entry) != Some(ORIENTATION) || u32_at(tiff, entry + 4) != Some(1) {
            continue;
        }
        // One value, stored inline in the entry's 4-byte value field at its type's width
        // (BYTE, SHORT or LONG: what `orient::orientation` accepts when reading).
        let one: &[u8] = match (u16_at(tiff, entry + 2), little) {
            (Some(1), _) => &[1],
            (Some(3), true) => &[1, 0],
            (Some(3), false) => &[0, 1],
            (Some(4), true) => &[1, 0, 0, 0],
            (Some(4), false) => &[0, 0, 0, 1],
            _ => continue,
        };
        if let Some(value) = tiff.get_mut(entry + 8..entry + 8 + one.len()) {
            value.copy_from_slice(one);
        }
    }
}

/// Writes `exif` into an encoded JPEG, PNG or WebP. (AVIF takes it at encode time.)
pub fn embed(
    encoded: Vec<u8>,
    format: OutputFormat,
    exif: &[u8],
) -> Result<Vec<u8>, MetadataError> {
    use img_parts::{Bytes, DynImage, ImageEXIF};
    let fail = |why: String| MetadataError::Embed(format, why);
    let mut image = DynImage::from_bytes(Bytes::from(encoded))
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("not a JPEG, PNG or WebP".into()))?;
    image.set_exif(Some(Bytes::copy_from_slice(exif)));
    Ok(image.encoder().bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testing;

    fn field(tiff: &[u8], tag: exif::Tag) -> Option<String> {
        let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
        exif.get_field(tag, exif::In::PRIMARY)
            .map(|f| f.display_value().to_string())
    }

    fn source() -> Vec<u8> {
        testing::jpeg_with_exif(64, 48, 6, Some("© 2026 Course Co"), Some("Ada"))
    }

    #[test]
    fn none_carries_nothing() {
        assert_eq!(exif_for(&source(), Metadata::None, true), None);
    }

    #[test]
    fn copyright_carries_only_the_copyright_tag() {
        let block = exif_for(&source(), Metadata::Copyright, true).unwrap();
        assert!(
            field(&block, exif::Tag::Copyright)
                .unwrap()
                .contains("2026 Course Co")
        );
        assert_eq!(field(&block, exif::Tag::Artist), None);
        assert_eq!(field(&block, exif::Tag::Orientation), None);
    }

    #[test]
    fn copyright_without_the_tag_carries_nothing() {
        let plain = testing::jpeg_with_exif(64, 48, 1, None, Some("Ada"));
        assert_eq!(exif_for(&plain, Metadata::Copyright, true), None);
    }

    #[test]
    fn keep_carries_everything_with_orientation_reset_to_upright() {
        let block = exif_for(&source(), Metadata::Keep, true).unwrap();
        assert_eq!(field(&block, exif::Tag::Artist).as_deref(), Some("\"Ada\""));
        assert!(field(&block, exif::Tag::Copyright).is_some());
        assert_eq!(orientation_of(&block), Some(1));
        // Not made upright (a PNG or WebP source): the orientation stays as the source says.
        let as_is = exif_for(&source(), Metadata::Keep, false).unwrap();
        assert_eq!(orientation_of(&as_is), Some(6));
    }

    fn orientation_of(tiff: &[u8]) -> Option<u32> {
        let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
        exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?
            .value
            .get_uint(0)
    }

    #[test]
    fn orientation_stored_as_byte_short_or_long_is_reset_at_its_own_width() {
        // (little endian, type, value field as stored for 6)
        let table: [(bool, u16, [u8; 4]); 4] = [
            (true, 3, [6, 0, 0, 0]),
            (false, 3, [0, 6, 0, 0]),
            (true, 4, [6, 0, 0, 0]),
            (false, 1, [6, 0, 0, 0]),
        ];
        for (little, kind, value) in table {
            let mut tiff = if little {
                b"II\x2a\x00".to_vec()
            } else {
                b"MM\x00\x2a".to_vec()
            };
            let u16b = |v: u16| {
                if little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            };
            let u32b = |v: u32| {
                if little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            };
            tiff.extend_from_slice(&u32b(8));
            tiff.extend_from_slice(&u16b(1));
            tiff.extend_from_slice(&u16b(0x0112));
            tiff.extend_from_slice(&u16b(kind));
            tiff.extend_from_slice(&u32b(1));
            tiff.extend_from_slice(&value);
            tiff.extend_from_slice(&u32b(0));
            reset_orientation(&mut tiff);
            let exif = exif::Reader::new().read_raw(tiff.clone()).unwrap();
            let got = exif
                .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .and_then(|f| f.value.get_uint(0));
            assert_eq!(got, Some(1), "little {little}, type {kind}");
        }
    }

    #[test]
    fn sources_without_exif_or_with_garbage_carry_nothing() {
        assert_eq!(
            exif_for(&testing::jpeg_of(32, 32), Metadata::Keep, true),
            None
        );
        assert_eq!(exif_for(b"not an image", Metadata::Keep, true), None);
        let mut tiff = b"II\x2a\x00\xff\xff\xff\xff".to_vec();
        reset_orientation(&mut tiff);
        let mut short = b"MM".to_vec();
        reset_orientation(&mut short);
    }

    #[test]
    fn embedded_exif_reads_back_from_every_container() {
        let block = exif_for(&source(), Metadata::Copyright, true).unwrap();
        let image = testing::decoded(40, 30, false);
        for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            let encoded = crate::image::encode::encode(
                &image,
                format,
                80,
                super::super::options::Rgba::WHITE,
                None,
            )
            .unwrap();
            let with = embed(encoded, format, &block).unwrap();
            let exif = exif::Reader::new()
                .read_from_container(&mut Cursor::new(&with))
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let copyright = exif
                .get_field(exif::Tag::Copyright, exif::In::PRIMARY)
                .unwrap();
            assert!(
                copyright.display_value().to_string().contains("Course Co"),
                "{format:?}"
            );
            // Still a decodable image of the same size.
            let header = crate::image::decode::read_header(&with).unwrap();
            assert_eq!((header.width, header.height), (40, 30), "{format:?}");
        }
    }

    #[test]
    fn avif_carries_the_block_as_an_exif_item() {
        let block = exif_for(&source(), Metadata::Copyright, true).unwrap();
        let image = testing::decoded(16, 16, false);
        let avif = crate::image::encode::encode(
            &image,
            OutputFormat::Avif,
            60,
            super::super::options::Rgba::WHITE,
            Some(&block),
        )
        .unwrap();
        assert!(avif.windows(4).any(|w| w == b"Exif"), "no Exif item");
        assert!(
            avif.windows(block.len()).any(|w| w == block),
            "block not carried"
        );
    }
}
