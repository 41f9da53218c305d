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

/// A file from the fixture cache `scripts/setup` fills (`COURSE_EDGE_FIXTURES`, else
/// `~/.cache/course-edge/fixtures`): real photographs and ICC profiles.
pub fn fixture(relative: &str) -> Vec<u8> {
    let dir = std::env::var("COURSE_EDGE_FIXTURES").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/course-edge/fixtures")
        },
        std::path::PathBuf::from,
    );
    let path = dir.join(relative);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; scripts/setup fetches the fixtures",
            path.display()
        )
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

/// A decoded gradient, as the encoders take it.
pub fn decoded(width: u32, height: u32, alpha: bool) -> super::decode::Decoded {
    let rgba = RgbaImage::from_fn(width, height, |x, y| {
        let [r, g, b] = gradient(width, height).get_pixel(x, y).0;
        image::Rgba([r, g, b, if alpha { 128 } else { 255 }])
    });
    super::decode::Decoded {
        width,
        height,
        rgba: rgba.into_raw(),
        has_alpha: alpha,
        icc: None,
    }
}

/// A JPEG carrying an EXIF block with Orientation and, when given, Copyright and Artist.
pub fn jpeg_with_exif(
    width: u32,
    height: u32,
    orientation: u16,
    copyright: Option<&str>,
    artist: Option<&str>,
) -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    use img_parts::{Bytes, ImageEXIF, jpeg::Jpeg};
    let ascii = |s: &str| Value::Ascii(vec![s.as_bytes().to_vec()]);
    let mut fields = vec![Field {
        tag: Tag::Orientation,
        ifd_num: In::PRIMARY,
        value: Value::Short(vec![orientation]),
    }];
    for (tag, text) in [(Tag::Copyright, copyright), (Tag::Artist, artist)] {
        if let Some(text) = text {
            fields.push(Field {
                tag,
                ifd_num: In::PRIMARY,
                value: ascii(text),
            });
        }
    }
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer
        .write(&mut tiff, false)
        .unwrap_or_else(|e| panic!("writing test EXIF: {e}"));
    let mut jpeg = Jpeg::from_bytes(Bytes::from(jpeg_of(width, height)))
        .unwrap_or_else(|e| panic!("reading the test JPEG: {e}"));
    jpeg.set_exif(Some(Bytes::from(tiff.into_inner())));
    jpeg.encoder().bytes().to_vec()
}

/// A copy of decoded pixels (`Decoded` is deliberately not `Clone`: the pipeline never
/// copies a whole image by accident).
pub fn decoded_copy(d: &super::decode::Decoded) -> super::decode::Decoded {
    super::decode::Decoded {
        width: d.width,
        height: d.height,
        rgba: d.rgba.clone(),
        has_alpha: d.has_alpha,
        icc: d.icc.clone(),
    }
}
