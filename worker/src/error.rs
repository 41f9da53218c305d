//! Every way an edge request can fail, classified, with the status and the public
//! message each maps to. Internal detail (`Display`) goes to the log; the client gets
//! [`EdgeError::to_body`], in the `protocol` error shape.

use protocol::error::{ErrorBody, codes};
use thiserror::Error;

use crate::config::ConfigError;

/// Who is at fault, which decides the status family and whether it is logged loudly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was wrong: 4xx, logged quietly.
    Client,
    /// The origin (or R2) failed us: 502/503/504.
    Upstream,
    /// Our own bug or misconfiguration: 500.
    Internal,
}

impl From<crate::image::policy::PolicyOrParse> for EdgeError {
    fn from(e: crate::image::policy::PolicyOrParse) -> Self {
        use crate::image::policy::{PolicyError, PolicyOrParse};
        match e {
            PolicyOrParse::Parse(e) => Self::BadImageOption {
                option: e.option,
                message: e.message,
            },
            PolicyOrParse::Policy(PolicyError::BadSignature | PolicyError::Unsigned(_)) => {
                Self::BadSignature
            }
            PolicyOrParse::Policy(e) => Self::BadImageOption {
                option: e.option().to_owned(),
                message: e.to_string(),
            },
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EdgeError {
    #[error("no route for {path}")]
    NoRoute { path: String },
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
    #[error("request path longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("origin unreachable: {detail}")]
    OriginUnreachable {
        detail: String,
        retry_after_secs: u32,
    },
    /// R2 could not be read (the object store failed us, or the drills' fault switch).
    #[error("object store unavailable: {detail}")]
    StorageUnavailable {
        detail: String,
        retry_after_secs: u32,
    },
    #[error("origin did not answer within {after_ms} ms")]
    OriginTimeout {
        after_ms: u64,
        retry_after_secs: u32,
    },
    #[error("bad object key: {why}")]
    BadObjectKey { why: &'static str },
    #[error("no object {key}")]
    ObjectNotFound { key: String },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("bad image option {option}: {message}")]
    BadImageOption { option: String, message: String },
    #[error("bad or missing image signature")]
    BadSignature,
    /// A secret-authenticated route without its secret.
    #[error("unauthorized: {why}")]
    Unauthorized { why: &'static str },
    /// A purge that names a bad field.
    #[error("bad purge {field}: {message}")]
    BadPurge { field: String, message: String },
    /// The drills' fault route asked for an unknown switch.
    #[error("bad fault switch: {message}")]
    BadFaultSwitch { message: String },
    #[error("not ready: {what}")]
    NotReady {
        what: &'static str,
        retry_after_secs: u32,
    },
    #[error("image source: {0}")]
    Image(crate::image::TransformError),
    /// A remote source (`/img/<options>/https://…`) refused or failed.
    #[error("remote source: {0}")]
    Remote(crate::image::remote::RemoteError),
    /// Every transform slot of this isolate stayed busy past the wait.
    #[error("transform slot busy for {waited_ms} ms")]
    TransformBusy {
        waited_ms: u64,
        retry_after_secs: u32,
    },
    /// An upload refused before anything was stored.
    #[error("upload refused: {0}")]
    Upload(crate::upload::UploadError),
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
}

impl EdgeError {
    pub fn fault(&self) -> Fault {
        match self {
            Self::NoRoute { .. }
            | Self::MethodNotAllowed { .. }
            | Self::UriTooLong { .. }
            | Self::BadObjectKey { .. }
            | Self::ObjectNotFound { .. }
            | Self::PayloadTooLarge { .. }
            | Self::BadImageOption { .. }
            | Self::BadSignature
            | Self::Unauthorized { .. }
            | Self::BadPurge { .. }
            | Self::BadFaultSwitch { .. }
            | Self::Upload(_) => Fault::Client,
            Self::Image(crate::image::TransformError::Internal(_)) => Fault::Internal,
            Self::Image(_) => Fault::Client,
            Self::Remote(e) if e.is_upstream() => Fault::Upstream,
            Self::Remote(_) => Fault::Client,
            Self::OriginUnreachable { .. }
            | Self::OriginTimeout { .. }
            | Self::StorageUnavailable { .. }
            | Self::NotReady { .. }
            | Self::TransformBusy { .. } => Fault::Upstream,
            Self::Config(_) | Self::Runtime(_) => Fault::Internal,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::NoRoute { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::UriTooLong { .. } => 414,
            Self::BadObjectKey { .. } => 400,
            Self::ObjectNotFound { .. } => 404,
            Self::PayloadTooLarge { .. } => 413,
            Self::BadImageOption { .. } => 400,
            Self::BadSignature => 403,
            Self::Unauthorized { .. } => 401,
            Self::BadPurge { .. } | Self::BadFaultSwitch { .. } => 400,
            Self::Upload(e) => e.status(),
            Self::Image(e) => match e {
                crate::image::TransformError::Unsupported(_) => 415,
                crate::image::TransformError::Corrupt(_)
                | crate::image::TransformError::TooLarge(_) => 422,
                crate::image::TransformError::Internal(_) => 500,
            },
            Self::Remote(e) => e.status(),
            Self::OriginUnreachable { .. }
            | Self::OriginTimeout { .. }
            | Self::StorageUnavailable { .. }
            | Self::NotReady { .. }
            | Self::TransformBusy { .. } => 503,
            Self::Config(_) | Self::Runtime(_) => 500,
        }
    }

    /// `Retry-After` seconds, for the errors a client should retry later.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::OriginUnreachable {
                retry_after_secs, ..
            }
            | Self::OriginTimeout {
                retry_after_secs, ..
            }
            | Self::StorageUnavailable {
                retry_after_secs, ..
            }
            | Self::NotReady {
                retry_after_secs, ..
            }
            | Self::TransformBusy {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// `WWW-Authenticate` for 401s (RFC 9110 §11.6.1): every secret-authenticated route
    /// takes a bearer token (RFC 6750).
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized { .. } => Some("Bearer realm=\"course-edge\""),
            _ => None,
        }
    }

    /// `Allow` header value for 405s.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Self::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }

    /// The client-facing body. Upstream and internal detail stays out of it.
    pub fn to_body(&self) -> ErrorBody {
        let status = self.status();
        match self {
            Self::NoRoute { path } => ErrorBody::new(
                status,
                codes::NOT_FOUND,
                format!(
                    "no edge route for {}; see the README for the routes",
                    truncate(path)
                ),
            )
            .with_field("path"),
            Self::MethodNotAllowed { allow } => ErrorBody::new(
                status,
                codes::METHOD_NOT_ALLOWED,
                format!("this route accepts {allow}"),
            )
            .with_field("method"),
            Self::UriTooLong { limit } => ErrorBody::new(
                status,
                codes::BAD_REQUEST,
                format!("the path is longer than {limit} bytes"),
            )
            .with_field("path"),
            Self::OriginUnreachable {
                retry_after_secs, ..
            }
            | Self::OriginTimeout {
                retry_after_secs, ..
            } => ErrorBody::new(
                status,
                codes::ORIGIN_UNAVAILABLE,
                format!(
                    "the origin is unavailable and the edge has no copy to serve; retry in {retry_after_secs} s"
                ),
            ),
            Self::StorageUnavailable {
                retry_after_secs, ..
            } => ErrorBody::new(
                status,
                codes::ORIGIN_UNAVAILABLE,
                format!(
                    "the object store is unavailable and the edge has no copy to serve; retry in {retry_after_secs} s"
                ),
            ),
            Self::BadObjectKey { why } => ErrorBody::new(
                status,
                codes::BAD_REQUEST,
                format!("the object path is not allowed: {why}"),
            )
            .with_field("path"),
            Self::ObjectNotFound { .. } => ErrorBody::new(
                status,
                codes::NOT_FOUND,
                "no such file; check the URL (hashed assets change name with every build)",
            )
            .with_field("path"),
            Self::PayloadTooLarge { limit } => ErrorBody::new(
                status,
                codes::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            )
            .with_field("body"),
            Self::Config(_) => ErrorBody::new(
                status,
                codes::INTERNAL,
                "the edge is misconfigured; the operator has been told in the worker log",
            ),
            Self::Unauthorized { why } => {
                ErrorBody::new(status, "unauthorized", *why).with_field("authorization")
            }
            Self::BadPurge { field, message } => {
                ErrorBody::new(status, codes::BAD_REQUEST, message.clone())
                    .with_field(field.clone())
            }
            Self::BadFaultSwitch { message } => {
                ErrorBody::new(status, codes::BAD_REQUEST, message.clone()).with_field("r2")
            }
            Self::BadImageOption { option, message } => {
                ErrorBody::new(status, codes::BAD_REQUEST, message.clone())
                    .with_field(option.clone())
            }
            Self::NotReady {
                what,
                retry_after_secs,
            } => ErrorBody::new(
                status,
                "not_ready",
                format!("{what}; retry in {retry_after_secs} s"),
            ),
            Self::TransformBusy {
                retry_after_secs, ..
            } => ErrorBody::new(
                status,
                "transform_busy",
                format!(
                    "the edge is busy transforming other images; retry in {retry_after_secs} s"
                ),
            ),
            Self::BadSignature => ErrorBody::new(
                status,
                "bad_signature",
                "this image URL needs a valid sig= (HMAC-SHA256 of the key and options)",
            )
            .with_field("sig"),
            Self::Image(e) => match e {
                crate::image::TransformError::Unsupported(_) => ErrorBody::new(
                    status,
                    "unsupported_source",
                    "the source is not a JPEG, PNG, WebP or GIF image",
                )
                .with_field("source"),
                crate::image::TransformError::Corrupt(_) => ErrorBody::new(
                    status,
                    "corrupt_source",
                    "the source image could not be decoded; re-upload it",
                )
                .with_field("source"),
                crate::image::TransformError::TooLarge(limit) => {
                    ErrorBody::new(status, "source_too_large", limit.to_string())
                        .with_field("source")
                }
                crate::image::TransformError::Internal(_) => ErrorBody::new(
                    status,
                    codes::INTERNAL,
                    "internal edge error; it has been logged",
                ),
            },
            Self::Remote(e) => {
                ErrorBody::new(status, "remote_source", e.to_string()).with_field("source")
            }
            Self::Upload(e) => {
                let code = match status {
                    411 => "length_required",
                    413 => codes::PAYLOAD_TOO_LARGE,
                    415 => "unsupported_media_type",
                    422 => "unprocessable_upload",
                    _ => codes::BAD_REQUEST,
                };
                ErrorBody::new(status, code, e.to_string()).with_field(e.field())
            }
            Self::Runtime(_) => ErrorBody::new(
                status,
                codes::INTERNAL,
                "internal edge error; it has been logged",
            ),
        }
    }
}

/// Echoes at most 128 bytes of client input back, on a char boundary.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<EdgeError> {
        vec![
            EdgeError::NoRoute { path: "/x".into() },
            EdgeError::MethodNotAllowed { allow: "GET" },
            EdgeError::UriTooLong { limit: 10 },
            EdgeError::OriginUnreachable {
                detail: "connection refused on 10.0.0.1".into(),
                retry_after_secs: 7,
            },
            EdgeError::OriginTimeout {
                after_ms: 100,
                retry_after_secs: 7,
            },
            EdgeError::StorageUnavailable {
                detail: "R2 get failed at 10.0.0.1".into(),
                retry_after_secs: 7,
            },
            EdgeError::BadFaultSwitch {
                message: "the query is r2=down or r2=up".into(),
            },
            EdgeError::BadObjectKey { why: "x" },
            EdgeError::ObjectNotFound {
                key: "static/a".into(),
            },
            EdgeError::PayloadTooLarge { limit: 1 },
            EdgeError::TransformBusy {
                waited_ms: 20_000,
                retry_after_secs: 3,
            },
            EdgeError::Runtime("js exception at 10.0.0.1".into()),
            EdgeError::Upload(crate::upload::UploadError::Svg),
            EdgeError::Unauthorized {
                why: "send a token",
            },
            EdgeError::Config(ConfigError::Missing("ORIGIN_URL")),
        ]
    }

    #[test]
    fn status_follows_the_fault_class() {
        for err in all() {
            let family = match err.fault() {
                Fault::Client => 400..500,
                Fault::Upstream => 502..505,
                Fault::Internal => 500..501,
            };
            assert!(family.contains(&err.status()), "{err:?}");
            assert_eq!(err.to_body().error.status, err.status());
        }
    }

    #[test]
    fn upstream_detail_never_reaches_the_client() {
        for err in all() {
            let json = err.to_body().to_json();
            assert!(!json.contains("10.0.0.1"), "{json}");
            assert!(!json.contains("ORIGIN_URL"), "{json}");
        }
    }

    #[test]
    fn origin_failures_ask_to_retry_later() {
        let err = EdgeError::OriginTimeout {
            after_ms: 5,
            retry_after_secs: 9,
        };
        assert_eq!(err.retry_after_secs(), Some(9));
        assert_eq!(err.to_body().error.code, "origin_unavailable");
        assert_eq!(EdgeError::UriTooLong { limit: 1 }.retry_after_secs(), None);
    }

    #[test]
    fn a_401_names_its_scheme_and_nothing_else_does() {
        for err in all() {
            assert_eq!(
                err.www_authenticate().is_some(),
                err.status() == 401,
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_full_transform_slot_is_its_own_error() {
        let busy = EdgeError::TransformBusy {
            waited_ms: 20_000,
            retry_after_secs: 3,
        };
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.retry_after_secs(), Some(3));
        assert_eq!(busy.to_body().error.code, "transform_busy");
    }

    #[test]
    fn echoed_paths_are_bounded_and_keep_utf8_whole() {
        let long = "é".repeat(200);
        let body = EdgeError::NoRoute { path: long }.to_body();
        assert!(body.error.message.len() < 250);
    }
}
