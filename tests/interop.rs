//! Profiles written by other tools open in firewatch: here, pprof-rs (the
//! Go runtime's profiles are covered by the conformance test against
//! `go tool pprof`, in crates/analyzer/tests).

mod common;

use std::hint::black_box;
use std::time::Duration;

use firewatch_analyzer::{aggregate, Input, Options};
use firewatch_profile::{Profile, ProfileView};
use pprof::protos::Message;

#[inline(never)]
fn spin_for_pprof_rs(cpu: Duration) -> u64 {
    let until = common::thread_cpu() + cpu;
    let mut x = 3u64;
    while common::thread_cpu() < until {
        for _ in 0..20_000 {
            x = black_box(x.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(11));
        }
    }
    x
}

#[test]
fn a_pprof_rs_profile_decodes_and_names_its_functions() {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(250)
        .build()
        .unwrap();
    // Spin until pprof-rs has samples (under load its timer signals can
    // come late: seen once with none after 600 ms of CPU at load 6). The
    // deadline only catches a profiler that never samples.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let report = loop {
        spin_for_pprof_rs(Duration::from_millis(600));
        let report = guard.report().build().unwrap();
        if report.data.values().sum::<isize>() >= 20 {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pprof-rs took no samples in 2 minutes of spinning"
        );
    };
    drop(guard);
    let bytes = report.pprof().unwrap().write_to_bytes().unwrap();

    // pprof-rs writes no mappings and zero addresses; the profile is still valid.
    let owned = Profile::decode(&bytes).unwrap();
    assert!(!owned.sample.is_empty());
    assert!(owned.mapping.is_empty());

    let view = ProfileView::decode(&bytes).unwrap();
    let inputs = [Input {
        path: "pprof-rs.pb".into(),
        view: &view,
        base: false,
    }];
    let agg = aggregate(&inputs, &Options::default()).unwrap();
    assert_eq!(agg.sample_type.r#type, "cpu");
    let hot = agg
        .functions
        .iter()
        .find(|f| f.name.contains("spin_for_pprof_rs"))
        .unwrap_or_else(|| {
            panic!(
                "{:?}",
                agg.functions.iter().map(|f| &f.name).collect::<Vec<_>>()
            )
        });
    assert!(
        hot.cum as f64 > 0.5 * agg.total as f64,
        "{} of {}",
        hot.cum,
        agg.total
    );
}
