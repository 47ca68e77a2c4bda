//! `cosigner-guard test --mutate`: a request a policy refuses must stay refused when one of its
//! fields is missing or of another type. In Rego a missing field makes an expression undefined and
//! the rule around it silently not fire — a violation whose message reads the missing field is no
//! violation — so a policy can approve exactly the malformed request it was written to stop.
//! Every fixture case expecting anything but APPROVE is decided again once per mutant: each field
//! removed, and each field's type changed with its value kept (`"10"` → `10`, `10` → `"10"`,
//! `"ETH"` → `["ETH"]`…), nested fields and array elements included. An APPROVED mutant fails.

use serde_json::{Map, Value};

/// The mutation that removes a field.
pub const REMOVED: &str = "removed";

/// One change to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// JSON pointer into the request, e.g. `/destinations/0/dstAddress`.
    pub pointer: String,
    /// `removed`, or `<type> → <type>`.
    pub what: &'static str,
}

impl std::fmt::Display for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.pointer, self.what)
    }
}

/// Every single-field mutant of `payload`, with the change that made it.
pub fn mutants(payload: &Value) -> Vec<(Mutation, Value)> {
    let mut found = Vec::new();
    walk(payload, &mut Vec::new(), &mut |path, value| {
        let pointer = pointer(path);
        found.push((Mutation { pointer: pointer.clone(), what: REMOVED }, removed(payload, path)));
        let (what, changed) = retyped(value);
        found.push((Mutation { pointer, what }, replaced(payload, path, changed)));
    });
    found
}

/// Calls `visit` for every value under `value` (not `value` itself), depth first.
fn walk(value: &Value, path: &mut Vec<String>, visit: &mut impl FnMut(&[String], &Value)) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => return,
    };
    for (key, child) in children {
        path.push(key);
        visit(path, child);
        walk(child, path, visit);
        path.pop();
    }
}

fn pointer(path: &[String]) -> String {
    path.iter().map(|key| format!("/{}", key.replace('~', "~0").replace('/', "~1"))).collect()
}

/// The same value as another JSON type.
fn retyped(value: &Value) -> (&'static str, Value) {
    match value {
        Value::String(s) => match s.trim().parse::<f64>().ok().filter(|n| n.is_finite()) {
            Some(_) => match serde_json::from_str::<Value>(s.trim()) {
                Ok(number @ Value::Number(_)) => ("string → number", number),
                _ => ("string → array", Value::Array(vec![value.clone()])),
            },
            None => ("string → array", Value::Array(vec![value.clone()])),
        },
        Value::Number(n) => ("number → string", Value::String(n.to_string())),
        Value::Bool(b) => ("boolean → string", Value::String(b.to_string())),
        Value::Null => ("null → string", Value::String("null".into())),
        Value::Object(_) => ("object → array", Value::Array(vec![value.clone()])),
        Value::Array(items) => (
            "array → object",
            Value::Object(items.iter().enumerate().map(|(i, v)| (i.to_string(), v.clone())).collect::<Map<_, _>>()),
        ),
    }
}

fn removed(payload: &Value, path: &[String]) -> Value {
    let mut copy = payload.clone();
    let Some((last, parent)) = path.split_last() else { return copy };
    match at(&mut copy, parent) {
        Some(Value::Object(map)) => {
            map.remove(last);
        }
        Some(Value::Array(items)) => {
            if let Ok(index) = last.parse::<usize>() {
                items.remove(index);
            }
        }
        _ => {}
    }
    copy
}

fn replaced(payload: &Value, path: &[String], with: Value) -> Value {
    let mut copy = payload.clone();
    if let Some(slot) = at(&mut copy, path) {
        *slot = with;
    }
    copy
}

fn at<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |value, key| match value {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_is_removed_once_and_retyped_once_nested_and_in_arrays() {
        let payload = json!({"amountStr": "10", "asset": "ETH", "destinations": [{"amountUSD": 5, "ok": true}]});
        let found: Vec<(String, Value)> = mutants(&payload).into_iter().map(|(m, v)| (m.to_string(), v)).collect();
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "/amountStr removed",
                "/amountStr string → number",
                "/asset removed",
                "/asset string → array",
                "/destinations removed",
                "/destinations array → object",
                "/destinations/0 removed",
                "/destinations/0 object → array",
                "/destinations/0/amountUSD removed",
                "/destinations/0/amountUSD number → string",
                "/destinations/0/ok removed",
                "/destinations/0/ok boolean → string",
            ]
        );
        assert_eq!(found[1].1["amountStr"], json!(10), "the value is kept");
        assert_eq!(found[6].1["destinations"], json!([]));
        assert_eq!(found[9].1["destinations"][0]["amountUSD"], json!("5"));
        assert_eq!(payload["amountStr"], "10", "the original is untouched");
    }
}
