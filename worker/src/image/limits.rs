//! Image safety limits, checked from the header before any pixel is decoded (imgproxy's
//! order): source bytes, source pixels, and — for formats that cannot scale while
//! decoding — a lower pixel cap derived from the 128 MiB isolate budget.

use super::decode::Header;

/// Bytes per decoded pixel (RGBA8).
const BYTES_PER_PIXEL: u64 = 4;
/// Memory one transform may use for full-size decoded pixels: the isolate has
/// 128 MiB; the module, the source bytes, the resized copy and the encoder need the rest.
const DECODE_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// Memory a progressive JPEG's coefficients and the source bytes may use together: the
/// decoder keeps every coefficient until the last scan, whatever the DCT scale. The
/// 17.9 MP, 16 MB progressive photo of the benchmark (4:2:2) needs 84 MiB of it and peaks
/// at 92 MiB of the 128 MiB; the remaining 28 MiB hold the module, the scaled pixels,
/// the resized copy and the encoder.
const PROGRESSIVE_BUDGET_BYTES: u64 = 100 * 1024 * 1024;
/// What one transform may hold at its peak, all told: linear memory is capped at 128 MiB,
/// and the module's data, the stack and allocator slack need the rest.
const TRANSFORM_BUDGET_BYTES: u64 = 112 * 1024 * 1024;
/// Bytes per decoded pixel while decoding: the decoder's component planes and RGB output,
/// then our RGBA8 copy (JPEG, measured 7), or the native buffer and the RGBA8 conversion
/// (PNG, measured under 9.8).
const DECODE_BYTES_PER_PIXEL: u64 = 10;
/// Bytes per output pixel while encoding: the resized RGBA8, libwebp's YUVA planes and
/// analysis buffers, and the output (measured under 10.4 for a 7.2 MP WebP).
const ENCODE_BYTES_PER_PIXEL: u64 = 11;

/// What a transform will hold at its peak, estimated from the header and the plan before
/// anything is decoded. The source bytes stay alive through three phases:
/// - decode: a progressive JPEG's coefficients and the decoded pixels;
/// - resize: the decoded RGBA8, its premultiplied copy when the source may have alpha
///   (not JPEG), fast_image_resize's horizontal pass (output width × decoded height) and
///   the resized RGBA8;
/// - encode: the output pixels.
///
/// Calibrated on allocator high-water marks measured in workerd (`x-edge-memory-peak`, MB,
/// measured / model): 3640×2400 JPEG → WebP 1200 px 20.1 / 23, 2000 px 66.7 / 89,
/// 3000 px 89.5 / 89, 3300 px 97.4 / 97; 2560×1600 JPEG → 3400 px (contain) 75.1 / 80;
/// 3640×2400 PNG → 1200 px 85.7 / 87, → 2400 px PNG 108.7 / 108; the 17.9 MP progressive
/// photo → 1200 px 93.8 / 99; 40 MP JPEG → 1200 px 35 / 36.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub source_bytes: u64,
    /// A progressive JPEG's coefficients (0 otherwise).
    pub coefficient_bytes: u64,
    /// The size the source will be decoded at.
    pub decoded: (u32, u32),
    /// The output size.
    pub output: (u32, u32),
    /// Whether the source may have alpha (everything but JPEG).
    pub may_have_alpha: bool,
}

impl Footprint {
    pub fn bytes(&self) -> u64 {
        let (dw, dh) = (u64::from(self.decoded.0), u64::from(self.decoded.1));
        let (ow, oh) = (u64::from(self.output.0), u64::from(self.output.1));
        let decode = self.coefficient_bytes + dw * dh * DECODE_BYTES_PER_PIXEL;
        let premultiplied = if self.may_have_alpha { dw * dh * 4 } else { 0 };
        let resize = dw * dh * 4 + premultiplied + ow * dh * 4 + ow * oh * 4;
        let encode = ow * oh * ENCODE_BYTES_PER_PIXEL;
        self.source_bytes + decode.max(resize).max(encode)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest source object accepted, bytes (default 40 MB).
    pub max_source_bytes: u64,
    /// Largest source accepted, pixels (default 50 MP; JPEG decodes at reduced scale).
    pub max_source_pixels: u64,
    /// Largest PNG/WebP/GIF, which decode at full size: the budget over 4 bytes a pixel.
    pub max_unscaled_pixels: u64,
    /// Allowed output widths (× dpr), if restricted.
    pub widths: Option<Vec<u32>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_source_bytes: 40 * 1000 * 1000,
            max_source_pixels: 50 * 1000 * 1000,
            max_unscaled_pixels: DECODE_BUDGET_BYTES / BYTES_PER_PIXEL,
            widths: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the source is {actual} bytes; the limit is {limit}")]
    Bytes { actual: u64, limit: u64 },
    #[error("the source is {actual} pixels; the limit is {limit}")]
    Pixels { actual: u64, limit: u64 },
    #[error(
        "the source is a progressive JPEG of {actual} pixels; at its chroma subsampling and \
         size the limit is {limit} pixels (a progressive JPEG is held whole while decoding; \
         re-save it as baseline to allow up to the normal pixel limit)"
    )]
    ProgressivePixels { actual: u64, limit: u64 },
    #[error(
        "this source at this output size needs about {needed_mib} MiB to transform, over the \
         {budget_mib} MiB one transform may use in a 128 MB isolate; ask for a smaller width \
         or height, or upload a smaller (or baseline JPEG) original"
    )]
    Memory { needed_mib: u64, budget_mib: u64 },
    #[error("width {width} (× dpr) is not one of the allowed widths")]
    Width { width: u32 },
}

impl Limits {
    pub fn check_bytes(&self, size: u64) -> Result<(), LimitError> {
        if size > self.max_source_bytes {
            return Err(LimitError::Bytes {
                actual: size,
                limit: self.max_source_bytes,
            });
        }
        Ok(())
    }

    /// The pixel limits, from the header: the source cap, the cap for formats that decode
    /// at full size, and for a progressive JPEG its coefficients plus the `source_bytes`
    /// against their budget.
    pub fn check_header(&self, header: &Header, source_bytes: u64) -> Result<(), LimitError> {
        let pixels = u64::from(header.width) * u64::from(header.height);
        let limit = if header.scales_on_decode {
            self.max_source_pixels
        } else {
            self.max_source_pixels.min(self.max_unscaled_pixels)
        };
        if pixels > limit {
            return Err(LimitError::Pixels {
                actual: pixels,
                limit,
            });
        }
        if let Some(coefficients) = header.progressive_coefficient_bytes {
            let budget = PROGRESSIVE_BUDGET_BYTES.saturating_sub(source_bytes);
            if coefficients > budget {
                let limit = u64::try_from(
                    u128::from(pixels) * u128::from(budget) / u128::from(coefficients.max(1)),
                )
                .unwrap_or(u64::MAX);
                return Err(LimitError::ProgressivePixels {
                    actual: pixels,
                    limit,
                });
            }
        }
        Ok(())
    }

    /// The whole transform's estimated peak against its budget.
    pub fn check_memory(&self, footprint: &Footprint) -> Result<(), LimitError> {
        let needed = footprint.bytes();
        if needed > TRANSFORM_BUDGET_BYTES {
            return Err(LimitError::Memory {
                needed_mib: needed.div_ceil(1024 * 1024),
                budget_mib: TRANSFORM_BUDGET_BYTES / (1024 * 1024),
            });
        }
        Ok(())
    }

    pub fn check_width(&self, width: Option<u32>) -> Result<(), LimitError> {
        match (&self.widths, width) {
            (Some(allowed), Some(w)) if !allowed.contains(&w) => {
                Err(LimitError::Width { width: w })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::SourceFormat;

    fn header(format: SourceFormat, width: u32, height: u32) -> Header {
        Header {
            format,
            width,
            height,
            progressive_coefficient_bytes: None,
            scales_on_decode: format.scales_on_decode(),
        }
    }

    #[test]
    fn defaults_follow_the_budget() {
        let l = Limits::default();
        let check = |f, w, h| l.check_header(&header(f, w, h), 1_000_000);
        assert!(l.check_bytes(40_000_000).is_ok());
        assert!(l.check_bytes(40_000_001).is_err());
        assert!(
            check(SourceFormat::Jpeg, 10_000, 5_000).is_ok(),
            "50 MP JPEG"
        );
        assert!(check(SourceFormat::Jpeg, 10_000, 5_001).is_err());
        assert!(
            check(SourceFormat::Png, 4096, 4096).is_ok(),
            "16.7 MP PNG fits the budget"
        );
        assert!(
            check(SourceFormat::Png, 5000, 5000).is_err(),
            "25 MP PNG does not"
        );
    }

    #[test]
    fn progressive_jpegs_are_held_to_their_coefficient_budget() {
        let l = Limits::default();
        // (w, h, coefficient bytes per pixel, source bytes, accepted)
        let table = [
            // The benchmark's 17.9 MP 4:2:2 photo, 16 MB: accepted (it peaks at 92 MiB).
            (5640, 3172, 4, 16_376_668, true),
            // 40 MP 4:2:0 (3 bytes a pixel = 114 MiB of coefficients): refused.
            (8000, 5000, 3, 10_000_000, false),
            // 12 MP 4:4:4 (6 bytes a pixel = 69 MiB) from a 20 MB file: accepted.
            (4000, 3000, 6, 20_000_000, true),
            // The same with a 40 MB file: 69 + 38 MiB is over the budget.
            (4000, 3000, 6, 40_000_000, false),
        ];
        for (w, h, bpp, source, accepted) in table {
            let mut head = header(SourceFormat::Jpeg, w, h);
            head.progressive_coefficient_bytes = Some(u64::from(w) * u64::from(h) * bpp);
            let result = l.check_header(&head, source);
            assert_eq!(
                result.is_ok(),
                accepted,
                "{w}x{h} at {bpp} B/px, {source} B: {result:?}"
            );
            if let Err(LimitError::ProgressivePixels { actual, limit }) = result {
                assert_eq!(actual, u64::from(w) * u64::from(h));
                assert!(limit < actual);
            }
        }
    }

    #[test]
    fn the_footprint_covers_source_coefficients_decode_and_output() {
        let l = Limits::default();
        // (source bytes, coefficients, decoded, output, accepted)
        let table = [
            // 40 MP baseline JPEG at 1/4 → 1200 px (measured peak 35 MB).
            (10_000_000, 0, (2000, 1250), (1200, 750), true),
            // The benchmark's 17.9 MP progressive photo at 1/4 → 1200 px (measured 96 MB).
            (16_376_668, 71_473_152, (1410, 793), (1200, 675), true),
            // The same photo asked at 3000 px: decoded at 1/1 → far over.
            (16_376_668, 71_473_152, (5640, 3172), (3000, 1687), false),
            // 50 MP baseline JPEG asked at 4096 px: a full-size decode → over.
            (20_000_000, 0, (8660, 5774), (4096, 2731), false),
            // 3640×2400 → 2000 px from a full decode (measured 101.6 MB): fits.
            (1_545_319, 0, (3640, 2400), (2000, 1319), true),
            // 3640×2400 at full size: fits (about 107 MB).
            (1_545_319, 0, (3640, 2400), (3640, 2400), true),
            // A 4.1 MP source enlarged to 4096×2560: the encode phase (115 MB) just fits.
            (843_000, 0, (2560, 1600), (4096, 2560), true),
            // A 16.7 MP PNG: its decode alone (168 MB) is over; 9 MP from a 20 MB file fits.
            (20_000_000, 0, (4096, 4096), (1200, 1200), false),
            (20_000_000, 0, (3000, 3000), (1200, 1200), true),
        ];
        for (source_bytes, coefficient_bytes, decoded, output, accepted) in table {
            let f = Footprint {
                source_bytes,
                coefficient_bytes,
                decoded,
                output,
                may_have_alpha: false,
            };
            let result = l.check_memory(&f);
            assert_eq!(
                result.is_ok(),
                accepted,
                "{f:?}: {} MiB, {result:?}",
                f.bytes() >> 20
            );
        }
    }

    #[test]
    fn the_width_allow_list_applies_to_width_times_dpr() {
        let l = Limits {
            widths: Some(vec![320, 640, 1280]),
            ..Limits::default()
        };
        assert!(l.check_width(Some(640)).is_ok());
        assert_eq!(
            l.check_width(Some(641)),
            Err(LimitError::Width { width: 641 })
        );
        assert!(l.check_width(None).is_ok());
    }
}
