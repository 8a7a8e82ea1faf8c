//! Inputs crafted to blow up memory or time (issue 5): millions of empty
//! samples, one location with a million lines, huge strings, stacks a
//! million frames deep. Each is written to a file and run through the real
//! `firewatch analyze` (every report format and a flamegraph); it must
//! finish (a 120 s hang detector, not a timing assertion), and its peak
//! memory, the kernel's high-water mark for the child's address space
//! (`VmHWM` in `/proc/<pid>/status`, read every 5 ms; not `wait4`'s
//! `ru_maxrss`, which after a vfork-style spawn includes the test
//! process's own peak), must stay within
//! the bound docs/reliability.md states: 64 MiB plus 16 times the
//! decompressed input. Outputs must stay bounded too: names are cut at
//! `MAX_NAME_BYTES` in reports, and flamegraphs draw at most
//! `MAX_FLAMEGRAPH_DEPTH` frames of a stack.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firewatch_profile::{Function, Line, Location, Profile, Sample, StringInterner, ValueType};

const FIXED_MIB: u64 = 64;
const PER_INPUT_BYTE: u64 = 16;

fn base(strings: &mut StringInterner) -> Profile {
    let mut p = Profile::new();
    p.sample_type = vec![ValueType {
        r#type: strings.intern("samples"),
        unit: strings.intern("count"),
    }];
    p
}

fn finish(mut p: Profile, strings: StringInterner) -> Vec<u8> {
    p.string_table = strings.into_table();
    p.encode()
}

fn functions(p: &mut Profile, strings: &mut StringInterner, n: u64) {
    p.function = (1..=n)
        .map(|id| Function {
            id,
            name: strings.intern(&format!("f{id}")),
            ..Default::default()
        })
        .collect();
}

/// Two million samples without a single frame.
fn empty_samples() -> Vec<u8> {
    let mut s = StringInterner::new();
    let mut p = base(&mut s);
    p.sample = (0..2_000_000)
        .map(|_| Sample {
            value: vec![1],
            ..Default::default()
        })
        .collect();
    finish(p, s)
}

/// One location holding a million (inlined) lines, sampled once.
fn location_with_a_million_lines() -> Vec<u8> {
    let mut s = StringInterner::new();
    let mut p = base(&mut s);
    functions(&mut p, &mut s, 1000);
    p.location = vec![Location {
        id: 1,
        address: 0x1000,
        line: (0..1_000_000)
            .map(|i| Line {
                function_id: 1 + i % 1000,
                line: i as i64,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }];
    p.sample = vec![Sample {
        location_id: vec![1],
        value: vec![1],
        ..Default::default()
    }];
    finish(p, s)
}

/// A 64 MiB function name and a thousand 64 KiB ones.
fn huge_strings() -> Vec<u8> {
    let mut s = StringInterner::new();
    let mut p = base(&mut s);
    let mut names = vec!["x".repeat(64 << 20)];
    names.extend((0..1000).map(|i| format!("{i}").repeat(64 << 10 >> 2)));
    p.function = names
        .iter()
        .enumerate()
        .map(|(i, name)| Function {
            id: i as u64 + 1,
            name: s.intern(name),
            ..Default::default()
        })
        .collect();
    p.location = (1..=names.len() as u64)
        .map(|id| Location {
            id,
            address: id * 16,
            line: vec![Line {
                function_id: id,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    p.sample = (1..=names.len() as u64)
        .map(|id| Sample {
            location_id: vec![id, 1],
            value: vec![1],
            ..Default::default()
        })
        .collect();
    finish(p, s)
}

/// One sample a million distinct frames deep.
fn a_million_frames_deep() -> Vec<u8> {
    let mut s = StringInterner::new();
    let mut p = base(&mut s);
    functions(&mut p, &mut s, 10_000);
    p.location = (1..=1_000_000u64)
        .map(|id| Location {
            id,
            address: id * 16,
            line: vec![Line {
                function_id: 1 + id % 10_000,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    p.sample = vec![Sample {
        location_id: (1..=1_000_000).collect(),
        value: vec![1],
        ..Default::default()
    }];
    finish(p, s)
}

/// A thousand samples of 10,000-deep recursion through the same frames.
fn deep_recursion() -> Vec<u8> {
    let mut s = StringInterner::new();
    let mut p = base(&mut s);
    functions(&mut p, &mut s, 3);
    p.location = (1..=3u64)
        .map(|id| Location {
            id,
            address: id * 16,
            line: vec![Line {
                function_id: id,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    p.sample = (0..1000u64)
        .map(|i| Sample {
            location_id: (0..10_000u64).map(|d| 1 + (d + i) % 3).collect(),
            value: vec![1],
            ..Default::default()
        })
        .collect();
    finish(p, s)
}

struct Run {
    success: bool,
    peak_rss: u64,
    longest_line: usize,
    stdout_bytes: usize,
    svg_bytes: u64,
    stderr: String,
}

/// The high-water mark of `pid`'s resident memory, in bytes.
fn vm_hwm(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `firewatch analyze` on `input` with `args`, following the child's
/// peak RSS.
fn analyze(input: &Path, args: &[&str], svg: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firewatch"));
    cmd.arg("analyze").arg(input).args(args);
    if let Some(svg) = svg {
        cmd.arg("--flamegraph").arg(svg);
    }
    let out_path = input.with_extension("out");
    let err_path = input.with_extension("err");
    cmd.stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()));
    #[allow(clippy::zombie_processes)] // reaped by waitpid below, after reading VmHWM
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    let status = loop {
        // Before reaping: a zombie has no memory to report.
        peak = peak.max(vm_hwm(pid).unwrap_or(0));
        let mut status = 0;
        // SAFETY: waiting for our own child, valid out-pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{}: still running after 120 s", input.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    Run {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        peak_rss: peak,
        longest_line: stdout.lines().map(str::len).max().unwrap_or(0),
        stdout_bytes: stdout.len(),
        svg_bytes: svg
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len()),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn check(name: &str, bytes: Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let input: PathBuf = dir.path().join(format!("{name}.pb"));
    std::fs::write(&input, &bytes).unwrap();
    let bound = (FIXED_MIB << 20) + PER_INPUT_BYTE * bytes.len() as u64;
    for format in ["text", "json", "markdown"] {
        let svg = dir.path().join(format!("{name}.svg"));
        let run = analyze(&input, &["--format", format], Some(&svg));
        println!(
            "{name} ({} bytes) {format}: ok={} peak {} MiB (bound {} MiB), stdout {} bytes, \
             longest line {}, svg {} bytes",
            bytes.len(),
            run.success,
            run.peak_rss >> 20,
            bound >> 20,
            run.stdout_bytes,
            run.longest_line,
            run.svg_bytes
        );
        assert!(run.success, "{name} {format}: {}", run.stderr);
        assert!(
            run.peak_rss <= bound,
            "{name} {format}: peak {} bytes over the bound {bound}",
            run.peak_rss
        );
        if format == "text" {
            // A name is cut at MAX_NAME_BYTES; a report line adds columns.
            let longest = firewatch_analyzer::aggregate::MAX_NAME_BYTES + 256;
            assert!(
                run.longest_line <= longest,
                "{name}: a {}-byte line",
                run.longest_line
            );
        }
        assert!(
            run.svg_bytes <= 64 << 20,
            "{name}: flamegraph of {} bytes",
            run.svg_bytes
        );
    }
}

#[test]
fn two_million_empty_samples() {
    check("empty-samples", empty_samples());
}

#[test]
fn a_location_with_a_million_lines() {
    check("million-lines", location_with_a_million_lines());
}

#[test]
fn huge_strings_in_the_string_table() {
    check("huge-strings", huge_strings());
}

#[test]
fn a_stack_a_million_frames_deep() {
    check("million-frames", a_million_frames_deep());
}

#[test]
fn a_thousand_deep_recursions() {
    check("deep-recursion", deep_recursion());
}
