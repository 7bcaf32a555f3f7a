//! The one error type of the HTTP boundary. Every failure a client can cause
//! becomes a 4xx JSON body `{"error": {"code", "message"}}` with a stable
//! code; internal failures become a 503 that says what is unavailable,
//! without leaking internals.

use shared::api::ErrorBody;

/// An error response: status, machine-readable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u32>,
    /// The methods a 405 path accepts (the `Allow` header).
    pub allow: Option<&'static str>,
}

impl ApiError {
    /// Any error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 404 for unknown routes.
    pub fn not_found(path: &str) -> Self {
        let shown: String = path.chars().take(100).collect();
        Self::new(404, "not_found", format!("no endpoint at {shown}"))
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(allowed: &'static str) -> Self {
        Self {
            allow: Some(allowed),
            ..Self::new(405, "method_not_allowed", format!("use {allowed}"))
        }
    }

    /// 429 with a retry hint.
    pub fn rate_limited(what: &str, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                429,
                "rate_limited",
                format!("too many requests for this {what}"),
            )
        }
    }

    /// 503: a dependency (Durable Object, KV) failed. Never a 5xx for input.
    pub fn unavailable(what: &str) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                503,
                "unavailable",
                format!("{what} is unavailable, retry shortly"),
            )
        }
    }

    /// 503: an admin setting the request needs cannot be read or is
    /// invalid, and no good value of it is known. Never another region's or
    /// currency's value in its place.
    pub fn config_unavailable(what: &str) -> Self {
        Self {
            retry_after: Some(10),
            ..Self::new(503, "config_unavailable", what.to_owned())
        }
    }

    /// Where a request's region cannot be priced
    /// ([`shared::regions::Registry::resolve`]): 404 for a region nobody
    /// registered, 422 for a pickup outside every region or in another.
    pub fn misplaced(m: &shared::regions::Misplaced) -> Self {
        let status = match m {
            shared::regions::Misplaced::UnknownRegion(_) => 404,
            _ => 422,
        };
        Self::new(status, m.code(), m.to_string())
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

/// Classifies a serde_json error on a request body.
pub fn from_json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("invalid_json", format!("body is not valid JSON: {e}"))
        }
        Category::Data => {
            let text = e.to_string();
            if text.starts_with("missing field") {
                ApiError::bad_request("missing_field", text)
            } else {
                ApiError::bad_request("invalid_field", text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_classified() {
        let syntax = serde_json::from_str::<serde_json::Value>("{").expect_err("bad");
        assert_eq!(from_json_error(&syntax).code, "invalid_json");
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let missing = serde_json::from_str::<T>("{}").expect_err("bad");
        assert_eq!(from_json_error(&missing).code, "missing_field");
        let wrong = serde_json::from_str::<T>(r#"{"a":"x"}"#).expect_err("bad");
        assert_eq!(from_json_error(&wrong).code, "invalid_field");
    }
}
