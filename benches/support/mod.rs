//! What the benchmarks share.

use std::path::Path;

/// Copies the starter policy set — its policies, libraries and data, not its tests — into `to`.
pub fn copy_starter(to: &Path) {
    cosigner_guard::dev::write_starter_policies(to).expect("starter policies");
}
