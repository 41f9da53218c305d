//! `PUT /admin/media/<key>`: a content team's upload, streamed into R2 (wasm32 glue; the
//! rules are in `crate::upload`).
//!
//! Token → `upload::admit` (key, length, checksum) → the first `SNIFF_BYTES` read →
//! `upload::inspect` → R2 `put` of those bytes followed by the rest of the body as one
//! fixed-length stream (the file is never held whole; R2 checks `Content-MD5` when sent,
//! and a put that fails leaves the previous object untouched) → one hard purge of every
//! URL the object is served under (it reaches every cached derivative) → the old
//! derivatives deleted from `derived/`. One audit line per attempt.

use futures_util::StreamExt;
use protocol::purge::{Change, Mode, Purge};
use worker::{Env, FixedLengthStream, HttpMetadata, Include, Request, Response};

use super::assets::BUCKET;
use super::origin::runtime;
use super::{now_ms, purge};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::error::EdgeError;
use crate::image::key::DerivativeKey;
use crate::image::sweep::{DerivedFrom, Verdict, verdict};
use crate::timing::ServerTiming;
use crate::upload::{self, SNIFF_BYTES};

/// Old derivatives deleted per upload at most (two listing pages); the sweeper takes
/// whatever is left.
const MAX_DERIVATIVE_PAGES: usize = 2;

fn audit(who: &str, key: &ObjectKey, outcome: &str) {
    let key: String = key.as_str().chars().take(200).collect();
    worker::console_log!("audit who={who} action=upload key={key:?} outcome={outcome}");
}

pub(super) async fn route(
    req: &mut Request,
    env: &Env,
    config: &Config,
    key: &ObjectKey,
    timing: &mut ServerTiming,
) -> Result<Response, EdgeError> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let authorization = header("authorization");
    let Some(who) = config
        .upload_tokens
        .holder(authorization.as_deref())
        .map(str::to_owned)
    else {
        audit("anonymous", key, "refused: bad or missing token");
        return Err(EdgeError::Unauthorized {
            why: if config.upload_tokens.is_empty() {
                "uploads are off: set the UPLOAD_TOKENS secret (name:token)"
            } else {
                "send Authorization: Bearer <upload token> (scripts/dev prints one)"
            },
        });
    };
    let refused = |e: upload::UploadError| {
        audit(&who, key, &format!("refused: {e}"));
        EdgeError::Upload(e)
    };
    let admitted = upload::admit(
        key,
        header("content-length").as_deref(),
        header("content-md5").as_deref(),
        config.upload_max_bytes,
    )
    .map_err(refused)?;

    let started = now_ms();
    // A declared length with no body is a body that does not match it.
    let mut body = req
        .stream()
        .map_err(|_| EdgeError::Upload(upload::UploadError::Corrupted))?;
    let wanted = usize::try_from(admitted.length).map_or(SNIFF_BYTES, |n| n.min(SNIFF_BYTES));
    let mut head = Vec::with_capacity(wanted);
    while head.len() < wanted {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(EdgeError::Runtime(format!("reading the upload: {e}"))),
            None => break,
        }
    }
    let inspected = upload::inspect(&admitted, &head).map_err(refused)?;

    let bucket = env.bucket(BUCKET).map_err(runtime)?;
    let previous = bucket.head(key.as_str()).await.map_err(runtime)?;
    let rest = futures_util::stream::once(async move { Ok(head) }).chain(body);
    let mut put = bucket
        .put(key.as_str(), FixedLengthStream::wrap(rest, admitted.length))
        .http_metadata(HttpMetadata {
            content_type: Some(inspected.kind.content_type().to_owned()),
            ..HttpMetadata::default()
        })
        .custom_metadata(upload::metadata(&inspected, &who));
    if let Some(md5) = admitted.md5 {
        put = put.md5(md5.to_vec());
    }
    let stored = match put.execute().await {
        Ok(Some(stored)) => stored,
        // Only a conditional put answers nothing, and this one has no condition.
        Ok(None) => {
            return Err(EdgeError::Runtime(format!(
                "R2 put of {} returned no object",
                key.as_str()
            )));
        }
        Err(e) => {
            let detail = e.to_string();
            audit(&who, key, "failed: R2 refused the body");
            return Err(match upload::put_failure(&detail) {
                Some(theirs) => EdgeError::Upload(theirs),
                None => EdgeError::Runtime(format!("R2 put of {}: {detail}", key.as_str())),
            });
        }
    };
    timing.add("r2-put", now_ms() - started);
    let etag = stored.http_etag();

    let started = now_ms();
    let change = Change {
        urls: upload::purge_urls(key),
        mode: Mode::Hard,
        ..Change::default()
    };
    let purge = Purge {
        id: upload::purge_id(key, &stored.version()),
        change,
    };
    let applied = purge::apply(env, &purge).await;
    timing.add("purge", now_ms() - started);
    let applied = match applied {
        Ok(applied) => applied,
        Err(e) => {
            audit(&who, key, "stored; purge failed");
            return Err(EdgeError::UploadPurgeFailed {
                key: key.as_str().to_owned(),
                detail: e.to_string(),
            });
        }
    };

    let started = now_ms();
    let removed = if inspected.kind.is_image() {
        remove_old_derivatives(&bucket, key, &etag).await
    } else {
        Ok(0)
    };
    timing.add("derived-cleanup", now_ms() - started);
    let removed = removed.unwrap_or_else(|e| {
        // The sweeper deletes them later; the upload itself is complete.
        worker::console_warn!("upload {}: deleting old derivatives: {e}", key.as_str());
        0
    });
    audit(
        &who,
        key,
        &format!(
            "stored {} bytes {} replaced={} derivatives_removed={removed}",
            admitted.length,
            inspected.kind.as_str(),
            previous.is_some()
        ),
    );
    let body = serde_json::json!({
        "key": key.as_str(),
        "url": format!("/media/{}", key.url_path()),
        "etag": etag,
        "size": admitted.length,
        "content_type": inspected.kind.content_type(),
        "width": inspected.dimensions.map(|d| d.0),
        "height": inspected.dimensions.map(|d| d.1),
        "replaced": previous.is_some(),
        "derivatives_removed": removed,
        "purge": { "id": purge.id, "generation": applied.generation },
        "uploaded_by": who,
    });
    let response = Response::from_json(&body).map_err(runtime)?;
    let status = if previous.is_some() { 200 } else { 201 };
    let response = response.with_status(status);
    response
        .headers()
        .set("cache-control", "no-store")
        .map_err(runtime)?;
    response.headers().set("etag", &etag).map_err(runtime)?;
    Ok(response)
}

/// Deletes the derivatives of `key` not made from the bytes now stored (`etag`): they
/// are in its folder, so a listing finds them all.
async fn remove_old_derivatives(
    bucket: &worker::Bucket,
    key: &ObjectKey,
    etag: &str,
) -> worker::Result<usize> {
    let folder = DerivativeKey::r2_prefix(key.as_str());
    let mut cursor: Option<String> = None;
    let mut removed = 0;
    for _ in 0..MAX_DERIVATIVE_PAGES {
        let mut list = bucket
            .list()
            .prefix(folder.clone())
            .include(vec![Include::CustomMetadata]);
        if let Some(cursor) = cursor.take() {
            list = list.cursor(cursor);
        }
        let page = list.execute().await?;
        let doomed: Vec<String> = page
            .objects()
            .into_iter()
            .filter_map(|object| {
                let from = object
                    .custom_metadata()
                    .ok()
                    .and_then(|meta| DerivedFrom::from_metadata(&meta));
                let name = object.key();
                match verdict(&name, from.as_ref(), Some(etag)) {
                    Verdict::Keep => None,
                    Verdict::Delete(_) => Some(name),
                }
            })
            .collect();
        removed += doomed.len();
        if !doomed.is_empty() {
            bucket.delete_multiple(doomed).await?;
        }
        cursor = page.cursor().filter(|_| page.truncated());
        if cursor.is_none() {
            break;
        }
    }
    Ok(removed)
}
