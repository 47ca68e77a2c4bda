//! One fixture case through the fixture pipeline: its request built from the suite, its state
//! seeded, its steps sent in order, its answer judged.

use crate::decimal::Amount;
use crate::envelope::Mode;
use crate::holds::{Approval, Hold, HoldSettings, Rejection, Status, timestamp};
use crate::keys::{CosignerKey, CosignerKeyring};
use crate::pipeline::{self, Pipeline};
use crate::policy::{Evaluator, PolicyStore, RequestContext};
use crate::request::{CosignerRequest, RequestKind};
use crate::state::{Commit, Record, StateStore};
use chrono::{DateTime, Utc};
use fixtures::{Case, FixtureKind, Fixtures, RequestSpec, Step};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// One fixture case: payload → (envelope) → request → input document → evaluation → decision,
/// against a state store of its own, seeded with the case's `history`.
pub(super) async fn fixture_case(
    shared: &FixturePipeline,
    suite: &Fixtures,
    case: &Case,
    eval_timeout: Duration,
) -> Result<TestResult, SetupError> {
    let started = Instant::now();
    let at = |what: &str| SetupError(format!("{}: case {:?}: {what}", suite.path.display(), case.name));
    let run = CaseRun {
        kind: case_kind(suite, case),
        received_at: parse_now(case.now.as_ref()).map_err(|e| at(&e))?,
        pipeline: shared.pipeline(&case.history).await.map_err(|e| at(&e))?,
        eval_timeout,
        name: &case.name,
        shared,
    };
    let (outcome, prints) = match (&case.request, &case.jwt, &case.steps, &case.expect) {
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
            run.signed(suite, jwt, expect).await.map_err(|e| at(&e))?
        }
        (Some(spec), None, steps, expect) => {
            let base = case_payload(suite, case, spec).map_err(|e| at(&e))?;
            let hold = match &case.hold {
                Some(_) if steps.is_some() => {
                    return Err(at("`hold` seeds the hold of a single request, not of steps"));
                }
                Some(spec) => Some(run.seed_hold(spec, &base).await.map_err(|e| at(&e))?),
                None => None,
            };
            if !case.state.is_empty() {
                // A recorded decision: decided again with exactly the reads it recorded.
                let (Some(expect), true) = (expect, case.history.is_empty()) else {
                    return Err(at("`state` replays a single recorded request: no `steps` or `history`"));
                };
                run.recorded(case, base, hold.as_ref(), expect).await
            } else {
                run.stepped(case, steps.as_deref(), expect, &base).await.map_err(|e| at(&e))?
            }
        }
    };
    Ok(TestResult {
        name: case.name.clone(),
        suite: "fixture",
        location: suite.location_of(&case.name),
        outcome,
        duration: started.elapsed(),
        prints,
    })
}

/// One case being decided: its pipeline (with the case's history) and its time.
pub(super) struct CaseRun<'a> {
    pub(super) kind: RequestKind,
    pub(super) received_at: DateTime<Utc>,
    pub(super) pipeline: Pipeline,
    pub(super) eval_timeout: Duration,
    pub(super) name: &'a str,
    pub(super) shared: &'a FixturePipeline,
}

impl CaseRun<'_> {
    /// Exports the decision when `--export-decisions` asks for it.
    fn decided(&self, decided: &crate::pipeline::Decided) {
        self.shared.export(self.name, self.kind, decided);
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.eval_timeout + Duration::from_secs(1)
    }

    /// A signed `jwt:` case: verified with the case's key, then decided.
    async fn signed(
        &self,
        suite: &Fixtures,
        jwt: &fixtures::JwtSpec,
        expect: &fixtures::Expect,
    ) -> Result<(Outcome, Vec<String>), String> {
        let token = std::fs::read(suite.resolve(&jwt.token)).map_err(|e| format!("jwt.token: {e}"))?;
        let name = jwt.key_name.as_deref().unwrap_or("fixture");
        let key = CosignerKey::from_pem_file(name, &suite.resolve(&jwt.key)).map_err(|e| format!("jwt.key: {e}"))?;
        Ok(match pipeline::open(Mode::Jwt, self.kind, &token, self.received_at, &CosignerKeyring::new(vec![key])) {
            Err(refusal) => (Outcome::Fail(format!("the request was refused, no decision: {refusal}")), Vec::new()),
            Ok((request, context)) => {
                let decided = self.pipeline.decide(request, &context, self.deadline()).await;
                self.decided(&decided);
                (judge(expect, &decided.decision), decided.prints)
            }
        })
    }

    /// Keeps the case's `hold:` in the store, as if approvers had acted on it.
    async fn seed_hold(&self, spec: &fixtures::HoldSpec, base: &Value) -> Result<Hold, String> {
        let request = CosignerRequest::from_payload(self.kind, base.clone()).map_err(|e| e.to_string())?;
        let hold = hold_of(spec, &request, self.received_at);
        crate::holds::keep(self.pipeline.state(), &hold, 0).await.map_err(|e| format!("hold: {e}"))?;
        Ok(hold)
    }

    /// A case made from a logged decision: decided again with the reads it recorded.
    async fn recorded(
        &self,
        case: &Case,
        base: Value,
        hold: Option<&Hold>,
        expect: &fixtures::Expect,
    ) -> (Outcome, Vec<String>) {
        match CosignerRequest::from_payload(self.kind, base) {
            Err(e) => (Outcome::Fail(format!("the request was refused, no decision: {e}")), Vec::new()),
            Ok(request) => {
                let context = case_context(case, self.received_at);
                let decided =
                    self.pipeline.redecide(request, &context, hold, case.state.clone(), None, self.deadline()).await;
                self.decided(&decided);
                (judge(expect, &decided.decision), decided.prints)
            }
        }
    }

    /// A single request, or `steps` sent one after another against the same store.
    async fn stepped(
        &self,
        case: &Case,
        steps: Option<&[Step]>,
        expect: &Option<fixtures::Expect>,
        base: &Value,
    ) -> Result<(Outcome, Vec<String>), String> {
        let one = [Step { name: None, patch: None, now: None, repeat: None, expect: expect_of(expect) }];
        let steps = steps.unwrap_or(&one);
        let mut prints = Vec::new();
        for sent in sends(case, steps, base, self.received_at)? {
            let step = &steps[sent.step];
            let request = match CosignerRequest::from_payload(self.kind, sent.payload) {
                Ok(request) => request,
                Err(e) => return Ok((Outcome::Fail(format!("the request was refused, no decision: {e}")), prints)),
            };
            let decided = self.pipeline.decide(request, &case_context(case, sent.at), self.deadline()).await;
            self.decided(&decided);
            prints.extend(decided.prints);
            if let Outcome::Fail(why) = judge(&step.expect, &decided.decision) {
                let why = match &case.steps {
                    None => why,
                    Some(_) => {
                        let name = step.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                        format!("step {}{name}, request {}: {why}", sent.step + 1, sent.number)
                    }
                };
                return Ok((Outcome::Fail(why), prints));
            }
        }
        Ok((Outcome::Pass, prints))
    }
}

pub(super) fn case_kind(suite: &Fixtures, case: &Case) -> RequestKind {
    match case.kind.unwrap_or(suite.file.kind) {
        FixtureKind::Transaction => RequestKind::Transaction,
        FixtureKind::ConfigChange => RequestKind::ConfigChange,
    }
}

/// A case's `now` (RFC 3339), else the clock.
pub(super) fn parse_now(now: Option<&String>) -> Result<DateTime<Utc>, String> {
    match now {
        Some(now) => DateTime::parse_from_rfc3339(now).map(|t| t.with_timezone(&Utc)).map_err(|e| format!("now: {e}")),
        None => Ok(Utc::now()),
    }
}

/// The case's request payload: the file or inline mapping, with the case's patch.
pub(super) fn case_payload(suite: &Fixtures, case: &Case, spec: &RequestSpec) -> Result<Value, String> {
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
pub(super) fn case_context(case: &Case, received_at: DateTime<Utc>) -> RequestContext {
    let context = case.context.as_ref();
    let mode = context.and_then(|c| c.mode).unwrap_or(Mode::Jwt);
    let named = context.and_then(|c| c.cosigner_key.clone());
    let cosigner_key = match mode {
        Mode::Jwt => Some(named.unwrap_or_else(|| "fixture".into())),
        Mode::Json => named,
    };
    let origin = context.and_then(|c| c.origin.clone());
    RequestContext { received_at, mode, cosigner_key: cosigner_key.map(Into::into), origin }
}

/// What a policy tool needs to decide fixture requests: the set and evaluation threads, shared
/// by every case (each has a state store of its own).
pub(super) struct FixturePipeline {
    pub(super) policy: Arc<PolicyStore>,
    pub(super) evaluator: Arc<Evaluator>,
    pub(super) export: Option<Arc<super::export::Exporter>>,
}

impl FixturePipeline {
    /// A pipeline over a fresh in-memory store holding `history`: each case's own.
    pub(super) async fn pipeline(&self, history: &[fixtures::HistoryEvent]) -> Result<Pipeline, String> {
        let state = Arc::new(StateStore::in_memory().map_err(|e| e.to_string())?);
        seed(&state, history).await?;
        let (policy, evaluator) = (self.policy.clone(), self.evaluator.clone());
        let pipeline =
            Pipeline::new(CosignerKeyring::default(), None, policy, evaluator, state, HoldSettings::default());
        Ok(if self.export.is_some() { pipeline.recording_calls() } else { pipeline })
    }

    /// Exports a decision of case `name` when `--export-decisions` asks for it.
    pub(super) fn export(&self, name: &str, kind: RequestKind, decided: &crate::pipeline::Decided) {
        if let Some(export) = &self.export {
            export.decided(name, kind, decided);
        }
    }
}

pub(super) fn expect_of(expect: &Option<fixtures::Expect>) -> fixtures::Expect {
    let expect = expect.as_ref();
    fixtures::Expect {
        action: expect.map_or(crate::decision::Action::Reject, |e| e.action),
        reason: expect.and_then(|e| e.reason.clone()),
    }
}

/// One request a case sends: the step it belongs to, its number in the case, its payload and time.
pub(super) struct StepRequest {
    pub(super) step: usize,
    pub(super) number: u32,
    pub(super) payload: Value,
    pub(super) at: DateTime<Utc>,
}

/// Every request of a case's steps (a single-request case is one step), in order.
pub(super) fn sends(
    case: &Case,
    steps: &[Step],
    base: &Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<StepRequest>, String> {
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
pub(super) fn fresh_ids(payload: &mut Value, patch: Option<&Value>, n: u32) {
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
pub(super) async fn seed(state: &StateStore, history: &[fixtures::HistoryEvent]) -> Result<(), String> {
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
pub(super) fn hold_of(spec: &fixtures::HoldSpec, request: &CosignerRequest, now: DateTime<Utc>) -> Hold {
    let minutes = chrono::Duration::minutes;
    let at = timestamp(now - minutes(5));
    let expires = if spec.status == Status::Expired { now - chrono::Duration::seconds(1) } else { now + minutes(45) };
    let decided = matches!(spec.status, Status::Approved | Status::Rejected | Status::Cancelled).then_some(spec.status);
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
        summary: crate::holds::summary(request.kind, identity, &request.payload, None),
        cancelled: (spec.status == Status::Cancelled).then(|| crate::holds::Cancellation {
            at: at.clone(),
            reason: "the transaction FAILED in Fireblocks".into(),
        }),
        expiry_announced: false,
    }
}

pub(super) fn judge(want: &fixtures::Expect, decision: &crate::decision::Decision) -> Outcome {
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
