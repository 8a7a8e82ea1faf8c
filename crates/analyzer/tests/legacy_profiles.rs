//! Legacy profiles (gperftools CPU, heap, growth, contention and thread
//! files, their Java variants; jemalloc `heap_v2` dumps) converted to pprof, checked against the tools
//! that read them natively.
//!
//! - gperftools: google/pprof's own legacy test files (from
//!   `FIREWATCH_CONFORMANCE_DIR`) are read by `go tool pprof` directly and,
//!   converted by firewatch, as pprof; `-raw` must print the same samples
//!   (values, labels, stacks as addresses and mappings) and mappings for
//!   both; the CLI's totals, and for Java's named frames its whole function
//!   table, are `go tool pprof -top`'s. Without `go` this says so and
//!   passes, unless `FIREWATCH_REQUIRE_GO` is set (CI sets it).
//! - jemalloc: `fixtures/jemalloc/generate.sh` builds a C program on
//!   libjemalloc and has it dump its heap; `jeprof --text --addresses` on
//!   that program and dump gives, per address, the in-use bytes that
//!   firewatch's conversion must give. Symbols are compared once firewatch
//!   symbolizes offline (`--symbols`); until then the comparison is by
//!   address. Without jeprof (Debian's `libjemalloc-dev`) or gcc this says
//!   so and passes, unless `FIREWATCH_REQUIRE_JEPROF` is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use firewatch_analyzer::{convert_to_pprof, InputFormat, Source};
use firewatch_profile::ProfileView;

const MAX: u64 = 1 << 30;

fn firewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(args)
        .output()
        .unwrap()
}

/// google/pprof's legacy test files, when `FIREWATCH_CONFORMANCE_DIR` is set.
fn legacy_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("FIREWATCH_CONFORMANCE_DIR").filter(|d| !d.is_empty()) else {
        eprintln!("FIREWATCH_CONFORMANCE_DIR is not set: skipping google/pprof's legacy files");
        return None;
    };
    let dir = PathBuf::from(dir).join("google-pprof/legacy");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    Some(dir)
}

fn tool_available(tool: &str, args: &[&str], require: &str) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but `{tool}` does not run"
        );
        eprintln!("{tool} is not installed: skipping the comparison with it");
    }
    ok
}

fn go_available() -> bool {
    tool_available("go", &["version"], "FIREWATCH_REQUIRE_GO")
}

/// What `go tool pprof -raw` prints of a profile, with location ids
/// replaced by what they stand for (address and mapping), so that two
/// profiles numbered differently compare.
#[derive(Debug, PartialEq, Eq)]
struct Raw {
    /// Period type, period, duration, sample types.
    header: Vec<String>,
    /// `values: 0xaddr@M …` then the sample's labels, in order.
    samples: Vec<String>,
    mappings: Vec<String>,
}

fn pprof_raw(file: &Path) -> Raw {
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw", "-symbolize=none"])
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go tool pprof -raw {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut section = "header";
    let (mut header, mut samples, mut mappings) = (Vec::new(), Vec::new(), Vec::new());
    let mut locations = BTreeMap::new();
    for line in text.lines() {
        match line.trim() {
            "Samples:" => section = "samples",
            "Locations" => section = "locations",
            "Mappings" => section = "mappings",
            l if section == "header" => header.push(l.to_string()),
            l if section == "samples" => samples.push(l.to_string()),
            l if section == "locations" => {
                let (id, rest) = l.split_once(':').unwrap();
                locations.insert(id.trim().to_string(), rest.trim().replace(' ', "@"));
            }
            l => mappings.push(l.to_string()),
        }
    }
    header.push(samples.remove(0));
    let samples = samples
        .into_iter()
        .map(|s| match s.split_once(": ") {
            Some((values, ids)) if !values.contains('[') => {
                let stack: Vec<&str> = ids
                    .split_whitespace()
                    .map(|id| locations[id].as_str())
                    .collect();
                format!("{}: {}", values.trim(), stack.join(" "))
            }
            _ => s,
        })
        .collect();
    Raw {
        header,
        samples,
        mappings,
    }
}

#[test]
fn gperftools_files_convert_to_what_pprof_reads() {
    let Some(dir) = legacy_dir() else { return };
    if !go_available() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    for name in [
        "cppbench.cpu",
        "cppbench.heap",
        "cppbench.growth",
        "cppbench.contention",
        "gobench.cpu",
        "gobench.heap",
        "go.crc32.cpu",
        "cppbench.thread",
        "cppbench.thread.all",
        "cppbench.thread.none",
        "go.godoc.thread",
        "java.cpu",
        "java.heap",
        "java.contention",
    ] {
        let file = dir.join(name);
        let pprof =
            convert_to_pprof(&Source::new(&file), MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        let converted = scratch.path().join(format!("{name}.pb"));
        std::fs::write(&converted, pprof).unwrap();
        let (expected, got) = (pprof_raw(&file), pprof_raw(&converted));
        assert!(!expected.samples.is_empty(), "{name}");
        assert_eq!(got.header, expected.header, "{name}");
        assert_eq!(got.mappings, expected.mappings, "{name}");
        assert_eq!(got.samples.len(), expected.samples.len(), "{name}");
        for (g, e) in got.samples.iter().zip(&expected.samples) {
            assert_eq!(g, e, "{name}");
        }
    }
}

/// A 64-bit little-endian CPU profile rewritten with words of `size`
/// bytes in the given order (addresses cut to 32 bits for 4-byte words):
/// the records up to the end marker, then the memory map text as it was.
fn transcode_cpu(bytes: &[u8], size: usize, big_endian: bool) -> Vec<u8> {
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    let put = |out: &mut Vec<u8>, w: u64| match (size, big_endian) {
        (4, false) => out.extend_from_slice(&(w as u32).to_le_bytes()),
        (4, true) => out.extend_from_slice(&(w as u32).to_be_bytes()),
        (_, false) => out.extend_from_slice(&w.to_le_bytes()),
        (_, true) => out.extend_from_slice(&w.to_be_bytes()),
    };
    let mut out = Vec::new();
    let mut i = 0;
    for _ in 0..5 {
        put(&mut out, word(i));
        i += 1;
    }
    loop {
        let (count, depth) = (word(i), word(i + 1));
        for j in 0..2 + depth as usize {
            put(&mut out, word(i + j));
        }
        i += 2 + depth as usize;
        if count == 0 && depth == 1 && word(i - 1) == 0 {
            break;
        }
    }
    out.extend_from_slice(&bytes[i * 8..]);
    out
}

#[test]
fn cpu_profiles_of_every_word_layout_convert_as_pprof_reads_them() {
    let Some(dir) = legacy_dir() else { return };
    if !go_available() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let original = std::fs::read(dir.join("cppbench.cpu")).unwrap();
    for (size, big_endian) in [(4, false), (4, true), (8, true)] {
        let name = format!(
            "cppbench.{size}{}.cpu",
            if big_endian { "be" } else { "le" }
        );
        let file = scratch.path().join(&name);
        std::fs::write(&file, transcode_cpu(&original, size, big_endian)).unwrap();
        let pprof = convert_to_pprof(&Source::new(&file), MAX).unwrap();
        let converted = scratch.path().join(format!("{name}.pb"));
        std::fs::write(&converted, pprof).unwrap();
        let expected = pprof_raw(&file);
        assert!(expected.samples.len() > 20, "{name}");
        assert_eq!(pprof_raw(&converted), expected, "{name}");
    }
}

/// The rows of a `-top`-style table without the `sum%` column (which
/// depends on how ties are ordered), sorted.
fn table_rows(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {} {}", f[0], f[1], f[3], f[4], f[5..].join(" "))
        })
        .collect();
    rows.sort();
    rows
}

/// Java's legacy files name their frames: the whole function table must be
/// pprof's.
#[test]
fn java_files_give_pprofs_function_table() {
    let Some(dir) = legacy_dir() else { return };
    if !go_available() {
        return;
    }
    for name in ["java.cpu", "java.heap", "java.contention"] {
        let file = dir.join(name);
        let out = Command::new("go")
            .args(["tool", "pprof", "-top", "-nodecount=100000"])
            .arg(&file)
            .output()
            .unwrap();
        let expected = table_rows(&String::from_utf8_lossy(&out.stdout));
        let out = firewatch(&[
            "analyze",
            "--top",
            "0",
            "--hot-paths",
            "0",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{name}");
        let got = table_rows(&String::from_utf8_lossy(&out.stdout));
        assert!(expected.len() > 10, "{name}: {expected:?}");
        assert_eq!(got, expected, "{name}");
    }
}

/// The total of `go tool pprof -top` in `unit`: `N` in `Showing nodes
/// accounting for …, …% of N<unit> total`.
fn pprof_total(file: &Path, unit: &str) -> i64 {
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-symbolize=none", "-nodecount=1"])
        .arg(format!("-unit={unit}"))
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Showing nodes accounting for"))
        .unwrap_or_else(|| panic!("{}: {text}", file.display()));
    let total = line.rsplit(" of ").next().unwrap();
    total
        .strip_suffix(" total")
        .and_then(|t| t.strip_suffix(unit))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn the_cli_reports_pprofs_totals_for_legacy_files() {
    let Some(dir) = legacy_dir() else { return };
    if !go_available() {
        return;
    }
    for (name, unit) in [
        ("cppbench.heap", "B"),
        ("cppbench.growth", "B"),
        ("gobench.heap", "B"),
        ("cppbench.cpu", "ns"),
        ("gobench.cpu", "ns"),
        ("cppbench.contention", "ns"),
    ] {
        let file = dir.join(name);
        let out = firewatch(&["analyze", "--format", "json", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let expected = pprof_total(&file, unit);
        assert_ne!(expected, 0, "{name}");
        assert_eq!(report["total"].as_i64(), Some(expected), "{name}: {report}");
    }
}

/// One line on standard error naming the file, and exit status 1.
fn refused(file: &Path) -> String {
    let out = firewatch(&["analyze", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    stderr
}

#[test]
fn hostile_legacy_inputs_are_one_line_errors() {
    let scratch = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // A CPU profile cut inside a record: 64-bit words, header then one
    // record whose stack claims more words than remain.
    let mut cpu = Vec::new();
    for w in [0u64, 3, 0, 10_000, 0, 1, 1_000_000, 0x1000] {
        cpu.extend_from_slice(&w.to_le_bytes());
    }
    let e = refused(&write("deep.cpu", &cpu));
    assert!(
        e.contains("invalid gperftools CPU profile: at byte 48"),
        "{e}"
    );
    let e = refused(&write("cut.cpu", &cpu[..44]));
    assert!(e.contains("at byte 40: the profile is cut short"), "{e}");

    let e = refused(&write(
        "bad.heap",
        b"heap profile: 1: 2 [1: 2] @ heap_v2/524288\n1: 2 [1: 2] @ 0x10 0xgg\n",
    ));
    assert!(
        e.contains("invalid gperftools heap profile: line 2: `0xgg` is not an address"),
        "{e}"
    );
    let e = refused(&write("bad.dump", b"heap_v2/524288\n  t*: 1: 2 [0: 0\n"));
    assert!(
        e.contains("invalid jemalloc heap profile: line 2: expected"),
        "{e}"
    );
    let e = refused(&write(
        "bad.contention",
        b"--- contentionz 1 ---\ncycles/second = lots\n",
    ));
    assert!(e.contains("line 2: `lots` is not a number"), "{e}");

    let e = refused(&write("notes.txt", b"just some text\nof two lines\n"));
    assert!(
        e.contains("not a pprof, V8 or legacy profile: text starting `just some text`"),
        "{e}"
    );
    let e = refused(&write("noise.bin", &[0xff, 0x00, 0x13, 0x37, 0x80, 0x81]));
    assert!(
        e.contains("not a pprof, V8 or legacy profile: binary data"),
        "{e}"
    );
}

#[test]
fn truncated_gperftools_files_fail_cleanly_or_read() {
    let Some(dir) = legacy_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    for name in [
        "cppbench.cpu",
        "cppbench.heap",
        "cppbench.contention",
        "cppbench.thread",
        "go.godoc.thread",
        "java.cpu",
        "java.heap",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        // Every cut of the first 600 bytes, and a few further on: an error
        // or a smaller profile, never a crash.
        let cuts = (1..bytes.len().min(600)).chain((600..bytes.len()).step_by(997));
        for cut in cuts {
            let path = scratch.path().join(name);
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let legacy = InputFormat::detect(&path, &bytes[..cut]) != InputFormat::Pprof;
            match convert_to_pprof(&Source::new(&path), MAX) {
                // What a legacy reader makes is valid pprof.
                Ok(pprof) if legacy => {
                    ProfileView::decode(&pprof).unwrap();
                }
                // Too short to be recognized: read as pprof, which fails.
                Ok(_) => {}
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}

/// Per address, what jeprof's `--text --addresses` table gives in its
/// cumulative column, and its total, for one `--<sample type>`.
fn jeprof_cum(binary: &Path, dump: &Path, sample_type: &str) -> (BTreeMap<u64, i64>, i64) {
    let out = Command::new("jeprof")
        .args(["--text", "--addresses", "--show_bytes", "--cum"])
        .arg(format!("--{sample_type}"))
        .arg(binary)
        .arg(dump)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "jeprof: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut total = None;
    let mut cum = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("Total: ") {
            total = Some(t.split_whitespace().next().unwrap().parse().unwrap());
            continue;
        }
        // flat flat% sum% cum cum% address function…
        let f: Vec<&str> = line.split_whitespace().collect();
        let address = u64::from_str_radix(f[5], 16).unwrap();
        assert!(
            cum.insert(address, f[3].parse::<i64>().unwrap()).is_none(),
            "{line}"
        );
    }
    (cum, total.expect("jeprof prints a total"))
}

/// Per address, the sum of `index`'s values over the samples whose stack
/// holds it (once per stack), with how many stacks that is; and the total.
fn firewatch_cum(view: &ProfileView<'_>, index: usize) -> (BTreeMap<u64, (i64, i64)>, i64) {
    let mut cum: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    let mut total = 0;
    for s in view.samples() {
        let value = s.values[index];
        total += value;
        let mut seen: Vec<u64> = s
            .locations
            .iter()
            .map(|&l| view.locations()[l as usize].address)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for a in seen {
            let e = cum.entry(a).or_default();
            e.0 += value;
            e.1 += 1;
        }
    }
    (cum, total)
}

#[test]
fn jemalloc_dumps_give_jeprofs_numbers_per_address() {
    let gcc = tool_available("gcc", &["--version"], "FIREWATCH_REQUIRE_JEPROF");
    if !gcc || !tool_available("jeprof", &["--version"], "FIREWATCH_REQUIRE_JEPROF") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let generate =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/jemalloc/generate.sh");
    let status = Command::new("bash")
        .arg(&generate)
        .arg(scratch.path())
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", generate.display());
    let (binary, dump) = (
        scratch.path().join("alloc"),
        scratch.path().join("alloc.heap"),
    );

    let pprof = convert_to_pprof(&Source::new(&dump), MAX).unwrap();
    let view = ProfileView::decode(&pprof).unwrap();
    let names: Vec<String> = view
        .sample_type_names()
        .iter()
        .map(|(t, _)| t.to_string())
        .collect();
    // prof_accum was on: allocated totals too, in-use space the default.
    assert_eq!(
        names,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(view.default_sample_index(), 3);
    // Mappings from MAPPED_LIBRARIES: the program comes first.
    let main = &view.mappings()[0];
    assert_eq!(view.string(main.filename), binary.to_str().unwrap());

    for (index, sample_type) in names.iter().enumerate() {
        let (expected, expected_total) = jeprof_cum(&binary, &dump, sample_type);
        let (got, total) = firewatch_cum(&view, index);
        // jeprof keeps the unsampled fractions, firewatch truncates each
        // stack's value (as pprof does): jeprof's truncated sum may be
        // higher by less than one per stack.
        let stacks = view.sample_count() as i64;
        assert!(
            (0..stacks).contains(&(expected_total - total)),
            "{sample_type}: jeprof total {expected_total}, firewatch {total}"
        );
        assert!(expected.len() >= 8, "{sample_type}: {expected:?}");
        for (address, want) in &expected {
            let (have, n) = got.get(address).copied().unwrap_or_else(|| {
                panic!("{sample_type}: jeprof lists {address:#x}, firewatch has no such location")
            });
            assert!(
                (0..=n).contains(&(want - have)),
                "{sample_type} at {address:#x}: jeprof {want}, firewatch {have} over {n} stacks"
            );
        }
    }
}

#[test]
fn jemalloc_dump_errors_name_the_line() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("prof.heap");
    std::fs::write(
        &path,
        "heap_v2/524288\n  t*: 1: 2 [0: 0]\n@ 0x1 0x2\n  t*: 1: 2 [0: 0]\n  t*: 1: 2 [0: 0]\n",
    )
    .unwrap();
    let e = refused(&path);
    assert!(
        e.contains("invalid jemalloc heap profile: line 5: a second `t*` line for one stack"),
        "{e}"
    );
}

/// Bytes the mutations write: digits, separators and line structure, so
/// that most mutants still look like the format and reach deep checks.
const MUTATION_BYTES: &[u8] = b"0123456789abcdefx@:[] \n-*t$=/\xff\x00";

#[test]
fn mutated_legacy_files_never_panic() {
    let mut inputs: Vec<(String, Vec<u8>)> = vec![(
        "jemalloc".into(),
        b"heap_v2/524288\n  t*: 2: 300 [4: 600]\n  t0: 2: 300 [4: 600]\n@ 0x10 0x20 0x30\n  t*: 2: 300 [4: 600]\n  t0: 2: 300 [4: 600]\n\nMAPPED_LIBRARIES:\n00000000-00001000 r-xp 00000000 00:00 0 /bin/x\n".to_vec(),
    )];
    if let Some(dir) = legacy_dir() {
        for name in [
            "cppbench.cpu",
            "cppbench.heap",
            "cppbench.contention",
            "cppbench.thread",
            "go.godoc.thread",
            "java.heap",
            "java.cpu",
        ] {
            inputs.push((name.into(), std::fs::read(dir.join(name)).unwrap()));
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    // xorshift64: the same mutants every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for (name, original) in &inputs {
        for _ in 0..200 {
            let mut bytes = original.clone();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len());
                let b = MUTATION_BYTES[next(MUTATION_BYTES.len())];
                match next(3) {
                    0 => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let path = scratch.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(pprof) = convert_to_pprof(&Source::new(&path), MAX) {
                if InputFormat::detect(&path, &bytes) != InputFormat::Pprof {
                    ProfileView::decode(&pprof).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
}
