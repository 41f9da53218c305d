//! Animated sources (GIF, animated WebP) made into animations (`anim=true`, Cloudflare's
//! default): every frame decoded onto its canvas, then oriented, resized, filtered,
//! padded and framed as a still would be, and encoded into an animated WebP (libwebp's
//! animation encoder, `encode::AnimatedWebp`) or GIF (the `gif` crate).
//!
//! Frames are streamed: one canvas is decoded, made into its output frame and handed to
//! the encoder before the next is decoded, so memory does not grow with the frame count
//! except for the encoded bytes, which [`MAX_OUTPUT_PIXELS`] bounds. [`footprint_bytes`]
//! is the model checked before anything is decoded (`worker/tests/footprint.rs` measures
//! it); the frame caps are checked while decoding (422 past them). `anim=false` gives the
//! first frame, as a still.

use std::io::Cursor;

use image::AnimationDecoder;

use super::decode::{Decoded, SourceFormat};
use super::format::OutputFormat;
use super::limits::LimitError;
use super::options::ImageOptions;
use super::{Output, Prepared, Timings, TransformError, encode, orient};

/// Most frames an animation may have.
pub const MAX_FRAMES: u32 = 1000;
/// Most canvas pixels decoded, summed over the frames (Cloudflare's 100 MP): bounds time.
pub const MAX_SOURCE_PIXELS: u64 = 100_000_000;
/// Most output pixels encoded, summed over the frames: bounds the encoded bytes.
pub const MAX_OUTPUT_PIXELS: u64 = 6_000_000;
/// Encoded bytes per output pixel at most (GIF's LZW at 12-bit codes; WebP is smaller),
/// held twice while the animation is assembled, and once more as the answer.
const ENCODED_BYTES_PER_PIXEL: u64 = 2;
const ENCODED_COPIES: u64 = 3;
/// Per canvas pixel: the decoder's canvas, the frame it hands out, its previous-frame
/// copy for disposal and its working buffers (image-webp's are the largest).
const DECODER_BYTES_PER_CANVAS_PIXEL: u64 = 16;
/// Per canvas pixel while a frame is made: a quarter turn's copy and resize's
/// premultiplied copy.
const FRAME_BYTES_PER_CANVAS_PIXEL: u64 = 8;
/// Per output pixel: the output frame, the encoder's copy of it and libwebp's
/// animation state (previous and current canvases, candidate sub-frames).
const ENCODER_BYTES_PER_OUTPUT_PIXEL: u64 = 48;
const FIXED_BYTES: u64 = 6 * 1024 * 1024;

/// Whether `bytes` hold more than one frame.
pub fn is_animated(bytes: &[u8], format: SourceFormat) -> bool {
    match format {
        SourceFormat::Webp => {
            bytes.get(12..16) == Some(b"VP8X") && bytes.get(20).is_some_and(|f| f & 0x02 != 0)
        }
        SourceFormat::Gif => gif_has_second_frame(bytes),
        SourceFormat::Jpeg | SourceFormat::Png => false,
    }
}

fn gif_has_second_frame(bytes: &[u8]) -> bool {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let Ok(mut decoder) = options.read_info(Cursor::new(bytes)) else {
        return false;
    };
    // The first frame's data must be read to reach the second's header.
    if !matches!(decoder.read_next_frame(), Ok(Some(_))) {
        return false;
    }
    matches!(decoder.next_frame_info(), Ok(Some(_)))
}

/// The memory an animation transform needs at most: `canvas` decoded per frame into
/// `output` frames (`filter_scratch` beside them), streamed, with the encoded bytes
/// bounded by [`MAX_OUTPUT_PIXELS`].
pub fn footprint_bytes(
    source_bytes: u64,
    canvas: (u32, u32),
    output: (u32, u32),
    filter_scratch: u64,
) -> u64 {
    let canvas_px = u64::from(canvas.0) * u64::from(canvas.1);
    let output_px = u64::from(output.0) * u64::from(output.1);
    let horizontal_pass = u64::from(output.0) * u64::from(canvas.1) * 4;
    let encoded = MAX_OUTPUT_PIXELS.min(output_px * u64::from(MAX_FRAMES))
        * ENCODED_BYTES_PER_PIXEL
        * ENCODED_COPIES;
    source_bytes
        + FIXED_BYTES
        + canvas_px * (DECODER_BYTES_PER_CANVAS_PIXEL + FRAME_BYTES_PER_CANVAS_PIXEL)
        + horizontal_pass
        + output_px * ENCODER_BYTES_PER_OUTPUT_PIXEL
        + filter_scratch
        + encoded
}

/// The frame caps, checked as frames are decoded.
#[derive(Debug, Default)]
struct Budget {
    frames: u32,
    source_pixels: u64,
    output_pixels: u64,
}

impl Budget {
    fn take(&mut self, canvas: (u32, u32), output: (u32, u32)) -> Result<(), LimitError> {
        self.frames += 1;
        self.source_pixels += u64::from(canvas.0) * u64::from(canvas.1);
        self.output_pixels += u64::from(output.0) * u64::from(output.1);
        if self.frames > MAX_FRAMES
            || self.source_pixels > MAX_SOURCE_PIXELS
            || self.output_pixels > MAX_OUTPUT_PIXELS
        {
            return Err(LimitError::Animation {
                frames: self.frames,
                max_frames: MAX_FRAMES,
                source_mp: MAX_SOURCE_PIXELS / 1_000_000,
                output_mp: MAX_OUTPUT_PIXELS / 1_000_000,
            });
        }
        Ok(())
    }
}

/// An encoder of animation frames.
pub trait FrameSink {
    /// Adds a frame shown for `delay_ms`.
    fn add(&mut self, frame: &Decoded, delay_ms: u32) -> Result<(), String>;
    /// The encoded animation.
    fn finish(self: Box<Self>) -> Result<Vec<u8>, String>;
}

/// Decodes every frame of `bytes`, makes each what [`super::plan_on`] planned, and
/// encodes them as `format` (WebP or GIF).
pub(crate) fn run(
    bytes: &[u8],
    prepared: Prepared,
    options: &ImageOptions,
    format: OutputFormat,
    clock: &dyn Fn() -> f64,
) -> Result<Output, TransformError> {
    let Prepared {
        header,
        orientation,
        plan,
        ..
    } = prepared;
    let canvas = (header.width, header.height);
    let swap = orient::swaps_axes(orientation);
    let oriented = if swap { (canvas.1, canvas.0) } else { canvas };
    let size = super::bordered(plan.output(), options.border());
    let mut sink: Box<dyn FrameSink> = match format {
        OutputFormat::Gif => Box::new(encode::AnimatedGif::new(size)?),
        _ => Box::new(encode::AnimatedWebp::new(size, options.quality())?),
    };
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => {
            TransformError::Corrupt(String::from("an animation frame is larger than its canvas"))
        }
        e => TransformError::Corrupt(e.to_string()),
    };
    // The decoders' allocations bounded to what the model counts: the canvas, the
    // previous one kept for disposal and one frame no larger than the canvas (a GIF
    // frame may claim more than its logical screen; such a frame is refused).
    let decoder_limits = || {
        let mut l = image::Limits::default();
        l.max_alloc = Some(u64::from(canvas.0) * u64::from(canvas.1) * 4 * 3);
        l
    };
    let frames = match header.format {
        SourceFormat::Gif => {
            let mut decoder =
                image::codecs::gif::GifDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
            image::ImageDecoder::set_limits(&mut decoder, decoder_limits()).map_err(corrupt)?;
            decoder.into_frames()
        }
        SourceFormat::Webp => {
            let mut decoder =
                image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
            image::ImageDecoder::set_limits(&mut decoder, decoder_limits()).map_err(corrupt)?;
            decoder.into_frames()
        }
        SourceFormat::Jpeg | SourceFormat::Png => {
            return Err(TransformError::Internal(String::from("not an animation")));
        }
    };
    let mut budget = Budget::default();
    let mut timings = Timings::default();
    let mut first_decoded = None;
    let started = clock();
    let mut mark = started;
    for frame in frames {
        let frame = frame.map_err(corrupt)?;
        budget.take(canvas, size)?;
        let (numerator, denominator) = frame.delay().numer_denom_ms();
        let delay_ms = numerator.checked_div(denominator.max(1)).unwrap_or(0);
        let buffer = frame.into_buffer();
        let (w, h) = buffer.dimensions();
        if (w, h) != canvas {
            return Err(TransformError::Corrupt(String::from(
                "an animation frame is not its canvas's size",
            )));
        }
        let decoded = orient::apply(
            Decoded {
                width: w,
                height: h,
                rgba: buffer.into_raw(),
                has_alpha: true,
                icc: None,
            },
            orientation,
        );
        first_decoded.get_or_insert((decoded.width, decoded.height));
        let now = clock();
        timings.decode += now - mark;
        mark = now;
        let scale = (
            f64::from(decoded.width) / f64::from(oriented.0),
            f64::from(decoded.height) / f64::from(oriented.1),
        );
        let made = super::finish(decoded, &plan, scale, options)?;
        let now = clock();
        timings.resize += now - mark;
        mark = now;
        sink.add(&made, delay_ms)
            .map_err(TransformError::Internal)?;
        let now = clock();
        timings.encode += now - mark;
        mark = now;
    }
    if budget.frames == 0 {
        return Err(TransformError::Corrupt(String::from(
            "an animation without frames",
        )));
    }
    let bytes = sink.finish().map_err(TransformError::Internal)?;
    timings.encode += clock() - mark;
    Ok(Output {
        bytes,
        width: size.0,
        height: size.1,
        format,
        source: header.format,
        decoded: first_decoded.unwrap_or(oriented),
        region: plan.source,
        timings,
    })
}

#[cfg(test)]
mod tests;
