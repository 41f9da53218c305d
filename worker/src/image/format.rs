//! Output format negotiation: `format=auto` picks AVIF > WebP > the source family
//! (JPEG when opaque, PNG when it has alpha) from the `Accept` header. Responses then
//! carry `Vary: Accept`.

use super::options::{FormatRequest, ImageOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Avif,
    Webp,
    Jpeg,
    Png,
    /// Animated sources for browsers without WebP (`animation`), and GIF sources there.
    Gif,
}

impl OutputFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Avif => "avif",
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
        }
    }

    /// Whether an animation can be encoded in it (the others take the first frame).
    pub const fn animates(self) -> bool {
        matches!(self, Self::Webp | Self::Gif)
    }

    /// Encoded by the queue consumer, never on a request path: an AVIF encode costs
    /// hundreds of milliseconds of CPU and would stall every other request in the
    /// isolate. A property of the format, so a future slow codec says so here.
    pub const fn encoded_off_request_path(self) -> bool {
        matches!(self, Self::Avif)
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Avif => "image/avif",
            Self::Webp => "image/webp",
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
        }
    }
}

/// Whether `Accept` lists `media` with a non-zero q-value (exact type only: `image/*`
/// and `*/*` do not promise AVIF or WebP support).
pub fn accepts(accept: &str, media: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let matches = parts.next().is_some_and(|t| t.eq_ignore_ascii_case(media));
        let q_zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        matches && !q_zero
    })
}

pub fn negotiate(request: FormatRequest, accept: &str, source_has_alpha: bool) -> OutputFormat {
    match request {
        FormatRequest::Avif => OutputFormat::Avif,
        FormatRequest::Webp => OutputFormat::Webp,
        FormatRequest::Jpeg => OutputFormat::Jpeg,
        FormatRequest::Png => OutputFormat::Png,
        FormatRequest::Fastest if source_has_alpha => OutputFormat::Png,
        FormatRequest::Fastest => OutputFormat::Jpeg,
        FormatRequest::Auto if accepts(accept, "image/avif") => OutputFormat::Avif,
        FormatRequest::Auto if accepts(accept, "image/webp") => OutputFormat::Webp,
        FormatRequest::Auto if source_has_alpha => OutputFormat::Png,
        FormatRequest::Auto => OutputFormat::Jpeg,
    }
}

/// How long browsers and the edge keep a stand-in answered while the wanted format is
/// being encoded off the request path.
pub const STAND_IN_SECS: u32 = 60;

/// The headers a stand-in carries instead of its class's: kept only briefly by
/// browsers and the edge, and marked.
pub fn stand_in_headers() -> [(&'static str, String); 3] {
    [
        ("cache-control", format!("public, max-age={STAND_IN_SECS}")),
        ("cdn-cache-control", format!("max-age={STAND_IN_SECS}")),
        ("x-edge-avif", String::from("queued")),
    ]
}

/// What a request for a derivative is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The negotiated format.
    pub wanted: OutputFormat,
    /// What is served (briefly) while `wanted` is encoded off the request path; `None`:
    /// `wanted` is made on the request path.
    pub stand_in: Option<OutputFormat>,
}

/// The format decision for one request: negotiation, then deferral. Alpha is only known
/// after decoding, so the source's family (`source_is_jpeg`) decides the fallback.
///
/// AVIF, negotiated or asked for by name (`format=avif`), is answered at once with WebP
/// while the queue encodes it, as Cloudflare documents ("AVIF if possible, with WebP as a
/// fallback"): never a 503 and a retry.
pub fn choose(
    request: FormatRequest,
    accept: &str,
    source_is_jpeg: bool,
    animatable: bool,
) -> Choice {
    // A source that may be an animation (a GIF or WebP key, `anim` not false): a format
    // that holds one, unless a still format is asked for by name.
    if animatable {
        let wanted = match request {
            FormatRequest::Jpeg => OutputFormat::Jpeg,
            FormatRequest::Png => OutputFormat::Png,
            FormatRequest::Webp => OutputFormat::Webp,
            FormatRequest::Auto | FormatRequest::Avif if accepts(accept, "image/webp") => {
                OutputFormat::Webp
            }
            FormatRequest::Auto | FormatRequest::Avif | FormatRequest::Fastest => OutputFormat::Gif,
        };
        return Choice {
            wanted,
            stand_in: None,
        };
    }
    let wanted = negotiate(request, accept, !source_is_jpeg);
    let stand_in = wanted
        .encoded_off_request_path()
        .then_some(OutputFormat::Webp);
    Choice { wanted, stand_in }
}

/// [`choose`] for a source of `source_type` (an R2 key's content type, or the type a
/// remote URL's extension names; any spelling: parameters, case, `image/jpg` and
/// `image/pjpeg`): JPEGs fall back to JPEG, and GIF and WebP sources may be animations,
/// kept so unless `anim=false`.
pub fn choose_for(options: &ImageOptions, accept: &str, source_type: &str) -> Choice {
    let essence = super::limits::essence(source_type);
    let jpeg = matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/pjpeg");
    let animatable = !options.still && matches!(essence.as_str(), "image/gif" | "image/webp");
    choose(options.format, accept, jpeg, animatable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    const SAFARI_16: &str = "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    const SAFARI_OLD: &str = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
    const LEGACY: &str = "*/*";

    #[test]
    fn auto_prefers_avif_then_webp_then_the_source_family() {
        let table = [
            (CHROME, false, OutputFormat::Avif),
            (SAFARI_16, false, OutputFormat::Avif),
            ("image/webp,*/*", false, OutputFormat::Webp),
            (SAFARI_OLD, false, OutputFormat::Jpeg),
            (SAFARI_OLD, true, OutputFormat::Png),
            (LEGACY, false, OutputFormat::Jpeg),
            ("", true, OutputFormat::Png),
            ("image/avif;q=0,image/webp", false, OutputFormat::Webp),
        ];
        for (accept, alpha, want) in table {
            assert_eq!(
                negotiate(FormatRequest::Auto, accept, alpha),
                want,
                "{accept}"
            );
        }
    }

    #[test]
    fn an_explicit_format_wins_over_accept() {
        assert_eq!(
            negotiate(FormatRequest::Jpeg, CHROME, true),
            OutputFormat::Jpeg
        );
        assert_eq!(
            negotiate(FormatRequest::Avif, LEGACY, false),
            OutputFormat::Avif
        );
    }

    #[test]
    fn a_format_made_off_the_request_path_gets_a_stand_in_even_when_named() {
        assert_eq!(
            choose(FormatRequest::Auto, CHROME, true, false),
            Choice {
                wanted: OutputFormat::Avif,
                stand_in: Some(OutputFormat::Webp)
            }
        );
        assert_eq!(
            choose(FormatRequest::Avif, LEGACY, true, false),
            Choice {
                wanted: OutputFormat::Avif,
                stand_in: Some(OutputFormat::Webp)
            },
            "asked for by name: WebP meanwhile, as Cloudflare falls back"
        );
        assert_eq!(
            choose(FormatRequest::Auto, LEGACY, false, false),
            Choice {
                wanted: OutputFormat::Png,
                stand_in: None
            }
        );
        for f in [OutputFormat::Webp, OutputFormat::Jpeg, OutputFormat::Png] {
            assert!(!f.encoded_off_request_path(), "{f:?}");
        }
    }

    #[test]
    fn a_stand_in_is_kept_briefly_and_marked() {
        let headers = stand_in_headers();
        assert!(headers.contains(&("cache-control", String::from("public, max-age=60"))));
        assert!(headers.contains(&("x-edge-avif", String::from("queued"))));
    }

    #[test]
    fn a_possible_animation_gets_a_format_that_holds_one() {
        let table = [
            (FormatRequest::Auto, CHROME, OutputFormat::Webp),
            (FormatRequest::Avif, CHROME, OutputFormat::Webp),
            (FormatRequest::Auto, SAFARI_OLD, OutputFormat::Gif),
            (FormatRequest::Fastest, CHROME, OutputFormat::Gif),
            (FormatRequest::Png, CHROME, OutputFormat::Png),
            (FormatRequest::Jpeg, LEGACY, OutputFormat::Jpeg),
        ];
        for (request, accept, want) in table {
            let choice = choose(request, accept, false, true);
            assert_eq!(
                (choice.wanted, choice.stand_in),
                (want, None),
                "{request:?} {accept}"
            );
        }
        assert!(OutputFormat::Webp.animates() && OutputFormat::Gif.animates());
        assert!(!OutputFormat::Avif.animates() && !OutputFormat::Png.animates());
    }

    #[test]
    fn the_source_type_decides_the_fallback_and_whether_animation_is_kept() {
        let opts = |s: &str| ImageOptions::parse(s).unwrap().options;
        let wanted =
            |spec: &str, accept: &str, source: &str| choose_for(&opts(spec), accept, source).wanted;
        // JPEG sources fall back to JPEG, the rest to PNG (they may have alpha).
        assert_eq!(wanted("", "image/*", "image/jpeg"), OutputFormat::Jpeg);
        assert_eq!(wanted("", "image/*", "image/png"), OutputFormat::Png);
        assert_eq!(wanted("", "image/*", ""), OutputFormat::Png);
        // GIF and WebP sources stay animated: GIF for browsers without WebP...
        assert_eq!(wanted("", "image/*", "image/gif"), OutputFormat::Gif);
        assert_eq!(
            wanted("", "image/avif,image/webp", "image/webp"),
            OutputFormat::Webp
        );
        // ...unless `anim=false`, which makes them stills like any other.
        assert_eq!(
            wanted("anim=false", "image/*", "image/gif"),
            OutputFormat::Png
        );
        assert_eq!(
            wanted("anim=false", "image/avif,image/webp", "image/gif"),
            OutputFormat::Avif
        );
        // Any spelling of a type.
        assert_eq!(wanted("", "image/*", "Image/JPG"), OutputFormat::Jpeg);
        assert_eq!(wanted("", "image/*", "image/pjpeg"), OutputFormat::Jpeg);
        assert_eq!(wanted("", "image/*", "image/gif; x=1"), OutputFormat::Gif);
        // A PNG is never animatable, whatever `anim` says.
        assert_eq!(
            wanted("", "image/avif,image/webp", "image/png"),
            OutputFormat::Avif
        );
    }
}
