//! Replay: every decision of a decision log decided again against a policy set, with exactly what
//! the policy saw then — the input document (payload, context, hold), the receipt time that
//! `time.now_ns()` returns, and the state reads — never the clock or a live store. What a record
//! holds is read back by [`Logged`]; [`Replayer`] re-decides it (shadow evaluation uses it too).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::records::{Answered, Logged};
use crate::holds::HoldSettings;
use crate::keys::CosignerKeyring;
use crate::pipeline::{Decided, Pipeline};
use crate::policy::{Evaluator, Fallbacks, PolicyStore};
use crate::state::StateStore;

/// Decisions whose answer did not come from the policy or its inputs, but from the handler's
/// surroundings at the time: replaying the policy says nothing about them.
const NOT_THE_POLICY: [&str; 6] = [
    "fallback:request_id_reuse",
    "fallback:tx_id_reuse",
    "fallback:tx_ended",
    "fallback:state",
    "fallback:decision_log",
    "fallback:overloaded",
];

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

    /// Re-decides `logged` with the reads its record lacks served by `derived`: the state this
    /// set's own approvals earlier in the log recorded. Returns the outcome, whether a read was
    /// derived, and the records its approval commits to `derived` for the decisions after it.
    async fn replay_derived(&self, logged: &Logged, derived: &Arc<StateStore>) -> Result<(Answered, bool), String> {
        let decided = self.redecide(logged, Some(derived.clone())).await?;
        let was_derived = decided.state.reads.iter().any(|read| !logged.state.reads.contains(read));
        if decided.decision.action == crate::decision::Action::Approve && !decided.decision.records.is_empty() {
            let (_, context) = logged.request()?;
            let commit = crate::state::Commit {
                id: decided.state.id.clone(),
                at_us: context.received_at.timestamp_micros().max(0) as u64,
                reads: Vec::new(),
                records: decided.decision.records.clone(),
            };
            derived.commit(commit).await.map_err(|e| e.to_string())?;
        }
        Ok((Answered::from(&decided.decision), was_derived))
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
    /// The new answer read state derived from this set's approvals earlier in the log (a limit
    /// the old set did not keep): it may under-count what came before the log's first record.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub derived: bool,
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
    /// Redacted records whose answer changed: the policy saw a value the replay cannot see, so
    /// the change is not evidence either way.
    pub inconclusive: Vec<NotReplayed>,
    /// Decisions re-decided with state derived from this set's own approvals earlier in the log.
    pub derived: usize,
    /// Lines that are not records (a cut last line after a crash): `file:line: what`.
    pub unreadable: Vec<String>,
    pub policy_revision: String,
}

impl Report {
    /// Counts `logged`'s new answer `after` as a change if it is one.
    fn change(&mut self, order: usize, logged: Logged, after: Answered, derived: bool) {
        if after != logged.answered {
            self.changed += 1;
            let (decision_id, request_id, before) = (logged.decision_id, logged.request_id, logged.answered);
            self.changes.push(Change { order, decision_id, request_id, before, after, derived });
        }
    }

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
    if !report.unreplayable.is_empty() {
        derive(&replayer, files, &mut report).await?;
    }
    report.changes.sort_by_key(|c| c.order);
    report.unreplayable.sort_by_key(|c| c.order);
    report.inconclusive.sort_by_key(|c| c.order);
    Ok(report)
}

/// The decisions that read state their record lacks (a new `velocity.*` key), decided again in log
/// order, one at a time, with that state derived from this set's own approvals before them.
async fn derive(replayer: &Replayer, files: &[PathBuf], report: &mut Report) -> anyhow::Result<()> {
    let lacking: std::collections::BTreeSet<usize> =
        report.unreplayable.iter().filter(|r| r.why == UNRECORDED).map(|r| r.order).collect();
    if lacking.is_empty() {
        return Ok(());
    }
    let derived = Arc::new(StateStore::in_memory().map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut order = 0usize;
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(Some(logged)) = Logged::parse(line) else { continue };
            order += 1;
            if NOT_THE_POLICY.contains(&logged.source.as_str()) {
                continue;
            }
            let Ok((after, was_derived)) = replayer.replay_derived(&logged, &derived).await else { continue };
            if !lacking.contains(&order) {
                continue;
            }
            report.unreplayable.retain(|r| r.order != order);
            report.total += 1;
            report.derived += usize::from(was_derived);
            report.change(order, logged, after, was_derived);
        }
    }
    Ok(())
}

const UNRECORDED: &str = "the policy reads state (velocity.*) that the record does not hold";

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
        Ok(Outcome::Unrecorded) => report.unreplayable.push(not_replayed(UNRECORDED.into())),
        Ok(Outcome::Decided { after, .. }) => {
            report.total += 1;
            report.redacted += usize::from(logged.is_redacted());
            if after != logged.answered && logged.is_redacted() {
                let why = format!("now {:?}: it depends on values the log redacted", after.action);
                report.inconclusive.push(not_replayed(why));
            } else {
                report.change(order, logged, after, false);
            }
        }
    }
}
