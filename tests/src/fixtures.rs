//! Images made in code for the end-to-end suite (no downloads): photographs with a known
//! layout, PNGs with alpha, and EXIF written onto a JPEG.

use std::io::Cursor;

use image::ImageEncoder;

/// A `width × height` RGB JPEG (q85) with a pattern that survives resizing.
/// Where `scripts/setup` caches the real photographs (`COURSE_EDGE_FIXTURES`, else
/// `~/.cache/course-edge/fixtures`).
pub fn real_dir() -> std::path::PathBuf {
    std::env::var("COURSE_EDGE_FIXTURES").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/course-edge/fixtures")
        },
        std::path::PathBuf::from,
    )
}

/// A real photograph from the fixture cache.
pub fn real(name: &str) -> Vec<u8> {
    std::fs::read(real_dir().join(name))
        .unwrap_or_else(|e| panic!("fixture {name} ({e}): run scripts/setup"))
}

pub fn photo(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .unwrap_or_else(|e| panic!("encoding a test JPEG: {e}"));
    out
}

/// A PNG whose alpha ramps from 0 to 255 across each row.
pub fn png_with_alpha(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, _| {
        image::Rgba([10, 120, 200, (x % 256) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("encoding a test PNG: {e}"));
    out.into_inner()
}

/// `jpeg` with an EXIF block holding `fields` (tag, value) in the primary IFD.
pub fn with_exif(jpeg: Vec<u8>, fields: &[(exif::Tag, exif::Value)]) -> Vec<u8> {
    use img_parts::{Bytes, ImageEXIF, jpeg::Jpeg};
    let fields: Vec<exif::Field> = fields
        .iter()
        .map(|(tag, value)| exif::Field {
            tag: *tag,
            ifd_num: exif::In::PRIMARY,
            value: value.clone(),
        })
        .collect();
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer
        .write(&mut tiff, true)
        .unwrap_or_else(|e| panic!("writing test EXIF: {e}"));
    let mut file = Jpeg::from_bytes(Bytes::from(jpeg)).unwrap_or_else(|e| panic!("{e}"));
    file.set_exif(Some(Bytes::from(tiff.into_inner())));
    file.encoder().bytes().to_vec()
}
