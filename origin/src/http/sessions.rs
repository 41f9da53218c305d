//! `POST /api/sessions` (login), `GET|DELETE /api/sessions/current`. Never cacheable:
//! every answer says `private, no-store`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::session::{COOKIE_NAME, MAX_TOKEN_BYTES};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, MAX_BODY_BYTES};
use crate::AppState;
use crate::admission::Class;
use crate::domain::Session;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    email: String,
    password: String,
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::BadRequest {
            field: "body",
            message: format!(
                "the body is not the expected JSON: {}",
                rejection.body_text()
            ),
        },
    }
}

/// The session cookie's value, if the request carries one.
pub(super) fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|v| v.len() <= MAX_TOKEN_BYTES)
}

fn required_token(headers: &HeaderMap) -> Result<String, ApiError> {
    session_token(headers)
        .ok_or_else(|| ApiError::Unauthorized(String::from("no session cookie; log in first")))
}

fn session_json(session: &Session) -> serde_json::Value {
    json!({
        "user": session.user,
        "segment": protocol::Segment {
            audience: protocol::Audience::Member(session.user.plan),
            locale: session.user.locale,
        }.to_string(),
        "expires_at": session.expires_at,
    })
}

pub(super) fn private(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

pub(super) fn cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}"
    ))
    .ok()
}

/// The client's IP: the configured header (the edge's `x-edge-client-ip`), else the
/// TCP peer. IPv6 addresses are cut to their /64 (one host's usual allocation), so
/// rotating through one subnet does not mint fresh allowances.
fn client_ip(
    headers: &HeaderMap,
    header_name: Option<&str>,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    header_name
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(peer.map(|p| p.ip()))
        .map(|ip| match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        })
}

/// A login has its own budget (`login_limits`): rate limits per IP and per account, and
/// a short wait for a password-check slot. It takes no admission slot, so a login flood
/// cannot crowd out the read APIs.
pub(super) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body.map_err(json_rejection)?;
    let (session, token) = sign_in(&state, peer, &headers, &login.email, &login.password).await?;
    let mut response = (StatusCode::CREATED, Json(session_json(&session))).into_response();
    if let Some(cookie) = cookie(&token, state.sessions.ttl().as_secs()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(private(response))
}

/// Tells the edge the session is over, through the invalidator's outbox (so the
/// revocation is delivered whatever crashes): the edge stops honouring the cookie within
/// the purge bound. The outbox row is written before the answer; a failure to write it
/// is an error (the cookie must not keep working at the edge unnoticed).
pub(super) async fn revoke_at_edge(
    state: &AppState,
    claims: &protocol::Claims,
) -> Result<(), ApiError> {
    let change = crate::invalidation::plan::session_revoked(&claims.sid, claims.exp);
    state
        .invalidator
        .record(&change, "logout")
        .await
        .map(|_| ())
        .map_err(|e| ApiError::Internal(format!("recording the edge revocation: {e}")))
}

/// Checks a login's fields and budgets and signs in: the JSON API and the site's form
/// share it, so both have the same limits and errors.
pub(super) async fn sign_in(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    email: &str,
    password: &str,
) -> Result<(Session, String), ApiError> {
    let email = email.trim().to_ascii_lowercase();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return Err(ApiError::BadRequest {
            field: "email",
            message: String::from("email must be an address of at most 254 characters"),
        });
    }
    if password.is_empty() || password.len() > 256 {
        return Err(ApiError::BadRequest {
            field: "password",
            message: String::from("password must be 1-256 characters"),
        });
    }
    let ip = client_ip(
        headers,
        state.settings.client_ip_header.as_deref(),
        peer.map(|Extension(ConnectInfo(addr))| addr),
    );
    state
        .login_limits
        .check(ip, &email)
        .map_err(ApiError::TooManyLogins)?;
    Ok(state
        .sessions
        .login(&*state.store, &email, password, now())
        .await?)
}

pub(super) async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _guard = state.admission.enter(Class::Session).await?;
    let token = required_token(&headers)?;
    let session = state.sessions.current(&*state.store, &token, now()).await?;
    Ok(private(Json(session_json(&session)).into_response()))
}

pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _guard = state.admission.enter(Class::Session).await?;
    let token = required_token(&headers)?;
    let claims = state.sessions.logout(&*state.store, &token, now()).await?;
    revoke_at_edge(&state, &claims).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = cookie("", 0) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(private(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_ip_comes_from_the_edge_header_else_the_peer() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut headers = HeaderMap::new();
        let h = Some("x-edge-client-ip");
        assert_eq!(client_ip(&headers, h, Some(peer)), Some(peer.ip()));
        headers.insert(
            "x-edge-client-ip",
            HeaderValue::from_static("2001:db8:1:2:3:4:5:6"),
        );
        assert_eq!(
            client_ip(&headers, h, Some(peer)),
            "2001:db8:1:2::".parse().ok(),
            "a /64"
        );
        assert_eq!(client_ip(&headers, None, Some(peer)), Some(peer.ip()));
        headers.insert("x-edge-client-ip", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(&headers, h, None), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ce_session=v1.k.p.s; b=2"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("v1.k.p.s"));
        headers.insert(header::COOKIE, HeaderValue::from_static("ce_sessionx=1"));
        assert_eq!(session_token(&headers), None);
    }
}
