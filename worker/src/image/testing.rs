//! Test images made in code (gradients with a known layout), so codec tests need no
//! downloaded fixtures.

use std::io::Cursor;

use image::{ImageEncoder, RgbImage, RgbaImage};

/// A horizontal red ramp, vertical green ramp, blue 128.
pub fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128,
        ])
    })
}

pub fn jpeg_of(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            gradient(width, height).as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap_or_else(|e| panic!("encoding a test JPEG: {e}"));
    out
}

pub fn png_of(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    if alpha {
        let img = RgbaImage::from_fn(width, height, |x, _| {
            image::Rgba([200, 10, 10, (x * 255 / width.max(1)) as u8])
        });
        img.write_to(&mut out, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("encoding a test PNG: {e}"));
    } else {
        gradient(width, height)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("encoding a test PNG: {e}"));
    }
    out.into_inner()
}
