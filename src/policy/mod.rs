//! Policies: the set loaded from disk as an immutable snapshot, the input document, and evaluation.

mod evaluator;
mod input;
mod snapshot;

pub use evaluator::Evaluator;
pub use input::{RequestContext, input_document};
pub use snapshot::{Entrypoints, LoadError, PolicySnapshot};
