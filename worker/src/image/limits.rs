//! Image safety limits, checked from the header before any pixel is decoded (imgproxy's
//! order): source bytes, source pixels, and — for formats that cannot scale while
//! decoding — a lower pixel cap derived from the 128 MiB isolate budget.

/// Bytes per decoded pixel (RGBA8).
const BYTES_PER_PIXEL: u64 = 4;
/// Memory one transform may use for full-size decoded pixels: the isolate has
/// 128 MiB; the module, the source bytes, the resized copy and the encoder need the rest.
const DECODE_BUDGET_BYTES: u64 = 64 * 1024 * 1024;

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

    pub fn check_pixels(
        &self,
        width: u32,
        height: u32,
        scales_on_decode: bool,
    ) -> Result<(), LimitError> {
        let pixels = u64::from(width) * u64::from(height);
        let limit = if scales_on_decode {
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

    #[test]
    fn defaults_follow_the_budget() {
        let l = Limits::default();
        assert!(l.check_bytes(40_000_000).is_ok());
        assert!(l.check_bytes(40_000_001).is_err());
        assert!(l.check_pixels(10_000, 5_000, true).is_ok(), "50 MP JPEG");
        assert!(l.check_pixels(10_000, 5_001, true).is_err());
        assert!(
            l.check_pixels(4096, 4096, false).is_ok(),
            "16.7 MP PNG fits the budget"
        );
        assert!(
            l.check_pixels(5000, 5000, false).is_err(),
            "25 MP PNG does not"
        );
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
