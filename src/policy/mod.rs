//! Policies: the set loaded from disk as an immutable snapshot, the input document, and evaluation.

pub mod analysis;
mod branches;
mod builtins;
mod evaluator;
mod input;
pub mod lint;
pub mod portable;
mod rawtx;
mod snapshot;
mod source;
mod store;
pub mod velocity;
pub mod watch;

pub use evaluator::{Evaluation, Evaluator, Fallbacks};
pub use input::{RequestContext, input_document};
pub use snapshot::{
    CompileOptions, DEFAULT_EVAL_TIMEOUT_MS, DEFAULT_RELOAD_TIMEOUT_MS, Entrypoints, LoadError, PolicySnapshot,
};
pub use source::PolicySource;
pub use store::{ActivationGate, PolicyStore, ReloadOutcome};
pub use velocity::{Ledger, MAX_KEY_BYTES, VelocityRead};

/// regorus recursion overflows a 2 MiB stack at a few hundred levels and aborts the process; the
/// memory is reserved, not committed, so a large stack costs only what deep policies use. Loading
/// (which evaluates the entrypoints once) and every evaluation run on threads of this size.
pub(crate) const EVAL_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs `work` on a thread with the evaluation stack size and waits for it.
pub fn on_eval_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    std::thread::Builder::new()
        .name("policy-eval".into())
        .stack_size(EVAL_STACK_BYTES)
        .spawn(work)?
        .join()
        .map_err(|_| std::io::Error::other("the evaluation thread panicked"))
}
