//! The policy test runner behind `cosigner-guard test`: Rego unit tests (`test_*` rules, as
//! `opa test`) and fixture cases (`*_test.yaml`), the latter decided by the server's own pipeline.
//! Reporting is separate ([`report`]).

pub mod fixtures;
pub mod mutate;
pub mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::Value;

use crate::decimal::Amount;
use crate::envelope::Mode;
use crate::holds::{Approval, Hold, HoldSettings, Rejection, Status, timestamp};
use crate::keys::{CosignerKey, CosignerKeyring};
use crate::pipeline::{self, Pipeline};
use crate::policy::analysis::RuleKind;
use crate::policy::{CompileOptions, Evaluator, Fallbacks, PolicySnapshot, PolicyStore, RequestContext};
use crate::request::{CosignerRequest, RequestKind};
use crate::state::{Commit, Record, StateStore};
use fixtures::{Case, FixtureKind, Fixtures, RequestSpec, Step};

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
    results.extend(fixture_results(dir, store.clone(), &wanted).await?);
    Ok(RunReport { results, coverage: store.active().coverage() })
}

/// Every fixture case under `dir` whose name is `wanted`, decided with `store`'s set.
async fn fixture_results(
    dir: &Path,
    store: Arc<PolicyStore>,
    wanted: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<TestResult>, SetupError> {
    let suites = fixtures::discover(dir).map_err(SetupError)?;
    let suites = suites.iter().map(|path| Fixtures::load(path)).collect::<Result<Vec<_>, _>>().map_err(SetupError)?;
    let mut results = Vec::new();
    if !suites.iter().any(|s| s.file.cases.iter().any(|c| wanted(&c.name))) {
        return Ok(results);
    }
    let eval_timeout = store.options().eval_timeout;
    let evaluator = Evaluator::new(1, eval_timeout, Fallbacks::default()).map_err(|e| SetupError(e.to_string()))?;
    let shared = FixturePipeline { policy: store, evaluator: Arc::new(evaluator) };
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

/// The activation gate of `reload.require_tests`: every Rego unit test and every fixture case of
/// the candidate set in `dir` must pass. Blocking: the fixtures run on a thread of their own.
pub fn require_passing_tests(dir: &Path, snapshot: &Arc<PolicySnapshot>) -> Result<(), String> {
    let mut results = rego_tests(snapshot, &|_| true).map_err(|e| e.0)?;
    let store = Arc::new(PolicyStore::fixed(dir, CompileOptions::default(), snapshot.clone()));
    let fixtures = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(fixture_results(dir, store, &|_| true)).map_err(|e| std::io::Error::other(e.0))
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

/// One fixture case: payload → (envelope) → request → input document → evaluation → decision,
/// against a state store of its own, seeded with the case's `history`.
async fn fixture_case(
    shared: &FixturePipeline,
    suite: &Fixtures,
    case: &Case,
    eval_timeout: Duration,
) -> Result<TestResult, SetupError> {
    let started = Instant::now();
    let at = |what: &str| SetupError(format!("{}: case {:?}: {what}", suite.path.display(), case.name));
    let kind = case_kind(suite, case);
    let time = |now: Option<&String>| parse_now(now).map_err(|e| at(&e));
    let received_at = time(case.now.as_ref())?;
    let pipeline = shared.pipeline(&case.history).await.map_err(|e| at(&e))?;
    let deadline = || Instant::now() + eval_timeout + Duration::from_secs(1);
    let mut prints = Vec::new();
    let outcome = match (&case.request, &case.jwt, &case.steps, &case.expect) {
        (_, _, Some(_), Some(_)) | (_, _, None, None) => {
            return Err(at("exactly one of `expect` and `steps` is required"));
        }
        (Some(_), Some(_), _, _) | (None, None, _, _) => {
            return Err(at("exactly one of `request` and `jwt` is required"));
        }
        (None, Some(_), Some(_), _) => return Err(at("steps need a `request` to vary, not a signed `jwt`")),
        (None, Some(jwt), None, Some(expect)) => {
            if case.patch.is_some() {
                return Err(at("patch cannot change a signed request"));
            }
            let token = std::fs::read(suite.resolve(&jwt.token)).map_err(|e| at(&format!("jwt.token: {e}")))?;
            let name = jwt.key_name.as_deref().unwrap_or("fixture");
            let key =
                CosignerKey::from_pem_file(name, &suite.resolve(&jwt.key)).map_err(|e| at(&format!("jwt.key: {e}")))?;
            match pipeline::open(Mode::Jwt, kind, &token, received_at, &CosignerKeyring::new(vec![key])) {
                Err(refusal) => Outcome::Fail(format!("the request was refused, no decision: {refusal}")),
                Ok((request, context)) => {
                    let decided = pipeline.decide(request, &context, deadline()).await;
                    prints = decided.prints;
                    judge(expect, &decided.decision)
                }
            }
        }
        (Some(spec), None, steps, expect) => {
            let base = case_payload(suite, case, spec).map_err(|e| at(&e))?;
            let hold = match &case.hold {
                Some(_) if steps.is_some() => {
                    return Err(at("`hold` seeds the hold of a single request, not of steps"));
                }
                Some(spec) => {
                    let request = CosignerRequest::from_payload(kind, base.clone()).map_err(|e| at(&e.to_string()))?;
                    let hold = hold_of(spec, &request, received_at);
                    crate::holds::keep(pipeline.state(), &hold, 0).await.map_err(|e| at(&format!("hold: {e}")))?;
                    Some(hold)
                }
                None => None,
            };
            let context_at = |received_at| case_context(case, received_at);
            if !case.state.is_empty() {
                // A recorded decision: decided again with exactly the reads it recorded.
                let (Some(expect), true) = (expect, case.history.is_empty()) else {
                    return Err(at("`state` replays a single recorded request: no `steps` or `history`"));
                };
                match CosignerRequest::from_payload(kind, base) {
                    Err(e) => Outcome::Fail(format!("the request was refused, no decision: {e}")),
                    Ok(request) => {
                        let context = context_at(received_at);
                        let decided = pipeline
                            .redecide(request, &context, hold.as_ref(), case.state.clone(), None, deadline())
                            .await;
                        prints = decided.prints;
                        judge(expect, &decided.decision)
                    }
                }
            } else {
                let one = [Step { name: None, patch: None, now: None, repeat: None, expect: expect_of(expect) }];
                let steps = steps.as_deref().unwrap_or(&one);
                let mut outcome = Outcome::Pass;
                for sent in sends(case, steps, &base, received_at).map_err(|e| at(&e))? {
                    let step = &steps[sent.step];
                    let request = match CosignerRequest::from_payload(kind, sent.payload) {
                        Ok(request) => request,
                        Err(e) => {
                            outcome = Outcome::Fail(format!("the request was refused, no decision: {e}"));
                            break;
                        }
                    };
                    let decided = pipeline.decide(request, &context_at(sent.at), deadline()).await;
                    prints.extend(decided.prints);
                    if let Outcome::Fail(why) = judge(&step.expect, &decided.decision) {
                        outcome = Outcome::Fail(match &case.steps {
                            None => why,
                            Some(_) => {
                                let name = step.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                                format!("step {}{name}, request {}: {why}", sent.step + 1, sent.number)
                            }
                        });
                        break;
                    }
                }
                outcome
            }
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

fn case_kind(suite: &Fixtures, case: &Case) -> RequestKind {
    match case.kind.unwrap_or(suite.file.kind) {
        FixtureKind::Transaction => RequestKind::Transaction,
        FixtureKind::ConfigChange => RequestKind::ConfigChange,
    }
}

/// A case's `now` (RFC 3339), else the clock.
fn parse_now(now: Option<&String>) -> Result<DateTime<Utc>, String> {
    match now {
        Some(now) => DateTime::parse_from_rfc3339(now).map(|t| t.with_timezone(&Utc)).map_err(|e| format!("now: {e}")),
        None => Ok(Utc::now()),
    }
}

/// The case's request payload: the file or inline mapping, with the case's patch.
fn case_payload(suite: &Fixtures, case: &Case, spec: &RequestSpec) -> Result<Value, String> {
    let mut base = match spec {
        RequestSpec::Inline(map) => Value::Object(map.clone()),
        RequestSpec::File(file) => {
            let path = suite.resolve(file);
            let text = std::fs::read(&path).map_err(|e| format!("request {}: {e}", path.display()))?;
            serde_json::from_slice(&text).map_err(|e| format!("request {}: {e}", path.display()))?
        }
    };
    if let Some(patch) = &case.patch {
        fixtures::merge_patch(&mut base, patch);
    }
    Ok(base)
}

/// The `context` of a `request:` case (a `jwt:` case gets it from the envelope): jwt mode and the
/// key `fixture` unless it says otherwise; in json mode no key verified anything, as on the server.
fn case_context(case: &Case, received_at: DateTime<Utc>) -> RequestContext {
    let context = case.context.as_ref();
    let mode = context.and_then(|c| c.mode).unwrap_or(Mode::Jwt);
    let named = context.and_then(|c| c.cosigner_key.clone());
    let cosigner_key = match mode {
        Mode::Jwt => Some(named.unwrap_or_else(|| "fixture".into())),
        Mode::Json => named,
    };
    RequestContext { received_at, mode, cosigner_key: cosigner_key.map(Into::into) }
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
    let shared = FixturePipeline { policy: Arc::new(store), evaluator: Arc::new(evaluator) };
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
                for (mutation, payload) in mutate::mutants(&send.payload) {
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
    Ok(decided.decision)
}

/// What a policy tool needs to decide fixture requests: the set and evaluation threads, shared
/// by every case (each has a state store of its own).
struct FixturePipeline {
    policy: Arc<PolicyStore>,
    evaluator: Arc<Evaluator>,
}

impl FixturePipeline {
    /// A pipeline over a fresh in-memory store holding `history`: each case's own.
    async fn pipeline(&self, history: &[fixtures::HistoryEvent]) -> Result<Pipeline, String> {
        let state = Arc::new(StateStore::in_memory().map_err(|e| e.to_string())?);
        seed(&state, history).await?;
        let (policy, evaluator) = (self.policy.clone(), self.evaluator.clone());
        Ok(Pipeline::new(CosignerKeyring::default(), None, policy, evaluator, state, HoldSettings::default()))
    }
}

fn expect_of(expect: &Option<fixtures::Expect>) -> fixtures::Expect {
    let expect = expect.as_ref();
    fixtures::Expect {
        action: expect.map_or(crate::decision::Action::Reject, |e| e.action),
        reason: expect.and_then(|e| e.reason.clone()),
    }
}

/// One request a case sends: the step it belongs to, its number in the case, its payload and time.
struct StepRequest {
    step: usize,
    number: u32,
    payload: Value,
    at: DateTime<Utc>,
}

/// Every request of a case's steps (a single-request case is one step), in order.
fn sends(case: &Case, steps: &[Step], base: &Value, received_at: DateTime<Utc>) -> Result<Vec<StepRequest>, String> {
    let mut out = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let at = match &step.now {
            Some(_) => parse_now(step.now.as_ref())?,
            None => received_at,
        };
        for _ in 0..step.repeat.unwrap_or(1) {
            let number = out.len() as u32 + 1;
            let mut payload = base.clone();
            if let Some(patch) = &step.patch {
                fixtures::merge_patch(&mut payload, patch);
            }
            if case.steps.is_some() {
                fresh_ids(&mut payload, step.patch.as_ref(), number);
            }
            out.push(StepRequest { step: index, number, payload, at });
        }
    }
    Ok(out)
}

/// Each step's request is a new transaction unless its patch names one.
fn fresh_ids(payload: &mut Value, patch: Option<&Value>, n: u32) {
    let named = |field: &str| patch.and_then(|p| p.get(field)).is_some();
    if named("requestId") || named("txId") {
        return;
    }
    for field in ["requestId", "txId"] {
        if let Some(Value::String(id)) = payload.get_mut(field) {
            *id = format!("{id}-{n}");
        }
    }
}

/// Records the case's history: each event an approved transaction of its own.
async fn seed(state: &StateStore, history: &[fixtures::HistoryEvent]) -> Result<(), String> {
    for (n, event) in history.iter().enumerate() {
        let amount = Amount::parse(&event.amount)
            .ok_or_else(|| format!("history[{n}].amount {:?} is not a decimal string", event.amount))?;
        let at = DateTime::parse_from_rfc3339(&event.at).map_err(|e| format!("history[{n}].at: {e}"))?;
        let commit = Commit {
            id: format!("history-{n}"),
            at_us: at.timestamp_micros().max(0) as u64,
            reads: Vec::new(),
            records: vec![Record { key: event.key.clone(), amount }],
        };
        state.commit(commit).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The case's hold on its transaction, bound to the request's identity, as if created ten
/// minutes before the request and left by its approvers as the case says.
fn hold_of(spec: &fixtures::HoldSpec, request: &CosignerRequest, now: DateTime<Utc>) -> Hold {
    let minutes = chrono::Duration::minutes;
    let at = timestamp(now - minutes(5));
    let expires = if spec.status == Status::Expired { now - chrono::Duration::seconds(1) } else { now + minutes(45) };
    let decided = matches!(spec.status, Status::Approved | Status::Rejected).then_some(spec.status);
    let identity = crate::identity::identity(request.kind, &request.payload);
    Hold {
        id: request.ledger_id().to_string(),
        digest: crate::keys::hex(&crate::identity::digest_of(&identity)),
        required: spec.required.unwrap_or(2),
        reason: spec.reason.clone(),
        created_at: timestamp(now - minutes(10)),
        expires_at: timestamp(expires),
        decided,
        approvals: spec.approvals.iter().map(|name| Approval { approver: name.clone(), at: at.clone() }).collect(),
        rejections: spec
            .rejections
            .iter()
            .map(|r| Rejection { approver: r.approver.clone(), at: at.clone(), reason: r.reason.clone() })
            .collect(),
        summary: crate::holds::summary(request.kind, identity, &request.payload),
    }
}

fn judge(want: &fixtures::Expect, decision: &crate::decision::Decision) -> Outcome {
    let reason = decision.reason.as_deref().unwrap_or("");
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
