//! The origin's one error type, turned into the `protocol` JSON shape in one place.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::error::{ErrorBody, codes};

use crate::admission::Shed;
use crate::cache::LoadError;
use crate::domain::InputError;
use crate::sessions::SessionError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad {field}: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
    /// A field named at run time (purge lists: `tags[3]`).
    #[error("bad {field}: {message}")]
    BadField { field: String, message: String },
    #[error("If-Match is required")]
    PreconditionRequired,
    #[error("stale If-Match; current ETag {current_etag}")]
    PreconditionFailed { current_etag: String },
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("unauthenticated: {0}")]
    Unauthorized(String),
    /// A form post from another site (the origin check of the demo site's forms).
    #[error("cross-site form post refused: {0}")]
    CrossSite(String),
    #[error("shed: {0}")]
    Shed(&'static str),
    #[error("login refused: {0}")]
    TooManyLogins(crate::login_limits::LoginRefused),
    #[error("not ready: {0}")]
    NotReady(String),
    /// The database cannot be reached now (nothing was written).
    #[error("store unavailable: {0}")]
    StoreDown(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        Self::BadRequest {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            Self::StoreDown(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<Shed> for ApiError {
    fn from(s: Shed) -> Self {
        Self::Shed(s.class.as_str())
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::BadCredentials => Self::Unauthorized(e.to_string()),
            SessionError::Unauthenticated(why) => {
                Self::Unauthorized(format!("no valid session ({why})"))
            }
            SessionError::Store(e) => e.into(),
            SessionError::Busy(refused) => Self::TooManyLogins(refused),
            SessionError::Internal(e) => Self::Internal(e),
        }
    }
}

impl ApiError {
    /// Maps a cache-aside failure; `what` names the thing for a 404.
    pub fn from_load(e: Arc<LoadError>, what: impl FnOnce() -> String) -> Self {
        match &*e {
            LoadError::NotFound => Self::NotFound { what: what() },
            LoadError::Store(e) if e.is_unavailable() => Self::StoreDown(e.to_string()),
            LoadError::Store(e) => Self::Internal(e.to_string()),
            // get_or_load serves the last attempt uncached rather than return this.
            LoadError::Superseded => Self::Internal(e.to_string()),
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest { .. } | Self::BadField { .. } => StatusCode::BAD_REQUEST,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::CrossSite(_) => StatusCode::FORBIDDEN,
            Self::Shed(_) | Self::NotReady(_) | Self::StoreDown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::TooManyLogins(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let status = self.status().as_u16();
        match self {
            Self::NotFound { what } => {
                ErrorBody::new(status, codes::NOT_FOUND, format!("{what} does not exist"))
            }
            Self::MethodNotAllowed => ErrorBody::new(
                status,
                codes::METHOD_NOT_ALLOWED,
                "this route does not accept that method",
            )
            .with_field("method"),
            Self::BadRequest { field, message } => {
                ErrorBody::new(status, codes::BAD_REQUEST, message.clone()).with_field(*field)
            }
            Self::BadField { field, message } => {
                ErrorBody::new(status, codes::BAD_REQUEST, message.clone()).with_field(field.clone())
            }
            Self::PreconditionRequired => ErrorBody::new(
                status,
                "precondition_required",
                "send If-Match with the ETag of a GET of this resource, so a concurrent edit is never overwritten",
            )
            .with_field("if-match"),
            Self::PreconditionFailed { current_etag } => ErrorBody::new(
                status,
                "precondition_failed",
                format!("the resource changed since that ETag (it is now {current_etag}): GET it again, reapply your edit, and retry"),
            )
            .with_field("if-match"),
            Self::PayloadTooLarge { limit } => ErrorBody::new(
                status,
                codes::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            )
            .with_field("body"),
            Self::UnsupportedMediaType => ErrorBody::new(
                status,
                codes::BAD_REQUEST,
                "send the body as JSON with Content-Type: application/json",
            )
            .with_field("content-type"),
            Self::Unauthorized(message) => ErrorBody::new(status, "unauthorized", message.clone()),
            Self::CrossSite(message) => {
                ErrorBody::new(status, "cross_site", message.clone()).with_field("origin")
            }
            Self::Shed(class) => ErrorBody::new(
                status,
                codes::OVERLOADED,
                format!("the origin is shedding {class} requests under load; retry shortly"),
            ),
            Self::TooManyLogins(refused) => {
                ErrorBody::new(status, "too_many_logins", refused.to_string()).with_field(
                    match refused {
                        crate::login_limits::LoginRefused::Account { .. } => "email",
                        _ => "login",
                    },
                )
            }
            Self::NotReady(_) => ErrorBody::new(
                status,
                codes::OVERLOADED,
                "the origin is not ready yet; retry shortly",
            ),
            Self::StoreDown(_) => ErrorBody::new(
                status,
                codes::ORIGIN_UNAVAILABLE,
                "the origin's database cannot be reached, so the change was not confirmed; retry after Retry-After (a write's If-Match makes a retry safe: a 412 means it had landed)",
            ),
            Self::Internal(_) => ErrorBody::new(
                status,
                codes::INTERNAL,
                "internal error; it has been logged",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Internal(_)) {
            tracing::error!(error = %self, "request failed");
        }
        if matches!(self, Self::StoreDown(_)) {
            tracing::warn!(error = %self, "request refused: the database is unavailable");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Self::Shed(_) | Self::NotReady(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::StoreDown(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Self::TooManyLogins(refused) = &self
            && let Ok(value) = HeaderValue::from_str(&refused.retry_after_secs().to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
            tracing::warn!(limit = refused.as_str(), "login refused");
        }
        if let Self::PreconditionFailed { current_etag } = &self
            && let Ok(value) = HeaderValue::from_str(current_etag)
        {
            headers.insert(header::ETAG, value);
        }
        if matches!(self, Self::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::MethodNotAllowed) {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

pub(super) async fn not_found(uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    let shown = if path.len() > 128 { "that path" } else { path };
    ApiError::NotFound {
        what: format!("route {shown}"),
    }
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drill's finding: a write while PostgreSQL was down answered 500.
    #[test]
    fn an_unreachable_database_is_a_503_with_retry_after_and_other_failures_stay_500() {
        for unavailable in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let response = ApiError::from(StoreError::Database(unavailable)).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        }
        let load = Arc::new(LoadError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        assert_eq!(
            ApiError::from_load(load, String::new).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        for other in [
            StoreError::Database(sqlx::Error::RowNotFound),
            StoreError::Corrupt(String::from("x")),
        ] {
            assert_eq!(
                ApiError::from(other).status(),
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
    }
}
