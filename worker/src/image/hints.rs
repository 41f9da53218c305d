//! Client hints: what `width=auto` and `slow-connection-quality` read from the browser.
//!
//! [`Hints::read`] parses the request's hint headers once (bounded, malformed values
//! ignored); [`resolve`] turns the options' `auto` width and slow-connection quality into
//! plain numbers before the derivative key is made, so a hinted request shares its
//! derivative with the explicit URL of the same pixels (`w=auto` answered at 960 px is
//! `w=960`), and names the hints the answer depends on for `Vary`. The widths come from
//! a fixed ladder: hints can choose among a few derivatives, never mint new ones.

use super::options::ImageOptions;

/// The widths `width=auto` answers with (output pixels). Cloudflare documents four
/// (320, 768, 960, 1200, by viewport); the ladder adds the steps a 2× or 3× screen needs.
pub const AUTO_WIDTHS: [u32; 11] = [320, 480, 640, 768, 960, 1200, 1600, 1920, 2400, 3200, 3840];
/// `width=auto` without a hint: Cloudflare's "large desktop" size.
pub const AUTO_WIDTH_WITHOUT_HINTS: u32 = 1200;

/// What a page should send in `Accept-CH` for browsers to send the hints back with its
/// images (Chromium honours it on the page's response, not on the image's).
pub const ACCEPT_CH: &str =
    "Sec-CH-Width, Sec-CH-Viewport-Width, Sec-CH-DPR, ECT, RTT, Downlink, Save-Data";

/// The request headers `width=auto` depends on (the legacy names too).
pub const WIDTH_HINTS: [&str; 6] = [
    "Sec-CH-Width",
    "Width",
    "Sec-CH-Viewport-Width",
    "Viewport-Width",
    "Sec-CH-DPR",
    "DPR",
];
/// The request headers `slow-connection-quality` depends on.
pub const NETWORK_HINTS: [&str; 4] = ["Save-Data", "ECT", "RTT", "Downlink"];

/// Longest hint value read; longer ones are ignored.
const MAX_HINT_BYTES: usize = 32;

/// The hints of one request, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hints {
    /// `Sec-CH-Width` / `Width`: the image's layout width in physical pixels.
    pub element_width: Option<u32>,
    /// `Sec-CH-Viewport-Width` / `Viewport-Width`: in CSS pixels.
    pub viewport_width: Option<u32>,
    /// `Sec-CH-DPR` / `DPR`, in hundredths (100–1000).
    pub dpr: Option<u16>,
    /// `Save-Data: on`.
    pub save_data: bool,
    /// `ECT`: `slow-2g`, `2g` or `3g` (`4g` is not slow).
    pub slow_ect: bool,
    /// `RTT`, milliseconds.
    pub rtt: Option<u32>,
    /// `Downlink`, kbit/s.
    pub downlink_kbps: Option<u32>,
}

impl Hints {
    /// From a header lookup (`get("sec-ch-width")`, lowercase names).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        let value = |names: &[&str]| {
            names.iter().find_map(|n| {
                get(n)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty() && v.len() <= MAX_HINT_BYTES)
            })
        };
        let number = |names: &[&str]| {
            value(names)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let pixels = |names: &[&str]| {
            number(names)
                .filter(|v| (1.0..=100_000.0).contains(v))
                .map(|v| v.ceil() as u32)
        };
        Self {
            element_width: pixels(&["sec-ch-width", "width"]),
            viewport_width: pixels(&["sec-ch-viewport-width", "viewport-width"]),
            dpr: number(&["sec-ch-dpr", "dpr"])
                .filter(|v| (0.1..=10.0).contains(v))
                .map(|v| ((v * 100.0).round() as u16).max(100)),
            save_data: value(&["save-data"]).is_some_and(|v| v.eq_ignore_ascii_case("on")),
            slow_ect: value(&["ect"]).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "slow-2g" | "2g" | "3g")
            }),
            rtt: number(&["rtt"]).map(|v| v.min(f64::from(u32::MAX)) as u32),
            downlink_kbps: number(&["downlink"])
                .map(|v| (v * 1000.0).min(f64::from(u32::MAX)) as u32),
        }
    }

    /// Cloudflare's rule: `Save-Data: on`, an ECT of 3G or slower, an RTT over 150 ms or
    /// a downlink under 5 Mbit/s.
    pub fn slow(&self) -> bool {
        self.save_data
            || self.slow_ect
            || self.rtt.is_some_and(|r| r > 150)
            || self.downlink_kbps.is_some_and(|d| d < 5000)
    }

    /// The width `width=auto` answers with: the element's width, else the viewport's in
    /// device pixels, rounded up to a step of `ladder` (ascending; its largest above it).
    pub fn auto_width(&self, ladder: &[u32]) -> u32 {
        let wanted = self.element_width.or_else(|| {
            self.viewport_width.map(|v| {
                u32::try_from((u64::from(v) * u64::from(self.dpr.unwrap_or(100))).div_ceil(100))
                    .unwrap_or(u32::MAX)
            })
        });
        let wanted = wanted.unwrap_or(AUTO_WIDTH_WITHOUT_HINTS);
        ladder
            .iter()
            .copied()
            .find(|step| *step >= wanted)
            .or_else(|| ladder.last().copied())
            .unwrap_or(AUTO_WIDTH_WITHOUT_HINTS)
    }
}

/// The steps `width=auto` rounds to under a deployment's width allow-list
/// (`IMAGE_WIDTHS`; `None`: any width): [`AUTO_WIDTHS`] it allows, else the list itself,
/// so a hinted width is always one an explicit URL could ask for.
pub fn ladder(allowed: Option<&[u32]>) -> Vec<u32> {
    let Some(allowed) = allowed else {
        return AUTO_WIDTHS.to_vec();
    };
    let steps: Vec<u32> = AUTO_WIDTHS
        .iter()
        .copied()
        .filter(|w| allowed.contains(w))
        .collect();
    if steps.is_empty() {
        let mut all = allowed.to_vec();
        all.sort_unstable();
        all
    } else {
        steps
    }
}

/// `options` with the hinted values made plain (`width=auto` → a step of `ladder`,
/// `slow-connection-quality` → the quality when the connection is slow, dropped
/// otherwise), and the request headers the answer depends on.
pub fn resolve(
    options: &ImageOptions,
    hints: &Hints,
    ladder: &[u32],
) -> (ImageOptions, Vec<&'static str>) {
    let mut out = options.clone();
    let mut vary = Vec::new();
    if out.auto_width {
        out.auto_width = false;
        out.width = Some(hints.auto_width(ladder));
        vary.extend(WIDTH_HINTS);
    }
    if let Some(slow) = out.slow_quality.take() {
        if hints.slow() {
            out.quality = Some(slow);
        }
        vary.extend(NETWORK_HINTS);
    }
    (out.canonical(), vary)
}

/// The `Vary` of an answer that read `hints` (besides `Accept`, which every derivative
/// varies on); `None` when it read none.
pub fn vary(hints: &[&str]) -> Option<String> {
    (!hints.is_empty()).then(|| {
        std::iter::once("Accept")
            .chain(hints.iter().copied())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

#[cfg(test)]
mod tests;
