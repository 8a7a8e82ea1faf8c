//! What the end-to-end tests share: the agent's example service as a child
//! process, driven the way an on-call engineer drives it, and waits for
//! *events* (a log line, a file) rather than for a fixed time.
//!
//! Every wait has a deadline, [`HANG`], that only catches a hang: on a busy
//! machine everything takes longer, and nothing here asserts how long.

#![allow(dead_code)] // each test file uses part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

/// How long a wait may take before the test calls it a hang.
pub const HANG: Duration = Duration::from_secs(180);

/// `target/<profile>`, from this test's own path (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Builds `args` (a package's example or binary) once per test process, in
/// this test's profile: testing one package alone would not (re)build
/// another package's targets.
fn build(once: &'static Once, args: &[&str]) {
    once.call_once(|| {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args(["build", "-q"]).args(args);
        if profile_dir().ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cargo build {args:?}");
    });
}

/// The agent's example service (`crates/agent/examples/service.rs`).
pub fn service_binary() -> PathBuf {
    static BUILT: Once = Once::new();
    build(&BUILT, &["-p", "firewatch-agent", "--example", "service"]);
    profile_dir().join("examples/service")
}

/// The analyzer's binary, `firewatch`.
pub fn firewatch_binary() -> PathBuf {
    static BUILT: Once = Once::new();
    build(&BUILT, &["-p", "firewatch-analyzer", "--bin", "firewatch"]);
    profile_dir().join("firewatch")
}

/// `examples/jemalloc-dump.rs`: a program on tikv-jemallocator with
/// jemalloc's profiling compiled in (`--features jemalloc-bench`, which
/// builds jemalloc from C: needs a C compiler and make).
pub fn jemalloc_dump_binary() -> PathBuf {
    static BUILT: Once = Once::new();
    build(
        &BUILT,
        &[
            "-p",
            "firewatch",
            "--example",
            "jemalloc-dump",
            "--features",
            "jemalloc-bench",
        ],
    );
    profile_dir().join("examples/jemalloc-dump")
}

/// Lines a child wrote to stderr, as they arrive.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    closed: bool,
}

/// The example service, running.
pub struct Service {
    child: Child,
    pub pid: i32,
    log: Arc<Log>,
}

impl Service {
    /// Starts the service writing to `dir` and returns once it is ready
    /// (the agent started, its signal handler installed). `args` come after
    /// the defaults, so they override them; `env` likewise. The CPU
    /// threshold is off unless `env` sets it, so no capture happens that
    /// the test did not ask for.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        Service::start_with_limit(dir, args, env, None)
    }

    /// [`Service::start`] under an address-space limit (`ulimit -v`) of
    /// `limit` bytes, when given.
    pub fn start_with_limit(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Option<u64>,
    ) -> Service {
        let mut cmd = Command::new(service_binary());
        cmd.args(["--dir", dir.to_str().unwrap()]);
        Service::spawn(cmd, args, env, limit)
    }

    /// [`Service::start`] with another build of the service, `binary`.
    pub fn start_binary(binary: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(binary);
        cmd.args(["--dir", dir.to_str().unwrap()]);
        Service::spawn(cmd, args, env, None)
    }

    /// The service from `binary`, run as user `uid` (group `uid`), with no
    /// `--dir` (the default directory under `tmpdir`, its `TMPDIR`).
    pub fn start_as(binary: &Path, uid: u32, tmpdir: &Path, env: &[(&str, &str)]) -> Service {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(binary);
        cmd.uid(uid).gid(uid).env("TMPDIR", tmpdir);
        Service::spawn(cmd, &[], env, None)
    }

    fn spawn(mut cmd: Command, args: &[&str], env: &[(&str, &str)], limit: Option<u64>) -> Service {
        if let Some(limit) = limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe, as code between fork
            // and exec must be.
            unsafe {
                cmd.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd.args(["--seconds", "600"])
            .args(args)
            .env("FIREWATCH_CPU_DURATION", "1s")
            .env("FIREWATCH_CPU_THRESHOLD_PERCENT", "off")
            // The disk guard's percentage would make these tests depend on
            // how full the machine's disk is; the fit check stays on (the
            // full-filesystem test uses it), and a test may set its own.
            .env("FIREWATCH_DISK_USAGE_THRESHOLD_PERCENT", "100")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[service {pid}] {line}");
                sink.state.lock().unwrap().lines.push(line);
                sink.changed.notify_all();
            }
            sink.state.lock().unwrap().closed = true;
            sink.changed.notify_all();
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready pid="), "{line:?}");
        // Keep reading, so a later line never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Service { child, pid, log }
    }

    /// The service's address-space size now (`VmSize`), in bytes.
    pub fn address_space(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    /// Sends `SIGUSR2`: a capture request.
    pub fn signal(&self) {
        self.kill(libc::SIGUSR2);
    }

    /// Sends `SIGTERM`: the service shuts down gracefully (drops the agent).
    pub fn terminate(&self) {
        self.kill(libc::SIGTERM);
    }

    fn kill(&self, signal: i32) {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the service to exit; its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let until = Instant::now() + HANG;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the service did not exit within {HANG:?}");
    }

    /// `SIGTERM`, then waits for a clean exit (code 0).
    pub fn shut_down(&mut self) {
        self.terminate();
        assert_eq!(self.wait_exit(), Some(0), "a clean exit on SIGTERM");
    }

    /// How many lines so far contain every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        let state = self.log.state.lock().unwrap();
        state.lines.iter().filter(|l| matches(l, parts)).count()
    }

    /// Waits until `n` lines contain every one of `parts`; panics (showing
    /// the log) if the service exits first or after [`HANG`].
    pub fn wait_for_lines(&self, parts: &[&str], n: usize) {
        self.wait_until(&format!("{n} line(s) with {parts:?}"), |lines| {
            lines.iter().filter(|l| matches(l, parts)).count() >= n
        });
    }

    /// Waits for a line containing every one of `parts` and returns the
    /// first such line.
    pub fn wait_for_line(&self, parts: &[&str]) -> String {
        self.wait_for_lines(parts, 1);
        let state = self.log.state.lock().unwrap();
        state
            .lines
            .iter()
            .find(|l| matches(l, parts))
            .cloned()
            .unwrap()
    }

    /// Waits until the leaking thread reports at least `mib` MiB kept.
    pub fn wait_for_leak(&self, mib: u64) {
        self.wait_until(&format!("a leak of {mib} MiB"), |lines| {
            leaked_mib(lines) >= mib
        });
    }

    /// The leak reported so far, in MiB (a lower bound: reported every 4 MiB).
    pub fn leaked_mib(&self) -> u64 {
        leaked_mib(&self.log.state.lock().unwrap().lines)
    }

    fn wait_until(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let until = Instant::now() + HANG;
        let mut state = self.log.state.lock().unwrap();
        loop {
            if done(&state.lines) {
                return;
            }
            let now = Instant::now();
            if state.closed || now >= until {
                let why = if state.closed {
                    "the service exited"
                } else {
                    "hang"
                };
                panic!(
                    "waiting for {what}: {why}; log:\n{}",
                    state.lines.join("\n")
                );
            }
            state = self.log.changed.wait_timeout(state, until - now).unwrap().0;
        }
    }
}

fn matches(line: &str, parts: &[&str]) -> bool {
    parts.iter().all(|p| line.contains(p))
}

fn leaked_mib(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("service: leaked ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done()` holds (polling); false after [`HANG`].
pub fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + HANG;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("firewatch-e2e")
        .tempdir()
        .unwrap()
}

/// Finished captures in `dir` (`*.pb.gz`), sorted by name.
pub fn captures(dir: &Path) -> Vec<PathBuf> {
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

/// Captures of one kind (`cpu` or `heap`), sorted by name (= by time).
pub fn captures_of(dir: &Path, kind: &str) -> Vec<PathBuf> {
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

/// Everything in `dir` that is not a finished capture (temp files, ballast).
pub fn other_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".pb.gz"))
        .collect()
}

/// CPU time the calling thread has used: work measured in it takes longer
/// on a busy machine but measures the same.
pub fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
        0
    );
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Whether `go` runs (saying so when it does not); with
/// `FIREWATCH_REQUIRE_GO` set (CI), its absence fails.
#[allow(unused_imports)] // as `dead_code` above: not every test file uses it
pub use firewatch::go_available;

/// `go tool pprof ARGS…`'s output; the command must succeed. Times print in
/// UTC, whatever the machine's zone.
pub fn go_pprof(args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go tool pprof {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("go tool pprof prints UTF-8")
}

/// The first function listed in a `-top` table (highest flat).
pub fn top_function(table: &str) -> String {
    table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
