//! The policy test runner behind `cosigner-guard test`: Rego unit tests (`test_*` rules, as
//! `opa test`) and fixture cases (`*_test.yaml`), the latter decided by the server's own pipeline.
//! Reporting is separate ([`report`]).

mod cases;
pub mod export;
pub mod fixtures;
pub mod mutate;
pub mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::policy::analysis::RuleKind;
use crate::policy::{CompileOptions, Evaluator, Fallbacks, PolicySnapshot, PolicyStore};
use cases::*;
use fixtures::Fixtures;
pub use mutate::{MutationReport, Survivor, mutate};

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

#[derive(Default)]
pub struct RunOptions {
    pub filter: Option<Regex>,
    pub coverage: bool,
    /// Write every fixture decision (and mutant) here, for the OPA portability check.
    pub export: Option<Arc<export::Exporter>>,
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
    let mut results = tokio::task::block_in_place(|| rego_tests(&snapshot, &wanted, run.export.as_deref()))?;
    results.extend(fixture_results(dir, store.clone(), &wanted, run.export.clone()).await?);
    Ok(RunReport { results, coverage: store.active().coverage() })
}

/// Every fixture case under `dir` whose name is `wanted`, decided with `store`'s set.
async fn fixture_results(
    dir: &Path,
    store: Arc<PolicyStore>,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    export: Option<Arc<export::Exporter>>,
) -> Result<Vec<TestResult>, SetupError> {
    let suites = fixtures::discover(dir).map_err(SetupError)?;
    let suites = suites.iter().map(|path| Fixtures::load(path)).collect::<Result<Vec<_>, _>>().map_err(SetupError)?;
    let mut results = Vec::new();
    if !suites.iter().any(|s| s.file.cases.iter().any(|c| wanted(&c.name))) {
        return Ok(results);
    }
    let eval_timeout = store.options().eval_timeout;
    let evaluator = Evaluator::new(1, eval_timeout, Fallbacks::default()).map_err(|e| SetupError(e.to_string()))?;
    let shared = FixturePipeline { policy: store, evaluator: Arc::new(evaluator), export };
    for suite in &suites {
        for case in suite.file.cases.iter().filter(|c| wanted(&c.name)) {
            results.push(fixture_case(&shared, suite, case, eval_timeout).await?);
        }
    }
    Ok(results)
}

/// Every `test_*` rule must evaluate to `true`; `todo_test_*` rules are skipped. Runs on a
/// large-stack thread, as evaluation does.
pub fn rego_tests(
    snapshot: &PolicySnapshot,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    export: Option<&export::Exporter>,
) -> Result<Vec<TestResult>, SetupError> {
    // Exporting, each test runs with a recording ledger over an empty store (what a test without
    // one sees: sums "0", counts 0), so its builtin calls go with it to the OPA check.
    let store = match export {
        Some(_) => Some(Arc::new(crate::state::StateStore::in_memory().map_err(|e| SetupError(e.to_string()))?)),
        None => None,
    };
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
                    let ledger = store.as_ref().map(|store| {
                        crate::policy::Ledger::new(store.clone(), "unit-test", chrono::Utc::now()).recording_calls(true)
                    });
                    let ((result, prints), ledger) =
                        crate::policy::velocity::with_ledger(ledger, || snapshot.eval_rule(&test.path(), None));
                    if let (Some(export), Some(ledger)) = (export, &ledger) {
                        export.unit_test(&test.path(), ledger.calls());
                    }
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

/// The activation gate of `reload.require_tests`: every Rego unit test and every fixture case of
/// the candidate set in `dir` must pass. Blocking: the fixtures run on a thread of their own.
pub fn require_passing_tests(dir: &Path, snapshot: &Arc<PolicySnapshot>) -> Result<(), String> {
    let mut results = rego_tests(snapshot, &|_| true, None).map_err(|e| e.0)?;
    let store = Arc::new(PolicyStore::fixed(dir, CompileOptions::default(), snapshot.clone()));
    let fixtures = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(fixture_results(dir, store, &|_| true, None)).map_err(|e| std::io::Error::other(e.0))
            })
            .join()
            .map_err(|_| "the fixture thread panicked".to_string())?
            .map_err(|e| e.to_string())
    })?;
    results.extend(fixtures);
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
