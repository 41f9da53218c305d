//! Sniffing, header reading (before any pixel is decoded, so limits apply first) and
//! decoding to RGBA8. JPEG is decoded with DCT scaling (1/2, 1/4, 1/8) straight to the
//! smallest size that still covers the target, which is where most of the time and
//! memory of a large photo goes otherwise. PNG, WebP and GIF (first frame only) decode
//! at full size, so they get their own pixel caps (see `limits`).

use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
        }
    }

    /// Whether the decoder can scale while decoding.
    pub fn scales_on_decode(self) -> bool {
        self == Self::Jpeg
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JPEG, PNG, WebP or GIF image")]
    Unsupported,
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

/// The format from the first bytes (never from the file name or Content-Type).
pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some(SourceFormat::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(SourceFormat::Png),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(SourceFormat::Webp),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(SourceFormat::Gif),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
}

/// Reads dimensions from the header only.
pub fn read_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let format = sniff(bytes).ok_or(DecodeError::Unsupported)?;
    let (width, height) = match format {
        SourceFormat::Jpeg => {
            let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
            decoder
                .read_info()
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            let info = decoder
                .info()
                .ok_or_else(|| DecodeError::Corrupt(String::from("no frame header")))?;
            (u32::from(info.width), u32::from(info.height))
        }
        other => {
            let reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(other));
            reader
                .into_dimensions()
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?
        }
    };
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(String::from("zero-sized image")));
    }
    Ok(Header {
        format,
        width,
        height,
    })
}

fn image_format(format: SourceFormat) -> image::ImageFormat {
    match format {
        SourceFormat::Jpeg => image::ImageFormat::Jpeg,
        SourceFormat::Png => image::ImageFormat::Png,
        SourceFormat::Webp => image::ImageFormat::WebP,
        SourceFormat::Gif => image::ImageFormat::Gif,
    }
}

/// Decoded pixels, RGBA8, row-major, with the embedded ICC profile if there was one.
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    pub has_alpha: bool,
    pub icc: Option<Vec<u8>>,
}

/// Decodes `bytes`. For JPEG, `at_least` is the smallest size the decode must cover
/// (in the file's stored orientation); the DCT scale is chosen from it.
pub fn decode(bytes: &[u8], header: &Header, at_least: (u32, u32)) -> Result<Decoded, DecodeError> {
    match header.format {
        SourceFormat::Jpeg => decode_jpeg(bytes, at_least),
        other => {
            use image::ImageDecoder;
            let corrupt = |e: image::ImageError| DecodeError::Corrupt(e.to_string());
            let mut decoder =
                image::ImageReader::with_format(Cursor::new(bytes), image_format(other))
                    .into_decoder()
                    .map_err(corrupt)?;
            let icc = decoder.icc_profile().ok().flatten();
            let image = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
            let has_alpha = image.color().has_alpha();
            let rgba = image.into_rgba8();
            let (width, height) = rgba.dimensions();
            Ok(Decoded {
                width,
                height,
                rgba: rgba.into_raw(),
                has_alpha,
                icc,
            })
        }
    }
}

fn decode_jpeg(bytes: &[u8], at_least: (u32, u32)) -> Result<Decoded, DecodeError> {
    let corrupt = |e: jpeg_decoder::Error| DecodeError::Corrupt(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(corrupt)?;
    let clamp = |v: u32| u16::try_from(v.max(1)).unwrap_or(u16::MAX);
    // jpeg-decoder picks the smallest 1/1, 1/2, 1/4 or 1/8 scale at least this large.
    let (width, height) = decoder
        .scale(clamp(at_least.0), clamp(at_least.1))
        .map_err(corrupt)?;
    let pixels = decoder.decode().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| DecodeError::Corrupt(String::from("no frame header")))?;
    let (width, height) = (u32::from(width), u32::from(height));
    let count = width as usize * height as usize;
    let mut rgba = Vec::with_capacity(count * 4);
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            for px in pixels.chunks_exact(3) {
                rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
            }
        }
        jpeg_decoder::PixelFormat::L8 => {
            for &l in &pixels {
                rgba.extend_from_slice(&[l, l, l, 255]);
            }
        }
        jpeg_decoder::PixelFormat::L16 => {
            for px in pixels.chunks_exact(2) {
                let l = px[0];
                rgba.extend_from_slice(&[l, l, l, 255]);
            }
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            // Adobe CMYK JPEGs store inverted values; a naive conversion is what
            // browsers do without a profile.
            for px in pixels.chunks_exact(4) {
                let k = u16::from(px[3]);
                let ch = |c: u8| ((u16::from(c) * k) / 255) as u8;
                rgba.extend_from_slice(&[ch(px[0]), ch(px[1]), ch(px[2]), 255]);
            }
        }
    }
    if rgba.len() != count * 4 {
        return Err(DecodeError::Corrupt(String::from("truncated pixel data")));
    }
    Ok(Decoded {
        width,
        height,
        rgba,
        has_alpha: false,
        icc: decoder.icc_profile(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testing::{jpeg_of, png_of};

    #[test]
    fn formats_are_sniffed_from_magic_bytes() {
        assert_eq!(sniff(&jpeg_of(8, 8)), Some(SourceFormat::Jpeg));
        assert_eq!(sniff(&png_of(8, 8, true)), Some(SourceFormat::Png));
        assert_eq!(sniff(b"GIF89a......"), Some(SourceFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(SourceFormat::Webp));
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn headers_give_dimensions_without_decoding() {
        let h = read_header(&jpeg_of(640, 480)).unwrap();
        assert_eq!(
            (h.format, h.width, h.height),
            (SourceFormat::Jpeg, 640, 480)
        );
        let h = read_header(&png_of(33, 17, false)).unwrap();
        assert_eq!((h.format, h.width, h.height), (SourceFormat::Png, 33, 17));
    }

    #[test]
    fn jpeg_decodes_at_reduced_scale() {
        let bytes = jpeg_of(1600, 1200);
        let h = read_header(&bytes).unwrap();
        let full = decode(&bytes, &h, (1600, 1200)).unwrap();
        assert_eq!((full.width, full.height), (1600, 1200));
        let quarter = decode(&bytes, &h, (300, 200)).unwrap();
        assert_eq!(
            (quarter.width, quarter.height),
            (400, 300),
            "1/4 is the smallest covering 300x200"
        );
        assert_eq!(quarter.rgba.len(), 400 * 300 * 4);
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let bytes = jpeg_of(64, 64);
        for cut in [3, 20, 100, bytes.len() / 2] {
            let partial = &bytes[..cut];
            if let Ok(h) = read_header(partial) {
                let _ = decode(partial, &h, (8, 8));
            }
        }
        let png = png_of(64, 64, true);
        let truncated = &png[..png.len() / 2];
        let result = read_header(truncated).and_then(|h| decode(truncated, &h, (8, 8)).map(|_| ()));
        assert!(result.is_err());
        assert_eq!(
            read_header(b"not an image").unwrap_err(),
            DecodeError::Unsupported
        );
    }
}
