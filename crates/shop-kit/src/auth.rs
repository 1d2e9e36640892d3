//! Admin authentication: `Authorization: Bearer <admin_token>`, compared in constant time.

use subtle::ConstantTimeEq;

use crate::ApiError;

/// Checks an `Authorization` header value against the configured admin token.
/// An empty configured token never authenticates anyone.
pub fn check_bearer(header: Option<&str>, admin_token: &str) -> Result<(), ApiError> {
    let presented = bearer(header);
    let ok =
        !admin_token.is_empty() && bool::from(presented.as_bytes().ct_eq(admin_token.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unauthenticated())
    }
}

/// The token of an `Authorization: Bearer <token>` header value; empty for anything else.
pub fn bearer(header: Option<&str>) -> &str {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        assert!(check_bearer(Some("Bearer s3cret"), "s3cret").is_ok());
        assert!(check_bearer(Some("Bearer s3cre"), "s3cret").is_err());
        assert!(check_bearer(Some("s3cret"), "s3cret").is_err());
        assert!(check_bearer(None, "s3cret").is_err());
        assert!(check_bearer(Some("Bearer "), "").is_err());
    }
}
