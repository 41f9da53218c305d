//! Admin writes and the invalidation API. Every route takes a bearer token (compared in
//! constant time), answers JSON, never caches (`no-store`), and writes one audit line
//! (`target: "audit"`: who, action, what, outcome).
//!
//! | route | does |
//! |---|---|
//! | `PUT /admin/courses/{slug}` | replaces a course's editable fields (`If-Match` required) |
//! | `PUT /admin/videos/{id}` | replaces a video's metadata (`If-Match` required) |
//! | `POST /admin/feeds/rebuild` | recomputes every feed |
//! | `POST /admin/invalidate` | purges `{tags, urls, prefixes, mode}` |
//! | `GET /admin/purges/{id}` | where a purge stands (attempts, acknowledged targets) |
//!
//! A write commits its purge with it (the outbox) and answers once the purge is
//! acknowledged everywhere or after `ADMIN_WAIT_MS` (`"delivered": false`: it is still
//! delivered, retried until acknowledged).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::purge::Change;
use serde_json::json;

use super::ApiError;
use crate::AppState;
use crate::cache::Entry;
use crate::domain::admin::MAX_ADMIN_BODY_BYTES;
use crate::domain::{CourseDetail, CourseEdit, Slug, Video, VideoEdit, VideoId};
use crate::invalidation::{plan, unix_ms};
use crate::storage::{EditRules, Edited, Store};

/// One audit line per admin action.
fn audit(actor: &str, action: &str, what: &str, outcome: &str, purge: Option<i64>) {
    tracing::info!(
        target: "audit",
        who = actor,
        action,
        what,
        outcome,
        purge = purge.unwrap_or(0),
        "admin"
    );
}

fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    action: &str,
    what: &str,
) -> Result<String, ApiError> {
    let what: String = what.chars().take(120).collect();
    let what = what.as_str();
    if super::via(&state.settings, headers) == super::Via::Edge {
        // The edge never passes /admin through; a request that carries its secret here
        // did not come from an operator.
        audit(
            "edge",
            action,
            what,
            "refused: admin routes are not served through the edge",
            None,
        );
        return Err(ApiError::NotFound {
            what: String::from("that route"),
        });
    }
    if state.settings.admin_tokens.is_empty() {
        audit(
            "anonymous",
            action,
            what,
            "refused: no admin tokens configured",
            None,
        );
        return Err(ApiError::Unauthorized(String::from(
            "the admin API is off: set ADMIN_TOKENS=name:token on the origin",
        )));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let holder = state.settings.admin_tokens.holder(authorization);
    holder.map(str::to_owned).ok_or_else(|| {
        audit(
            "anonymous",
            action,
            what,
            "refused: bad or missing token",
            None,
        );
        ApiError::Unauthorized(String::from(
            "send Authorization: Bearer <admin token> (scripts/dev prints one)",
        ))
    })
}

fn body(bytes: Result<Bytes, BytesRejection>, headers: &HeaderMap) -> Result<Bytes, ApiError> {
    let bytes = bytes.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_ADMIN_BODY_BYTES,
            }
        } else {
            ApiError::BadRequest {
                field: "body",
                message: r.body_text(),
            }
        }
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(bytes)
}

/// The `If-Match` ETag (one strong tag; `*` is not accepted: an edit names the version
/// it replaces).
fn if_match(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::IF_MATCH)
        .ok_or(ApiError::PreconditionRequired)?
        .to_str()
        .map_err(|_| ApiError::BadRequest {
            field: "if-match",
            message: String::from("If-Match is one quoted ETag from a GET of this resource"),
        })?
        .trim();
    if value.len() > 80 || !value.starts_with('"') || !value.ends_with('"') || value.len() < 2 {
        return Err(ApiError::BadRequest {
            field: "if-match",
            message: String::from("If-Match is one quoted ETag from a GET of this resource"),
        });
    }
    Ok(value.to_owned())
}

fn course_etag(detail: &CourseDetail) -> String {
    Entry::json(detail, Vec::new()).etag
}

fn video_etag(video: &Video) -> String {
    Entry::json(video, Vec::new()).etag
}

fn no_store(status: StatusCode, body: serde_json::Value, etag: Option<&str>) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

async fn purge_state(state: &AppState, id: i64) -> serde_json::Value {
    let delivered = state
        .invalidator
        .wait_delivered(id, state.settings.admin_wait)
        .await;
    json!({ "id": id, "delivered": delivered })
}

/// What an admin action did: the answer, and for the audit line its outcome and purge.
struct Done {
    response: Response,
    outcome: &'static str,
    purge: Option<i64>,
}

/// Writes the audit line for an authorized action and returns its answer.
fn finish(
    actor: &str,
    action: &str,
    what: &str,
    done: Result<Done, ApiError>,
) -> Result<Response, ApiError> {
    let what: String = what.chars().take(120).collect();
    match done {
        Ok(done) => {
            audit(actor, action, &what, done.outcome, done.purge);
            Ok(done.response)
        }
        Err(e) => {
            audit(actor, action, &what, &format!("refused: {e}"), None);
            Err(e)
        }
    }
}

pub(super) async fn put_course(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = authorize(&state, &headers, "edit_course", &slug)?;
    let done = async {
        let slug = Slug::parse(&slug)?;
        let expected = if_match(&headers)?;
        let edit = CourseEdit::parse(&body(bytes, &headers)?)?;
        // Before the edit: the course's page is purged by it and re-rendered with the
        // cover's size once the table knows it.
        if let Some(cover) = &edit.cover_image {
            crate::media::learn_size(&state, cover).await;
        }
        let change = |detail: &CourseDetail, segments: &[String]| {
            plan::course_edited(detail.course.id, &detail.course.slug, segments)
        };
        let rules = EditRules {
            etag: course_etag,
            change: &change,
            actor: &actor,
            now_ms: unix_ms(),
        };
        match state
            .store
            .edit_course(&slug, &expected, &edit, rules)
            .await?
        {
            Edited::Updated { value, outbox_id } => {
                let etag = course_etag(&value);
                let purge = purge_state(&state, outbox_id).await;
                Ok(Done {
                    response: no_store(
                        StatusCode::OK,
                        json!({ "course": value, "purge": purge }),
                        Some(&etag),
                    ),
                    outcome: "updated",
                    purge: Some(outbox_id),
                })
            }
            Edited::Missing => Err(ApiError::NotFound {
                what: format!("course {slug}"),
            }),
            Edited::Stale { current_etag } => Err(ApiError::PreconditionFailed { current_etag }),
        }
    }
    .await;
    finish(&actor, "edit_course", &slug, done)
}

pub(super) async fn put_video(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = authorize(&state, &headers, "edit_video", &id)?;
    let done = async {
        let id = VideoId::parse(&id)?;
        let expected = if_match(&headers)?;
        let edit = VideoEdit::parse(&body(bytes, &headers)?)?;
        let change = |video: &Video, _: &[String]| plan::video_edited(video.id);
        let rules = EditRules {
            etag: video_etag,
            change: &change,
            actor: &actor,
            now_ms: unix_ms(),
        };
        match state.store.edit_video(id, &expected, &edit, rules).await? {
            Edited::Updated { value, outbox_id } => {
                let etag = video_etag(&value);
                let purge = purge_state(&state, outbox_id).await;
                Ok(Done {
                    response: no_store(
                        StatusCode::OK,
                        json!({ "video": value, "purge": purge }),
                        Some(&etag),
                    ),
                    outcome: "updated",
                    purge: Some(outbox_id),
                })
            }
            Edited::Missing => Err(ApiError::NotFound {
                what: format!("video {}", id.0),
            }),
            Edited::Stale { current_etag } => Err(ApiError::PreconditionFailed { current_etag }),
        }
    }
    .await;
    finish(&actor, "edit_video", &id, done)
}

pub(super) async fn rebuild_feeds(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = authorize(&state, &headers, "rebuild_feeds", "feeds")?;
    let done = async {
        let change = |segments: &[String]| plan::feeds_rebuilt(segments);
        let (segments, outbox_id) = state
            .store
            .rebuild_feeds(&change, &actor, unix_ms())
            .await?;
        let purge = purge_state(&state, outbox_id).await;
        Ok(Done {
            response: no_store(
                StatusCode::OK,
                json!({ "segments": segments, "purge": purge }),
                None,
            ),
            outcome: "rebuilt",
            purge: Some(outbox_id),
        })
    }
    .await;
    finish(&actor, "rebuild_feeds", "feeds", done)
}

pub(super) async fn invalidate(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = authorize(&state, &headers, "invalidate", "purge")?;
    let done = async {
        let change = Change::parse(&body(bytes, &headers)?).map_err(|e| ApiError::BadField {
            field: e.field,
            message: e.message,
        })?;
        let outbox_id = state.invalidator.record(&change, &actor).await?;
        let purge = purge_state(&state, outbox_id).await;
        Ok(Done {
            response: no_store(
                StatusCode::ACCEPTED,
                json!({ "purge": purge, "mode": change.mode.as_str() }),
                None,
            ),
            outcome: "accepted",
            purge: Some(outbox_id),
        })
    }
    .await;
    finish(&actor, "invalidate", "purge", done)
}

pub(super) async fn purge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = authorize(&state, &headers, "read_purge", &id)?;
    let _ = actor;
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest {
        field: "id",
        message: String::from("a purge id is a whole number"),
    })?;
    let row = state
        .store
        .purge_row(id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: format!("purge {id}"),
        })?;
    Ok(no_store(
        StatusCode::OK,
        json!({
            "id": row.id,
            "edge_id": crate::invalidation::purge_id(&row),
            "change": row.change,
            "actor": row.actor,
            "attempts": row.attempts,
            "acked": row.acked,
            "delivered": row.delivered_at_ms.is_some(),
            "last_error": row.last_error,
        }),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_is_one_quoted_etag() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            if_match(&headers),
            Err(ApiError::PreconditionRequired)
        ));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert_eq!(if_match(&headers).unwrap(), "\"abc\"");
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert!(matches!(
            if_match(&headers),
            Err(ApiError::BadRequest {
                field: "if-match",
                ..
            })
        ));
    }
}
