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
    (rows_of(&json["functions"]), json)
}

/// A JSON report's function table as sorted (name, flat, cum) rows.
fn rows_of(functions: &serde_json::Value) -> Rows {
    let mut rows: Rows = functions
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
    rows
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
    pprof_rows_of(&[file], sample_type, unit, extra)
}

/// `go tool pprof -top` on `files`, merged.
fn pprof_rows_of(files: &[&Path], sample_type: &str, unit: &str, extra: &[&str]) -> (Rows, String) {
    let sample_index = format!("-sample_index={sample_type}");
    let unit_flag = pprof_unit(unit).map(|u| format!("-unit={u}"));
    let mut args = vec!["-top", "-nodefraction=0", "-symbolize=none"];
    args.extend(extra);
    args.push(&sample_index);
    args.extend(unit_flag.as_deref());
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
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

/// Many files, as a fleet writes them (more than one of the analyzer's
/// batches, given as directories): merged, merged with a focus, and minus
/// a directory of bases, they give what `go tool pprof` gives on the same
/// files listed one by one.
#[test]
fn directories_of_many_profiles_merge_as_go_tool_pprof_merges_them() {
    use std::io::Write;
    if !go_available() {
        return;
    }
    let base = firewatch::synth::generate(&firewatch::synth::Config {
        samples: 3_000,
        locations: 500,
        functions: 200,
        seed: 7,
        ..Default::default()
    });
    let dir = common::tempdir();
    let write = |sub: &str, range: std::ops::Range<u64>| -> Vec<PathBuf> {
        let sub = dir.path().join(sub);
        std::fs::create_dir(&sub).unwrap();
        range
            .map(|i| {
                let path = sub.join(format!("replica-{i:03}.pb.gz"));
                let bytes = firewatch::synth::fleet::replica(&base, i, 0.05).encode();
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&bytes).unwrap();
                std::fs::write(&path, gz.finish().unwrap()).unwrap();
                path
            })
            .collect()
    };
    // 75 profiles and 40 bases: batches of 16, each read and decoded while
    // the one before is added.
    let now = write("now", 0..75);
    let before = write("before", 100..140);
    let now_dir = dir.path().join("now");
    let before_dir = dir.path().join("before");
    let files: Vec<&Path> = now.iter().map(PathBuf::as_path).collect();
    // Go 1.19's pprof takes one -base (the last one given): merge the base
    // files with pprof itself first.
    let merged_base = dir.path().join("before-merged.pb.gz");
    let out = Command::new("go")
        .args(["tool", "pprof", "-proto", "-symbolize=none"])
        .args(&before)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&merged_base, &out.stdout).unwrap();
    let bases = [format!("-base={}", merged_base.display())];
    let bases: Vec<&str> = bases.iter().map(String::as_str).collect();
    for (ours, theirs) in [
        (vec![], vec![]),
        (vec!["--focus", "tokio"], vec!["-focus=tokio"]),
        (vec!["--base", before_dir.to_str().unwrap()], bases.clone()),
        (
            [
                vec!["--ignore", "hyper", "--base"],
                vec![before_dir.to_str().unwrap()],
            ]
            .concat(),
            [vec!["-ignore=hyper"], bases.clone()].concat(),
        ),
    ] {
        let (rows, json) = firewatch_rows(&now_dir, "cpu", &ours);
        let (expected, text) = pprof_rows_of(&files, "cpu", "nanoseconds", &theirs);
        assert!(!expected.is_empty());
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !rows.iter().any(|r| r.0 == e.0))
            .take(5)
            .collect();
        assert_eq!(
            rows.len(),
            expected.len(),
            "{ours:?}: function count; missing {missing:?}"
        );
        let differing: Vec<String> = rows
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("  firewatch {a:?}\n  pprof     {b:?}"))
            .collect();
        assert!(
            differing.is_empty(),
            "{ours:?}: rows differ from go tool pprof's:\n{}",
            differing.join("\n")
        );
        let total = text
            .lines()
            .find(|l| l.starts_with("Showing nodes accounting for"))
            .unwrap()
            .rsplit(" of ")
            .next()
            .unwrap()
            .trim_end_matches(" total")
            .trim_end_matches("ns")
            .parse::<i64>()
            .unwrap();
        assert_eq!(json["total"].as_i64().unwrap(), total, "{ours:?}: total");
        assert_eq!(json["inputs"].as_array().unwrap().len(), 75);
    }
}

/// A profile large enough for two workers (150,000 samples drawn from
/// 20,000 generated stacks), where every location has a twin: another
/// location of the same lines at another address, and half the samples
/// use the twins. Each distinct location stack then has a twin of the
/// same frames, often gathered by the other worker; the frames of both
/// must end in one stack. With two threads, the functions must be
/// pprof's, and the folded stacks those of one thread (whose path the
/// tests above check against pprof): each stack once, the same values.
#[test]
fn twin_location_stacks_met_by_two_workers_make_one_stack() {
    let mut p = firewatch::synth::generate(&firewatch::synth::Config {
        samples: 20_000,
        locations: 2_000,
        functions: 600,
        seed: 5,
        ..Default::default()
    });
    let twin_of = p.location.iter().map(|l| l.id).max().unwrap();
    let twins: Vec<_> = p
        .location
        .iter()
        .map(|l| {
            let mut twin = l.clone();
            twin.id += twin_of;
            twin.address += 1;
            twin
        })
        .collect();
    p.location.extend(twins);
    let pool = std::mem::take(&mut p.sample);
    let mut rng = firewatch::synth::Rng::new(11);
    p.sample = (0..150_000)
        .map(|i| {
            let mut sample = pool[rng.below(pool.len())].clone();
            if i % 2 == 1 {
                for id in &mut sample.location_id {
                    *id += twin_of;
                }
            }
            sample
        })
        .collect();
    let dir = common::tempdir();
    let file = dir.path().join("twins.pb");
    std::fs::write(&file, p.encode()).unwrap();

    let folded = |threads: &str| {
        let out = dir.path().join(format!("threads-{threads}.folded"));
        let status = Command::new(common::firewatch_binary())
            .args([
                "analyze",
                "--sample-index",
                "cpu",
                "--threads",
                threads,
                "--folded",
            ])
            .arg(&out)
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&out).unwrap();
        let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
        for line in text.lines() {
            let (stack, value) = line.rsplit_once(' ').unwrap();
            let repeated = stacks.insert(stack.to_string(), value.parse().unwrap());
            assert!(repeated.is_none(), "{threads} thread(s): {stack} twice");
        }
        stacks
    };
    let (one, two) = (folded("1"), folded("2"));
    assert!(one.len() > 1_000, "{} stacks", one.len());
    assert_eq!(one, two, "folded stacks with one thread and with two");
    if go_available() {
        compare(&file, "cpu", "nanoseconds", &["--threads", "2"], &[]);
    }
}

/// A profile whose stacks repeat (30,000 samples drawn from 5,000
/// generated ones, with recursion and inlined frames): the analyzer then
/// matches samples to stacks by their locations and sums functions once
/// per distinct stack. Plain, filtered and as a difference, it must give
/// pprof's numbers.
#[test]
fn profiles_whose_stacks_repeat_agree_with_go_tool_pprof() {
    if !go_available() {
        return;
    }
    let draw = |seed: u64| {
        let mut p = firewatch::synth::generate(&firewatch::synth::Config {
            samples: 5_000,
            locations: 2_000,
            functions: 600,
            seed: 3,
            ..Default::default()
        });
        let pool = std::mem::take(&mut p.sample);
        let mut rng = firewatch::synth::Rng::new(seed);
        p.sample = (0..30_000)
            .map(|_| pool[rng.below(pool.len())].clone())
            .collect();
        p.encode()
    };
    let dir = common::tempdir();
    let (file, base) = (dir.path().join("repeats.pb"), dir.path().join("base.pb"));
    std::fs::write(&file, draw(1)).unwrap();
    std::fs::write(&base, draw(2)).unwrap();
    let base_flag = format!("-base={}", base.display());
    for (t, u) in [("cpu", "nanoseconds"), ("samples", "count")] {
        compare(&file, t, u, &[], &[]);
        compare(&file, t, u, &["--focus", "tokio"], &["-focus=tokio"]);
        compare(&file, t, u, &["--ignore", "hyper"], &["-ignore=hyper"]);
        compare(
            &file,
            t,
            u,
            &["--base", base.to_str().unwrap()],
            &[&base_flag],
        );
    }
}

/// A profile with string and numeric labels, as a labelling agent writes
/// them: stacks under three endpoints and two tenants (some samples carry
/// two tenants), an allocation size in `bytes` on some, none on others.
fn labelled_profile() -> Vec<u8> {
    use firewatch_profile::{
        Function, Label, Line, Location, Profile, Sample, StringInterner, ValueType,
    };
    let mut s = StringInterner::new();
    let mut p = Profile::new();
    p.sample_type = vec![
        ValueType {
            r#type: s.intern("samples"),
            unit: s.intern("count"),
        },
        ValueType {
            r#type: s.intern("cpu"),
            unit: s.intern("nanoseconds"),
        },
    ];
    let names = [
        "main", "serve", "handle_a", "handle_b", "parse", "query", "encode",
    ];
    p.function = names
        .iter()
        .enumerate()
        .map(|(i, n)| Function {
            id: i as u64 + 1,
            name: s.intern(n),
            ..Default::default()
        })
        .collect();
    p.location = (1..=names.len() as u64)
        .map(|id| Location {
            id,
            line: vec![Line {
                function_id: id,
                line: 0,
                column: 0,
            }],
            ..Default::default()
        })
        .collect();
    let (endpoint, tenant, bytes) = (s.intern("endpoint"), s.intern("tenant"), s.intern("bytes"));
    let endpoints = [s.intern("/a"), s.intern("/b"), s.intern("/api/v2")];
    let tenants = [s.intern("x"), s.intern("y")];
    let unit = s.intern("bytes");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for i in 0..600u64 {
        // main > serve > handle_{a,b} > {parse, query, encode}
        let handler = 3 + next(2);
        let leaf = 5 + next(3);
        let mut stack = vec![leaf, handler, 2, 1];
        if next(4) == 0 {
            stack.remove(0);
        }
        let mut label = Vec::new();
        if next(10) != 0 {
            let e = endpoints[next(3) as usize];
            label.push(Label {
                key: endpoint,
                str: e,
                ..Default::default()
            });
        }
        match next(4) {
            0 => {}
            1 => {
                label.push(Label {
                    key: tenant,
                    str: tenants[0],
                    ..Default::default()
                });
                label.push(Label {
                    key: tenant,
                    str: tenants[1],
                    ..Default::default()
                });
            }
            k => label.push(Label {
                key: tenant,
                str: tenants[(k % 2) as usize],
                ..Default::default()
            }),
        }
        if next(3) == 0 {
            label.push(Label {
                key: bytes,
                num: 1 << (6 + next(10)),
                num_unit: unit,
                ..Default::default()
            });
        }
        p.sample.push(Sample {
            location_id: stack,
            value: vec![1, (1 + next(9) as i64) * 1_000_000 + i as i64],
            label,
        });
    }
    p.string_table = s.into_table();
    p.encode()
}

/// `--tag-focus`/`--tag-ignore` keep the samples pprof's `-tagfocus`/
/// `-tagignore` keep (key=regex lists, bare regexes against `key:value`,
/// numeric ranges with units), and each `--group-by endpoint` group holds
/// the function values pprof prints when focused on that endpoint.
#[test]
fn tag_filters_and_groups_agree_with_go_tool_pprof() {
    if !go_available() {
        return;
    }
    let dir = common::tempdir();
    let file = dir.path().join("labelled.pb");
    std::fs::write(&file, labelled_profile()).unwrap();
    for (ours, theirs) in [
        ("--tag-focus=endpoint=/a", "-tagfocus=endpoint=/a"),
        ("--tag-focus=endpoint=^/a$,v2", "-tagfocus=endpoint=^/a$,v2"),
        ("--tag-focus=tenant:y", "-tagfocus=tenant:y"),
        (
            "--tag-focus=tenant:x,endpoint:/b",
            "-tagfocus=tenant:x,endpoint:/b",
        ),
        ("--tag-ignore=tenant=x", "-tagignore=tenant=x"),
        ("--tag-focus=bytes=1kb:", "-tagfocus=bytes=1kb:"),
        ("--tag-focus=:4kb", "-tagfocus=:4kb"),
        ("--tag-focus=bytes=512b:8kb", "-tagfocus=bytes=512b:8kb"),
        // Unitless numbers never match a label in bytes (pprof's rule).
        ("--tag-focus=bytes=512:8192", "-tagfocus=bytes=512:8192"),
        ("--tag-ignore=bytes=2kb", "-tagignore=bytes=2kb"),
        ("--tag-focus=nosuchkey=.", "-tagfocus=nosuchkey=."),
    ] {
        for t in ["samples", "cpu"] {
            let unit = if t == "cpu" { "nanoseconds" } else { "count" };
            // Every filter keeps some samples, except the unknown key
            // and the unitless range.
            let may_be_empty = ours.contains("nosuchkey") || ours.contains("512:");
            compare_checked(&file, t, unit, &[ours], &[theirs], may_be_empty);
        }
    }
    compare(
        &file,
        "cpu",
        "nanoseconds",
        &[
            "--tag-focus=endpoint=/b",
            "--tag-ignore=tenant=y",
            "--focus=query",
        ],
        &[
            "-tagfocus=endpoint=/b",
            "-tagignore=tenant=y",
            "-focus=query",
        ],
    );

    let (_, json) = firewatch_rows(&file, "cpu", &["--group-by", "endpoint"]);
    assert_eq!(json["group_by"], "endpoint");
    let groups = json["groups"].as_array().unwrap();
    let values: Vec<&str> = groups
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(values.len(), 4, "three endpoints and (not set): {values:?}");
    let mut sum = 0;
    for group in groups {
        let value = group["value"].as_str().unwrap();
        let filter = if value == "(not set)" {
            "-tagignore=endpoint=.".to_string()
        } else {
            format!("-tagfocus=endpoint=^{}$", regex_escape(value))
        };
        let (theirs, _) = pprof_rows(&file, "cpu", "nanoseconds", &[&filter]);
        let ours = rows_of(&group["functions"]);
        assert_eq!(
            ours, theirs,
            "group endpoint={value} against pprof {filter}"
        );
        let total = group["total"].as_i64().unwrap();
        assert_eq!(total, theirs.iter().map(|r| r.1).sum::<i64>());
        sum += total;
    }
    assert_eq!(
        sum,
        json["total"].as_i64().unwrap(),
        "the groups partition the samples"
    );
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn compare(file: &Path, sample_type: &str, unit: &str, ours_extra: &[&str], pprof_extra: &[&str]) {
    compare_checked(file, sample_type, unit, ours_extra, pprof_extra, false)
}

fn compare_checked(
    file: &Path,
    sample_type: &str,
    unit: &str,
    ours_extra: &[&str],
    pprof_extra: &[&str],
    may_be_empty: bool,
) {
    {
        {
            let (ours, json) = firewatch_rows(file, sample_type, ours_extra);
            let (theirs, text) = pprof_rows(file, sample_type, unit, pprof_extra);
            assert!(
                may_be_empty || !theirs.is_empty(),
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
