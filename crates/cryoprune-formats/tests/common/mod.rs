//! Shared by the integration tests of this crate.

use std::path::PathBuf;

/// `../shared/data` beside the checkout, or `None` after saying why the test skips.
pub fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} not found (shared test data is not beside this checkout)",
            p.display()
        );
        None
    }
}
