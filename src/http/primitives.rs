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
use axum::Json;
use relay365_actors::primitives::{
    self, Classification, DocumentInput, EmailInput, ExtractError, Extracted, Parsed,
    PrimitiveError,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};

/// The largest mail `email/parse` and `email/classify` take (a Graph message with a big HTML
/// body, inline images excluded).
pub const EMAIL_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The largest `document/extract` request: base64 of a 25 MiB document is 33.4 MiB, plus the
/// rest of the JSON.
pub const EXTRACT_BODY_LIMIT: usize = 35 * 1024 * 1024;

/// The primitives' routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(parse_email).layer(DefaultBodyLimit::max(EMAIL_BODY_LIMIT)))
        .routes(routes!(classify_email).layer(DefaultBodyLimit::max(EMAIL_BODY_LIMIT)))
        .routes(routes!(extract_document).layer(DefaultBodyLimit::max(EXTRACT_BODY_LIMIT)))
}

/// A mail for `email/parse` and `email/classify`: the short form, or a Graph message as Graph
/// returns it. (A description of the body: the handlers read it as JSON themselves, so that
/// either form is told apart and a wrong one answers a clear 400.)
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EmailRequest {
    Short(ShortEmail),
    Graph(GraphMessage),
}

/// `{"subject", "body", "body_type", "from"?}`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ShortEmail {
    subject: Option<String>,
    body: String,
    /// `html` or `text` (default `text`).
    #[schema(example = "html")]
    body_type: Option<String>,
    #[schema(schema_with = sender)]
    from: Option<Value>,
}

/// A Graph message (more members are allowed and read where they matter:
/// `internetMessageHeaders`, `importance`, `@odata.type`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct GraphMessage {
    subject: Option<String>,
    body: GraphBody,
    #[schema(schema_with = sender)]
    from: Option<Value>,
}

/// `from`: an address, or Graph's `{"emailAddress": {"name", "address"}}` (or its inner
/// object, `address` or `email`), or null.
fn sender() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some(
                "An address, or Graph's `{\"emailAddress\": {\"name\", \"address\"}}`",
            ))
            .build(),
    )
}

/// Graph's `body`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct GraphBody {
    /// `html` or `text`.
    content_type: Option<String>,
    content: Option<String>,
}

/// A document for `document/extract`: base64 with its type, or a Graph fileAttachment.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum DocumentRequest {
    Base64(Base64Document),
    FileAttachment(FileAttachment),
}

/// `{"content_type", "content_base64", "name"?}`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Base64Document {
    /// PDF, DOCX, HTML or plain text; sniffed from the bytes when empty.
    #[schema(example = "application/pdf")]
    content_type: Option<String>,
    content_base64: String,
    name: Option<String>,
}

/// A Graph `#microsoft.graph.fileAttachment`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct FileAttachment {
    #[serde(rename = "@odata.type")]
    #[schema(example = "#microsoft.graph.fileAttachment")]
    odata_type: Option<String>,
    name: Option<String>,
    content_type: Option<String>,
    content_bytes: String,
}

/// Parses a mail: plain text, the reply and the quoted part, signature, links, emails, phones,
/// dates, amounts.
#[utoipa::path(post, path = "/api/primitives/email/parse", tag = "primitives",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "The parsed mail", body = Parsed),
        (status = 400, description = "Not JSON, or not a mail", body = ErrorBody),
        (status = 413, description = "Over 10 MiB", body = ErrorBody),
    ))]
async fn parse_email(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Parsed>> {
    let body = read_body(body)?;
    blocking(move || {
        let input = email_input(&body)?;
        Ok(Json(primitives::parse(&input)))
    })
    .await
}

/// Classifies a mail: intent, urgency, auto-reply, newsletter, language, with the signals that
/// explain each decision.
#[utoipa::path(post, path = "/api/primitives/email/classify", tag = "primitives",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "The classification", body = Classification),
        (status = 400, description = "Not JSON, or not a mail", body = ErrorBody),
        (status = 413, description = "Over 10 MiB", body = ErrorBody),
    ))]
async fn classify_email(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Classification>> {
    let body = read_body(body)?;
    blocking(move || {
        let input = email_input(&body)?;
        Ok(Json(primitives::classify(&input)))
    })
    .await
}

/// The text of a PDF, DOCX, HTML or plain-text document.
#[utoipa::path(post, path = "/api/primitives/document/extract", tag = "primitives",
    request_body = DocumentRequest,
    responses(
        (status = 200, description = "The document's text", body = Extracted),
        (status = 400, description = "Not JSON, or not a document", body = ErrorBody),
        (status = 413, description = "Over 25 MiB", body = ErrorBody),
        (status = 422, description = "Broken or unsupported (`broken_document`, `unsupported_document`, …)", body = ErrorBody),
    ))]
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
        let (router, _) = router::<()>().split_for_parts();
        let response = router.oneshot(request).await.expect("infallible");
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
