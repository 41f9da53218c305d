//! Intrinsic image sizes for the site's `<img width height>`: the `media` table, filled by
//! the seed for demo content and, for originals a content team uploaded through the
//! edge, learned when an admin edit names one (`HEAD /media/<key>` at the edge answers
//! the size the upload recorded). Off the read path: a page render only reads the table.

use std::time::Duration;

use protocol::headers::{MEDIA_HEIGHT, MEDIA_WIDTH};

use crate::AppState;
use crate::domain::Size;
use crate::storage::Store;

/// How long an admin edit waits for the edge's answer about a size.
const HEAD_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to ask: the public base URL, else the origin of the edge's purge URL.
pub fn base_of(public_base: Option<&str>, edge_purge_url: Option<&str>) -> Option<String> {
    if let Some(base) = public_base.filter(|b| !b.is_empty()) {
        return Some(base.trim_end_matches('/').to_owned());
    }
    let url = edge_purge_url.filter(|u| !u.is_empty())?;
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// `<base>/media/<key>`, each byte outside the unreserved set and `/` percent-encoded.
pub fn media_url(base: &str, key: &str) -> String {
    let mut url = format!("{base}/media/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The size from the edge's headers: both present, whole numbers 1–65535.
pub fn size_from(width: Option<&str>, height: Option<&str>) -> Option<Size> {
    let parse = |v: Option<&str>| {
        v?.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=65_535).contains(n))
    };
    Some(Size {
        width: parse(width)?,
        height: parse(height)?,
    })
}

/// Makes sure the `media` table knows `key`'s size, asking the edge when it does not.
/// Never fails the caller: a size that cannot be learned is logged, and the page renders
/// the image without `width`/`height` until it is.
pub async fn learn_size(state: &AppState, key: &str) {
    match state.store.media_size(key).await {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(%key, error = %e, "reading an image size");
            return;
        }
    }
    let Some(base) = state.settings.media_base.as_deref() else {
        tracing::warn!(%key, "no PUBLIC_BASE_URL or EDGE_PURGE_URL to ask for an image size");
        return;
    };
    let asked = crate::invalidation::targets::Targets::client()
        .head(media_url(base, key))
        .timeout(HEAD_TIMEOUT)
        .send()
        .await;
    let size = match asked {
        Ok(response) if response.status().is_success() => {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            size_from(
                header(MEDIA_WIDTH).as_deref(),
                header(MEDIA_HEIGHT).as_deref(),
            )
        }
        Ok(response) => {
            tracing::warn!(%key, status = response.status().as_u16(), "the edge has no such image");
            None
        }
        Err(e) => {
            tracing::warn!(%key, error = %e, "asking the edge for an image size");
            None
        }
    };
    if let Some(size) = size {
        match state.store.put_media_size(key, size).await {
            Ok(()) => {
                tracing::info!(%key, width = size.width, height = size.height, "image size learned")
            }
            Err(e) => tracing::warn!(%key, error = %e, "recording an image size"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_is_asked_at_the_public_base_or_where_purges_go() {
        assert_eq!(
            base_of(
                Some("https://courses.example/"),
                Some("http://e:1/__edge/purge")
            )
            .as_deref(),
            Some("https://courses.example")
        );
        assert_eq!(
            base_of(None, Some("http://127.0.0.1:8787/__edge/purge")).as_deref(),
            Some("http://127.0.0.1:8787")
        );
        assert_eq!(base_of(Some(""), None), None);
        assert_eq!(base_of(None, Some("not a url")), None);
    }

    #[test]
    fn keys_are_escaped_into_the_url_and_sizes_are_bounded() {
        assert_eq!(
            media_url("http://e", "covers/a b/ü.jpg"),
            "http://e/media/covers/a%20b/%C3%BC.jpg"
        );
        assert_eq!(
            size_from(Some("3840"), Some(" 2400")),
            Some(Size {
                width: 3840,
                height: 2400
            })
        );
        for (w, h) in [
            (None, Some("1")),
            (Some("0"), Some("1")),
            (Some("70000"), Some("1")),
            (Some("x"), Some("1")),
        ] {
            assert_eq!(size_from(w, h), None, "{w:?} {h:?}");
        }
    }
}
