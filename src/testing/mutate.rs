//! `cosigner-guard test --mutate`: a request a policy refuses must stay refused when one of its
//! fields is missing or of another type. In Rego a missing field makes an expression undefined and
//! the rule around it silently not fire — a violation whose message reads the missing field is no
//! violation — so a policy can approve exactly the malformed request it was written to stop.
//! Every fixture case expecting anything but APPROVE is decided again once per mutant: each field
//! removed, and each field's type changed with its value kept (`"10"` → `10`, `10` → `"10"`,
//! `"ETH"` → `["ETH"]`…), nested fields and array elements included. An APPROVED mutant fails.

use serde_json::{Map, Value};

use crate::holds::Hold;
use crate::policy::{CompileOptions, Evaluator, Fallbacks, PolicyStore};
use crate::request::{CosignerRequest, RequestKind};
use chrono::{DateTime, Utc};
use fixtures::{Case, Fixtures, Step};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

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

/// A mutant of a case's request that the policy approved.
#[derive(Debug)]
pub struct Survivor {
    pub case: String,
    pub location: String,
    pub mutation: mutate::Mutation,
    pub reason: Option<String>,
}

#[derive(Debug, Default)]
pub struct MutationReport {
    /// Cases mutated, and mutants decided.
    pub cases: usize,
    pub mutants: usize,
    pub survivors: Vec<Survivor>,
    /// Cases expecting no APPROVE that cannot be mutated (a signed `jwt`), with why.
    pub not_mutated: Vec<String>,
}

/// `test --mutate`: every fixture case of `dir` expecting anything but APPROVE — in a `steps` case,
/// the first request of each step that does, after the requests before it — decided again with
/// each single field of its request removed or retyped (see [`mutate`]).
pub async fn mutate(dir: &Path, options: &CompileOptions, run: &RunOptions) -> Result<MutationReport, SetupError> {
    let (store_dir, store_options) = (dir.to_path_buf(), options.clone());
    let store = tokio::task::spawn_blocking(move || PolicyStore::open(&store_dir, store_options))
        .await
        .map_err(|e| SetupError(e.to_string()))?
        .map_err(|e| SetupError(e.to_string()))?;
    let evaluator =
        Evaluator::new(2, options.eval_timeout, Fallbacks::default()).map_err(|e| SetupError(e.to_string()))?;
    let shared =
        FixturePipeline { policy: Arc::new(store), evaluator: Arc::new(evaluator), export: run.export.clone() };
    let mut report = MutationReport::default();
    let suites = fixtures::discover(dir).map_err(SetupError)?;
    for path in &suites {
        let suite = Fixtures::load(path).map_err(SetupError)?;
        for case in &suite.file.cases {
            if run.filter.as_ref().is_some_and(|re| !re.is_match(&case.name)) {
                continue;
            }
            let at = |what: &str| SetupError(format!("{}: case {:?}: {what}", suite.path.display(), case.name));
            let Some(spec) = &case.request else {
                if case.expect.as_ref().is_some_and(|e| e.action != crate::decision::Action::Approve) {
                    report.not_mutated.push(format!("{:?} ({}): a signed jwt", case.name, suite.path.display()));
                }
                continue;
            };
            if case.steps.is_none() && case.expect.is_none() {
                continue; // not a valid case: `test` says so
            }
            let one = [Step { name: None, patch: None, now: None, repeat: None, expect: expect_of(&case.expect) }];
            let steps = case.steps.as_deref().unwrap_or(&one);
            let kind = case_kind(&suite, case);
            let received_at = parse_now(case.now.as_ref()).map_err(|e| at(&e))?;
            let base = case_payload(&suite, case, spec).map_err(|e| at(&e))?;
            let sends = sends(case, steps, &base, received_at).map_err(|e| at(&e))?;
            // The hold is on the transaction as the case sends it; a mutant is other content.
            let hold = match &case.hold {
                Some(spec) => {
                    let request = CosignerRequest::from_payload(kind, base.clone()).map_err(|e| at(&e.to_string()))?;
                    Some(hold_of(spec, &request, received_at))
                }
                None => None,
            };
            let omissible = |pointer: &str| {
                case.may_omit
                    .iter()
                    .any(|p| pointer == p || pointer.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/')))
            };
            // The first request of each step expecting no APPROVE, after the requests before it.
            let refused = (0..sends.len()).filter(|&i| {
                let step = sends[i].step;
                steps[step].expect.action != crate::decision::Action::Approve && (i == 0 || sends[i - 1].step != step)
            });
            let mut mutated = false;
            for i in refused {
                mutated = true;
                let (before, send) = (&sends[..i], &sends[i]);
                for (mutation, payload) in mutants(&send.payload) {
                    if mutation.what == mutate::REMOVED && omissible(&mutation.pointer) {
                        continue;
                    }
                    report.mutants += 1;
                    let Ok(request) = CosignerRequest::from_payload(kind, payload) else { continue };
                    let decision = decide_after(&shared, case, kind, before, (request, send.at), hold.as_ref())
                        .await
                        .map_err(|e| at(&e))?;
                    if decision.action == crate::decision::Action::Approve {
                        let step =
                            if case.steps.is_some() { format!(" (step {})", send.step + 1) } else { String::new() };
                        report.survivors.push(Survivor {
                            case: format!("{}{step}", case.name),
                            location: suite.path.display().to_string(),
                            mutation,
                            reason: decision.reason,
                        });
                    }
                }
            }
            report.cases += usize::from(mutated);
        }
    }
    Ok(report)
}

/// Decides `request` as a case does after the requests `before` it (decided as sent): a fresh
/// store with the case's history, the hold given, the case's recorded `state` if it has one.
async fn decide_after(
    shared: &FixturePipeline,
    case: &Case,
    kind: RequestKind,
    before: &[StepRequest],
    (request, at): (CosignerRequest, DateTime<Utc>),
    hold: Option<&Hold>,
) -> Result<crate::decision::Decision, String> {
    let pipeline = shared.pipeline(&case.history).await?;
    if let Some(hold) = hold {
        crate::holds::keep(pipeline.state(), hold, 0).await.map_err(|e| format!("hold: {e}"))?;
    }
    let deadline = || Instant::now() + shared.policy.options().eval_timeout + Duration::from_secs(1);
    for sent in before {
        let earlier = CosignerRequest::from_payload(kind, sent.payload.clone()).map_err(|e| e.to_string())?;
        pipeline.decide(earlier, &case_context(case, sent.at), deadline()).await;
    }
    let context = case_context(case, at);
    let decided = if case.state.is_empty() {
        pipeline.decide(request, &context, deadline()).await
    } else {
        pipeline.redecide(request, &context, hold, case.state.clone(), None, deadline()).await
    };
    shared.export(&format!("{} (mutant)", case.name), kind, &decided);
    Ok(decided.decision)
}
