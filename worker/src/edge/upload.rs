//! `PUT /admin/media/<key>`: a content team's upload, streamed into R2 (wasm32 glue; the
//! rules are in `crate::upload`).
//!
//! Token → `upload::admit` (key, length, checksum) → the first bytes read
//! (`Admitted::sniff_bytes`) → `upload::inspect` → the purge written to the outbox →
//! R2 `put` of a fixed-length stream: those bytes, then the rest of the body piped in
//! JavaScript (never held, never copied through WASM; R2 checks `Content-MD5` when sent,
//! and a put that fails leaves the previous object untouched) → one hard purge of every
//! URL the object is served under (it reaches every cached derivative), then the outbox
//! entry deleted → the old derivatives deleted from `derived/`. One audit line per
//! attempt.

use protocol::purge::{Change, Mode, Purge};
use worker::js_sys::{Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, ReadableStreamDefaultReader};
use worker::{Data, Env, HttpMetadata, Request, Response};

use super::origin::runtime;
use super::{derived, now_ms, purge};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::error::EdgeError;
use crate::image::working;
use crate::timing::ServerTiming;
use crate::upload;

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
    super::memory::reset_peak();
    // A declared length with no body is a body that does not match it.
    let body = req
        .inner()
        .body()
        .ok_or_else(|| refused(upload::UploadError::Corrupted))?;
    let head = read_head(&body, admitted.sniff_bytes())
        .await
        .map_err(|e| {
            audit(&who, key, "failed: the body could not be read");
            EdgeError::Runtime(format!("reading the upload: {e:?}"))
        })?;
    let inspected = upload::inspect(&admitted, &head).map_err(refused)?;

    let bucket = super::assets::bucket(env)?;
    let previous = bucket.head(key.as_str()).await.map_err(|e| {
        audit(&who, key, "failed: R2 head");
        super::assets::r2_failed(e)
    })?;
    // The purge goes into the outbox before the object is written: whatever fails after
    // this (the put, the ledger, the isolate), it is applied later, never lost.
    // The nonce: the clock only moves at I/O in Workers, so a random part keeps two
    // uploads of one key in one instant apart.
    let nonce = format!("{}|{}", now_ms(), worker::js_sys::Math::random());
    let entry = upload::Pending::new(
        Purge {
            id: upload::purge_id(key, &nonce),
            change: Change {
                urls: upload::purge_urls(key),
                mode: Mode::Hard,
                ..Change::default()
            },
        },
        now_ms(),
    );
    let pending = upload::pending_key(&entry.purge.id);
    let outbox = serde_json::to_vec(&entry).map_err(|e| EdgeError::Runtime(e.to_string()))?;
    bucket.put(&pending, outbox).execute().await.map_err(|e| {
        audit(&who, key, "failed: R2 outbox write");
        runtime(e)
    })?;
    // R2 reads a fixed-length stream: the head goes in first, then the rest of the body
    // is piped in JavaScript, so its bytes never pass through WASM memory.
    let fixed = fixed_length(admitted.length).map_err(|e| EdgeError::Runtime(format!("{e:?}")))?;
    let writable = fixed.writable();
    let mut put = bucket
        .put(key.as_str(), Data::ReadableStream(fixed.readable()))
        .http_metadata(HttpMetadata {
            content_type: Some(inspected.kind.content_type().to_owned()),
            ..HttpMetadata::default()
        })
        .custom_metadata(upload::metadata(&inspected, &who));
    if let Some(md5) = admitted.md5 {
        put = put.md5(md5.to_vec());
    }
    let feed = async {
        let writer = writable.get_writer()?;
        if let Err(e) = JsFuture::from(writer.write_with_chunk(&Uint8Array::from(&head[..]))).await
        {
            // The put must not wait for bytes that will never come.
            quietly(writer.abort());
            return Err(e);
        }
        writer.release_lock();
        JsFuture::from(body.pipe_to(&writable)).await
    };
    let put = put.execute();
    futures_util::pin_mut!(put, feed);
    // Whichever ends first decides: a put that ended early no longer reads the stream
    // (the feed is dropped and the stream aborted); a feed that failed aborts the stream,
    // so the put fails instead of waiting.
    let put = match futures_util::future::select(put, feed).await {
        futures_util::future::Either::Left((put, _feed)) => {
            if put.is_err() {
                quietly(writable.abort());
            }
            put
        }
        futures_util::future::Either::Right((fed, put)) => {
            if let Err(e) = fed {
                worker::console_warn!("upload {}: the body stopped: {e:?}", key.as_str());
                quietly(writable.abort());
            }
            put.await
        }
    };
    let refused_by_r2 = match &put {
        Err(e) => upload::put_failure(&e.to_string()).is_some(),
        Ok(_) => false,
    };
    if refused_by_r2 {
        // R2 refused the body (digest or length): nothing was stored, nothing to purge.
        // Any other failure keeps the entry: R2 may have stored it, and an extra purge is
        // harmless.
        let _ = bucket.delete(&pending).await;
    }
    let stored = match put {
        Ok(Some(stored)) => stored,
        // Only a conditional put answers nothing, and this one has no condition.
        Ok(None) => {
            audit(&who, key, "failed: R2 stored nothing");
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
    let own = entry.after_store();
    let applied = purge::apply(env, &own).await;
    timing.add("purge", now_ms() - started);
    let purge_state = match &applied {
        Ok(applied) => {
            let _ = bucket.delete(&pending).await;
            // The ledger answers: purges an earlier failure left behind go now too.
            let flushed = flush_pending(env, &bucket, FLUSH_PER_UPLOAD).await;
            serde_json::json!({
                "id": own.id, "applied": true, "generation": applied.generation,
                "earlier_pending_applied": flushed,
            })
        }
        Err(e) => {
            // Stored; the purge stays in the outbox and the next upload or cron run
            // applies it. Meanwhile nothing stale is served as fresh: hits that the
            // ledger cannot confirm are revalidated with R2.
            worker::console_error!(
                "upload {}: purge {} pending: {e}",
                key.as_str(),
                entry.purge.id
            );
            serde_json::json!({ "id": entry.purge.id, "applied": false, "pending": true })
        }
    };

    let started = now_ms();
    let removed = if inspected.kind.is_image() {
        derived::remove(&bucket, key, Some(&etag)).await
    } else {
        Ok(0)
    };
    timing.add("derived-cleanup", now_ms() - started);
    let removed = removed.unwrap_or_else(|e| {
        // The sweeper deletes them later; the upload itself is complete.
        worker::console_warn!("upload {}: deleting old derivatives: {e}", key.as_str());
        0
    });
    // A large JPEG gets its working copy now, before its first derivative is asked.
    let copy_queued = inspected.kind.is_image()
        && working::worth_looking(
            admitted.length,
            inspected.kind.content_type(),
            &config.image_limits,
        );
    if copy_queued {
        super::jobs::enqueue_working_copy(env, key.as_str(), &etag).await;
    }
    audit(
        &who,
        key,
        &format!(
            "stored {} bytes {} replaced={} derivatives_removed={removed} purge_applied={}",
            admitted.length,
            inspected.kind.as_str(),
            previous.is_some(),
            applied.is_ok()
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
        "working_copy_queued": copy_queued,
        "purge": purge_state,
        "uploaded_by": who,
    });
    let response = Response::from_json(&body).map_err(runtime)?;
    let status = upload::stored_status(previous.is_some());
    let response = response.with_status(status);
    response
        .headers()
        .set("cache-control", "no-store")
        .map_err(runtime)?;
    response.headers().set("etag", &etag).map_err(runtime)?;
    response
        .headers()
        .set("location", &key.purge_path(true))
        .map_err(runtime)?;
    // What streaming the body cost the isolate: the allocator's peak during the upload and
    // linear memory after it, flat whatever the file's size (`scripts/bench-upload`).
    response
        .headers()
        .set("x-edge-memory-peak", &super::memory::peak().to_string())
        .map_err(runtime)?;
    response
        .headers()
        .set(
            "x-edge-memory-linear",
            &super::memory::linear_memory_bytes().to_string(),
        )
        .map_err(runtime)?;
    Ok(response)
}

/// Reads at least `wanted` bytes from the front of `body` (less when it ends first), and
/// releases the reader: the rest stays in the stream, to be piped on.
async fn read_head(body: &ReadableStream, wanted: usize) -> Result<Vec<u8>, JsValue> {
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut head = Vec::with_capacity(wanted);
    while head.len() < wanted {
        let step = JsFuture::from(reader.read()).await?;
        if Reflect::get(&step, &JsValue::from_str("done"))?.is_truthy() {
            break;
        }
        let chunk = Reflect::get(&step, &JsValue::from_str("value"))?;
        head.extend_from_slice(&Uint8Array::new(&chunk).to_vec());
    }
    reader.release_lock();
    Ok(head)
}

/// Lets a promise settle without anyone waiting (an abort on a stream that is already
/// closed or locked rejects, and nobody needs to hear it).
fn quietly(promise: worker::js_sys::Promise) {
    worker::wasm_bindgen_futures::spawn_local(async move {
        let _ = JsFuture::from(promise).await;
    });
}

/// A `FixedLengthStream` of `length` bytes (R2 needs the length of a streamed put).
fn fixed_length(length: u64) -> Result<worker::worker_sys::FixedLengthStream, JsValue> {
    use worker::worker_sys::FixedLengthStream;
    match u32::try_from(length) {
        Ok(n) => FixedLengthStream::new(n),
        Err(_) => FixedLengthStream::new_big_int(worker::js_sys::BigInt::from(length)),
    }
}

/// Outbox entries applied per upload at most (the cron run takes the rest).
const FLUSH_PER_UPLOAD: u32 = 20;

/// Applies up to `limit` purges left in the outbox (`upload::PENDING_PREFIX`) that are due
/// (`upload::Pending::is_due`) and deletes each once the ledger has it; returns how many.
/// A purge the ledger refuses stays for the next try, and a broken entry is dropped
/// (logged).
pub(super) async fn flush_pending(env: &Env, bucket: &worker::Bucket, limit: u32) -> u32 {
    let Ok(page) = bucket
        .list()
        .prefix(upload::PENDING_PREFIX)
        .limit(limit)
        .execute()
        .await
    else {
        return 0;
    };
    let mut applied = 0;
    for object in page.objects() {
        let name = object.key();
        let Ok(Some(found)) = bucket.get(&name).execute().await else {
            continue;
        };
        let Some(Ok(bytes)) = (match found.body() {
            Some(body) => Some(body.bytes().await),
            None => None,
        }) else {
            continue;
        };
        match serde_json::from_slice::<upload::Pending>(&bytes) {
            // Its upload may still be streaming: it applies its own purge when stored.
            Ok(pending) if !pending.is_due(now_ms()) => continue,
            Ok(pending) => {
                if purge::apply(env, &pending.purge).await.is_err() {
                    break;
                }
                applied += 1;
            }
            Err(e) => worker::console_error!("dropping unreadable outbox entry {name}: {e}"),
        }
        let _ = bucket.delete(&name).await;
    }
    applied
}
