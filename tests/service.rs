//! End to end: the agent's example service (`crates/agent/examples/service.rs`)
//! as a child process, driven the way an on-call engineer drives it. Every
//! wait is for an event (a log line, a file), never for a fixed time.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{captures, captures_of, go_available, other_files, tempdir, wait_for, Service};
use firewatch_profile::Profile;

#[test]
fn sigusr2_writes_a_cpu_profile_that_names_the_hot_function() {
    let dir = tempdir();
    let out = dir.path().join("profiles");
    let mut service = Service::start(&out, &[], &[]);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    service.signal();
    assert!(
        wait_for(|| !captures_of(&out, "cpu").is_empty()),
        "no capture written"
    );
    assert!(service.alive());

    // The service links the sampling allocator: a heap snapshot comes too
    // (its content is tested in the analyzer's heap_snapshots.rs).
    assert_eq!(captures_of(&out, "heap").len(), 1, "{:?}", captures(&out));
    let files = captures_of(&out, "cpu");
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(parts[0], "service");
    assert_eq!(parts[1], "cpu");
    assert_eq!(parts[2].len(), 16, "YYYYMMDDTHHMMSSZ: {name}");
    assert!(
        parts[2].ends_with('Z') && parts[2].as_bytes()[8] == b'T',
        "{name}"
    );
    assert_eq!(parts[3], service.pid.to_string());
    assert_eq!(parts[5..], ["signal", "pb", "gz"]);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let profile = Profile::decode(&std::fs::read(&files[0]).unwrap()).unwrap();
    let total: i64 = profile.sample.iter().map(|s| s.value[1]).sum();
    let hot: i64 = profile
        .sample
        .iter()
        .filter(|s| {
            s.location_id.iter().any(|&id| {
                profile.location[(id - 1) as usize].line.iter().any(|l| {
                    profile
                        .string(profile.function[(l.function_id - 1) as usize].name)
                        .contains("checksum_orders")
                })
            })
        })
        .map(|s| s.value[1])
        .sum();
    assert!(
        hot as f64 > 0.5 * total as f64,
        "checksum_orders has {hot} of {total} ns"
    );

    if go_available() {
        let out = Command::new("go")
            .args(["tool", "pprof", "-top", "-symbolize=none"])
            .arg(&files[0])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("checksum_orders"), "{text}");
    }
}

#[test]
fn a_storm_of_fifty_signals_costs_two_cpu_profiles_and_at_most_three_heap_snapshots() {
    let dir = tempdir();
    let mut service = Service::start(dir.path(), &[], &[("FIREWATCH_CPU_DURATION", "5s")]);
    service.signal();
    // The first round is under way: its heap snapshot is written and its
    // CPU profile runs for 5 s. The other 49 signals arrive meanwhile and
    // merge into one more round.
    service.wait_for_lines(&["cpu capture (signal) started"], 1);
    for _ in 0..49 {
        service.signal();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        service.count(&["wrote", ".cpu."]),
        0,
        "the storm (49 signals, 1 ms apart) outlasted a 5 s CPU profile: the test's premise fails"
    );
    // The merged round: one more CPU profile, then nothing. Heap snapshots
    // take milliseconds, so the first one asked for during the running CPU
    // profile is taken at once; signals after it merge into one more after
    // the profile (which happens if they outlast that snapshot's poll).
    service.wait_for_lines(&["wrote", ".cpu."], 2);
    assert!(service.alive(), "the service survived");
    service.shut_down();
    let cpu = captures_of(dir.path(), "cpu");
    assert_eq!(cpu.len(), 2, "{cpu:?}");
    let heap = captures_of(dir.path(), "heap");
    assert!((2..=3).contains(&heap.len()), "{heap:?}");
    assert_eq!(service.count(&["cpu capture (signal) started"]), 2);
    assert!(
        other_files(dir.path()).is_empty(),
        "{:?}",
        other_files(dir.path())
    );
}

#[test]
fn retention_keeps_the_newest_files_within_the_cap() {
    let dir = tempdir();
    // Six captures of an earlier run, one per hour.
    for hour in 0..6 {
        let name = format!("service.cpu.20260101T0{hour}0000Z.1.{hour}.signal.pb.gz");
        std::fs::write(dir.path().join(name), b"old").unwrap();
    }
    let mut service = Service::start(
        dir.path(),
        &[],
        &[("FIREWATCH_MAX_FILES", "3"), ("FIREWATCH_MAX_AGE", "off")],
    );
    // Retention ran at start, before the service said it was ready.
    let left = captures(dir.path());
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left.iter().all(|p| p.to_string_lossy().contains("T03")
            || p.to_string_lossy().contains("T04")
            || p.to_string_lossy().contains("T05")),
        "{left:?}"
    );
    service.signal();
    // Each new capture pushes the oldest out: in the end the newest old
    // file and this run's heap snapshot and CPU profile.
    let ours = format!(".{}.", service.pid);
    let settled = || {
        let left = captures(dir.path());
        let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        left.len() == 3
            && left.iter().any(|p| name(p).contains("T05"))
            && left
                .iter()
                .any(|p| name(p).contains(".heap.") && name(p).contains(&ours))
            && left
                .iter()
                .any(|p| name(p).contains(".cpu.") && name(p).contains(&ours))
    };
    assert!(wait_for(settled), "{:?}", captures(dir.path()));
    assert!(service.alive());
}

/// A small filesystem of our own (tmpfs), when running as root.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipping the tmpfs test");
            return None;
        }
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("mount -t tmpfs failed: skipping");
            return None;
        }
        Some(Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_and_read_only_filesystems_skip_the_capture_and_spare_the_service() {
    let dir = tempdir();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let Some(_mount) = Mount::tmpfs(&full, "size=256k,mode=0700") else {
        return;
    };
    std::fs::write(full.join("ballast"), vec![0u8; 200 * 1024]).unwrap();
    let mut service = Service::start(&full, &[], &[]);
    service.signal();
    // The CPU profile is the round's last capture; its failure ends it.
    service.wait_for_lines(&["cpu capture (signal) failed"], 1);
    assert_eq!(service.count(&["heap capture (signal) failed"]), 1);
    assert!(service.alive());
    assert!(captures(&full).is_empty(), "{:?}", captures(&full));
    assert_eq!(
        other_files(&full).len(),
        1,
        "only the ballast: {:?}",
        other_files(&full)
    );
    drop(service);

    let read_only = dir.path().join("ro");
    std::fs::create_dir(&read_only).unwrap();
    let Some(_ro) = Mount::tmpfs(&read_only, "size=64m,ro,mode=0700") else {
        return;
    };
    let mut service = Service::start(&read_only, &[], &[]);
    service.signal();
    service.wait_for_lines(&["cpu capture (signal) failed"], 1);
    assert_eq!(service.count(&["heap capture (signal) failed"]), 1);
    assert!(service.alive());
    assert!(captures(&read_only).is_empty());
}

#[test]
fn sustained_cpu_use_triggers_one_profile_not_a_flood() {
    let dir = tempdir();
    // Two busy workers keep the process near 200% of a core.
    let mut service = Service::start(
        dir.path(),
        &[],
        &[
            ("FIREWATCH_CPU_THRESHOLD_PERCENT", "50"),
            ("FIREWATCH_CHECK_INTERVAL", "300ms"),
            ("FIREWATCH_MIN_INTERVAL", "1h"),
        ],
    );
    service.wait_for_lines(&["wrote", ".cpu-threshold."], 1);
    // The threshold stays crossed for five more checks after the profile
    // was written; none of them starts another capture.
    let checks = service.count(&["CPU check"]);
    service.wait_for_lines(&["CPU check"], checks + 5);
    service.shut_down();
    assert_eq!(service.count(&["capture (cpu-threshold) started"]), 1);
    let files = captures(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].to_string_lossy().ends_with(".cpu-threshold.pb.gz"),
        "{files:?}"
    );
}

#[test]
fn a_bad_environment_value_is_logged_and_ignored_and_the_service_captures() {
    let dir = tempdir();
    let mut service = Service::start(
        dir.path(),
        &[],
        &[("FIREWATCH_CPU_HZ", "fast"), ("FIREWATCH_MAX_FILES", "0")],
    );
    service.wait_for_lines(
        &["invalid setting FIREWATCH_CPU_HZ", "\"fast\"", "ignored"],
        1,
    );
    service.wait_for_lines(&["invalid setting FIREWATCH_MAX_FILES", "ignored"], 1);
    service.signal();
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    assert!(service.alive());
    service.shut_down();
}

// ---- Faults: the directory, the filesystem, the process's end, and other
// ---- owners of SIGUSR2.

#[test]
fn an_output_directory_removed_while_running_is_made_again() {
    let dir = tempdir();
    let out = dir.path().join("profiles");
    let mut service = Service::start(&out, &[], &[]);
    std::fs::remove_dir_all(&out).unwrap();
    service.signal();
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    assert!(service.alive());
    assert_eq!(captures_of(&out, "cpu").len(), 1);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(other_files(&out).is_empty(), "{:?}", other_files(&out));
}

#[test]
fn a_filesystem_made_read_only_while_running_skips_then_recovers() {
    let dir = tempdir();
    let fs_dir = dir.path().join("fs");
    std::fs::create_dir(&fs_dir).unwrap();
    let Some(_mount) = Mount::tmpfs(&fs_dir, "size=64m,mode=0700") else {
        return;
    };
    let mut service = Service::start(&fs_dir, &[], &[]);
    let remount = |mode: &str| {
        assert!(Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&fs_dir)
            .status()
            .unwrap()
            .success());
    };
    remount("ro");
    service.signal();
    service.wait_for_lines(&["cpu capture (signal) failed"], 1);
    assert!(service.alive());
    assert!(captures(&fs_dir).is_empty(), "{:?}", captures(&fs_dir));
    remount("rw");
    assert!(
        other_files(&fs_dir).is_empty(),
        "{:?}",
        other_files(&fs_dir)
    );
    service.signal();
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    assert_eq!(captures_of(&fs_dir, "cpu").len(), 1);
    assert!(service.alive());
}

#[test]
fn exiting_during_a_capture_leaves_no_partial_file() {
    let dir = tempdir();
    // A 10-minute CPU profile, and a shutdown while it runs.
    let mut service = Service::start(dir.path(), &[], &[("FIREWATCH_CPU_DURATION", "10m")]);
    service.signal();
    service.wait_for_lines(&["cpu capture (signal) started"], 1);
    service.shut_down();
    assert!(captures_of(dir.path(), "cpu").is_empty());
    assert!(
        other_files(dir.path()).is_empty(),
        "{:?}",
        other_files(dir.path())
    );
}

fn own_usr2_count(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("own-usr2.count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_services_sigusr2_handler_installed_before_the_agent_still_runs() {
    let dir = tempdir();
    let mut service = Service::start(dir.path(), &["--own-usr2", "before"], &[]);
    service.signal();
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    service.shut_down();
    // signal-hook chains to the handler it found: both see the signal.
    assert_eq!(own_usr2_count(dir.path()), 1);
    assert_eq!(
        captures_of(dir.path(), "cpu").len(),
        1,
        "{:?}",
        captures(dir.path())
    );
}

#[test]
fn a_services_sigusr2_handler_installed_after_the_agent_replaces_it() {
    let dir = tempdir();
    let mut service = Service::start(dir.path(), &["--own-usr2", "after"], &[]);
    service.signal();
    service.shut_down();
    // A raw sigaction after the agent replaces its handler (the documented
    // rule: use another signal for the agent, or register through
    // signal-hook); the service's handler runs, the agent sees nothing.
    assert_eq!(own_usr2_count(dir.path()), 1);
    assert_eq!(service.count(&["capture (signal) started"]), 0);
    assert!(
        captures(dir.path()).is_empty(),
        "{:?}",
        captures(dir.path())
    );
}

#[test]
fn an_unusable_output_directory_does_not_stop_the_service_and_is_retried() {
    let dir = tempdir();
    // The directory cannot be made: a file stands where its parent should be.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = blocker.join("profiles");
    let mut service = Service::start(&out, &[], &[]);
    service.wait_for_lines(&["captures are skipped until the directory is usable"], 1);
    service.signal();
    // Both captures of the round are skipped, before any work is done.
    service.wait_for_lines(&["cpu capture (signal) failed", "not usable"], 1);
    assert_eq!(
        service.count(&["heap capture (signal) failed", "not usable"]),
        1
    );
    assert!(service.alive());
    // Once the directory can be made, the next request writes.
    std::fs::remove_file(&blocker).unwrap();
    service.signal();
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    assert_eq!(captures_of(&out, "cpu").len(), 1);
    assert!(service.alive());
}

#[test]
fn a_heap_snapshot_does_not_wait_for_a_cpu_profile_in_progress() {
    let dir = tempdir();
    // A 10-minute CPU profile: before, the second signal's heap snapshot
    // waited for it to end.
    let mut service = Service::start(dir.path(), &[], &[("FIREWATCH_CPU_DURATION", "10m")]);
    service.signal();
    service.wait_for_lines(&["cpu capture (signal) started"], 1);
    assert_eq!(service.count(&["wrote", ".heap."]), 1);
    service.signal();
    service.wait_for_lines(&["wrote", ".heap."], 2);
    assert_eq!(
        service.count(&["wrote", ".cpu."]),
        0,
        "the CPU profile still runs"
    );
    service.shut_down();
    assert_eq!(captures_of(dir.path(), "heap").len(), 2);
}

#[test]
fn under_ulimit_v_at_twice_its_size_the_service_runs_captures_and_exits() {
    let dir = tempdir();
    // Its size once it runs and has captured (the agent thread, a CPU
    // profile's pool and tables), without the 8 GiB of address space the
    // sampled-block range takes when nothing limits it.
    let mut service = Service::start(dir.path(), &[], &[]);
    service.signal();
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    let range = (8u64 << 30) + (64 << 10);
    let size = service.address_space();
    let normal = if size > range { size - range } else { size };
    service.shut_down();

    let limited = dir.path().join("limited");
    let mut service = Service::start_with_limit(&limited, &[], &[], Some(2 * normal));
    service.signal();
    service.wait_for_lines(&["wrote", ".heap."], 1);
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    assert!(service.alive());
    service.shut_down();
    assert_eq!(captures_of(&limited, "cpu").len(), 1);
    assert_eq!(captures_of(&limited, "heap").len(), 1);
}

/// Runs as two unprivileged users (as root only: the test switches users).
#[test]
fn unprivileged_users_start_with_an_unwritable_directory_and_side_by_side_by_default() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipping the two-user test");
        return;
    }
    // A directory every user can read: the binary, and a TMPDIR like /tmp.
    let dir = tempdir();
    let set_mode = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(dir.path(), 0o755);
    let binary = dir.path().join("service");
    std::fs::copy(common::service_binary(), &binary).unwrap();
    set_mode(&binary, 0o755);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    set_mode(&tmp, 0o1777);

    // A directory the user cannot make: the service starts, captures are
    // skipped with a log line.
    let unwritable = [("FIREWATCH_DIR", "/root/firewatch-not-yours")];
    let mut service = Service::start_as(&binary, 65534, &tmp, &unwritable);
    service.wait_for_lines(&["captures are skipped until the directory is usable"], 1);
    service.signal();
    service.wait_for_lines(&["cpu capture (signal) failed", "not usable"], 1);
    assert!(service.alive());
    service.shut_down();

    // Two users with the default directory: one each, both capture.
    let mut first = Service::start_as(&binary, 65534, &tmp, &[]);
    let mut second = Service::start_as(&binary, 65533, &tmp, &[]);
    first.signal();
    second.signal();
    first.wait_for_lines(&["wrote", ".cpu."], 1);
    second.wait_for_lines(&["wrote", ".cpu."], 1);
    assert!(first.alive() && second.alive());
    first.shut_down();
    second.shut_down();
    for uid in [65534, 65533] {
        let own = tmp.join(format!("firewatch-{uid}"));
        assert_eq!(captures_of(&own, "cpu").len(), 1, "{}", own.display());
    }
}
