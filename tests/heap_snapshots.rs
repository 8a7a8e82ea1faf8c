//! End to end for heap snapshots: the agent's example service (with
//! `SamplingAllocator` as its global allocator and a leak in
//! `remember_session`) as a child process; its snapshots read by
//! `firewatch analyze` and, independently, by `go tool pprof`. Every wait is
//! for an event (the leak reaching a size, a file, a log line).

mod common;

use std::process::{Command, Output};

use common::{captures_of, go_available, tempdir, wait_for, Service};
use firewatch_profile::Profile;

const LEAK_KIB_PER_SEC: u64 = 8192;

/// The service with one worker and a leak of `leak_kib` KiB a second.
fn leaking_service(dir: &std::path::Path, leak_kib: u64, env: &[(&str, &str)]) -> Service {
    let leak = leak_kib.to_string();
    Service::start(dir, &["--threads", "1", "--leak-kib-per-sec", &leak], env)
}

fn firewatch(args: &[&str]) -> Output {
    Command::new(common::firewatch_binary())
        .args(args)
        .output()
        .unwrap()
}

/// Parses pprof's byte units ("12.50MB", "512kB", "100B").
fn bytes(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other}"),
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn sigusr2_writes_a_heap_snapshot_that_names_the_leak() {
    let dir = tempdir();
    let mut service = leaking_service(dir.path(), LEAK_KIB_PER_SEC, &[]);
    // Enough kept that the leak dominates what is in use.
    service.wait_for_leak(16);
    service.signal();
    assert!(
        wait_for(|| !captures_of(dir.path(), "heap").is_empty()
            && !captures_of(dir.path(), "cpu").is_empty()),
        "SIGUSR2 writes a heap snapshot and a CPU profile"
    );
    assert!(service.alive());
    let heap = &captures_of(dir.path(), "heap")[0];
    let name = heap.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".signal.pb.gz"), "{name}");

    let profile = Profile::decode(&std::fs::read(heap).unwrap()).unwrap();
    let types: Vec<&str> = profile
        .sample_type
        .iter()
        .map(|t| profile.string(t.r#type))
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(profile.string(profile.default_sample_type), "inuse_space");
    assert_eq!(profile.period, 512 * 1024);

    let report = firewatch(&["analyze", heap.to_str().unwrap(), "--top", "5"]);
    assert!(report.status.success(), "{report:?}");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("Type: inuse_space"), "{text}");
    assert_eq!(
        common::top_function(&text),
        "service::remember_session",
        "firewatch names the leak first:\n{text}"
    );

    if go_available() {
        let table =
            common::go_pprof(&["-top", "-sample_index=inuse_space", heap.to_str().unwrap()]);
        assert_eq!(
            common::top_function(&table),
            "service::remember_session",
            "go tool pprof names the leak first:\n{table}"
        );
    }
}

#[test]
fn two_snapshots_show_what_grew() {
    let dir = tempdir();
    // A faster leak than the other tests: the growth between the snapshots
    // must hold enough samples for a tolerance worth checking (below).
    let mut service = leaking_service(dir.path(), 4 * LEAK_KIB_PER_SEC, &[]);
    service.wait_for_leak(8);
    service.signal();
    assert!(wait_for(|| captures_of(dir.path(), "heap").len() == 1));
    // The first snapshot was taken before its file appeared, so before the
    // leak passed what is reported now plus one report step (4 MiB): wait
    // for GROWTH_MIB more than that before the second.
    const GROWTH_MIB: u64 = 128;
    let at_first = service.leaked_mib() + 4;
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    service.wait_for_leak(at_first + GROWTH_MIB);
    service.signal();
    assert!(wait_for(|| captures_of(dir.path(), "heap").len() == 2));
    assert!(service.alive());
    let heaps = captures_of(dir.path(), "heap");
    let (old, new) = (heaps[0].to_str().unwrap(), heaps[1].to_str().unwrap());

    let md = firewatch(&["analyze", new, "--base", old, "--format", "markdown"]);
    assert!(md.status.success(), "{md:?}");
    let md = String::from_utf8_lossy(&md.stdout);
    let line = md
        .lines()
        .find(|l| l.starts_with("- grew by "))
        .unwrap_or_else(|| panic!("no 'grew by' line:\n{md}"));
    assert!(line.contains("`service::remember_session`"), "{line}");
    assert!(line.contains("call path"), "{line}");

    // The growth as go tool pprof sees it, against an independent truth
    // the files carry: the allocator's exact in-use counter in each
    // snapshot's comments (the workers' churn is freed, so the difference
    // is the leak). A 512-byte record is sampled with probability
    // 512/interval and then stands for `interval` bytes, so the estimate is
    // `interval` × a Poisson count with mean truth/interval: its relative
    // standard deviation is 1/sqrt(mean). Allow 4.5 of them (a false
    // failure about once in 150,000 runs); 128 MiB at 512 KiB is 256
    // samples, so about ±28%.
    if go_available() {
        let table = common::go_pprof(&["-top", "-sample_index=inuse_space", "-base", old, new]);
        let row = table
            .lines()
            .find(|l| l.ends_with("service::remember_session"))
            .unwrap_or_else(|| panic!("{table}"));
        let flat = bytes(row.split_whitespace().next().unwrap());
        let comment = |path: &str, prefix: &str| -> f64 {
            let p = Profile::decode(&std::fs::read(path).unwrap()).unwrap();
            p.comment
                .iter()
                .map(|&c| p.string(c))
                .find_map(|c| {
                    c.strip_prefix(prefix)?
                        .strip_suffix(" bytes")?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or_else(|| panic!("{path} has no comment {prefix:?}"))
        };
        let counted = |path: &str| comment(path, "heap in use (allocator counter): ");
        let interval = comment(new, "sample interval: ");
        let truth = counted(new) - counted(old);
        assert!(
            truth >= (GROWTH_MIB as f64 - 8.0) * 1024.0 * 1024.0,
            "the leak ran between the snapshots: {truth} bytes"
        );
        let expected_samples = truth / interval;
        let tolerance = 4.5 / expected_samples.sqrt();
        assert!(
            (flat / truth - 1.0).abs() <= tolerance,
            "grew by {flat} bytes per pprof, {truth} per the allocator's counter \
             (allowed ±{:.0}% for {expected_samples:.0} expected samples):\n{table}",
            tolerance * 100.0
        );
        let ours = line.trim_start_matches("- grew by ");
        let ours = bytes(ours.split_whitespace().next().unwrap());
        assert!(
            (ours - flat).abs() <= 0.01 * flat,
            "firewatch says {ours}, go tool pprof {flat}"
        );
    }
}

#[test]
fn crossing_the_heap_threshold_writes_one_snapshot_not_a_flood() {
    let dir = tempdir();
    // The leak crosses 24 MiB, then keeps growing by a further step (a
    // quarter of the threshold), which fires the trigger again: the minimum
    // gap between automatic captures lets exactly one through.
    let mut service = leaking_service(
        dir.path(),
        LEAK_KIB_PER_SEC,
        &[
            ("FIREWATCH_HEAP_THRESHOLD", "24M"),
            ("FIREWATCH_MIN_INTERVAL", "1h"),
        ],
    );
    service.wait_for_lines(&["wrote", ".heap-threshold."], 1);
    service.wait_for_lines(&["heap capture (heap-threshold) skipped"], 1);
    assert!(service.alive());
    let heaps = captures_of(dir.path(), "heap");
    assert_eq!(heaps.len(), 1, "{heaps:?}");
    assert!(
        heaps[0]
            .to_string_lossy()
            .ends_with(".heap-threshold.pb.gz"),
        "{heaps:?}"
    );
    assert!(captures_of(dir.path(), "cpu").is_empty());
    let profile = Profile::decode(&std::fs::read(&heaps[0]).unwrap()).unwrap();
    let in_use: i64 = profile.sample.iter().map(|s| s.value[3]).sum();
    assert!(
        in_use > 16 << 20,
        "the snapshot holds the heap that crossed 24 MiB: {in_use}"
    );
}

#[test]
fn crossing_the_rss_threshold_writes_one_snapshot() {
    // 1% of this machine's memory limit (cgroup, else RAM), reached by
    // leaking 64 MiB/s; skipped where 1% is more than this test should leak.
    let Some(limit) = firewatch_agent::testing::memory_limit_bytes() else {
        eprintln!("no memory limit known: skipping");
        return;
    };
    let one_percent = limit / 100;
    if one_percent > 1 << 30 {
        eprintln!("1% of {limit} bytes is over 1 GiB: skipping");
        return;
    }
    let dir = tempdir();
    // After the first snapshot, each further 16 MiB fires the trigger
    // again, and the minimum gap skips it.
    let mut service = leaking_service(
        dir.path(),
        64 * 1024,
        &[
            ("FIREWATCH_RSS_THRESHOLD_PERCENT", "1"),
            ("FIREWATCH_HEAP_STEP", "16M"),
            ("FIREWATCH_MIN_INTERVAL", "1h"),
        ],
    );
    service.wait_for_lines(&["wrote", ".rss-threshold."], 1);
    service.wait_for_lines(&["heap capture (rss-threshold) skipped"], 1);
    assert!(service.alive());
    let heaps = captures_of(dir.path(), "heap");
    assert_eq!(heaps.len(), 1, "{heaps:?}");
    assert!(
        heaps[0].to_string_lossy().ends_with(".rss-threshold.pb.gz"),
        "{heaps:?}"
    );
    let profile = Profile::decode(&std::fs::read(&heaps[0]).unwrap()).unwrap();
    let rss: u64 = profile
        .comment
        .iter()
        .map(|&c| profile.string(c))
        .find_map(|c| {
            c.strip_prefix("rss: ")?
                .strip_suffix(" bytes")?
                .parse()
                .ok()
        })
        .expect("an rss comment");
    assert!(
        rss >= one_percent,
        "RSS {rss} at the snapshot, threshold {one_percent}"
    );
}
