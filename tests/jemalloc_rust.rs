//! A Rust program on tikv-jemallocator (`examples/jemalloc-dump.rs`, built
//! with `--features jemalloc-bench`) runs with jemalloc's profiling on and
//! writes a heap dump (`prof.dump`); `firewatch analyze --symbols BINARY`
//! on it gives jeprof's per-function table (`jeprof --text --cum` with the
//! same binary), for `inuse_space` and `alloc_space`: every function's
//! flat value, the cumulative value of every function both tools name
//! alike, and the total. The program's own functions also hold the
//! amounts it allocated, within the sampling error.
//!
//! jeprof's names are not firewatch's: jeprof shortens every name
//! `addr2line -C` gives (its `ShortFunctionName`: `<…>` and `(…)` removed,
//! so `<alloc::raw_vec::RawVecInner>::try_allocate_in` is
//! `::try_allocate_in`), lists a function inlined at some addresses and
//! not at others as two rows (`f (inline)` and `f`), and tells apart two
//! symbols of one short name by address (`f@6c710`). firewatch keeps the
//! full names, one row per function. So firewatch's names are shortened by
//! jeprof's own `ShortFunctionName` (run with perl from the installed
//! script), jeprof's marks are removed, and rows that then
//! share a name are summed. Flat values add up across such rows; cumulative
//! ones do not (one stack can hold two of them), so they are compared where
//! each tool has exactly one row of that name, which includes all of the
//! program's functions. Values are compared within the truncation of
//! `docs/legacy.md` (jeprof keeps the unsampled fractions; firewatch, as
//! pprof, truncates each stack's value: less than one per stack).
//!
//! jeprof also names the C library's frames (`start_thread`,
//! `__libc_start_call_main`), from the library itself; firewatch is given
//! the program only (`[libc.so.6]`). Those rows, the ones whose addresses
//! (`jeprof --addresses`) all lie outside the program, are left out.
//!
//! Building jemalloc from C needs a C compiler and make. Without them or
//! jeprof (Debian's `libjemalloc-dev`) this says so and passes, unless
//! `FIREWATCH_REQUIRE_JEPROF` is set (CI sets it).

mod common;
#[path = "support/jeprof.rs"]
mod jeprof;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use jeprof::{short_function_names, unmarked};

/// One sample per 64 KiB allocated on average: the program's small
/// blocks are mostly unsampled, its 1 MiB ones nearly always sampled.
const LG_PROF_SAMPLE: u32 = 16;

/// How far (in standard deviations of the sampling) an estimate may miss
/// what the program allocated: about one run in a million fails by chance.
const SIGMAS: f64 = 5.0;

/// Whether jeprof, a C compiler and make run (the latter two build
/// jemalloc); without them, a notice, or a failure when
/// `FIREWATCH_REQUIRE_JEPROF` is set.
fn tools_available() -> bool {
    if !jeprof::available() {
        return false;
    }
    let missing: Vec<&str> = ["cc", "make"]
        .into_iter()
        .filter(|tool| {
            !Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("FIREWATCH_REQUIRE_JEPROF").is_none(),
        "FIREWATCH_REQUIRE_JEPROF is set but {missing:?} (needed to build jemalloc) do not run"
    );
    eprintln!("{missing:?} not installed: skipping the tikv-jemallocator comparison");
    false
}

/// What the program says it allocated under one function.
struct Expected {
    function: String,
    in_use: u64,
    allocated: u64,
    bytes: u64,
}

/// One function's values in a table.
#[derive(Default, Clone, Copy)]
struct Values {
    flat: i64,
    cum: i64,
    /// How many of the tool's rows were summed into these.
    rows: usize,
}

/// The executable ranges that `MAPPED_LIBRARIES` (the program's
/// `/proc/self/maps`) gives `binary`.
fn program_ranges(dump: &str, binary: &Path) -> Vec<(u64, u64)> {
    let binary = std::fs::canonicalize(binary).unwrap();
    let maps = dump
        .split_once("MAPPED_LIBRARIES:")
        .expect("a memory map")
        .1;
    let ranges: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[1].contains('x') && Path::new(f[5]) == binary).then(|| {
                let (start, end) = f[0].split_once('-').unwrap();
                (
                    u64::from_str_radix(start, 16).unwrap(),
                    u64::from_str_radix(end, 16).unwrap(),
                )
            })
        })
        .collect();
    assert!(!ranges.is_empty(), "the map names {}", binary.display());
    ranges
}

/// jeprof's `--text --cum` table for `sample_type`, without the rows that
/// name only addresses outside `ranges`, by unmarked name.
fn jeprof_table(
    binary: &Path,
    dump: &Path,
    sample_type: &str,
    ranges: &[(u64, u64)],
) -> (BTreeMap<String, Values>, i64, BTreeSet<String>) {
    let flag = format!("--{sample_type}");
    let by_address = jeprof::text(binary, dump, &["--addresses", &flag]);
    let inside = |a: u64| ranges.iter().any(|&(s, e)| (s..e).contains(&a));
    let program: BTreeSet<&str> = by_address
        .rows
        .iter()
        .filter(|r| inside(r.address.unwrap()))
        .map(|r| r.name.as_str())
        .collect();
    let elsewhere: BTreeSet<String> = by_address
        .rows
        .iter()
        .filter(|r| !program.contains(r.name.as_str()))
        .map(|r| r.name.clone())
        .collect();
    let table = jeprof::text(binary, dump, &["--cum", &flag]);
    let mut functions: BTreeMap<String, Values> = BTreeMap::new();
    for row in table.rows.iter().filter(|r| !elsewhere.contains(&r.name)) {
        let v = functions
            .entry(unmarked(&row.name).to_string())
            .or_default();
        v.flat += row.flat;
        v.cum += row.cum;
        v.rows += 1;
    }
    (functions, table.total, elsewhere)
}

/// firewatch's function table (JSON, all rows) for `sample_type`, without
/// the unsymbolized libraries (`[libc.so.6]`), by jeprof's short name; the
/// full-name rows; and the total.
fn firewatch_table(
    binary: &Path,
    dump: &Path,
    sample_type: &str,
) -> (BTreeMap<String, Values>, BTreeMap<String, i64>, i64) {
    let out = Command::new(common::firewatch_binary())
        .args([
            "analyze",
            "--format",
            "json",
            "--top",
            "0",
            "--hot-paths",
            "0",
        ])
        .args(["--sample-index", sample_type, "--symbols"])
        .arg(binary)
        .arg(dump)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "firewatch analyze: {stderr}");
    // The dump names the binary by its path: a sure match, not a guess.
    assert!(!stderr.contains("by file name only"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sample_type"]["type"], sample_type);
    let rows: Vec<(&str, i64, i64)> = report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap();
            (
                name,
                f["flat"].as_i64().unwrap(),
                f["cum"].as_i64().unwrap(),
            )
        })
        .filter(|(name, _, _)| !name.starts_with('['))
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let mut functions: BTreeMap<String, Values> = BTreeMap::new();
    for (short, (_, flat, cum)) in short_function_names(&names).into_iter().zip(&rows) {
        let v = functions.entry(short).or_default();
        v.flat += flat;
        v.cum += cum;
        v.rows += 1;
    }
    let cum = rows.iter().map(|&(n, _, c)| (n.to_string(), c)).collect();
    (functions, cum, report["total"].as_i64().unwrap())
}

/// The unsampled estimate of `n` blocks of `size` bytes, sampled one per
/// `rate` bytes on average: its standard deviation. Each block is sampled
/// with probability `p = 1 − e^(−size/rate)` and counts `size / p` when
/// it is, so the sum's variance is `n p (1 − p) (size / p)²`.
fn sampling_sd(n: u64, size: u64, rate: u64) -> f64 {
    let p = 1.0 - (-(size as f64) / rate as f64).exp();
    (n as f64 * p * (1.0 - p)).sqrt() * size as f64 / p
}

#[test]
fn tikv_jemallocator_dump_with_symbols_gives_jeprofs_functions() {
    if !tools_available() {
        return;
    }
    let binary = common::jemalloc_dump_binary();
    let dir = common::tempdir();
    let dump_path = dir.path().join("rust.heap");
    let out = Command::new(&binary)
        .arg(&dump_path)
        .current_dir(dir.path())
        // tikv-jemalloc-sys prefixes jemalloc's names with `_rjem_`, its
        // environment variable too.
        .env(
            "_RJEM_MALLOC_CONF",
            format!("prof:true,prof_accum:true,lg_prof_sample:{LG_PROF_SAMPLE}"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Expected> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.strip_prefix("expect ")?.split(' ').collect();
            Some(Expected {
                function: format!("jemalloc_dump::{}", f[0]),
                in_use: f[1].parse().unwrap(),
                allocated: f[2].parse().unwrap(),
                bytes: f[3].parse().unwrap(),
            })
        })
        .collect();
    assert_eq!(expected.len(), 5);

    let dump = std::fs::read_to_string(&dump_path).unwrap();
    let rate = 1u64 << LG_PROF_SAMPLE;
    assert!(
        dump.starts_with(&format!("heap_v2/{rate}\n")),
        "jemalloc read _RJEM_MALLOC_CONF: {}",
        dump.lines().next().unwrap_or_default()
    );
    let stacks = dump.lines().filter(|l| l.starts_with('@')).count() as i64;
    let ranges = program_ranges(&dump, &binary);

    for sample_type in ["inuse_space", "alloc_space"] {
        let (theirs, their_total, libraries) =
            jeprof_table(&binary, &dump_path, sample_type, &ranges);
        let (ours, our_cum, our_total) = firewatch_table(&binary, &dump_path, sample_type);
        println!(
            "{sample_type}: total jeprof {their_total}, firewatch {our_total} ({stacks} stacks); \
             jeprof's library rows left out: {libraries:?}"
        );
        println!(
            "  {:>11} {:>11} {:>11} {:>11}  rows  function",
            "jeprof flat", "firewatch", "jeprof cum", "firewatch"
        );
        assert!(
            (0..stacks).contains(&(their_total - our_total)),
            "{sample_type}: total: jeprof {their_total}, firewatch {our_total}"
        );
        let names: BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
        let mut compared_cum = BTreeSet::new();
        for name in names {
            let (t, o) = (theirs.get(name), ours.get(name));
            let (tv, ov) = (
                t.copied().unwrap_or_default(),
                o.copied().unwrap_or_default(),
            );
            let one_to_one = tv.rows == 1 && ov.rows == 1;
            println!(
                "  {:>11} {:>11} {:>11} {:>11}  {}:{}{} {name}",
                tv.flat,
                ov.flat,
                tv.cum,
                ov.cum,
                tv.rows,
                ov.rows,
                if one_to_one { " " } else { "*" },
            );
            // A function only one tool lists can only be one whose
            // values the other truncated away.
            assert!(
                (t.is_some() && o.is_some()) || tv.cum.max(ov.cum) < stacks,
                "{sample_type}: {name}: only {} lists it (cum {})",
                if t.is_some() { "jeprof" } else { "firewatch" },
                tv.cum.max(ov.cum)
            );
            assert!(
                (0..stacks).contains(&(tv.flat - ov.flat)),
                "{sample_type}: {name}: flat: jeprof {}, firewatch {}",
                tv.flat,
                ov.flat
            );
            if one_to_one {
                assert!(
                    (0..stacks).contains(&(tv.cum - ov.cum)),
                    "{sample_type}: {name}: cum: jeprof {}, firewatch {}",
                    tv.cum,
                    ov.cum
                );
                compared_cum.insert(name.clone());
            }
        }
        println!(
            "  ({} names; cum compared for the {} that each tool has once, *: summed rows)",
            theirs.len().max(ours.len()),
            compared_cum.len()
        );
        for f in expected
            .iter()
            .map(|e| e.function.as_str())
            .chain(["jemalloc_dump::main"])
        {
            let counts = sample_type == "alloc_space" || f != "jemalloc_dump::churn";
            assert!(
                !counts || compared_cum.contains(f),
                "{sample_type}: {f}'s cum is compared"
            );
        }

        // What the program allocated, within the sampling error.
        for e in &expected {
            let n = if sample_type == "inuse_space" {
                e.in_use
            } else {
                e.allocated
            };
            let want = (n * e.bytes) as f64;
            let have = our_cum.get(&e.function).copied().unwrap_or(0) as f64;
            let tolerance = SIGMAS * sampling_sd(n, e.bytes, rate) + stacks as f64;
            println!(
                "  {}: {n} x {} B = {want}, firewatch {have} (tolerance {tolerance:.0})",
                e.function, e.bytes
            );
            assert!(
                (have - want).abs() <= tolerance,
                "{sample_type}: {}: allocated {want}, firewatch {have}, tolerance {tolerance:.0}",
                e.function
            );
        }
    }
}
