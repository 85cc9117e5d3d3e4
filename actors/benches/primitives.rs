//! Speed of the business primitives.
//!
//! `cargo bench -p relay365-actors --bench primitives`
//!
//! Targets (medians, release build): parse + classify of a 50 KB HTML mail ≤ 1 ms; text of a
//! 10-page PDF ≤ 50 ms. The measured figures are in docs/primitives.md.

#[path = "../tests/fixtures/primitives/documents.rs"]
mod documents;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use relay365_actors::primitives::{classify, email_primitives, extract, parse, EmailInput};
use serde_json::json;

fn email(c: &mut Criterion) {
    let html = documents::html_mail_50k();
    let input = EmailInput::from_json(&json!({
        "subject": "Northwind Weekly: 120 stories",
        "body": {"contentType": "html", "content": html},
        "from": {"emailAddress": {"name": "Northwind", "address": "news@northwind.example"}},
        "internetMessageHeaders": [{"name": "List-Unsubscribe", "value": "<https://news.northwind.example/u>"}],
    }))
    .expect("valid mail");

    let mut group = c.benchmark_group("email_50kb_html");
    group.bench_function("parse_and_classify", |b| {
        b.iter(|| email_primitives(black_box(&input)))
    });
    group.bench_function("parse", |b| b.iter(|| parse(black_box(&input))));
    group.bench_function("classify", |b| b.iter(|| classify(black_box(&input))));
    group.finish();
}

fn pdf(c: &mut Criterion) {
    let pdf = documents::ten_page_pdf();
    let mut group = c.benchmark_group("document");
    group.bench_function("extract_pdf_10_pages", |b| {
        b.iter(|| extract("application/pdf", black_box(&pdf)).expect("readable PDF"))
    });
    let docx = documents::notes_docx();
    group.bench_function("extract_docx", |b| {
        b.iter(|| {
            extract(
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                black_box(&docx),
            )
            .expect("readable DOCX")
        })
    });
    group.finish();
}

criterion_group!(benches, email, pdf);
criterion_main!(benches);
