//! Helpers shared by the custom-harness benchmarks (`cpu_accuracy`,
//! `cpu_overhead`, `heap_overhead`, `heap_accuracy`, `heap_snapshot`):
//! process CPU time, environment knobs, machine description, a parked thread
//! pool, small statistics, memory readings and child processes.

// Each harness uses a different subset.
#![allow(dead_code)]

use std::hint::black_box;
use std::io::Read;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error>;

/// User + system CPU time of the whole process so far (`getrusage(RUSAGE_SELF)`).
pub fn process_cpu_ns() -> Result<u64, BoxError> {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Err(format!("getrusage: {}", std::io::Error::last_os_error()).into());
        }
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// An unsigned integer from the environment, or `default` when unset.
pub fn env_u64(name: &str, default: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("{name}={v:?}: {e}").into()),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{name}: {e}").into()),
    }
}

/// How long to wait, idle, between starting a profiler and releasing the
/// workload. firewatch's profiler thread lists threads at 0, 20 and 40 ms
/// after start (then every 100 ms); 60 ms lets it arm the workers' timers
/// before they burn CPU, as it would for a service's long-lived threads.
pub fn settle() -> Result<Duration, BoxError> {
    Ok(Duration::from_millis(env_u64("SETTLE_MS", 60)?))
}

/// Threads created up front and parked on a barrier (using no CPU), so that
/// spawning them is outside the measured window. `release` lets them run
/// and joins them.
pub struct Parked<T> {
    barrier: Arc<Barrier>,
    handles: Vec<JoinHandle<T>>,
}

impl<T: Send + 'static> Parked<T> {
    pub fn spawn<F>(threads: usize, body: F) -> Result<Parked<T>, BoxError>
    where
        F: Fn(usize) -> T + Send + Sync + 'static,
    {
        let barrier = Arc::new(Barrier::new(threads + 1));
        let body = Arc::new(body);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let barrier = barrier.clone();
            let body = body.clone();
            let handle = std::thread::Builder::new()
                .name(format!("busy-{i}"))
                .spawn(move || {
                    barrier.wait();
                    body(i)
                })?;
            handles.push(handle);
        }
        Ok(Parked { barrier, handles })
    }

    /// Releases the threads and waits for all of them.
    pub fn release_and_join(self) -> Result<Vec<T>, BoxError> {
        self.barrier.wait();
        self.handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "a workload thread panicked".into()))
            .collect()
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// `CONFIG_HZ=` from `/boot/config-<release>` or `/proc/config.gz`, with the
/// file it came from.
pub fn config_hz(release: &str) -> Option<(String, String)> {
    let find = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("CONFIG_HZ="))
            .map(|v| v.trim().to_string())
    };
    let boot = format!("/boot/config-{release}");
    if let Ok(text) = std::fs::read_to_string(&boot) {
        if let Some(hz) = find(&text) {
            return Some((hz, boot));
        }
    }
    let bytes = std::fs::read("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .ok()?;
    find(&text).map(|hz| (hz, "/proc/config.gz".into()))
}

/// Markdown bullet list describing the machine.
pub fn machine_info() -> String {
    // SAFETY: sysconf has no preconditions.
    let (online, clk_tck) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    let available = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let release = kernel_release();
    let hz = match config_hz(&release) {
        Some((hz, source)) => format!("{hz} (from {source})"),
        None => "not determinable (no /boot/config-* or /proc/config.gz)".into(),
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "- CPUs: nproc (available_parallelism) = {available}, online = {online}\n\
         - CPU model: {model}\n\
         - kernel: {release}\n\
         - CONFIG_HZ: {hz}\n\
         - getconf CLK_TCK = {clk_tck} (USER_HZ, the unit of /proc times; not CONFIG_HZ)\n\
         - load average at start (1/5/15 min): {load} (other jobs on the machine add noise)\n"
    )
}

/// Stops a pprof-rs profile and returns its sample count. Dropping the guard
/// stops pprof-rs's timer (and sets SIGPROF to SIG_IGN).
pub fn finish_pprof_rs(guard: pprof::ProfilerGuard<'static>) -> Result<u64, BoxError> {
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("pprof-rs report: {e}"))?;
    drop(guard);
    Ok(report.data.values().map(|&c| c.max(0) as u64).sum())
}

/// Resident set size now, in bytes (`/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Peak resident set size of this process so far, in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS
/// (`echo 5 > /proc/self/clear_refs`, Linux ≥ 4.0). `false` if refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Bytes in use in glibc malloc (`mallinfo2`: `uordblks + hblkhd`, chunk
/// overheads included), over all arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn glibc_in_use_bytes() -> u64 {
    // SAFETY: mallinfo2 has no preconditions (it takes the arena locks).
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Runs this benchmark binary again as a child with `env` added, standard
/// error passed through, and returns the fields of its last line that
/// starts with `RESULT ` (`key=value` pairs separated by spaces).
pub fn run_child(
    env: &[(&str, String)],
) -> Result<std::collections::HashMap<String, String>, BoxError> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("child {env:?} failed: {}\n{stdout}", output.status).into());
    }
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("child {env:?} printed no RESULT line:\n{stdout}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// A field of [`run_child`]'s result, parsed.
pub fn field<T: std::str::FromStr>(
    fields: &std::collections::HashMap<String, String>,
    key: &str,
) -> Result<T, BoxError>
where
    T::Err: std::fmt::Display,
{
    let v = fields
        .get(key)
        .ok_or_else(|| format!("child result has no {key}"))?;
    v.parse()
        .map_err(|e| format!("child result {key}={v}: {e}").into())
}

#[inline(always)]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A block of hashing: a few frames deep, so stacks are not trivial.
#[inline(never)]
pub fn mix_block(state: &mut u64, n: u64) -> u64 {
    let mut acc = 0u64;
    for _ in 0..n {
        *state = splitmix64(black_box(*state));
        acc = acc.rotate_left(5) ^ *state;
    }
    acc
}

/// The CPU benchmarks' workload: `iterations` splitmix64 rounds in blocks
/// of 4,096, a few frames deep.
#[inline(never)]
pub fn worker(seed: u64, iterations: u64) -> u64 {
    let mut state = seed;
    let mut acc = 0u64;
    let mut left = iterations;
    while left > 0 {
        let n = left.min(4096);
        acc = acc.wrapping_add(mix_block(&mut state, n));
        left -= n;
    }
    acc
}

/// Iterations per thread for about `target` of wall time, from the fastest
/// of a few single-threaded probes.
pub fn calibrate(target: Duration) -> u64 {
    const PROBE: u64 = 4_000_000;
    let best = (0..5)
        .map(|i| {
            let t = Instant::now();
            black_box(worker(i, PROBE));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    ((target.as_secs_f64() / best) * PROBE as f64) as u64
}
