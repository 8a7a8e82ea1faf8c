//! How much CPU and memory the process uses, and how much memory it may use:
//! the inputs of the CPU and RSS triggers, and the reference the CPU profile's
//! totals are checked against (summed `cpu/nanoseconds` ≈ CPU time of the
//! window).
//!
//! Each reader is a thin I/O shell around a pure parser, so the parsing is
//! tested on text and the shells stay trivial. None of this may run in a
//! signal handler (files, allocation).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// CPU time (user + system) consumed by all threads of the process so far, from
/// `getrusage(RUSAGE_SELF)`. Zero if the call fails (it cannot, for
/// `RUSAGE_SELF` with a valid buffer).
pub fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a writable buffer of the right type; getrusage only
    // writes into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage succeeded, so it filled the struct (which was also
    // zero-initialised, a valid bit pattern for it, beforehand).
    let usage = unsafe { usage.assume_init() };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// CPU time of all threads of the process so far, from the kernel's
/// precise per-thread runtimes (`CLOCK_PROCESS_CPUTIME_ID`; `getrusage`
/// splits the same total into user and system by tick sampling). Used by
/// the CPU sampler, which exists on Linux x86_64/aarch64 only.
#[cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code)
)]
pub fn process_cpu_clock() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1_000)
}

/// Resident set size in bytes (`/proc/self/statm` resident pages × page
/// size), the number the kernel's OOM accounting is closest to. `None` when
/// `/proc` is unavailable.
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse_statm_resident_pages(&text)?.checked_mul(page_size()?)
}

/// The second field of `/proc/<pid>/statm`: resident pages.
pub fn parse_statm_resident_pages(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0)
}

/// Limits at or above this are "unlimited" spelled as a number: cgroup v1
/// writes `PAGE_COUNTER_MAX` pages (`0x7FFFFFFFFFFFF000` bytes on x86-64).
const ABSURD_LIMIT: u64 = 1 << 60;

/// The memory the process may use before the OOM killer steps in: the
/// smallest of its cgroup limit and physical RAM (a cgroup limit above RAM
/// cannot be reached). `None` only if neither can be read.
///
/// The cgroup limit is the tightest `memory.max` (v2) or
/// `memory.limit_in_bytes` (v1) along the process's cgroup and its ancestors,
/// because a parent's limit (a systemd slice, a pod) binds every child. Inside
/// a container with its own cgroup namespace, `/proc/self/cgroup` says `/` and
/// the container's own cgroup is the mount root, which the walk covers too.
pub fn memory_limit_bytes() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let cgroup = cgroup_memory_limit(Path::new("/sys/fs/cgroup"), &cgroups);
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    match (cgroup, ram) {
        (Some(c), Some(r)) => Some(c.min(r)),
        (c, r) => c.or(r),
    }
}

/// The cgroup memory limit, with `/sys/fs/cgroup` as `root` (a parameter for
/// tests) and `proc_self_cgroup` the text of `/proc/self/cgroup`. v2 first; v1
/// only when v2 has no memory controller here (hybrid hosts mount a
/// controller-less v2 tree at `unified/` and list `0::/` too).
pub fn cgroup_memory_limit(root: &Path, proc_self_cgroup: &str) -> Option<u64> {
    if let Some(path) = parse_cgroup_v2_path(proc_self_cgroup) {
        if let Some(limit) = tightest_limit(root, path, "memory.max", parse_memory_max) {
            return limit;
        }
    }
    let v1_root = root.join("memory");
    let path = parse_cgroup_v1_memory_path(proc_self_cgroup).unwrap_or("/");
    tightest_limit(
        &v1_root,
        path,
        "memory.limit_in_bytes",
        parse_limit_in_bytes,
    )
    .flatten()
}

/// Reads `file` in `mount/<cgroup>` and each ancestor up to `mount`.
/// `None`: the controller is not there (no such file at any level);
/// `Some(None)`: it is, without a limit; `Some(Some(n))`: the smallest limit.
fn tightest_limit(
    mount: &Path,
    cgroup: &str,
    file: &str,
    parse: fn(&str) -> Option<u64>,
) -> Option<Option<u64>> {
    let mut found = false;
    let mut tightest: Option<u64> = None;
    for dir in cgroup_dirs(mount, cgroup) {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        found = true;
        if let Some(limit) = parse(&text) {
            tightest = Some(tightest.map_or(limit, |t| t.min(limit)));
        }
    }
    found.then_some(tightest)
}

/// `mount/<cgroup>`, its parents, and `mount` itself, innermost first. A path
/// with `..` (a process outside its cgroup namespace's root) would leave the
/// mount, so it is reduced to the mount root alone.
fn cgroup_dirs(mount: &Path, cgroup: &str) -> Vec<PathBuf> {
    let relative = Path::new(cgroup.trim_start_matches('/'));
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let mut dirs = vec![mount.to_path_buf()];
    if safe {
        let mut dir = mount.to_path_buf();
        for c in relative.components() {
            dir.push(c);
            dirs.push(dir.clone());
        }
    }
    dirs.reverse();
    dirs
}

/// The cgroup v2 path: the `0::<path>` line of `/proc/self/cgroup`.
pub fn parse_cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup v1 path of the memory controller: the `<n>:<controllers>:<path>`
/// line whose comma-separated controllers include `memory`.
pub fn parse_cgroup_v1_memory_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| {
        let mut fields = l.splitn(3, ':');
        let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })
}

/// cgroup v2 `memory.max`: a byte count, or `max` for no limit (→ `None`).
pub fn parse_memory_max(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse().ok()
}

/// cgroup v1 `memory.limit_in_bytes`: a byte count, where "unlimited" is a
/// huge number (→ `None`, as is anything ≥ 2^60).
pub fn parse_limit_in_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|&n| n < ABSURD_LIMIT)
}

/// `MemTotal` from `/proc/meminfo`, in bytes (the file says kB, meaning KiB).
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu_time();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = process_cpu_time() - before;
        assert!(spent >= Duration::from_millis(20), "spent {spent:?}");
    }

    #[test]
    fn rss_is_plausible() {
        let rss = rss_bytes().unwrap();
        assert!(rss > 100 << 10 && rss < 64 << 30, "rss {rss}");
        assert!(memory_limit_bytes().unwrap() > rss);
    }

    #[test]
    fn parses_statm() {
        assert_eq!(
            parse_statm_resident_pages("5417 1280 896 269 0 1043 0\n"),
            Some(1280)
        );
        assert_eq!(parse_statm_resident_pages("5417"), None);
        assert_eq!(parse_statm_resident_pages(""), None);
    }

    const HYBRID: &str = "\
9:name=systemd:/
4:cpuset,memory:/process_api/ab43
1:cpu,cpuacct:/
0::/
";

    #[test]
    fn parses_proc_self_cgroup() {
        assert_eq!(
            parse_cgroup_v2_path("0::/system.slice/api.service\n"),
            Some("/system.slice/api.service")
        );
        assert_eq!(parse_cgroup_v2_path(HYBRID), Some("/"));
        assert_eq!(
            parse_cgroup_v1_memory_path(HYBRID),
            Some("/process_api/ab43")
        );
        assert_eq!(parse_cgroup_v1_memory_path("0::/a\n"), None);
        // `name=memory` is not the memory controller.
        assert_eq!(parse_cgroup_v1_memory_path("3:name=memory:/x\n"), None);
    }

    #[test]
    fn parses_limit_files() {
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_max("garbage"), None);
        assert_eq!(parse_limit_in_bytes("9223372036854771712\n"), None);
        assert_eq!(parse_limit_in_bytes("1073741824\n"), Some(1 << 30));
        assert_eq!(
            parse_meminfo_total("MemTotal:       24683656 kB\nMemFree: 1 kB\n"),
            Some(24683656 * 1024)
        );
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v2_takes_the_tightest_limit_along_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "system.slice/memory.max", "1073741824\n");
        write(root, "system.slice/api.service/memory.max", "max\n");
        let cgroup = "0::/system.slice/api.service\n";
        assert_eq!(cgroup_memory_limit(root, cgroup), Some(1 << 30));
        write(root, "system.slice/api.service/memory.max", "268435456\n");
        assert_eq!(cgroup_memory_limit(root, cgroup), Some(256 << 20));
    }

    #[test]
    fn v2_without_a_limit_is_none_and_does_not_fall_back_to_v1() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "a/memory.max", "max\n");
        write(root, "memory/memory.limit_in_bytes", "1048576\n");
        assert_eq!(cgroup_memory_limit(root, "0::/a\n"), None);
    }

    #[test]
    fn namespaced_container_reads_the_mount_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "memory.max", "2147483648\n");
        assert_eq!(cgroup_memory_limit(dir.path(), "0::/\n"), Some(2 << 30));
        // Outside the namespace root: the path is not followed out of the mount.
        assert_eq!(
            cgroup_memory_limit(dir.path(), "0::/../../x\n"),
            Some(2 << 30)
        );
    }

    #[test]
    fn hybrid_host_falls_back_to_v1() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(cgroup_memory_limit(root, HYBRID), None);
        write(
            root,
            "memory/process_api/ab43/memory.limit_in_bytes",
            "536870912\n",
        );
        assert_eq!(cgroup_memory_limit(root, HYBRID), Some(512 << 20));
        // A v1 path that does not exist under the mount (host path seen from a
        // container): the mount root still counts.
        write(root, "memory/memory.limit_in_bytes", "1048576\n");
        assert_eq!(
            cgroup_memory_limit(root, "4:memory:/elsewhere\n"),
            Some(1 << 20)
        );
    }

    #[test]
    fn no_cgroup_at_all_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_memory_limit(dir.path(), ""), None);
    }
}
