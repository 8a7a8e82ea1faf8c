//! Agreement with `go tool pprof`: for every protobuf fixture and each of its
//! sample types, `firewatch analyze --format json --top 0 --sample-index T`
//! must give, per function, exactly the flat and cum that
//! `go tool pprof -top -nodefraction=0 -sample_index=T` prints.
//!
//! Needs Go (`.ci/run` installs it). Without it the test says so and passes
//! only when `FIREWATCH_REQUIRE_GO` is unset; CI sets it. google/pprof's test
//! data comes from `FIREWATCH_CONFORMANCE_DIR`; without it those files are
//! skipped, with a message.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use firewatch::{fixtures_dir, go_available, google_pprof_fixtures};

fn fixtures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(dir) = google_pprof_fixtures() {
        for name in [
            "large.cpu",
            "sample.cpu",
            "cppbench.cpu_no_samples_type",
            "go.nomappings.crash",
        ] {
            let path = dir.join(name);
            assert!(
                path.is_file(),
                "missing conformance fixture {}",
                path.display()
            );
            files.push(path);
        }
    }
    let mut own: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    own.sort();
    assert!(own.len() >= 4, "expected the Go fixtures in fixtures/");
    files.extend(own);
    files
}

/// (name, flat, cum) rows, sorted.
type Rows = Vec<(String, i64, i64)>;

fn firewatch_rows(file: &Path, sample_type: &str, extra: &[&str]) -> (Rows, serde_json::Value) {
    let out = Command::new(common::firewatch_binary())
        .args([
            "analyze",
            "--format",
            "json",
            "--top",
            "0",
            "--sample-index",
            sample_type,
        ])
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "firewatch failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Rows = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["flat"].as_i64().unwrap(),
                f["cum"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    (rows, json)
}

/// The suffix pprof prints after a value in `unit` when asked for `-unit=<flag>`.
fn pprof_unit(unit: &str) -> Option<&'static str> {
    match unit {
        "nanoseconds" => Some("ns"),
        "bytes" => Some("B"),
        _ => None,
    }
}

fn pprof_rows(file: &Path, sample_type: &str, unit: &str, extra: &[&str]) -> (Rows, String) {
    let sample_index = format!("-sample_index={sample_type}");
    let unit_flag = pprof_unit(unit).map(|u| format!("-unit={u}"));
    let mut args = vec!["-top", "-nodefraction=0", "-symbolize=none"];
    args.extend(extra);
    args.push(&sample_index);
    args.extend(unit_flag.as_deref());
    args.push(file.to_str().unwrap());
    let text = common::go_pprof(&args);
    let suffix = pprof_unit(unit).unwrap_or("");
    let value = |s: &str| -> i64 {
        if s == "0" {
            return 0;
        }
        let digits = s
            .strip_suffix(suffix)
            .unwrap_or_else(|| panic!("value {s:?} without unit {suffix:?}"));
        digits
            .parse()
            .unwrap_or_else(|_| panic!("value {s:?} is not an integer"))
    };
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("flat  flat%") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        // "%10s %s %s %10s %s  %s%s": flat flat% sum% cum cum%  name
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "unexpected pprof row {line:?}");
        let name_start = {
            // The name starts after the cum% field and two spaces.
            let mut rest = line;
            for _ in 0..5 {
                rest = rest.trim_start();
                rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
            }
            rest.strip_prefix("  ")
                .unwrap_or_else(|| panic!("no name separator in {line:?}"))
        };
        let name = name_start
            .strip_suffix(" (inline)")
            .or_else(|| name_start.strip_suffix(" (partial-inline)"))
            .unwrap_or(name_start);
        rows.push((name.to_string(), value(fields[0]), value(fields[3])));
    }
    rows.sort();
    (rows, text)
}

fn sample_types(file: &Path) -> Vec<(String, String)> {
    let data =
        firewatch_profile::ProfileData::open(file, firewatch_profile::DEFAULT_MAX_DECOMPRESSED)
            .unwrap();
    let view = data.view().unwrap();
    view.sample_type_names()
        .into_iter()
        .map(|(t, u)| (t.to_string(), u.to_string()))
        .collect()
}

#[test]
fn function_values_agree_with_go_tool_pprof() {
    if !go_available() {
        return;
    }
    let mut checked = 0;
    for file in fixtures() {
        for (sample_type, unit) in sample_types(&file) {
            compare(&file, &sample_type, &unit, &[], &[]);
            checked += 1;
        }
    }
    eprintln!("{checked} (profile, sample type) pairs agree with go tool pprof");
    assert!(checked >= 10);
}

/// Filters and differences agree too: `--focus`/`--ignore` against
/// `-focus`/`-ignore`, `--base` against `-base`.
#[test]
fn filters_and_differences_agree_with_go_tool_pprof() {
    if !go_available() {
        return;
    }
    let own = fixtures_dir();
    let cpu = own.join("encoded-cpu.pb.gz");
    compare(
        &cpu,
        "cpu",
        "nanoseconds",
        &["--focus", "pricing"],
        &["-focus=pricing"],
    );
    compare(
        &cpu,
        "cpu",
        "nanoseconds",
        &["--ignore", "round_cents|libc"],
        &["-ignore=round_cents|libc"],
    );
    compare(
        &cpu,
        "cpu",
        "nanoseconds",
        &["--focus", "handlers", "--ignore", "db::"],
        &["-focus=handlers", "-ignore=db::"],
    );
    let go_cpu = own.join("go-cpu.pb.gz");
    compare(
        &go_cpu,
        "cpu",
        "nanoseconds",
        &["--focus", "main\\.fib"],
        &["-focus=main\\.fib"],
    );
    let (old, new) = (
        own.join("encoded-heap-1.pb.gz"),
        own.join("encoded-heap-2.pb.gz"),
    );
    for (t, u) in [("inuse_space", "bytes"), ("alloc_objects", "count")] {
        let base = old.to_str().unwrap();
        compare(&new, t, u, &["--base", base], &[&format!("-base={base}")]);
    }
    if let Some(dir) = google_pprof_fixtures() {
        let large = dir.join("large.cpu");
        compare(
            &large,
            "cpu",
            "nanoseconds",
            &["--ignore", "time\\.Now"],
            &["-ignore=time\\.Now"],
        );
    }
}

/// A profile saved by `go tool pprof -proto -diff_base=OLD NEW` holds both
/// sides, the base's samples negated and labelled `pprof::base=true`; pprof
/// then totals only the labelled samples, so every percentage is of the
/// base. firewatch reads such a file alone the same way, and draws it as a
/// difference: the folded stacks' two columns are the base and the newer
/// profile, which pprof's `-top` totals of OLD and NEW confirm.
#[test]
fn profiles_saved_by_diff_base_agree_with_go_tool_pprof() {
    if !go_available() {
        return;
    }
    let own = fixtures_dir();
    let (old, new) = (
        own.join("encoded-heap-1.pb.gz"),
        own.join("encoded-heap-2.pb.gz"),
    );
    let dir = common::tempdir();
    let saved = dir.path().join("diff.pb.gz");
    let out = Command::new("go")
        .args(["tool", "pprof", "-proto"])
        .arg(format!("-diff_base={}", old.display()))
        .arg(&new)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&saved, &out.stdout).unwrap();
    for (t, u) in [("inuse_space", "bytes"), ("alloc_objects", "count")] {
        compare(&saved, t, u, &[], &[]);
    }

    let folded = dir.path().join("diff.folded");
    let run = Command::new(common::firewatch_binary())
        .args(["analyze", "--sample-index", "inuse_space", "--folded"])
        .arg(&folded)
        .arg(&saved)
        .output()
        .unwrap();
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(
        text.contains("Base: the samples labelled pprof::base=true"),
        "{text}"
    );
    let (mut before, mut after) = (0i64, 0i64);
    for line in std::fs::read_to_string(&folded).unwrap().lines() {
        let mut columns = line.rsplitn(3, ' ');
        after += columns.next().unwrap().parse::<i64>().unwrap();
        before += columns.next().unwrap().parse::<i64>().unwrap();
    }
    let pprof_total = |file: &Path| -> i64 {
        let (_, text) = pprof_rows(file, "inuse_space", "bytes", &[]);
        let line = text
            .lines()
            .find(|l| l.starts_with("Showing nodes accounting for"))
            .unwrap();
        line.rsplit(" of ")
            .next()
            .unwrap()
            .trim_end_matches(" total")
            .trim_end_matches('B')
            .parse()
            .unwrap()
    };
    assert_eq!(before, pprof_total(&old), "the base column is OLD");
    assert_eq!(after, pprof_total(&new), "the newer column is NEW");
}

fn compare(file: &Path, sample_type: &str, unit: &str, ours_extra: &[&str], pprof_extra: &[&str]) {
    {
        {
            let (ours, json) = firewatch_rows(file, sample_type, ours_extra);
            let (theirs, text) = pprof_rows(file, sample_type, unit, pprof_extra);
            assert!(
                !theirs.is_empty(),
                "pprof printed no rows for {} {sample_type}:\n{text}",
                file.display()
            );
            if ours != theirs {
                let ours_map: BTreeMap<_, _> =
                    ours.iter().map(|(n, f, c)| (n.clone(), (*f, *c))).collect();
                let theirs_map: BTreeMap<_, _> = theirs
                    .iter()
                    .map(|(n, f, c)| (n.clone(), (*f, *c)))
                    .collect();
                let mut diffs = Vec::new();
                for name in ours_map
                    .keys()
                    .chain(theirs_map.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    if ours_map.get(name) != theirs_map.get(name) {
                        diffs.push(format!(
                            "  {name}: firewatch {:?}, pprof {:?}",
                            ours_map.get(name),
                            theirs_map.get(name)
                        ));
                    }
                }
                panic!(
                    "{} -sample_index={sample_type} {pprof_extra:?}: {} of {} functions differ:\n{}",
                    file.display(),
                    diffs.len(),
                    theirs.len(),
                    diffs
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            // The total is pprof's total too ("… of X total").
            let total_line = text
                .lines()
                .find(|l| l.starts_with("Showing nodes accounting for"))
                .unwrap();
            let total = total_line
                .rsplit(" of ")
                .next()
                .unwrap()
                .trim_end_matches(" total");
            let suffix = pprof_unit(unit).unwrap_or("");
            let total: i64 = if total == "0" {
                0
            } else {
                total.strip_suffix(suffix).unwrap().parse().unwrap()
            };
            assert_eq!(
                json["total"].as_i64().unwrap(),
                total,
                "{} {sample_type} total",
                file.display()
            );
        }
    }
}
