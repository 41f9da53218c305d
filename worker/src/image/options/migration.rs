//! Cloudflare's "Transform via URL" options beside ours, one row each: the README's
//! migration table is rendered from [`TABLE`] ([`markdown`]), and a test checks both the
//! README and every row against the parser (an example of each supported option parses;
//! each refused one is refused, naming itself). The table cannot drift from the code.

use super::ImageOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Same spelling, range and meaning.
    Same,
    /// Accepted, with a difference the note states.
    Different,
    /// A 400 naming the option and why.
    Refused,
}

impl Support {
    fn as_str(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Different => "different",
            Self::Refused => "refused (400)",
        }
    }
}

pub struct Row {
    /// The option as Cloudflare spells it (aliases after a `/`).
    pub option: &'static str,
    /// A URL options segment using it.
    pub example: &'static str,
    pub support: Support,
    pub note: &'static str,
}

const fn row(
    option: &'static str,
    example: &'static str,
    support: Support,
    note: &'static str,
) -> Row {
    Row {
        option,
        example,
        support,
        note,
    }
}

use Support::{Different, Refused, Same};

pub const TABLE: &[Row] = &[
    row(
        "anim",
        "anim=false",
        Different,
        "`anim=true` (default): an animated GIF or WebP stays animated, as animated WebP (or GIF where the browser takes no WebP), every frame resized, filtered and framed; at most 1000 frames, 100 MP decoded and 6 MP encoded over all of them (422 past that); `gravity=auto` and `trim=border` are not applied to animations; `anim=false`: the first frame",
    ),
    row(
        "background",
        "background=%23ff8800",
        Different,
        "any CSS colour: hex (`%23rrggbb` as Cloudflare documents, or without the `#`), `rgb()`, `rgba()`, `hsl()`, `hsla()`, `hwb()`, the 148 names; out-of-range `rgb()` channels are an error rather than clamped",
    ),
    row(
        "blur",
        "blur=20",
        Different,
        "1–250; a Gaussian of σ = radius/2 output pixels (Cloudflare does not document its kernel)",
    ),
    row(
        "border",
        "border=10",
        Different,
        "a URL option here (Cloudflare: Workers only): `border=<width>` or `border=top;right;bottom;left` (0–1500 px, scaled by `dpr` and capped at 1500), `border.color=` any CSS colour (default black); drawn around the output after resizing, adding to its size",
    ),
    row(
        "brightness",
        "brightness=1.5",
        Different,
        "a factor, 0–10 in steps of 0.01 (Cloudflare names no bound); 0 is ignored",
    ),
    row(
        "compression",
        "compression=fast",
        Same,
        "the source family by the key's type (JPEG for a JPEG, else PNG) instead of AVIF/WebP, whatever `Accept` says",
    ),
    row(
        "contrast",
        "contrast=0.5",
        Different,
        "a factor on the distance from mid-grey, 0–10 (Cloudflare names no bound); 0 is ignored",
    ),
    row("dpr", "dpr=2", Same, "1–3"),
    row(
        "fit",
        "fit=squeeze",
        Same,
        "`scale-down` (default), `contain`, `cover`, `crop`, `pad`, `squeeze`",
    ),
    row(
        "flip",
        "flip=hv",
        Same,
        "`h`, `v`, `hv`; before `rotate`, after the EXIF orientation",
    ),
    row(
        "format",
        "format=baseline-jpeg",
        Different,
        "`auto` (default: AVIF > WebP > the source family by `Accept`), `avif` (WebP while the queue encodes it), `webp`, `png`, `baseline-jpeg`; `jpeg` is baseline too (Cloudflare's is progressive); `json`: `{width, height, original: {width, height, file_size, format}}`, and with `placeholder=thumbhash` a `thumbhash` (base64) of the result",
    ),
    row(
        "gamma",
        "gamma=0.8",
        Different,
        "a factor, 0–10 (Cloudflare names no bound); above 1 lightens; 0 is ignored",
    ),
    row(
        "gravity",
        "gravity=0.25x0.75",
        Different,
        "`left`, `right`, `top`, `bottom`, `center`, `XxY`; `auto` crops where edge energy, saturation and skin tones are (with `fit=cover`/`crop`); `face` is refused (no face detector)",
    ),
    row(
        "height / h",
        "height=600",
        Different,
        "outputs are capped at 4096 px (Cloudflare: 12 000): above it, the source's size where the fit never enlarges, else clamped to the cap",
    ),
    row(
        "metadata",
        "metadata=copyright",
        Same,
        "`none` (default), `copyright`, `keep`",
    ),
    row(
        "onerror",
        "onerror=redirect",
        Same,
        "`redirect` to the original when the source cannot be transformed (415/422)",
    ),
    row(
        "quality / q",
        "quality=high",
        Different,
        "1–100 (default 85); the named levels are fixed numbers: high 90, medium-high 80, medium-low 65, low 50",
    ),
    row(
        "rotate",
        "rotate=90",
        Same,
        "90, 180, 270 degrees clockwise (Cloudflare does not name a direction); width and height are the rotated image's",
    ),
    row(
        "saturation",
        "saturation=0",
        Different,
        "a factor, 0–10 (Cloudflare names no bound); 0 is greyscale",
    ),
    row(
        "segment",
        "segment=foreground",
        Refused,
        "needs a segmentation model, which course-edge does not ship",
    ),
    row(
        "sharpen",
        "sharpen=1",
        Different,
        "0–10 in steps of 0.1; an unsharp mask (3×3 binomial) of that strength (Cloudflare does not document its filter)",
    ),
    row(
        "slow-connection-quality / scq",
        "slow-connection-quality=50",
        Same,
        "the quality (1–100 or a named level) when the request says the connection is slow: `Save-Data: on`, `ECT` of 3g or slower, `RTT` over 150 ms or `Downlink` under 5 Mbit/s; the answer names those hints in `Vary`, and pages get `Accept-CH` for them",
    ),
    row(
        "trim",
        "trim=20;30;20;0",
        Same,
        "`top;right;bottom;left`, or `trim.left`, `trim.top`, `trim.width`, `trim.height`; `trim=border` with `trim.border.color`, `.tolerance` (0–255, 255 exact; default 245) and `.keep`; before resizing and `flip`/`rotate`, scaled by `dpr`; at least one pixel is kept",
    ),
    row(
        "width / w",
        "width=800",
        Different,
        "as `height`; `width=auto` takes `Sec-CH-Width` (or `Width`), else `Sec-CH-Viewport-Width` (or `Viewport-Width`) × `Sec-CH-DPR` (or `DPR`), rounded up to 320, 480, 640, 768, 960, 1200, 1600, 1920, 2400, 3200 or 3840 px (1200 without hints; Cloudflare documents 320/768/960/1200 and reads the user agent); the answer names the hints in `Vary`, pages get `Accept-CH`",
    ),
    row(
        "zoom / face-zoom",
        "zoom=0.5",
        Refused,
        "only meaningful with `gravity=face` (no face detector)",
    ),
];

/// The README's table, rendered from [`TABLE`].
pub fn markdown() -> String {
    let mut out =
        String::from("| Cloudflare option | course-edge | What it does here |\n|---|---|---|\n");
    for r in TABLE {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.option,
            r.support.as_str(),
            r.note
        ));
    }
    out
}

/// Whether `example` parses as the row says: `Ok(())`, or what went wrong.
pub fn check(row: &Row) -> Result<(), String> {
    let parsed = ImageOptions::parse(row.example);
    let first_name = row.example.split('=').next().unwrap_or_default();
    match (row.support, parsed) {
        (Same | Different, Ok(_)) => Ok(()),
        (Same | Different, Err(e)) => Err(format!("{}: {} ({})", row.example, e.message, e.option)),
        (Refused, Err(e)) if e.option == first_name => Ok(()),
        (Refused, Err(e)) => Err(format!("{}: refused naming {:?}", row.example, e.option)),
        (Refused, Ok(_)) => Err(format!(
            "{} parses, but the table says refused",
            row.example
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_behaves_as_the_table_says() {
        let wrong: Vec<String> = TABLE.iter().filter_map(|r| check(r).err()).collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn the_readme_holds_the_table_rendered_from_the_code() {
        let readme = include_str!("../../../../README.md");
        let table = markdown();
        assert!(
            readme.contains(&table),
            "README.md's migration table differs from image::options::migration::TABLE; paste this:\n{table}"
        );
    }

    #[test]
    fn rows_are_in_cloudflares_alphabetical_order_and_unique() {
        let names: Vec<&str> = TABLE.iter().map(|r| r.option).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
