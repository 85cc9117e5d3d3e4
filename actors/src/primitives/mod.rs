//! Business primitives: parse, classify and extract, for n8n.
//!
//! Pure functions over a mail or a document: no store, no network, no actors, no clocks. The
//! same input always gives the same output, so a result can be explained by its input alone
//! (`classify` lists its evidence in `signals`).
//!
//! They are used twice:
//! - by the HTTP endpoints `POST /api/primitives/{email/parse, email/classify,
//!   document/extract}` (SPEC §3.3), which n8n calls directly;
//! - by processing, through [`enrich`], whose result rides along in every delivered event
//!   (`primitives` and `attachments`, SPEC §4).
//!
//! Layout:
//! - [`input`]: [`EmailInput`] (a Graph message, the short form or a normalized message) and
//!   [`DocumentInput`] (`{"content_type","content_base64"}` or a Graph fileAttachment);
//! - [`parse`](mod@parse): body → plain text, reply / quoted / signature (by segments of
//!   lines, `parse/quote.rs` and `parse/signature.rs`), links, emails, phones, dates, amounts;
//! - [`classify`](mod@classify): intent, urgency, auto-reply and newsletter (headers, subject
//!   and body wording), language (lingua, loaded once: [`warm_up`]), signals;
//! - [`extract`](mod@extract): text from PDF, DOCX, HTML and plain text, with size and time caps;
//! - [`enrich`](mod@enrich): the one entry point processing calls.
//!
//! `docs/primitives.md` describes the contract for users; `accuracy` (tests) measures reply,
//! signature, language and auto-reply on the corpus in `actors/tests/fixtures/primitives/`.

pub mod classify;
pub mod enrich;
pub mod extract;
mod html;
pub mod input;
pub mod parse;

pub use classify::{classify, classify_parsed, warm_up, Classification, Intent, Signal, Urgency};
pub use enrich::{
    email_primitives, enrich, enrich_input, AttachmentBytes, AttachmentText, Enrichment,
    MAX_ATTACHMENT_TEXT_CHARS,
};
pub use extract::{
    extract, extract_named, extract_with_timeout, DocumentKind, ExtractError, Extracted,
    EXTRACT_TIMEOUT, MAX_DOCUMENT_BYTES,
};
pub use input::{
    is_event_message_type, BodyType, DocumentInput, EmailInput, Header, PrimitiveError,
};
pub use parse::{parse, Amount, Parsed};

#[cfg(test)]
mod accuracy;
#[cfg(test)]
mod tests;
