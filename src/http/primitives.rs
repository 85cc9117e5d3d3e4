//! `POST /api/primitives/…`: the business primitives for n8n's HTTP Request nodes (SPEC §3.3).
//!
//! Thin: read the body, hand it to `relay365_actors::primitives` on a blocking thread, map the
//! errors. Bodies are taken as bytes and parsed here, so malformed JSON answers 400 with the
//! usual `{"error": {…}}` body rather than axum's plain-text rejection. Bearer auth is applied
//! by the caller as a layer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use relay365_actors::primitives::{
    self, Classification, DocumentInput, EmailInput, ExtractError, Extracted, Parsed,
    PrimitiveError,
};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The largest mail `email/parse` and `email/classify` take (a Graph message with a big HTML
/// body, inline images excluded).
pub const EMAIL_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The largest `document/extract` request: base64 of a 25 MiB document is 33.4 MiB, plus the
/// rest of the JSON.
pub const EXTRACT_BODY_LIMIT: usize = 35 * 1024 * 1024;

/// The primitives' routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/api/primitives/email/parse",
            post(parse_email).layer(DefaultBodyLimit::max(EMAIL_BODY_LIMIT)),
        )
        .route(
            "/api/primitives/email/classify",
            post(classify_email).layer(DefaultBodyLimit::max(EMAIL_BODY_LIMIT)),
        )
        .route(
            "/api/primitives/document/extract",
            post(extract_document).layer(DefaultBodyLimit::max(EXTRACT_BODY_LIMIT)),
        )
}

/// `POST /api/primitives/email/parse`: a Graph message or `{"subject","body","body_type"}`.
async fn parse_email(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Parsed>> {
    let body = read_body(body)?;
    blocking(move || {
        let input = email_input(&body)?;
        Ok(Json(primitives::parse(&input)))
    })
    .await
}

/// `POST /api/primitives/email/classify`: same input as parse.
async fn classify_email(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Classification>> {
    let body = read_body(body)?;
    blocking(move || {
        let input = email_input(&body)?;
        Ok(Json(primitives::classify(&input)))
    })
    .await
}

/// `POST /api/primitives/document/extract`: `{"content_type","content_base64"}` or a Graph
/// fileAttachment.
async fn extract_document(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Extracted>> {
    let body = read_body(body)?;
    let document =
        blocking(move || DocumentInput::from_json(&json_value(&body)?).map_err(primitive_error))
            .await?;
    let extracted = primitives::extract_with_timeout(document, primitives::EXTRACT_TIMEOUT)
        .await
        .map_err(extract_error)?;
    Ok(Json(extracted))
}

fn read_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad_request(format!(
                "the body could not be read: {}",
                rejection.body_text()
            ))
        }
    })
}

fn json_value(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))
}

fn email_input(body: &[u8]) -> ApiResult<EmailInput> {
    EmailInput::from_json(&json_value(body)?).map_err(primitive_error)
}

fn primitive_error(err: PrimitiveError) -> ApiError {
    match err {
        PrimitiveError::InvalidInput(message) => ApiError::bad_request(message),
        PrimitiveError::Document(err) => extract_error(err),
    }
}

/// Too large → 413; unsupported, broken or too slow → 422 with the error's code.
fn extract_error(err: ExtractError) -> ApiError {
    match err {
        ExtractError::TooLarge { .. } => ApiError::PayloadTooLarge,
        other => ApiError::unprocessable(other.code(), other.to_string()),
    }
}

/// Runs CPU work off the async threads (a large HTML body takes milliseconds to render).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("primitives task failed: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, Request};
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::ServiceExt;

    async fn post_raw(uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .expect("request");
        let response = router::<()>().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).expect("a JSON answer"),
        )
    }

    async fn post(uri: &str, body: Value) -> (StatusCode, Value) {
        post_raw(uri, body.to_string()).await
    }

    #[tokio::test]
    async fn parse_answers_the_contract_shape() {
        let (status, body) = post(
            "/api/primitives/email/parse",
            json!({
                "subject": "Re: offer",
                "body": "<p>Deal at &euro;1.200,00 &ndash; see <a href=\"https://x.example/o\">offer</a>.</p>\
                         <p>Best regards,<br>Ann</p><blockquote>Earlier text</blockquote>",
                "body_type": "html",
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({
                "text": "Deal at €1.200,00 – see offer.\n\nBest regards,\nAnn\n\n> Earlier text",
                "reply": "Deal at €1.200,00 – see offer.",
                "quoted": "> Earlier text",
                "signature": "Best regards,\nAnn",
                "links": ["https://x.example/o"],
                "emails": [],
                "phones": [],
                "dates": [],
                "amounts": [{"value": 1200.0, "currency": "EUR", "raw": "€1.200,00"}],
            })
        );
    }

    #[tokio::test]
    async fn classify_takes_a_graph_message() {
        let (status, body) = post(
            "/api/primitives/email/classify",
            json!({
                "subject": "Automatic reply: invoice",
                "body": {"contentType": "text", "content": "I am out of the office until Monday."},
                "internetMessageHeaders": [{"name": "Auto-Submitted", "value": "auto-replied"}],
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["intent"], "auto_reply");
        assert_eq!(body["urgency"], "low");
        assert_eq!(body["is_auto_reply"], true);
        assert_eq!(body["is_newsletter"], false);
        // One short sentence is enough for lingua.
        assert_eq!(body["language"], "en");
        let last = &body["signals"][body["signals"].as_array().map_or(0, |s| s.len() - 1)];
        assert_eq!(last["rule"], "language:lingua");
        assert_eq!(last["effect"], "language:en");
        assert_eq!(
            body["signals"][0],
            json!({"rule": "header:auto-submitted", "effect": "is_auto_reply", "evidence": "auto-replied"})
        );
    }

    #[tokio::test]
    async fn extract_reads_base64_and_graph_attachments() {
        // "<h1>Report</h1><p>Q1 &amp; Q2</p>"
        let (status, body) = post(
            "/api/primitives/document/extract",
            json!({"content_type": "text/html", "content_base64": "PGgxPlJlcG9ydDwvaDE+PHA+UTEgJmFtcDsgUTI8L3A+"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"content_type": "text/html", "text": "# Report\n\nQ1 & Q2"})
        );

        let (status, body) = post(
            "/api/primitives/document/extract",
            json!({
                "@odata.type": "#microsoft.graph.fileAttachment", "id": "AAMkAtt", "name": "notes.txt",
                "contentType": "text/plain", "size": 11, "isInline": false, "contentBytes": "aGVsbG8gd29ybGQ=",
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"content_type": "text/plain", "text": "hello world"})
        );
    }

    #[tokio::test]
    async fn broken_and_unsupported_documents_are_422() {
        // "%PDF-1.7\nbroken"
        let (status, body) = post(
            "/api/primitives/document/extract",
            json!({"content_type": "application/pdf", "content_base64": "JVBERi0xLjcKYnJva2Vu"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "broken_document");

        let (status, body) = post(
            "/api/primitives/document/extract",
            json!({"content_type": "image/png", "content_base64": "iVBORw0KGgo="}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "unsupported_document");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("image/png")));
    }

    #[tokio::test]
    async fn malformed_requests_are_400_with_the_error_body() {
        for (uri, raw, expected) in [
            (
                "/api/primitives/email/parse",
                "{not json",
                "the body is not valid JSON",
            ),
            (
                "/api/primitives/email/classify",
                "",
                "the body is not valid JSON",
            ),
            (
                "/api/primitives/email/parse",
                r#"{"subject":"no body"}"#,
                "missing `body`",
            ),
            (
                "/api/primitives/email/parse",
                r#"{"body":"x","body_type":"rtf"}"#,
                "`body_type` must be",
            ),
            (
                "/api/primitives/document/extract",
                r#"{"content_type":"text/plain"}"#,
                "missing `content_base64`",
            ),
            (
                "/api/primitives/document/extract",
                r#"{"content_base64":"!!"}"#,
                "not valid base64",
            ),
        ] {
            let (status, body) = post_raw(uri, raw.to_string()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {raw}");
            assert_eq!(body["error"]["code"], "bad_request");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(expected), "{raw}: {message}");
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_413_with_the_error_body() {
        let (status, body) = post_raw(
            "/api/primitives/email/parse",
            vec![b' '; EMAIL_BODY_LIMIT + 1],
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
}
