//! `firewatch-profile`'s pprof operations against pprof itself: a profile
//! that firewatch pruned, filtered, merged, compacted or scaled must print,
//! in `go tool pprof -top`, exactly what pprof prints when it applies the
//! same operation to the original files with its own flags. pprof reads our
//! output as the judge, so no parser of its text is needed.
//!
//! Needs Go; without it the tests say so and pass, unless
//! `FIREWATCH_REQUIRE_GO` is set (CI).

mod common;

use std::path::{Path, PathBuf};

use firewatch::{fixtures_dir, google_pprof_fixtures};
use firewatch_profile::{NameFilter, Profile, ProfileData, Regex, DEFAULT_MAX_DECOMPRESSED};

/// `go tool pprof -top` of `files`, every node shown, for one sample type.
fn pprof_top(files: &[&Path], sample_type: &str, flags: &[&str]) -> String {
    let sample_index = format!("-sample_index={sample_type}");
    let mut args = vec![
        "-top",
        "-nodefraction=0",
        "-edgefraction=0",
        "-symbolize=none",
        &sample_index,
    ];
    args.extend(flags);
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    common::go_pprof(&args)
}

/// The table and its totals: from `Showing nodes accounting for` on (the
/// header before it names the filters in effect, which our files no longer
/// need).
fn table(top: &str) -> &str {
    let at = top
        .find("Showing nodes accounting for")
        .unwrap_or_else(|| panic!("no table in:\n{top}"));
    &top[at..]
}

fn open(path: &Path) -> Profile {
    let data = ProfileData::open(path, DEFAULT_MAX_DECOMPRESSED).unwrap();
    data.view().unwrap().to_profile()
}

fn sample_types(p: &Profile) -> Vec<String> {
    p.sample_type
        .iter()
        .map(|t| p.string(t.r#type).to_string())
        .collect()
}

/// Writes `p` as gzip into a scratch directory.
fn write(dir: &Path, name: &str, p: &Profile) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, p.encode_gzip()).unwrap();
    path
}

/// A profile as pprof holds it after reading: pruned by its own
/// `drop_frames`, which is then cleared so that pprof cannot prune our
/// output again and hide a difference.
fn pruned(path: &Path) -> Profile {
    let mut p = open(path);
    p.remove_uninteresting().unwrap();
    p.drop_frames = 0;
    p.keep_frames = 0;
    p
}

fn assert_same(what: &str, ours: &str, theirs: &str) {
    assert!(
        ours == theirs,
        "{what}: go tool pprof prints\n--- for firewatch's profile:\n{ours}\n--- for its own operation:\n{theirs}"
    );
}

/// For each sample type of `ours`, the whole `go tool pprof -top` output
/// (header included: time, duration, comments) is the same for `ours`,
/// written at `path`, as for `theirs`.
fn assert_same_tops(what: &str, ours: &Profile, path: &Path, theirs: &[&Path]) {
    for t in sample_types(ours) {
        assert_same(
            &format!("{what} -sample_index={t}"),
            &pprof_top(&[path], &t, &[]),
            &pprof_top(theirs, &t, &[]),
        );
    }
}

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The fixtures every test runs on, plus google/pprof's `large.cpu` when
/// `FIREWATCH_CONFORMANCE_DIR` is set.
fn inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "encoded-cpu.pb.gz",
        "encoded-heap-2.pb.gz",
        "go-cpu.pb.gz",
        "go-heap.pb.gz",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect();
    if let Some(dir) = google_pprof_fixtures() {
        files.push(dir.join("large.cpu"));
    }
    files
}

#[test]
fn pruning_matches_pprofs_drop_frames() {
    if !common::go_available() {
        return;
    }
    let dir = common::tempdir();
    let mut pruned_something = 0;
    for file in inputs() {
        let original = open(&file);
        let ours = pruned(&file);
        if ours.sample != original.sample {
            pruned_something += 1;
        }
        let path = write(dir.path(), "pruned.pb.gz", &ours);
        assert_same_tops(&file.display().to_string(), &ours, &path, &[&file]);
    }
    // The encoded fixtures name the agent's and the allocator's frames.
    assert!(pruned_something >= 2, "no fixture exercised pruning");
}

#[test]
fn name_filters_match_pprofs_focus_ignore_hide_and_show() {
    if !common::go_available() {
        return;
    }
    let dir = common::tempdir();
    let cpu = fixture("encoded-cpu.pb.gz");
    let heap = fixture("encoded-heap-2.pb.gz");
    let go_cpu = fixture("go-cpu.pb.gz");
    // (file, sample type, [(pprof option, regex)])
    type Case<'a> = (&'a Path, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (&cpu, "cpu", &[("focus", "pricing")]),
        (&cpu, "cpu", &[("ignore", "round_cents|libc")]),
        (&cpu, "cpu", &[("focus", "handlers"), ("ignore", "db::")]),
        (&cpu, "cpu", &[("focus", r"libc\.so")]),
        (&cpu, "cpu", &[("hide", "quote|main")]),
        (&cpu, "cpu", &[("show", "orders_api")]),
        (&cpu, "cpu", &[("focus", "handlers"), ("hide", "pricing")]),
        (
            &heap,
            "inuse_space",
            &[("focus", "cache"), ("show", "cache|main")],
        ),
        (&heap, "alloc_objects", &[("ignore", "Cache::insert")]),
        (
            &go_cpu,
            "cpu",
            &[("focus", r"main\.fib"), ("hide", "runtime")],
        ),
    ];
    for (file, sample_type, filters) in cases {
        let mut filter = NameFilter::default();
        let mut flags = vec!["-relative_percentages".to_string()];
        for (name, re) in filters.iter() {
            let compiled = Some(Regex::new(re).unwrap());
            match *name {
                "focus" => filter.focus = compiled,
                "ignore" => filter.ignore = compiled,
                "hide" => filter.hide = compiled,
                "show" => filter.show = compiled,
                _ => unreachable!(),
            }
            flags.push(format!("-{name}={re}"));
        }
        let mut ours = pruned(file);
        ours.filter_samples_by_name(&filter);
        assert!(ours != pruned(file), "{filters:?} changed nothing");
        let path = write(dir.path(), "filtered.pb.gz", &ours);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        // -relative_percentages: pprof filters before it totals, as a
        // profile filtered beforehand is totalled.
        let theirs = pprof_top(&[file], sample_type, &flags);
        assert_same(
            &format!("{} {flags:?}", file.display()),
            table(&pprof_top(&[&path], sample_type, &[])),
            table(&theirs),
        );
    }
}

#[test]
fn merging_and_compacting_match_pprof() {
    if !common::go_available() {
        return;
    }
    let dir = common::tempdir();
    let pairs = [
        ("encoded-heap-1.pb.gz", "encoded-heap-2.pb.gz"),
        ("encoded-cpu.pb.gz", "go-cpu.pb.gz"),
        ("go-heap.pb.gz", "go-heap.pb.gz"),
    ];
    for (a, b) in pairs {
        let (a, b) = (fixture(a), fixture(b));
        let merged = Profile::merge([&pruned(&a), &pruned(&b)]).unwrap();
        let path = write(dir.path(), "merged.pb.gz", &merged);
        // The whole output: the header (time, duration, comments) is merged too.
        let what = format!("{} + {}", a.display(), b.display());
        assert_same_tops(&what, &merged, &path, &[&a, &b]);
    }
    for file in inputs() {
        let original = pruned(&file);
        let compact = original.compact();
        assert!(compact.location.len() <= original.location.len());
        assert!(compact.string_table.len() <= original.string_table.len());
        let path = write(dir.path(), "compact.pb.gz", &compact);
        let before = write(dir.path(), "pruned.pb.gz", &original);
        let what = format!("compacted {}", file.display());
        assert_same_tops(&what, &compact, &path, &[&before]);
    }
}

/// pprof's `-base` is a merge with the base scaled by -1, and `-normalize`
/// first scales the profile so that each sample type sums as in the base.
#[test]
fn scaling_and_differences_match_pprofs_base_and_normalize() {
    if !common::go_available() {
        return;
    }
    let dir = common::tempdir();
    let (old, new) = (
        fixture("encoded-heap-1.pb.gz"),
        fixture("encoded-heap-2.pb.gz"),
    );
    let base_flag = format!("-base={}", old.display());
    for normalize in [false, true] {
        let mut profile = pruned(&new);
        let mut base = pruned(&old);
        if normalize {
            let sums = |p: &Profile| -> Vec<i64> {
                (0..p.sample_type.len())
                    .map(|i| p.sample.iter().map(|s| s.value[i]).sum())
                    .collect()
            };
            let ratios: Vec<f64> = sums(&base)
                .iter()
                .zip(sums(&profile))
                .map(|(&b, p)| if p == 0 { 0.0 } else { b as f64 / p as f64 })
                .collect();
            assert!(ratios.iter().all(|&r| r != 1.0 && r > 0.0), "{ratios:?}");
            profile.scale_each(&ratios).unwrap();
        }
        base.scale(-1.0);
        let difference = Profile::merge([&profile, &base]).unwrap();
        let path = write(dir.path(), "difference.pb.gz", &difference);
        let mut flags = vec![base_flag.as_str()];
        if normalize {
            flags.push("-normalize");
        }
        for t in sample_types(&difference) {
            assert_same(
                &format!("{} {flags:?} -sample_index={t}", new.display()),
                table(&pprof_top(&[&path], &t, &[])),
                table(&pprof_top(&[&new], &t, &flags)),
            );
        }
    }
}
