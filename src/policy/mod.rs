//! Policies: the set loaded from disk as an immutable snapshot, the input document, and evaluation.

mod evaluator;
mod input;
mod snapshot;
mod store;
pub mod watch;

pub use evaluator::Evaluator;
pub use input::{RequestContext, input_document};
pub use snapshot::{CompileOptions, Entrypoints, LoadError, PolicySnapshot, PolicySource};
pub use store::{PolicyStore, ReloadOutcome};

/// regorus recursion overflows a 2 MiB stack at a few hundred levels and aborts the process; the
/// memory is reserved, not committed, so a large stack costs only what deep policies use. Loading
/// (which evaluates the entrypoints once) and every evaluation run on threads of this size.
const EVAL_STACK_BYTES: usize = 64 * 1024 * 1024;
