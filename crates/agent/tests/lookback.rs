//! Look-back: a CPU-threshold capture also covers the seconds before its
//! trigger. A thread starts burning CPU in a known function at time `t`;
//! the CPU threshold fires after `CHECKS` checks and profiles the next
//! second. With `lookback(10 min)` the profile holds the burn from its onset:
//! its CPU in the hot function is the burner's own CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`) over `[t, end of the profile]`, less what
//! sampling cannot see (derived below). Without look-back, the same run's
//! profile starts after the trigger and holds none of what came before.
//!
//! Then what look-back means for the rest of the process: the service's
//! own `CpuProfiler` is refused while it runs, the endpoint includes the
//! window only with `lookback=1`, and a forked child can profile on its own.
//!
//! The tests take turns (`ONE_AGENT`): each agent with look-back is the
//! process's one CPU sampler.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use firewatch_agent::cpu::CpuProfiler;
use firewatch_agent::{Agent, Error};
use firewatch_profile::Profile;

/// Held by each test: one CPU sampler per process.
static ONE_AGENT: Mutex<()> = Mutex::new(());

fn one_agent() -> std::sync::MutexGuard<'static, ()> {
    ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner())
}

const HOT: &str = "hot_function_for_the_lookback_test";
/// Consecutive checks over the threshold before it fires: long enough a
/// burn before the trigger that missing it shows.
const CHECKS: u32 = 10;
/// The CPU threshold, in % of one core: low, so that the burner trips it on
/// a machine loaded well beyond its cores (CI, and a 2-core machine at
/// load 10 gives a thread ~20% of a core; at 50% it never fired there),
/// and still far above what the idle test process uses.
const THRESHOLD_PERCENT: u32 = 10;
const CHECK_INTERVAL: Duration = Duration::from_millis(100);
const CAPTURE: Duration = Duration::from_secs(1);
/// The longest look-back: however long a loaded machine takes to trip the
/// threshold, the window reaches back to the burn's onset (the capture's
/// deadline is shorter).
const LOOKBACK: Duration = Duration::from_secs(600);
/// The settings' defaults, which the look-back run keeps.
const LOOKBACK_HZ: u32 = 19;
const CPU_HZ: u32 = 100;
/// One tick at the lowest common `CONFIG_HZ` (100): slack for the
/// timestamps the test compares (when a window starts, the burner's
/// records).
const TICK: Duration = Duration::from_millis(10);
/// How late a CPU timer's expiry may be noticed. The kernel checks a
/// thread's timers at a tick while that thread runs: a tick late on an idle
/// machine, tens of milliseconds of the thread's CPU when it shares its CPU
/// (with two busy loops beside it on the 2-vCPU machine, a 19 Hz signal
/// came after 37 ms more of the thread's CPU; `CpuProfiler` alone, so not
/// the look-back's doing). An expiry noticed late is lost if its timer is
/// deleted first. Allowance: one look-back period.
const LATE: Duration = Duration::from_nanos(1_000_000_000 / LOOKBACK_HZ as u64);

fn period(hz: u32) -> Duration {
    Duration::from_secs(1) / hz
}

/// What a switch of timers (from the look-back rate to the capture's, or
/// at the end) loses of a busy thread's CPU: what it had used towards the
/// old timer's next expiry, and an expiry not yet noticed.
fn lost_at_switch(hz: u32) -> Duration {
    period(hz) + LATE
}

/// (wall clock, the burner's thread CPU clock), every millisecond of its CPU.
type Record = Vec<(SystemTime, Duration)>;

#[inline(never)]
fn hot_function_for_the_lookback_test(stop: &AtomicBool, record: &Mutex<Record>) -> u64 {
    let mut x = 7u64;
    let mut next = Duration::ZERO;
    loop {
        let cpu = common::thread_cpu();
        if cpu >= next || stop.load(Ordering::Relaxed) {
            record.lock().unwrap().push((SystemTime::now(), cpu));
            next = cpu + Duration::from_millis(1);
            if stop.load(Ordering::Relaxed) {
                return x;
            }
        }
        for _ in 0..2_000 {
            x = black_box(x.rotate_left(5) ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(31);
        }
    }
}

/// The hot function's CPU in `profile` (every sample whose stack holds it),
/// in total and in samples labelled `firewatch_window=lookback`.
fn hot_cpu(profile: &Profile) -> (Duration, Duration) {
    cpu_of(profile, HOT)
}

/// [`hot_cpu`] for any function whose name holds `function`.
fn cpu_of(profile: &Profile, function_name: &str) -> (Duration, Duration) {
    let (mut all, mut lookback) = (0i64, 0i64);
    for sample in &profile.sample {
        let hot = sample.location_id.iter().any(|&id| {
            profile.location[(id - 1) as usize].line.iter().any(|line| {
                let function = &profile.function[(line.function_id - 1) as usize];
                profile.string(function.name).contains(function_name)
            })
        });
        if !hot {
            continue;
        }
        all += sample.value[1];
        if sample.label.iter().any(|l| {
            profile.string(l.key) == "firewatch_window" && profile.string(l.str) == "lookback"
        }) {
            lookback += sample.value[1];
        }
    }
    (
        Duration::from_nanos(all as u64),
        Duration::from_nanos(lookback as u64),
    )
}

fn wall(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos as u64)
}

/// The first CPU capture in `dir` whose window ends after `t`, waiting for
/// it (a capture the agent's own start-up might trip is passed over).
fn capture_after(dir: &Path, t: SystemTime) -> (PathBuf, Profile) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !name.starts_with('.') && name.contains(".cpu.") && name.ends_with(".pb.gz")
            })
            .filter(|p| !seen.contains(p))
            .collect();
        files.sort();
        for path in files {
            let profile = Profile::decode(&std::fs::read(&path).unwrap()).unwrap();
            if wall(profile.time_nanos + profile.duration_nanos) > t {
                return (path, profile);
            }
            seen.push(path);
        }
        assert!(
            Instant::now() < deadline,
            "no CPU capture after the burn began"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one run measured.
struct Run {
    profile: Profile,
    /// The burner's first record: when it began to burn.
    t: SystemTime,
    /// Where the profile's window starts.
    start: SystemTime,
    /// The burner's CPU over [t, end] and over [start, end].
    burned: Duration,
    burned_in_window: Duration,
    /// The hot function's CPU in the profile, all and look-back part.
    hot: Duration,
    hot_lookback: Duration,
    /// The burner's CPU over [t, end - CAPTURE]: at least what it burnt
    /// before the capture began (the capture ends at or after its start
    /// plus CAPTURE).
    before_capture: Duration,
    /// The burner's CPU over the least time the threshold takes to fire,
    /// [t, t + (CHECKS - 1) × CHECK_INTERVAL]: at most what it burnt before
    /// the capture began.
    before_trigger: Duration,
}

fn run(lookback: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(Record::new()));
    let (go, wait) = mpsc::channel::<()>();
    // Exists before the agent: its timer is armed when `start()` returns.
    let burner = {
        let (stop, record) = (stop.clone(), record.clone());
        std::thread::Builder::new()
            .name("burner".into())
            .spawn(move || {
                wait.recv().unwrap();
                hot_function_for_the_lookback_test(&stop, &record)
            })
            .unwrap()
    };
    let agent = Agent::builder()
        .output_dir(dir.path())
        // Not a disk-guard test: pass on a machine whose disk is over 90% full.
        .disk_usage_threshold_percent(100)
        .signal(None)
        .rss_threshold_percent(None)
        .cpu_threshold_percent(THRESHOLD_PERCENT)
        .cpu_threshold_checks(CHECKS)
        .check_interval(CHECK_INTERVAL)
        .cpu_duration(CAPTURE)
        .min_interval(Duration::ZERO)
        .lookback(lookback.then_some(LOOKBACK))
        .start()
        .unwrap();
    go.send(()).unwrap();
    let t = loop {
        if let Some(&(t, _)) = record.lock().unwrap().first() {
            break t;
        }
        std::thread::yield_now();
    };
    let (path, profile) = capture_after(dir.path(), t);
    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();
    drop(agent);
    let record = record.lock().unwrap().clone();
    eprintln!("{}: {:?}", path.display(), profile_comments(&profile));
    let (start, end) = (
        wall(profile.time_nanos),
        wall(profile.time_nanos + profile.duration_nanos),
    );
    let (hot, hot_lookback) = hot_cpu(&profile);
    Run {
        t,
        start,
        burned: common::cpu_at(&record, end) - record[0].1,
        burned_in_window: common::cpu_at(&record, end) - common::cpu_at(&record, start.max(t)),
        hot,
        hot_lookback,
        before_capture: common::cpu_at(&record, end - CAPTURE) - record[0].1,
        before_trigger: common::cpu_at(&record, t + CHECK_INTERVAL * (CHECKS - 1)) - record[0].1,
        profile,
    }
}

fn profile_comments(profile: &Profile) -> Vec<&str> {
    profile.comment.iter().map(|&c| profile.string(c)).collect()
}

#[test]
fn a_threshold_capture_with_lookback_covers_the_burn_from_its_onset() {
    let _turn = one_agent();
    // What sampling cannot see of the burner's CPU over [t, end]: the
    // switch to the capture's rate, and the end of the capture (nothing at
    // the start: the burner's timer counts from before it burns).
    let unseen = lost_at_switch(LOOKBACK_HZ) + lost_at_switch(CPU_HZ);

    let with = run(true);
    let ratio = with.hot.as_secs_f64() / with.burned.as_secs_f64();
    let bound = 1.0 - unseen.as_secs_f64() / with.burned.as_secs_f64();
    eprintln!(
        "look-back: hot {:?} of {:?} burned since the onset (ratio {ratio:.4}, derived bound \
         {bound:.4}); look-back part {:?}, burned before the trigger could fire {:?} and \
         before the capture ended less its length {:?}; window starts {:?} before the onset",
        with.hot,
        with.burned,
        with.hot_lookback,
        with.before_trigger,
        with.before_capture,
        with.t.duration_since(with.start).unwrap_or_default(),
    );
    assert!(
        with.start <= with.t,
        "the profile begins before the burn: {:?} > {:?}",
        with.start,
        with.t
    );
    assert!(
        ratio >= bound,
        "hot {:?} of {:?} burned: {ratio:.4} < {bound:.4}",
        with.hot,
        with.burned
    );
    // On an idle machine the burn is about 2 s of CPU, 12× what sampling
    // cannot see; under load it can be shorter, and the bound says how much.
    if with.burned >= unseen * 10 {
        assert!(ratio >= 0.9, "{ratio:.4}");
    } else {
        eprintln!(
            "a short burn ({:?}): the 90% check is the derived bound",
            with.burned
        );
    }
    // The look-back part holds what was burnt before the capture began,
    // less what the switch to the capture's rate loses, and nothing after.
    assert!(
        with.hot_lookback + lost_at_switch(LOOKBACK_HZ) >= with.before_trigger,
        "the look-back part holds the burn before the trigger: {:?} of {:?}",
        with.hot_lookback,
        with.before_trigger
    );
    assert!(
        with.hot_lookback <= with.before_capture + TICK,
        "the look-back part holds nothing of the capture's own time: {:?} > {:?}",
        with.hot_lookback,
        with.before_capture
    );
    let comments = profile_comments(&with.profile);
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("firewatch: look-back: ")),
        "{comments:?}"
    );

    let without = run(false);
    let plain_ratio = without.hot.as_secs_f64() / without.burned.as_secs_f64();
    eprintln!(
        "without: hot {:?} of {:?} burned since the onset (ratio {plain_ratio:.4}); {:?} burned \
         in its window, which starts {:?} after the onset",
        without.hot,
        without.burned,
        without.burned_in_window,
        without.start.duration_since(without.t).unwrap_or_default(),
    );
    // The threshold needs CHECKS checks, each a check interval apart, with
    // the process above it: the capture cannot begin sooner.
    assert!(
        without.start >= without.t + CHECK_INTERVAL * (CHECKS - 1),
        "begins {:?} after the burn",
        without.start.duration_since(without.t)
    );
    assert!(
        without.hot <= without.burned_in_window + period(CPU_HZ) + TICK,
        "nothing from before its window: {:?} > {:?}",
        without.hot,
        without.burned_in_window
    );
    assert_eq!(without.hot_lookback, Duration::ZERO);
    assert!(
        without
            .profile
            .sample
            .iter()
            .flat_map(|s| &s.label)
            .all(|l| without.profile.string(l.key) != "firewatch_window"),
        "a plain profile has no window label"
    );
    assert!(
        plain_ratio < ratio,
        "without look-back {plain_ratio:.4}, with {ratio:.4}"
    );
}

/// `GET path` on the endpoint: the status line and the body.
fn get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let status = String::from_utf8_lossy(&response[..end])
        .lines()
        .next()
        .unwrap()
        .to_string();
    (status, response[end + 4..].to_vec())
}

fn has_window_label(profile: &Profile) -> bool {
    profile
        .sample
        .iter()
        .flat_map(|s| &s.label)
        .any(|l| profile.string(l.key) == "firewatch_window")
}

#[test]
fn the_service_profiler_is_refused_and_the_endpoint_takes_the_window_when_asked() {
    let _turn = one_agent();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::builder()
        .output_dir(dir.path())
        // Not a disk-guard test: pass on a machine whose disk is over 90% full.
        .disk_usage_threshold_percent(100)
        .signal(None)
        .cpu_threshold_percent(None)
        .rss_threshold_percent(None)
        .lookback(LOOKBACK)
        .http_addr("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
        .start()
        .unwrap();
    assert!(
        matches!(CpuProfiler::start(100), Err(Error::Busy)),
        "the look-back sampler is the process's one sampler"
    );
    let addr = agent.http_addr().unwrap();
    // Burnt before the request: only the look-back window can hold it.
    let burn_began = SystemTime::now();
    let before = common::thread_cpu();
    common::burn_cpu(Duration::from_millis(400));
    let burnt = common::thread_cpu() - before;

    let (status, body) = get(addr, "/debug/pprof/profile?seconds=1&lookback=1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let with = Profile::decode(&body).unwrap();
    let (_, in_window) = cpu_of(&with, "burn_cpu_until");
    eprintln!("burnt {burnt:?} before the request; {in_window:?} of it in the window");
    // All of it but what the switch to the capture's rate loses.
    assert!(
        in_window + lost_at_switch(LOOKBACK_HZ) >= burnt,
        "{in_window:?} of {burnt:?} before the request"
    );
    assert!(
        wall(with.time_nanos) <= burn_began,
        "the window holds the burn"
    );
    assert!(profile_comments(&with)
        .iter()
        .any(|c| c.starts_with("firewatch: look-back: ")));

    let asked = SystemTime::now();
    let (status, body) = get(addr, "/debug/pprof/profile?seconds=1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let without = Profile::decode(&body).unwrap();
    assert!(!has_window_label(&without), "its own seconds only");
    assert!(wall(without.time_nanos) >= asked, "begins when asked");
    drop(agent);
    // The sampler is free again.
    CpuProfiler::start(100).unwrap().stop_raw().unwrap();
}

#[test]
fn a_child_forked_while_lookback_runs_profiles_on_its_own() {
    let _turn = one_agent();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::builder()
        .output_dir(dir.path())
        // Not a disk-guard test: pass on a machine whose disk is over 90% full.
        .disk_usage_threshold_percent(100)
        .signal(None)
        .cpu_threshold_percent(None)
        .rss_threshold_percent(None)
        .lookback(LOOKBACK)
        .start()
        .unwrap();
    common::burn_cpu(Duration::from_millis(100));
    // SAFETY: the child only profiles itself (the agent's state was reset
    // by its fork handler; glibc's malloc handles fork) and leaves with
    // _exit, without running the parent's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // 0: a profile of its own; 1: start refused; 2: stop failed; 3: no
        // samples; 4: a look-back part; 5: a panic.
        let code = std::panic::catch_unwind(|| {
            let Ok(profiler) = CpuProfiler::start(250) else {
                return 1;
            };
            common::burn_cpu(Duration::from_millis(100));
            match profiler.stop_raw() {
                Err(_) => 2,
                Ok(capture) if capture.samples == 0 => 3,
                Ok(capture) if capture.lookback.is_some() => 4,
                Ok(_) => 0,
            }
        });
        // SAFETY: ends the child without unwinding into the test harness.
        unsafe { libc::_exit(code.unwrap_or(5)) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: exit {} (see the codes above), signal {}",
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        if libc::WIFSIGNALED(status) {
            libc::WTERMSIG(status)
        } else {
            0
        }
    );
    // The parent's look-back sampler goes on (its comment says the capture
    // went through it; with the process idle it may hold no sample).
    let path = agent.capture_cpu(Duration::from_millis(300)).unwrap();
    let profile = Profile::decode(&std::fs::read(path).unwrap()).unwrap();
    let comments = profile_comments(&profile);
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("firewatch: look-back: ")),
        "{comments:?}"
    );
}
