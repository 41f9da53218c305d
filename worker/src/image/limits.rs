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
        let limit = if header.format.scales_on_decode() {
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
