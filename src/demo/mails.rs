//! The mail `relay365 demo` sends: one of each kind a business inbox sees every day, so the
//! enrichment has something to show (an invoice with amounts and a PDF, a reply chain whose
//! quoted part is split off, an out-of-office notice in German, a newsletter). Kept apart
//! from the demo's flow so the flow reads top to bottom.

use base64::Engine as _;

use crate::sim::{AddressInput, AttachmentInput, NewMail};

/// The demo's mailbox (one of the simulator's default mailboxes).
pub const MAILBOX: &str = "alice@sim.test";

fn addr(text: &str) -> AddressInput {
    AddressInput::Text(text.to_string())
}

fn mail(subject: &str, from: &str, body: String, body_type: &str) -> NewMail {
    NewMail {
        subject: subject.into(),
        body,
        body_type: Some(body_type.into()),
        from: Some(addr(from)),
        to: vec![addr(&format!("Alice Martin <{MAILBOX}>"))],
        ..Default::default()
    }
}

/// The mails, in the order they are sent. The first one is the invoice: the demo's Graph 429
/// lands on its fetch.
pub fn all() -> Vec<NewMail> {
    vec![invoice(), reply_chain(), auto_reply(), newsletter()]
}

fn invoice() -> NewMail {
    let mut m = mail(
        "Invoice INV-2026-0142 from Contoso Supplies",
        "Contoso Billing <billing@contoso-supplies.example>",
        "<p>Dear Alice,</p>\
         <p>please find attached invoice INV-2026-0142 for the October delivery of 40 ergonomic \
         chairs. The amount due is <b>EUR 1,250.00</b>, payment due by 2026-12-15.</p>\
         <p>Kind regards,<br>Maria Lopez<br>Accounts Receivable, Contoso Supplies<br>\
         +49 30 1234 5678</p>"
            .into(),
        "html",
    );
    m.attachments = vec![AttachmentInput {
        name: "INV-2026-0142.pdf".into(),
        content_type: Some("application/pdf".into()),
        content_base64: Some(base64::engine::general_purpose::STANDARD.encode(invoice_pdf())),
        content: None,
        is_inline: false,
    }];
    m
}

fn reply_chain() -> NewMail {
    mail(
        "RE: Q4 delivery schedule",
        "Tom Becker <tom.becker@fabrikam.example>",
        "<div>Hi Alice,</div>\
         <div>could you confirm the new slot on Thursday at 10:00? The truck can take all \
         three pallets.</div>\
         <div>Thanks, Tom</div>\
         <hr style=\"display:inline-block;width:98%\">\
         <div id=\"divRplyFwdMsg\"><b>From:</b> Alice Martin &lt;alice@sim.test&gt;<br>\
         <b>Sent:</b> Monday, November 30, 2026 09:12<br>\
         <b>To:</b> Tom Becker &lt;tom.becker@fabrikam.example&gt;<br>\
         <b>Subject:</b> Q4 delivery schedule</div>\
         <div>Hello Tom, can we move the delivery of order PO-7781 to next week?</div>"
            .into(),
        "html",
    )
}

fn auto_reply() -> NewMail {
    mail(
        "Automatische Antwort: Invoice INV-2026-0142 from Contoso Supplies",
        "Jonas Weber <jonas.weber@northwind.example>",
        "Vielen Dank für Ihre Nachricht. Ich bin bis zum 7. Dezember nicht im Büro und habe \
         nur eingeschränkt Zugriff auf meine E-Mails. In dringenden Fällen wenden Sie sich \
         bitte an buchhaltung@northwind.example."
            .into(),
        "text",
    )
}

fn newsletter() -> NewMail {
    mail(
        "Your December product update",
        "Woodgrove News <news@woodgrove.example>",
        "<p><a href=\"https://news.woodgrove.example/view?u=8f3a\">View this email in your \
         browser</a></p>\
         <h1>What's new in December</h1>\
         <p>Faster exports, a new dashboard and our year-end webinar on 2026-12-10.</p>\
         <p>You are receiving this email because you signed up at woodgrove.example.\
         <a href=\"https://news.woodgrove.example/unsubscribe?u=8f3a\">Unsubscribe</a></p>"
            .into(),
        "html",
    )
}

/// A one-page PDF invoice, written by hand: five objects (catalog, page tree, page, content
/// stream, the built-in Helvetica font) and a cross-reference table with their byte offsets.
pub fn invoice_pdf() -> Vec<u8> {
    let lines = [
        "Contoso Supplies GmbH - Invoice INV-2026-0142",
        "Date: 2026-11-30    Due: 2026-12-15",
        "40 x Ergonomic chair ErgoPro 300    EUR 1,250.00",
        "Total due: EUR 1,250.00",
        "IBAN DE89 3704 0044 0532 0130 00",
    ];
    let mut content = String::from("BT /F1 12 Tf 72 770 Td 16 TL\n");
    for line in lines {
        content.push_str(&format!(
            "({}) Tj T*\n",
            line.replace('(', "\\(").replace(')', "\\)")
        ));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        table.push_str(&format!("{o:010} 00000 n \n"));
    }
    table.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    pdf.extend_from_slice(table.as_bytes());
    pdf
}
