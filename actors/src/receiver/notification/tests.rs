#![allow(clippy::unwrap_used)]
use serde_json::Value;

use super::*;

#[test]
fn parses_and_masks() {
    let body = br#"{"value":[{"subscriptionId":"s","clientState":"secret","changeType":"created",
        "resource":"r","resourceData":{"id":"m1","@odata.etag":"W/\"1\""}},
        {"subscriptionId":"s","clientState":"secret","lifecycleEvent":"missed",
         "subscriptionExpirationDateTime":"2019-03-20T11:00:00Z"}]}"#;
    let items = parse_collection(body).unwrap();
    assert_eq!(items.len(), 2);
    assert!(!items[0].raw.contains("secret") && items[0].raw.contains("\"***\""));
    assert_eq!(
        idempotency_key("our", "s", &items[0].kind),
        "our:created:m1:W/\"1\""
    );
    assert_eq!(
        idempotency_key("our", "s", &items[1].kind),
        "s:missed:2019-03-20T11:00:00Z"
    );
    assert_eq!(items[0].client_state.as_deref(), Some("secret"));
}

#[test]
fn rejects_bad_shapes() {
    for body in [
        &b"nope"[..],
        b"[]",
        b"{}",
        b"{\"value\":{}}",
        b"{\"value\":[1]}",
        b"{\"value\":[{\"subscriptionId\":1,\"changeType\":\"created\"}]}",
        b"{\"value\":[{\"changeType\":\"created\",\"resourceData\":[]}]}",
        b"{\"value\":[{\"subscriptionId\":\"s\"}]}",
    ] {
        assert!(
            parse_collection(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(parse_collection(b"{\"value\":[]}").unwrap().is_empty());
    assert!(parse_collection(b"{\"value\":[]")
        .unwrap_err()
        .0
        .starts_with("the body is not JSON"));
    assert_eq!(parse_collection(b"[1]").unwrap_err().0, NOT_A_COLLECTION);
}

#[test]
fn stores_the_item_as_sent_with_only_the_client_state_replaced() {
    let body = br#"{"value":[{"b":1, "clientState":"secret","a":[1, 2.50],"changeType":"created",
        "x\"y":{"k":"v"},"b":"last","resourceData":null}]}"#;
    let items = parse_collection(body).unwrap();
    // Order and formatting of values kept; a repeated member once, with its last value.
    assert_eq!(
        items[0].raw,
        r#"{"clientState":"***","a":[1, 2.50],"changeType":"created","x\"y":{"k":"v"},"b":"last","resourceData":null}"#
    );
    let raw: Value = serde_json::from_str(&items[0].raw).unwrap();
    assert_eq!(raw["x\"y"]["k"], "v");
    // A null clientState is masked too; an absent one is not invented.
    let items = parse_collection(
        br#"{"value":[{"clientState":null,"changeType":"created"},{"changeType":"updated"}]}"#,
    )
    .unwrap();
    assert_eq!(
        items[0].raw,
        r#"{"clientState":"***","changeType":"created"}"#
    );
    assert_eq!(items[0].client_state, None);
    assert_eq!(items[1].raw, r#"{"changeType":"updated"}"#);
}

#[test]
fn limits_are_a_clear_error() {
    let members: String = (0..=MAX_MEMBERS).map(|i| format!(",\"m{i}\":1")).collect();
    let body = format!(r#"{{"value":[{{"changeType":"created"{members}}}]}}"#);
    let err = parse_collection(body.as_bytes()).unwrap_err();
    assert_eq!(
        err.0,
        format!("value[0]: an object has more than {MAX_MEMBERS} members")
    );
    let body =
        format!(r#"{{"value":[{{"changeType":"created","resourceData":{{"id":"x"{members}}}}}]}}"#);
    let err = parse_collection(body.as_bytes()).unwrap_err();
    assert!(
        err.0
            .starts_with("value[0].resourceData: an object has more"),
        "{err}"
    );

    let item = r#"{"changeType":"created"}"#;
    let many = vec![item; MAX_ITEMS + 1].join(",");
    let err = parse_collection(format!(r#"{{"value":[{many}]}}"#).as_bytes()).unwrap_err();
    assert_eq!(
        err.0,
        format!("a collection has more than {MAX_ITEMS} items")
    );
    let just = vec![item; MAX_ITEMS].join(",");
    let items = parse_collection(format!(r#"{{"value":[{just}]}}"#).as_bytes()).unwrap();
    assert_eq!(items.len(), MAX_ITEMS);
}

#[test]
fn repeated_names_past_the_scan_keep_their_last_value() {
    let mut body = String::from(r#"{"value":[{"changeType":"created""#);
    for i in 0..30 {
        body.push_str(&format!(r#","m{}":{i}"#, i % 10));
    }
    body.push_str("}]}");
    let items = parse_collection(body.as_bytes()).unwrap();
    let raw: Value = serde_json::from_str(&items[0].raw).unwrap();
    let obj = raw.as_object().unwrap();
    assert_eq!(obj.len(), 11);
    assert_eq!(raw["m0"], 20);
    assert_eq!(raw["m9"], 29);
}

#[test]
fn names_are_compared_decoded() {
    // An escaped name is the same member as its plain spelling: the last one wins, and an
    // escaped clientState is masked like a plain one.
    let body = br#"{"value":[{"changeType":"created","\u0063hangeType":"updated",
        "client\u0053tate":"secret","resourceData":{"\u0069d":"m1","id":"m2"}}]}"#;
    let items = parse_collection(body).unwrap();
    assert_eq!(
        items[0].kind,
        ItemKind::Change {
            change_type: "updated".into(),
            resource_id: Some("m2".into()),
            etag: None
        }
    );
    assert_eq!(items[0].client_state.as_deref(), Some("secret"));
    // Each kept name as it was written.
    assert_eq!(
        items[0].raw,
        r#"{"\u0063hangeType":"updated","client\u0053tate":"***","resourceData":{"\u0069d":"m1","id":"m2"}}"#
    );
}

#[test]
fn the_stored_text_drops_the_spaces_between_members_only() {
    let body = b"{\"value\":[ {\n \"changeType\" : \"created\" ,\t\"a\": [1, {\"b\" : 2}] } ]}";
    let items = parse_collection(body).unwrap();
    assert_eq!(
        items[0].raw,
        r#"{"changeType":"created","a":[1, {"b" : 2}]}"#
    );
    // Sent without spaces, the item is stored as sent.
    let body = br#"{"value":[{"changeType":"created","a":[1,{"b":2}],"c":"\u00e9"}]}"#;
    assert_eq!(
        parse_collection(body).unwrap()[0].raw,
        r#"{"changeType":"created","a":[1,{"b":2}],"c":"\u00e9"}"#
    );
    let items = parse_collection(br#"{"value":[{"lifecycleEvent":"missed"},{}]}"#);
    assert_eq!(
        items.unwrap_err().0,
        "value[1] has neither changeType nor lifecycleEvent"
    );
}

#[test]
fn names_are_stored_as_written() {
    // Escapes are kept as sent (the same JSON string), whether the item is copied whole or
    // written member by member (a space, a repeat, a clientState).
    let names = r#""\u0041\/\n\t\"\\\u00e9\ud83d\ude00 x":1,"\u0063":2,"c":3"#;
    let body = format!(
        r#"{{"value":[{{"changeType":"created",{names}}},{{"changeType":"created", {names},"clientState":"s"}}]}}"#
    );
    let items = parse_collection(body.as_bytes()).unwrap();
    assert_eq!(
        items[0].raw,
        r#"{"changeType":"created","\u0041\/\n\t\"\\\u00e9\ud83d\ude00 x":1,"c":3}"#
    );
    assert_eq!(
        items[1].raw,
        r#"{"changeType":"created","\u0041\/\n\t\"\\\u00e9\ud83d\ude00 x":1,"c":3,"clientState":"***"}"#
    );
    let raw: Value = serde_json::from_str(&items[0].raw).unwrap();
    assert_eq!(raw["A/\n\t\"\\é😀 x"], 1);
    assert_eq!(raw["c"], 3);
    // Sent without spaces, repeats or clientState: the item as sent.
    let body = format!(r#"{{"value":[{{"changeType":"created",{names},"d":4}}]}}"#);
    let body = body.replace(r#""c":3,"#, "");
    let items = parse_collection(body.as_bytes()).unwrap();
    assert_eq!(
        items[0].raw,
        r#"{"changeType":"created","\u0041\/\n\t\"\\\u00e9\ud83d\ude00 x":1,"\u0063":2,"d":4}"#
    );
}

#[test]
fn a_body_not_all_valid_utf8_is_read_alike() {
    // Invalid UTF-8 in a member that is skipped is accepted (as serde_json accepted it); the
    // items after it are read as in a body that is all valid.
    let items = r#""value":[{"changeType":"created","\u00e9\n":1,"é":"é"},{"lifecycleEvent":"missed", "\u0063lientState":"s"}]"#;
    let valid = format!("{{\"x\":\"?\",{items},\"y\":\"?\"}}");
    let invalid = valid.replace('?', "\u{1}").into_bytes();
    let invalid: Vec<u8> = invalid
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect();
    let outcome = |body: &[u8]| -> Vec<(Option<String>, ItemKind, String)> {
        parse_collection(body)
            .unwrap()
            .into_iter()
            .map(|i| (i.client_state, i.kind, i.raw))
            .collect()
    };
    assert_eq!(outcome(&invalid), outcome(valid.as_bytes()));
    assert_eq!(
        outcome(&invalid)[1].2,
        r#"{"lifecycleEvent":"missed","\u0063lientState":"***"}"#
    );
}

#[test]
fn syntax_errors_are_worded_as_serde_json_words_them() {
    for (body, message) in [
        (&b""[..], "EOF while parsing a value at line 1 column 0"),
        (
            b"{\"value\":[{\"a\":1,}]}",
            "trailing comma at line 1 column 18",
        ),
        (
            b"{\"value\":[]}x",
            "trailing characters at line 1 column 13",
        ),
        (
            b"{\n\"value\":[{\"\\ud800\":1}]}",
            "unexpected end of hex escape at line 2 column 18",
        ),
        (b"{\"value\":[01]}", "invalid number at line 1 column 12"),
        (
            b"{\"value\":[1e999]}",
            "number out of range at line 1 column 15",
        ),
        (
            b"{\"value\":[{\"a\":\"\xff\"}]}",
            "invalid unicode code point at line 1 column 17",
        ),
    ] {
        assert_eq!(
            super::super::reference::parse_collection(body)
                .unwrap_err()
                .0,
            format!("the body is not JSON: {message}"),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            parse_collection(body).unwrap_err().0,
            format!("the body is not JSON: {message}"),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Only checked where a value is read: a skipped lone surrogate or invalid UTF-8 in a
    // member the receiver does not read is accepted, as serde_json accepted it.
    assert!(parse_collection(b"{\"x\":\"\xff\",\"value\":[]}").is_ok());
    let body = br#"{"value":[{"changeType":"created","other":"\ud800"}]}"#;
    assert!(parse_collection(body).is_ok());
    let body = br#"{"value":[{"changeType":"\ud800"}]}"#;
    assert_eq!(
        parse_collection(body).unwrap_err().0,
        "value[0].changeType must be a string"
    );
}

#[test]
fn values_in_place_of_the_shape_are_answered_by_kind() {
    assert_eq!(parse_collection(b" 12 ").unwrap_err().0, NOT_A_COLLECTION);
    assert_eq!(
        parse_collection(br#"{"value":"x"}"#).unwrap_err().0,
        NOT_A_COLLECTION
    );
    assert_eq!(
        parse_collection(br#"{"value":[{},"x"]}"#).unwrap_err().0,
        "value[1] must be an object"
    );
    assert_eq!(
        parse_collection(br#"{"value":[{"changeType":"created","resourceData":"x"}]}"#)
            .unwrap_err()
            .0,
        "value[0].resourceData must be an object"
    );
}
