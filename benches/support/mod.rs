//! What the benchmarks share.

use std::path::Path;

/// Copies the starter policy set — its policies, libraries and data, not its tests — into `to`.
pub fn copy_starter(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for dir in ["cosigner", "lib", "rawtx", "treasury"] {
        std::fs::create_dir_all(to.join(dir)).expect("mkdir");
        for entry in std::fs::read_dir(from.join(dir)).expect("policies") {
            let name = entry.expect("entry").file_name();
            if !name.to_string_lossy().contains("_test.") {
                std::fs::copy(from.join(dir).join(&name), to.join(dir).join(&name)).expect("copy");
            }
        }
    }
}
