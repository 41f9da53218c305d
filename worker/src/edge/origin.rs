//! Requests to the origin: which client headers are forwarded (cookies are stripped
//! for shared classes so signed-in visitors share entries), and the fetch itself under
//! a deadline. A refused connection and a timeout both become [`EdgeError`]s, which
//! callers answer — or, for cached classes, cover with a stale copy.

use futures_util::future::{Either, select};
use protocol::headers::{CLIENT_IP, REQUEST_ID, SEGMENT};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

use super::now_ms;
use crate::config::Config;
use crate::error::EdgeError;
use crate::timing::ServerTiming;

/// Largest request body forwarded to the origin (logins, forms).
pub(super) const MAX_BODY_BYTES: u64 = 64 * 1024;

/// How much of the client's request the origin sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Forward {
    /// Shared classes: an allow-list; never cookies or credentials.
    Shared,
    /// Bypassed and pass-through requests: everything but hop-by-hop headers.
    All,
}

const SHARED_ALLOW: [&str; 4] = ["accept", "accept-language", "user-agent", REQUEST_ID];
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-length",
];

pub(super) fn forward_headers(req: &Request, forward: Forward) -> Result<Headers, EdgeError> {
    let out = Headers::new();
    for (name, value) in req.headers().entries() {
        let keep = match forward {
            Forward::Shared => SHARED_ALLOW.contains(&name.as_str()),
            Forward::All => {
                !HOP_BY_HOP.contains(&name.as_str()) && name != SEGMENT && name != CLIENT_IP
            }
        };
        if keep {
            out.append(&name, &value).map_err(runtime)?;
        }
    }
    if let Some(ip) = req.headers().get("cf-connecting-ip").map_err(runtime)? {
        out.set(CLIENT_IP, &ip).map_err(runtime)?;
    }
    Ok(out)
}

pub(super) fn runtime(e: worker::Error) -> EdgeError {
    EdgeError::Runtime(e.to_string())
}

/// Sends one request to `config.origin(path_and_query)` and waits at most the
/// configured timeout.
pub(super) async fn fetch(
    config: &Config,
    method: Method,
    path_and_query: &str,
    headers: Headers,
    body: Option<worker::wasm_bindgen::JsValue>,
    timing: &mut ServerTiming,
) -> Result<Response, EdgeError> {
    let unreachable = |detail: String| EdgeError::OriginUnreachable {
        detail,
        retry_after_secs: config.retry_after_secs,
    };
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers)
        .with_body(body);
    let outbound = Request::new_with_init(&config.origin(path_and_query), &init)
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
                after_ms: u64::try_from(config.origin_timeout.as_millis()).unwrap_or(u64::MAX),
                retry_after_secs: config.retry_after_secs,
            })
        }
    }
}

/// The request body as a stream for the origin, refusing oversized declared bodies.
pub(super) fn body_of(req: &Request) -> Result<Option<worker::wasm_bindgen::JsValue>, EdgeError> {
    if let Ok(Some(len)) = req.headers().get("content-length")
        && len.parse::<u64>().map_or(true, |n| n > MAX_BODY_BYTES)
    {
        return Err(EdgeError::PayloadTooLarge {
            limit: MAX_BODY_BYTES as usize,
        });
    }
    Ok(req.inner().body().map(Into::into))
}
