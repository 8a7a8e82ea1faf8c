//! The memory a capture takes (issue 10, item 12): symbolizing one capture
//! used to raise the service's RSS about tenfold (the example service:
//! +72 MiB for a heap snapshot, 34 MiB of it libc's separate debug file),
//! and the CPU-threshold trigger does it unasked. Now symbolization may add
//! at most `capture_memory_limit` (8 MiB by default); objects whose debug
//! info would not fit are named from their symbol tables, or left as
//! addresses and build IDs, and the profile says so.
//!
//! Each test runs the agent's example service as a child and measures from
//! outside what the kernel saw: `echo 5 > /proc/<pid>/clear_refs` resets
//! the high-water mark (VmHWM) to the current RSS just before `SIGUSR1`
//! asks for one capture (`--usr1 heap|cpu`), and the peak increase is
//! VmHWM − RSS before, read once the service says the file is written. The
//! service's own memory stands still meanwhile (the leak stops at 16 MiB,
//! waited for; workers reuse the same buffers). Waits are for log lines,
//! never for a time.
//!
//! The bound checked is the limit plus [`SLACK`]: what a capture needs
//! besides symbol sources (the allocation records copied from the
//! allocator's table, the profile and its gzip encoding, `/proc` reads; it
//! measured 0.7–1.1 MiB for the example, `docs/performance.md`), and for
//! a CPU profile the sampler's buffers on top (32 KiB × 32 slots per CPU,
//! at most 16 MiB).

mod common;

use std::path::Path;

use common::{captures_of, tempdir, Service};
use firewatch_profile::Profile;

const MIB: u64 = 1 << 20;
/// What a capture may take beyond the limit (see the module doc).
const SLACK: u64 = 4 * MIB;
/// The default `capture_memory_limit`.
const DEFAULT_LIMIT: u64 = 8 * MIB;

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"));
    kib * 1024
}

/// Asks the service (writing to `dir`) for one capture of `kind` with
/// `SIGUSR1` and returns its file and the peak RSS increase seen from
/// outside (`None` where VmHWM cannot be reset).
fn capture(service: &Service, dir: &Path, kind: &str) -> (std::path::PathBuf, Option<u64>) {
    let before = status_bytes(service.pid, "VmRSS");
    let reset = std::fs::write(format!("/proc/{}/clear_refs", service.pid), "5").is_ok();
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(service.pid, libc::SIGUSR1) }, 0);
    service.wait_for_lines(&["service: usr1 capture wrote "], 1);
    let peak = status_bytes(service.pid, "VmHWM").saturating_sub(before);
    if !reset {
        eprintln!("cannot reset VmHWM (clear_refs): the peak is not checked");
    }
    let files = captures_of(dir, kind);
    assert_eq!(files.len(), 1, "{files:?}");
    (files[0].clone(), reset.then_some(peak))
}

fn comments(profile: &Profile) -> Vec<String> {
    profile
        .comment
        .iter()
        .map(|&c| profile.string(c).to_string())
        .collect()
}

/// The function at the leaf of the samples holding the most `inuse_space`.
fn top_inuse_leaf(profile: &Profile) -> String {
    let index = profile
        .sample_type
        .iter()
        .position(|t| profile.string(t.r#type) == "inuse_space")
        .unwrap();
    let mut by_leaf = std::collections::HashMap::<String, i64>::new();
    for sample in &profile.sample {
        let Some(&leaf) = sample.location_id.first() else {
            continue;
        };
        let location = &profile.location[(leaf - 1) as usize];
        let name = location.line.last().map_or_else(
            || format!("0x{:x}", location.address),
            |l| {
                profile
                    .string(profile.function[(l.function_id - 1) as usize].name)
                    .to_string()
            },
        );
        *by_leaf.entry(name).or_default() += sample.value[index];
    }
    by_leaf
        .into_iter()
        .max_by_key(|&(_, v)| v)
        .map(|(name, _)| name)
        .unwrap_or_default()
}

/// A service leaking 16 MiB in `remember_session`, then still.
fn leaked_and_still(dir: &Path, usr1: &str, env: &[(&str, &str)]) -> Service {
    let args = [
        "--threads",
        "1",
        "--leak-kib-per-sec",
        "8192",
        "--leak-stop-mib",
        "16",
        "--usr1",
        usr1,
    ];
    let service = Service::start(dir, &args, env);
    service.wait_for_lines(&["service: leak stopped at"], 1);
    service
}

fn assert_within(peak: Option<u64>, bound: u64, what: &str) {
    if let Some(peak) = peak {
        eprintln!(
            "{what}: peak RSS increase {:.2} MiB (bound {:.2} MiB)",
            peak as f64 / MIB as f64,
            bound as f64 / MIB as f64
        );
        assert!(
            peak <= bound,
            "{what}: RSS rose by {peak} bytes during the capture, over {bound}"
        );
    }
}

#[test]
fn a_heap_snapshot_stays_within_the_default_limit_and_names_the_leak() {
    let dir = tempdir();
    let mut service = leaked_and_still(dir.path(), "heap", &[]);
    let (file, peak) = capture(&service, dir.path(), "heap");
    assert_within(peak, DEFAULT_LIMIT + SLACK, "heap snapshot, default limit");

    let profile = Profile::decode(&std::fs::read(&file).unwrap()).unwrap();
    let said = comments(&profile).join("\n");
    assert!(said.contains("firewatch: capture memory: RSS "), "{said}");
    assert!(said.contains("symbolization may add 8.0 MiB"), "{said}");
    // The example's debug info (either build) is far larger than 8 MiB:
    // its names come from its symbol table, with their path.
    let binary = profile.string(profile.mapping[0].filename).to_string();
    assert!(
        said.contains(&format!("symbols of {binary} (build ID "))
            && said.contains("function names from its symbol table only"),
        "{said}"
    );
    assert_eq!(top_inuse_leaf(&profile), "service::remember_session");
    service.shut_down();
}

#[test]
fn a_cpu_profile_stays_within_the_default_limit_and_the_samplers_buffers() {
    let dir = tempdir();
    let mut service = Service::start(dir.path(), &["--threads", "2", "--usr1", "cpu"], &[]);
    let (file, peak) = capture(&service, dir.path(), "cpu");
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as u64;
    let pool = (cpus * 32 * 32 * 1024).min(16 * MIB);
    assert_within(
        peak,
        DEFAULT_LIMIT + pool + SLACK,
        "CPU profile, default limit",
    );

    let profile = Profile::decode(&std::fs::read(&file).unwrap()).unwrap();
    let said = comments(&profile).join("\n");
    assert!(said.contains("firewatch: capture memory: RSS "), "{said}");
    let named = profile
        .function
        .iter()
        .any(|f| profile.string(f.name) == "service::checksum_orders");
    assert!(named, "the hot function is named from the symbol table");
    service.shut_down();
}

#[test]
fn a_small_limit_leaves_addresses_and_build_ids_and_says_so() {
    let dir = tempdir();
    let env = [("FIREWATCH_CAPTURE_MEMORY_LIMIT", "64K")];
    let mut service = leaked_and_still(dir.path(), "heap", &env);
    let (file, peak) = capture(&service, dir.path(), "heap");
    assert_within(peak, (64 << 10) + SLACK, "heap snapshot, 64 KiB limit");

    let profile = Profile::decode(&std::fs::read(&file).unwrap()).unwrap();
    let said = comments(&profile).join("\n");
    let main = &profile.mapping[0];
    let binary = profile.string(main.filename);
    let build_id = profile.string(main.build_id);
    assert!(!build_id.is_empty(), "the main binary has its build ID");
    assert!(
        said.contains(&format!(
            "symbols of {binary} (build ID {build_id}): no names"
        )) && said.contains("for offline symbolization"),
        "{said}"
    );
    assert!(said.contains("allocation plumbing is cut"), "{said}");
    // Its locations keep their addresses, without names.
    let in_main: Vec<_> = profile
        .location
        .iter()
        .filter(|l| l.mapping_id == main.id)
        .collect();
    assert!(!in_main.is_empty());
    assert!(in_main.iter().all(|l| l.address != 0 && l.line.is_empty()));
    // The log said it once.
    assert_eq!(service.count(&[binary, "no names", "(said once)"]), 1);
    service.shut_down();
}

#[test]
fn without_a_limit_debug_info_names_files_and_lines_as_before() {
    let dir = tempdir();
    let env = [("FIREWATCH_CAPTURE_MEMORY_LIMIT", "off")];
    let mut service = leaked_and_still(dir.path(), "heap", &env);
    let (file, _) = capture(&service, dir.path(), "heap");
    let profile = Profile::decode(&std::fs::read(&file).unwrap()).unwrap();
    let said = comments(&profile).join("\n");
    assert!(
        said.contains("no limit (capture_memory_limit off)"),
        "{said}"
    );
    assert!(!said.contains("symbol table only"), "{said}");
    assert_eq!(top_inuse_leaf(&profile), "service::remember_session");
    let with_lines = profile
        .function
        .iter()
        .any(|f| profile.string(f.name) == "service::remember_session" && f.filename != 0);
    assert!(with_lines, "debug info gives the leak its file");
    service.shut_down();
}
