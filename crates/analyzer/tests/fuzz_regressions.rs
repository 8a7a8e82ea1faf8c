//! Inputs the fuzzers (and review while fuzzing) found, kept under
//! `fuzz/regressions/` (made by `fuzz/regressions/analyze/gen.py`, or by
//! hand for `node/`: our own files) and run through the real binary. Test
//! builds check integer overflow, so each of the overflows panicked before
//! its fix; sums now wrap as Go's int64 does in pprof.

use std::path::PathBuf;
use std::process::Command;

fn regression(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/analyze")
        .join(name);
    assert!(path.exists(), "{} missing", path.display());
    path.to_str().unwrap().to_string()
}

fn node_regression(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/node")
        .join(name);
    assert!(path.exists(), "{} missing", path.display());
    path.to_str().unwrap().to_string()
}

fn analyze_ok(args: &[&str]) {
    for format in ["text", "json", "markdown"] {
        let out = Command::new(env!("CARGO_BIN_EXE_firewatch"))
            .arg("analyze")
            .args(args)
            .args(["--format", format])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{args:?} --format {format}: {stderr}"
        );
    }
}

#[test]
fn flat_values_summing_past_i64_max() {
    analyze_ok(&[&regression("flat-sum-overflow.pb")]);
}

#[test]
fn filtered_diff_whose_absolute_total_passes_i64_max() {
    let p = regression("filtered-diff-total-overflow.pb");
    analyze_ok(&[&p, &p, "--base", &p, "--focus", "a"]);
    analyze_ok(&[&p, &p, "--base", &p, "--ignore", "b"]);
}

#[test]
fn durations_summing_past_i64_max() {
    let p = regression("duration-sum-overflow.pb");
    analyze_ok(&[&p, &p]);
}

#[test]
fn diff_whose_total_passes_i64_max() {
    analyze_ok(&[
        &regression("diff-total-overflow.input.pb"),
        "--base",
        &regression("diff-total-overflow.base.pb"),
    ]);
}

#[test]
fn differential_folded_line_past_i64_max() {
    let p = regression("folded-diff-overflow.pb");
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("diff.folded");
    let svg = dir.path().join("diff.svg");
    analyze_ok(&[
        &p,
        &p,
        "--base",
        &p,
        "--folded",
        folded.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
    ]);
}

/// Profiles without a sample: a pprof one (a sample type and its strings,
/// nothing else) and Node profiles whose nodes carry nothing. With no
/// sample block to sum, the aggregation merged an empty list of partial
/// sums and panicked ("at least one partial"), alone or with a base.
/// Found by the `node` fuzz target (a `.heapprofile` whose samples all
/// name nodes outside its tree).
#[test]
fn profiles_without_samples() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("no-samples.pb");
    std::fs::write(&pb, b"\x0a\x04\x08\x01\x10\x02\x32\x00\x32\x01a\x32\x01b").unwrap();
    for p in [
        pb.to_str().unwrap().to_string(),
        node_regression("no-samples.cpuprofile"),
        node_regression("no-samples.heapprofile"),
    ] {
        analyze_ok(&[&p]);
        analyze_ok(&[&p, "--base", &p]);
    }
}
