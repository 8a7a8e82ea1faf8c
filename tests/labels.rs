//! Labels end to end (issue 13), in an example multi-threaded tokio service
//! run in this process, with the sampling allocator as its global allocator:
//!
//! - per-endpoint CPU in a CPU profile against the CPU each handler used,
//!   measured around it with the thread CPU clock (the independent
//!   reference), with randomized request costs so no fixed cost can alias
//!   with the timers, and enough samples that the tolerance is three
//!   standard deviations of a count;
//! - `go tool pprof -tags` and `-tagfocus` read the labels of our files, and
//!   its totals, and `firewatch analyze --tag-focus`'s, agree with the
//!   labelled totals we compute;
//! - a leak made under one endpoint's label carries it in a heap snapshot
//!   taken after the requests are over;
//! - a task that sleeps and wakes on another worker keeps its labels.
//!
//! Waits are for events (enough CPU measured, a thread change), with
//! [`common::HANG`] only to catch a hang; nothing asserts a duration.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use firewatch_agent::cpu::CpuProfiler;
use firewatch_agent::labels::LabelsExt;
use firewatch_agent::SamplingAllocator;
use firewatch_profile::Profile;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A small interval so the leak gets hundreds of samples.
#[global_allocator]
static ALLOC: SamplingAllocator<std::alloc::System> =
    SamplingAllocator::with_sample_interval(std::alloc::System, 32 << 10);

/// One CPU profile at a time per process; the tests also measure CPU.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Requested rate: the kernel delivers up to its tick rate, the rest is in
/// each sample's overrun weight.
const HZ: u32 = 1000;

const ENDPOINTS: [&str; 2] = ["/a", "/b"];
/// Mean work units of a request to each endpoint (uniform on 0.2..1.8 of
/// it): about a millisecond of CPU in a debug build, so what the label
/// covers besides the timed work (the wrapper, `yield_now`, the clock
/// reads themselves, a few microseconds) stays well under 1%.
const MEAN_UNITS: [u64; 2] = [150, 120];

fn thread_cpu_ns() -> u64 {
    common::thread_cpu().as_nanos() as u64
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

/// A tokio runtime whose workers have names of their own (the profile's
/// `thread` label tells them apart).
fn runtime(workers: usize, prefix: &'static str) -> tokio::runtime::Runtime {
    let next = Arc::new(AtomicUsize::new(0));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(move || format!("{prefix}-{}", next.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .build()
        .unwrap()
}

/// CPU work: `units` × 1,000 rounds of a mixing function.
#[inline(never)]
fn endpoint_work(units: u64) -> u64 {
    let mut x = units | 1;
    for _ in 0..units * 1000 {
        x = std::hint::black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0x5555);
    }
    x
}

/// What the service measured itself.
#[derive(Default)]
struct Measured {
    /// Per endpoint, thread CPU used inside the handlers.
    cpu_ns: [AtomicU64; 2],
    requests: [AtomicU64; 2],
    /// Bytes the leak handler kept.
    leaked: AtomicU64,
}

/// Blocks kept by `/leak`.
static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A CPU endpoint: its work in two parts around an `await`, each part
/// timed with the thread CPU clock (no `await` inside a part, so the part
/// runs on one thread).
async fn cpu_handler(endpoint: usize, units: u64, measured: Arc<Measured>) {
    for part in [units / 2, units - units / 2] {
        let start = thread_cpu_ns();
        std::hint::black_box(endpoint_work(part));
        let used = thread_cpu_ns() - start;
        measured.cpu_ns[endpoint].fetch_add(used, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    measured.requests[endpoint].fetch_add(1, Ordering::Relaxed);
}

/// Keeps `bytes` in blocks of random sizes (1 to 64 KiB).
#[inline(never)]
fn leak_blocks(bytes: u64, seed: u64) -> u64 {
    let mut rng = seed | 1;
    let mut kept = 0;
    let mut blocks = Vec::new();
    while kept < bytes {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let size = 1024 + (rng % (63 * 1024)) as usize;
        let block = vec![(rng & 0xFF) as u8; size];
        kept += block.capacity() as u64;
        blocks.push(block);
    }
    LEAKED.lock().unwrap().extend(blocks);
    kept
}

async fn leak_handler(bytes: u64, seed: u64, measured: Arc<Measured>) {
    tokio::task::yield_now().await;
    let kept = leak_blocks(bytes, seed);
    measured.leaked.fetch_add(kept, Ordering::Relaxed);
}

/// One connection: a request per line, `<endpoint> <argument>`, answered
/// with `ok`. Each handler runs under its endpoint's label.
async fn connection(socket: tokio::net::TcpStream, measured: Arc<Measured>) {
    // Small requests and answers: without this, Nagle's algorithm and
    // delayed acknowledgements leave the service idle 40 ms per request.
    let _ = socket.set_nodelay(true);
    let (read, mut write) = socket.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut parts = line.split_whitespace();
        let (Some(path), Some(arg)) = (parts.next(), parts.next()) else {
            return;
        };
        let arg: u64 = arg.parse().unwrap_or(0);
        let label = [("endpoint", path)];
        match path {
            "/leak" => {
                let seed = arg ^ 0xABCD;
                leak_handler(arg, seed, measured.clone())
                    .with_labels(label)
                    .await
            }
            _ => {
                let endpoint = ENDPOINTS.iter().position(|e| *e == path).unwrap_or(0);
                cpu_handler(endpoint, arg, measured.clone())
                    .with_labels(label)
                    .await
            }
        }
        if write.write_all(b"ok\n").await.is_err() {
            return;
        }
    }
}

/// The example service: a multi-threaded runtime serving on a local port.
struct Service {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    measured: Arc<Measured>,
}

impl Service {
    fn start() -> Service {
        let runtime = runtime(2, "svc-worker");
        let measured = Arc::new(Measured::default());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let m = measured.clone();
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(connection(socket, m.clone()));
            }
        });
        Service {
            runtime,
            addr,
            measured,
        }
    }
}

/// A client: sends requests on one connection, waiting for each answer.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream: BufReader::new(stream),
        }
    }

    fn request(&mut self, path: &str, arg: u64) {
        writeln!(self.stream.get_mut(), "{path} {arg}").unwrap();
        let mut answer = String::new();
        self.stream.read_line(&mut answer).unwrap();
        assert_eq!(answer, "ok\n");
    }
}

/// The load generator: `clients` threads sending requests to random
/// endpoints with random costs until `stop`.
fn load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut rng = 0x1234_5678_9ABC_DEF1u64 ^ (c as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let endpoint = (rng >> 40) as usize % 2;
                    // Uniform on 0.2..1.8 of the mean.
                    let mean = MEAN_UNITS[endpoint];
                    let units = mean / 5 + rng % (mean * 8 / 5);
                    client.request(ENDPOINTS[endpoint], units);
                }
            })
        })
        .collect()
}

/// Sums of the two values (`samples/count`, `cpu/nanoseconds` or the heap's)
/// of the samples whose labels satisfy `keep`.
fn labelled_totals(
    profile: &Profile,
    index: usize,
    keep: impl Fn(&HashMap<&str, &str>) -> bool,
) -> (i64, i64) {
    let mut totals = (0i64, 0i64);
    for s in &profile.sample {
        let labels: HashMap<&str, &str> = s
            .label
            .iter()
            .map(|l| (profile.string(l.key), profile.string(l.str)))
            .collect();
        if keep(&labels) {
            totals.0 += s.value[0];
            totals.1 += s.value[index];
        }
    }
    totals
}

/// Whether a sample's stack has a function whose name contains `name`.
fn stack_has(profile: &Profile, sample: &firewatch_profile::Sample, name: &str) -> bool {
    sample.location_id.iter().any(|&id| {
        profile.location[id as usize - 1].line.iter().any(|line| {
            profile
                .string(profile.function[line.function_id as usize - 1].name)
                .contains(name)
        })
    })
}

fn write_profile(profile: &Profile, path: &Path) {
    std::fs::write(path, profile.encode_gzip()).unwrap();
}

/// What the samples `go tool pprof -top` kept add up to: with `-trim=false`
/// every node is listed, so its "Showing nodes accounting for N" is the sum
/// of the samples its filters (`-tagfocus`) kept, in the unit `-unit` asks.
fn pprof_kept(args: &[&str]) -> f64 {
    let out = common::go_pprof(&[&["-top", "-trim=false"], args].concat());
    let line = out
        .lines()
        .find(|l| l.contains("Showing nodes accounting for"))
        .unwrap_or_else(|| panic!("no total in:\n{out}"));
    let kept = line
        .split("accounting for ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap_or_else(|| panic!("no total in {line}"));
    let digits = kept.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    digits
        .parse()
        .unwrap_or_else(|_| panic!("total {kept} in {line}"))
}

/// The `cpu` the samples `firewatch analyze --format json` keeps with
/// `filter` add up to: the flat values of every function (`--top 0`; its
/// `total` is the whole profile's, as pprof's "of N total").
fn firewatch_kept(file: &str, filter: &str) -> i64 {
    let out = std::process::Command::new(common::firewatch_binary())
        .args([
            "analyze",
            "--format",
            "json",
            "--top",
            "0",
            "--sample-index",
            "cpu",
            filter,
            file,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "firewatch analyze {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flat"].as_i64().unwrap())
        .sum()
}

/// Acceptance (a): per-endpoint CPU in the profile within ±5% of what the
/// handlers measured, with at least 3,600 samples per endpoint (at that
/// count three standard deviations of a Poisson count are 5%); `go tool
/// pprof -tagfocus endpoint=/a` and `firewatch analyze --tag-focus
/// endpoint=/a` keep exactly the samples labelled so.
#[test]
fn per_endpoint_cpu_in_the_profile_matches_the_thread_cpu_clock() {
    let _serial = serial();
    let tolerance = 0.05;
    let required = 2_000f64.max((3.0 / tolerance) * (3.0 / tolerance)) as i64;
    let service = Service::start();
    let dir = common::tempdir();
    let deadline = Instant::now() + common::HANG * 3;
    // Per endpoint over every round: (samples, profile CPU ns, measured ns).
    let mut totals = [(0i64, 0i64, 0u64); 2];
    let mut target_ns = 1_500_000_000u64;
    let mut last = None;
    for round in 0.. {
        for e in 0..2 {
            service.measured.cpu_ns[e].store(0, Ordering::Relaxed);
        }
        let profiler = CpuProfiler::start(HZ).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load(service.addr, 3, stop.clone());
        while ENDPOINTS
            .iter()
            .enumerate()
            .any(|(e, _)| service.measured.cpu_ns[e].load(Ordering::Relaxed) < target_ns)
        {
            assert!(Instant::now() < deadline, "hang: {totals:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        // Every handler timed this round ran inside the profile's window.
        let profile = profiler.stop().unwrap();
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            let (samples, cpu) =
                labelled_totals(&profile, 1, |l| l.get("endpoint") == Some(endpoint));
            totals[e].0 += samples;
            totals[e].1 += cpu;
            totals[e].2 += service.measured.cpu_ns[e].load(Ordering::Relaxed);
        }
        eprintln!("round {round}: {totals:?}");
        let file = dir.path().join(format!("cpu-{round}.pb.gz"));
        write_profile(&profile, &file);
        last = Some((profile, file));
        let fewest = totals.iter().map(|t| t.0).min().unwrap();
        if fewest >= required {
            break;
        }
        // The next round runs until the fewest reaches the count, from the
        // rate seen so far.
        let rate = fewest.max(1) as f64 / totals.iter().map(|t| t.2).min().unwrap().max(1) as f64;
        target_ns = (((required - fewest) as f64 / rate) * 1.15) as u64 + 100_000_000;
    }
    for (e, endpoint) in ENDPOINTS.iter().enumerate() {
        let (samples, profiled, measured) = totals[e];
        let ratio = profiled as f64 / measured as f64;
        eprintln!(
            "{endpoint}: {samples} samples, profile {:.3}s, thread clock {:.3}s, ratio {ratio:.4}, {} requests",
            profiled as f64 / 1e9,
            measured as f64 / 1e9,
            service.measured.requests[e].load(Ordering::Relaxed)
        );
        assert!(samples >= required);
        assert!(
            (ratio - 1.0).abs() <= tolerance,
            "{endpoint}: profile {profiled} ns vs measured {measured} ns (ratio {ratio:.4})"
        );
    }

    // go tool pprof reads the labels: -tags lists them, -tagfocus totals
    // are ours.
    let (profile, file) = last.unwrap();
    drop(service.runtime);
    let file = file.to_str().unwrap();
    let labelled =
        |endpoint: &str| labelled_totals(&profile, 1, |l| l.get("endpoint") == Some(&endpoint)).1;
    // `firewatch analyze --tag-focus` keeps exactly the labelled samples.
    for endpoint in ENDPOINTS {
        let analyzer = firewatch_kept(file, &format!("--tag-focus=endpoint={endpoint}"));
        assert_eq!(
            analyzer,
            labelled(endpoint),
            "{endpoint}: firewatch analyze"
        );
    }
    if !common::go_available() {
        return;
    }
    let tags = common::go_pprof(&["-tags", file]);
    assert!(
        tags.contains("endpoint:") && tags.contains("/a") && tags.contains("/b"),
        "{tags}"
    );
    for endpoint in ENDPOINTS {
        let ours = labelled(endpoint);
        let focus = format!("-tagfocus=endpoint={endpoint}");
        let theirs = pprof_kept(&["-unit=ns", &focus, file]);
        eprintln!(
            "{endpoint}: go tool pprof -tagfocus keeps {theirs} ns; firewatch analyze \
             --tag-focus and the labelled samples {ours} ns"
        );
        assert!(
            (theirs - ours as f64).abs() <= 1e-3 * ours as f64,
            "{endpoint}: pprof {theirs} vs {ours}"
        );
    }
}

/// Acceptance (b): a leak made under `/leak`'s label keeps it: in a heap
/// snapshot taken after the requests were answered, at least 90% of the
/// leak's `inuse_space` carries the label, and the labelled bytes match
/// what the handler kept (the allocator-independent reference) within
/// what the sample count allows.
#[test]
fn a_leak_under_a_label_keeps_it_in_the_heap_snapshot() {
    let _serial = serial();
    let service = Service::start();
    let mut client = Client::connect(service.addr);
    let before = firewatch_agent::heap::stats().in_use_bytes;
    for i in 0..16 {
        client.request("/leak", (2 << 20) + i);
    }
    // Unlabelled allocations meanwhile, from this thread (not the leak).
    let unlabelled: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 48 << 10]).collect();
    let leaked = service.measured.leaked.load(Ordering::Relaxed);
    let after = firewatch_agent::heap::stats().in_use_bytes;
    let snapshot = firewatch_agent::heap::snapshot().unwrap();
    let inuse = snapshot
        .sample_type
        .iter()
        .position(|t| snapshot.string(t.r#type) == "inuse_space")
        .unwrap();
    let (mut leak_total, mut leak_labelled) = (0i64, 0i64);
    for s in &snapshot.sample {
        if stack_has(&snapshot, s, "leak_blocks") {
            leak_total += s.value[inuse];
            let labelled = s
                .label
                .iter()
                .any(|l| snapshot.string(l.key) == "endpoint" && snapshot.string(l.str) == "/leak");
            if labelled {
                leak_labelled += s.value[inuse];
            }
        }
    }
    let (_, labelled) = labelled_totals(&snapshot, inuse, |l| l.get("endpoint") == Some(&"/leak"));
    let sampled_blocks = leaked / (32 << 10);
    let tolerance = (4.0 / (sampled_blocks as f64).sqrt()).max(0.05);
    eprintln!(
        "leaked {leaked} bytes (allocator counter +{}); leak stacks {leak_total} bytes in use, \
         {leak_labelled} labelled; all /leak-labelled {labelled}; tolerance {tolerance:.3}",
        after.saturating_sub(before)
    );
    assert!(
        after.saturating_sub(before) >= leaked,
        "the allocator counted the leak"
    );
    assert!(leak_total > 0, "the leak's stacks are in the snapshot");
    assert!(
        leak_labelled as f64 >= 0.9 * leak_total as f64,
        "{leak_labelled} of {leak_total} labelled"
    );
    let ratio = labelled as f64 / leaked as f64;
    assert!(
        (ratio - 1.0).abs() <= tolerance,
        "labelled {labelled} vs leaked {leaked}"
    );
    // What was allocated outside any label carries none.
    assert!(snapshot.sample.iter().any(|s| s.label.is_empty()));
    drop(unlabelled);

    if common::go_available() {
        let dir = common::tempdir();
        let file = dir.path().join("heap.pb.gz");
        write_profile(&snapshot, &file);
        let file = file.to_str().unwrap();
        let tags = common::go_pprof(&["-tags", "-sample_index=inuse_space", file]);
        assert!(
            tags.contains("endpoint:") && tags.contains("/leak"),
            "{tags}"
        );
        let theirs = pprof_kept(&[
            "-unit=B",
            "-sample_index=inuse_space",
            "-tagfocus=endpoint=/leak",
            file,
        ]);
        assert!(
            (theirs - labelled as f64).abs() <= 1e-3 * labelled as f64,
            "pprof {theirs} vs {labelled}"
        );
    }
    drop(service.runtime);
}

/// Acceptance (c): labels survive `await`. Tasks that burn CPU, sleep and
/// wake on whichever worker the runtime picks keep their own label on every
/// worker they run on: per task, the CPU the profile labels with it on the
/// threads it moved to matches what it measured there.
#[test]
fn a_task_keeps_its_labels_after_waking_on_another_worker() {
    let _serial = serial();
    const TASKS: usize = 3;
    // CPU each task should use on workers other than its first one, and
    // the most it burns waiting for the runtime to move it: tokio keeps a
    // task where its timer fires, so one of three can stay on its first
    // worker for a long time (seen once in CI). Such a task shows nothing
    // about moving and is left out; at least one must move.
    const MOVED_NS: u64 = 1_000_000_000;
    const MOST_NS: u64 = 8_000_000_000;
    let runtime = runtime(4, "mig-worker");
    // Per task: its first worker, and CPU measured per worker.
    type Log = (String, HashMap<String, u64>);
    let logs: Arc<Mutex<Vec<Log>>> = Arc::new(Mutex::new(vec![Default::default(); TASKS]));
    let profiler = CpuProfiler::start(HZ).unwrap();
    let deadline = Instant::now() + common::HANG;
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let logs = logs.clone();
            let task = async move {
                let first = thread_name();
                // Per worker, CPU measured from each wake-up to the next
                // `await` (all the task does under its label but the
                // wrapper and the timer's own work).
                let mut per_worker: HashMap<String, u64> = HashMap::new();
                let (mut moved, mut total) = (0, 0);
                while moved < MOVED_NS && total < MOST_NS {
                    assert!(
                        Instant::now() < deadline,
                        "hang: task {t} never moved enough"
                    );
                    let start = thread_cpu_ns();
                    let worker = thread_name();
                    std::hint::black_box(migrant_work(60));
                    let off_first = worker != first;
                    let slot = per_worker.entry(worker).or_default();
                    let used = thread_cpu_ns() - start;
                    *slot += used;
                    total += used;
                    if off_first {
                        moved += used;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                logs.lock().unwrap()[t] = (first, per_worker);
            };
            runtime.spawn(task.with_labels([("task", format!("t{t}"))]))
        })
        .collect();
    for h in handles {
        runtime.block_on(h).unwrap();
    }
    let profile = profiler.stop().unwrap();
    let logs = logs.lock().unwrap();
    let mut checked = 0;
    for (t, (first, per_worker)) in logs.iter().enumerate() {
        let label = format!("t{t}");
        let measured: u64 = per_worker
            .iter()
            .filter(|(w, _)| *w != first)
            .map(|(_, ns)| ns)
            .sum();
        if measured < MOVED_NS {
            eprintln!("task {label}: stayed on {first} ({measured} ns elsewhere): not checked");
            continue;
        }
        checked += 1;
        let (samples, profiled) = labelled_totals(&profile, 1, |l| {
            l.get("task") == Some(&label.as_str()) && l.get("thread").is_some_and(|w| w != first)
        });
        let tolerance = (4.0 / (samples.max(1) as f64).sqrt()).max(0.05);
        let ratio = profiled as f64 / measured as f64;
        eprintln!(
            "task {label}: first on {first}, then {:?}; after moving: {samples} samples, \
             profile {profiled} ns, measured {measured} ns, ratio {ratio:.3} (±{tolerance:.3})",
            per_worker
                .keys()
                .filter(|w| *w != first)
                .collect::<Vec<_>>()
        );
        assert!(
            samples >= 50,
            "task {label}: {samples} samples after moving"
        );
        assert!(
            (ratio - 1.0).abs() <= tolerance,
            "task {label}: ratio {ratio}"
        );
    }
    assert!(checked >= 1, "no task moved to another worker");
    // Every sample of the tasks' work carries a task label.
    let (mut work, mut work_labelled) = (0i64, 0i64);
    for s in &profile.sample {
        if stack_has(&profile, s, "migrant_work") {
            work += s.value[0];
            if s.label.iter().any(|l| profile.string(l.key) == "task") {
                work_labelled += s.value[0];
            }
        }
    }
    assert!(work > 0);
    assert!(
        work_labelled as f64 >= 0.99 * work as f64,
        "{work_labelled} of {work}"
    );
}

#[inline(never)]
fn migrant_work(units: u64) -> u64 {
    endpoint_work(units)
}
