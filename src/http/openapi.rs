//! `GET /openapi.json`: the HTTP API described from the code (SPEC §3.2).
//!
//! Every route is added through utoipa-axum's `routes!`, which puts the handler in the router
//! and its `#[utoipa::path]` description in the document in one step, so the router cannot
//! take a route the document lacks, nor the other way round (`tests/it/openapi.rs` also checks
//! both against SPEC §3). What is the same for a whole group of routes is added here from the
//! group itself rather than written on every handler: the bearer key (with its 401 and 403)
//! on every route behind `edge::check_api_key`, and the 400 that any route with a path
//! parameter answers for a segment that does not decode; and operation ids made unique by
//! their tag (`credentials_create`, `targets_create`: the handlers' own names repeat across
//! modules). The document is built once, when the router is, and served as it was serialized
//! then.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::error::ErrorBody;

/// The name of the bearer-key security scheme.
const API_KEY: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "relay365",
        description = "Microsoft 365 mailboxes as reliable, instant, signed events for n8n. \
            Every error answers `{\"error\": {\"code\", \"message\"}}` (ErrorBody).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "graph", description = "Called by Microsoft Graph: no key"),
        (name = "health", description = "Liveness, readiness, the actor tree, metrics"),
        (name = "credentials", description = "One per mailbox connection"),
        (name = "subscriptions", description = "Graph change-notification subscriptions"),
        (name = "events", description = "What was received, and what became of it"),
        (name = "targets", description = "Where events are delivered"),
        (name = "deliveries", description = "Each event's POST to each target"),
        (name = "primitives", description = "Parse, classify, extract: for n8n's HTTP Request nodes"),
        (name = "debug", description = "Fault injection (RELAY365_DEBUG_ENDPOINTS=true only)"),
    )
)]
struct ApiDoc;

/// The document's head: info, tags, the error schema and the bearer-key scheme.
pub fn base() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("RELAY365_API_KEY"))
                    .build(),
            ),
        );
    }
    doc
}

/// Marks every operation of `doc` as taking the bearer key, with the answers of its guard.
pub fn behind_api_key(doc: &mut Document) {
    for op in operations(doc) {
        op.security = Some(vec![SecurityRequirement::new(
            API_KEY,
            Vec::<String>::new(),
        )]);
        add_error(op, "401", "No or a wrong API key");
        add_error(
            op,
            "403",
            "No API key is configured and the request names a non-loopback host",
        );
    }
}

/// The document route itself.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The serialized document, shared by every request.
#[derive(Clone)]
pub struct Served(Arc<str>);

impl Served {
    /// Finishes `doc` (the answers every route shares) and serializes it.
    pub fn new(doc: &Document) -> Served {
        let mut doc = doc.clone();
        // The handlers' names repeat across modules (`create`, `list`): the tag makes them
        // unique. One handler may serve two methods (the webhook's GET and POST): its id then
        // names the method too.
        let tagged = |op: &Operation| {
            let tag = op.tags.as_ref().and_then(|t| t.first())?;
            Some(format!("{tag}_{}", op.operation_id.as_ref()?))
        };
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for op in operations(&mut doc) {
            if let Some(id) = tagged(op) {
                *seen.entry(id).or_default() += 1;
            }
        }
        for (method, op) in methods(&mut doc) {
            if let Some(id) = tagged(op) {
                op.operation_id = Some(match seen.get(&id) {
                    Some(n) if *n > 1 => format!("{id}_{method}"),
                    _ => id,
                });
            }
            let has_path_params = op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == ParameterIn::Path);
            if has_path_params {
                add_error(op, "400", "A path segment that is not valid");
            }
        }
        // Serializing a document of plain strings and maps cannot fail.
        let json = doc.to_json().unwrap_or_default();
        Served(json.into())
    }
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses(
    (status = 200, description = "This document", content_type = "application/json", body = Object),
))]
async fn openapi_json(Extension(doc): Extension<Served>) -> Response {
    ([(CONTENT_TYPE, "application/json")], doc.0.to_string()).into_response()
}

/// A query filter that takes one of `words`, or nothing (an empty value is no filter: forms
/// and n8n's HTTP Request node send empty parameters).
pub fn word_filter<'a>(words: impl IntoIterator<Item = &'a str>) -> Object {
    let mut values = vec![String::new()];
    values.extend(words.into_iter().map(str::to_string));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// The `limit` of a list: 1 to [`super::events::MAX_LIMIT`], or nothing (the default).
pub fn limit_filter() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(super::events::MAX_LIMIT)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([""])),
            )
            .build(),
    )
}

/// Every operation of every path.
fn operations(doc: &mut Document) -> impl Iterator<Item = &mut Operation> {
    methods(doc).map(|(_, op)| op)
}

/// Every operation of every path, with its method.
fn methods(doc: &mut Document) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            ("get", item.get.as_mut()),
            ("put", item.put.as_mut()),
            ("post", item.post.as_mut()),
            ("delete", item.delete.as_mut()),
            ("options", item.options.as_mut()),
            ("head", item.head.as_mut()),
            ("patch", item.patch.as_mut()),
            ("trace", item.trace.as_mut()),
        ]
        .into_iter()
        .filter_map(|(method, op)| op.map(|op| (method, op)))
    })
}

/// Adds an error answer (the ErrorBody schema) unless the operation describes that status.
fn add_error(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        });
}
