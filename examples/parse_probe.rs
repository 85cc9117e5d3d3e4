//! Parse probe: the notification parser alone, in this process, on the worst 1 MiB bodies of
//! `edge_probe` (the same bodies, without HTTP, the server or its other work). A benchmark for
//! a person to run (docs/benchmarks.md, issue 9), never a test.
//!
//! ```sh
//! cargo build --release --example parse_probe
//! target/release/examples/parse_probe [NAME_PART]   # only the bodies whose name has it
//! ```
//!
//! Prints the median and the fastest of 60 parses of each body.
#![allow(clippy::unwrap_used)]
use std::time::Instant;
const MIB: usize = 1024 * 1024;
fn collection_of(item: &str) -> Vec<u8> {
    let n = ((MIB - 16) / (item.len() + 1)).min(1000);
    format!(r#"{{"value":[{}]}}"#, vec![item; n].join(",")).into_bytes()
}
/// `collection_of` led by a member whose string is not valid UTF-8 (accepted: only skipped).
fn collection_with_invalid_byte(item: &str) -> Vec<u8> {
    let n = ((MIB - 32) / (item.len() + 1)).min(1000);
    let mut body = b"{\"x\":\"\xff\",\"value\":[".to_vec();
    body.extend_from_slice(vec![item; n].join(",").as_bytes());
    body.extend_from_slice(b"]}");
    body
}
fn wide_item(name_len: usize, value: &str) -> String {
    let members: Vec<String> = (0..63)
        .map(|i| format!(r#""m{i:02}{}":{value}"#, "x".repeat(name_len)))
        .collect();
    format!(r#"{{"changeType":"created",{}}}"#, members.join(","))
}
fn main() {
    let deep = format!("{}0{}", "[".repeat(120), "]".repeat(120));
    let escaped_name: String = (0..63)
        .map(|i| format!(r#","\u00e9\u00e8{i:02}\n\t\"":1"#))
        .collect();
    let long = "\\u00e9".repeat((MIB - 200) / 6);
    let bodies = [
        ("most members", collection_of(&wide_item(8, "0"))),
        ("deepest", collection_of(&wide_item(0, &deep))),
        (
            "escaped names",
            collection_of(&format!(r#"{{"changeType":"created"{escaped_name}}}"#)),
        ),
        (
            "escaped names, one invalid byte",
            collection_with_invalid_byte(&format!(r#"{{"changeType":"created"{escaped_name}}}"#)),
        ),
        (
            "long string",
            format!(r#"{{"value":[{{"changeType":"created","resource":"{long}"}}]}}"#).into_bytes(),
        ),
    ];
    let only = std::env::args().nth(1).unwrap_or_default();
    for (name, body) in bodies.iter().filter(|(n, _)| n.contains(only.as_str())) {
        let mut t = Vec::new();
        for _ in 0..60 {
            let s = Instant::now();
            let r = relay365_actors::receiver::parse_collection(body);
            t.push(s.elapsed().as_secs_f64() * 1000.0);
            drop(r);
        }
        t.sort_by(f64::total_cmp);
        println!("{name}: p50 {:.2} ms min {:.2}", t[30], t[0]);
    }
}
