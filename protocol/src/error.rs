//! The one JSON error shape of course-edge, edge and origin alike:
//!
//! ```json
//! {"error":{"status":503,"code":"origin_unavailable","message":"…","field":null}}
//! ```
//!
//! `code` is a stable machine-readable identifier, `message` is for people and says
//! what to do next, `field` names the offending input (an option, a query parameter)
//! when there is one. Internal detail never goes here; it goes to the log.

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub status: u16,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                status,
                code: code.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    /// Names the input that was wrong.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }

    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(r#"{"error":{"status":500,"code":"internal","message":"error"}}"#)
        })
    }
}

/// Stable error codes used on both sides.
pub mod codes {
    /// The edge could not reach the origin and had nothing cached to serve.
    pub const ORIGIN_UNAVAILABLE: &str = "origin_unavailable";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const OVERLOADED: &str = "overloaded";
    pub const INTERNAL: &str = "internal";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let body =
            ErrorBody::new(400, codes::BAD_REQUEST, "limit must be 1-100").with_field("limit");
        let value: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
        assert_eq!(value["error"]["status"], 400);
        assert_eq!(value["error"]["code"], "bad_request");
        assert_eq!(value["error"]["field"], "limit");
        assert_eq!(value["error"]["message"], "limit must be 1-100");
    }

    #[test]
    fn field_is_omitted_when_absent() {
        let json = ErrorBody::new(503, codes::ORIGIN_UNAVAILABLE, "try later").to_json();
        assert!(!json.contains("field"), "{json}");
        let back: ErrorBody = serde_json::from_str(&json).unwrap();
        assert_eq!(back.error.field, None);
    }
}
