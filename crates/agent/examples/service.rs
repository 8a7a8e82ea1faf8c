//! A small service that links the agent the way a user would.
//!
//! ```text
//! cargo run --release -p firewatch-agent --example service -- \
//!     [--dir DIR] [--seconds N] [--threads N] [--leak-kib-per-sec N]
//!     [--leak-stop-mib N] [--own-usr2 before|after] [--usr1 heap|cpu]
//!     [--http ADDR]
//! kill -USR2 <pid>   # writes DIR/service.heap.<time>.<pid>.<seq>.signal.pb.gz now
//!                    # and DIR/service.cpu.<time>.<pid>.<seq>.signal.pb.gz after 2 s
//! firewatch analyze DIR/service.cpu.*.pb.gz
//! ```
//!
//! Its worker threads spend most of their time in `checksum_orders`, so that
//! is the function a CPU profile should name. With `--leak-kib-per-sec`, a
//! thread keeps that many KiB per second forever in `remember_session`, so
//! that is the function a heap snapshot (and a diff of two) should name;
//! with `--leak-stop-mib N` it stops after N MiB and says so (`service:
//! leak stopped at N MiB`), so the service's own memory stays still while
//! a capture's is measured.
//! With `--own-usr2`, the service installs a `SIGUSR2` handler of its own
//! (raw `sigaction`) before or after starting the agent, and at exit writes
//! how many signals it saw into `DIR/own-usr2.count`. With `--usr1 heap`
//! (or `cpu`), `SIGUSR1` asks the agent for that one capture
//! (`Agent::capture_heap`, `Agent::capture_cpu` of 1 s), as a service's
//! admin endpoint would, and the service says `service: usr1 capture
//! wrote PATH`.
//!
//! With `--http 127.0.0.1:6060` (port 0: any free port), the agent serves
//! `/debug/pprof/` there (`http_addr`; a token comes from
//! `FIREWATCH_HTTP_TOKEN`), and the ready line ends with ` http=ADDR`, the
//! address bound: `go tool pprof http://ADDR/debug/pprof/profile?seconds=5`.
//!
//! It stops cleanly (dropping the agent) after `--seconds` or on `SIGTERM` /
//! `SIGINT`, as a service does on a graceful shutdown; the leaking thread
//! says on stderr each time it has kept another 4 MiB (`service: leaked N
//! MiB`), so whoever drives it can wait for the leak instead of guessing.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator line a service adds for heap snapshots.
#[global_allocator]
static ALLOC: firewatch_agent::SamplingAllocator<std::alloc::System> =
    firewatch_agent::SamplingAllocator::new(std::alloc::System);

/// The leak: session records nobody ever removes.
#[inline(never)]
fn remember_session(sessions: &mut Vec<Vec<u8>>, id: u64) {
    // 512-byte records, like small cache entries: sampled one in ~1000.
    sessions.push(black_box(vec![id as u8; 512]));
}

/// Signals seen by the service's own `SIGUSR2` handler.
static OWN_USR2: AtomicUsize = AtomicUsize::new(0);

/// Set by `SIGTERM` / `SIGINT`: shut down gracefully.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Set by `SIGUSR1` with `--usr1`: one capture of the kind asked.
static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn usr1(_: libc::c_int) {
    USR1.store(true, Ordering::Relaxed);
}

extern "C" fn shutdown(_: libc::c_int) {
    SHUTDOWN.store(true, Ordering::Relaxed);
}

/// A graceful-shutdown handler for `signal`, as a service has one.
fn on_signal(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a valid handler that only touches an atomic, empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

extern "C" fn own_usr2(_: libc::c_int) {
    OWN_USR2.fetch_add(1, Ordering::Relaxed);
}

/// What a service that uses `SIGUSR2` itself does: a plain `sigaction`.
fn install_own_usr2() {
    on_signal(libc::SIGUSR2, own_usr2);
}

#[inline(never)]
fn checksum_orders(orders: &[u64]) -> u64 {
    orders.iter().fold(0xcbf2_9ce4_8422_2325, |h, &o| {
        (h ^ o).wrapping_mul(0x100_0000_01b3)
    })
}

#[inline(never)]
fn handle_request(i: u64) -> u64 {
    let orders: Vec<u64> = (0..4096).map(|n| n * 31 + i).collect();
    let mut h = 0;
    for _ in 0..16 {
        h ^= checksum_orders(black_box(&orders));
    }
    h
}

fn main() {
    env_logger_lite();
    let mut args = std::env::args().skip(1);
    let (mut dir, mut seconds, mut threads, mut leak_kib) = (None, 600u64, 2usize, 0u64);
    let mut own_usr2 = None;
    let (mut leak_stop_mib, mut usr1_kind, mut http) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next(),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds),
            "--threads" => threads = args.next().and_then(|s| s.parse().ok()).unwrap_or(threads),
            "--own-usr2" => own_usr2 = args.next(),
            "--leak-stop-mib" => leak_stop_mib = args.next().and_then(|s| s.parse::<u64>().ok()),
            "--usr1" => usr1_kind = args.next(),
            "--http" => {
                let addr = args.next().unwrap_or_default();
                let parsed: std::net::SocketAddr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("--http {addr:?}: {e}"));
                http = Some(parsed);
            }
            "--leak-kib-per-sec" => {
                leak_kib = args.next().and_then(|s| s.parse().ok()).unwrap_or(0)
            }
            other => panic!("unknown argument {other}"),
        }
    }

    on_signal(libc::SIGTERM, shutdown);
    on_signal(libc::SIGINT, shutdown);
    match usr1_kind.as_deref() {
        None => {}
        Some("heap" | "cpu") => on_signal(libc::SIGUSR1, usr1),
        Some(other) => panic!("--usr1 {other}: expected heap or cpu"),
    }

    // The two lines a service adds (plus its choice of settings).
    let mut builder = firewatch_agent::Agent::builder()
        .service_name("service")
        .cpu_duration(Duration::from_secs(2));
    if let Some(dir) = &dir {
        builder = builder.output_dir(dir);
    }
    if let Some(addr) = http {
        builder = builder.http_addr(addr);
    }
    if own_usr2.as_deref() == Some("before") {
        install_own_usr2();
    }
    let agent = builder.start().expect("starting the firewatch agent");
    if own_usr2.as_deref() == Some("after") {
        install_own_usr2();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("worker-{t}"))
                .spawn(move || {
                    let mut i = t as u64;
                    while !stop.load(Ordering::Relaxed) {
                        black_box(handle_request(i));
                        i += 1;
                    }
                })
                .unwrap()
        })
        .collect();
    let leaker = (leak_kib > 0).then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sessions = Vec::new();
            let mut id = 0u64;
            // Ten rounds a second, each keeping a tenth of the rate.
            const REPORT_EVERY: u64 = 4 << 20;
            let mut leaking = true;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..leak_kib * 1024 / 512 / 10 {
                    if !leaking {
                        break;
                    }
                    remember_session(&mut sessions, id);
                    id += 1;
                    if (id * 512) % REPORT_EVERY == 0 {
                        eprintln!("service: leaked {} MiB", (id * 512) >> 20);
                    }
                    if leak_stop_mib.is_some_and(|mib| id * 512 >= mib << 20) {
                        leaking = false;
                        eprintln!("service: leak stopped at {} MiB", (id * 512) >> 20);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            sessions.len()
        })
    });
    let serving = agent
        .http_addr()
        .map_or_else(String::new, |addr| format!(" http={addr}"));
    println!(
        "ready pid={} dir={}{serving}",
        std::process::id(),
        agent.output_dir().display()
    );
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until && !SHUTDOWN.load(Ordering::Relaxed) {
        if USR1.swap(false, Ordering::Relaxed) {
            let written = match usr1_kind.as_deref() {
                Some("cpu") => agent.capture_cpu(Duration::from_secs(1)),
                _ => agent.capture_heap(),
            };
            match written {
                Ok(path) => eprintln!("service: usr1 capture wrote {}", path.display()),
                Err(e) => eprintln!("service: usr1 capture failed: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    if let Some(leaker) = leaker {
        leaker.join().unwrap();
    }
    if own_usr2.is_some() {
        let count = OWN_USR2.load(Ordering::Relaxed).to_string();
        std::fs::write(agent.output_dir().join("own-usr2.count"), count).unwrap();
    }
    drop(agent);
}

/// Prints the agent's log lines on stderr (a real service uses its own
/// logger): `info` and above, or `debug` with `RUST_LOG=debug`.
fn env_logger_lite() {
    struct Stderr(log::LevelFilter);
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= self.0
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!("{} {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("RUST_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        _ => log::LevelFilter::Info,
    };
    let logger: &'static Stderr = Box::leak(Box::new(Stderr(level)));
    let _ = log::set_logger(logger).map(|()| log::set_max_level(level));
}
