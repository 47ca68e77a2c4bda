//! Evaluation off the async workers: a small pool of large-stack threads, a time budget, and every
//! failure turned into the configured fallback.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::PolicySnapshot;
use super::snapshot::is_time_limit;
use crate::decision::{Decision, FailureClass, FallbackAction};
use crate::request::RequestKind;

/// Evaluations waiting for a thread beyond this are answered with the fallback at once.
const QUEUE_DEPTH: usize = 1024;
/// Time allowed past the budget for the interpreter's own timer to fire before we stop waiting.
const TIMER_GRACE: Duration = Duration::from_millis(250);

type Job = Box<dyn FnOnce() + Send>;

/// Decides requests against a policy snapshot; never returns an error, only decisions.
pub struct Evaluator {
    jobs: SyncSender<Job>,
    timeout: Duration,
    on_error: FallbackAction,
    on_timeout: FallbackAction,
}

impl Evaluator {
    /// `on_timeout` answers evaluations cut by a time budget; `on_error` every other failure.
    pub fn new(
        threads: usize,
        timeout: Duration,
        on_error: FallbackAction,
        on_timeout: FallbackAction,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("policy-eval-{n}"))
                .stack_size(super::EVAL_STACK_BYTES)
                .spawn(move || work(&queue))?;
        }
        Ok(Self { jobs, timeout, on_error, on_timeout })
    }

    pub fn fallback(&self, class: FailureClass) -> Decision {
        let action = if class == FailureClass::Timeout { self.on_timeout } else { self.on_error };
        Decision::fallback(action, class)
    }

    /// Evaluates `input` for `kind` against `snapshot`, within the time budget and before `deadline`.
    /// Returns the decision and what the policy printed (also logged, target `policy_print`).
    pub async fn decide(
        &self,
        snapshot: Arc<PolicySnapshot>,
        kind: RequestKind,
        input: regorus::Value,
        deadline: Instant,
    ) -> (Decision, Vec<String>) {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| snapshot.evaluate(kind, input)));
            let _ = reply.send(outcome);
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return (self.fallback(FailureClass::Overloaded), Vec::new()),
            Err(TrySendError::Disconnected(_)) => return (self.fallback(FailureClass::Panic), Vec::new()),
        }
        let budget = (self.timeout + TIMER_GRACE).min(deadline.saturating_duration_since(Instant::now()));
        let outcome = match tokio::time::timeout(budget, answer).await {
            Err(_) => {
                tracing::error!(budget_ms = budget.as_millis() as u64, "policy evaluation did not finish in time");
                return (self.fallback(FailureClass::Timeout), Vec::new());
            }
            Ok(Err(_)) => return (self.fallback(FailureClass::Panic), Vec::new()),
            Ok(Ok(outcome)) => outcome,
        };
        let Ok((result, prints)) = outcome else {
            tracing::error!("policy evaluation panicked");
            return (self.fallback(FailureClass::Panic), Vec::new());
        };
        for line in &prints {
            tracing::info!(target: "policy_print", "{line}");
        }
        (self.interpret(result), prints)
    }

    fn interpret(&self, result: anyhow::Result<regorus::Value>) -> Decision {
        let value = match result {
            Ok(regorus::Value::Undefined) => {
                tracing::warn!("policy decision is undefined");
                return self.fallback(FailureClass::Undefined);
            }
            Ok(value) => value,
            Err(e) if is_time_limit(&e) => {
                tracing::error!(error = %e, "policy evaluation exceeded its time budget");
                return self.fallback(FailureClass::Timeout);
            }
            Err(e) => {
                tracing::error!(error = %e, "policy evaluation failed");
                return self.fallback(FailureClass::EvalError);
            }
        };
        let parsed = serde_json::to_value(&value)
            .map_err(|e| e.to_string())
            .and_then(|json| Decision::from_policy_output(&json).map_err(|e| format!("{e} in {json}")));
        parsed.unwrap_or_else(|e| {
            tracing::error!(error = %e, "policy returned an invalid decision");
            self.fallback(FailureClass::InvalidDecision)
        })
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}
