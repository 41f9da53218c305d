//! The page rewriter: fills the per-user slots of a cached page and makes its images
//! responsive, chunk by chunk while the page streams (lol_html; nothing is buffered
//! beyond the tag being parsed). Pure: everything it needs comes in as a [`Viewer`]
//! (from the verified session claims) and [`Responsive`] (from the config), so a
//! handler never looks anything up per element. The marks are `protocol::page`'s.
//!
//! The cached entry is always the origin's page; this runs on the way out, so a
//! per-user value never reaches a shared or per-segment entry.

use std::cell::RefCell;
use std::rc::Rc;

use lol_html::html_content::ContentType;
use lol_html::{HtmlRewriter, MemorySettings, OutputSink, Settings, element};
use protocol::Audience;
use protocol::page::{ACCOUNT, MEDIA_PREFIX, PLAN_ATTR, SIGN_OUT_PATH, SLOT_ATTR, USER_NAME};

use crate::assets::ObjectKey;
use crate::image::options::ImageOptions;
use crate::policy::ContentClass;
use crate::policy::flow::Ask;

/// Who the page is for, as far as the verified claims tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub audience: Audience,
    /// The display name (members only).
    pub name: Option<String>,
}

impl Viewer {
    pub fn anonymous() -> Self {
        Self {
            audience: Audience::Anon,
            name: None,
        }
    }
}

/// The default widths offered in `srcset` (device pixels): small thumbnails up to a 2×
/// wide layout. Intersected with `IMAGE_WIDTHS` when the deployment restricts widths.
pub const DEFAULT_LADDER: [u32; 9] = [96, 160, 320, 480, 640, 960, 1280, 1920, 2560];

/// The `src` fallback aims at this width (a 1× desktop card or a 2× phone).
const FALLBACK_WIDTH: u32 = 640;

/// How `<img>`s pointing at originals become responsive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responsive {
    ladder: Vec<u32>,
    signing_key: Option<Vec<u8>>,
}

impl Responsive {
    /// The default ladder within `allowed` (the derivative policy's widths, if any), and
    /// the signing key when URLs must be signed.
    pub fn new(allowed: Option<&[u32]>, signing_key: Option<Vec<u8>>) -> Self {
        let ladder = DEFAULT_LADDER
            .iter()
            .copied()
            .filter(|w| allowed.is_none_or(|a| a.contains(w)))
            .collect();
        Self {
            ladder,
            signing_key,
        }
    }

    pub fn ladder(&self) -> &[u32] {
        &self.ladder
    }

    /// The image-route URL of `key` (the `/media/` path rest, as written) at `width`.
    fn url(&self, rest: &str, key: &ObjectKey, width: u32) -> Option<String> {
        let mut options = format!("w={width}");
        if let Some(secret) = &self.signing_key {
            let parsed = ImageOptions::parse(&options).ok()?;
            let sig = crate::image::sign::sign(secret, key.as_str(), &parsed.options.canonical());
            options.push_str(",sig=");
            options.push_str(&sig);
        }
        Some(format!("/img/{options}/{rest}"))
    }

    /// `(src, srcset)` for an original at `/media/<rest>` whose intrinsic width is
    /// `intrinsic` (candidates never exceed it: the route does not enlarge). `None`
    /// leaves the tag as it is (no candidate, or a key the route would refuse).
    pub fn rewrite(&self, rest: &str, intrinsic: Option<u32>) -> Option<(String, String)> {
        let key = ObjectKey::parse("", rest).ok()?;
        if key.as_str().starts_with("derived/") {
            return None;
        }
        let widths: Vec<u32> = self
            .ladder
            .iter()
            .copied()
            .filter(|w| intrinsic.is_none_or(|i| *w <= i))
            .collect();
        let fallback = widths
            .iter()
            .copied()
            .filter(|w| *w <= FALLBACK_WIDTH)
            .max()
            .or_else(|| widths.first().copied())?;
        let srcset = widths
            .iter()
            .map(|w| Some(format!("{} {w}w", self.url(rest, &key, *w)?)))
            .collect::<Option<Vec<_>>>()?
            .join(", ");
        Some((self.url(rest, &key, fallback)?, srcset))
    }
}

/// Largest memory the parser may hold for one page (a pathological tag fails the rewrite,
/// not the isolate).
const MAX_PARSER_BYTES: usize = 1 << 20;

struct Sink(Rc<RefCell<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0.borrow_mut().extend_from_slice(chunk);
    }
}

/// Why a page went out unrewritten from some point on (logged; the rest of the page is
/// passed through as the origin wrote it, which is never personal). Only a page whose
/// single tag outgrows [`MAX_PARSER_BYTES`] gets here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteFailed(pub String);

/// One page's rewriter: feed chunks in order, then [`PageRewriter::finish`].
pub struct PageRewriter {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    out: Rc<RefCell<Vec<u8>>>,
    failed: Option<RewriteFailed>,
}

impl PageRewriter {
    pub fn new(viewer: &Viewer, images: &Responsive) -> Self {
        let out = Rc::new(RefCell::new(Vec::new()));
        let audience = viewer.audience.as_str();
        let name = viewer.name.clone();
        let signed_in = viewer.name.is_some();
        let images = images.clone();
        let plan_selector = format!("[{PLAN_ATTR}]");
        let name_selector = format!("[{SLOT_ATTR}=\"{USER_NAME}\"]");
        let account_selector = format!("[{SLOT_ATTR}=\"{ACCOUNT}\"]");
        let img_selector = format!("img[src^=\"{MEDIA_PREFIX}\"]");
        let sign_out = format!(
            "<form method=\"post\" action=\"{SIGN_OUT_PATH}\"><button type=\"submit\">Sign out</button></form>"
        );
        let settings = Settings {
            element_content_handlers: vec![
                element!(plan_selector, move |el| {
                    let keep = el
                        .get_attribute(PLAN_ATTR)
                        .is_some_and(|list| list.split_ascii_whitespace().any(|a| a == audience));
                    if keep {
                        el.remove_attribute(PLAN_ATTR);
                    } else {
                        el.remove();
                    }
                    Ok(())
                }),
                element!(name_selector, move |el| {
                    if let Some(name) = &name {
                        el.set_inner_content(name, ContentType::Text);
                    }
                    el.remove_attribute(SLOT_ATTR);
                    Ok(())
                }),
                element!(account_selector, move |el| {
                    if signed_in {
                        el.replace(&sign_out, ContentType::Html);
                    } else {
                        el.remove_attribute(SLOT_ATTR);
                    }
                    Ok(())
                }),
                element!(img_selector, move |el| {
                    let Some(src) = el.get_attribute("src") else {
                        return Ok(());
                    };
                    let rest = src.strip_prefix(MEDIA_PREFIX).unwrap_or_default();
                    let intrinsic = el.get_attribute("width").and_then(|w| w.parse().ok());
                    if let Some((fallback, srcset)) = images.rewrite(rest, intrinsic) {
                        el.set_attribute("src", &fallback)?;
                        el.set_attribute("srcset", &srcset)?;
                        if !el.has_attribute("sizes") {
                            el.set_attribute("sizes", "100vw")?;
                        }
                    }
                    Ok(())
                }),
            ],
            memory_settings: MemorySettings {
                max_allowed_memory_usage: MAX_PARSER_BYTES,
                ..MemorySettings::new()
            },
            ..Settings::new()
        };
        Self {
            rewriter: Some(HtmlRewriter::new(settings, Sink(out.clone()))),
            out,
            failed: None,
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.borrow_mut())
    }

    /// The rewritten bytes available after `chunk` (possibly none: a tag may span
    /// chunks). After a failure, chunks pass through unchanged.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(rewriter) = self.rewriter.as_mut() else {
            return chunk.to_vec();
        };
        if let Err(e) = rewriter.write(chunk) {
            // What the parser held of this chunk is lost with it (re-sending the chunk
            // could repeat bytes it already emitted); later chunks pass through.
            self.rewriter = None;
            self.failed = Some(RewriteFailed(e.to_string()));
        }
        self.take()
    }

    /// The last bytes, and whether the rewrite failed somewhere.
    pub fn finish(mut self) -> (Vec<u8>, Option<RewriteFailed>) {
        if let Some(rewriter) = self.rewriter.take()
            && let Err(e) = rewriter.end()
        {
            self.failed = Some(RewriteFailed(e.to_string()));
        }
        (self.take(), self.failed)
    }
}

/// The classes whose answers may carry a visitor's name: `html` (pages, cached per
/// segment and filled on the way out) and `session` (the sign-in form, never cached).
/// Every answer of theirs goes out with [`page_headers`]' treatment, body or not.
pub fn page_class(class: ContentClass) -> bool {
    matches!(class, ContentClass::Html | ContentClass::Session)
}

/// What the cache core is asked for a page: without the client's conditionals and range.
/// A filled page has no stable bytes to range over and no validator was ever given out
/// for it, so a client's `Range` or `If-None-Match` would only cut or confirm the shared
/// entry's bytes, not what this visitor gets.
pub fn ask_for(class: ContentClass, mut ask: Ask) -> Ask {
    if page_class(class) {
        ask.range = None;
        ask.if_range = None;
        ask.if_none_match = None;
        ask.if_modified_since = None;
    }
    ask
}

/// Whether an answer's body goes through the rewriter: an HTML body of a page class,
/// whatever its status (a 404 page has the same chrome). A 304, a 204 or a HEAD has no
/// body; a 206 or 416 is not a whole page; anything not HTML goes out as it is.
pub fn rewrites(class: ContentClass, status: u16, content_type: Option<&str>, head: bool) -> bool {
    page_class(class)
        && !matches!(status, 204 | 206 | 304 | 416)
        && !head
        && content_type.is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        })
}

/// Headers a page class's answer drops: the validators and length describe the shared
/// entry, not the bytes this visitor gets (a browser revalidating with the entry's ETag
/// would get a 304 and keep a page that shows someone's name after they signed out), and
/// `CDN-Cache-Control` would let a CDN in front of this worker store a filled page
/// (RFC 9213: a CDN that reads it ignores `Cache-Control`).
pub const DROPPED_HEADERS: [&str; 5] = [
    "etag",
    "last-modified",
    "content-length",
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
];

/// A page class's `Cache-Control`: never stored downstream or shared; always asked for
/// again by the browser (it has no validator to ask with); `no-store` stays `no-store`.
pub fn page_cache_control(existing: Option<&str>) -> &'static str {
    let no_store = existing.is_some_and(|v| {
        v.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
    });
    if no_store {
        "private, no-store"
    } else {
        "private, no-cache"
    }
}

/// A whole page at once (tests, tools).
pub fn rewrite_all(page: &[u8], viewer: &Viewer, images: &Responsive) -> Vec<u8> {
    let mut rewriter = PageRewriter::new(viewer, images);
    let mut out = rewriter.push(page);
    out.extend(rewriter.finish().0);
    out
}

#[cfg(test)]
mod tests;
