//! Working copies of large JPEG sources.
//!
//! Entropy decoding a large JPEG costs the same at every DCT scale, and each new derivative
//! of a source (a width, a format) paid it again: most of a second for a 16 MB progressive
//! photo. A working copy is made once, off the request path (the queue consumer, on the
//! first miss of a source version): the source decoded at the largest DCT scale whose
//! decode fits the memory budget, converted to sRGB, and stored as a baseline JPEG with the
//! original's EXIF (so orientation and `metadata=` behave the same) in R2 beside the
//! derivatives, under the source's ETag ([`DerivativeKey::working_copy`]).
//!
//! A later derivative decodes the copy instead — with its own DCT scaling and decode
//! margin — when the copy holds the detail the output needs, to within the 1 % a decode
//! may fall short (`decode::tolerated`; [`transform_from`]); its
//! geometry is planned on the original's size, so crops and output sizes are the
//! original's to the pixel. Anything larger comes from the original.
//!
//! [`DerivativeKey::working_copy`]: super::key::DerivativeKey::working_copy

use super::decode::{self, Header, SourceFormat};
use super::format::OutputFormat;
use super::limits::{self, Footprint, Limits};
use super::options::{ImageOptions, Metadata, Rgba};
use super::{Output, TransformError, color, encode, metadata, orient};

/// JPEG quality of a working copy: one more generation, so high enough that derivatives
/// made from it score within half a SSIMULACRA2 point of those made from the original
/// (bench-images measures it on every photo).
pub const QUALITY: u8 = 95;

/// R2 custom metadata on a working copy: the original's size, `<w>x<h>` in the file's
/// stored orientation.
pub const ORIGINAL_SIZE: &str = "original-size";

/// A working copy, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingCopy {
    pub bytes: Vec<u8>,
    /// The original's size (stored orientation).
    pub original: (u32, u32),
    /// The copy's size (stored orientation).
    pub size: (u32, u32),
}

/// What an R2 `head` of the source can tell before a byte is read: whether a working copy
/// may be worth looking for (a JPEG, or an untyped object, of at least the configured size).
pub fn worth_looking(source_bytes: u64, declared_type: &str, limits: &Limits) -> bool {
    let essence = limits::essence(declared_type);
    let jpeg_or_untyped = matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/pjpeg")
        || limits::is_generic(&essence);
    limits.working_copy_min_bytes > 0
        && source_bytes >= limits.working_copy_min_bytes
        && jpeg_or_untyped
}

/// The size of this source's working copy and the footprint of making it: the largest of
/// the 1/2, 1/4 and 1/8 DCT scales whose decode and encode fit the transform budget.
/// `None` when the source gets no copy (not a DCT JPEG, under the size threshold, or no
/// scale fits).
pub fn plan(
    header: &Header,
    source_bytes: u64,
    limits: &Limits,
) -> Option<((u32, u32), Footprint)> {
    if header.format != SourceFormat::Jpeg
        || !header.scales_on_decode
        || limits.working_copy_min_bytes == 0
        || source_bytes < limits.working_copy_min_bytes
    {
        return None;
    }
    let full = (header.width, header.height);
    [4u32, 2, 1].into_iter().find_map(|eighths| {
        let request = (
            (header.width * eighths).div_ceil(8),
            (header.height * eighths).div_ceil(8),
        );
        let size = decode::jpeg_scaled_size(full, request);
        let footprint = Footprint {
            source_bytes,
            coefficient_bytes: header.progressive_coefficient_bytes.unwrap_or(0),
            metadata_bytes: header.metadata_bytes,
            decoded: size,
            cost: header.cost,
            frame_pixels: 0,
            transposes: false,
            // Encoding the copy holds the decoded RGBA, its RGB copy and the encoder's
            // buffers: what a derivative of the same size is modelled with.
            output: size,
            may_have_alpha: false,
            avif: false,
            filter_scratch: 0,
            analysis_scratch: 0,
        };
        limits
            .check_memory(&footprint)
            .is_ok()
            .then_some((size, footprint))
    })
}

/// Makes the working copy of a source; `Ok(None)` when [`plan`] gives it none. Refuses
/// what a transform refuses (limits, corrupt data) with the same errors.
pub fn make(bytes: &[u8], limits: &Limits) -> Result<Option<WorkingCopy>, TransformError> {
    limits.check_bytes(bytes.len() as u64)?;
    let header = decode::read_header(bytes)?;
    limits.check_header(&header, bytes.len() as u64)?;
    let Some((size, _)) = plan(&header, bytes.len() as u64, limits) else {
        return Ok(None);
    };
    let mut decoded = decode::decode(bytes, &header, size)?;
    if (decoded.width, decoded.height) != size {
        return Err(TransformError::Internal(format!(
            "the working copy decoded at {}x{}, not the planned {}x{}",
            decoded.width, decoded.height, size.0, size.1
        )));
    }
    color::to_srgb(&mut decoded);
    decoded.icc = None;
    // The original's EXIF as it is, Orientation included: the copy's pixels keep the
    // stored orientation, and derivatives apply it as they would to the original.
    let exif = metadata::exif_for(bytes, Metadata::Keep, false);
    let bytes = encode::encode(
        &decoded,
        OutputFormat::Jpeg,
        QUALITY,
        Rgba::WHITE,
        exif.as_deref(),
    )
    .map_err(|e| TransformError::Internal(e.to_string()))?;
    Ok(Some(WorkingCopy {
        bytes,
        original: (header.width, header.height),
        size,
    }))
}

/// A derivative made from a working copy of an `original`-sized source, or `None` when the
/// copy cannot stand in (it lacks the detail the output needs, or is not a plausible copy
/// of that original): the caller then transforms the original, which gives its own errors.
pub fn transform_from(
    copy: &[u8],
    original: (u32, u32),
    options: &ImageOptions,
    format: OutputFormat,
    limits: &Limits,
    clock: &dyn Fn() -> f64,
) -> Option<Output> {
    let header = decode::read_header(copy).ok()?;
    let plausible = header.format == SourceFormat::Jpeg
        && header.scales_on_decode
        && header.width <= original.0
        && header.height <= original.1;
    // `trim=border` may keep a small part of the picture: it needs the original's detail.
    if !plausible || matches!(options.trim, super::options::Trim::Border(_)) {
        return None;
    }
    let orientation = orient::orientation(copy);
    let prepared = super::plan_on(
        header,
        copy.len() as u64,
        orientation,
        original,
        options,
        format,
        limits,
    )
    .ok()?;
    // A copy up to 1 % short of the need serves, as a decode would (`decode::tolerated`).
    let need = decode::tolerated(prepared.need);
    if need.0 > header.width || need.1 > header.height {
        return None;
    }
    super::run(copy, prepared, options, format, limits, clock).ok()
}

/// What a derivative's miss did about its source's working copy (`x-edge-working-copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyUse {
    /// Made from the copy.
    Used,
    /// A copy exists but lacks the detail this output needs: made from the original.
    LacksDetail,
    /// None exists yet: made from the original, and the copy is queued.
    Queued,
    /// R2 could not be asked: made from the original.
    Unavailable,
}

impl CopyUse {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Used => "used",
            Self::LacksDetail => "lacks-detail",
            Self::Queued => "queued",
            Self::Unavailable => "unavailable",
        }
    }
}

/// `<w>x<h>`, as [`ORIGINAL_SIZE`] records it.
pub fn size_to_metadata((w, h): (u32, u32)) -> String {
    format!("{w}x{h}")
}

/// The inverse of [`size_to_metadata`]; `None` for anything else.
pub fn size_from_metadata(value: &str) -> Option<(u32, u32)> {
    let (w, h) = value.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests;
