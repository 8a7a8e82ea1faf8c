//! End to end: the example service (`examples/service.rs`) as a child
//! process, driven the way an on-call engineer drives it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firewatch_profile::Profile;

fn service_binary() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/service
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/service");
    assert!(
        path.exists(),
        "{} missing: cargo test builds examples",
        path.display()
    );
    path
}

struct Service {
    child: Child,
    pid: i32,
}

impl Service {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Service {
        Service::start_with(dir, &[], env)
    }

    /// With extra arguments (later ones override, e.g. `--seconds`).
    fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(service_binary());
        cmd.args(["--dir", dir.to_str().unwrap(), "--seconds", "120"])
            .args(args)
            .env("FIREWATCH_CPU_DURATION", "1s")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready pid="), "{line}");
        let pid = child.id() as i32;
        Service { child, pid }
    }

    fn signal(&self) {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGUSR2) }, 0);
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the service to exit by itself; its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("firewatch-e2e")
        .tempdir()
        .unwrap()
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Captures of one kind (`cpu` or `heap`).
fn captures_of(dir: &Path, kind: &str) -> Vec<PathBuf> {
    captures(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(&format!(".{kind}."))
        })
        .collect()
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".pb.gz"))
        .collect()
}

fn wait_for(mut done: impl FnMut() -> bool, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn go_available() -> bool {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("FIREWATCH_REQUIRE_GO").is_none(),
        "FIREWATCH_REQUIRE_GO set but no go"
    );
    ok
}

#[test]
fn sigusr2_writes_a_cpu_profile_that_names_the_hot_function() {
    let dir = tempdir();
    let out = dir.path().join("profiles");
    let mut service = Service::start(&out, &[]);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    service.signal();
    assert!(
        wait_for(
            || !captures_of(&out, "cpu").is_empty(),
            Duration::from_secs(30)
        ),
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
fn a_storm_of_fifty_signals_costs_at_most_two_captures_of_each_kind() {
    let dir = tempdir();
    let mut service = Service::start(dir.path(), &[]);
    for _ in 0..50 {
        service.signal();
        std::thread::sleep(Duration::from_millis(20));
    }
    // One capture of each kind runs (the CPU one for 1 s); the other 49
    // signals merge into one more of each.
    std::thread::sleep(Duration::from_secs(5));
    assert!(service.alive(), "the service survived");
    for kind in ["cpu", "heap"] {
        let files = captures_of(dir.path(), kind);
        assert!((1..=2).contains(&files.len()), "{files:?}");
    }
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
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
        &[("FIREWATCH_MAX_FILES", "3"), ("FIREWATCH_MAX_AGE", "off")],
    );
    let left = captures(dir.path());
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left.iter().all(|p| p.to_string_lossy().contains("T03")
            || p.to_string_lossy().contains("T04")
            || p.to_string_lossy().contains("T05")),
        "{left:?}"
    );
    service.signal();
    assert!(wait_for(
        || captures(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(&format!(".{}.", service.pid))),
        Duration::from_secs(30)
    ));
    std::thread::sleep(Duration::from_millis(300));
    let left = captures(dir.path());
    assert_eq!(left.len(), 3, "{left:?}");
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
    let mut service = Service::start(&full, &[]);
    service.signal();
    std::thread::sleep(Duration::from_secs(4));
    assert!(service.alive());
    assert!(captures(&full).is_empty(), "{:?}", captures(&full));
    assert_eq!(
        temp_files(&full).len(),
        1,
        "only the ballast: {:?}",
        temp_files(&full)
    );
    drop(service);

    let read_only = dir.path().join("ro");
    std::fs::create_dir(&read_only).unwrap();
    let Some(_ro) = Mount::tmpfs(&read_only, "size=64m,ro,mode=0700") else {
        return;
    };
    let mut service = Service::start(&read_only, &[]);
    service.signal();
    std::thread::sleep(Duration::from_secs(4));
    assert!(service.alive());
    assert!(captures(&read_only).is_empty());
}

#[test]
fn sustained_cpu_use_triggers_one_profile_not_a_flood() {
    let dir = tempdir();
    // Two busy workers keep the process near 200% of a core.
    let mut service = Service::start(
        dir.path(),
        &[
            ("FIREWATCH_CPU_THRESHOLD_PERCENT", "50"),
            ("FIREWATCH_CHECK_INTERVAL", "300ms"),
            ("FIREWATCH_MIN_INTERVAL", "1h"),
        ],
    );
    assert!(
        wait_for(|| !captures(dir.path()).is_empty(), Duration::from_secs(20)),
        "no cpu-threshold capture"
    );
    // The threshold stays crossed, but the minimum gap allows no second one.
    std::thread::sleep(Duration::from_secs(4));
    let files = captures(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].to_string_lossy().ends_with(".cpu-threshold.pb.gz"),
        "{files:?}"
    );
    assert!(service.alive());
}

// ---- Faults (issue 5): the directory, the filesystem, the process's end,
// ---- and other owners of SIGUSR2.

#[test]
fn an_output_directory_removed_while_running_is_made_again() {
    let dir = tempdir();
    let out = dir.path().join("profiles");
    let mut service = Service::start(&out, &[]);
    std::fs::remove_dir_all(&out).unwrap();
    service.signal();
    assert!(
        wait_for(
            || captures_of(&out, "cpu").len() == 1,
            Duration::from_secs(30)
        ),
        "no capture after the directory was removed"
    );
    assert!(service.alive());
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
}

#[test]
fn a_filesystem_made_read_only_while_running_skips_then_recovers() {
    let dir = tempdir();
    let fs_dir = dir.path().join("fs");
    std::fs::create_dir(&fs_dir).unwrap();
    let Some(_mount) = Mount::tmpfs(&fs_dir, "size=64m,mode=0700") else {
        return;
    };
    let mut service = Service::start(&fs_dir, &[]);
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
    std::thread::sleep(Duration::from_secs(3));
    assert!(service.alive());
    assert!(captures(&fs_dir).is_empty(), "{:?}", captures(&fs_dir));
    remount("rw");
    assert!(temp_files(&fs_dir).is_empty(), "{:?}", temp_files(&fs_dir));
    service.signal();
    assert!(
        wait_for(
            || captures_of(&fs_dir, "cpu").len() == 1,
            Duration::from_secs(30)
        ),
        "no capture once writable again"
    );
    assert!(service.alive());
}

#[test]
fn exiting_during_a_capture_leaves_no_partial_file() {
    let dir = tempdir();
    // A 10 s CPU profile asked for 1 s before the service ends by itself.
    let mut service = Service::start_with(
        dir.path(),
        &["--seconds", "2"],
        &[("FIREWATCH_CPU_DURATION", "10s")],
    );
    std::thread::sleep(Duration::from_secs(1));
    service.signal();
    assert_eq!(
        service.wait_exit(Duration::from_secs(20)),
        Some(0),
        "the service exits on time, cleanly, with a capture running"
    );
    assert!(captures_of(dir.path(), "cpu").is_empty());
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
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
    let mut service =
        Service::start_with(dir.path(), &["--seconds", "4", "--own-usr2", "before"], &[]);
    std::thread::sleep(Duration::from_millis(300));
    service.signal();
    assert_eq!(service.wait_exit(Duration::from_secs(30)), Some(0));
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
    let mut service =
        Service::start_with(dir.path(), &["--seconds", "3", "--own-usr2", "after"], &[]);
    std::thread::sleep(Duration::from_millis(300));
    service.signal();
    assert_eq!(service.wait_exit(Duration::from_secs(30)), Some(0));
    // A raw sigaction after the agent replaces its handler (the documented
    // rule: use another signal for the agent, or register through
    // signal-hook); the service's handler runs, the agent sees nothing.
    assert_eq!(own_usr2_count(dir.path()), 1);
    assert!(
        captures(dir.path()).is_empty(),
        "{:?}",
        captures(dir.path())
    );
}
