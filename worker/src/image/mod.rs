//! Image optimization core (pure, native-testable): the URL grammar ([`options`]), fit
//! geometry ([`geometry`]), format negotiation ([`format`]), derivative keys ([`key`])
//! and URL signatures ([`sign`]); the codecs ([`decode`], [`color`], [`orient`],
//! [`resize`], [`encode`]) and safety [`limits`]; and [`transform`], the whole pipeline.

pub mod animation;
pub mod color;
pub mod decode;
pub mod encode;
pub mod filters;
pub mod format;
pub mod geometry;
pub mod hints;
pub mod key;
pub mod limits;
pub mod metadata;
pub mod options;
pub mod orient;
pub mod policy;
pub mod remote;
pub mod resize;
pub mod saliency;
pub mod sign;
pub mod sweep;
#[cfg(test)]
pub(crate) mod testing;
pub mod trim;
pub mod working;
use decode::{DecodeError, SourceFormat};
use format::OutputFormat;
use limits::{LimitError, Limits};
use options::{ImageOptions, Rgba};

/// Why a transform failed, classified for the status it maps to at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// 415: not an image format we read.
    #[error("unsupported source: {0}")]
    Unsupported(String),
    /// 422: the bytes are not a valid image.
    #[error("corrupt source: {0}")]
    Corrupt(String),
    /// 422: over a configured limit (checked before decoding).
    #[error("source over the limit: {0}")]
    TooLarge(#[from] LimitError),
    /// 500: our own failure.
    #[error("transform failed: {0}")]
    Internal(String),
}

impl From<limits::SourceError> for TransformError {
    fn from(e: limits::SourceError) -> Self {
        match e {
            limits::SourceError::TooLarge(limit) => Self::TooLarge(limit),
            limits::SourceError::NotAnImage(_) => Self::Unsupported(e.to_string()),
        }
    }
}

impl From<DecodeError> for TransformError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Unsupported => Self::Unsupported(e.to_string()),
            DecodeError::Corrupt(why) => Self::Corrupt(why),
            DecodeError::TooManyScans { scans, limit } => {
                Self::TooLarge(LimitError::Scans { scans, limit })
            }
        }
    }
}

/// Milliseconds spent per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub decode: f64,
    pub resize: f64,
    pub encode: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub format: OutputFormat,
    pub source: SourceFormat,
    /// The size the source was decoded at (after DCT scaling).
    pub decoded: (u32, u32),
    /// The part of the oriented source the output shows (after `trim` and the crop,
    /// `gravity=auto`'s included), in the source's pixels.
    pub region: geometry::Rect,
    pub timings: Timings,
}

/// What a transform will do, decided from the header before any pixel is decoded.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub header: decode::Header,
    /// The orientation applied to the pixels: the file's EXIF orientation (JPEG only),
    /// then the URL's `flip` and `rotate`, composed (`orient::then`).
    pub orientation: u8,
    pub plan: geometry::Plan,
    /// The smallest size the decode must cover, in the file's stored orientation.
    pub at_least: (u32, u32),
    /// The estimated peak, already checked against the budget.
    pub footprint: limits::Footprint,
    /// What `trim` keeps, in the oriented picture's coordinates (all of it for
    /// `trim=border`, which is found after decoding).
    pub kept: geometry::Rect,
    /// The size the geometry was planned on, in the file's stored orientation: the
    /// source's own, or for a working copy the original's (`working`).
    pub planned_on: (u32, u32),
    /// An animation made frame by frame (`animation`): the bytes its model
    /// (`animation::footprint_bytes`) gives, already checked against the budget.
    pub animation: Option<u64>,
    /// The size the whole picture must be decoded at for the planned region to keep its
    /// detail, in the file's stored orientation (before the decode margin): a working
    /// copy more than 1 % smaller than this (`decode::tolerated`) cannot stand in for its
    /// original.
    pub need: (u32, u32),
}

impl Prepared {
    /// The modelled peak of this transform: the animation's model, else the footprint's.
    pub fn model_bytes(&self) -> u64 {
        self.animation.unwrap_or_else(|| self.footprint.bytes())
    }
}

/// Header and limits, geometry, the decode size and the memory footprint: everything
/// that can refuse a source happens here, before decoding.
pub fn prepare(
    bytes: &[u8],
    options: &ImageOptions,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Prepared, TransformError> {
    limits.check_bytes(bytes.len() as u64)?;
    let header = decode::read_header(bytes)?;
    let orientation = if header.format == SourceFormat::Jpeg {
        orient::orientation(bytes)
    } else {
        1
    };
    let mut prepared = plan_for(
        header,
        bytes.len() as u64,
        orientation,
        options,
        format,
        limits,
    )?;
    // An animation, asked for and encodable: every frame, within its own model.
    if !options.still && format.animates() && animation::is_animated(bytes, header.format) {
        let needed = animation::footprint_bytes(
            bytes.len() as u64,
            (header.width, header.height),
            bordered(prepared.plan.output(), options.border()),
            prepared.footprint.filter_scratch,
        );
        limits.check_budget(needed)?;
        prepared.animation = Some(needed);
    }
    Ok(prepared)
}

/// [`prepare`] from a header already read: the limits, the plan and the footprint of a
/// `source_bytes`-long source with this header and orientation. Pure arithmetic, so
/// tests can ask it about any size without making the image.
pub fn plan_for(
    header: decode::Header,
    source_bytes: u64,
    orientation: u8,
    options: &ImageOptions,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Prepared, TransformError> {
    let full = (header.width, header.height);
    plan_on(
        header,
        source_bytes,
        orientation,
        full,
        options,
        format,
        limits,
    )
}

/// [`plan_for`] with the geometry planned on `planned_on` (stored orientation) while the
/// pixels come from a file of `header`'s size: a working copy stands for its original, so
/// crops, rounding and output sizes are the original's, and the copy is a pre-made
/// DCT-style downscale of it.
pub(crate) fn plan_on(
    header: decode::Header,
    source_bytes: u64,
    orientation: u8,
    planned_on: (u32, u32),
    options: &ImageOptions,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Prepared, TransformError> {
    limits.check_header(&header, source_bytes)?;
    // The file's EXIF orientation, then the URL's flip and rotate: one pass over pixels.
    let exif = orientation;
    let asked = orient::of_flip_rotate(options.flip, options.rotate);
    let orientation = orient::then(exif, asked);
    let swap = orient::swaps_axes(orientation);
    let oriented = |(w, h): (u32, u32)| if swap { (h, w) } else { (w, h) };
    let (ow, oh) = oriented(planned_on);
    // `trim` cuts the upright picture (EXIF applied), before flip and rotate turn it.
    let upright = if orient::swaps_axes(exif) {
        (planned_on.1, planned_on.0)
    } else {
        planned_on
    };
    let kept = orient::map_rect(asked, upright, trim::kept(&options.trim(), upright));
    let plan = plan_within(kept, options);
    // Decode just large enough that the planned region still has resize.w × resize.h
    // pixels of real detail: the whole picture at `need` pixels, whichever file holds it.
    let s = (f64::from(plan.resize.w) / f64::from(plan.source.w))
        .max(f64::from(plan.resize.h) / f64::from(plan.source.h));
    let need = (
        (f64::from(ow) * s).ceil() as u32,
        (f64::from(oh) * s).ceil() as u32,
    );
    let at_least = if swap { (need.1, need.0) } else { need };
    // The decode size, and the whole transform's memory, before anything is decoded: a
    // JPEG gets its margin (`decode::jpeg_decode_target`) when it fits, else the plain
    // need, else the need less 1 %; any source whose
    // footprint is still over the budget is refused (422), never left to trap the isolate.
    let footprint = |decoded: (u32, u32)| limits::Footprint {
        source_bytes,
        coefficient_bytes: header.progressive_coefficient_bytes.unwrap_or(0),
        metadata_bytes: header.metadata_bytes,
        decoded,
        cost: header.cost,
        frame_pixels: header.frame.map_or(0, |(w, h)| u64::from(w) * u64::from(h)),
        transposes: swap,
        output: bordered(plan.output(), options.border()),
        may_have_alpha: header.format != SourceFormat::Jpeg,
        avif: format == OutputFormat::Avif,
        filter_scratch: filters::scratch_bytes(&options.filters, (plan.resize.w, plan.resize.h)),
        analysis_scratch: if options.gravity == options::GravityMode::Auto {
            saliency::SCRATCH_BYTES
        } else {
            0
        },
        // `trim=border` only reads the decoded pixels.
    };
    let full = (header.width, header.height);
    let at_least = if header.scales_on_decode {
        // `trim=border` plans again on what the border leaves: the whole picture's detail
        // is kept where it fits.
        let generous = if matches!(options.trim, options::Trim::Border(_)) {
            full
        } else {
            decode::jpeg_decode_target(&header, at_least, planned_on != full)
        };
        let fits = |target| {
            limits
                .check_memory(&footprint(decode::jpeg_scaled_size(full, target)))
                .is_ok()
        };
        // The margin where it fits, else the need, else the need less the 1 % a decode
        // may fall short (`decode::tolerated`: one DCT scale smaller).
        [generous, at_least, decode::tolerated(at_least)]
            .into_iter()
            .find(|&target| fits(target))
            .unwrap_or(at_least)
    } else {
        at_least
    };
    let decoded_size = if header.scales_on_decode {
        decode::jpeg_scaled_size(full, at_least)
    } else {
        full
    };
    let footprint = footprint(decoded_size);
    limits.check_memory(&footprint)?;
    Ok(Prepared {
        header,
        orientation,
        plan,
        at_least,
        footprint,
        kept,
        planned_on,
        need: if swap { (need.1, need.0) } else { need },
        animation: None,
    })
}

/// The geometry planned on the `kept` part of the oriented picture, in the whole
/// picture's coordinates.
fn plan_within(kept: geometry::Rect, options: &ImageOptions) -> geometry::Plan {
    let mut plan = geometry::plan(
        geometry::Size {
            w: kept.w,
            h: kept.h,
        },
        options.target(),
        options.fit,
        options.gravity.point(),
    );
    plan.source.x += kept.x;
    plan.source.y += kept.y;
    plan
}

/// The whole transform, pure: [`prepare`] (header, limits, footprint) → decode (JPEG at
/// reduced scale) → EXIF orientation → crop/resize/pad → encode (with the EXIF
/// `metadata=` asks for). `clock` returns milliseconds.
pub fn transform(
    bytes: &[u8],
    options: &ImageOptions,
    format: OutputFormat,
    limits: &Limits,
    clock: &dyn Fn() -> f64,
) -> Result<Output, TransformError> {
    let prepared = prepare(bytes, options, format, limits)?;
    run(bytes, prepared, options, format, limits, clock)
}

/// The decoded (oriented) picture made into the output's pixels: cropped and resized as
/// `plan` says, filtered, padded and framed. Stills and every frame of an animation.
pub(crate) fn finish(
    decoded: decode::Decoded,
    plan: &geometry::Plan,
    scale: (f64, f64),
    options: &ImageOptions,
) -> Result<decode::Decoded, TransformError> {
    let mut resized =
        resize::apply(decoded, plan, scale).map_err(|e| TransformError::Internal(e.to_string()))?;
    filters::apply(
        &mut resized.rgba,
        resized.width,
        resized.height,
        resized.has_alpha,
        &options.filters,
    );
    let resized = resize::pad(resized, plan, options.background.unwrap_or(Rgba::WHITE));
    Ok(match options.border() {
        Some(border) => resize::border(resized, border),
        None => resized,
    })
}

/// The output size with `border` around it.
pub(crate) fn bordered(output: geometry::Size, border: Option<options::Border>) -> (u32, u32) {
    match border {
        Some(b) => (
            output.w.saturating_add(b.left).saturating_add(b.right),
            output.h.saturating_add(b.top).saturating_add(b.bottom),
        ),
        None => (output.w, output.h),
    }
}

/// Decode, orient, resize and encode what [`plan_on`] prepared.
pub(crate) fn run(
    bytes: &[u8],
    prepared: Prepared,
    options: &ImageOptions,
    format: OutputFormat,
    limits: &Limits,
    clock: &dyn Fn() -> f64,
) -> Result<Output, TransformError> {
    if prepared.animation.is_some() {
        return animation::run(bytes, prepared, options, format, clock);
    }
    let source = prepared.header.format;
    let orientation_applied = source == SourceFormat::Jpeg;
    let rendered = render(bytes, prepared, options, limits, clock)?;
    let Rendered {
        image: resized,
        decoded_at,
        region,
        mut timings,
    } = rendered;
    let background = options.background.unwrap_or(Rgba::WHITE);
    let before_encode = clock();
    // The EXIF Orientation tag kept by `metadata=keep` is reset: the pixels are upright.
    let exif = metadata::exif_for(bytes, options.metadata, orientation_applied);
    let out = encode::encode(
        &resized,
        format,
        options.quality(),
        background,
        exif.as_deref(),
    )
    .map_err(|e| TransformError::Internal(e.to_string()))?;
    timings.encode = clock() - before_encode;
    Ok(Output {
        bytes: out,
        width: resized.width,
        height: resized.height,
        format,
        source,
        decoded: decoded_at,
        region,
        timings,
    })
}

/// `format=json`: what a transform of a source gives, without encoding it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Description {
    /// The result's size.
    pub width: u32,
    pub height: u32,
    pub original: Original,
    /// A ThumbHash of the result (standard base64), with `placeholder=thumbhash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
}

/// The source as `format=json` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Original {
    /// As displayed (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    pub file_size: u64,
    /// The source's media type.
    pub format: &'static str,
}

/// The longest side a ThumbHash is made from (the format's own limit).
const THUMBHASH_SIDE: u32 = 100;

/// [`Description`] of `options` applied to `bytes`. The sizes come from the plan alone
/// (no pixel decoded) unless the result's pixels are needed: a ThumbHash, or
/// `trim=border` (its size is found on the pixels).
pub fn describe(
    bytes: &[u8],
    options: &ImageOptions,
    limits: &Limits,
    clock: &dyn Fn() -> f64,
) -> Result<Description, TransformError> {
    // The footprint of the pixels that are made (a WebP's encoder is the common case).
    let prepared = prepare(bytes, options, OutputFormat::Webp, limits)?;
    let header = prepared.header;
    let exif = if header.format == SourceFormat::Jpeg {
        orient::orientation(bytes)
    } else {
        1
    };
    let (width, height) = if orient::swaps_axes(exif) {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    let original = Original {
        width,
        height,
        file_size: bytes.len() as u64,
        format: header.format.content_type(),
    };
    let wants_hash = options.answer == options::Answer::JsonWithThumbHash;
    if !wants_hash && !matches!(options.trim, options::Trim::Border(_)) {
        let (width, height) = bordered(prepared.plan.output(), options.border());
        return Ok(Description {
            width,
            height,
            original,
            thumbhash: None,
        });
    }
    let image = render(bytes, prepared, options, limits, clock)?.image;
    let (width, height) = (image.width, image.height);
    let thumbhash = if wants_hash {
        Some(thumbhash_of(image)?)
    } else {
        None
    };
    Ok(Description {
        width,
        height,
        original,
        thumbhash,
    })
}

/// The ThumbHash of `image`, made from a copy at most [`THUMBHASH_SIDE`] a side.
fn thumbhash_of(image: decode::Decoded) -> Result<String, TransformError> {
    use base64::Engine;
    let s = f64::from(THUMBHASH_SIDE) / f64::from(image.width.max(image.height).max(1));
    let small = if s < 1.0 {
        let size = geometry::Size {
            w: ((f64::from(image.width) * s).round() as u32).clamp(1, THUMBHASH_SIDE),
            h: ((f64::from(image.height) * s).round() as u32).clamp(1, THUMBHASH_SIDE),
        };
        let plan = geometry::Plan {
            source: geometry::Rect {
                x: 0,
                y: 0,
                w: image.width,
                h: image.height,
            },
            resize: size,
            canvas: None,
        };
        resize::apply(image, &plan, (1.0, 1.0))
            .map_err(|e| TransformError::Internal(e.to_string()))?
    } else {
        image
    };
    let hash =
        thumbhash::rgba_to_thumb_hash(small.width as usize, small.height as usize, &small.rgba);
    Ok(base64::engine::general_purpose::STANDARD.encode(hash))
}

/// The output's pixels, before encoding.
struct Rendered {
    image: decode::Decoded,
    decoded_at: (u32, u32),
    region: geometry::Rect,
    timings: Timings,
}

/// Decode, orient, trim, crop, resize, filter, pad and border what [`plan_on`] prepared.
fn render(
    bytes: &[u8],
    prepared: Prepared,
    options: &ImageOptions,
    limits: &Limits,
    clock: &dyn Fn() -> f64,
) -> Result<Rendered, TransformError> {
    let Prepared {
        header,
        orientation,
        plan,
        at_least,
        planned_on,
        kept,
        footprint,
        ..
    } = prepared;
    let swap = orient::swaps_axes(orientation);
    let (ow, oh) = if swap {
        (planned_on.1, planned_on.0)
    } else {
        planned_on
    };
    let started = clock();
    let mut decoded = decode::decode(bytes, &header, at_least)?;
    color::to_srgb(&mut decoded);
    let decoded = orient::apply(decoded, orientation);
    let decoded_at = (decoded.width, decoded.height);
    let after_decode = clock();
    let scale = (
        f64::from(decoded.width) / f64::from(ow),
        f64::from(decoded.height) / f64::from(oh),
    );
    // `trim=border`: the border found on the pixels, and the geometry planned again on
    // what it leaves (its output checked against the budget before it is made).
    let (plan, kept) = match options.trim() {
        options::Trim::Border(border) => {
            let keep = (f64::from(border.keep) * scale.0).round() as u32;
            let found = trim::inside_border(&decoded, &border, keep);
            let back = |v: u32, s: f64| (f64::from(v) / s).round() as u32;
            let x = back(found.x, scale.0).min(ow - 1);
            let y = back(found.y, scale.1).min(oh - 1);
            let kept = geometry::Rect {
                x,
                y,
                w: back(found.w, scale.0).clamp(1, ow - x),
                h: back(found.h, scale.1).clamp(1, oh - y),
            };
            let plan = plan_within(kept, options);
            limits.check_memory(&limits::Footprint {
                output: bordered(plan.output(), options.border()),
                filter_scratch: filters::scratch_bytes(
                    &options.filters,
                    (plan.resize.w, plan.resize.h),
                ),
                ..footprint
            })?;
            (plan, kept)
        }
        _ => (plan, kept),
    };
    // `gravity=auto`: the window the geometry sized is placed on the pixels.
    let plan = if options.gravity == options::GravityMode::Auto {
        saliency::placed(plan, &decoded, scale, kept)
    } else {
        plan
    };
    let region = plan.source;
    let resized = finish(decoded, &plan, scale, options)?;
    let after_resize = clock();
    Ok(Rendered {
        image: resized,
        decoded_at,
        region,
        timings: Timings {
            decode: after_decode - started,
            resize: after_resize - after_decode,
            encode: 0.0,
        },
    })
}

#[cfg(test)]
mod parity_tests;

#[cfg(test)]
mod pipeline_tests {
    use super::*;

    fn run(bytes: &[u8], opts: &str, format: OutputFormat) -> Result<Output, TransformError> {
        let options = ImageOptions::parse(opts).unwrap().options;
        transform(bytes, &options, format, &Limits::default(), &|| 0.0)
    }

    #[test]
    fn a_large_jpeg_is_decoded_at_reduced_scale_and_resized_exactly() {
        let out = run(&testing::jpeg_of(3200, 1600), "w=400", OutputFormat::Webp).unwrap();
        assert_eq!((out.width, out.height), (400, 200));
        assert_eq!(
            out.decoded,
            (800, 400),
            "1/4 DCT scale: twice the output, for the Lanczos3 step"
        );
        assert_eq!(decode::sniff(&out.bytes), Some(SourceFormat::Webp));
    }

    #[test]
    fn a_progressive_jpeg_keeps_the_decode_margin_only_where_its_footprint_fits() {
        let progressive = |width, height, coefficients| decode::Header {
            format: SourceFormat::Jpeg,
            width,
            height,
            progressive_coefficient_bytes: Some(coefficients),
            scales_on_decode: true,
            cost: decode::DecodeCost {
                native: 3,
                working: 7,
                is_rgba8: false,
            },
            frame: None,
            metadata_bytes: 0,
        };
        let plan = |header, bytes, spec: &str| {
            let options = ImageOptions::parse(spec).unwrap().options;
            plan_for(
                header,
                bytes,
                1,
                &options,
                OutputFormat::Webp,
                &Limits::default(),
            )
            .unwrap()
        };
        // 9 MP, 8.9 MB (4:2:0): twice the need at 800 px fits — 1/2 scale, not 1/4.
        let rhythm = progressive(3840, 2400, 216_000 * 128);
        let p = plan(rhythm, 8_900_000, "w=800");
        assert_eq!(p.at_least, (1600, 1000));
        assert_eq!(p.footprint.decoded, (1920, 1200));
        // 17.9 MP, 16 MB (4:2:2): twice would be 1/2 scale, about 133 MiB: the plain need.
        let elephants = progressive(5640, 3172, 560_167 * 128);
        let p = plan(elephants, 16_378_000, "w=800");
        // (801: 450 rows of a 5640×3172 photo need 800.1 columns, rounded up.)
        assert_eq!(p.at_least, (801, 450));
        assert_eq!(p.footprint.decoded, (1410, 793));
        // As an 800×800 square it needs 1423×800, 13 px past ¼ scale: ½ is over the
        // budget, so ¼ (1 % short, `decode::tolerated`) rather than a 422.
        let p = plan(elephants, 16_378_000, "w=800,h=800,fit=cover");
        assert_eq!(p.need, (1423, 800));
        assert_eq!(p.footprint.decoded, (1410, 793));
        // More is not tolerated: an 822 px square needs 1462 px, 3.5 % past ¼: a 422.
        let options = ImageOptions::parse("w=822,h=822,fit=cover")
            .unwrap()
            .options;
        let refused = plan_for(
            elephants,
            16_378_000,
            1,
            &options,
            OutputFormat::Webp,
            &Limits::default(),
        );
        assert!(
            matches!(
                refused,
                Err(TransformError::TooLarge(LimitError::Memory { .. }))
            ),
            "{refused:?}"
        );
    }

    /// The decoded pixels of a PNG output (lossless: what the pipeline produced).
    fn pixels(out: &Output) -> decode::Decoded {
        let header = decode::read_header(&out.bytes).unwrap();
        decode::decode(&out.bytes, &header, (1, 1)).unwrap()
    }

    #[test]
    fn flip_and_rotate_move_every_pixel_where_the_oracle_puts_it() {
        // Oracle: the source's own pixels, turned by `orient::apply` (itself checked
        // against EXIF's corner table), at the source's size (no resampling).
        let png = testing::png_of(40, 20, false);
        let source = pixels(&run(&png, "", OutputFormat::Png).unwrap());
        for (spec, orientation) in [
            ("rotate=90", 6),
            ("rotate=180", 3),
            ("rotate=270", 8),
            ("flip=h", 2),
            ("flip=v", 4),
            ("flip=h,rotate=90", 7),
        ] {
            let out = pixels(&run(&png, spec, OutputFormat::Png).unwrap());
            let want = orient::apply(testing::decoded_copy(&source), orientation);
            assert_eq!((out.width, out.height), (want.width, want.height), "{spec}");
            assert!(
                out.rgba == want.rgba,
                "{spec}: pixels differ from the oracle"
            );
        }
        // width and height are the rotated image's.
        let turned = run(&png, "rotate=90,w=10", OutputFormat::Png).unwrap();
        assert_eq!((turned.width, turned.height), (10, 20));
    }

    #[test]
    fn exif_orientation_comes_before_the_urls_rotation() {
        // Stored 60×30 with orientation 6 (shown 30×60); rotate=90 turns it to 60×30.
        let jpeg = testing::jpeg_with_exif(60, 30, 6, None, None);
        let shown = run(&jpeg, "", OutputFormat::Png).unwrap();
        assert_eq!((shown.width, shown.height), (30, 60));
        let turned = run(&jpeg, "rotate=90", OutputFormat::Png).unwrap();
        assert_eq!((turned.width, turned.height), (60, 30));
        let back = run(&jpeg, "rotate=270", OutputFormat::Png).unwrap();
        assert_eq!((back.width, back.height), (60, 30));
        // 6 then 90° clockwise is a half turn of the stored pixels.
        let stored = pixels(&run(&testing::jpeg_of(60, 30), "", OutputFormat::Png).unwrap());
        let half = orient::apply(stored, 3);
        let turned = pixels(&turned);
        let diff = turned
            .rgba
            .iter()
            .zip(&half.rgba)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .max()
            .unwrap();
        assert_eq!(
            diff, 0,
            "rotate=90 of orientation 6 is the stored image turned 180°"
        );
    }

    #[test]
    fn squeeze_stretches_and_oversized_boxes_are_not_errors() {
        let jpeg = testing::jpeg_of(400, 200);
        let squeezed = run(&jpeg, "w=100,h=100,fit=squeeze", OutputFormat::Jpeg).unwrap();
        assert_eq!((squeezed.width, squeezed.height), (100, 100));
        // scale-down and crop never enlarge: a box above the cap is the source's size.
        for spec in ["w=5000", "w=5000,h=9000,fit=crop", "h=100000"] {
            let out = run(&jpeg, spec, OutputFormat::Jpeg).unwrap();
            assert_eq!((out.width, out.height), (400, 200), "{spec}");
        }
        // contain may enlarge: to the cap.
        let out = run(&jpeg, "w=5000,fit=contain", OutputFormat::Jpeg).unwrap();
        assert_eq!(
            (out.width, out.height),
            (MAX_SIDE_FOR_TESTS, MAX_SIDE_FOR_TESTS / 2)
        );
    }

    const MAX_SIDE_FOR_TESTS: u32 = options::MAX_SIDE;

    #[test]
    fn filters_change_the_image_but_not_the_pad_canvas() {
        // A flat grey PNG, halved in brightness, padded with grey: the image is 64, the
        // bands stay 128 (filters run before the canvas, as Cloudflare's border does).
        let grey = {
            let img = image::RgbImage::from_pixel(200, 100, image::Rgb([128, 128, 128]));
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            out.into_inner()
        };
        let out = pixels(
            &run(
                &grey,
                "w=100,h=100,fit=pad,bg=808080,brightness=0.5",
                OutputFormat::Png,
            )
            .unwrap(),
        );
        let at = |x: usize, y: usize| &out.rgba[(y * 100 + x) * 4..(y * 100 + x) * 4 + 3];
        assert_eq!(at(50, 5), [128, 128, 128], "the band");
        assert_eq!(at(50, 50), [64, 64, 64], "the image");
        // saturation=0 makes any colour grey.
        let colour = pixels(
            &run(
                &testing::png_of(50, 50, false),
                "saturation=0",
                OutputFormat::Png,
            )
            .unwrap(),
        );
        assert!(
            colour
                .rgba
                .chunks_exact(4)
                .all(|px| px[0] == px[1] && px[1] == px[2])
        );
    }

    #[test]
    fn cover_and_pad_produce_the_box() {
        let jpeg = testing::jpeg_of(1200, 800);
        let cover = run(&jpeg, "w=300,h=300,fit=cover", OutputFormat::Jpeg).unwrap();
        assert_eq!((cover.width, cover.height), (300, 300));
        let pad = run(
            &jpeg,
            "w=300,h=300,fit=pad,background=black",
            OutputFormat::Png,
        )
        .unwrap();
        assert_eq!((pad.width, pad.height), (300, 300));
    }

    #[test]
    fn png_with_alpha_keeps_it_in_webp_and_png() {
        let png = testing::png_of(200, 100, true);
        let out = run(&png, "w=100", OutputFormat::Png).unwrap();
        let back = decode::decode(
            &out.bytes,
            &decode::read_header(&out.bytes).unwrap(),
            (1, 1),
        )
        .unwrap();
        assert!(back.has_alpha);
        assert_eq!((back.width, back.height), (100, 50));
    }

    #[test]
    fn bad_sources_are_classified() {
        assert!(matches!(
            run(b"<svg/>", "w=10", OutputFormat::Webp),
            Err(TransformError::Unsupported(_))
        ));
        let jpeg = testing::jpeg_of(64, 64);
        assert!(matches!(
            run(&jpeg[..40], "w=10", OutputFormat::Webp),
            Err(TransformError::Corrupt(_))
        ));
        let limits = Limits {
            max_source_pixels: 1000,
            ..Limits::default()
        };
        let options = ImageOptions::parse("w=10").unwrap().options;
        assert!(matches!(
            transform(&jpeg, &options, OutputFormat::Webp, &limits, &|| 0.0),
            Err(TransformError::TooLarge(LimitError::Pixels { .. }))
        ));
    }
}

/// The review's cache-poisoning class, closed: whatever the spelling, a URL and its
/// normalized form give the same derivative — the same pixels and format, and the same
/// ETag and cache headers — over real sources (an oriented JPEG with EXIF, a PNG with
/// alpha). Options are generated from a fixed seed over every option's range.
#[cfg(test)]
mod canonical_tests {
    use super::*;
    use crate::image::key::DerivativeKey;

    /// xorshift64*: a fixed, reproducible stream (no test-only dependency).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    fn generated(rng: &mut Rng) -> String {
        let (w, h) = (1 + rng.next() % 160, 1 + rng.next() % 160);
        let (gx, gy) = (rng.next() % 21, rng.next() % 21);
        let gravity = match rng.pick(&["left", "right", "top", "bottom", "center", "auto", "xy"]) {
            "xy" => format!("{}x{}", gx as f64 / 20.0, gy as f64 / 20.0),
            named => named.to_owned(),
        };
        let q = 1 + rng.next() % 100;
        let candidates = [
            format!(
                "{}={}",
                rng.pick(&["w", "width"]),
                if rng.next().is_multiple_of(5) {
                    String::from("auto")
                } else {
                    w.to_string()
                }
            ),
            format!("{}={h}", rng.pick(&["h", "height"])),
            format!(
                "fit={}",
                rng.pick(&["scale-down", "contain", "cover", "crop", "pad", "squeeze"])
            ),
            format!("g={gravity}"),
            format!(
                "q={}",
                rng.pick(&["n", "85", "high", "low"])
                    .replace('n', &q.to_string())
            ),
            format!("dpr={}", rng.pick(&["1", "1.5", "2", "2.5", "3"])),
            format!(
                "bg={}",
                rng.pick(&[
                    "white",
                    "black",
                    "red",
                    "#fff",
                    "rgba(10,20,30,0.5)",
                    "transparent"
                ])
            ),
            format!("metadata={}", rng.pick(&["none", "copyright", "keep"])),
            format!("f={}", rng.pick(&["auto", "webp", "jpeg", "png", "json"])),
            String::from("onerror=redirect"),
            format!("v={}", rng.next() % 4),
            // Spellings of one orientation must give the same pixels (flip=hv is
            // rotate=180); neutral filter values must be no filter at all.
            format!("flip={}", rng.pick(&["h", "v", "hv", "vh"])),
            format!("rotate={}", rng.pick(&["0", "90", "180", "270", "360"])),
            format!("brightness={}", rng.pick(&["0", "1", "1.00", "0.5", "2"])),
            format!("contrast={}", rng.pick(&["0", "1", "1.5"])),
            format!("gamma={}", rng.pick(&["0", "1", "0.8"])),
            format!("saturation={}", rng.pick(&["0", "1", "1.0", "2"])),
            format!("blur={}", rng.pick(&["1", "5", "250"])),
            format!("sharpen={}", rng.pick(&["0", "0.0", "1", "10"])),
            // trim (dpr scales it), its border form, and a border around the output.
            format!(
                "trim={}",
                rng.pick(&[
                    "0;0;0;0",
                    "1;2;3;4",
                    "10;0;0;10",
                    "border",
                    "500;0;0;0",
                    "0;0;0;60000"
                ])
            ),
            format!(
                "border={}",
                rng.pick(&[
                    "0",
                    "2",
                    "1;0;3;0",
                    "2;2;2;2,border.color=#000",
                    "3,border.color=red",
                    "900"
                ])
            ),
            format!("scq={}", rng.pick(&["50", "low", "85"])),
        ];
        candidates
            .into_iter()
            .filter(|_| rng.next().is_multiple_of(2))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn a_url_and_its_normalized_form_give_the_same_derivative() {
        let sources = [
            testing::jpeg_with_exif(72, 40, 6, Some("(c) Course Co"), Some("Ada")),
            testing::png_of(60, 44, true),
        ];
        let mut rng = Rng(0x5EED_CAFE_F00D_0001);
        let formats = [OutputFormat::Webp, OutputFormat::Jpeg, OutputFormat::Png];
        let mut compared = 0;
        for _ in 0..160 {
            let spelled = generated(&mut rng);
            let original = ImageOptions::parse(&spelled).unwrap().options;
            // The output format follows `f=` as negotiation would; `auto` may be any.
            let format = match original.format {
                options::FormatRequest::Png => OutputFormat::Png,
                options::FormatRequest::Jpeg => OutputFormat::Jpeg,
                options::FormatRequest::Webp => OutputFormat::Webp,
                _ => formats[(rng.next() % 3) as usize],
            };
            let normalized = ImageOptions::parse(&original.normalized()).unwrap().options;
            assert_eq!(normalized, original.canonical(), "{spelled}");
            for source in &sources {
                let a = transform(source, &original, format, &Limits::default(), &|| 0.0);
                let b = transform(source, &normalized, format, &Limits::default(), &|| 0.0);
                assert_eq!(a, b, "{spelled} → {}", original.normalized());
                let key = |o: &ImageOptions| DerivativeKey::new("k", "e", o, format).etag();
                assert_eq!(key(&original), key(&normalized), "{spelled}");
                assert_eq!(original.version, normalized.version, "the cache headers");
                assert_eq!(original.redirect_on_error, normalized.redirect_on_error);
                compared += 1;
            }
        }
        assert_eq!(compared, 320);
    }

    #[test]
    fn every_pixel_changing_option_changes_the_derivative() {
        // The review's case: a background must not be dropped from the key.
        let a = ImageOptions::parse("w=400,f=jpeg,bg=ff0000")
            .unwrap()
            .options;
        let b = ImageOptions::parse("w=400,f=jpeg").unwrap().options;
        assert_ne!(
            DerivativeKey::new("logo.png", "e", &a, OutputFormat::Jpeg),
            DerivativeKey::new("logo.png", "e", &b, OutputFormat::Jpeg)
        );
        let png = testing::png_of(40, 20, true);
        let red = transform(&png, &a, OutputFormat::Jpeg, &Limits::default(), &|| 0.0).unwrap();
        let white = transform(&png, &b, OutputFormat::Jpeg, &Limits::default(), &|| 0.0).unwrap();
        assert_ne!(red.bytes, white.bytes, "the background is in the pixels");
        // And a signature over one does not verify the other.
        let secret = b"0123456789abcdef0123456789abcdef";
        assert!(!sign::verify(
            secret,
            "logo.png",
            &a,
            &sign::sign(secret, "logo.png", &b)
        ));
    }
}
