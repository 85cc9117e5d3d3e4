//! The primitives on realistic mails and documents, each with exact expected results.
//!
//! Mails are Graph message JSON under `actors/tests/fixtures/primitives/`; the PDF and DOCX are
//! built by `documents.rs` there, on every run.

#[path = "../../tests/fixtures/primitives/documents.rs"]
mod documents;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/primitives/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn mail(name: &str) -> EmailInput {
    EmailInput::from_json(&fixture(name)).expect("fixture is a valid mail")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn amount(value: f64, currency: &str, raw: &str) -> Amount {
    Amount {
        value,
        currency: currency.to_string(),
        raw: raw.to_string(),
    }
}

/// `(rule, effect)` of every signal, in order.
fn rules(c: &Classification) -> Vec<(&str, &str)> {
    c.signals
        .iter()
        .map(|s| (s.rule.as_str(), s.effect.as_str()))
        .collect()
}

#[test]
fn html_newsletter() {
    let input = mail("newsletter.json");
    let parsed = parse(&input);
    assert_eq!(
        parsed.text,
        "View this email in your browser\n\
         Northwind Traders\n\
         \n\
         # Northwind Weekly – November 2025\n\
         \n\
         Hello Adele,\n\
         \n\
         Here is what’s new at Northwind Traders this month:\n\
         \n\
         * The spring collection is here\n\
         * Free shipping on orders over $50.00\n\
         * Join our webinar on 4 December 2025 — save your seat\n\
         \n\
         Offer\tPrice\n\
         Coffee sampler\t€24.90\n\
         Tea chest\t€39.00\n\
         \n\
         Shop now\n\
         \n\
         © 2025 Northwind Traders, 1 Harbour Street, Seattle · newsletter@northwind.example\n\
         \n\
         You receive this email because you subscribed at northwind.example. Unsubscribe · Update preferences"
    );
    // <style>, <script>, <title> and the display:none preheader are not text.
    assert!(!["tracking", "margin", "Spring launches"]
        .iter()
        .any(|w| parsed.text.contains(w)));
    assert_eq!(parsed.reply, parsed.text);
    assert_eq!(
        (parsed.quoted.as_str(), parsed.signature.as_str()),
        ("", "")
    );
    assert_eq!(
        parsed.links,
        strings(&[
            "https://news.northwind.example/view/2025-11?u=8f3a",
            "https://www.northwind.example/?utm_source=newsletter",
            "https://www.northwind.example/blog/spring-collection?utm_source=newsletter",
            "https://events.northwind.example/webinar/1204",
            "https://www.northwind.example/shop?utm_source=newsletter",
            "https://news.northwind.example/unsubscribe?u=8f3a",
            "https://news.northwind.example/preferences?u=8f3a",
        ])
    );
    assert_eq!(parsed.emails, strings(&["newsletter@northwind.example"]));
    assert_eq!(parsed.phones, Vec::<String>::new());
    assert_eq!(parsed.dates, strings(&["2025-12-04"]));
    assert_eq!(
        parsed.amounts,
        vec![
            amount(50.0, "USD", "$50.00"),
            amount(24.9, "EUR", "€24.90"),
            amount(39.0, "EUR", "€39.00")
        ]
    );

    let c = classify(&input);
    assert_eq!(c.intent, Intent::Newsletter);
    assert_eq!(c.urgency, Urgency::Low);
    assert!(c.is_newsletter && !c.is_auto_reply);
    assert_eq!(c.language, "en");
    assert_eq!(
        rules(&c),
        vec![
            ("header:list-unsubscribe", "is_newsletter"),
            ("header:precedence", "is_newsletter"),
            ("body:unsubscribe", "is_newsletter"),
            ("body:unsubscribe-link", "is_newsletter"),
            ("body:bulk-marker", "is_newsletter"),
            ("intent:newsletter", "intent:newsletter"),
            ("urgency:bulk", "urgency:low"),
            ("language:whatlang", "language:en"),
        ]
    );
}

#[test]
fn outlook_reply_chain() {
    let input = mail("outlook-reply.json");
    let parsed = parse(&input);
    assert_eq!(
        parsed.reply,
        "Hi Megan,\n\nThursday at 10:00 works for me. I booked room 4.12 and sent you the invite; \
         the draft agenda is on the team site."
    );
    assert_eq!(
        parsed.signature,
        "Best regards,\nAlex Wilber\nSales Manager | Contoso Ltd.\nTel: +1 425 555 0109"
    );
    assert_eq!(
        parsed.quoted,
        "From: Megan Bowen <MeganB@contoso.com>\n\
         Sent: Tuesday, March 4, 2025 9:12 AM\n\
         To: Alex Wilber <AlexW@contoso.com>\n\
         Subject: Q2 pipeline review\n\
         \n\
         Hi Alex,\n\
         \n\
         Could we meet this week to go through the Q2 pipeline? The numbers are in pipeline.xlsx.\n\
         \n\
         Thanks,\n\
         \n\
         Megan"
    );
    assert_eq!(
        parsed.text,
        format!(
            "{}\n\n{}\n\n{}",
            parsed.reply, parsed.signature, parsed.quoted
        )
    );
    assert_eq!(
        parsed.links,
        strings(&[
            "https://contoso.sharepoint.com/sites/Sales/Shared%20Documents/Q2-agenda.docx",
            "https://contoso.sharepoint.com/sites/Sales/pipeline.xlsx",
        ])
    );
    assert_eq!(
        parsed.emails,
        strings(&["MeganB@contoso.com", "AlexW@contoso.com"])
    );
    assert_eq!(parsed.phones, strings(&["+1 425 555 0109"]));
    assert_eq!(parsed.dates, strings(&["2025-03-04"]));
    assert_eq!(parsed.amounts, vec![]);

    let c = classify(&input);
    assert_eq!(
        (c.intent, c.urgency, c.is_auto_reply, c.is_newsletter),
        (Intent::Meeting, Urgency::Normal, false, false)
    );
    assert_eq!(c.language, "en");
    // Only the new part counts: "Could we meet…?" in the quote is not a question to answer.
    assert_eq!(
        c.signals
            .iter()
            .map(|s| (s.rule.as_str(), s.evidence.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("body:keyword", "invite"),
            ("body:keyword", "agenda"),
            ("intent:highest-score", "meeting=2"),
            ("urgency:default", "no urgency rule matched"),
            ("language:lingua", "en confidence=0.98"),
        ]
    );
}

#[test]
fn outlook_desktop_reply_in_word_html() {
    // Outlook for Windows writes Word HTML: MsoNormal paragraphs, <o:p> and a bordered div
    // above the header block.
    let html = r##"<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><style><!--
p.MsoNormal {margin:0cm; font-size:11.0pt;} --></style></head><body lang=DE link="#0563C1">
<div class=WordSection1><p class=MsoNormal><span lang=EN-US>Hello Jan,<o:p></o:p></span></p>
<p class=MsoNormal><span lang=EN-US><o:p>&nbsp;</o:p></span></p>
<p class=MsoNormal><span lang=EN-US>Order 4711 has shipped, tracking number 1Z999AA10123456784.<o:p></o:p></span></p>
<p class=MsoNormal><span lang=EN-US><o:p>&nbsp;</o:p></span></p>
<p class=MsoNormal><span lang=EN-US>Kind regards<br>Lena<o:p></o:p></span></p>
<div><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>
<p class=MsoNormal><b><span lang=EN-US>From:</span></b><span lang=EN-US> Jan Novak &lt;jan@tailspin.example&gt; <br><b>Sent:</b> Friday, 7 March 2025 16:20<br><b>To:</b> Lena &lt;lena@contoso.com&gt;<br><b>Subject:</b> Order 4711<o:p></o:p></span></p></div></div>
<p class=MsoNormal><span lang=EN-US><o:p>&nbsp;</o:p></span></p>
<p class=MsoNormal>Where is my order?<o:p></o:p></p></div></body></html>"##;
    let input = EmailInput::from_json(&json!({
        "subject": "RE: Order 4711", "body": {"contentType": "html", "content": html}
    }))
    .expect("valid");
    let parsed = parse(&input);
    assert_eq!(
        parsed.reply,
        "Hello Jan,\n\nOrder 4711 has shipped, tracking number 1Z999AA10123456784."
    );
    assert_eq!(parsed.signature, "Kind regards\nLena");
    assert_eq!(
        parsed.quoted,
        "From: Jan Novak <jan@tailspin.example>\nSent: Friday, 7 March 2025 16:20\nTo: Lena <lena@contoso.com>\n\
         Subject: Order 4711\n\nWhere is my order?"
    );
    assert_eq!(parsed.dates, strings(&["2025-03-07"]));
    assert_eq!(
        parsed.emails,
        strings(&["jan@tailspin.example", "lena@contoso.com"])
    );
    let c = classify(&input);
    assert_eq!(c.intent, Intent::Order);
    assert_eq!(
        c.signals
            .iter()
            .find(|s| s.rule == "intent:highest-score")
            .map(|s| s.evidence.as_str()),
        Some("order=5")
    );
}

#[test]
fn plain_text_reply_with_attribution_and_quote_markers() {
    let input = EmailInput::from_json(&json!({
        "subject": "Re: contract",
        "body": "Sure, I'll send the signed copy today.\n\nCheers,\nTom\n\n\
                 On Mon, 3 Mar 2025 at 17:04, Anna Berg <anna@example.org> wrote:\n\
                 > Could you send me the signed contract?\n> Anna",
        "body_type": "text",
    }))
    .expect("valid");
    let parsed = parse(&input);
    assert_eq!(parsed.reply, "Sure, I'll send the signed copy today.");
    assert_eq!(parsed.signature, "Cheers,\nTom");
    assert_eq!(
        parsed.quoted,
        "On Mon, 3 Mar 2025 at 17:04, Anna Berg <anna@example.org> wrote:\n\
         > Could you send me the signed contract?\n> Anna"
    );
    assert_eq!(parsed.emails, strings(&["anna@example.org"]));
    assert_eq!(parsed.dates, strings(&["2025-03-03"]));
}

#[test]
fn out_of_office_reply() {
    let input = mail("out-of-office.json");
    let parsed = parse(&input);
    assert_eq!(
        parsed.reply,
        "Thank you for your message. I am out of the office until 14 March 2025 with limited access to email.\n\
         \n\
         For anything that cannot wait, please contact Patti Fernandez at PattiF@contoso.com or +1 425 555 0142."
    );
    // The sender's name closing the text is her signature.
    assert_eq!(parsed.signature, "Megan Bowen");
    assert_eq!(parsed.dates, strings(&["2025-03-14"]));
    assert_eq!(parsed.emails, strings(&["PattiF@contoso.com"]));
    assert_eq!(parsed.phones, strings(&["+1 425 555 0142"]));

    let c = classify(&input);
    assert_eq!(
        (c.intent, c.urgency, c.is_auto_reply, c.is_newsletter),
        (Intent::AutoReply, Urgency::Low, true, false)
    );
    assert_eq!(c.language, "en");
    assert_eq!(
        rules(&c),
        vec![
            ("header:auto-submitted", "is_auto_reply"),
            ("header:x-auto-response-suppress", "is_auto_reply"),
            ("subject:auto-reply", "is_auto_reply"),
            ("body:out-of-office", "is_auto_reply"),
            ("intent:auto-reply", "intent:auto_reply"),
            ("urgency:bulk", "urgency:low"),
            ("language:whatlang", "language:en"),
        ]
    );
    // Auto-Submitted: no is an ordinary mail.
    let human = EmailInput::from_json(&json!({
        "subject": "Lunch", "body": "Lunch at noon?", "headers": {"Auto-Submitted": "no"}
    }))
    .expect("valid");
    assert!(!classify(&human).is_auto_reply);
}

#[test]
fn invoice_mail_in_german() {
    let input = mail("invoice.json");
    let parsed = parse(&input);
    assert_eq!(
        parsed.reply,
        "Sehr geehrte Damen und Herren,\n\
         \n\
         anbei erhalten Sie unsere Rechnung RE-2025-0142 vom 31.03.2025 über 1.234,50 € (netto 1.037,39 EUR zzgl. 19 % MwSt.).\n\
         \n\
         Bitte überweisen Sie den Betrag bis zum 30.04.2025 auf das unten genannte Konto. Die Rechnung finden Sie auch im Kundenportal unter https://portal.fabrikam.example/rechnungen/RE-2025-0142.\n\
         \n\
         Bei Rückfragen erreichen Sie uns unter buchhaltung@fabrikam.example."
    );
    assert_eq!(
        parsed.signature,
        "Mit freundlichen Grüßen\n\nJulia Schneider\nBuchhaltung\nFabrikam GmbH\nTel.: +49 89 1234567-0\n\
         IBAN: DE89 3704 0044 0532 0130 00"
    );
    assert_eq!(parsed.quoted, "");
    assert_eq!(
        parsed.links,
        strings(&["https://portal.fabrikam.example/rechnungen/RE-2025-0142"])
    );
    assert_eq!(parsed.emails, strings(&["buchhaltung@fabrikam.example"]));
    // The IBAN and the invoice number are not phone numbers.
    assert_eq!(parsed.phones, strings(&["+49 89 1234567-0"]));
    assert_eq!(parsed.dates, strings(&["2025-03-31", "2025-04-30"]));
    assert_eq!(
        parsed.amounts,
        vec![
            amount(1234.5, "EUR", "1.234,50 €"),
            amount(1037.39, "EUR", "1.037,39 EUR")
        ]
    );

    let c = classify(&input);
    assert_eq!(
        (c.intent, c.urgency, c.language.as_str()),
        (Intent::Invoice, Urgency::Normal, "de")
    );
    assert_eq!(
        c.signals
            .iter()
            .find(|s| s.rule == "intent:highest-score")
            .map(|s| s.evidence.as_str()),
        Some("invoice=3 request=1")
    );
}

#[test]
fn parse_output_has_exactly_the_contract_fields() {
    let value = serde_json::to_value(parse(&mail("invoice.json"))).expect("serializable");
    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "text",
        "reply",
        "quoted",
        "signature",
        "links",
        "emails",
        "phones",
        "dates",
        "amounts",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(
        value["amounts"][0],
        json!({"value": 1234.5, "currency": "EUR", "raw": "1.234,50 €"})
    );
    let c = serde_json::to_value(classify(&mail("invoice.json"))).expect("serializable");
    assert_eq!(c["intent"], "invoice");
    assert_eq!(c["urgency"], "normal");
    assert_eq!(
        c["signals"][0],
        json!({"rule": "subject:keyword", "effect": "intent:invoice", "evidence": "rechnung"})
    );
}

#[test]
fn pdf_with_known_text() {
    let extracted = extract("application/pdf", &documents::invoice_pdf()).expect("readable PDF");
    assert_eq!(
        extracted,
        Extracted {
            content_type: "application/pdf".into(),
            text: "Fabrikam GmbH - Invoice RE-2025-0142\nDate: 2025-03-31\n\
                   Consulting services March 2025: EUR 1,037.39\nTotal due: EUR 1,234.50"
                .into(),
            pages: Some(1),
        }
    );
    let ten = extract("application/pdf", &documents::ten_page_pdf()).expect("readable PDF");
    assert_eq!(ten.pages, Some(10));
    assert_eq!(ten.text.lines().count(), 10 * 40 + 9);
    assert!(ten
        .text
        .ends_with("Page 10 line 40: the quarterly report lists revenue, costs and the outlook."));
}

#[test]
fn docx_with_known_text() {
    let extracted =
        extract("application/octet-stream", &documents::notes_docx()).expect("readable DOCX");
    assert_eq!(
        extracted,
        Extracted {
            content_type: "application/vnd.openxmlformats-officedocument.wordprocessingml.document".into(),
            text: "Meeting notes – Q2 pipeline review\nAttendees: Megan Bowen & Alex Wilber\nNext review on 2025-04-10.\n\
                   Deal\tStage\tValue\nFabrikam\tProposal\t€48,000\nTailspin\tWon\t€12,500"
                .into(),
            pages: None,
        }
    );
    // A zip that is not a DOCX.
    let not_docx = {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .expect("entry");
        zip.write_all(b"hi").expect("write");
        zip.finish().expect("finish").into_inner()
    };
    let err = extract(documents_docx_type(), &not_docx).expect_err("no document part");
    assert_eq!(err.code(), "broken_document");
    assert!(err.to_string().contains("no word/document.xml"), "{err}");
}

fn documents_docx_type() -> &'static str {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
}

#[tokio::test]
async fn enrich_gives_primitives_and_attachment_texts() {
    let message = fixture("invoice.json");
    let long_text = "x".repeat(MAX_ATTACHMENT_TEXT_CHARS + 10);
    let attachments = vec![
        AttachmentBytes {
            id: "AAMkAtt1".into(),
            name: "RE-2025-0142.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: documents::invoice_pdf(),
        },
        AttachmentBytes {
            id: "AAMkAtt2".into(),
            name: "notes.docx".into(),
            content_type: "application/octet-stream".into(),
            bytes: documents::notes_docx(),
        },
        AttachmentBytes {
            id: "AAMkAtt3".into(),
            name: "logo.png".into(),
            content_type: "image/png".into(),
            bytes: b"\x89PNG\r\n\x1a\n".to_vec(),
        },
        AttachmentBytes {
            id: "AAMkAtt4".into(),
            name: "export.csv".into(),
            content_type: "text/csv".into(),
            bytes: long_text.clone().into_bytes(),
        },
    ];
    let enrichment = enrich(&message, &attachments).await;

    let input = EmailInput::from_json(&message).expect("valid");
    assert_eq!(
        enrichment.primitives,
        json!({"parse": parse(&input), "classify": classify(&input)})
    );
    assert_eq!(enrichment.primitives["classify"]["intent"], "invoice");

    let delivered = serde_json::to_value(&enrichment.attachments).expect("serializable");
    let pdf_size = attachments[0].bytes.len();
    let docx_size = attachments[1].bytes.len();
    assert_eq!(
        delivered[0],
        json!({
            "id": "AAMkAtt1", "name": "RE-2025-0142.pdf", "content_type": "application/pdf", "size": pdf_size,
            "text": "Fabrikam GmbH - Invoice RE-2025-0142\nDate: 2025-03-31\nConsulting services March 2025: EUR 1,037.39\nTotal due: EUR 1,234.50",
            "text_truncated": false,
        })
    );
    assert_eq!(delivered[1]["size"], docx_size);
    assert_eq!(delivered[1]["content_type"], "application/octet-stream");
    assert!(delivered[1]["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("Meeting notes – Q2 pipeline review\n")));
    assert_eq!(
        delivered[2],
        json!({
            "id": "AAMkAtt3", "name": "logo.png", "content_type": "image/png", "size": 8,
            "text": null, "text_truncated": false, "text_error": "unsupported_document",
        })
    );
    assert_eq!(delivered[3]["text_truncated"], true);
    assert_eq!(delivered[3]["text"], long_text[..MAX_ATTACHMENT_TEXT_CHARS]);

    // A message without a body still gets its primitives.
    let bare = enrich(&json!({"id": "AAMk", "subject": "Hello"}), &[]).await;
    assert_eq!(bare.primitives["parse"]["text"], "");
    assert_eq!(bare.primitives["classify"]["intent"], "other");
    assert!(bare.attachments.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: arbitrary and mutated bytes never make an extractor or the parser panic.
// ---------------------------------------------------------------------------------------------

const KINDS: [&str; 5] = [
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "text/html",
    "text/plain",
    "",
];

fn fuzz_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid document with a few bytes overwritten, cut short or with junk inserted.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    (
        prop::collection::vec((0..len, any::<u8>()), 1..8),
        prop::option::of(0..len),
        prop::option::of((0..len, prop::collection::vec(any::<u8>(), 1..16))),
    )
        .prop_map(move |(flips, cut, insert)| {
            let mut bytes = base.clone();
            for (at, byte) in flips {
                bytes[at] = byte;
            }
            if let Some((at, junk)) = insert {
                bytes.splice(at..at, junk);
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.max(1));
            }
            bytes
        })
}

/// Text mixed with the markup and patterns the parser reacts to.
fn html_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "\\PC{0,24}",
        Just("<p>".to_string()),
        Just("</p>".to_string()),
        Just("<table><tr><td>".to_string()),
        Just("</td><td colspan=\"3\">".to_string()),
        Just("<blockquote>".to_string()),
        Just("<a href=\"https://x.example/a\">".to_string()),
        Just("</a>".to_string()),
        Just("<br>".to_string()),
        Just("\n> ".to_string()),
        Just("\nFrom: a\nSent: b\n".to_string()),
        Just("€1.234,5".to_string()),
        Just("+49 30 123".to_string()),
        Just("31.12.2025".to_string()),
        Just("&amp;&#x1F600;&bogus;".to_string()),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

fn assert_no_panic(content_type: &str, bytes: &[u8]) {
    let outcome = std::panic::catch_unwind(|| extract(content_type, bytes));
    match outcome {
        Ok(Ok(extracted)) => assert!(!extracted.content_type.is_empty()),
        Ok(Err(err)) => assert!(!err.code().is_empty()),
        Err(_) => panic!(
            "extract({content_type:?}) panicked on {} bytes",
            bytes.len()
        ),
    }
}

proptest! {
    #![proptest_config(fuzz_config(64))]

    #[test]
    fn extractors_survive_arbitrary_bytes(kind in 0..KINDS.len(), bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        assert_no_panic(KINDS[kind], &bytes);
    }

    #[test]
    fn email_parse_survives_arbitrary_html(body in html_soup(), html in any::<bool>()) {
        let input = EmailInput { body, body_type: if html { BodyType::Html } else { BodyType::Text }, ..EmailInput::default() };
        let parsed = parse(&input);
        prop_assert!(parsed.reply.len() <= parsed.text.len());
        let _ = classify(&input);
    }
}

proptest! {
    #![proptest_config(fuzz_config(48))]

    #[test]
    fn pdf_extractor_survives_mutated_pdfs(bytes in mutated(documents::invoice_pdf())) {
        assert_no_panic("application/pdf", &bytes);
    }

    #[test]
    fn docx_extractor_survives_mutated_docx(bytes in mutated(documents::notes_docx())) {
        assert_no_panic(documents_docx_type(), &bytes);
    }
}
