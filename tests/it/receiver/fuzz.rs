//! The notification parser never panics, whatever JSON (or not JSON) it is given.

use super::*;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f32>().prop_map(
                |f| serde_json::Number::from_f64(f as f64).map_or(Value::Null, Value::Number)
            ),
            ".{0,12}".prop_map(Value::String),
        ];
    let key = prop_oneof![
        Just("value".to_string()),
        Just("subscriptionId".to_string()),
        Just("clientState".to_string()),
        Just("changeType".to_string()),
        Just("lifecycleEvent".to_string()),
        Just("resourceData".to_string()),
        Just("resource".to_string()),
        Just("id".to_string()),
        Just("@odata.etag".to_string()),
        Just("subscriptionExpirationDateTime".to_string()),
        ".{0,8}",
    ];
    leaf.prop_recursive(5, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_parser_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_collection(&bytes);
    }

    #[test]
    fn the_parser_takes_any_json(v in arb_json(), items in prop::collection::vec(arb_json(), 0..4)) {
        let _ = parse_collection(v.to_string().as_bytes());
        let wrapped = json!({"value": items});
        if let Ok(parsed) = parse_collection(wrapped.to_string().as_bytes()) {
            // Whatever is kept is stored with its clientState masked.
            for item in parsed {
                let raw: Value = serde_json::from_str(&item.raw).unwrap();
                if let Some(cs) = raw.get("clientState") {
                    prop_assert_eq!(cs, &json!("***"));
                }
            }
        }
    }
}
