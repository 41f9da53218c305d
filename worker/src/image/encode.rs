//! Encoders: lossy WebP with libwebp (the `webp` crate), JPEG and PNG with `image`, AVIF
//! with `ravif` — called only from the queue consumer, never on a request path. Alpha is
//! composited over the background (white unless `background` says otherwise) for JPEG.
//! `exif` (see [`super::metadata`]) goes into the output container when given.

mod animated;
pub use animated::{AnimatedGif, AnimatedWebp};
use image::ImageEncoder;

use super::decode::Decoded;
use super::format::OutputFormat;
use super::metadata;
use super::options::Rgba;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding failed: {0}")]
    Failed(String),
}

fn rgb_over(image: &Decoded, bg: Rgba) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(image.width as usize * image.height as usize * 3);
    for px in image.rgba.chunks_exact(4) {
        let a = u32::from(px[3]);
        let mix = |c: u8, b: u8| ((u32::from(c) * a + u32::from(b) * (255 - a) + 127) / 255) as u8;
        rgb.extend_from_slice(&[
            mix(px[0], bg.0[0]),
            mix(px[1], bg.0[1]),
            mix(px[2], bg.0[2]),
        ]);
    }
    rgb
}

pub fn encode(
    image: &Decoded,
    format: OutputFormat,
    quality: u8,
    bg: Rgba,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let encoded = match format {
        OutputFormat::Avif => return encode_avif(image, quality, bg, exif),
        _ => encode_plain(image, format, quality, bg)?,
    };
    match exif {
        // GIF has no EXIF.
        None => Ok(encoded),
        Some(_) if format == OutputFormat::Gif => Ok(encoded),
        Some(exif) => {
            metadata::embed(encoded, format, exif).map_err(|e| EncodeError::Failed(e.to_string()))
        }
    }
}

fn encode_plain(
    image: &Decoded,
    format: OutputFormat,
    quality: u8,
    bg: Rgba,
) -> Result<Vec<u8>, EncodeError> {
    let failed = |e: image::ImageError| EncodeError::Failed(e.to_string());
    match format {
        OutputFormat::Webp => {
            // RGBA straight in, also for opaque images (every alpha 255): libwebp's lossy
            // encoder writes no alpha chunk when nothing is transparent, and this skips an
            // RGB copy (3 bytes an output pixel) and a pass over the image. `encode_simple`,
            // not `encode`, which unwraps libwebp's error (an out-of-memory would abort).
            let memory = webp::Encoder::from_rgba(&image.rgba, image.width, image.height)
                .encode_simple(false, f32::from(quality))
                .map_err(|e| EncodeError::Failed(format!("libwebp: {e:?}")))?;
            Ok(memory.to_vec())
        }
        OutputFormat::Jpeg => {
            let rgb = rgb_over(image, bg);
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                .write_image(
                    &rgb,
                    image.width,
                    image.height,
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(failed)?;
            Ok(out)
        }
        OutputFormat::Png => {
            // RGBA only when there is alpha: an opaque PNG is smaller as RGB.
            let rgb;
            let (pixels, color) = if image.has_alpha {
                (&image.rgba[..], image::ExtendedColorType::Rgba8)
            } else {
                rgb = rgb_over(image, bg);
                (&rgb[..], image::ExtendedColorType::Rgb8)
            };
            let mut out = Vec::new();
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(pixels, image.width, image.height, color)
                .map_err(failed)?;
            Ok(out)
        }
        OutputFormat::Avif => encode_avif(image, quality, bg, None),
        OutputFormat::Gif => {
            // A still as a one-frame GIF (a source that is not animated, or `anim=false`).
            let mut gif = Box::new(
                AnimatedGif::new((image.width, image.height))
                    .map_err(|e| EncodeError::Failed(e.to_string()))?,
            );
            crate::image::animation::FrameSink::add(gif.as_mut(), image, 0)
                .map_err(EncodeError::Failed)?;
            crate::image::animation::FrameSink::finish(gif).map_err(EncodeError::Failed)
        }
    }
}

/// Speed 1 (slowest, smallest) – 10 (fastest). 8 keeps an 800 px photo near a second
/// in WASM, which is why AVIF runs in the queue consumer, never in a request.
const AVIF_SPEED: u8 = 8;

fn encode_avif(
    image: &Decoded,
    quality: u8,
    bg: Rgba,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = ravif::Encoder::new()
        .with_quality(f32::from(quality.clamp(1, 100)))
        .with_alpha_quality(f32::from(quality.clamp(1, 100)))
        .with_speed(AVIF_SPEED);
    if let Some(exif) = exif {
        encoder = encoder.with_exif(exif);
    }
    let (w, h) = (image.width as usize, image.height as usize);
    let encoded = if image.has_alpha {
        let pixels: Vec<ravif::RGBA8> = image
            .rgba
            .chunks_exact(4)
            .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        encoder.encode_rgba(ravif::Img::new(&pixels[..], w, h))
    } else {
        let rgb = rgb_over(image, bg);
        let pixels: Vec<ravif::RGB8> = rgb
            .chunks_exact(3)
            .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
            .collect();
        encoder.encode_rgb(ravif::Img::new(&pixels[..], w, h))
    };
    encoded
        .map(|e| e.avif_file)
        .map_err(|e| EncodeError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::{SourceFormat, decode, read_header};

    fn gradient(w: u32, h: u32, alpha: bool) -> Decoded {
        let mut rgba = Vec::new();
        for y in 0..h {
            for x in 0..w {
                rgba.extend_from_slice(&[
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    90,
                    if alpha { 128 } else { 255 },
                ]);
            }
        }
        Decoded {
            width: w,
            height: h,
            rgba,
            has_alpha: alpha,
            icc: None,
        }
    }

    #[test]
    fn every_format_round_trips_with_its_magic_and_size() {
        let table = [
            (OutputFormat::Webp, SourceFormat::Webp, false),
            (OutputFormat::Webp, SourceFormat::Webp, true),
            (OutputFormat::Jpeg, SourceFormat::Jpeg, true),
            (OutputFormat::Png, SourceFormat::Png, true),
            (OutputFormat::Png, SourceFormat::Png, false),
        ];
        for (format, sniffed, alpha) in table {
            let bytes = encode(&gradient(120, 80, alpha), format, 80, Rgba::WHITE, None).unwrap();
            let header = read_header(&bytes).unwrap();
            assert_eq!(
                (header.format, header.width, header.height),
                (sniffed, 120, 80),
                "{format:?}"
            );
            let back = decode(&bytes, &header, (120, 80)).unwrap();
            assert_eq!((back.width, back.height), (120, 80));
        }
    }

    #[test]
    fn lossy_webp_is_much_smaller_than_png_for_a_photo_like_image() {
        // Gradient plus deterministic noise: like a photo, it defeats lossless coding.
        let mut image = gradient(400, 300, false);
        let mut seed = 0x2545_f491_u32;
        for px in image.rgba.chunks_exact_mut(4) {
            for c in &mut px[..3] {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *c = c.saturating_add((seed % 24) as u8);
            }
        }
        let webp = encode(&image, OutputFormat::Webp, 80, Rgba::WHITE, None).unwrap();
        let png = encode(&image, OutputFormat::Png, 80, Rgba::WHITE, None).unwrap();
        assert!(
            webp.len() * 3 < png.len(),
            "webp {} vs png {}",
            webp.len(),
            png.len()
        );
    }

    #[test]
    fn opaque_webp_has_no_alpha_chunk_and_transparent_webp_has_one() {
        let opaque = encode(
            &gradient(64, 48, false),
            OutputFormat::Webp,
            80,
            Rgba::WHITE,
            None,
        )
        .unwrap();
        assert_eq!(
            &opaque[12..16],
            b"VP8 ",
            "simple lossy format, no VP8X/ALPH"
        );
        assert!(!opaque.windows(4).any(|w| w == b"ALPH"));
        let transparent = encode(
            &gradient(64, 48, true),
            OutputFormat::Webp,
            80,
            Rgba::WHITE,
            None,
        )
        .unwrap();
        assert!(transparent.windows(4).any(|w| w == b"ALPH"));
    }

    #[test]
    fn avif_carries_the_ftyp_avif_brand() {
        for alpha in [false, true] {
            let bytes = encode(
                &gradient(64, 48, alpha),
                OutputFormat::Avif,
                60,
                Rgba::WHITE,
                None,
            )
            .unwrap();
            assert_eq!(&bytes[4..12], b"ftypavif", "alpha {alpha}");
        }
    }

    #[test]
    fn jpeg_composites_alpha_over_the_background() {
        let mut img = gradient(16, 16, true);
        for px in img.rgba.chunks_exact_mut(4) {
            px.copy_from_slice(&[0, 0, 0, 0]);
        }
        let bytes = encode(&img, OutputFormat::Jpeg, 95, Rgba([255, 0, 0, 255]), None).unwrap();
        let header = read_header(&bytes).unwrap();
        let back = decode(&bytes, &header, (16, 16)).unwrap();
        let px = &back.rgba[..4];
        assert!(px[0] > 240 && px[1] < 20 && px[2] < 20, "{px:?}");
    }
}
