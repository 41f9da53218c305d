//! Forwarding to the origin with a deadline. A refused connection and a timeout both
//! become [`EdgeError`]s, which the caller answers (or, for cached classes, serves stale).

use std::time::Duration;

use futures_util::future::{Either, select};
use protocol::EdgeCacheStatus;
use protocol::headers::REQUEST_ID;
use worker::{AbortController, Delay, Fetch, Headers, Request, RequestInit, Response};

use super::{Served, now_ms};
use crate::config::Config;
use crate::error::EdgeError;
use crate::route::Route;
use crate::timing::ServerTiming;

/// `GET /api/health`: the origin's `/healthz`, never cached.
pub(super) async fn health(
    req: &Request,
    config: &Config,
    route: &Route,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let response = fetch_origin(req, config, route.origin_path(), timing).await?;
    Ok(Served {
        response,
        cache: EdgeCacheStatus::Bypass,
    })
}

/// Sends `req`'s method to `config.origin(path)` and waits at most the configured
/// timeout. The request id is forwarded so edge and origin logs line up.
async fn fetch_origin(
    req: &Request,
    config: &Config,
    path: &str,
    timing: &mut ServerTiming,
) -> Result<Response, EdgeError> {
    let unreachable = |detail: String| EdgeError::OriginUnreachable {
        detail,
        retry_after_secs: config.retry_after_secs,
    };
    let headers = Headers::new();
    if let Ok(Some(id)) = req.headers().get(REQUEST_ID) {
        headers
            .set(REQUEST_ID, &id)
            .map_err(|e| unreachable(e.to_string()))?;
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    let outbound = Request::new_with_init(&config.origin(path), &init)
        .map_err(|e| unreachable(format!("building the origin request: {e}")))?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let started = now_ms();
    let fetch = Fetch::Request(outbound);
    let send = fetch.send_with_signal(&signal);
    let deadline = Delay::from(config.origin_timeout);
    let outcome = select(Box::pin(send), deadline).await;
    timing.add("origin", now_ms() - started);
    match outcome {
        Either::Left((Ok(response), _)) => Ok(response),
        Either::Left((Err(e), _)) => Err(unreachable(e.to_string())),
        Either::Right(((), _)) => {
            controller.abort();
            Err(EdgeError::OriginTimeout {
                after_ms: duration_ms(config.origin_timeout),
                retry_after_secs: config.retry_after_secs,
            })
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
