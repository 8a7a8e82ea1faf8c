//! The agent: one background thread that watches triggers and drives the
//! capture pipeline ([`crate::capture`]).
//!
//! Signal handlers only set a flag (through `signal-hook`); the agent thread
//! polls it every 100 ms, together with manual requests and the memory
//! thresholds (heap in use, RSS), and, every `check_interval`, the CPU
//! threshold. A heap snapshot runs on this thread (milliseconds); captures
//! that arrive while a trigger's capture runs are merged by the gate and
//! served once it ends (the first heap snapshot asked for during a CPU
//! capture is taken at once).
//!
//! **CPU profiles never block this thread.** Every CPU profile the agent
//! takes (a trigger's, `capture_cpu`'s, the endpoint's) subscribes to the
//! agent's one sampler ([`crate::cpu::SharedSampler`]), started for the
//! first and dropped after the last (or kept for the agent's life with
//! `lookback`, whose windows a capture can begin with). The sampler's
//! thread ends each profile's window on time and hands its capture over;
//! this thread goes on polling meanwhile and builds each profile (one
//! symbolization at a time) when its capture arrives. So an endpoint
//! profile and a trigger's capture overlap in time, each with the samples
//! of its own window, and both end at their own end.
//!
//! With `http_addr` set, the `/debug/pprof/` endpoint's thread
//! ([`crate::http`]) hands this thread its profile requests: it builds
//! them as it builds files (returned as bytes, never written, outside the
//! throttle and retention). A second endpoint CPU profile while one runs is
//! refused at once, as Go refuses it; a heap profile is served at once; a
//! request whose client went away is cancelled. The thread sleeps on the
//! endpoint's channel between polls, so a request wakes it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::capture::{
    retention, Admission, CaptureGuard, Gate, Kind, Retention, Store, StoreOptions, Throttle,
    ThrottleConfig, Trigger,
};
use crate::config::Config;
use crate::cpu::{CpuCapture, LookbackSettings, SharedSampler, Subscription};
use crate::heap::HeapRecords;
use crate::http::{Endpoint, Job, Want};
use crate::process::{memory_limit_bytes, process_cpu_time, rss_bytes};
use crate::symbolize::budget::{self, CaptureReport, RssMeter};
use crate::symbolize::Symbolizer;
use crate::trigger::{CpuMeter, GrowthThreshold, SustainedThreshold};
use crate::{Error, Result, SkipReason};

const TICK: Duration = Duration::from_millis(100);

/// Configures and starts an [`Agent`]. `FIREWATCH_*` environment
/// variables override what is set here (see `docs/agent.md`, "Options", for
/// every setting, its variable and its default).
#[derive(Default)]
pub struct AgentBuilder {
    config: Config,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => |$c:ident, $v:ident| $body:expr;)*) => {
        $( $(#[$doc])* pub fn $name(mut self, $v: $ty) -> Self { let $c = &mut self.config; $body; self } )*
    };
}

/// One method per row of the settings table (`config::SETTINGS`); values
/// are checked at [`AgentBuilder::start`], not clamped.
impl AgentBuilder {
    setters! {
        /// Where captures go; created `0700` if missing.
        output_dir: impl Into<PathBuf> => |c, v| c.output_dir = v.into();
        /// Used in file names (default: the executable's name).
        service_name: impl Into<String> => |c, v| c.service_name = v.into();
        /// Length of a triggered CPU profile (default 10 s, at most 1 h).
        cpu_duration: Duration => |c, v| c.cpu_duration = v;
        /// Sampling rate per thread (default 100 Hz, 1–4000).
        cpu_hz: u32 => |c, v| c.cpu_hz = v;
        /// Heap in use that triggers a heap snapshot (needs the sampling allocator).
        heap_threshold_bytes: u64 => |c, v| c.heap_threshold_bytes = Some(v);
        /// Growth above the last heap/RSS trigger level that fires it again.
        heap_step_bytes: u64 => |c, v| c.heap_step_bytes = Some(v);
        /// RSS, in % of the memory limit, that triggers a heap snapshot
        /// (default 90; `None` for none).
        rss_threshold_percent: impl Into<Option<u32>> => |c, v| c.rss_threshold_percent = v.into();
        /// Process CPU, in % of one core, that triggers a CPU profile
        /// (default 80; `None` for none).
        cpu_threshold_percent: impl Into<Option<u32>> => |c, v| c.cpu_threshold_percent = v.into();
        /// Consecutive checks over the CPU threshold needed (default 2).
        cpu_threshold_checks: u32 => |c, v| c.cpu_threshold_checks = v;
        /// How often the CPU threshold is checked (default 5 s, at least 100 ms).
        check_interval: Duration => |c, v| c.check_interval = v;
        /// CPU profiles also cover the `d` before they began (off by
        /// default; 1 s to 10 min, 30 s with the CPU threshold is a good
        /// start): the agent's CPU sampler runs at
        /// [`lookback_hz`](Self::lookback_hz) for the agent's life and keeps
        /// the last `d` in one-second windows; a capture raises it to
        /// `cpu_hz` and begins with those windows. It is the process's one
        /// CPU sampler: a
        /// [`CpuProfiler::start`](crate::cpu::CpuProfiler::start) meanwhile
        /// fails with [`Error::Busy`]. `docs/agent.md`, "Look-back", says
        /// what it costs.
        lookback: impl Into<Option<Duration>> => |c, v| c.lookback = v.into();
        /// Sampling rate between captures with [`lookback`](Self::lookback)
        /// (default 19 Hz, 1–4000).
        lookback_hz: u32 => |c, v| c.lookback_hz = v;
        /// Most bytes the look-back windows may hold (default 4 MiB, 64 KiB
        /// to 1 GiB): over it the oldest seconds are dropped, and profiles
        /// say how many.
        lookback_memory_limit: u64 => |c, v| c.lookback_memory_limit = v;
        /// Minimum gap between automatic captures of one kind (default 10 min).
        min_interval: Duration => |c, v| c.min_interval = v;
        /// Automatic captures of one kind per hour (default 4).
        max_per_hour: u32 => |c, v| c.max_per_hour = v;
        /// Automatic captures of one kind ever, counting files on disk (default 20).
        lifetime_cap: impl Into<Option<u32>> => |c, v| c.lifetime_cap = v.into();
        /// Keep at most this many capture files (default 20).
        max_files: usize => |c, v| c.max_files = Some(v);
        /// Keep at most this many bytes of captures (default 5 GiB).
        max_total_bytes: u64 => |c, v| c.max_total_bytes = Some(v);
        /// Delete captures older than this (default 24 h).
        max_age: Duration => |c, v| c.max_age = Some(v);
        /// Skip captures when the filesystem is fuller than this (default 90%).
        disk_usage_threshold_percent: u32 => |c, v| c.disk_usage_threshold_percent = v;
        /// The signal that requests captures (default `SIGUSR2`; `None` for none).
        signal: impl Into<Option<i32>> => |c, v| c.signal = v.into();
        /// Return freed heap to the system with glibc's `malloc_trim(0)`
        /// after each capture (off by default: it locks every arena).
        malloc_trim: bool => |c, v| c.malloc_trim = v;
        /// What symbolizing one capture may add to RSS (default 8 MiB;
        /// `None`: no limit). Objects whose debug info would not fit are
        /// named from their symbol tables, or left as addresses and build
        /// IDs; the profile's comments say which.
        capture_memory_limit: impl Into<Option<u64>> => |c, v| c.capture_memory_limit = v.into();
        /// Names frames in the process (the default), or, off, writes
        /// addresses with their mappings and GNU build IDs only, to be named
        /// offline (`firewatch analyze --symbols`): no debug info read or
        /// held by the service, at the price of unnamed files until then.
        symbolize: bool => |c, v| c.symbolize = v;
        /// Turns the agent on or off (`FIREWATCH_ENABLED` overrides).
        enabled: bool => |c, v| c.enabled = v;
        /// Serves Go's `/debug/pprof/` paths (CPU profile, heap, allocs,
        /// cmdline) on this address, for `go tool pprof`, Grafana Alloy and
        /// Parca (off by default: no socket). Port 0 lets the system pick
        /// one: see [`Agent::http_addr`]. A non-loopback address needs
        /// [`http_token`](Self::http_token), or
        /// [`http_allow_unauthenticated`](Self::http_allow_unauthenticated),
        /// or `start()` fails. An address in use does not fail `start()`:
        /// it is logged and retried every 5 s.
        http_addr: impl Into<Option<SocketAddr>> => |c, v| c.http_addr = v.into();
        /// The bearer token every endpoint request must carry
        /// (`Authorization: Bearer <token>`; else 401), on any address:
        /// 1–1024 visible ASCII characters, never logged.
        http_token: impl Into<String> => |c, v| c.http_token = Some(crate::config::Secret(v.into()));
        /// A file holding the bearer token, read at `start()` (whitespace
        /// around it ignored), so the token need not be in the
        /// environment, the command line or the code: a mounted secret.
        /// Not with [`http_token`](Self::http_token) as well; a file that
        /// cannot be read fails `start()`, naming it.
        http_token_file: impl Into<PathBuf> => |c, v| c.http_token_file = Some(v.into());
        /// Serves a non-loopback [`http_addr`](Self::http_addr) without a
        /// token: anyone who can reach the port can profile the process
        /// (off by default; a warning is logged).
        http_allow_unauthenticated: bool => |c, v| c.http_allow_unauthenticated = v;
        /// Longest CPU profile (or heap delta) an endpoint request may ask
        /// for, in seconds (default 60, 1–3600; more gets a 400). It shares
        /// the agent's sampler with signal and threshold profiles, which run
        /// beside it; a second endpoint CPU profile waits for none and is
        /// refused.
        http_max_seconds: u32 => |c, v| c.http_max_seconds = v;
    }

    /// The settings: the builder's values, checked (an invalid one is an
    /// error naming it), then the environment's overrides (an invalid one
    /// is logged and ignored), then the endpoint's exposure: a non-loopback
    /// `http_addr` from the builder needs a token or
    /// `http_allow_unauthenticated`, from the builder or the environment.
    pub fn config(mut self) -> Result<Config> {
        self.config.read_token_file()?;
        self.config.validate_each()?;
        self.config.apply_env(|k| std::env::var(k).ok());
        self.config.validate()?;
        Ok(self.config)
    }

    /// Checks the settings, applies `FIREWATCH_*` overrides and starts the
    /// agent thread. Fails only for invalid builder values or when the
    /// thread or signal handler cannot be set up: an unusable output
    /// directory is logged and retried at each capture.
    pub fn start(self) -> Result<Agent> {
        Agent::start(self.config()?)
    }
}

/// A manual capture request and where to send its result.
struct Request {
    kind: Kind,
    duration: Option<Duration>,
    reply: Sender<Result<PathBuf>>,
    /// Arrival order, given by the agent thread: a capture answers the
    /// requests of its kind that arrived before it began.
    seq: u64,
}

/// The running agent. Dropping it stops the agent thread (a capture in
/// progress is abandoned, leaving no file behind).
pub struct Agent {
    stop: Arc<AtomicBool>,
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
    /// The `/debug/pprof/` endpoint, when `http_addr` is set.
    endpoint: Option<Endpoint>,
}

impl Agent {
    /// Settings start at their defaults (`docs/agent.md`, "Options").
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    fn start(config: Config) -> Result<Agent> {
        let stop = Arc::new(AtomicBool::new(false));
        if !config.enabled {
            log::info!("firewatch: agent disabled by configuration");
            return Ok(Agent {
                stop,
                requests: None,
                thread: None,
                dir: config.output_dir,
                endpoint: None,
            });
        }
        let options = StoreOptions::from(&config);
        let retention = Retention::from(&config);
        let throttle = Throttle::new(ThrottleConfig::from(&config));
        // A profiler is never the reason a service does not start: an output
        // directory that cannot be made or used now (permissions, another
        // user's directory, a read-only mount) is logged, and every capture
        // tries again until it works.
        let mut outputs = Outputs {
            store: None,
            options,
            retention,
            throttle,
            service: crate::capture::sanitize_service(&config.service_name),
            dir: config.output_dir.clone(),
            name: config.service_name.clone(),
        };
        if let Err(e) = outputs.open() {
            log::warn!(
                "firewatch: {e}; the service runs, captures are skipped until the directory is usable"
            );
        }
        // Unwind tables for the sampling allocator's stack captures, before
        // the service gets going (a few milliseconds).
        crate::unwind::in_place::prepare();
        // Says in the log, once, if stacks in this build will be short.
        crate::unwind::self_check::result();
        let signalled = Arc::new(AtomicBool::new(false));
        if let Some(signal) = config.signal {
            // The handler only sets the flag; it stays installed for the life
            // of the process (uninstalling could let a late signal kill it).
            signal_hook::flag::register(signal, signalled.clone()).map_err(|source| {
                Error::Sys {
                    call: "installing the capture signal handler",
                    source,
                }
            })?;
        }
        let (requests, inbox) = mpsc::channel();
        let dir = config.output_dir.clone();
        // Started before the worker: if the worker cannot start, dropping
        // the endpoint stops its thread again.
        let (endpoint, jobs) = match config.http_addr {
            Some(addr) => {
                let (to_worker, jobs) = mpsc::channel();
                (Some(Endpoint::start(addr, &config, to_worker)?), Some(jobs))
            }
            None => (None, None),
        };
        // Before the worker, so a capture right after `start()` has the
        // seconds since: its threads have their timers when this returns.
        let lookback = start_lookback(&config, false);
        let worker = Worker {
            lookback_wanted: config.lookback.is_some() && !lookback_unsupported(&lookback),
            sampler: lookback.ok().flatten(),
            config,
            jobs,
            early_job: None,
            outputs,
            gate: Gate::new(),
            signalled,
            inbox,
            stop: stop.clone(),
            waiting: Vec::new(),
            next_seq: 0,
            capture: None,
            endpoint_cpu: None,
            heap_deltas: Vec::new(),
            cpu_meter: CpuMeter::default(),
            cpu_threshold: None,
            heap_threshold: None,
            rss_threshold: None,
        };
        let thread = std::thread::Builder::new()
            .name("firewatch-agent".into())
            .spawn(move || worker.run())
            .map_err(|source| Error::Sys {
                call: "spawning the agent thread",
                source,
            })?;
        log::info!("firewatch: agent started, writing to {}", dir.display());
        Ok(Agent {
            stop,
            requests: Some(requests),
            thread: Some(thread),
            dir,
            endpoint,
        })
    }

    /// Where captures are written.
    pub fn output_dir(&self) -> &Path {
        &self.dir
    }

    /// The address the `/debug/pprof/` endpoint listens on (with port 0,
    /// the port the system chose). `None` when the endpoint is off, or
    /// while its address cannot be bound (it is retried every 5 s).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().and_then(Endpoint::local_addr)
    }

    /// Takes a CPU profile of `duration` now (waiting for a running
    /// capture first; an endpoint profile does not delay it, they share
    /// the sampler) and returns the file written.
    pub fn capture_cpu(&self, duration: Duration) -> Result<PathBuf> {
        self.ask(Kind::Cpu, Some(duration))
    }

    /// Writes a heap snapshot now (waiting for a running capture first) and
    /// returns the file written. Needs [`crate::SamplingAllocator`] as the
    /// global allocator.
    pub fn capture_heap(&self) -> Result<PathBuf> {
        self.ask(Kind::Heap, None)
    }

    fn ask(&self, kind: Kind, duration: Option<Duration>) -> Result<PathBuf> {
        let requests = self
            .requests
            .as_ref()
            .ok_or(Error::Skipped(SkipReason::Disabled))?;
        let (reply, answer) = mpsc::channel();
        requests
            .send(Request {
                kind,
                duration,
                reply,
                seq: 0,
            })
            .map_err(|_| Error::Skipped(SkipReason::AgentStopped))?;
        answer
            .recv()
            .map_err(|_| Error::Skipped(SkipReason::AgentStopped))?
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // First the endpoint: its sockets close, and no new request comes.
        self.endpoint.take();
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where captures go: the store, opened when the directory is usable, and
/// what is applied to it.
struct Outputs {
    store: Option<Store>,
    options: StoreOptions,
    retention: Retention,
    throttle: Throttle,
    /// The sanitized service name, as file names carry it.
    service: String,
    dir: PathBuf,
    name: String,
}

impl Outputs {
    /// The store, opened now if it was not yet (retention then runs and the
    /// throttle learns the automatic captures already on disk).
    fn open(&mut self) -> Result<&Store> {
        if self.store.is_none() {
            let store = Store::open_with(
                &self.dir,
                &self.name,
                self.options.clone(),
                SystemTime::now(),
            )
            .map_err(|e| match e {
                Error::Skipped(reason @ SkipReason::OutputDirUnusable { .. }) => {
                    Error::Skipped(reason)
                }
                e => Error::Skipped(SkipReason::OutputDirUnusable {
                    dir: self.dir.clone(),
                    reason: e.to_string(),
                }),
            })?;
            if let Err(e) = retention::enforce(&store, &self.retention, SystemTime::now()) {
                log::warn!("firewatch: retention at start failed: {e}");
            }
            match store.list() {
                Ok(existing) => {
                    self.throttle
                        .seed_from_disk(&existing, SystemTime::now(), Instant::now())
                }
                Err(e) => log::warn!("firewatch: cannot list {}: {e}", self.dir.display()),
            }
            self.store = Some(store);
        }
        // Just opened or already open.
        self.store.as_ref().ok_or_else(|| {
            Error::Skipped(SkipReason::OutputDirUnusable {
                dir: self.dir.clone(),
                reason: "not open".into(),
            })
        })
    }
}

/// The look-back settings, when `lookback` is set.
fn lookback_settings(config: &Config) -> Option<LookbackSettings> {
    config.lookback.map(|span| LookbackSettings {
        span,
        hz: config.lookback_hz,
        memory_limit: config.lookback_memory_limit,
    })
}

/// Starts the agent's sampler with look-back windows if `lookback` is set
/// (`Ok(None)` if not), to run for the agent's life; a failure is logged
/// (a retry's at debug level), and the agent runs without it.
fn start_lookback(config: &Config, retry: bool) -> Result<Option<SharedSampler>> {
    let Some(settings) = lookback_settings(config) else {
        return Ok(None);
    };
    let span = settings.span;
    match SharedSampler::start(Some(settings), config.cpu_hz) {
        Ok(sampler) => {
            log::info!(
                "firewatch: look-back on: CPU captures begin with the last {span:?}, sampled at \
                 {} Hz (windows within {} bytes)",
                config.lookback_hz,
                config.lookback_memory_limit
            );
            Ok(Some(sampler))
        }
        Err(e @ Error::Unsupported(_)) => {
            log::warn!("firewatch: look-back is off: {e}");
            Err(e)
        }
        Err(e) => {
            let level = if retry {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "firewatch: look-back cannot start yet ({e}); tried again at each CPU check"
            );
            Err(e)
        }
    }
}

fn lookback_unsupported(started: &Result<Option<SharedSampler>>) -> bool {
    matches!(started, Err(Error::Unsupported(_)))
}

/// A CPU profile under way: a subscription to the agent's sampler, which
/// ends it on time and hands its capture over; this thread builds it.
struct CpuRun {
    subscription: Subscription,
    duration: Duration,
    origin: Origin,
    /// It asked to begin with the look-back windows.
    lookback_asked: bool,
    /// RSS from its start: the sampler's buffers count towards its peak.
    meter: RssMeter,
}

/// The trigger (signal, threshold, `capture_cpu`) CPU capture under way. It
/// holds the gate: other triggers' captures merge and run after it.
struct CaptureRun {
    run: CpuRun,
    trigger: Trigger,
    /// When it began, for its file name.
    started: SystemTime,
    guard: CaptureGuard,
    /// It answers the manual requests for a CPU capture that arrived
    /// before it began (`Request::seq` below this).
    answers_before: u64,
    /// The first heap snapshot asked for during it was taken at once.
    heap_taken: bool,
}

/// The endpoint's CPU profile under way, and the request it answers.
struct EndpointRun {
    run: CpuRun,
    job: Job,
}

/// An endpoint heap or allocs request with `seconds`: the first snapshot,
/// taken when it came, and when the second is due.
struct HeapDelta {
    job: Job,
    first: HeapRecords,
    until: Instant,
}

/// Heap delta profiles under way at once: each holds a snapshot's records
/// (up to a few MiB with a full bucket table) until its end.
const MAX_HEAP_DELTAS: usize = 2;

struct Worker {
    config: Config,
    /// The agent's CPU sampler, while any profile (or the look-back) runs.
    sampler: Option<SharedSampler>,
    /// `lookback` is set and can run here: the sampler is started again at
    /// each CPU check while it is not running (another profile held the
    /// process's sampler, or its thread died).
    lookback_wanted: bool,
    /// Profile requests from the `/debug/pprof/` endpoint, if it is on.
    jobs: Option<Receiver<Job>>,
    /// A job that ended a nap early, to serve next.
    early_job: Option<Job>,
    outputs: Outputs,
    gate: Gate,
    signalled: Arc<AtomicBool>,
    inbox: Receiver<Request>,
    stop: Arc<AtomicBool>,
    /// Manual requests waiting for a capture of their kind.
    waiting: Vec<Request>,
    /// The next manual request's `seq`.
    next_seq: u64,
    /// The trigger CPU capture under way.
    capture: Option<CaptureRun>,
    /// The endpoint CPU profile under way (one at a time, as Go).
    endpoint_cpu: Option<EndpointRun>,
    /// Endpoint heap delta profiles waiting for their second snapshot.
    heap_deltas: Vec<HeapDelta>,
    cpu_meter: CpuMeter,
    cpu_threshold: Option<SustainedThreshold>,
    /// Heap in use (the sampling allocator's counter), if set.
    heap_threshold: Option<GrowthThreshold>,
    /// RSS in bytes against its share of the memory limit, if set.
    rss_threshold: Option<GrowthThreshold>,
}

impl Worker {
    fn run(mut self) {
        self.cpu_threshold = self
            .config
            .cpu_threshold_percent
            .map(|t| SustainedThreshold::new(f64::from(t), self.config.cpu_threshold_checks, 10.0));
        self.heap_threshold = self.config.heap_threshold_bytes.map(|t| {
            let step = self.config.heap_step_bytes.unwrap_or(t / 4).max(1);
            GrowthThreshold::new(t, t / 10, step)
        });
        self.rss_threshold = self.config.rss_threshold_percent.and_then(|percent| {
            let limit = memory_limit_bytes()?;
            let t = limit / 100 * u64::from(percent);
            let step = self.config.heap_step_bytes.unwrap_or(limit / 20).max(1);
            log::info!("firewatch: RSS threshold {t} bytes ({percent}% of {limit})");
            Some(GrowthThreshold::new(t, limit / 20, step))
        });
        let mut next_check = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let mut wanted: Vec<(Kind, Trigger)> = self.poll_requests();
            // A library loaded since: the allocator's unwind tables miss it.
            if crate::unwind::in_place::stale() {
                crate::unwind::in_place::prepare();
            }
            // Memory can run out in seconds: these checks are a few loads and
            // one small /proc read, so they run every tick.
            wanted.extend(self.check_memory());
            if Instant::now() >= next_check {
                next_check = Instant::now() + self.config.check_interval;
                wanted.extend(self.check_thresholds());
                if self.lookback_wanted && self.sampler.is_none() {
                    self.sampler = start_lookback(&self.config, true).ok().flatten();
                }
            }
            for (kind, trigger) in wanted {
                self.request(kind, trigger);
            }
            for _ in 0..JOBS_PER_TICK {
                let Some(job) = self.next_job() else { break };
                self.serve(job);
            }
            self.progress();
            let wake = self.next_wake();
            self.nap(wake);
        }
        // Profiles under way are abandoned: no file, and "the agent
        // stopped" to whoever waits for one.
        self.capture.take();
        self.endpoint_cpu.take();
        self.heap_deltas.clear();
        self.sampler.take();
        for request in self.waiting.drain(..) {
            let _ = request
                .reply
                .send(Err(Error::Skipped(SkipReason::AgentStopped)));
        }
    }

    /// Signals and manual requests since the last poll.
    fn poll_requests(&mut self) -> Vec<(Kind, Trigger)> {
        let mut wanted = Vec::new();
        if self.signalled.swap(false, Ordering::AcqRel) {
            // The heap snapshot first: it is instant, the CPU profile takes
            // `cpu_duration`. Without the sampling allocator there is none.
            if crate::alloc::active() {
                wanted.push((Kind::Heap, Trigger::Signal));
            }
            wanted.push((Kind::Cpu, Trigger::Signal));
        }
        while let Ok(mut request) = self.inbox.try_recv() {
            request.seq = self.next_seq;
            self.next_seq += 1;
            wanted.push((request.kind, Trigger::Manual));
            self.waiting.push(request);
        }
        wanted
    }

    fn check_memory(&mut self) -> Vec<(Kind, Trigger)> {
        let mut wanted = Vec::new();
        if let Some(threshold) = self.heap_threshold.as_mut() {
            let in_use = crate::heap::in_use_bytes();
            if threshold.observe(in_use) {
                log::info!("firewatch: heap in use {in_use} bytes: heap snapshot");
                wanted.push((Kind::Heap, Trigger::HeapThreshold));
            }
        }
        if let Some(threshold) = self.rss_threshold.as_mut() {
            if let Some(rss) = rss_bytes() {
                if threshold.observe(rss) {
                    log::info!("firewatch: RSS {rss} bytes: heap snapshot");
                    wanted.push((Kind::Heap, Trigger::RssThreshold));
                }
            }
        }
        wanted
    }

    fn check_thresholds(&mut self) -> Vec<(Kind, Trigger)> {
        let mut wanted = Vec::new();
        if let Some(percent) = self.cpu_meter.observe(Instant::now(), process_cpu_time()) {
            log::debug!("firewatch: CPU check: process CPU at {percent:.0}% of a core");
            if self
                .cpu_threshold
                .as_mut()
                .is_some_and(|t| t.observe(percent))
            {
                log::info!("firewatch: process CPU at {percent:.0}% of a core: CPU profile");
                wanted.push((Kind::Cpu, Trigger::CpuThreshold));
            }
        }
        wanted
    }

    /// Runs a capture, or merges it into the gate while a trigger's CPU
    /// capture runs. A heap snapshot takes milliseconds: the first one
    /// asked for during a CPU capture does not wait for it (memory can run
    /// out meanwhile); later requests, of either kind, merge into the gate
    /// and run after, so a storm stays bounded. A CPU capture begins here
    /// and runs in the background of this thread's loop.
    fn request(&mut self, kind: Kind, trigger: Trigger) {
        let mut next = vec![(kind, trigger)];
        while let Some((kind, trigger)) = next.pop() {
            if kind == Kind::Heap {
                if let Some(capture) = self.capture.as_mut().filter(|c| !c.heap_taken) {
                    capture.heap_taken = true;
                    self.snapshot_heap(trigger);
                    continue;
                }
            }
            let Some(guard) = self.gate.try_begin(kind, trigger) else {
                continue;
            };
            match kind {
                Kind::Heap => {
                    self.snapshot_heap(trigger);
                    drop(guard);
                    next.extend(self.gate.take_pending());
                }
                // Under way, it holds the gate: what is left merges into it.
                Kind::Cpu => {
                    if !self.begin_capture(trigger, guard) {
                        next.extend(self.gate.take_pending());
                    }
                }
            }
        }
    }

    /// A heap snapshot the gate let through: asks the throttle, captures (a
    /// panic becomes a failed capture), answers the requests waiting for it.
    fn snapshot_heap(&mut self, trigger: Trigger) {
        let kind = Kind::Heap;
        if let Admission::Skip(reason) = self.outputs.throttle.admit(kind, trigger, Instant::now())
        {
            log::info!("firewatch: {kind} capture ({trigger}) skipped: {reason}");
            return;
        }
        log::info!("firewatch: {kind} capture ({trigger}) started");
        let answers_before = self.next_seq;
        // A bug in a capture (symbolizing, encoding) must not take the
        // agent thread down with it: it becomes a failed capture.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // No capture work for a directory that cannot take the file.
            self.outputs.open()?;
            self.capture_heap(trigger)
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        if let Err(e) = &result {
            log::warn!("firewatch: {kind} capture ({trigger}) failed: {e}");
        }
        self.answer_waiting(kind, answers_before, result);
    }

    /// Starts a CPU capture the gate let through, if the throttle admits
    /// it: it subscribes to the sampler and holds the gate until its window
    /// ends ([`finish_capture`](Self::finish_capture)). `false` if it did
    /// not start (the guard is dropped).
    fn begin_capture(&mut self, trigger: Trigger, guard: CaptureGuard) -> bool {
        let kind = Kind::Cpu;
        if let Admission::Skip(reason) = self.outputs.throttle.admit(kind, trigger, Instant::now())
        {
            log::info!("firewatch: {kind} capture ({trigger}) skipped: {reason}");
            return false;
        }
        // Said so an operator (or a test) knows a capture is under way:
        // a CPU profile takes `cpu_duration` before anything is written.
        log::info!("firewatch: {kind} capture ({trigger}) started");
        let answers_before = self.next_seq;
        let duration = self
            .waiting
            .iter()
            .filter(|r| r.kind == kind && r.seq < answers_before)
            .filter_map(|r| r.duration)
            .max()
            .unwrap_or(self.config.cpu_duration);
        let started = SystemTime::now();
        let begun = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.outputs.open()?;
            self.begin_cpu(duration, true, Origin::Trigger(trigger))
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        match begun {
            Ok(run) => {
                self.capture = Some(CaptureRun {
                    run,
                    trigger,
                    started,
                    guard,
                    answers_before,
                    heap_taken: false,
                });
                true
            }
            Err(e) => {
                log::warn!("firewatch: {kind} capture ({trigger}) failed: {e}");
                self.answer_waiting(kind, answers_before, Err(e));
                false
            }
        }
    }

    /// Answers the manual requests for `kind` that arrived before the
    /// capture began (`seq` below `before`); later ones wait for the next.
    fn answer_waiting(&mut self, kind: Kind, before: u64, result: Result<PathBuf>) {
        let (done, keep): (Vec<Request>, Vec<Request>) = self
            .waiting
            .drain(..)
            .partition(|r| r.kind == kind && r.seq < before);
        self.waiting = keep;
        let result = result.map_err(Arc::new);
        for request in done {
            let reply = match &result {
                Ok(path) => Ok(path.clone()),
                Err(e) => Err(Error::CaptureFailed(Arc::clone(e))),
            };
            let _ = request.reply.send(reply);
        }
    }

    fn capture_heap(&mut self, trigger: Trigger) -> Result<PathBuf> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let (profile, report) = self.heap_profile(Origin::Trigger(trigger), None)?;
        let path = self.finish(Kind::Heap, trigger, started, &profile)?;
        drop(profile);
        log_capture(
            Kind::Heap,
            clock.elapsed(),
            None,
            report,
            Origin::Trigger(trigger),
        );
        Ok(path)
    }

    /// A heap snapshot as a profile, symbolized within the capture memory
    /// limit, with the comments every heap capture carries; with `since`,
    /// the difference from that earlier snapshot's records (Go's delta).
    fn heap_profile(
        &mut self,
        origin: Origin,
        since: Option<&HeapRecords>,
    ) -> Result<(firewatch_profile::Profile, CaptureReport)> {
        let meter = RssMeter::start();
        let comments = vec![
            format!("trigger: {origin}"),
            format!("service: {}", self.outputs.service),
        ];
        // Symbolization within the memory limit; what it loaded is released
        // when the scope ends.
        let (profile, report) = budget::capture(
            self.config.capture_memory_limit,
            self.config.symbolize,
            meter,
            || match since {
                Some(first) => crate::heap::delta_with_comments(first, &comments),
                None => crate::heap::snapshot_with_comments(&comments),
            },
        );
        let mut profile = profile?;
        let mut said = report.comments();
        if report.left_addresses_only() {
            said.push(
                "firewatch: allocation plumbing is cut from a stack's leaf end only where its \
                 frames have names; stacks through addresses left without names keep it"
                    .into(),
            );
        }
        add_comments(&mut profile, said);
        Ok((profile, report))
    }

    /// Trims the heap if asked, then compresses `profile`, stores it
    /// atomically and applies retention.
    fn finish(
        &mut self,
        kind: Kind,
        trigger: Trigger,
        started: SystemTime,
        profile: &firewatch_profile::Profile,
    ) -> Result<PathBuf> {
        let bytes = self.compress(profile)?;
        self.outputs.open()?;
        let outputs = &self.outputs;
        let store = outputs.store.as_ref().ok_or_else(|| {
            Error::Skipped(SkipReason::OutputDirUnusable {
                dir: outputs.dir.clone(),
                reason: "not open".into(),
            })
        })?;
        let path = store.write(kind, trigger, started, &bytes)?;
        if let Err(e) = retention::enforce(store, &outputs.retention, SystemTime::now()) {
            log::warn!("firewatch: retention failed: {e}");
        }
        Ok(path)
    }

    /// Trims the heap if asked, then gzips `profile` as pprof files are.
    fn compress(&self, profile: &firewatch_profile::Profile) -> Result<Vec<u8>> {
        if self.config.malloc_trim {
            Symbolizer::trim_heap();
        }
        let mut bytes = Vec::new();
        profile.write_gzip(&mut bytes).map_err(|source| Error::Io {
            path: self.config.output_dir.clone(),
            what: "compressing a profile",
            source,
        })?;
        Ok(bytes)
    }

    /// Subscribes a CPU profile of `duration` to the agent's sampler,
    /// starting the sampler if none runs (the look-back one if `lookback`
    /// is set: its windows begin now, so this profile has none); with
    /// `lookback` and the look-back sampler running, the profile begins
    /// with its windows. A sampler whose thread died is replaced.
    fn begin_cpu(&mut self, duration: Duration, lookback: bool, origin: Origin) -> Result<CpuRun> {
        // Before the sampler's buffers, which count towards the peak.
        let meter = RssMeter::start();
        let hz = self.config.cpu_hz;
        let run = |subscription| CpuRun {
            subscription,
            duration,
            origin,
            lookback_asked: lookback,
            meter,
        };
        if let Some(sampler) = &self.sampler {
            match sampler.subscribe(hz, lookback, duration) {
                Ok(subscription) => return Ok(run(subscription)),
                Err(e) => {
                    log::warn!("firewatch: CPU sampler: {e}; starting another");
                    self.sampler = None;
                }
            }
        }
        let settings = if self.lookback_wanted {
            lookback_settings(&self.config)
        } else {
            None
        };
        let sampler = SharedSampler::start(settings, hz)?;
        let subscription = sampler.subscribe(hz, false, duration)?;
        self.sampler = Some(sampler);
        Ok(run(subscription))
    }

    /// Ends what is due: CPU profiles whose window ended (their captures
    /// built, written or answered), endpoint requests whose client went
    /// away (cancelled), heap deltas whose time is up; reads the CPU
    /// profiles' memory; lets the sampler go once nothing uses it.
    fn progress(&mut self) {
        if let Some(endpoint) = self.endpoint_cpu.as_mut() {
            if endpoint.job.cancelled() {
                let want = endpoint.job.want;
                // Dropping the subscription cancels it.
                self.endpoint_cpu = None;
                log::debug!(
                    "firewatch: {want} for {}: the client went away; cancelled",
                    Origin::Endpoint
                );
            } else {
                endpoint.run.meter.read();
                if let Some(captured) = endpoint.run.subscription.poll() {
                    if let Some(endpoint) = self.endpoint_cpu.take() {
                        self.finish_endpoint_cpu(endpoint, captured);
                    }
                }
            }
        }
        if let Some(capture) = self.capture.as_mut() {
            capture.run.meter.read();
            if let Some(captured) = capture.run.subscription.poll() {
                if let Some(capture) = self.capture.take() {
                    self.finish_capture(capture, captured);
                }
            }
        }
        let now = Instant::now();
        let (due, waiting): (Vec<HeapDelta>, Vec<HeapDelta>) = self
            .heap_deltas
            .drain(..)
            .partition(|d| d.until <= now || d.job.cancelled());
        self.heap_deltas = waiting;
        for delta in due {
            if delta.job.cancelled() {
                log::debug!(
                    "firewatch: {} for {}: the client went away; cancelled",
                    delta.job.want,
                    Origin::Endpoint
                );
                continue;
            }
            self.finish_heap_delta(delta);
        }
        let unused = self.capture.is_none()
            && self.endpoint_cpu.is_none()
            && self.sampler.as_ref().is_some_and(|s| !s.has_lookback());
        if unused {
            // Its thread joined, its timers deleted: the process's sampler
            // is free again.
            self.sampler = None;
        }
    }

    /// A trigger's CPU capture whose window ended: built, written, the
    /// requests waiting for it answered; then what merged into the gate
    /// meanwhile runs.
    fn finish_capture(&mut self, capture: CaptureRun, captured: Result<CpuCapture>) {
        let CaptureRun {
            run,
            trigger,
            started,
            guard,
            answers_before,
            ..
        } = capture;
        let duration = run.duration;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (profile, report, sampled) = self.build_cpu(run, captured?);
            let path = self.finish(Kind::Cpu, trigger, started, &profile)?;
            drop(profile);
            log_capture(
                Kind::Cpu,
                sampled.elapsed(),
                Some(duration),
                report,
                Origin::Trigger(trigger),
            );
            Ok(path)
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        if let Err(e) = &result {
            log::warn!("firewatch: {} capture ({trigger}) failed: {e}", Kind::Cpu);
        }
        self.answer_waiting(Kind::Cpu, answers_before, result);
        drop(guard);
        for (kind, trigger) in self.gate.take_pending() {
            self.request(kind, trigger);
        }
    }

    /// The endpoint's CPU profile whose window ended: built, compressed,
    /// answered (a panic becomes a failed request).
    fn finish_endpoint_cpu(&mut self, endpoint: EndpointRun, captured: Result<CpuCapture>) {
        let EndpointRun { run, job } = endpoint;
        let want = job.want;
        let duration = run.duration;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (profile, report, sampled) = self.build_cpu(run, captured?);
            let bytes = self.compress(&profile)?;
            drop(profile);
            log_capture(
                Kind::Cpu,
                sampled.elapsed(),
                Some(duration),
                report,
                Origin::Endpoint,
            );
            Ok(bytes)
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        if let Err(e) = &result {
            log::warn!("firewatch: {want} for {} failed: {e}", Origin::Endpoint);
        }
        job.answer(result);
    }

    /// A finished CPU capture as a profile, with the comments every CPU
    /// capture carries, symbolized within the capture memory limit; and
    /// when its building began (its sampling had ended).
    fn build_cpu(
        &mut self,
        run: CpuRun,
        capture: CpuCapture,
    ) -> (firewatch_profile::Profile, CaptureReport, Instant) {
        let sampled = Instant::now();
        let mut comments = vec![
            format!("trigger: {}", run.origin),
            format!("service: {}", self.outputs.service),
            format!("captured by firewatch-agent {}", env!("CARGO_PKG_VERSION")),
        ];
        if run.lookback_asked && capture.lookback.is_none() {
            match (run.origin, self.config.lookback) {
                (_, Some(_)) => comments.push(
                    "firewatch: no look-back: the look-back sampler was not running (another \
                     CPU profile held the process's sampler; it is started again at each CPU \
                     check)"
                        .into(),
                ),
                (Origin::Endpoint, None) => comments.push(
                    "firewatch: no look-back: lookback=1 asked for, but the agent's lookback \
                     setting is off"
                        .into(),
                ),
                (Origin::Trigger(_), None) => {}
            }
        }
        // Symbolization within the memory limit; what it loaded (debug
        // info, symbol tables) is released when the scope ends.
        let (mut profile, report) = budget::capture(
            self.config.capture_memory_limit,
            self.config.symbolize,
            run.meter,
            || capture.to_profile(&comments),
        );
        drop(capture);
        add_comments(&mut profile, report.comments());
        (profile, report, sampled)
    }

    /// When the loop should look again: a tick from now, or sooner for a
    /// profile's end (a CPU capture arrives a drain after its window ends:
    /// looked for 5 ms after, then every 5 ms).
    fn next_wake(&self) -> Duration {
        const AFTER_END: Duration = Duration::from_millis(5);
        let now = Instant::now();
        let cpu_ends = self
            .capture
            .iter()
            .map(|c| &c.run)
            .chain(self.endpoint_cpu.iter().map(|e| &e.run))
            .map(|run| run.subscription.until().saturating_duration_since(now) + AFTER_END);
        let heap_ends = self
            .heap_deltas
            .iter()
            .map(|d| d.until.saturating_duration_since(now));
        cpu_ends.chain(heap_ends).fold(TICK, Duration::min)
    }

    /// The next endpoint request, if one waits.
    fn next_job(&mut self) -> Option<Job> {
        self.early_job
            .take()
            .or_else(|| self.jobs.as_ref()?.try_recv().ok())
    }

    /// Waits `duration`, or less if an endpoint request arrives (kept for
    /// [`next_job`](Self::next_job)): the endpoint is answered without a
    /// tick's delay, and an idle agent still wakes once per tick only.
    fn nap(&mut self, duration: Duration) {
        if self.early_job.is_some() {
            return;
        }
        if let Some(jobs) = &self.jobs {
            match jobs.recv_timeout(duration) {
                Ok(job) => {
                    self.early_job = Some(job);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => return,
                // The endpoint stopped: sleep as without one.
                Err(RecvTimeoutError::Disconnected) => self.jobs = None,
            }
        }
        std::thread::sleep(duration);
    }

    /// An endpoint request: a heap or allocs profile is taken and answered
    /// now (milliseconds); a CPU profile or a heap delta begins, and is
    /// answered when it ends, while this thread goes on. Its client may
    /// have gone already.
    fn serve(&mut self, job: Job) {
        let want = job.want;
        if job.cancelled() {
            log::debug!(
                "firewatch: {want} for {}: the client went away first",
                Origin::Endpoint
            );
            return;
        }
        log::debug!("firewatch: {want} for {} started", Origin::Endpoint);
        match want {
            Want::Cpu { duration, lookback } => self.begin_endpoint_cpu(job, duration, lookback),
            Want::HeapDelta { duration, .. } => self.begin_heap_delta(job, duration),
            Want::Heap | Want::Allocs => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.endpoint_heap(want, None)
                }))
                .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
                answer(job, result);
            }
        }
    }

    /// An endpoint CPU profile: subscribed to the sampler beside whatever
    /// else profiles now; with `lookback` (`lookback=1`) it begins with the
    /// look-back windows. A second one while one runs is refused at once,
    /// as Go refuses it.
    fn begin_endpoint_cpu(&mut self, job: Job, duration: Duration, lookback: bool) {
        if self.endpoint_cpu.is_some() {
            return answer(job, Err(Error::Busy));
        }
        let begun = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.begin_cpu(duration, lookback, Origin::Endpoint)
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        match begun {
            Ok(run) => self.endpoint_cpu = Some(EndpointRun { run, job }),
            Err(e) => answer(job, Err(e)),
        }
    }

    /// Go's `seconds` on `heap` and `allocs`: the allocator's records now;
    /// the profile, the difference from a second snapshot `seconds` later,
    /// is answered then.
    fn begin_heap_delta(&mut self, job: Job, seconds: Duration) {
        if self.heap_deltas.len() >= MAX_HEAP_DELTAS {
            return answer(job, Err(Error::Busy));
        }
        let first = std::panic::catch_unwind(crate::heap::records_now)
            .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        match first {
            Ok(first) => self.heap_deltas.push(HeapDelta {
                job,
                first,
                until: Instant::now() + seconds,
            }),
            Err(e) => answer(job, Err(e)),
        }
    }

    fn finish_heap_delta(&mut self, delta: HeapDelta) {
        let HeapDelta { job, first, .. } = delta;
        let want = job.want;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.endpoint_heap(want, Some(&first))
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        answer(job, result);
    }

    /// An endpoint heap or allocs profile now; with `since`, the delta
    /// from that earlier snapshot.
    fn endpoint_heap(&mut self, want: Want, since: Option<&HeapRecords>) -> Result<Vec<u8>> {
        let clock = Instant::now();
        let (mut profile, report) = self.heap_profile(Origin::Endpoint, since)?;
        if matches!(want, Want::Allocs | Want::HeapDelta { allocs: true, .. }) {
            // Go's `allocs` is its heap profile with this default.
            let existing = profile.string_table.iter().position(|s| s == "alloc_space");
            profile.default_sample_type =
                existing.map_or_else(|| profile.push_string("alloc_space"), |i| i as i64);
        }
        let bytes = self.compress(&profile)?;
        drop(profile);
        log_capture(Kind::Heap, clock.elapsed(), None, report, Origin::Endpoint);
        Ok(bytes)
    }
}

/// Answers an endpoint request, saying in the log why it failed.
fn answer(job: Job, result: Result<Vec<u8>>) {
    let want = job.want;
    match &result {
        Err(Error::Busy) => log::info!(
            "firewatch: {want} for {}: {}",
            Origin::Endpoint,
            match want {
                Want::Cpu { .. } => "a CPU profile is running",
                _ => "too many heap delta profiles under way",
            }
        ),
        Err(e) => log::warn!("firewatch: {want} for {} failed: {e}", Origin::Endpoint),
        Ok(_) => {}
    }
    job.answer(result);
}

/// Most endpoint requests served per tick, so that the triggers' checks
/// still run under a flood (the endpoint holds at most 16 connections).
const JOBS_PER_TICK: usize = 16;

/// Who asked for a capture: a trigger (the capture becomes a file) or the
/// `/debug/pprof/` endpoint (bytes in a response, never a file). Profiles
/// say which in their `trigger:` comment.
#[derive(Clone, Copy)]
enum Origin {
    Trigger(Trigger),
    Endpoint,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Trigger(trigger) => trigger.fmt(f),
            Origin::Endpoint => f.write_str("http"),
        }
    }
}

/// Appends `comments` to a built profile.
fn add_comments(profile: &mut firewatch_profile::Profile, comments: Vec<String>) {
    for comment in comments {
        let index = profile.push_string(comment);
        profile.comment.push(index);
    }
}

/// One log line per capture: how long its profile took to build
/// (symbolization included) and to write (or, for the endpoint, to
/// compress), `took` being both (after sampling, for a CPU profile), and
/// its memory, read once more now that the file is written. At debug
/// level for the endpoint, whose scrapers ask every few seconds.
fn log_capture(
    kind: Kind,
    took: Duration,
    sampled: Option<Duration>,
    mut report: CaptureReport,
    origin: Origin,
) {
    report.meter.read();
    let sampling = sampled.map_or_else(String::new, |d| format!(" after {d:?} of sampling"));
    let (level, done) = match origin {
        Origin::Trigger(_) => (log::Level::Info, "written"),
        Origin::Endpoint => (log::Level::Debug, "served"),
    };
    log::log!(
        level,
        "firewatch: {kind} capture: profile built in {} ms, {done} in {} ms{sampling}; {}",
        report.took.as_millis(),
        took.saturating_sub(report.took).as_millis(),
        report.summary()
    );
}
