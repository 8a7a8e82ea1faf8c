//! The root package of the firewatch workspace. It owns the end-to-end tests
//! (`tests/`) and benchmarks (`benches/`) that span crates; this library only
//! holds what they share: where fixtures live, how to run `go tool pprof`, and
//! a generator of large synthetic profiles ([`synth`]).

pub mod synth;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/` of this repository (profiles the project generates itself).
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

/// Third-party profiles (google/pprof's test data), from
/// `FIREWATCH_CONFORMANCE_DIR` (set by `.ci/run`), else `../shared/fixtures`
/// beside the checkout when present.
pub fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FIREWATCH_CONFORMANCE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let beside = workspace_root().join("../shared/fixtures");
    beside.is_dir().then_some(beside)
}

/// True when `go tool pprof` can run here.
pub fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}
