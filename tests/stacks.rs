//! Full stacks in the build a service gets by default (`cargo build
//! --release`, no frame pointers), and with frame pointers as the baseline:
//! the agent's `stacks` example (`crates/agent/examples/stacks.rs`) is built
//! both ways in target directories of its own, run, and its CPU profile and
//! heap snapshot are checked.
//!
//! - CPU: of the samples taken on the `worker` thread (which runs
//!   `stage_one → stage_two → hot`, nothing inlined), at least 95% have
//!   `stage_one` in their stack; `go tool pprof -top` names the callers.
//! - Heap: at least 90% of the 32 MiB the example keeps (8,192 blocks of
//!   4 KiB, sampled every 16 KiB on average: about 1,800 samples, one
//!   standard deviation 2.4%) is attributed to its calling function.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use firewatch_profile::Profile;

/// Builds the example with `rustflags` into `target/<dir>` (release) and
/// returns the binary.
fn build_example(dir: &str, rustflags: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().join(dir);
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "firewatch-agent",
            "--example",
            "stacks",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building the stacks example ({rustflags})"
    );
    target.join("release/examples/stacks")
}

fn names_in(p: &Profile, location_ids: &[u64]) -> Vec<String> {
    location_ids
        .iter()
        .flat_map(|&id| {
            p.location[(id - 1) as usize]
                .line
                .iter()
                .map(|l| {
                    p.string(p.function[(l.function_id - 1) as usize].name)
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn has(names: &[String], function: &str) -> bool {
    names.iter().any(|n| n.ends_with(function))
}

struct Figures {
    worker_samples: i64,
    with_stage_one: f64,
    heap_attributed: f64,
}

fn run(binary: &Path, build: &str) -> Figures {
    let dir = common::tempdir();
    let out = Command::new(binary).arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{build}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cpu = Profile::decode(&std::fs::read(dir.path().join("cpu.pb")).unwrap()).unwrap();
    let thread_key = cpu.string_table.iter().position(|s| s == "thread").unwrap() as i64;
    let (mut worker, mut with_stage_one) = (0i64, 0i64);
    for s in &cpu.sample {
        let on_worker = s
            .label
            .iter()
            .any(|l| l.key == thread_key && cpu.string(l.str) == "worker");
        if !on_worker {
            continue;
        }
        worker += s.value[0];
        if has(&names_in(&cpu, &s.location_id), "stage_one") {
            with_stage_one += s.value[0];
        }
    }
    assert!(worker >= 100, "{build}: {worker} worker samples");
    let comments: Vec<&str> = cpu.comment.iter().map(|&c| cpu.string(c)).collect();
    assert!(
        comments.iter().any(|c| c.contains("unwinding: .eh_frame")),
        "{build}: {comments:#?}"
    );
    assert!(
        !comments.iter().any(|c| c.contains("self-check failed")),
        "{build}: {comments:#?}"
    );

    if common::go_available() {
        let top = Command::new("go")
            .args(["tool", "pprof", "-top", "-symbolize=none"])
            .arg(dir.path().join("cpu.pb"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&top.stdout);
        assert!(
            top.status.success(),
            "{}",
            String::from_utf8_lossy(&top.stderr)
        );
        for f in ["stacks::hot", "stacks::stage_two", "stacks::stage_one"] {
            assert!(
                text.contains(f),
                "{build}: go tool pprof -top lacks {f}:\n{text}"
            );
        }
    }

    let heap = Profile::decode(&std::fs::read(dir.path().join("heap.pb")).unwrap()).unwrap();
    let inuse = heap
        .sample_type
        .iter()
        .position(|t| heap.string(t.r#type) == "inuse_space")
        .unwrap();
    let attributed: i64 = heap
        .sample
        .iter()
        .filter(|s| has(&names_in(&heap, &s.location_id), "stage_one_alloc"))
        .map(|s| s.value[inuse])
        .sum();
    Figures {
        worker_samples: worker,
        with_stage_one: with_stage_one as f64 / worker as f64,
        heap_attributed: attributed as f64 / (32 << 20) as f64,
    }
}

#[test]
fn full_stacks_with_and_without_frame_pointers() {
    let builds = [
        ("stacks-no-frame-pointers", "-C force-frame-pointers=no"),
        ("stacks-frame-pointers", "-C force-frame-pointers=yes"),
    ];
    let mut failures = Vec::new();
    for (dir, flags) in builds {
        let binary = build_example(dir, flags);
        let f = run(&binary, flags);
        println!(
            "{flags}: {} worker samples, {:.1}% with stage_one; heap: {:.1}% of the leak attributed to its caller",
            f.worker_samples,
            100.0 * f.with_stage_one,
            100.0 * f.heap_attributed
        );
        if f.with_stage_one < 0.95 {
            failures.push(format!(
                "{flags}: {:.3} of worker samples reach stage_one",
                f.with_stage_one
            ));
        }
        if f.heap_attributed < 0.90 {
            failures.push(format!(
                "{flags}: {:.3} of the leak attributed",
                f.heap_attributed
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
