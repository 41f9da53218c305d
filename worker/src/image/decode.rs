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

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
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
    #[error(
        "the JPEG's {scans} scans pass over its blocks more often than an image needs (at \
         most {limit} scans and 16 passes over every block; re-save it with a standard \
         progressive or baseline encoder)"
    )]
    TooManyScans { scans: u32, limit: u32 },
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
    /// For a progressive JPEG: the bytes of DCT coefficients the decoder keeps for the
    /// whole image until the last scan (16 bits each, per component at its subsampling).
    /// DCT scaling does not reduce it, so the limits check it separately.
    pub progressive_coefficient_bytes: Option<u64>,
    /// Whether the decoder can scale this file while decoding: DCT JPEGs, not lossless
    /// (SOF3) JPEGs, which jpeg-decoder decodes at full size whatever is asked.
    pub scales_on_decode: bool,
    /// What the decoder allocates per decoded pixel (see [`DecodeCost`]).
    pub cost: DecodeCost,
    /// A GIF's first frame when it is not the canvas (a frame may be larger than the
    /// logical screen it claims to sit on): the limits apply to the larger of the two.
    pub frame: Option<(u32, u32)>,
    /// Bytes the decoder copies out of the file beside the pixels (a JPEG's APP segments:
    /// ICC chunks and EXIF, held by the decoder and assembled again).
    pub metadata_bytes: u64,
}

impl Header {
    /// The pixels the decoder will allocate at full size: the larger of the canvas and
    /// the first frame, on each axis.
    pub fn decoded_extent(&self) -> (u32, u32) {
        let (fw, fh) = self.frame.unwrap_or((0, 0));
        (self.width.max(fw), self.height.max(fh))
    }
}

/// What decoding allocates, in bytes per decoded pixel, read from the header. Measured
/// against a counting allocator over a grid of formats, depths, colour types,
/// interlacing and orientations (`worker/tests/footprint.rs`), which fails if a measured
/// peak ever exceeds the model built from these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCost {
    /// The decoder's own output buffer (its native layout: 8 for 16-bit RGBA, 3 for RGB).
    pub native: u8,
    /// Working memory alive beside that buffer while decoding (JPEG component planes,
    /// WebP's YUV planes or ARGB words).
    pub working: u8,
    /// Whether the native buffer is already RGBA8 (no conversion copy).
    pub is_rgba8: bool,
}

/// Most scans a JPEG may have. Every scan makes the decoder visit every block of the
/// components it names, so a file of tens of thousands of tiny progressive scans costs
/// billions of block visits from a megabyte of input. Encoders write about ten
/// (libjpeg's progressive script) and libjpeg-turbo's tools refuse more than 500; jpeg-decoder
/// has no such guard, so the header walk counts them first.
pub const MAX_JPEG_SCANS: u32 = 256;
/// Block visits a JPEG's scans may add up to, in whole passes over every block of the
/// frame. libjpeg's progressive script visits each block about six times; a scan bomb
/// declaring a large frame with hundreds of empty scans would visit it hundreds of times.
const MAX_BLOCK_PASSES: u64 = 16;

/// Reads dimensions, layout and decode cost from the header only.
pub fn read_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let format = sniff(bytes).ok_or(DecodeError::Unsupported)?;
    let mut progressive_coefficient_bytes = None;
    let mut scales_on_decode = format.scales_on_decode();
    let mut frame = None;
    let metadata_bytes;
    let corrupt = |e: image::ImageError| DecodeError::Corrupt(e.to_string());
    let (width, height, cost) = match format {
        SourceFormat::Jpeg => {
            let layout = jpeg_layout(bytes);
            if layout.scans > MAX_JPEG_SCANS {
                return Err(DecodeError::TooManyScans {
                    scans: layout.scans,
                    limit: MAX_JPEG_SCANS,
                });
            }
            // Empty scans cost as much as full ones (jpeg-decoder decodes every block of
            // each, filling missing data with zeros): what is bounded is the passes.
            if let Some(frame) = &layout.frame
                && layout.block_visits > MAX_BLOCK_PASSES * frame.blocks()
            {
                return Err(DecodeError::TooManyScans {
                    scans: layout.scans,
                    limit: MAX_JPEG_SCANS,
                });
            }
            metadata_bytes = layout.app_bytes;
            let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
            decoder
                .read_info()
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            let info = decoder
                .info()
                .ok_or_else(|| DecodeError::Corrupt(String::from("no frame header")))?;
            let (w, h) = (u32::from(info.width), u32::from(info.height));
            if info.coding_process == jpeg_decoder::CodingProcess::DctProgressive {
                progressive_coefficient_bytes =
                    Some(coefficient_bytes(layout.frame.as_ref(), &info));
            }
            if info.coding_process == jpeg_decoder::CodingProcess::Lossless {
                scales_on_decode = false;
            }
            let (components, native) = match info.pixel_format {
                jpeg_decoder::PixelFormat::L8 => (1, 1),
                jpeg_decoder::PixelFormat::L16 => (1, 2),
                jpeg_decoder::PixelFormat::RGB24 => (3, 3),
                jpeg_decoder::PixelFormat::CMYK32 => (4, 4),
            };
            // One plane per component (at most full resolution, 16 bits for lossless
            // 16-bit), padded to whole MCUs, plus up to 4 more bytes a pixel of the
            // decoder's row and upsampling buffers that the grid test measured alive
            // beside them at DCT-scaled sizes.
            let working = if info.pixel_format == jpeg_decoder::PixelFormat::L16 {
                2 + 4
            } else {
                components + 4
            };
            let cost = DecodeCost {
                native,
                working,
                is_rgba8: false,
            };
            (w, h, cost)
        }
        other => {
            use image::ImageDecoder;
            let mut decoder = reader(bytes, other).into_decoder().map_err(corrupt)?;
            let (w, h) = decoder.dimensions();
            // The profile the decoder already holds, and our copy of it.
            metadata_bytes = decoder
                .icc_profile()
                .ok()
                .flatten()
                .map_or(0, |icc| icc.len() as u64);
            let color = decoder.color_type();
            let native = color.bytes_per_pixel();
            let working = match other {
                // The VP8 frame's YUV planes (1.5), or the lossless ARGB words (4), and
                // an alpha plane decoded through ARGB words (lossy with alpha measured
                // at 10.4 bytes a pixel in all); an animation also keeps its frame and
                // canvas buffers (8 more).
                SourceFormat::Webp if webp_is_animated(bytes) => 15,
                SourceFormat::Webp => 7,
                // Row buffers only (png decodes straight into the output, Adam7 passes
                // included); GIF frames are counted apart.
                _ => 0,
            };
            if other == SourceFormat::Gif {
                frame = gif_first_frame(bytes)?;
            }
            let cost = DecodeCost {
                native,
                working,
                is_rgba8: color == image::ColorType::Rgba8,
            };
            (w, h, cost)
        }
    };
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(String::from("zero-sized image")));
    }
    Ok(Header {
        format,
        width,
        height,
        progressive_coefficient_bytes,
        scales_on_decode,
        cost,
        frame,
        metadata_bytes,
    })
}

/// Whether a WebP's VP8X header sets the animation flag.
fn webp_is_animated(bytes: &[u8]) -> bool {
    bytes.get(12..16) == Some(b"VP8X") && bytes.get(20).is_some_and(|flags| flags & 0x02 != 0)
}

/// The first frame's extent (its offset plus its size) when it differs from the canvas.
fn gif_first_frame(bytes: &[u8]) -> Result<Option<(u32, u32)>, DecodeError> {
    let corrupt = |e: gif::DecodingError| DecodeError::Corrupt(e.to_string());
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(corrupt)?;
    let (cw, ch) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let Some(frame) = decoder.next_frame_info().map_err(corrupt)? else {
        return Err(DecodeError::Corrupt(String::from("a GIF without frames")));
    };
    let extent = (
        u32::from(frame.left) + u32::from(frame.width),
        u32::from(frame.top) + u32::from(frame.height),
    );
    Ok((extent.0 > cw || extent.1 > ch).then_some(extent))
}

/// Coefficient storage of a JPEG frame: for each component, its block grid (whole MCUs at
/// its sampling factors, as jpeg-decoder allocates them) × 64 coefficients × 2 bytes. The
/// sampling factors come from the SOF segment (jpeg-decoder does not expose them). If that
/// frame header cannot be read, or disagrees with what jpeg-decoder read (size, component
/// count), every component is assumed at full resolution: never an underestimate.
fn coefficient_bytes(frame: Option<&Frame>, info: &jpeg_decoder::ImageInfo) -> u64 {
    let (w, h) = (u64::from(info.width), u64::from(info.height));
    let components: u64 = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::L16 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::CMYK32 => 4,
    };
    let worst = components * w.div_ceil(8) * h.div_ceil(8) * 64 * 2;
    let Some(frame) = frame else {
        return worst;
    };
    if (u64::from(frame.width), u64::from(frame.height)) != (w, h)
        || frame.factors.len() as u64 != components
    {
        return worst;
    }
    frame.blocks() * 64 * 2
}

/// What the first SOF segment says.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    width: u16,
    height: u16,
    /// (horizontal, vertical) sampling factor per component, each 1–4.
    factors: Vec<(u8, u8)>,
    /// Component identifiers, in frame order (scans name components by them).
    ids: Vec<u8>,
}

impl Frame {
    /// 8×8 blocks of the component at `index`, padded to whole MCUs at its sampling
    /// factors (as jpeg-decoder allocates them); 0 if there is none.
    fn blocks_at(&self, index: usize) -> u64 {
        let Some(&(hf, vf)) = self.factors.get(index) else {
            return 0;
        };
        let max = |pick: fn(&(u8, u8)) -> u8| {
            self.factors
                .iter()
                .map(|f| u64::from(pick(f)))
                .max()
                .unwrap_or(1)
        };
        let (hmax, vmax) = (max(|f| f.0), max(|f| f.1));
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        w.div_ceil(8 * hmax) * u64::from(hf) * h.div_ceil(8 * vmax) * u64::from(vf)
    }

    /// 8×8 blocks of one component, named by its identifier (as scans name them).
    fn component_blocks(&self, id: u8) -> u64 {
        self.ids
            .iter()
            .position(|&c| c == id)
            .map_or(0, |i| self.blocks_at(i))
    }

    /// 8×8 blocks of every component.
    fn blocks(&self) -> u64 {
        self.ids
            .iter()
            .map(|&id| self.component_blocks(id))
            .sum::<u64>()
            .max(1)
    }
}

/// What a walk over a JPEG's markers finds, before any pixel is decoded.
#[derive(Debug, Default, PartialEq, Eq)]
struct JpegLayout {
    /// The frame header, when one comes before the first scan and parses.
    frame: Option<Frame>,
    /// Start-of-scan markers up to EOI (or the end of the data).
    scans: u32,
    /// Bytes of APPn segments (ICC chunks, EXIF, XMP): the decoder keeps copies.
    app_bytes: u64,
    /// Blocks the scans visit in all (each scan: the blocks of the components it names).
    block_visits: u64,
}

/// Walks every marker to EOI, skipping bytes between segments exactly as jpeg-decoder's
/// marker reader does (anything up to an 0xFF, fill bytes, stuffed 0xFF00, and the
/// length-less markers) and entropy-coded data after each scan (up to the next 0xFF that
/// is not stuffing or a restart marker). One linear, bounds-checked pass; it never fails,
/// it stops where the data stops making sense.
fn jpeg_layout(bytes: &[u8]) -> JpegLayout {
    let mut layout = JpegLayout::default();
    let mut at = 2; // after SOI
    let mut frame_allowed = true;
    loop {
        // Up to the next 0xFF, then past fill bytes, to a marker byte.
        let Some(next) = bytes
            .get(at..)
            .and_then(|b| b.iter().position(|&x| x == 0xFF))
        else {
            return layout;
        };
        at += next;
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at) else {
            return layout;
        };
        at += 1;
        match marker {
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            0xD9 => return layout,
            _ => {}
        }
        let (Some(&hi), Some(&lo)) = (bytes.get(at), bytes.get(at + 1)) else {
            return layout;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len < 2 {
            return layout;
        }
        let segment = bytes.get(at + 2..at + len);
        match marker {
            0xDA => {
                layout.scans += 1;
                frame_allowed = false;
                if let (Some(frame), Some(segment)) = (&layout.frame, segment) {
                    let count = usize::from(segment.first().copied().unwrap_or(0));
                    let visits: u64 = (0..count)
                        .filter_map(|i| segment.get(1 + 2 * i))
                        .map(|id| frame.component_blocks(*id))
                        .sum();
                    layout.block_visits = layout.block_visits.saturating_add(visits);
                }
            }
            0xE0..=0xEF => layout.app_bytes += len as u64,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if frame_allowed && layout.frame.is_none() {
                    layout.frame = segment.and_then(parse_frame);
                }
                frame_allowed = false;
            }
            _ => {}
        }
        at += len;
    }
}

/// A SOF segment's payload: precision, height, width, components with their factors.
fn parse_frame(segment: &[u8]) -> Option<Frame> {
    let height = u16::from_be_bytes([*segment.get(1)?, *segment.get(2)?]);
    let width = u16::from_be_bytes([*segment.get(3)?, *segment.get(4)?]);
    let count = usize::from(*segment.get(5)?);
    let factors = (0..count)
        .map(|i| {
            let hv = *segment.get(6 + i * 3 + 1)?;
            let (h, v) = (hv >> 4, hv & 0x0F);
            ((1..=4).contains(&h) && (1..=4).contains(&v)).then_some((h, v))
        })
        .collect::<Option<Vec<_>>>()?;
    let ids = (0..count)
        .map(|i| segment.get(6 + i * 3).copied())
        .collect::<Option<Vec<_>>>()?;
    Some(Frame {
        width,
        height,
        factors,
        ids,
    })
}

/// The first frame header (see [`jpeg_layout`]).
#[cfg(test)]
fn jpeg_frame(bytes: &[u8]) -> Option<Frame> {
    jpeg_layout(bytes).frame
}

/// Most bytes a PNG's metadata (iCCP, text) may inflate to. png inflates an iCCP profile
/// while reading the header, bounded only by the reader's `max_alloc` (512 MiB by
/// default): a 500 KB zip bomb would pass 128 MiB before any limit of ours ran.
const METADATA_ALLOC_LIMIT: u64 = 4 * 1024 * 1024;

/// A reader for the non-JPEG formats with the metadata bound (png applies `max_alloc` to
/// what it inflates beside the pixels; the pixel buffer is ours and checked by the model).
fn reader(bytes: &[u8], format: SourceFormat) -> image::ImageReader<Cursor<&[u8]>> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    if format == SourceFormat::Png {
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(METADATA_ALLOC_LIMIT);
        reader.limits(limits);
    }
    reader
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
            let mut decoder = reader(bytes, other).into_decoder().map_err(corrupt)?;
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

/// The size jpeg-decoder 0.3 decodes a `full`-sized JPEG at when asked for `request`: the
/// smallest of 1/8, 1/4, 1/2, 1/1 at which either side covers the request (its
/// `choose_idct_size`), sides rounded up.
pub fn jpeg_scaled_size(full: (u32, u32), request: (u32, u32)) -> (u32, u32) {
    let scaled = |len: u32, eighths: u32| (len * eighths).div_ceil(8);
    let eighths = [1u32, 2, 4]
        .into_iter()
        .find(|&e| scaled(full.0, e) >= request.0 || scaled(full.1, e) >= request.1)
        .unwrap_or(8);
    (scaled(full.0, eighths), scaled(full.1, eighths))
}

/// Decoded pixels up to which a JPEG is decoded with a margin over the size it must cover.
const MARGIN_BUDGET_PIXELS: u64 = 8 * 1000 * 1000;

/// The margin a ½-scale decode (jpeg-decoder's 4×4 IDCT) must leave for the Lanczos3
/// step, in hundredths. Coarser scales (2×2 IDCT, DC only) alias more and keep libvips'
/// factor of two. The choice is measured, not derived: `scripts/bench-images` and the
/// README's performance section give the scores on each side of it.
const HALF_SCALE_MARGIN_PERCENT: u32 = 125;

/// How much smaller than its need a decode may be, in thousandths: it is then resized up
/// by at most 1 %, which no metric or eye can tell from the need itself, and a source
/// whose need is just past a DCT scale (a 5640 px photo as an 800 px square must be
/// decoded 1423 px wide; ¼ scale gives 1410) decodes at that scale rather than at twice the size (or not at
/// all, where twice the size is over the memory budget).
const SHORTFALL_PERMILLE: u32 = 10;

/// The smallest decode that still holds `need`'s detail: `need` less
/// [`SHORTFALL_PERMILLE`], never below 1 px.
pub fn tolerated(need: (u32, u32)) -> (u32, u32) {
    let less = |v: u32| {
        let cut = u64::from(v) * u64::from(SHORTFALL_PERMILLE) / 1000;
        (v - cut as u32).max(1)
    };
    (less(need.0), less(need.1))
}

/// How large a JPEG decode must be to give a `need`-sized result good detail. DCT scaling
/// is a block shrink; the Lanczos3 step after it hides its blocks when it has room:
/// - where twice the need would mean the full-size decode, the ½ scale if it leaves
///   [`HALF_SCALE_MARGIN_PERCENT`] on both sides (a 2560 px photo → 800 px decodes
///   1280 px, not 2560: a third faster, within a point of SSIMULACRA2), unless the file
///   is a working `copy` of its original (`image::working`);
/// - else twice the need, as libvips does (which may be ¼ or ⅛ scale), when that decode
///   stays within [`MARGIN_BUDGET_PIXELS`] (32 MB of RGBA);
/// - else the plain `need`: a 40 MP source keeps its memory ceiling.
///
/// Progressive JPEGs too: they hold every coefficient while decoding, so the caller
/// (`plan_on`) keeps the margin only where the whole footprint still fits the budget
/// (the benchmark's 17.9 MP progressive photo does not; a 9 MP one does).
pub fn jpeg_decode_target(header: &Header, need: (u32, u32), copy: bool) -> (u32, u32) {
    if !header.scales_on_decode {
        return need;
    }
    let full = (header.width, header.height);
    let doubled = (need.0.saturating_mul(2), need.1.saturating_mul(2));
    let generous = jpeg_scaled_size(full, doubled);
    // The ½-scale size itself (asking `jpeg_scaled_size` for it could answer a smaller
    // scale on a side of 1–2 px, where ¼ rounds up to the same length).
    let half = (full.0.div_ceil(2), full.1.div_ceil(2));
    // Exact, in integers: `have` ≥ 1.25 × `need`.
    let leaves_margin = |have: u32, need: u32| {
        u64::from(have) * 100 >= u64::from(need) * u64::from(HALF_SCALE_MARGIN_PERCENT)
    };
    // The doubled need asks for the full size, and ½ still leaves the margin on both
    // sides (a thin picture's short side alone must not decide it). Not in a working
    // copy, which is a DCT-scaled decode already: its ½ is its original's ¼ or less,
    // which keeps the factor of two (at 1.28× it scored 3.8 below the original's).
    if !copy
        && generous == full
        && half != full
        && leaves_margin(half.0, need.0)
        && leaves_margin(half.1, need.1)
    {
        return half;
    }
    if u64::from(generous.0) * u64::from(generous.1) <= MARGIN_BUDGET_PIXELS {
        doubled
    } else {
        need
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
    let icc = decoder.icc_profile();
    // A progressive decoder still holds every coefficient: free them before the RGBA copy.
    drop(decoder);
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
        icc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaled_size_follows_jpeg_decoders_choice() {
        let table = [
            ((5640, 3172), (1200, 675), (1410, 793)),
            ((5640, 3172), (3000, 1687), (5640, 3172)),
            ((8000, 5000), (1000, 625), (1000, 625)),
            ((8000, 5000), (1001, 626), (2000, 1250)),
            // Either side covering is enough for the decoder.
            ((8000, 5000), (1001, 625), (1000, 625)),
            ((3, 3), (1, 1), (1, 1)),
        ];
        for (full, request, want) in table {
            assert_eq!(
                jpeg_scaled_size(full, request),
                want,
                "{full:?} → {request:?}"
            );
        }
        // And it agrees with the decoder itself.
        let jpeg = crate::image::testing::jpeg_of(640, 480);
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(&jpeg));
        let (w, h) = decoder.scale(100, 100).unwrap();
        assert_eq!(
            jpeg_scaled_size((640, 480), (100, 100)),
            (u32::from(w), u32::from(h))
        );
    }

    #[test]
    fn baseline_jpegs_decode_with_a_margin_within_the_budget() {
        let head = |width, height| Header {
            format: SourceFormat::Jpeg,
            width,
            height,
            progressive_coefficient_bytes: None,
            scales_on_decode: true,
            cost: DecodeCost {
                native: 3,
                working: 3,
                is_rgba8: false,
            },
            frame: None,
            metadata_bytes: 0,
        };
        // 3640×2400 → 800×527: ½ (1820×1200) leaves 2.3×, under 8 MP: ask for 1600×1054.
        assert_eq!(
            jpeg_decode_target(&head(3640, 2400), (800, 527), false),
            (1600, 1054)
        );
        // 2560×1600 → 800×500: twice the need is the full size, and ½ (1280×800) leaves
        // 1.6×: ½.
        assert_eq!(
            jpeg_decode_target(&head(2560, 1600), (800, 500), false),
            (1280, 800)
        );
        // A thin picture: the short side's 1 px leaves the margin, the long side's 1100 px
        // does not (1280 is 1.16×): twice the need.
        assert_eq!(
            jpeg_decode_target(&head(2560, 2), (1100, 1), false),
            (2200, 2)
        );
        // At exactly 1.25× ½ is enough; 1 px less is not, and the full size is asked.
        assert_eq!(
            jpeg_decode_target(&head(2560, 1600), (1024, 640), false),
            (1280, 800)
        );
        assert_eq!(
            jpeg_decode_target(&head(2560, 1600), (1025, 641), false),
            (2050, 1282)
        );
        // ¼ never counts on the smaller margin: 2560 → 500 px asks for 1000 (½), though
        // ¼ (640) is 1.28× the need.
        assert_eq!(
            jpeg_decode_target(&head(2560, 1600), (500, 313), false),
            (1000, 626)
        );
        // A working copy of 2560×1600 (`copy`): ½ of it is ¼ of its original or less:
        // twice the need, i.e. the whole copy.
        assert_eq!(
            jpeg_decode_target(&head(2560, 1600), (800, 500), true),
            (1600, 1000)
        );
        // 8000×5000 → 1200×750: doubling needs ½ scale = 10 MP: plain need.
        assert_eq!(
            jpeg_decode_target(&head(8000, 5000), (1200, 750), false),
            (1200, 750)
        );
        // Doubling past the full size asks for more than exists: the decoder gives 1/1.
        assert_eq!(
            jpeg_decode_target(&head(1000, 800), (800, 640), false),
            (1600, 1280)
        );
        // Every need up to the full size: the target covers the need, and what it decodes
        // at is never more than the doubled rule would decode.
        for need_w in (1u32..=2560).step_by(7) {
            let need = (need_w, (need_w * 1600).div_ceil(2560));
            let target = jpeg_decode_target(&head(2560, 1600), need, false);
            assert!(
                target.0 >= need.0 || target.1 >= need.1,
                "{need:?} → {target:?}"
            );
            let at = jpeg_scaled_size((2560, 1600), target);
            let doubled = jpeg_scaled_size((2560, 1600), (need.0 * 2, need.1 * 2));
            assert!(
                at.0 <= doubled.0,
                "{need:?}: {at:?} is larger than {doubled:?}"
            );
        }
    }

    #[test]
    fn a_decode_may_fall_one_percent_short_of_its_need() {
        assert_eq!(tolerated((1423, 1423)), (1409, 1409));
        assert_eq!(tolerated((100, 99)), (99, 99));
        assert_eq!(tolerated((1, 0)), (1, 1));
        assert_eq!(tolerated((u32::MAX, 5)), (u32::MAX - 42_949_672, 5));
        // The 5640×3172 photo as an 800×800 square needs 1423×800: ¼ (1410×793)
        // is within 1 %.
        assert_eq!(
            jpeg_scaled_size((5640, 3172), tolerated((1423, 800))),
            (1410, 793)
        );
    }

    #[test]
    fn lossless_jpegs_do_not_count_on_dct_scaling() {
        let mut jpeg = crate::image::testing::jpeg_of(64, 48);
        assert!(read_header(&jpeg).unwrap().scales_on_decode);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 1] = 0xC3;
        // Lossless frames name no quantization table.
        for component in 0..usize::from(jpeg[sof + 9]) {
            jpeg[sof + 10 + component * 3 + 2] = 0;
        }
        let head = read_header(&jpeg).unwrap();
        assert!(!head.scales_on_decode, "SOF3 is decoded at full size");
        assert_eq!(jpeg_decode_target(&head, (16, 12), false), (16, 12));
    }

    #[test]
    fn the_frame_walk_skips_what_jpeg_decoder_skips_and_rejects_bad_factors() {
        let jpeg = crate::image::testing::jpeg_of(64, 48);
        let want = jpeg_frame(&jpeg).unwrap();
        // Stuffed bytes, junk and fill bytes between segments, an RST marker: same frame.
        let mut noisy = jpeg[..2].to_vec();
        noisy.extend_from_slice(b"\xFF\x00junk\xFF\xFF\xFF\xD0");
        noisy.extend_from_slice(&jpeg[2..]);
        assert_eq!(jpeg_frame(&noisy), Some(want));
        // A zero sampling factor: no frame (the estimate then assumes the worst case).
        let mut zero = jpeg.clone();
        let sof = zero.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        zero[sof + 4 + 6 + 1] = 0x00;
        assert_eq!(jpeg_frame(&zero), None);
        // A scan before any frame header: none.
        assert_eq!(jpeg_frame(b"\xFF\xD8\xFF\xDA\x00\x02"), None);
    }

    #[test]
    fn a_decoy_frame_header_in_skipped_bytes_does_not_lower_the_estimate() {
        // Stuffed 0xFF00 and junk, then an APP15 segment whose payload holds a decoy SOF2
        // of a 1×1 one-component frame: jpeg-decoder skips all of it, and so does the walk.
        let mut jpeg = crate::image::testing::jpeg_of(64, 48);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 1] = 0xC2;
        let genuine = read_header(&jpeg).unwrap().progressive_coefficient_bytes;
        let decoy = [
            0xFF, 0xC2, 0x00, 0x0B, 8, 0x00, 0x01, 0x00, 0x01, 1, 1, 0x11, 0,
        ];
        let mut crafted = jpeg[..2].to_vec();
        crafted.extend_from_slice(&[0xFF, 0x00, 0x00, 0x0A, 0xFF, 0xEF, 0x00, 15]);
        crafted.extend_from_slice(&decoy);
        crafted.extend_from_slice(&jpeg[2..]);
        let head = read_header(&crafted).unwrap();
        assert_eq!((head.width, head.height), (64, 48));
        assert_eq!(head.progressive_coefficient_bytes, genuine);
        assert!(genuine.unwrap() >= 64 * 48 * 3);
    }

    #[test]
    fn progressive_headers_report_their_coefficient_storage() {
        let mut jpeg = crate::image::testing::jpeg_of(64, 48);
        assert_eq!(
            read_header(&jpeg).unwrap().progressive_coefficient_bytes,
            None
        );
        let factors = jpeg_frame(&jpeg).unwrap().factors;
        assert_eq!(factors.len(), 3);
        // Mark the frame progressive (SOF0 → SOF2): the header is all the check reads.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 1] = 0xC2;
        let blocks: u64 = if factors[0] == (2, 2) {
            48 + 12 + 12
        } else {
            3 * 48
        };
        assert_eq!(
            read_header(&jpeg).unwrap().progressive_coefficient_bytes,
            Some(blocks * 64 * 2),
            "sampling {factors:?}"
        );
        assert_eq!(jpeg_frame(b"\xFF\xD8\xFF"), None);
        // A progressive JPEG asks for the decode margin too: `plan_for` keeps it only where
        // the whole footprint, coefficients included, fits the budget.
        let progressive = read_header(&jpeg).unwrap();
        assert_eq!(jpeg_decode_target(&progressive, (16, 12), false), (32, 24));
        assert_eq!(jpeg_frame(&jpeg[..sof + 6]), None);
    }
    use crate::image::testing::{jpeg_of, png_of};

    #[test]
    fn a_jpeg_with_too_many_scans_is_refused_before_decoding() {
        // Review finding: jpeg-decoder accepts any number of scans, each a pass over every
        // block. The walk counts them to EOI (entropy-coded data skipped) and refuses.
        let jpeg = jpeg_of(64, 64);
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let with_scans = |extra: usize| {
            let mut out = jpeg[..sos].to_vec();
            for _ in 0..extra {
                // An empty scan header, then entropy bytes with stuffing and a restart.
                out.extend_from_slice(&[
                    0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00,
                ]);
                out.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
            }
            out.extend_from_slice(&jpeg[sos..]);
            out
        };
        assert_eq!(jpeg_layout(&jpeg).scans, 1);
        let layout = jpeg_layout(&with_scans(9));
        assert_eq!(layout.scans, 10);
        let frame = layout.frame.unwrap();
        // Each empty scan names component 1 (luma): its 64 blocks.
        assert_eq!(layout.block_visits, frame.blocks() + 9 * 64);
        assert!(read_header(&with_scans(9)).is_ok());
        // Empty scans cost a pass each: 60 of them are past 16 passes over every block.
        assert!(matches!(
            read_header(&with_scans(60)),
            Err(DecodeError::TooManyScans { scans: 61, .. })
        ));
        assert_eq!(
            read_header(&with_scans(MAX_JPEG_SCANS as usize)),
            Err(DecodeError::TooManyScans {
                scans: MAX_JPEG_SCANS + 1,
                limit: MAX_JPEG_SCANS
            })
        );
    }

    #[test]
    fn a_gif_frame_larger_than_its_canvas_counts_at_its_own_size() {
        let palette = [0u8, 0, 0, 255, 255, 255];
        let mut gif = Vec::new();
        {
            let mut encoder = gif::Encoder::new(&mut gif, 1, 1, &palette).unwrap();
            let frame = gif::Frame {
                width: 300,
                height: 200,
                left: 10,
                buffer: vec![1u8; 300 * 200].into(),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame).unwrap();
        }
        let head = read_header(&gif).unwrap();
        assert_eq!((head.width, head.height), (1, 1));
        assert_eq!(head.frame, Some((310, 200)));
        assert_eq!(head.decoded_extent(), (310, 200));
        let limits = crate::image::limits::Limits {
            max_unscaled_pixels: 50_000,
            ..Default::default()
        };
        assert!(matches!(
            limits.check_header(&head, gif.len() as u64),
            Err(crate::image::limits::LimitError::Pixels { actual: 62_000, .. })
        ));
    }

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
