//! Image safety limits, checked from the header before any pixel is decoded (imgproxy's
//! order): source bytes, source pixels, and — for formats that cannot scale while
//! decoding — a lower pixel cap derived from the 128 MiB isolate budget.

use super::decode::{DecodeCost, Header};

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
/// Bytes per output pixel while encoding: the resized RGBA8, libwebp's YUVA planes and
/// analysis buffers, and the output.
const ENCODE_BYTES_PER_PIXEL: u64 = 11;
/// The same for AVIF (the queue consumer's ravif/rav1e: 10-bit planes, reconstruction
/// and look-ahead frames; the grid measures about 56).
const AVIF_ENCODE_BYTES_PER_PIXEL: u64 = 64;
/// What a transform holds whatever its size: codec tables, row buffers, the EXIF reader,
/// rav1e's fixed state (about 2 MiB), and allocator slack the grid has seen.
const FIXED_OVERHEAD_BYTES: u64 = 6 * 1024 * 1024;

/// What a transform will hold at its peak, estimated from the header and the plan before
/// anything is decoded. The source bytes stay alive throughout; then the largest of:
/// - decode: a progressive JPEG's coefficients, the metadata the decoder copies out
///   (twice: its chunks and the assembled profile), and per decoded pixel the largest of
///   (decoder output + its working planes), (decoder output + the RGBA8 copy) and
///   (RGBA8 + the transposed copy an EXIF orientation 5–8 needs), plus a GIF frame that
///   is larger than its canvas;
/// - resize: the decoded RGBA8, its premultiplied copy when the source may have alpha
///   (not JPEG), fast_image_resize's horizontal pass (output width × decoded height) and
///   the resized RGBA8;
/// - encode: the output pixels and the encoder's buffers.
///
/// An upper bound, not a calibration: `worker/tests/footprint.rs` runs the transform over
/// a grid of formats, bit depths, colour types, interlacing, orientations and sizes near
/// the budget under a counting allocator and fails if a measured peak exceeds this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub source_bytes: u64,
    /// A progressive JPEG's coefficients (0 otherwise).
    pub coefficient_bytes: u64,
    /// Metadata the decoder copies out of the file (JPEG APP segments).
    pub metadata_bytes: u64,
    /// The size the source will be decoded at.
    pub decoded: (u32, u32),
    /// What the decoder allocates per decoded pixel.
    pub cost: DecodeCost,
    /// Pixels of a GIF's first frame when it is not the canvas (0 otherwise).
    pub frame_pixels: u64,
    /// Whether the EXIF orientation transposes the pixels (5–8: a second buffer).
    pub transposes: bool,
    /// The output size.
    pub output: (u32, u32),
    /// Whether the source may have alpha (everything but JPEG).
    pub may_have_alpha: bool,
    /// Whether the output is AVIF (a far hungrier encoder).
    pub avif: bool,
    /// What the pixel filters allocate beside the resized image
    /// ([`super::filters::scratch_bytes`]).
    pub filter_scratch: u64,
    /// What is measured on the decoded picture beside it (`gravity=auto`'s saliency grid,
    /// `trim=border`'s scan): counted with the decoded pixels.
    pub analysis_scratch: u64,
}

impl Footprint {
    pub fn bytes(&self) -> u64 {
        let (dw, dh) = (u64::from(self.decoded.0), u64::from(self.decoded.1));
        let (ow, oh) = (u64::from(self.output.0), u64::from(self.output.1));
        let native = u64::from(self.cost.native);
        let per_pixel = (native + u64::from(self.cost.working))
            .max(native + if self.cost.is_rgba8 { 0 } else { 4 })
            .max(if self.transposes { 8 } else { 4 });
        let decode = self.coefficient_bytes
            + 2 * self.metadata_bytes
            + dw * dh * per_pixel
            + self.frame_pixels * 5;
        let premultiplied = if self.may_have_alpha { dw * dh * 4 } else { 0 };
        let resize =
            dw * dh * 4 + premultiplied + ow * dh * 4 + ow * oh * 4 + self.analysis_scratch;
        let per_output_pixel = if self.avif {
            AVIF_ENCODE_BYTES_PER_PIXEL
        } else {
            ENCODE_BYTES_PER_PIXEL
        };
        let encode = ow * oh * per_output_pixel;
        // The filters run on the resized image (at most the output's pixels) alone.
        let filter = ow * oh * 4 + self.filter_scratch;
        self.source_bytes + FIXED_OVERHEAD_BYTES + decode.max(resize).max(encode).max(filter)
    }
}

/// Where a working copy starts to pay: entropy decoding grows with the file's bytes, and
/// DCT scaling does not shorten it (bench-images measures both sides).
pub const DEFAULT_WORKING_COPY_MIN_BYTES: u64 = 3 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest source object accepted, bytes (default 40 MB).
    pub max_source_bytes: u64,
    /// Largest source accepted, pixels (default 50 MP; JPEG decodes at reduced scale).
    pub max_source_pixels: u64,
    /// Largest PNG/WebP/GIF, which decode at full size: the budget over 4 bytes a pixel.
    pub max_unscaled_pixels: u64,
    /// JPEG sources of at least this many bytes get a working copy (`image::working`);
    /// 0: never.
    pub working_copy_min_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_source_bytes: 40 * 1000 * 1000,
            max_source_pixels: 50 * 1000 * 1000,
            max_unscaled_pixels: DECODE_BUDGET_BYTES / BYTES_PER_PIXEL,
            working_copy_min_bytes: DEFAULT_WORKING_COPY_MIN_BYTES,
        }
    }
}

/// Why a source is refused before it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    TooLarge(LimitError),
    #[error("the source is declared as {0:?}, not a JPEG, PNG, WebP or GIF image")]
    NotAnImage(String),
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
    #[error(
        "the JPEG's {scans} scans pass over its blocks more often than an image needs (at \
         most {limit} scans and 16 passes over every block; re-save it with a standard \
         progressive or baseline encoder)"
    )]
    Scans { scans: u32, limit: u32 },
    #[error(
        "the animation goes past {frames} frames: at most {max_frames} frames, {source_mp} MP \
         decoded and {output_mp} MP encoded over all of them; ask for a smaller size, or \
         anim=false for its first frame"
    )]
    Animation {
        frames: u32,
        max_frames: u32,
        source_mp: u64,
        output_mp: u64,
    },
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

    /// What can be known before a byte of the source is read: its size, and its declared
    /// type (R2's `Content-Type`, else the key's extension). A declared type that is not
    /// an image we read (a video segment, an SVG) is refused without reading it; an
    /// unknown or generic type is left to sniffing, under the size limit.
    pub fn check_source(&self, size: u64, declared_type: &str) -> Result<(), SourceError> {
        self.check_bytes(size).map_err(SourceError::TooLarge)?;
        let essence = essence(declared_type);
        // Refuse what is declared as something else; an image type we may not know the
        // spelling of (`image/jpg`, `image/x-png`) or a generic one is left to sniffing.
        let other =
            (!essence.starts_with("image/") && !is_generic(&essence)) || essence == "image/svg+xml";
        if other {
            return Err(SourceError::NotAnImage(essence));
        }
        Ok(())
    }

    /// The pixel limits, from the header: the source cap, the cap for formats that decode
    /// at full size, and for a progressive JPEG its coefficients plus the `source_bytes`
    /// against their budget.
    pub fn check_header(&self, header: &Header, source_bytes: u64) -> Result<(), LimitError> {
        let (w, h) = header.decoded_extent();
        let pixels = u64::from(w) * u64::from(h);
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
        self.check_budget(footprint.bytes())
    }

    /// A modelled peak (`footprint` or `animation::footprint_bytes`) against the budget.
    pub fn check_budget(&self, needed: u64) -> Result<(), LimitError> {
        if needed > TRANSFORM_BUDGET_BYTES {
            return Err(LimitError::Memory {
                needed_mib: needed.div_ceil(1024 * 1024),
                budget_mib: TRANSFORM_BUDGET_BYTES / (1024 * 1024),
            });
        }
        Ok(())
    }
}

/// A declared `Content-Type`'s media type, lower case, without parameters.
pub(crate) fn essence(declared_type: &str) -> String {
    declared_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A declared type that says nothing about the bytes (none, or a generic binary type).
pub(crate) fn is_generic(essence: &str) -> bool {
    matches!(
        essence,
        "" | "application/octet-stream" | "binary/octet-stream"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::SourceFormat;

    const RGB_JPEG: DecodeCost = DecodeCost {
        native: 3,
        working: 3,
        is_rgba8: false,
    };

    fn header(format: SourceFormat, width: u32, height: u32) -> Header {
        Header {
            format,
            width,
            height,
            progressive_coefficient_bytes: None,
            scales_on_decode: format.scales_on_decode(),
            cost: RGB_JPEG,
            frame: None,
            metadata_bytes: 0,
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
    fn sources_are_refused_by_size_and_declared_type_before_reading() {
        let l = Limits::default();
        assert_eq!(l.check_source(1000, "image/jpeg"), Ok(()));
        assert_eq!(l.check_source(1000, ""), Ok(()), "unknown: sniffed");
        assert_eq!(l.check_source(1000, "application/octet-stream"), Ok(()));
        assert_eq!(
            l.check_source(1000, "image/jpg"),
            Ok(()),
            "mislabels are sniffed"
        );
        assert_eq!(l.check_source(1000, "binary/octet-stream"), Ok(()));
        assert!(matches!(
            l.check_source(1000, "text/html"),
            Err(SourceError::NotAnImage(_))
        ));
        assert!(matches!(
            l.check_source(1000, "video/mp4"),
            Err(SourceError::NotAnImage(_))
        ));
        assert!(matches!(
            l.check_source(1000, "image/svg+xml"),
            Err(SourceError::NotAnImage(_))
        ));
        assert!(matches!(
            l.check_source(400_000_000, "image/png"),
            Err(SourceError::TooLarge(LimitError::Bytes { .. }))
        ));
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
            // A 4.1 MP source enlarged to 4096×2560: the encode phase (115 MB) plus the
            // fixed overhead is over.
            (843_000, 0, (2560, 1600), (4096, 2560), false),
            // Enlarged to 3840×2400 it fits.
            (843_000, 0, (2560, 1600), (3840, 2400), true),
            // A 16.7 MP PNG: its decode alone (168 MB) is over; 9 MP from a 20 MB file fits.
            (20_000_000, 0, (4096, 4096), (1200, 1200), false),
            (20_000_000, 0, (3000, 3000), (1200, 1200), true),
        ];
        for (source_bytes, coefficient_bytes, decoded, output, accepted) in table {
            let f = Footprint {
                source_bytes,
                coefficient_bytes,
                metadata_bytes: 0,
                decoded,
                cost: RGB_JPEG,
                frame_pixels: 0,
                transposes: false,
                output,
                may_have_alpha: false,
                avif: false,
                filter_scratch: 0,
                analysis_scratch: 0,
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
}
