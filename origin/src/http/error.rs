//! The origin's one error type, turned into the `protocol` JSON shape in one place.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::error::{ErrorBody, codes};

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
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            ),
            Self::BadRequest { field, message } => {
                ErrorBody::new(status, codes::BAD_REQUEST, message.clone()).with_field(*field)
            }
            Self::NotReady(_) => ErrorBody::new(
                status,
                codes::OVERLOADED,
                "the origin is not ready yet; retry shortly",
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
        if matches!(self, Self::Internal(_) | Self::NotReady(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Self::NotReady(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
