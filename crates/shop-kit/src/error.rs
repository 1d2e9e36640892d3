//! The one error model of the HTTP API: `{"error": {"code", "message", "service"}}`.

use serde_json::json;

/// Error codes and the HTTP status each one maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    NotFound,
    MethodNotAllowed,
    Conflict,
    UnsupportedMediaType,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// An error a request handler answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A bad input; the message starts with the offending field so clients can point at it.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {problem}"))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn unauthenticated() -> Self {
        Self::credential_required("a valid admin bearer token")
    }

    /// 401 naming the credential the route takes (`what`).
    pub fn credential_required(what: &str) -> Self {
        Self::new(ErrorCode::Unauthenticated, format!("{what} is required"))
    }

    /// An unexpected failure; the detail goes to the log, not to the client.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The JSON body of this error as `service` reports it.
    pub fn body(&self, service: &str) -> serde_json::Value {
        json!({"error": {"code": self.code.as_str(), "message": self.message, "service": service}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_one_shape_and_status() {
        let e = ApiError::invalid("items[0].quantity", "must be between 1 and 1000");
        assert_eq!(e.code.status(), 400);
        let body = e.body("orders");
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
        assert_eq!(body["error"]["service"], "orders");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("items[0].quantity"));
        assert_eq!(ApiError::conflict("x").code.status(), 409);
        assert_eq!(ApiError::unavailable("x").code.status(), 503);
        assert_eq!(ApiError::unauthenticated().code.status(), 401);
    }
}

/// What a use case can fail with: an answer for the client, or an unexpected error that is
/// logged and answered as `INTERNAL`.
#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    Internal(anyhow::Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Internal(e)
    }
}
