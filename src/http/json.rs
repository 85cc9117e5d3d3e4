//! `ApiJson<T>`: a JSON body whose every failure answers in the API's error shape (axum's own
//! `Json` rejections are plain text), and [`has_nul`]: PostgreSQL's text cannot hold a NUL
//! character, so a `\u0000` in a string would reach the database only to fail there as a 500;
//! it is refused as bad input before.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest management request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON request body of type `T`: 415 without a JSON content type, 413 past [`MAX_BODY`],
/// 400 with serde's explanation when it does not parse.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        if bytes.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge);
        }
        let value = serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        if has_nul(&bytes) {
            return Err(ApiError::bad_request(NUL_REFUSED));
        }
        Ok(value)
    }
}

/// The answer to a `\u0000` in a body.
pub const NUL_REFUSED: &str = "strings must not contain the NUL character (\\u0000)";

/// Whether a JSON text holds the escape `\u0000` (the only way JSON can carry a NUL): a
/// backslash-u-0000 not itself preceded by an escaping backslash.
pub fn has_nul(json: &[u8]) -> bool {
    memchr::memmem::find_iter(json, b"\\u0000").any(|at| {
        let escapes = json[..at].iter().rev().take_while(|b| **b == b'\\').count();
        escapes % 2 == 0
    })
}

#[cfg(test)]
mod tests {
    use super::has_nul;

    #[test]
    fn only_a_real_nul_escape_counts() {
        assert!(has_nul(br#"{"name": "a\u0000b"}"#));
        assert!(has_nul(br#"["\\\u0000"]"#));
        assert!(!has_nul(br#"{"name": "a\\u0000b"}"#));
        assert!(!has_nul(br#"{"name": "a\u0001b"}"#));
        assert!(!has_nul(b"{}"));
    }
}
