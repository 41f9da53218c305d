//! The image URL grammar, parsed once: `/img/<options>/<key>` with Cloudflare's option
//! syntax (comma-separated `name=value`), so users migrate by changing a prefix.
//!
//! [`ImageOptions::parse`] resolves aliases, validates every value and names the bad
//! option; [`ImageOptions::normalized`] spells the result canonically (defaults dropped,
//! fixed order), which is what derivative keys and signatures are built from, so
//! equivalent URLs share one derivative. `sig` is kept apart and never part of a key.

use std::fmt::Write;

use super::filters::Filters;
use super::orient;

pub mod migration;

/// Largest output side in pixels (after `dpr`).
pub const MAX_SIDE: u32 = 4096;
/// Longest options segment accepted.
pub const MAX_OPTIONS_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option as the user spelled it (`w`, `fit`, …), or `options`.
    pub option: String,
    pub message: String,
}

impl OptionError {
    fn new(option: &str, message: impl Into<String>) -> Self {
        Self {
            option: option.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Fit inside, never enlarge (the default).
    #[default]
    ScaleDown,
    /// Fit inside; may enlarge.
    Contain,
    /// Fill the box exactly, cropping the overflow; may enlarge.
    Cover,
    /// Like cover, but never enlarges (a small image is left as scale-down leaves it).
    Crop,
    /// Fit inside (may enlarge) and fill the rest of the box with `background`.
    Pad,
    /// Stretch to exactly the box, aspect ratio not kept; may enlarge.
    Squeeze,
}

impl Fit {
    const ALL: [(Fit, &'static str); 6] = [
        (Fit::ScaleDown, "scale-down"),
        (Fit::Contain, "contain"),
        (Fit::Cover, "cover"),
        (Fit::Crop, "crop"),
        (Fit::Pad, "pad"),
        (Fit::Squeeze, "squeeze"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("scale-down", |(_, s)| s)
    }
}

/// Where the kept area sits when cropping or padding: fractions of the free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gravity {
    /// 0 = left edge, 1000 = right edge (thousandths, so the value is exact and hashable).
    pub x: u16,
    pub y: u16,
}

impl Default for Gravity {
    fn default() -> Self {
        Self { x: 500, y: 500 }
    }
}

impl Gravity {
    fn parse(value: &str) -> Option<Self> {
        let named = |x, y| Some(Self { x, y });
        match value {
            "center" | "centre" => named(500, 500),
            "left" => named(0, 500),
            "right" => named(1000, 500),
            "top" => named(500, 0),
            "bottom" => named(500, 1000),
            _ => {
                let (x, y) = value.split_once('x')?;
                Some(Self {
                    x: fraction(x)?,
                    y: fraction(y)?,
                })
            }
        }
    }

    pub fn fx(self) -> f64 {
        f64::from(self.x) / 1000.0
    }

    pub fn fy(self) -> f64 {
        f64::from(self.y) / 1000.0
    }
}

/// `gravity=`: a point, or `auto` (where the picture's detail is: `saliency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GravityMode {
    Point(Gravity),
    /// Placed after decoding, on the pixels (`saliency::placed`); the geometry plans the
    /// window's size with it centred.
    Auto,
}

impl Default for GravityMode {
    fn default() -> Self {
        Self::Point(Gravity::default())
    }
}

impl GravityMode {
    /// The point the geometry plans with (`auto` starts centred).
    pub fn point(self) -> Gravity {
        match self {
            Self::Point(g) => g,
            Self::Auto => Gravity::default(),
        }
    }
}

/// `0`..`1` with up to three decimals, as thousandths.
fn fraction(s: &str) -> Option<u16> {
    let v: f64 = s.parse().ok()?;
    if !(0.0..=1.0).contains(&v) || s.len() > 6 {
        return None;
    }
    Some((v * 1000.0).round() as u16)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatRequest {
    /// Negotiated from `Accept`: AVIF > WebP > the source family (the default).
    #[default]
    Auto,
    /// `compression=fast`: the quickest format to encode, the source family as its key
    /// names it (JPEG for a JPEG source, PNG for any other: alpha is known only after
    /// decoding), whatever `Accept` says; it overrides `auto`, `avif` and `webp`, as
    /// Cloudflare's does.
    Fastest,
    Avif,
    Webp,
    Jpeg,
    Png,
}

impl FormatRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fastest => "fastest",
            Self::Avif => "avif",
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }
}

/// What the URL answers: the image, or (`format=json`) a description of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    #[default]
    Image,
    /// `format=json`: the source's and the result's size and the source's type.
    Json,
    /// `format=json,placeholder=thumbhash`: and a ThumbHash of the result, for a page to
    /// paint before the image arrives.
    JsonWithThumbHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metadata {
    /// Strip everything (the default).
    #[default]
    None,
    /// Keep only the EXIF Copyright tag.
    Copyright,
    /// Keep the EXIF block (orientation reset to upright when it was applied).
    Keep,
}

impl Metadata {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Copyright => "copyright",
            Self::Keep => "keep",
        }
    }
}

/// `flip`: mirror the image before `rotate` turns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flip {
    #[default]
    None,
    /// `h`: left and right swapped.
    Horizontal,
    /// `v`: top and bottom swapped.
    Vertical,
    /// `hv`: both (a half turn).
    Both,
}

impl Flip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Horizontal => "h",
            Self::Vertical => "v",
            Self::Both => "hv",
        }
    }
}

/// `trim`: what is cut off the picture before anything else, in the upright picture's
/// pixels (after the EXIF orientation, before `flip` and `rotate`, as Cloudflare does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trim {
    #[default]
    None,
    /// `trim=top;right;bottom;left`, or `trim.left`/`trim.top` with `trim.width`/
    /// `trim.height` (the kept size; `None`: to the right or bottom edge, less `right`
    /// or `bottom`). More than the picture holds is clamped: one pixel is always kept.
    Sides {
        top: u32,
        right: u32,
        bottom: u32,
        left: u32,
        width: Option<u32>,
        height: Option<u32>,
    },
    /// `trim=border`: a border of one colour, found on the pixels.
    Border(BorderTrim),
}

/// `trim=border` with `trim.border.color`, `trim.border.tolerance`, `trim.border.keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorderTrim {
    /// The border's colour; `None`: the top-left pixel's.
    pub color: Option<Rgba>,
    /// 0 (any colour matches) to 255 (only the exact colour): Cloudflare's scale. A
    /// pixel is border when no channel differs from the colour by more than 255 − this.
    pub tolerance: u8,
    /// Pixels of the border left on each side.
    pub keep: u32,
}

/// `trim.border.tolerance` when none is given: a channel may differ by 10 (JPEG noise).
pub const DEFAULT_TRIM_TOLERANCE: u8 = 245;

impl BorderTrim {
    /// `trim=border` alone: the corner's colour, the default tolerance, nothing kept.
    pub const DEFAULT: BorderTrim = BorderTrim {
        color: None,
        tolerance: DEFAULT_TRIM_TOLERANCE,
        keep: 0,
    };
}

/// `border`: a frame drawn around the output after everything else, in output pixels
/// (`dpr` scales it). Cloudflare offers it to Workers only; here it is a URL option:
/// `border=<width>` or `border=<top>;<right>;<bottom>;<left>` and `border.color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Border {
    pub color: Rgba,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    pub left: u32,
}

/// Widest border side, asked for or after `dpr` scales it (clamped there), so the
/// normalized form always parses back.
pub const MAX_BORDER: u32 = 1500;

/// RGBA, 8 bits per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgba(pub [u8; 4]);

impl Rgba {
    pub const WHITE: Rgba = Rgba([255, 255, 255, 255]);

    /// CSS colours: `#rgb`, `#rgba`, `#rrggbb`, `#rrggbbaa` (the `#` may be left out of
    /// the 6- and 8-digit forms), `rgb(r,g,b)` and `rgba(r,g,b,a)` (a in 0–1) strictly
    /// (an out-of-range channel is an error, not clamped), and through `csscolorparser`
    /// every other CSS spelling: the 148 names, `hsl()`, `hsla()`, `hwb()`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 64 {
            return None;
        }
        let s = s.trim().to_ascii_lowercase();
        // Cloudflare's documented spelling escapes the `#`: `background=%23rrggbb`.
        let s = match s.strip_prefix("%23") {
            Some(hex) => format!("#{hex}"),
            None => s,
        };
        match s.as_str() {
            "white" => return Some(Self::WHITE),
            "black" => return Some(Self([0, 0, 0, 255])),
            "transparent" => return Some(Self([0, 0, 0, 0])),
            "red" => return Some(Self([255, 0, 0, 255])),
            "green" => return Some(Self([0, 128, 0, 255])),
            "blue" => return Some(Self([0, 0, 255, 255])),
            "gray" | "grey" => return Some(Self([128, 128, 128, 255])),
            _ => {}
        }
        // `#` must be escaped in a URL (%23), so bare hex is accepted too; it is also
        // how the normalized form spells a colour.
        let bare_hex = (s.len() == 6 || s.len() == 8) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(hex) = s.strip_prefix('#').or(bare_hex.then_some(s.as_str())) {
            let digits: Vec<u8> = hex
                .chars()
                .map(|c| c.to_digit(16).map(|d| d as u8))
                .collect::<Option<_>>()?;
            return match digits.as_slice() {
                [r, g, b] => Some(Self([r * 17, g * 17, b * 17, 255])),
                [r, g, b, a] => Some(Self([r * 17, g * 17, b * 17, a * 17])),
                [r1, r2, g1, g2, b1, b2] => {
                    Some(Self([r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2, 255]))
                }
                [r1, r2, g1, g2, b1, b2, a1, a2] => Some(Self([
                    r1 * 16 + r2,
                    g1 * 16 + g2,
                    b1 * 16 + b2,
                    a1 * 16 + a2,
                ])),
                _ => None,
            };
        }
        let (inner, has_alpha) = if let Some(rest) = s.strip_prefix("rgba(") {
            (rest.strip_suffix(')')?, true)
        } else if let Some(rest) = s.strip_prefix("rgb(") {
            (rest.strip_suffix(')')?, false)
        } else {
            let known = s.starts_with("hsl")
                || s.starts_with("hwb")
                || s.bytes().all(|b| b.is_ascii_lowercase());
            return known
                .then(|| csscolorparser::parse(&s).ok())
                .flatten()
                .map(|c| Self(c.to_rgba8()));
        };
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        let channel = |p: &str| p.parse::<u8>().ok();
        match (parts.as_slice(), has_alpha) {
            ([r, g, b], false) => Some(Self([channel(r)?, channel(g)?, channel(b)?, 255])),
            ([r, g, b, a], true) => {
                let a: f64 = a.parse().ok()?;
                if !(0.0..=1.0).contains(&a) {
                    return None;
                }
                Some(Self([
                    channel(r)?,
                    channel(g)?,
                    channel(b)?,
                    (a * 255.0).round() as u8,
                ]))
            }
            _ => None,
        }
    }

    pub fn hex(self) -> String {
        let [r, g, b, a] = self.0;
        format!("{r:02x}{g:02x}{b:02x}{a:02x}")
    }
}

/// The parsed, validated options of one image URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageOptions {
    pub width: Option<u32>,
    /// `width=auto`: the width comes from the request's client hints
    /// (`hints::resolve`, before the derivative key is made).
    pub auto_width: bool,
    pub height: Option<u32>,
    pub fit: Fit,
    pub gravity: GravityMode,
    /// 1–100.
    pub quality: Option<u8>,
    /// `slow-connection-quality` / `scq`: the quality on a slow connection (client hints,
    /// `hints::resolve`).
    pub slow_quality: Option<u8>,
    pub format: FormatRequest,
    /// Device pixel ratio in hundredths (100–300).
    pub dpr: u16,
    pub background: Option<Rgba>,
    pub metadata: Metadata,
    /// `flip`, applied after the EXIF orientation and before `rotate`.
    pub flip: Flip,
    /// `rotate`: clockwise degrees, 0, 90, 180 or 270; `width`/`height` are the
    /// rotated image's.
    pub rotate: u16,
    /// `brightness`, `contrast`, `gamma`, `saturation`, `blur`, `sharpen`.
    pub filters: Filters,
    pub trim: Trim,
    pub border: Option<Border>,
    pub answer: Answer,
    /// `anim=false`: an animated source gives its first frame, as a still. By default
    /// (`anim=true`, Cloudflare's) an animation stays one where the format can hold it.
    pub still: bool,
    pub redirect_on_error: bool,
    /// `v=`: a caller-managed version of the source. A versioned URL is immutable: it
    /// skips the source ETag lookup and is cached for a year.
    pub version: Option<String>,
}

/// A parsed URL: options plus the signature (kept out of the options and the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub options: ImageOptions,
    pub signature: Option<String>,
}

/// Splits on commas outside parentheses, so `background=rgba(1,2,3,0.5)` stays whole.
fn split_options(segment: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in segment.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&segment[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&segment[start..]);
    parts.into_iter()
}

/// The spelling of "no options" (the source re-encoded at its own size).
pub const ORIGINAL: &str = "original";

/// Default quality when none is asked for.
pub const DEFAULT_QUALITY: u8 = 85;

/// Largest `width`/`height` accepted in a URL. Above [`MAX_SIDE`] a side is not an
/// error (as with Cloudflare): where the fit never enlarges the output is at most the
/// source's size, and otherwise the box is clamped to the cap ([`ImageOptions::target`]).
pub const MAX_REQUESTED_SIDE: u32 = 100_000;

fn dimension(option: &str, value: &str) -> Result<u32, OptionError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_REQUESTED_SIDE).contains(&n) => Ok(n),
        _ => Err(OptionError::new(
            option,
            format!(
                "{option} must be a whole number of pixels from 1 to {MAX_REQUESTED_SIDE} (outputs are capped at {MAX_SIDE}){}",
                if option.starts_with('w') {
                    ", or auto"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// How a refusal of an option that needs a model begins: refused, never ignored.
const NO_MODEL: &str = "not available here (course-edge ships no machine-learning model, and refuses rather than silently ignores it):";

/// Largest `brightness`, `contrast`, `gamma` and `saturation` factor (Cloudflare names
/// no bound; 10× is already white or grey).
pub const MAX_FACTOR: u16 = 10;
/// Largest `blur` radius (Cloudflare's range: 1–250).
pub const MAX_BLUR: u8 = 250;
/// Largest `sharpen` strength (Cloudflare's range: 0–10).
pub const MAX_SHARPEN: u16 = 10;

/// A decimal from 0 to `max` in `1/per` steps, as a whole number of steps: `None` when
/// out of range, not a plain decimal, or finer than a step.
fn decimal(value: &str, max: u16, per: u16) -> Option<u16> {
    let plain = !value.is_empty()
        && value.len() <= 8
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let v: f64 = value.parse().ok().filter(|_| plain)?;
    let steps = v * f64::from(per);
    let whole = steps.round();
    ((0.0..=f64::from(max)).contains(&v) && (steps - whole).abs() < 1e-6).then_some(whole as u16)
}

/// `top;right;bottom;left`: four whole numbers of pixels from 0 to `max`.
fn sides(option: &str, value: &str, max: u32) -> Result<[u32; 4], OptionError> {
    let bad = || {
        OptionError::new(
            option,
            format!(
                "{option} is top;right;bottom;left, four whole numbers of pixels from 0 to {max}"
            ),
        )
    };
    let mut out = [0u32; 4];
    let mut parts = value.split(';');
    for side in &mut out {
        let part = parts.next().ok_or_else(bad)?;
        *side = part
            .parse::<u32>()
            .ok()
            .filter(|v| *v <= max && part.len() <= 6)
            .ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// The `trim` options as given, resolved into one [`Trim`] once all are read.
#[derive(Default)]
struct TrimParts {
    sides: Option<[u32; 4]>,
    border: bool,
    width: Option<u32>,
    height: Option<u32>,
    left: Option<u32>,
    top: Option<u32>,
    color: Option<Rgba>,
    tolerance: Option<u8>,
    keep: Option<u32>,
}

impl TrimParts {
    fn resolve(self) -> Result<Trim, OptionError> {
        let dotted = self.width.is_some()
            || self.height.is_some()
            || self.left.is_some()
            || self.top.is_some();
        let border_parts = self.color.is_some() || self.tolerance.is_some() || self.keep.is_some();
        if border_parts && !self.border {
            return Err(OptionError::new(
                "trim.border",
                "trim.border.color, .tolerance and .keep go with trim=border",
            ));
        }
        if self.border {
            if dotted {
                return Err(OptionError::new(
                    "trim",
                    "trim=border finds the border itself: leave out trim.left, trim.top, trim.width and trim.height",
                ));
            }
            return Ok(Trim::Border(BorderTrim {
                color: self.color,
                tolerance: self.tolerance.unwrap_or(DEFAULT_TRIM_TOLERANCE),
                keep: self.keep.unwrap_or(0),
            }));
        }
        if dotted && self.sides.is_some() {
            return Err(OptionError::new(
                "trim",
                "give trim=top;right;bottom;left or trim.left/top/width/height, not both",
            ));
        }
        let [top, right, bottom, left] =
            self.sides
                .unwrap_or([self.top.unwrap_or(0), 0, 0, self.left.unwrap_or(0)]);
        Ok(Trim::Sides {
            top,
            right,
            bottom,
            left,
            width: self.width,
            height: self.height,
        }
        .simplified())
    }
}

impl Trim {
    /// One spelling: nothing trimmed is `None`.
    fn simplified(self) -> Self {
        match self {
            Self::Sides {
                top: 0,
                right: 0,
                bottom: 0,
                left: 0,
                width: None,
                height: None,
            } => Self::None,
            other => other,
        }
    }

    /// Scaled by `dpr` (hundredths), as Cloudflare documents.
    /// Clamped to [`MAX_REQUESTED_SIDE`], so the normalized form always parses back (no
    /// picture has that many pixels to trim).
    fn scaled(self, dpr: u16) -> Self {
        let s = |v: u32| {
            u32::try_from(
                ((u64::from(v) * u64::from(dpr)).div_ceil(100)).min(u64::from(MAX_REQUESTED_SIDE)),
            )
            .unwrap_or(MAX_REQUESTED_SIDE)
        };
        match self {
            Self::Sides {
                top,
                right,
                bottom,
                left,
                width,
                height,
            } => Self::Sides {
                top: s(top),
                right: s(right),
                bottom: s(bottom),
                left: s(left),
                width: width.map(s),
                height: height.map(s),
            },
            Self::Border(b) => Self::Border(BorderTrim {
                keep: s(b.keep),
                ..b
            }),
            Self::None => Self::None,
        }
    }
}

impl ImageOptions {
    /// Whether an answer of `status` becomes a redirect to the original
    /// (`onerror=redirect`): only for a source that cannot be transformed.
    pub fn redirects_on(&self, status: u16) -> bool {
        self.redirect_on_error && matches!(status, 415 | 422)
    }
}

impl ImageOptions {
    pub fn parse(segment: &str) -> Result<Parsed, OptionError> {
        if segment.len() > MAX_OPTIONS_BYTES {
            return Err(OptionError::new(
                "options",
                format!("the options are longer than {MAX_OPTIONS_BYTES} bytes"),
            ));
        }
        let mut options = ImageOptions {
            dpr: 100,
            ..ImageOptions::default()
        };
        let mut signature = None;
        let mut fast = false;
        let mut trim = TrimParts::default();
        let mut border: Option<[u32; 4]> = None;
        let mut border_color = None;
        let mut placeholder = false;
        let mut seen: Vec<&'static str> = Vec::new();
        // `original` is how no options are spelled (see `normalized`): it parses back.
        let segment = if segment == ORIGINAL { "" } else { segment };
        for part in split_options(segment).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| OptionError::new(part, format!("{part:?} is not name=value")))?;
            let canonical: &'static str = match name {
                "width" | "w" => "width",
                "height" | "h" => "height",
                "fit" => "fit",
                "gravity" | "g" => "gravity",
                "quality" | "q" => "quality",
                "format" | "f" => "format",
                "dpr" => "dpr",
                "background" | "bg" => "background",
                "metadata" => "metadata",
                "flip" => "flip",
                "rotate" => "rotate",
                "brightness" => "brightness",
                "contrast" => "contrast",
                "gamma" => "gamma",
                "saturation" => "saturation",
                "blur" => "blur",
                "sharpen" => "sharpen",
                "onerror" => "onerror",
                "sig" => "sig",
                "v" => "v",
                "compression" => "compression",
                "anim" => "anim",
                "trim" => "trim",
                "trim.width" => "trim.width",
                "trim.height" => "trim.height",
                "trim.left" => "trim.left",
                "trim.top" => "trim.top",
                "trim.border.color" => "trim.border.color",
                "trim.border.tolerance" => "trim.border.tolerance",
                "trim.border.keep" => "trim.border.keep",
                "border" => "border",
                "border.color" => "border.color",
                "placeholder" => "placeholder",
                "slow-connection-quality" | "scq" => "slow-connection-quality",
                "segment" => {
                    return Err(OptionError::new(
                        name,
                        format!("{NO_MODEL} segment=foreground needs a segmentation model"),
                    ));
                }
                "zoom" | "face-zoom" => {
                    return Err(OptionError::new(
                        name,
                        format!(
                            "{NO_MODEL} {name} crops towards faces found by gravity=face, which needs a face detector"
                        ),
                    ));
                }
                other => {
                    return Err(OptionError::new(
                        other,
                        format!(
                            "unknown option {other:?}; known: width|w, height|h, fit, gravity|g, quality|q, slow-connection-quality|scq, format|f, dpr, background, metadata, flip, rotate, brightness, contrast, gamma, saturation, blur, sharpen, trim, trim.left|top|width|height, trim.border.color|tolerance|keep, border, border.color, placeholder, compression, anim, onerror, v, sig"
                        ),
                    ));
                }
            };
            if seen.contains(&canonical) {
                return Err(OptionError::new(
                    name,
                    format!("{canonical} is given twice"),
                ));
            }
            seen.push(canonical);
            match canonical {
                "width" if value == "auto" => options.auto_width = true,
                "width" => options.width = Some(dimension(name, value)?),
                "height" => options.height = Some(dimension(name, value)?),
                "fit" => {
                    options.fit = Fit::ALL
                        .iter()
                        .find(|(_, s)| *s == value)
                        .map(|(f, _)| *f)
                        .ok_or_else(|| {
                            OptionError::new(
                                name,
                                "fit is scale-down, contain, cover, crop, pad or squeeze",
                            )
                        })?;
                }
                "gravity" if value == "face" => {
                    return Err(OptionError::new(
                        name,
                        format!(
                            "{NO_MODEL} gravity=face needs a face detector; use a point (gravity=0.5x0.3) or a side"
                        ),
                    ));
                }
                "gravity" if value == "auto" => options.gravity = GravityMode::Auto,
                "gravity" => {
                    options.gravity = GravityMode::Point(Gravity::parse(value).ok_or_else(|| {
                        OptionError::new(
                            name,
                            "gravity is auto, center, left, right, top, bottom or <x>x<y> with fractions 0-1",
                        )
                    })?);
                }
                "quality" | "slow-connection-quality" => {
                    let q = match value {
                        "high" => Some(90),
                        "medium-high" => Some(80),
                        "medium-low" => Some(65),
                        "low" => Some(50),
                        n => n.parse::<u8>().ok().filter(|q| (1..=100).contains(q)),
                    };
                    let q = Some(q.ok_or_else(|| {
                        OptionError::new(
                            name,
                            format!("{canonical} is 1-100 or high, medium-high, medium-low, low"),
                        )
                    })?);
                    if canonical == "quality" {
                        options.quality = q;
                    } else {
                        options.slow_quality = q;
                    }
                }
                "format" => {
                    options.format = match value {
                        "auto" => FormatRequest::Auto,
                        "avif" => FormatRequest::Avif,
                        "webp" => FormatRequest::Webp,
                        // Our JPEG encoder writes baseline JPEG only.
                        "jpeg" | "jpg" | "baseline-jpeg" => FormatRequest::Jpeg,
                        "png" => FormatRequest::Png,
                        "json" => {
                            options.answer = Answer::Json;
                            FormatRequest::Auto
                        }
                        _ => {
                            return Err(OptionError::new(
                                name,
                                "format is auto, avif, webp, jpeg, baseline-jpeg, png or json",
                            ));
                        }
                    };
                }
                "compression" => {
                    if value != "fast" {
                        return Err(OptionError::new(name, "compression is fast"));
                    }
                    fast = true;
                }
                "anim" => match value {
                    "false" => options.still = true,
                    "true" => options.still = false,
                    _ => return Err(OptionError::new(name, "anim is true or false")),
                },
                "dpr" => {
                    let dpr: f64 = value
                        .parse()
                        .ok()
                        .filter(|d: &f64| (1.0..=3.0).contains(d) && value.len() <= 5)
                        .ok_or_else(|| OptionError::new(name, "dpr is a number from 1 to 3"))?;
                    options.dpr = (dpr * 100.0).round() as u16;
                }
                "background" => {
                    options.background = Some(Rgba::parse(value).ok_or_else(|| {
                        OptionError::new(
                            name,
                            "background is a CSS colour: #rrggbb, #rgb, rgb(), rgba() or a name",
                        )
                    })?);
                }
                "metadata" => {
                    options.metadata = match value {
                        "none" => Metadata::None,
                        "copyright" => Metadata::Copyright,
                        "keep" => Metadata::Keep,
                        _ => {
                            return Err(OptionError::new(
                                name,
                                "metadata is none, copyright or keep",
                            ));
                        }
                    };
                }
                "flip" => {
                    options.flip = match value {
                        "h" => Flip::Horizontal,
                        "v" => Flip::Vertical,
                        "hv" | "vh" => Flip::Both,
                        _ => return Err(OptionError::new(name, "flip is h, v or hv")),
                    };
                }
                "rotate" => {
                    options.rotate = match value {
                        "0" | "360" => 0,
                        "90" => 90,
                        "180" => 180,
                        "270" => 270,
                        _ => {
                            return Err(OptionError::new(
                                name,
                                "rotate is 90, 180 or 270 (degrees clockwise)",
                            ));
                        }
                    };
                }
                "brightness" | "contrast" | "gamma" | "saturation" => {
                    let factor = decimal(value, MAX_FACTOR, 100).ok_or_else(|| {
                        OptionError::new(
                            name,
                            format!(
                                "{canonical} is a factor from 0 to {MAX_FACTOR} (1 is no change, two decimals at most)"
                            ),
                        )
                    })?;
                    let filters = &mut options.filters;
                    match canonical {
                        // "0 is ignored" (Cloudflare), except for saturation: greyscale.
                        "brightness" => filters.brightness = if factor == 0 { 100 } else { factor },
                        "contrast" => filters.contrast = if factor == 0 { 100 } else { factor },
                        "gamma" => filters.gamma = if factor == 0 { 100 } else { factor },
                        _ => filters.saturation = factor,
                    }
                }
                "blur" => {
                    let radius = value
                        .parse::<u8>()
                        .ok()
                        .filter(|r| (1..=MAX_BLUR).contains(r) && value.len() <= 3)
                        .ok_or_else(|| {
                            OptionError::new(
                                name,
                                format!("blur is a radius from 1 to {MAX_BLUR} pixels"),
                            )
                        })?;
                    options.filters.blur = radius;
                }
                "sharpen" => {
                    let tenths = decimal(value, MAX_SHARPEN, 10).ok_or_else(|| {
                        OptionError::new(
                            name,
                            format!("sharpen is a strength from 0 to {MAX_SHARPEN} (one decimal at most)"),
                        )
                    })?;
                    options.filters.sharpen = u8::try_from(tenths).unwrap_or(u8::MAX);
                }
                "trim" if value == "border" => trim.border = true,
                "trim" => {
                    let [top, right, bottom, left] = sides(name, value, MAX_REQUESTED_SIDE)?;
                    trim.sides = Some([top, right, bottom, left]);
                }
                "trim.width" | "trim.height" | "trim.left" | "trim.top" => {
                    let v = value
                        .parse::<u32>()
                        .ok()
                        .filter(|v| *v <= MAX_REQUESTED_SIDE && value.len() <= 6)
                        .ok_or_else(|| {
                            OptionError::new(
                                name,
                                format!("{canonical} is a whole number of pixels from 0 to {MAX_REQUESTED_SIDE}"),
                            )
                        })?;
                    let slot = match canonical {
                        "trim.width" => &mut trim.width,
                        "trim.height" => &mut trim.height,
                        "trim.left" => &mut trim.left,
                        _ => &mut trim.top,
                    };
                    *slot = Some(v);
                }
                "trim.border.color" => {
                    trim.color = Some(Rgba::parse(value).ok_or_else(|| {
                        OptionError::new(name, "trim.border.color is a CSS colour")
                    })?);
                }
                "trim.border.tolerance" => {
                    trim.tolerance = Some(value.parse::<u8>().ok().ok_or_else(|| {
                        OptionError::new(
                            name,
                            "trim.border.tolerance is 0 (any colour is border) to 255 (only the exact colour)",
                        )
                    })?);
                }
                "trim.border.keep" => {
                    trim.keep = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|v| *v <= MAX_REQUESTED_SIDE)
                            .ok_or_else(|| {
                                OptionError::new(
                                    name,
                                    "trim.border.keep is the pixels of border kept, 0 or more",
                                )
                            })?,
                    );
                }
                "border" => {
                    border = Some(match value.parse::<u32>() {
                        Ok(w) if w <= MAX_BORDER && value.len() <= 4 => [w; 4],
                        _ if value.contains(';') => sides(name, value, MAX_BORDER)?,
                        _ => {
                            return Err(OptionError::new(
                                name,
                                format!(
                                    "border is a width from 0 to {MAX_BORDER} pixels, or top;right;bottom;left"
                                ),
                            ));
                        }
                    });
                }
                "placeholder" => {
                    if value != "thumbhash" {
                        return Err(OptionError::new(name, "placeholder is thumbhash"));
                    }
                    placeholder = true;
                }
                "border.color" => {
                    border_color =
                        Some(Rgba::parse(value).ok_or_else(|| {
                            OptionError::new(name, "border.color is a CSS colour")
                        })?);
                }
                "v" => {
                    let valid = !value.is_empty()
                        && value.len() <= 64
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                    if !valid {
                        return Err(OptionError::new(
                            name,
                            "v is 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'",
                        ));
                    }
                    options.version = Some(value.to_owned());
                }
                "onerror" => {
                    if value != "redirect" {
                        return Err(OptionError::new(name, "onerror is redirect"));
                    }
                    options.redirect_on_error = true;
                }
                _ => {
                    if value.is_empty()
                        || value.len() > 128
                        || !value.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(OptionError::new(name, "sig is a hex HMAC-SHA256"));
                    }
                    signature = Some(value.to_ascii_lowercase());
                }
            }
        }
        options.trim = trim.resolve()?;
        if placeholder {
            if options.answer != Answer::Json {
                return Err(OptionError::new(
                    "placeholder",
                    "placeholder=thumbhash goes with format=json (the JSON carries the hash)",
                ));
            }
            options.answer = Answer::JsonWithThumbHash;
        }
        if let Some([top, right, bottom, left]) = border {
            options.border = Some(Border {
                color: border_color.unwrap_or(Rgba([0, 0, 0, 255])),
                top,
                right,
                bottom,
                left,
            });
        } else if border_color.is_some() {
            return Err(OptionError::new(
                "border.color",
                "border.color needs border=<width> (or top;right;bottom;left)",
            ));
        }
        if fast
            && matches!(
                options.format,
                FormatRequest::Auto | FormatRequest::Avif | FormatRequest::Webp
            )
        {
            options.format = FormatRequest::Fastest;
        }
        Ok(Parsed { options, signature })
    }

    /// The canonical value: the same pixels, format and headers, spelled one way. `dpr`
    /// is folded into the box it scales (`w=400,dpr=2` is `w=800`: the same output), the
    /// default quality and background become `None`, and what cannot change the output
    /// is reset — gravity and the fit's crop/pad behaviour without a two-sided box, the
    /// quality of a PNG. Every option that can change a pixel stays (`background`
    /// flattens alpha into JPEG and AVIF whatever the fit). Idempotent.
    pub fn canonical(&self) -> ImageOptions {
        let (width, height) = self.target();
        // `width=auto` is a width, known once the hints are read.
        let has_width = width.is_some() || self.auto_width;
        let boxed = has_width && height.is_some();
        let fit = match (has_width || height.is_some(), boxed, self.fit) {
            // No box: every fit keeps the source size.
            (false, _, _) => Fit::ScaleDown,
            // One side: only "may it enlarge?" is left of the fit.
            (true, false, Fit::Crop) => Fit::ScaleDown,
            (true, false, Fit::Cover | Fit::Pad | Fit::Squeeze) => Fit::Contain,
            (_, _, fit) => fit,
        };
        // `auto` finds where to crop: a pad canvas is placed at the centre.
        let gravity = match (boxed, fit) {
            (true, Fit::Cover | Fit::Crop) => self.gravity,
            (true, Fit::Pad) => GravityMode::Point(self.gravity.point()),
            _ => GravityMode::default(),
        };
        let quality = self
            .quality
            .filter(|q| *q != DEFAULT_QUALITY && self.format != FormatRequest::Png);
        let (flip, rotate) = orient::flip_rotate_of(orient::of_flip_rotate(self.flip, self.rotate));
        let slow_quality = self
            .slow_quality
            .filter(|_| self.format != FormatRequest::Png);
        ImageOptions {
            width: width.filter(|_| !self.auto_width),
            auto_width: self.auto_width,
            height,
            fit,
            gravity,
            quality,
            slow_quality,
            // A description has no output format to ask for.
            format: if self.answer == Answer::Image {
                self.format
            } else {
                FormatRequest::Auto
            },
            dpr: 100,
            background: self.background.filter(|bg| *bg != Rgba::WHITE),
            metadata: self.metadata,
            flip,
            rotate,
            filters: self.filters,
            trim: self.trim(),
            answer: self.answer,
            still: self.still,
            border: self.border(),
            redirect_on_error: self.redirect_on_error,
            version: self.version.clone(),
        }
    }

    /// The canonical spelling of [`Self::canonical`]: non-default values only, in a fixed
    /// order, aliases resolved. Equal outputs give equal strings, and the string parses
    /// back to the canonical value. Signatures are made over it.
    pub fn normalized(&self) -> String {
        self.canonical().spell(true)
    }

    /// What the pixels depend on: [`Self::normalized`] without `v` and `onerror`, which
    /// change only the response, and without the format request (`f=`,
    /// `compression=fast`), which only chooses the output format that every key names
    /// beside it. Derivative keys are built from it, so `v=` values can neither mint new
    /// derivatives nor name an old picture as a new version, and `f=webp`, `f=auto`
    /// answered with WebP and the WebP stand-in of `f=avif` are one derivative.
    pub fn pixels_identity(&self) -> String {
        self.canonical().spell(false)
    }

    fn spell(&self, with_response_options: bool) -> String {
        let mut out = String::new();
        let mut push = |name: &str, value: &dyn std::fmt::Display| {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "{name}={value}");
        };
        if self.auto_width {
            push("w", &"auto");
        } else if let Some(w) = self.width {
            push("w", &w);
        }
        if let Some(h) = self.height {
            push("h", &h);
        }
        if self.fit != Fit::ScaleDown {
            push("fit", &self.fit.as_str());
        }
        match self.gravity {
            GravityMode::Auto => push("g", &"auto"),
            GravityMode::Point(g) if g != Gravity::default() => {
                push("g", &format!("{}x{}", g.fx(), g.fy()));
            }
            GravityMode::Point(_) => {}
        }
        if let Some(q) = self.quality.filter(|q| *q != DEFAULT_QUALITY) {
            push("q", &q);
        }
        if let Some(q) = self.slow_quality {
            push("scq", &q);
        }
        match self.format {
            _ if !with_response_options => {}
            _ if self.answer != Answer::Image => push("f", &"json"),
            FormatRequest::Auto => {}
            FormatRequest::Fastest => push("compression", &"fast"),
            other => push("f", &other.as_str()),
        }
        if self.dpr != 100 {
            push("dpr", &(f64::from(self.dpr) / 100.0));
        }
        if let Some(bg) = self.background {
            push("bg", &bg.hex());
        }
        if self.metadata != Metadata::None {
            push("metadata", &self.metadata.as_str());
        }
        if self.flip != Flip::None {
            push("flip", &self.flip.as_str());
        }
        if self.rotate != 0 {
            push("rotate", &self.rotate);
        }
        let f = &self.filters;
        let factor = |v: u16| f64::from(v) / 100.0;
        for (name, value) in [
            ("brightness", f.brightness),
            ("contrast", f.contrast),
            ("gamma", f.gamma),
            ("saturation", f.saturation),
        ] {
            if value != 100 {
                push(name, &factor(value));
            }
        }
        if f.blur != 0 {
            push("blur", &f.blur);
        }
        if f.sharpen != 0 {
            push("sharpen", &(f64::from(f.sharpen) / 10.0));
        }
        match self.trim {
            Trim::None => {}
            Trim::Sides {
                top,
                right,
                bottom,
                left,
                width: None,
                height: None,
            } => push("trim", &format!("{top};{right};{bottom};{left}")),
            Trim::Sides {
                top,
                left,
                width,
                height,
                ..
            } => {
                push("trim.left", &left);
                push("trim.top", &top);
                if let Some(w) = width {
                    push("trim.width", &w);
                }
                if let Some(h) = height {
                    push("trim.height", &h);
                }
            }
            Trim::Border(b) => {
                push("trim", &"border");
                if let Some(c) = b.color {
                    push("trim.border.color", &c.hex());
                }
                if b.tolerance != DEFAULT_TRIM_TOLERANCE {
                    push("trim.border.tolerance", &b.tolerance);
                }
                if b.keep != 0 {
                    push("trim.border.keep", &b.keep);
                }
            }
        }
        if let Some(b) = self.border {
            if b.top == b.right && b.top == b.bottom && b.top == b.left {
                push("border", &b.top);
            } else {
                push(
                    "border",
                    &format!("{};{};{};{}", b.top, b.right, b.bottom, b.left),
                );
            }
            if b.color != Rgba([0, 0, 0, 255]) {
                push("border.color", &b.color.hex());
            }
        }
        if self.still {
            push("anim", &"false");
        }
        if self.answer == Answer::JsonWithThumbHash {
            push("placeholder", &"thumbhash");
        }
        if with_response_options {
            if self.redirect_on_error {
                push("onerror", &"redirect");
            }
            if let Some(v) = &self.version {
                push("v", v);
            }
        }
        if out.is_empty() {
            out.push_str(ORIGINAL);
        }
        out
    }

    /// `trim` in source pixels: scaled by `dpr`, as Cloudflare documents.
    pub fn trim(&self) -> Trim {
        self.trim.scaled(self.dpr)
    }

    /// `border` in output pixels (scaled by `dpr`); `None` when it has no width.
    pub fn border(&self) -> Option<Border> {
        let s = |v: u32| {
            u32::try_from(
                ((u64::from(v) * u64::from(self.dpr)).div_ceil(100)).min(u64::from(MAX_BORDER)),
            )
            .unwrap_or(MAX_BORDER)
        };
        self.border
            .map(|b| Border {
                top: s(b.top),
                right: s(b.right),
                bottom: s(b.bottom),
                left: s(b.left),
                ..b
            })
            .filter(|b| b.top + b.right + b.bottom + b.left > 0)
    }

    pub fn quality(&self) -> u8 {
        self.quality.unwrap_or(DEFAULT_QUALITY)
    }

    /// The box to fit into, in output pixels: dimension × dpr, and a box with a side over
    /// [`MAX_SIDE`] scaled down whole to the cap (its shape kept, so every fit crops,
    /// pads or squeezes to the box asked for, only smaller).
    pub fn target(&self) -> (Option<u32>, Option<u32>) {
        let scale = |v: u32| (u64::from(v) * u64::from(self.dpr)).div_ceil(100);
        let (w, h) = (self.width.map(scale), self.height.map(scale));
        let longest = w.into_iter().chain(h).max().unwrap_or(0);
        let cap = u64::from(MAX_SIDE);
        let fit = |v: u64| -> u32 {
            let v = if longest > cap {
                ((v * cap + longest / 2) / longest).max(1)
            } else {
                v
            };
            u32::try_from(v.min(cap)).unwrap_or(MAX_SIDE)
        };
        (w.map(fit), h.map(fit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageOptions {
        ImageOptions::parse(s).unwrap().options
    }

    #[test]
    fn aliases_and_defaults_normalize_to_one_spelling() {
        let table = [
            ("width=800", "w=800"),
            (
                "w=800,fit=scale-down,q=85,format=auto,dpr=1,metadata=none",
                "w=800",
            ),
            ("h=600,w=800", "w=800,h=600"),
            (
                "height=600,width=800,fit=cover,gravity=left",
                "w=800,h=600,fit=cover,g=0x0.5",
            ),
            // Gravity only places a crop or a pad: without a two-sided box it is dropped.
            ("w=100,g=0.25x0.75,quality=high", "w=100,q=90"),
            (
                "w=100,h=80,fit=crop,g=0.25x0.75,quality=high",
                "w=100,h=80,fit=crop,g=0.25x0.75,q=90",
            ),
            ("w=100,f=jpg", "w=100,f=jpeg"),
            ("w=100,dpr=2.5", "w=250"),
            // A box over the cap is scaled down whole: 9000×300 → 4096×137.
            ("w=3000,h=100,dpr=3", "w=4096,h=137"),
            ("w=8000,h=4000,fit=crop", "w=4096,h=2048,fit=crop"),
            ("w=100,q=85,f=png", "w=100,f=png"),
            ("w=100,q=60,f=png", "w=100,f=png"),
            ("w=100,fit=cover,g=left", "w=100,fit=contain"),
            ("w=100,fit=crop,g=0.1x0.2", "w=100"),
            ("fit=pad,g=left", "original"),
            // gravity=auto crops where the detail is; a pad canvas is centred.
            ("w=100,h=80,fit=cover,g=auto", "w=100,h=80,fit=cover,g=auto"),
            (
                "w=100,h=80,fit=crop,gravity=auto",
                "w=100,h=80,fit=crop,g=auto",
            ),
            ("w=100,h=80,fit=pad,g=auto", "w=100,h=80,fit=pad"),
            ("w=100,fit=cover,g=auto", "w=100,fit=contain"),
            (
                "w=100,h=50,fit=pad,background=%23000",
                "w=100,h=50,fit=pad,bg=000000ff",
            ),
            // The background flattens alpha into JPEG whatever the fit: it stays.
            ("w=100,background=red", "w=100,bg=ff0000ff"),
            ("w=100,background=white", "w=100"),
            ("", "original"),
            ("metadata=none,onerror=redirect", "onerror=redirect"),
            ("metadata=keep,w=100", "w=100,metadata=keep"),
            ("w=100,metadata=copyright", "w=100,metadata=copyright"),
            // flip and rotate: one spelling per orientation (flip none or h, then rotate).
            ("rotate=90", "rotate=90"),
            ("rotate=360,flip=hv", "rotate=180"),
            ("flip=v", "flip=h,rotate=180"),
            ("flip=vh,rotate=180", "original"),
            ("rotate=0", "original"),
            // Filters at their neutral values are no filters; 0 is ignored except for
            // saturation (greyscale).
            (
                "brightness=1,contrast=0,gamma=1.00,saturation=1,sharpen=0",
                "original",
            ),
            ("saturation=0", "saturation=0"),
            (
                "sharpen=1.0,blur=5,gamma=0.5,brightness=1.25,saturation=2,contrast=.5",
                "brightness=1.25,contrast=0.5,gamma=0.5,saturation=2,blur=5,sharpen=1",
            ),
            // squeeze needs both sides; with one it is contain (aspect kept).
            ("w=100,h=50,fit=squeeze,g=left", "w=100,h=50,fit=squeeze"),
            ("w=100,fit=squeeze", "w=100,fit=contain"),
            // Above the cap: not an error, the box is clamped (the fit decides whether
            // the source may be enlarged to it).
            ("w=5000", "w=4096"),
            ("w=99999,h=5000,fit=cover", "w=4096,h=205,fit=cover"),
            // trim: sides, or left/top with a kept size; dpr scales it (Cloudflare).
            ("trim=20;30;20;0", "trim=20;30;20;0"),
            ("trim=0;0;0;0", "original"),
            ("trim.left=5,trim.top=6", "trim=6;0;0;5"),
            (
                "trim.width=100,trim.top=6,trim.left=5",
                "trim.left=5,trim.top=6,trim.width=100",
            ),
            ("w=100,dpr=2,trim=1;2;3;4", "w=200,trim=2;4;6;8"),
            ("trim=border", "trim=border"),
            (
                "trim=border,trim.border.tolerance=245,trim.border.keep=2,trim.border.color=white",
                "trim=border,trim.border.color=ffffffff,trim.border.keep=2",
            ),
            // border: one width or four sides, black unless coloured; dpr scales it.
            ("border=10", "border=10"),
            (
                "border=1;2;3;4,border.color=red",
                "border=1;2;3;4,border.color=ff0000ff",
            ),
            ("border=5;5;5;5,border.color=black", "border=5"),
            ("border=0", "original"),
            ("w=50,border=3,dpr=2", "w=100,border=6"),
            // dpr never scales a value past what the parser takes back.
            ("w=100,border=900,dpr=2", "w=200,border=1500"),
            ("trim=0;0;0;60000,dpr=2", "trim=0;0;0;100000"),
            (
                "trim=border,trim.border.keep=50000,dpr=3",
                "trim=border,trim.border.keep=100000",
            ),
            // format=json answers a description (and on request a ThumbHash).
            ("w=100,format=json", "w=100,f=json"),
            (
                "placeholder=thumbhash,f=json,w=100",
                "w=100,f=json,placeholder=thumbhash",
            ),
            // Client hints: resolved at the edge (`hints::resolve`) before the key.
            ("width=auto", "w=auto"),
            (
                "w=auto,h=300,fit=cover,g=left",
                "w=auto,h=300,fit=cover,g=0x0.5",
            ),
            ("w=auto,dpr=2,h=100", "w=auto,h=200"),
            ("slow-connection-quality=low,w=10", "w=10,scq=50"),
            ("scq=40,q=60", "q=60,scq=40"),
            ("scq=40,f=png", "f=png"),
        ];
        for (input, want) in table {
            let input = input.replace("%23", "#");
            assert_eq!(parse(&input).normalized(), want, "{input}");
        }
    }

    #[test]
    fn every_option_and_alias_is_read() {
        let o = parse(
            "width=10,height=20,fit=crop,gravity=bottom,quality=low,format=webp,dpr=3,background=rgba(1,2,3,0.5),metadata=none,onerror=redirect",
        );
        assert_eq!((o.width, o.height), (Some(10), Some(20)));
        assert_eq!(o.fit, Fit::Crop);
        assert_eq!(o.gravity, GravityMode::Point(Gravity { x: 500, y: 1000 }));
        assert_eq!(o.quality(), 50);
        assert_eq!(o.format, FormatRequest::Webp);
        assert_eq!(o.dpr, 300);
        assert_eq!(o.background, Some(Rgba([1, 2, 3, 128])));
        assert_eq!(o.metadata, Metadata::None);
        assert!(o.redirect_on_error);
        let short = parse("w=10,h=20,g=right,q=medium-low,f=png");
        assert_eq!(
            (short.gravity.point().x, short.quality(), short.format),
            (1000, 65, FormatRequest::Png)
        );
    }

    #[test]
    fn bad_values_name_their_option() {
        let table = [
            ("w=0", "w"),
            ("width=100001", "width"),
            ("w=abc", "w"),
            ("h=-1", "h"),
            ("fit=fill", "fit"),
            ("gravity=north", "gravity"),
            ("g=2x0.5", "g"),
            ("q=0", "q"),
            ("quality=101", "quality"),
            ("quality=best", "quality"),
            ("format=gif", "format"),
            ("dpr=0.5", "dpr"),
            ("dpr=4", "dpr"),
            ("background=#12", "background"),
            ("bg=rgb(300,0,0)", "bg"),
            ("metadata=all", "metadata"),
            ("metadata=", "metadata"),
            ("onerror=ignore", "onerror"),
            ("sig=xyz", "sig"),
            ("v=", "v"),
            ("v=a/b", "v"),
            ("blur=0", "blur"),
            ("blur=251", "blur"),
            ("blur=2.5", "blur"),
            ("sharpen=11", "sharpen"),
            ("sharpen=0.25", "sharpen"),
            ("sharpen=-1", "sharpen"),
            ("brightness=11", "brightness"),
            ("contrast=0.001", "contrast"),
            ("gamma=1e2", "gamma"),
            ("saturation=nan", "saturation"),
            ("rotate=45", "rotate"),
            ("rotate=-90", "rotate"),
            ("flip=x", "flip"),
            ("fit=stretch", "fit"),
            ("segment=foreground", "segment"),
            ("gravity=face", "gravity"),
            ("zoom=0.5", "zoom"),
            ("face-zoom=1", "face-zoom"),
            ("trim=1;2;3", "trim"),
            ("trim=1;2;3;4;5", "trim"),
            ("trim=a;b;c;d", "trim"),
            ("trim=1;2;3;4,trim.left=3", "trim"),
            ("trim=border,trim.width=3", "trim"),
            ("trim.border.keep=3", "trim.border"),
            (
                "trim=border,trim.border.tolerance=256",
                "trim.border.tolerance",
            ),
            ("trim=border,trim.border.color=nope", "trim.border.color"),
            ("trim.width=-1", "trim.width"),
            ("border=1501", "border"),
            ("border=1;2", "border"),
            ("border.color=red", "border.color"),
            ("placeholder=thumbhash", "placeholder"),
            ("w=autos", "w"),
            ("scq=0", "scq"),
            ("slow-connection-quality=best", "slow-connection-quality"),
            (
                "scq=50,slow-connection-quality=40",
                "slow-connection-quality",
            ),
            ("f=json,placeholder=blurhash", "placeholder"),
            ("border=2,border.color=#12", "border.color"),
            ("w", "w"),
            ("w=1,w=2", "w"),
            ("w=1,width=2", "width"),
        ];
        for (input, option) in table {
            let err = ImageOptions::parse(input).unwrap_err();
            assert_eq!(err.option, option, "{input}: {err:?}");
        }
        let long = "w=1,".repeat(200);
        assert_eq!(ImageOptions::parse(&long).unwrap_err().option, "options");
    }

    #[test]
    fn normalized_forms_parse_back_to_the_same_options() {
        // Found by the `options` fuzz target: a padded background normalized to bare hex.
        for input in [
            "w=100,fit=pad,background=rgba(1,2,3,0.5),sig=abcdef",
            "width=300,height=200,fit=cover,gravity=0.25x0.75,q=high,f=webp,dpr=2",
            "w=1,fit=pad,bg=%23abc".replace("%23", "#").as_str(),
            "v=3,onerror=redirect,metadata=none",
            "flip=v,rotate=270,brightness=0.5,blur=250,sharpen=10,saturation=0,w=9000",
            "trim.left=3,trim.height=9,border=1;0;0;7,border.color=hsl(120,100%,25%)",
            "trim=border,trim.border.color=%23abc,trim.border.keep=4,dpr=1.5,g=auto,fit=crop,w=5,h=9",
        ] {
            let once = parse(input).normalized();
            assert_eq!(parse(&once).normalized(), once, "{input}");
        }
    }

    #[test]
    fn the_signature_is_kept_apart() {
        let parsed = ImageOptions::parse("w=100,sig=ABCdef01").unwrap();
        assert_eq!(parsed.signature.as_deref(), Some("abcdef01"));
        assert_eq!(parsed.options.normalized(), "w=100");
    }

    #[test]
    fn the_target_box_applies_dpr_and_the_cap() {
        assert_eq!(parse("w=800,dpr=2").target(), (Some(1600), None));
        assert_eq!(
            parse("w=3000,h=100,dpr=3").target(),
            (Some(4096), Some(137))
        );
        assert_eq!(
            parse("w=100000,h=1").target(),
            (Some(4096), Some(1)),
            "a side never rounds to 0"
        );
        assert_eq!(parse("w=333,dpr=1.5").target(), (Some(500), None));
    }

    #[test]
    fn css_colours() {
        let table = [
            ("#abc", [0xaa, 0xbb, 0xcc, 255]),
            ("#abcd", [0xaa, 0xbb, 0xcc, 0xdd]),
            ("#102030", [16, 32, 48, 255]),
            ("#10203040", [16, 32, 48, 64]),
            ("rgb(1, 2, 3)", [1, 2, 3, 255]),
            ("transparent", [0, 0, 0, 0]),
            ("WHITE", [255, 255, 255, 255]),
            ("01020380", [1, 2, 3, 128]),
            ("ffcc00", [255, 204, 0, 255]),
            ("%23102030", [16, 32, 48, 255]),
            ("hsl(120, 100%, 25%)", [0, 128, 0, 255]),
            ("hsla(0, 100%, 50%, 0.5)", [255, 0, 0, 128]),
            ("rebeccapurple", [102, 51, 153, 255]),
            ("DarkSlateGray", [47, 79, 79, 255]),
        ];
        for (input, want) in table {
            assert_eq!(Rgba::parse(input), Some(Rgba(want)), "{input}");
        }
        for bad in [
            "",
            "#",
            "#12345",
            "rgb(1,2)",
            "rgba(1,2,3,2)",
            "hsl(1,2)",
            "notacolour",
            "#ggg",
        ] {
            assert_eq!(Rgba::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_an_untransformable_source_redirects() {
        let redirect = ImageOptions::parse("w=100,onerror=redirect")
            .unwrap()
            .options;
        assert!(redirect.redirects_on(415) && redirect.redirects_on(422));
        assert!(!redirect.redirects_on(404) && !redirect.redirects_on(503));
        let plain = ImageOptions::parse("w=100").unwrap().options;
        assert!(!plain.redirects_on(422));
    }
}
