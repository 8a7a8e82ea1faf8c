//! A CPU profile as a file: symbolized, with mappings and build IDs, readable
//! by our decoder and by `go tool pprof` (when Go is installed).

mod common;

use std::hint::black_box;
use std::time::Duration;

use firewatch_agent::cpu::CpuProfiler;
use firewatch_profile::Profile;

#[inline(never)]
fn hot_function_for_the_profile_test(cpu: Duration) -> u64 {
    let until = common::thread_cpu() + cpu;
    let mut x = 7u64;
    while common::thread_cpu() < until {
        for _ in 0..20_000 {
            x = black_box(x.rotate_left(5) ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(31);
        }
    }
    x
}

/// CPU time per function over every sample it appears in (inlined frames
/// included), as pprof's cum column: the hot function may inline its callees.
fn cum_by_function(p: &Profile) -> Vec<(String, i64)> {
    let mut cum: std::collections::HashMap<String, i64> = Default::default();
    for s in &p.sample {
        let mut names: Vec<String> = Vec::new();
        for &id in &s.location_id {
            for line in &p.location[(id - 1) as usize].line {
                names.push(
                    p.string(p.function[(line.function_id - 1) as usize].name)
                        .to_string(),
                );
            }
        }
        names.sort();
        names.dedup();
        for n in names {
            *cum.entry(n).or_default() += s.value[1];
        }
    }
    let mut v: Vec<_> = cum.into_iter().collect();
    v.sort_by_key(|f| std::cmp::Reverse(f.1));
    v
}

#[test]
fn profile_names_the_hot_function_and_opens_in_pprof() {
    let profiler = CpuProfiler::start(250).unwrap();
    hot_function_for_the_profile_test(Duration::from_millis(800));
    let profile = profiler.stop().unwrap();
    profile.validate().unwrap();

    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (profile.string(t.r#type), profile.string(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let main = &profile.mapping[0];
    assert!(
        profile.string(main.filename).contains("cpu_profile"),
        "{}",
        profile.string(main.filename)
    );
    assert!(
        !profile.string(main.build_id).is_empty(),
        "main binary has a build id"
    );
    for (i, l) in profile.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
    }
    let total: i64 = profile.sample.iter().map(|s| s.value[1]).sum();
    let cum = cum_by_function(&profile);
    let hot = cum
        .iter()
        .find(|(n, _)| n.contains("hot_function_for_the_profile_test"));
    let (_, value) = hot.unwrap_or_else(|| panic!("hot function missing: {cum:?}"));
    assert!(
        *value as f64 > 0.8 * total as f64,
        "{value} of {total}: {cum:?}"
    );

    let path =
        std::env::temp_dir().join(format!("firewatch-cpu-test-{}.pb.gz", std::process::id()));
    profile
        .write_gzip(std::fs::File::create(&path).unwrap())
        .unwrap();
    let back = Profile::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, profile);

    if std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = std::process::Command::new("go")
            .args(["tool", "pprof", "-top", "-symbolize=none"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(text.contains("hot_function_for_the_profile_test"), "{text}");
        assert!(!err.contains("Main binary filename not available"), "{err}");
    } else {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_GO").is_none(),
            "FIREWATCH_REQUIRE_GO set but no go"
        );
        eprintln!("go not installed: skipped the go tool pprof check");
    }
    let _ = std::fs::remove_file(path);
}
