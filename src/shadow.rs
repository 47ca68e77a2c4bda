//! Shadow evaluation: a candidate policy set (`[policy] candidate_dir`) decides every decided
//! request too — after its answer has left, from a bounded queue, on an evaluation thread of its
//! own at the lowest CPU priority — so it never delays or changes an answer. The candidate sees what the active set saw (the
//! input, the receipt time, the state reads; other reads come from the live store, read-only) and
//! is hot-reloaded like the active set. Disagreements are counted and logged with both decisions.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::audit::DecisionLog;
use crate::audit::records::{Disagreement, Logged};
use crate::metrics::Metrics;
use crate::policy::{Evaluator, Fallbacks, PolicyStore};
use crate::replay::{Outcome, Replayer};
use crate::state::StateStore;

/// Decided requests waiting for the candidate beyond this are not shadowed (and counted).
const QUEUE_DEPTH: usize = 1024;

pub struct Shadow {
    queue: mpsc::Sender<Logged>,
    policy: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
}

impl Shadow {
    /// Starts the candidate's worker. Needs a Tokio runtime.
    pub fn start(
        policy: Arc<PolicyStore>,
        fallbacks: Fallbacks,
        live: Arc<StateStore>,
        log: Arc<DecisionLog>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let timeout = policy.options().eval_timeout;
        let evaluator = Arc::new(Evaluator::background(timeout, fallbacks)?);
        let replayer = Replayer::over(policy.clone(), evaluator, timeout)?;
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(replayer, jobs, live, log, metrics.clone()));
        Ok(Self { queue, policy, metrics })
    }

    pub fn policy(&self) -> &Arc<PolicyStore> {
        &self.policy
    }

    /// Queues a decided request for the candidate, or drops it if the queue is full.
    pub fn offer(&self, decided: Logged) {
        if self.queue.try_send(decided).is_err() {
            self.metrics.shadow_dropped();
        }
    }

    /// For `/status`.
    pub fn status(&self) -> Value {
        let (evaluations, disagreements, dropped) = self.metrics.shadow_counts();
        json!({
            "candidate": self.policy.status(),
            "evaluations": evaluations,
            "disagreements": disagreements,
            "dropped": dropped,
        })
    }
}

async fn run(
    replayer: Replayer,
    mut jobs: mpsc::Receiver<Logged>,
    live: Arc<StateStore>,
    log: Arc<DecisionLog>,
    metrics: Arc<Metrics>,
) {
    while let Some(decided) = jobs.recv().await {
        let (after, revision) = match replayer.replay(&decided, Some(live.clone())).await {
            Ok(Outcome::Decided { after, revision }) => (after, revision),
            // Answers of the surroundings; with the live store behind it, every read is served.
            Ok(Outcome::Skipped | Outcome::Unrecorded) => continue,
            Err(error) => {
                tracing::warn!(%error, decision_id = decided.decision_id, "shadow evaluation could not run");
                continue;
            }
        };
        let disagreed = after != decided.answered;
        metrics.shadowed(disagreed);
        if !disagreed {
            continue;
        }
        tracing::warn!(
            decision_id = decided.decision_id,
            request_id = decided.request_id,
            active = decided.answered.action.as_str(),
            active_reason = decided.answered.reason.as_deref(),
            candidate = after.action.as_str(),
            candidate_reason = after.reason.as_deref(),
            candidate_revision = revision,
            "shadow: the candidate policy set decides differently"
        );
        let record = Disagreement {
            event: "shadow_disagreement",
            decision_id: &decided.decision_id,
            request_id: &decided.request_id,
            active: &decided.answered,
            candidate: &after,
            candidate_revision: &revision,
        };
        if let Err(error) = log.append(&record).await {
            tracing::warn!(%error, "shadow disagreement not recorded");
        }
    }
}
