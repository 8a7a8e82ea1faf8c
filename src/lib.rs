//! The root package of the firewatch workspace. It owns the end-to-end tests
//! (`tests/`) and benchmarks (`benches/`) that span crates; this library only
//! holds what they share: where fixtures live (this repository's and the
//! third-party ones), whether `go tool pprof` runs, and a generator of
//! synthetic profiles ([`synth`]).

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

/// The directory of third-party profiles kept outside the repository, from
/// `FIREWATCH_CONFORMANCE_DIR` (`.ci/run` sets it); `None` when unset. Tests
/// and benchmarks find those files through this variable only.
pub fn conformance_dir() -> Option<PathBuf> {
    std::env::var_os("FIREWATCH_CONFORMANCE_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// google/pprof's test data (`large.cpu`, `sample.cpu`,
/// `cppbench.cpu_no_samples_type`, `go.nomappings.crash`): `google-pprof/` in
/// [`conformance_dir`]. When `FIREWATCH_CONFORMANCE_DIR` is unset, says on
/// stderr that those files are skipped and returns `None`.
///
/// # Panics
///
/// When the variable is set but its directory has no `google-pprof/`: a
/// wrong setting fails instead of skipping quietly.
pub fn google_pprof_fixtures() -> Option<PathBuf> {
    let Some(dir) = conformance_dir() else {
        eprintln!("FIREWATCH_CONFORMANCE_DIR is not set: skipping google/pprof's test data");
        return None;
    };
    let google = dir.join("google-pprof");
    assert!(
        google.is_dir(),
        "FIREWATCH_CONFORMANCE_DIR is {} but it has no google-pprof/",
        dir.display()
    );
    Some(google)
}

/// True when `go tool pprof` can run here. When it cannot, says so on
/// stderr, and fails if `FIREWATCH_REQUIRE_GO` is set (CI sets it).
pub fn go_available() -> bool {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_GO").is_none(),
            "FIREWATCH_REQUIRE_GO is set but `go` does not run"
        );
        eprintln!("go does not run here: skipping the comparison with go tool pprof");
    }
    ok
}
