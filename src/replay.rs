//! Replay: every decision of a decision log decided again against a policy set, with exactly what
//! the policy saw then — the input document (payload, context, hold), the receipt time that
//! `time.now_ns()` returns, and the state reads — never the clock or a live store. What a record
//! holds is read back by [`Logged`]; [`Replayer`] re-decides it (shadow evaluation uses it too).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decision::{Action, Decision};
use crate::envelope::Mode;
use crate::holds::HoldSettings;
use crate::keys::CosignerKeyring;
use crate::pipeline::{Decided, Pipeline};
use crate::policy::{Evaluator, Fallbacks, PolicyStore, RequestContext, VelocityRead};
use crate::request::{CosignerRequest, RequestKind};
use crate::state::StateStore;

/// Decisions whose answer did not come from the policy or its inputs, but from the handler's
/// surroundings at the time: replaying the policy says nothing about them.
const NOT_THE_POLICY: [&str; 5] = [
    "fallback:request_id_reuse",
    "fallback:tx_id_reuse",
    "fallback:state",
    "fallback:decision_log",
    "fallback:overloaded",
];

/// An action and its reason: what a decision answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub action: Action,
    pub reason: Option<String>,
}

impl From<&Decision> for Answered {
    fn from(decision: &Decision) -> Self {
        Self { action: decision.action, reason: decision.reason.clone() }
    }
}

/// A decision record of the log, as replay needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct Logged {
    pub decision_id: String,
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub kind: RequestKind,
    #[serde(flatten)]
    pub answered: Answered,
    pub source: String,
    pub input: Value,
    #[serde(default)]
    pub state: LoggedState,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggedState {
    #[serde(default)]
    pub reads: Vec<VelocityRead>,
}

impl Logged {
    /// A decision record, or `None` for the log's other records (refusals, events, verdicts).
    pub fn parse(line: &str) -> Result<Option<Self>, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("input").is_none() || value.get("action").is_none() {
            return Ok(None);
        }
        Self::deserialize(value).map(Some).map_err(|e| format!("not a decision record: {e}"))
    }

    /// The request and its context, rebuilt from the input document.
    pub fn request(&self) -> Result<(CosignerRequest, RequestContext), String> {
        let context = &self.input["context"];
        let received_ns = context["received_at_ns"].as_i64().ok_or("input.context.received_at_ns is missing")?;
        let mode = Mode::deserialize(&context["mode"]).map_err(|e| format!("input.context.mode: {e}"))?;
        let request =
            CosignerRequest::from_payload(self.kind, self.input["request"].clone()).map_err(|e| e.to_string())?;
        let context = RequestContext {
            received_at: DateTime::<Utc>::from_timestamp_nanos(received_ns),
            mode,
            cosigner_key: context["cosigner_key"].as_str().map(Into::into),
        };
        Ok((request, context))
    }

    /// The hold the request saw, if any.
    pub fn hold(&self) -> Option<crate::holds::Hold> {
        self.input["context"].get("hold").and_then(crate::holds::from_view)
    }

    /// Whether the decision log replaced values of the input (`decision_log.redact`): replay sees
    /// the placeholder where the policy saw the value.
    pub fn is_redacted(&self) -> bool {
        fn redacted(value: &Value) -> bool {
            match value {
                Value::String(s) => s == crate::decision_log::REDACTED,
                Value::Array(items) => items.iter().any(redacted),
                Value::Object(map) => map.values().any(redacted),
                _ => false,
            }
        }
        redacted(&self.input["request"])
    }
}

/// What became of one record.
#[derive(Debug)]
pub enum Outcome {
    /// Re-decided; `after` is the new answer.
    Decided { after: Answered, revision: String },
    /// The answer came from the handler's surroundings, not the policy (see [`NOT_THE_POLICY`]).
    Skipped,
    /// The policy read state the record does not hold.
    Unrecorded,
}

/// Decides logged requests again against one policy set.
pub struct Replayer {
    pipeline: Pipeline,
    timeout: Duration,
}

impl Replayer {
    /// The set in `dir`, compiled with `options`, answering failures with `fallbacks`.
    pub fn open(
        dir: &Path,
        options: crate::policy::CompileOptions,
        fallbacks: Fallbacks,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let timeout = options.eval_timeout;
        let policy = Arc::new(PolicyStore::open(dir, options)?);
        Ok(Self::over(policy, Arc::new(Evaluator::new(threads, timeout, fallbacks)?), timeout)?)
    }

    /// Over a policy store kept elsewhere (the shadow's candidate, hot-reloaded by the server).
    pub fn over(policy: Arc<PolicyStore>, evaluator: Arc<Evaluator>, timeout: Duration) -> std::io::Result<Self> {
        // Nothing is written: the store is only there because a pipeline has one.
        let state = Arc::new(StateStore::in_memory().map_err(|e| std::io::Error::other(e.to_string()))?);
        let pipeline =
            Pipeline::new(CosignerKeyring::default(), None, policy, evaluator, state, HoldSettings::default());
        Ok(Self { pipeline, timeout })
    }

    pub fn revision(&self) -> String {
        self.pipeline.policy().active().revision.clone()
    }

    /// Re-decides `logged`. `live` serves, read-only, the state reads the record does not hold
    /// (shadow evaluation); without it such a read makes the outcome [`Outcome::Unrecorded`].
    pub async fn replay(&self, logged: &Logged, live: Option<Arc<StateStore>>) -> Result<Outcome, String> {
        if NOT_THE_POLICY.contains(&logged.source.as_str()) {
            return Ok(Outcome::Skipped);
        }
        let decided = self.redecide(logged, live).await?;
        if decided.state.unrecorded {
            return Ok(Outcome::Unrecorded);
        }
        Ok(Outcome::Decided { after: Answered::from(&decided.decision), revision: decided.policy_revision })
    }

    /// The decision `logged` gets from this set, with everything the re-decision saw.
    async fn redecide(&self, logged: &Logged, live: Option<Arc<StateStore>>) -> Result<Decided, String> {
        let (request, context) = logged.request()?;
        let deadline = Instant::now() + self.timeout + Duration::from_secs(1);
        let hold = logged.hold();
        Ok(self.pipeline.redecide(request, &context, hold.as_ref(), logged.state.reads.clone(), live, deadline).await)
    }
}

/// One decision whose answer changed.
#[derive(Debug, Serialize)]
pub struct Change {
    /// Position in the log, for the report's order.
    #[serde(skip)]
    order: usize,
    pub decision_id: String,
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub before: Answered,
    pub after: Answered,
}

/// A record that could not be re-decided exactly, and why.
#[derive(Debug, Serialize)]
pub struct NotReplayed {
    #[serde(skip)]
    order: usize,
    pub decision_id: String,
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub why: String,
}

/// What a replay found. `total` counts the decisions re-decided; `changed` those whose action or
/// reason differs.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub total: usize,
    pub changed: usize,
    pub changes: Vec<Change>,
    /// Decisions not re-decided: answers of the surroundings (state store, log, overload).
    pub skipped: usize,
    /// Decisions the set could not re-decide exactly (state it reads that the record lacks).
    pub unreplayable: Vec<NotReplayed>,
    /// Re-decided records whose input was redacted in the log.
    pub redacted: usize,
    /// Lines that are not records (a cut last line after a crash): `file:line: what`.
    pub unreadable: Vec<String>,
    pub policy_revision: String,
}

impl Report {
    /// Nothing changed, and everything could be replayed.
    pub fn is_unchanged(&self) -> bool {
        self.changed == 0 && self.unreplayable.is_empty()
    }
}

/// Replays every decision record of `files` (oldest first) with `replayer`, `parallel` at a time.
pub async fn replay_files(replayer: Arc<Replayer>, files: &[PathBuf], parallel: usize) -> anyhow::Result<Report> {
    let mut report = Report { policy_revision: replayer.revision(), ..Report::default() };
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let mut order = 0usize;
    for file in files {
        let reader =
            std::io::BufReader::new(std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?);
        for (index, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let logged = match Logged::parse(&line) {
                Ok(Some(logged)) => logged,
                Ok(None) => continue,
                Err(what) => {
                    report.unreadable.push(format!("{}:{}: {what}", file.display(), index + 1));
                    continue;
                }
            };
            let permit = limit.clone().acquire_owned().await?;
            let replayer = replayer.clone();
            order += 1;
            let at = order;
            running.spawn(async move {
                let outcome = replayer.replay(&logged, None).await;
                drop(permit);
                (at, logged, outcome)
            });
            // Keeps finished tasks from piling up on a long log.
            while let Some(done) = running.try_join_next() {
                tally(&mut report, done?);
            }
        }
    }
    while let Some(done) = running.join_next().await {
        tally(&mut report, done?);
    }
    report.changes.sort_by_key(|c| c.order);
    report.unreplayable.sort_by_key(|c| c.order);
    Ok(report)
}

fn tally(report: &mut Report, (order, logged, outcome): (usize, Logged, Result<Outcome, String>)) {
    let not_replayed = |why: String| NotReplayed {
        order,
        decision_id: logged.decision_id.clone(),
        request_id: logged.request_id.clone(),
        why,
    };
    match outcome {
        Err(why) => report.unreplayable.push(not_replayed(why)),
        Ok(Outcome::Skipped) => report.skipped += 1,
        Ok(Outcome::Unrecorded) => report
            .unreplayable
            .push(not_replayed("the policy reads state (velocity.*) that the record does not hold".into())),
        Ok(Outcome::Decided { after, .. }) => {
            report.total += 1;
            report.redacted += usize::from(logged.is_redacted());
            if after != logged.answered {
                report.changed += 1;
                report.changes.push(Change {
                    order,
                    decision_id: logged.decision_id,
                    request_id: logged.request_id,
                    before: logged.answered,
                    after,
                });
            }
        }
    }
}
