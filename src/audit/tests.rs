use super::*;
use serde_json::json;

#[test]
fn redaction_replaces_pointed_values_including_wildcards() {
    let mut input = json!({"request": {"destAddress": "0xabc", "destinations": [{"dstAddress": "a"}, {"dstAddress": "b"}], "a/b": 1}});
    for p in ["/request/destAddress", "/request/destinations/*/dstAddress", "/request/a~1b", "/request/missing/x"] {
        redact_at(&mut input, &parse_pointer(p));
    }
    assert_eq!(
        input,
        json!({"request": {"destAddress": "[REDACTED]", "destinations": [{"dstAddress": "[REDACTED]"}, {"dstAddress": "[REDACTED]"}], "a/b": "[REDACTED]"}})
    );
}
