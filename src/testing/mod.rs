//! The policy test runner behind `cosigner-guard test`: Rego unit tests (`test_*` rules, as
//! `opa test`) and fixture cases (`*_test.yaml`), the latter decided by the server's own pipeline.
//! Reporting is separate ([`report`]).

pub mod fixtures;
pub mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::Value;

use crate::decision::FallbackAction;
use crate::envelope::Mode;
use crate::keys::{CosignerKey, CosignerKeyring};
use crate::pipeline::{self, Pipeline};
use crate::policy::analysis::RuleKind;
use crate::policy::{CompileOptions, Evaluator, PolicySnapshot, PolicyStore, RequestContext};
use crate::request::{CosignerRequest, RequestKind};
use fixtures::{Case, FixtureKind, Fixtures, RequestSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Error(String),
    Skip,
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    /// `rego` or `fixture`.
    pub suite: &'static str,
    pub location: String,
    pub outcome: Outcome,
    pub duration: Duration,
    pub prints: Vec<String>,
}

#[derive(Debug, Default)]
pub struct RunOptions {
    pub filter: Option<Regex>,
    pub coverage: bool,
}

pub struct RunReport {
    pub results: Vec<TestResult>,
    pub coverage: Option<regorus::coverage::Report>,
}

/// The tests could not be loaded: a bad policy, a bad fixture file, a missing payload file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Runs every test of the policy set in `dir`.
pub async fn run(dir: &Path, options: &CompileOptions, run: &RunOptions) -> Result<RunReport, SetupError> {
    let compile = CompileOptions { coverage: run.coverage, with_tests: true, ..options.clone() };
    let (store_dir, store_options) = (dir.to_path_buf(), compile.clone());
    let store = tokio::task::spawn_blocking(move || PolicyStore::open(&store_dir, store_options))
        .await
        .map_err(|e| SetupError(e.to_string()))?
        .map_err(|e| SetupError(e.to_string()))?;
    let store = Arc::new(store);
    let wanted = |name: &str| run.filter.as_ref().is_none_or(|re| re.is_match(name));

    let snapshot = store.active();
    let mut results = tokio::task::block_in_place(|| rego_tests(&snapshot, &wanted))?;
    let suites = fixtures::discover(dir).map_err(SetupError)?;
    let suites = suites.iter().map(|path| Fixtures::load(path)).collect::<Result<Vec<_>, _>>().map_err(SetupError)?;
    if suites.iter().any(|s| s.file.cases.iter().any(|c| wanted(&c.name))) {
        let evaluator = Evaluator::new(1, compile.eval_timeout, FallbackAction::Reject, FallbackAction::Reject)
            .map_err(|e| SetupError(e.to_string()))?;
        let pipeline = Pipeline::new(CosignerKeyring::default(), None, store.clone(), evaluator);
        for suite in &suites {
            for case in suite.file.cases.iter().filter(|c| wanted(&c.name)) {
                results.push(fixture_case(&pipeline, suite, case, compile.eval_timeout).await?);
            }
        }
    }
    Ok(RunReport { results, coverage: store.active().coverage() })
}

/// Every `test_*` rule must evaluate to `true`; `todo_test_*` rules are skipped. Runs on a
/// large-stack thread, as evaluation does.
pub fn rego_tests(
    snapshot: &PolicySnapshot,
    wanted: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<TestResult>, SetupError> {
    let mut seen = std::collections::BTreeSet::new();
    let tests: Vec<_> = snapshot
        .rules()
        .iter()
        .filter(|r| r.kind == RuleKind::Value && (r.name.starts_with("test_") || r.name.starts_with("todo_test_")))
        .filter(|r| wanted(&r.path()) && seen.insert(r.path()))
        .collect();
    let run = || {
        tests
            .into_iter()
            .map(|test| {
                let started = Instant::now();
                let (outcome, prints) = if test.name.starts_with("todo_") {
                    (Outcome::Skip, Vec::new())
                } else {
                    let (result, prints) = snapshot.eval_rule(&test.path(), None);
                    let outcome = match result {
                        Ok(regorus::Value::Bool(true)) => Outcome::Pass,
                        Ok(regorus::Value::Undefined) => Outcome::Fail("undefined (a condition did not hold)".into()),
                        Ok(other) => Outcome::Fail(format!("evaluated to {}, not true", show(&other))),
                        Err(e) => Outcome::Error(e.to_string()),
                    };
                    (outcome, prints)
                };
                TestResult {
                    name: test.path(),
                    suite: "rego",
                    location: test.location(),
                    outcome,
                    duration: started.elapsed(),
                    prints,
                }
            })
            .collect()
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("policy-tests".into())
            .stack_size(crate::policy::EVAL_STACK_BYTES)
            .spawn_scoped(scope, run)
            .map_err(|e| SetupError(e.to_string()))?
            .join()
            .map_err(|_| SetupError("the test thread panicked".into()))
    })
}

/// The activation gate of `reload.require_tests`: every Rego unit test of the candidate must pass.
pub fn require_passing_tests(snapshot: &PolicySnapshot) -> Result<(), String> {
    let results = rego_tests(snapshot, &|_| true).map_err(|e| e.0)?;
    let failing: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_) | Outcome::Error(_)))
        .map(|r| format!("{} ({})", r.name, r.location))
        .collect();
    if failing.is_empty() { Ok(()) } else { Err(format!("failing policy tests: {}", failing.join(", "))) }
}

fn show(value: &regorus::Value) -> String {
    value.to_json_str().map(|s| s.replace('\n', "")).unwrap_or_else(|_| format!("{value:?}"))
}

/// One fixture case: payload → (envelope) → request → input document → evaluation → decision.
async fn fixture_case(
    pipeline: &Pipeline,
    suite: &Fixtures,
    case: &Case,
    eval_timeout: Duration,
) -> Result<TestResult, SetupError> {
    let started = Instant::now();
    let at = |what: &str| SetupError(format!("{}: case {:?}: {what}", suite.path.display(), case.name));
    let kind = match case.kind.unwrap_or(suite.file.kind) {
        FixtureKind::Transaction => RequestKind::Transaction,
        FixtureKind::ConfigChange => RequestKind::ConfigChange,
    };
    let received_at = match &case.now {
        Some(now) => DateTime::parse_from_rfc3339(now).map_err(|e| at(&format!("now: {e}")))?.with_timezone(&Utc),
        None => Utc::now(),
    };
    let opened = match (&case.request, &case.jwt) {
        (Some(spec), None) => {
            let mut payload = match spec {
                RequestSpec::Inline(map) => Value::Object(map.clone()),
                RequestSpec::File(file) => {
                    let path = suite.resolve(file);
                    let text = std::fs::read(&path).map_err(|e| at(&format!("request {}: {e}", path.display())))?;
                    serde_json::from_slice(&text).map_err(|e| at(&format!("request {}: {e}", path.display())))?
                }
            };
            if let Some(patch) = &case.patch {
                fixtures::merge_patch(&mut payload, patch);
            }
            let context = case.context.as_ref();
            CosignerRequest::from_payload(kind, payload).map_err(pipeline::Refusal::from).map(|request| {
                let context = RequestContext {
                    received_at,
                    mode: context.and_then(|c| c.mode).unwrap_or(Mode::Jwt),
                    cosigner_key: Some(context.and_then(|c| c.cosigner_key.clone()).unwrap_or("fixture".into()).into()),
                };
                (request, context)
            })
        }
        (None, Some(jwt)) => {
            if case.patch.is_some() {
                return Err(at("patch cannot change a signed request"));
            }
            let token = std::fs::read(suite.resolve(&jwt.token)).map_err(|e| at(&format!("jwt.token: {e}")))?;
            let name = jwt.key_name.as_deref().unwrap_or("fixture");
            let key =
                CosignerKey::from_pem_file(name, &suite.resolve(&jwt.key)).map_err(|e| at(&format!("jwt.key: {e}")))?;
            pipeline::open(Mode::Jwt, kind, &token, received_at, &CosignerKeyring::new(vec![key]))
        }
        _ => return Err(at("exactly one of `request` and `jwt` is required")),
    };
    let (outcome, prints) = match opened {
        Err(refusal) => (Outcome::Fail(format!("the request was refused, no decision: {refusal}")), Vec::new()),
        Ok((request, context)) => {
            let deadline = Instant::now() + eval_timeout + Duration::from_secs(1);
            let evaluated = pipeline.evaluate(request, &context, deadline).await;
            (judge(case, &evaluated.decision), evaluated.prints)
        }
    };
    Ok(TestResult {
        name: case.name.clone(),
        suite: "fixture",
        location: suite.path.display().to_string(),
        outcome,
        duration: started.elapsed(),
        prints,
    })
}

fn judge(case: &Case, decision: &crate::decision::Decision) -> Outcome {
    let reason = decision.reason.as_deref().unwrap_or("");
    let want = &case.expect;
    let action_ok = decision.action == want.action;
    let reason_ok = want.reason.as_deref().is_none_or(|r| reason.contains(r));
    if action_ok && reason_ok {
        return Outcome::Pass;
    }
    let expected = match &want.reason {
        Some(r) => format!("{} with a reason containing {r:?}", want.action.as_str()),
        None => want.action.as_str().to_string(),
    };
    Outcome::Fail(format!(
        "expected {expected}, got {} ({}) with reason {reason:?}",
        decision.action.as_str(),
        decision.source
    ))
}
