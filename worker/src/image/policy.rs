//! The derivative policy: which derivatives a deployment lets strangers mint. The parser
//! accepts every option's full documented range; this module decides what is allowed,
//! because each distinct option set is a transform and a permanent R2 object under
//! `derived/`. Three ways in:
//! - a **preset** (`/img/<name>/<key>`: a named option set, like Cloudflare's variants);
//! - a **signed** URL (`sig=`, minted by the operator's tooling: any option);
//! - an unsigned URL, only in `open` access mode, and only within the allow-lists for the
//!   box (width and height × dpr), quality, gravity and background.
//!
//! `signed-or-preset` mode (the production setting) refuses every unsigned, non-preset URL.

use std::collections::BTreeMap;

use super::filters::Filters;
use super::options::{
    BorderTrim, FormatRequest, Gravity, GravityMode, ImageOptions, MAX_SIDE, Parsed, Rgba, Trim,
};
use super::sign;

/// Who may mint derivatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Unsigned URLs within the allow-lists, plus presets and signed URLs.
    Open,
    /// Presets and signed URLs only (needs `IMAGE_SIGNING_KEY`).
    SignedOrPreset,
}

impl Access {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "open" => Some(Self::Open),
            "signed-or-preset" => Some(Self::SignedOrPreset),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::SignedOrPreset => "signed-or-preset",
        }
    }
}

/// Where a gravity may point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GravityRule {
    /// Any point (1001 × 1001 positions).
    Any,
    /// Points on a grid with this step, in thousandths, which divides 500 (100 = 0.1:
    /// 11 × 11 positions; 500 = `named`: the centre, the four edge midpoints and the four
    /// corners).
    Grid(u16),
}

/// Which pixel filters (`brightness`, `contrast`, `gamma`, `saturation`, `blur`,
/// `sharpen`) unsigned URLs may ask for. `flip` and `rotate` are always allowed: eight
/// orientations in all, one spelling each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterRule {
    /// None: only presets and signed URLs filter.
    Off,
    /// The values in [`LISTED_FACTORS`], [`LISTED_BLURS`] and [`LISTED_SHARPENS`]
    /// (the default: enough for placeholders and mild corrections, not millions of
    /// distinct derivatives per source).
    Listed,
    /// Any value in the parser's range.
    Any,
}

/// Factors (hundredths) unsigned URLs may use for the four tone filters under
/// [`FilterRule::Listed`]; 0 is `saturation=0` (greyscale).
pub const LISTED_FACTORS: [u16; 7] = [0, 50, 75, 100, 125, 150, 200];
/// Blur radii under [`FilterRule::Listed`] (placeholders and backdrops).
pub const LISTED_BLURS: [u8; 5] = [5, 10, 20, 50, 100];
/// Pixels an unsigned URL may `trim` off a side under [`FilterRule::Listed`].
pub const LISTED_TRIMS: [u32; 8] = [0, 1, 2, 5, 10, 20, 50, 100];
/// `border` widths (output pixels) under [`FilterRule::Listed`].
pub const LISTED_BORDERS: [u32; 5] = [1, 2, 4, 8, 16];
/// Sharpen strengths (tenths) under [`FilterRule::Listed`].
pub const LISTED_SHARPENS: [u8; 4] = [5, 10, 20, 30];

/// An allow-list, or `None` for any value in the parser's range.
pub type AllowList<T> = Option<Vec<T>>;

/// The box sides allowed by default (output pixels, after dpr): the common layout and
/// device widths (next/image's device and image sizes among them) up to [`MAX_SIDE`].
pub const DEFAULT_SIDES: [u32; 38] = [
    16, 32, 48, 64, 96, 100, 128, 150, 160, 200, 240, 256, 300, 320, 384, 400, 480, 500, 600, 640,
    700, 750, 800, 828, 960, 1024, 1080, 1200, 1280, 1440, 1600, 1920, 2048, 2400, 2560, 3200,
    3840, MAX_SIDE,
];
/// Qualities allowed by default: the named levels (50, 65, 80, 90), 75 and the default 85.
pub const DEFAULT_QUALITIES: [u8; 6] = [50, 65, 75, 80, 85, 90];
/// Backgrounds allowed by default (white is the default and always allowed).
pub const DEFAULT_BACKGROUNDS: [Rgba; 2] = [Rgba([0, 0, 0, 255]), Rgba([0, 0, 0, 0])];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivativePolicy {
    pub access: Access,
    pub widths: AllowList<u32>,
    pub heights: AllowList<u32>,
    pub qualities: AllowList<u8>,
    pub gravity: GravityRule,
    pub backgrounds: AllowList<Rgba>,
    pub filters: FilterRule,
    /// Named option sets (`IMAGE_PRESETS`), canonical.
    pub presets: BTreeMap<String, ImageOptions>,
}

impl Default for DerivativePolicy {
    fn default() -> Self {
        Self {
            access: Access::Open,
            widths: Some(DEFAULT_SIDES.to_vec()),
            heights: Some(DEFAULT_SIDES.to_vec()),
            qualities: Some(DEFAULT_QUALITIES.to_vec()),
            gravity: GravityRule::Grid(100),
            backgrounds: Some(DEFAULT_BACKGROUNDS.to_vec()),
            filters: FilterRule::Listed,
            presets: BTreeMap::new(),
        }
    }
}

impl DerivativePolicy {
    /// No restriction at all (tests and tools that transform what they are given).
    pub fn any() -> Self {
        Self {
            access: Access::Open,
            widths: None,
            heights: None,
            qualities: None,
            gravity: GravityRule::Any,
            backgrounds: None,
            filters: FilterRule::Any,
            presets: BTreeMap::new(),
        }
    }
}

/// Why a derivative is not allowed: 400 (the policy) or 403 (the signature).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An unsigned URL asks for something the allow-lists do not hold.
    #[error(
        "{option}={value} is not allowed by this deployment's derivative policy ({var}: {allowed}); \
         use an allowed value, a preset or a signed URL"
    )]
    NotAllowed {
        option: &'static str,
        value: String,
        var: &'static str,
        allowed: String,
    },
    #[error("no preset named {0:?} (IMAGE_PRESETS)")]
    UnknownPreset(String),
    /// Signed-or-preset mode, or a signing key is set, and the URL is neither.
    #[error("{0}")]
    Unsigned(&'static str),
    #[error("the sig does not match the key and options")]
    BadSignature,
}

impl PolicyError {
    /// The option the error names (`field` in the JSON error).
    pub fn option(&self) -> &'static str {
        match self {
            Self::NotAllowed { option, .. } => option,
            Self::UnknownPreset(_) => "preset",
            Self::Unsigned(_) | Self::BadSignature => "sig",
        }
    }
}

/// How a URL was admitted (for logs and `x-edge-image-access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Preset,
    Signed,
    Policy,
}

impl Admission {
    /// Whether a `v=` on this URL may make the response immutable for a year. Only the
    /// operator's URLs: anyone can ask for `v=8` before version 8 exists, and browsers
    /// and shared caches would keep the old picture under it for a year.
    pub fn trusts_versions(self) -> bool {
        !matches!(self, Self::Policy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preset => "preset",
            Self::Signed => "signed",
            Self::Policy => "policy",
        }
    }
}

/// A preset name: 1–32 of `a-z 0-9 - _`, and never `original` (no options).
pub fn is_preset_name(segment: &str) -> bool {
    (1..=32).contains(&segment.len())
        && segment != super::options::ORIGINAL
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl DerivativePolicy {
    /// The canonical options a request may be served with, or why not. `segment` is the
    /// URL's options segment: a preset name, or options (with `sig` when signed).
    pub fn admit(
        &self,
        segment: &str,
        source_key: &str,
        signing_key: Option<&[u8]>,
    ) -> Result<(ImageOptions, Admission), PolicyOrParse> {
        if is_preset_name(segment) {
            return self
                .presets
                .get(segment)
                .map(|options| (options.clone(), Admission::Preset))
                .ok_or_else(|| PolicyError::UnknownPreset(segment.to_owned()).into());
        }
        let parsed: Parsed = ImageOptions::parse(segment)?;
        let options = parsed.options.canonical();
        match (signing_key, parsed.signature.as_deref()) {
            (Some(secret), Some(sig)) => {
                if sign::verify(secret, source_key, &options, sig) {
                    return Ok((options, Admission::Signed));
                }
                return Err(PolicyError::BadSignature.into());
            }
            (_, None) if self.access == Access::SignedOrPreset => {
                return Err(PolicyError::Unsigned(
                    "this deployment serves signed or preset image URLs only",
                )
                .into());
            }
            (_, None) | (None, Some(_)) => {}
        }
        self.check(&options)?;
        Ok((options, Admission::Policy))
    }

    /// The allow-lists, on canonical options (the box after dpr).
    pub fn check(&self, options: &ImageOptions) -> Result<(), PolicyError> {
        fn listed<T: PartialEq + Copy>(
            list: &AllowList<T>,
            value: Option<T>,
            option: &'static str,
            var: &'static str,
            show: impl Fn(T) -> String,
        ) -> Result<(), PolicyError> {
            match (list, value) {
                (Some(allowed), Some(v)) if !allowed.contains(&v) => Err(PolicyError::NotAllowed {
                    option,
                    value: show(v),
                    var,
                    allowed: allowed
                        .iter()
                        .map(|a| show(*a))
                        .collect::<Vec<_>>()
                        .join(","),
                }),
                _ => Ok(()),
            }
        }
        let (width, height) = options.target();
        listed(&self.widths, width, "width", "IMAGE_WIDTHS", |w| {
            w.to_string()
        })?;
        listed(&self.heights, height, "height", "IMAGE_HEIGHTS", |h| {
            h.to_string()
        })?;
        let quality = options
            .quality
            .filter(|_| options.format != FormatRequest::Png);
        listed(
            &self.qualities,
            quality,
            "quality",
            "IMAGE_QUALITIES",
            |q| q.to_string(),
        )?;
        listed(
            &self.qualities,
            options.slow_quality,
            "slow-connection-quality",
            "IMAGE_QUALITIES",
            |q| q.to_string(),
        )?;
        listed(
            &self.backgrounds,
            options.background,
            "background",
            "IMAGE_BACKGROUNDS",
            |c| c.hex(),
        )?;
        self.check_filters(&options.filters)?;
        self.check_frame(options)?;
        // `auto` is one value, like a named side.
        if let (GravityRule::Grid(step), GravityMode::Point(point)) =
            (self.gravity, options.gravity)
        {
            let Gravity { x, y } = point;
            if step == 0 || x % step != 0 || y % step != 0 {
                return Err(PolicyError::NotAllowed {
                    option: "gravity",
                    value: format!("{}x{}", point.fx(), point.fy()),
                    var: "IMAGE_GRAVITY",
                    allowed: format!(
                        "named positions and points on a {} grid",
                        f64::from(step) / 1000.0
                    ),
                });
            }
        }
        Ok(())
    }
}

impl DerivativePolicy {
    fn check_filters(&self, filters: &Filters) -> Result<(), PolicyError> {
        let f = filters;
        let asked: [(&'static str, u16, bool); 6] = [
            (
                "brightness",
                f.brightness,
                LISTED_FACTORS.contains(&f.brightness),
            ),
            ("contrast", f.contrast, LISTED_FACTORS.contains(&f.contrast)),
            ("gamma", f.gamma, LISTED_FACTORS.contains(&f.gamma)),
            (
                "saturation",
                f.saturation,
                LISTED_FACTORS.contains(&f.saturation),
            ),
            ("blur", u16::from(f.blur), LISTED_BLURS.contains(&f.blur)),
            (
                "sharpen",
                u16::from(f.sharpen),
                LISTED_SHARPENS.contains(&f.sharpen),
            ),
        ];
        let neutral = Filters::NONE;
        let neutral_of = |name: &str| match name {
            "blur" => u16::from(neutral.blur),
            "sharpen" => u16::from(neutral.sharpen),
            _ => 100,
        };
        for (option, value, listed) in asked {
            if value == neutral_of(option) {
                continue;
            }
            let show = |v: u16| match option {
                "blur" => v.to_string(),
                "sharpen" => (f64::from(v) / 10.0).to_string(),
                _ => (f64::from(v) / 100.0).to_string(),
            };
            let allowed = match (self.filters, option) {
                (FilterRule::Any, _) => continue,
                (FilterRule::Listed, _) if listed => continue,
                (FilterRule::Off, _) => String::from("none (presets and signed URLs only)"),
                (FilterRule::Listed, "blur") => join(LISTED_BLURS.map(u16::from), show),
                (FilterRule::Listed, "sharpen") => join(LISTED_SHARPENS.map(u16::from), show),
                (FilterRule::Listed, _) => join(LISTED_FACTORS, show),
            };
            return Err(PolicyError::NotAllowed {
                option,
                value: show(value),
                var: "IMAGE_FILTERS",
                allowed,
            });
        }
        Ok(())
    }
}

impl DerivativePolicy {
    /// `trim` and `border` are pixel counts: under `IMAGE_FILTERS=listed` an unsigned URL
    /// may cut [`LISTED_TRIMS`] off a side, frame in [`LISTED_BORDERS`] widths in black,
    /// white or transparent, and `trim=border` with its defaults; a window
    /// (`trim.width`/`trim.height`), a tolerance, a colour or a kept margin needs a preset
    /// or a signature. `off`: none of it unsigned; `any`: everything.
    fn check_frame(&self, options: &ImageOptions) -> Result<(), PolicyError> {
        let refuse = |option: &'static str, value: String, allowed: &str| {
            Err(PolicyError::NotAllowed {
                option,
                value,
                var: "IMAGE_FILTERS",
                allowed: allowed.to_owned(),
            })
        };
        let only_signed = "none (presets and signed URLs only)";
        let trims = join(LISTED_TRIMS.map(|v| v as u16), |v| v.to_string());
        let borders = join(LISTED_BORDERS.map(|v| v as u16), |v| v.to_string());
        match (self.filters, options.trim) {
            (FilterRule::Any, _) | (_, Trim::None) => {}
            (FilterRule::Off, trim) => return refuse("trim", format!("{trim:?}"), only_signed),
            (FilterRule::Listed, Trim::Border(b)) => {
                if b != BorderTrim::DEFAULT {
                    return refuse(
                        "trim.border",
                        format!("{b:?}"),
                        "trim=border with its defaults (colour, tolerance, keep need a signature)",
                    );
                }
            }
            (
                FilterRule::Listed,
                Trim::Sides {
                    top,
                    right,
                    bottom,
                    left,
                    width,
                    height,
                },
            ) => {
                if width.is_some() || height.is_some() {
                    return refuse("trim.width", format!("{width:?}x{height:?}"), only_signed);
                }
                if let Some(side) = [top, right, bottom, left]
                    .into_iter()
                    .find(|v| !LISTED_TRIMS.contains(v))
                {
                    return refuse("trim", side.to_string(), &trims);
                }
            }
        }
        let Some(border) = options.border else {
            return Ok(());
        };
        match self.filters {
            FilterRule::Any => Ok(()),
            FilterRule::Off => refuse("border", format!("{border:?}"), only_signed),
            FilterRule::Listed => {
                let sides = [border.top, border.right, border.bottom, border.left];
                if let Some(side) = sides
                    .into_iter()
                    .find(|v| *v != 0 && !LISTED_BORDERS.contains(v))
                {
                    return refuse("border", side.to_string(), &borders);
                }
                let plain = [Rgba([0, 0, 0, 255]), Rgba::WHITE, Rgba([0, 0, 0, 0])];
                if !plain.contains(&border.color) {
                    return refuse(
                        "border.color",
                        border.color.hex(),
                        "black, white, transparent",
                    );
                }
                Ok(())
            }
        }
    }
}

fn join<const N: usize>(values: [u16; N], show: impl Fn(u16) -> String) -> String {
    values.map(show).join(",")
}

/// Parses `IMAGE_FILTERS`: `listed`, `any` or `off`.
pub fn parse_filters(raw: &str) -> Option<FilterRule> {
    match raw.trim() {
        "listed" => Some(FilterRule::Listed),
        "any" => Some(FilterRule::Any),
        "off" => Some(FilterRule::Off),
        _ => None,
    }
}

/// What admitting a URL can fail with: its options do not parse, or the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOrParse {
    Parse(super::options::OptionError),
    Policy(PolicyError),
}

impl From<PolicyError> for PolicyOrParse {
    fn from(e: PolicyError) -> Self {
        Self::Policy(e)
    }
}

impl From<super::options::OptionError> for PolicyOrParse {
    fn from(e: super::options::OptionError) -> Self {
        Self::Parse(e)
    }
}

/// Parses `IMAGE_PRESETS`: `name:options;name:options` (options in the URL syntax).
pub fn parse_presets(spec: &str) -> Result<BTreeMap<String, ImageOptions>, String> {
    let mut presets = BTreeMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, options) = entry
            .split_once(':')
            .ok_or_else(|| format!("{entry:?} is not name:options"))?;
        let name = name.trim();
        if !is_preset_name(name) {
            return Err(format!(
                "{name:?} is not a preset name (1-32 of a-z, 0-9, '-', '_')"
            ));
        }
        let parsed = ImageOptions::parse(options.trim())
            .map_err(|e| format!("preset {name}: {}: {}", e.option, e.message))?;
        if parsed.signature.is_some() {
            return Err(format!("preset {name}: a preset carries no sig"));
        }
        if presets
            .insert(name.to_owned(), parsed.options.canonical())
            .is_some()
        {
            return Err(format!("preset {name} is given twice"));
        }
    }
    Ok(presets)
}

/// Parses an allow-list var: `any`, or comma-separated values.
pub fn parse_list<T>(raw: &str, one: impl Fn(&str) -> Option<T>) -> Result<AllowList<T>, String> {
    let raw = raw.trim();
    if raw == "any" {
        return Ok(None);
    }
    raw.split(',')
        .map(str::trim)
        .map(|v| one(v).ok_or_else(|| format!("{v:?} is not an allowed value")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Parses `IMAGE_GRAVITY`: `any`, `named` (the five named positions) or `grid:<step>`.
pub fn parse_gravity(raw: &str) -> Option<GravityRule> {
    match raw.trim() {
        "any" => Some(GravityRule::Any),
        "named" => Some(GravityRule::Grid(500)),
        other => {
            let step: f64 = other.strip_prefix("grid:")?.parse().ok()?;
            let thousandths = (step * 1000.0).round();
            // The grid must hold the centre (the default), so the step divides 0.5.
            ((1.0..=500.0).contains(&thousandths) && 500.0 % thousandths == 0.0)
                .then_some(thousandths as u16)
                .map(GravityRule::Grid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(
        policy: &DerivativePolicy,
        segment: &str,
        key: Option<&[u8]>,
    ) -> Result<(ImageOptions, Admission), PolicyOrParse> {
        policy.admit(segment, "k.jpg", key)
    }

    fn refused_option(result: Result<(ImageOptions, Admission), PolicyOrParse>) -> &'static str {
        match result {
            Err(PolicyOrParse::Policy(e)) => e.option(),
            other => panic!("expected a policy refusal, got {other:?}"),
        }
    }

    #[test]
    fn unsigned_urls_stay_inside_the_allow_lists() {
        let p = DerivativePolicy::default();
        for ok in [
            "w=800",
            "w=400,dpr=2",
            "h=600,q=80",
            "w=300,h=300,fit=cover,g=0.3x0.7",
            "w=100,bg=black",
            "original",
        ] {
            assert!(admit(&p, ok, None).is_ok(), "{ok}");
        }
        let table = [
            ("w=801", "width"),
            // The computed box, not the option: 400 × 1.5 = 600 is listed, × 1.7 = 680 is not.
            ("w=400,dpr=1.7", "width"),
            ("h=17", "height"),
            ("w=800,q=81", "quality"),
            ("w=300,h=300,fit=cover,g=0.33x0.5", "gravity"),
            ("w=100,bg=123456", "background"),
        ];
        for (segment, option) in table {
            assert_eq!(
                refused_option(admit(&p, segment, None)),
                option,
                "{segment}"
            );
        }
        // The message names the policy's variable and what it allows.
        let Err(PolicyOrParse::Policy(e)) = admit(&p, "w=801", None) else {
            unreachable!()
        };
        assert!(e.to_string().contains("IMAGE_WIDTHS"), "{e}");
    }

    #[test]
    fn presets_and_signed_urls_are_the_only_way_in_when_locked() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let mut p = DerivativePolicy {
            access: Access::SignedOrPreset,
            ..DerivativePolicy::default()
        };
        p.presets = parse_presets("thumb: w=200,h=200,fit=cover; hero:w=1600,q=80").unwrap();
        let (thumb, how) = admit(&p, "thumb", None).unwrap();
        assert_eq!(
            (thumb.normalized().as_str(), how),
            ("w=200,h=200,fit=cover", Admission::Preset)
        );
        assert_eq!(refused_option(admit(&p, "nope", None)), "preset");
        assert_eq!(refused_option(admit(&p, "w=800", None)), "sig");
        // Signed: any option, even outside the lists.
        let options = ImageOptions::parse("w=777,q=33").unwrap().options;
        let sig = sign::sign(secret, "k.jpg", &options);
        let url = format!("w=777,q=33,sig={sig}");
        let (_, how) = admit(&p, &url, Some(secret)).unwrap();
        assert_eq!(how, Admission::Signed);
        // A signed URL with an option added no longer verifies (background is part of it).
        let tampered = format!("w=777,q=33,bg=000000,sig={sig}");
        assert_eq!(refused_option(admit(&p, &tampered, Some(secret))), "sig");
        assert_eq!(refused_option(admit(&p, "w=800", Some(secret))), "sig");
        // In open mode a signing key admits signed URLs beside unsigned ones in policy.
        let open = DerivativePolicy::default();
        assert_eq!(
            admit(&open, "w=800", Some(secret)).unwrap().1,
            Admission::Policy
        );
        assert_eq!(refused_option(admit(&open, "w=801", Some(secret))), "width");
        // Only the operator's URLs (signed, presets) may make a `v=` immutable.
        assert!(Admission::Signed.trusts_versions() && Admission::Preset.trusts_versions());
        assert!(!Admission::Policy.trusts_versions());
    }

    #[test]
    fn config_spellings() {
        assert_eq!(parse_gravity("named"), Some(GravityRule::Grid(500)));
        assert_eq!(parse_gravity("grid:0.1"), Some(GravityRule::Grid(100)));
        assert_eq!(parse_gravity("grid:0.3"), None, "must divide the unit");
        assert_eq!(parse_gravity("grid:0.2"), None, "must hold the centre");
        assert_eq!(parse_gravity("grid:0.05"), Some(GravityRule::Grid(50)));
        assert_eq!(parse_gravity("any"), Some(GravityRule::Any));
        assert_eq!(parse_list("any", |v| v.parse::<u32>().ok()), Ok(None));
        assert_eq!(
            parse_list("1, 2", |v| v.parse::<u32>().ok()),
            Ok(Some(vec![1, 2]))
        );
        assert!(parse_list("1,x", |v| v.parse::<u32>().ok()).is_err());
        assert!(parse_presets("Bad:w=1").is_err());
        assert!(parse_presets("a:w=1;a:w=2").is_err());
        assert!(parse_presets("a:w=1,sig=ab").is_err());
        assert!(parse_presets("a:blur=300").is_err());
        assert_eq!(parse_filters("listed"), Some(FilterRule::Listed));
        assert_eq!(parse_filters("off"), Some(FilterRule::Off));
        assert_eq!(parse_filters("all"), None);
    }

    #[test]
    fn unsigned_urls_filter_only_within_the_filter_rule() {
        let listed = DerivativePolicy::default();
        for ok in [
            "w=400,rotate=90,flip=h",
            "w=400,blur=20",
            "w=400,saturation=0,brightness=1.25,sharpen=1",
        ] {
            assert!(admit(&listed, ok, None).is_ok(), "{ok}");
        }
        for (bad, option) in [
            ("w=400,blur=21", "blur"),
            ("w=400,brightness=1.26", "brightness"),
            ("w=400,sharpen=0.7", "sharpen"),
        ] {
            match admit(&listed, bad, None) {
                Err(PolicyOrParse::Policy(e)) => {
                    assert_eq!(e.option(), option, "{bad}");
                    assert!(e.to_string().contains("IMAGE_FILTERS"), "{e}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let off = DerivativePolicy {
            filters: FilterRule::Off,
            ..DerivativePolicy::default()
        };
        assert!(admit(&off, "w=400,blur=20", None).is_err());
        assert!(admit(&off, "w=400,rotate=270", None).is_ok());
        let any = DerivativePolicy {
            filters: FilterRule::Any,
            ..DerivativePolicy::default()
        };
        assert!(admit(&any, "w=400,blur=21,gamma=3.3", None).is_ok());
        assert!(
            is_preset_name("thumb-2x") && !is_preset_name("original") && !is_preset_name("w=1")
        );
    }

    #[test]
    fn unsigned_urls_trim_and_frame_within_the_filter_rule() {
        let listed = DerivativePolicy::default();
        for ok in [
            "w=400,trim=10;0;10;0",
            "w=400,trim.left=20",
            "w=400,trim=border",
            "w=400,border=4",
            "w=400,border=2;0;2;0,border.color=white",
            "w=400,gravity=auto,fit=cover,h=400",
        ] {
            assert!(admit(&listed, ok, None).is_ok(), "{ok}");
        }
        for (bad, option) in [
            ("w=400,trim=11;0;0;0", "trim"),
            ("w=400,trim.width=300", "trim.width"),
            ("w=400,trim=border,trim.border.keep=3", "trim.border"),
            ("w=400,trim=border,trim.border.tolerance=200", "trim.border"),
            ("w=400,border=3", "border"),
            ("w=400,border=4,border.color=red", "border.color"),
        ] {
            match admit(&listed, bad, None) {
                Err(PolicyOrParse::Policy(e)) => {
                    assert_eq!(e.option(), option, "{bad}");
                    assert!(e.to_string().contains("IMAGE_FILTERS"), "{e}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let off = DerivativePolicy {
            filters: FilterRule::Off,
            ..DerivativePolicy::default()
        };
        assert!(admit(&off, "w=400,trim=10;0;10;0", None).is_err());
        assert!(admit(&off, "w=400,border=4", None).is_err());
        let any = DerivativePolicy {
            filters: FilterRule::Any,
            ..DerivativePolicy::default()
        };
        assert!(admit(&any, "w=400,trim.width=301,border=7,border.color=red", None).is_ok());
    }
}
