//! Evaluation off the async workers: a small pool of large-stack threads, a time budget, and every
//! failure turned into the configured fallback.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::PolicySnapshot;
use super::snapshot::is_time_limit;
use super::velocity::{Ledger, mark_origin_reuse, with_ledger};
use crate::decision::{Decision, FailureClass, FallbackAction};
use crate::request::RequestKind;

/// Evaluations waiting for a thread beyond this are answered with the fallback at once.
const QUEUE_DEPTH: usize = 1024;
/// Time allowed past the budget for the interpreter's own timer to fire before we stop waiting.
const TIMER_GRACE: Duration = Duration::from_millis(250);

type Job = Box<dyn FnOnce() + Send>;

/// The answer for each kind of failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fallbacks {
    /// Evaluations cut by a time budget.
    pub timeout: FallbackAction,
    /// The state store could not be used.
    pub state: FallbackAction,
    /// Every other failure.
    pub error: FallbackAction,
}

/// A finished evaluation.
pub struct Evaluation {
    pub decision: Decision,
    /// What the policy printed (also logged, target `policy_print`).
    pub prints: Vec<String>,
    /// The ledger given to [`Evaluator::decide`], with what the policy read; `None` if the
    /// evaluation never finished.
    pub ledger: Option<Ledger>,
}

/// Decides requests against a policy snapshot; never returns an error, only decisions.
pub struct Evaluator {
    jobs: SyncSender<Job>,
    timeout: Duration,
    fallbacks: Fallbacks,
}

impl Evaluator {
    pub fn new(threads: usize, timeout: Duration, fallbacks: Fallbacks) -> std::io::Result<Self> {
        Self::spawn("policy-eval", threads, timeout, fallbacks, false)
    }

    /// One thread at the lowest CPU priority, for work that must never slow an answer (shadow
    /// evaluation): under load the scheduler runs it only on CPU time the answers leave.
    pub fn background(timeout: Duration, fallbacks: Fallbacks) -> std::io::Result<Self> {
        Self::spawn("policy-shadow", 1, timeout, fallbacks, true)
    }

    fn spawn(name: &str, threads: usize, timeout: Duration, fallbacks: Fallbacks, idle: bool) -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new().name(format!("{name}-{n}")).stack_size(super::EVAL_STACK_BYTES).spawn(
                move || {
                    if idle {
                        lowest_priority();
                    }
                    work(&queue)
                },
            )?;
        }
        Ok(Self { jobs, timeout, fallbacks })
    }

    pub fn fallback(&self, class: FailureClass) -> Decision {
        let action = match class {
            FailureClass::Timeout => self.fallbacks.timeout,
            FailureClass::State => self.fallbacks.state,
            _ => self.fallbacks.error,
        };
        Decision::fallback(action, class)
    }

    /// Evaluates `input` for `kind` against `snapshot`, within the time budget and before
    /// `deadline`, with `ledger` serving the policy's state reads.
    pub async fn decide(
        &self,
        snapshot: Arc<PolicySnapshot>,
        kind: RequestKind,
        input: regorus::Value,
        deadline: Instant,
        ledger: Option<Ledger>,
    ) -> Evaluation {
        let failed = |class| Evaluation { decision: self.fallback(class), prints: Vec::new(), ledger: None };
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let (outcome, ledger) = with_ledger(ledger, || {
                catch_unwind(AssertUnwindSafe(|| snapshot.evaluate(kind, mark_origin_reuse(input))))
            });
            let _ = reply.send((outcome, ledger));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return failed(FailureClass::Overloaded),
            Err(TrySendError::Disconnected(_)) => return failed(FailureClass::Panic),
        }
        let budget = (self.timeout + TIMER_GRACE).min(deadline.saturating_duration_since(Instant::now()));
        let (outcome, ledger) = match tokio::time::timeout(budget, answer).await {
            Err(_) => {
                tracing::error!(budget_ms = budget.as_millis() as u64, "policy evaluation did not finish in time");
                return failed(FailureClass::Timeout);
            }
            Ok(Err(_)) => return failed(FailureClass::Panic),
            Ok(Ok(finished)) => finished,
        };
        let Ok((result, prints)) = outcome else {
            tracing::error!("policy evaluation panicked");
            return Evaluation { ledger, ..failed(FailureClass::Panic) };
        };
        for line in &prints {
            tracing::info!(target: "policy_print", "{line}");
        }
        let decision = match ledger.as_ref().and_then(Ledger::failure) {
            // A read that failed decides, whatever the policy made of the error.
            Some(error) => {
                tracing::error!(%error, "policy could not read the state store");
                self.fallback(FailureClass::State)
            }
            None => self.interpret(result),
        };
        Evaluation { decision, prints, ledger }
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

/// Nice 19 for the calling thread (on Linux, `setpriority` with `who = 0` applies to the calling
/// thread only).
fn lowest_priority() {
    // SAFETY: setpriority takes no pointers; a failure leaves the priority as it was.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the shadow evaluator's priority");
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
