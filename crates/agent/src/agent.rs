//! The agent: one background thread that watches triggers and drives the
//! capture pipeline ([`crate::capture`]).
//!
//! Signal handlers only set a flag (through `signal-hook`); the agent thread
//! polls it every 100 ms, together with manual requests and the memory
//! thresholds (heap in use, RSS), and, every `check_interval`, the CPU
//! threshold. A capture runs on this thread (the CPU
//! sampler adds its own thread while a CPU profile is being taken); requests
//! that arrive meanwhile are merged by the gate and served once it ends.
//!
//! With `http_addr` set, the `/debug/pprof/` endpoint's thread
//! ([`crate::http`]) hands this thread its profile requests: it builds
//! them as it builds files (returned as bytes, never written, outside the
//! throttle and retention), so two captures never symbolize at once. A CPU
//! profile requested while one runs is refused at once; a heap profile
//! requested during a CPU profile is served during it. The thread sleeps
//! on the endpoint's channel between polls, so a request wakes it.
//!
//! With `lookback` set, this thread owns the look-back sampler
//! ([`crate::cpu::LookbackSampler`]), started with the agent: a CPU
//! capture then asks it for a capture (at `cpu_hz`, beginning with the
//! last `lookback` seconds) instead of starting a `CpuProfiler`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::capture::{
    retention, Admission, Gate, Kind, Retention, Store, StoreOptions, Throttle, ThrottleConfig,
    Trigger,
};
use crate::config::Config;
use crate::cpu::{CpuCapture, CpuProfiler, LookbackSampler, LookbackSettings};
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
        /// start): a sampler runs at [`lookback_hz`](Self::lookback_hz) for
        /// the agent's life and keeps the last `d` in one-second windows; a
        /// capture raises it to `cpu_hz` and begins with those windows. It
        /// is the process's one CPU sampler: a
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
        /// Serves a non-loopback [`http_addr`](Self::http_addr) without a
        /// token: anyone who can reach the port can profile the process
        /// (off by default; a warning is logged).
        http_allow_unauthenticated: bool => |c, v| c.http_allow_unauthenticated = v;
        /// Longest CPU profile an endpoint request may ask for, in seconds
        /// (default 60, 1–3600; more gets a 400): a request holds the one
        /// CPU profiler, and signal and threshold profiles wait behind it.
        http_max_seconds: u32 => |c, v| c.http_max_seconds = v;
    }

    /// The settings: the builder's values, checked (an invalid one is an
    /// error naming it), then the environment's overrides (an invalid one
    /// is logged and ignored), then the endpoint's exposure: a non-loopback
    /// `http_addr` from the builder needs a token or
    /// `http_allow_unauthenticated`, from the builder or the environment.
    pub fn config(mut self) -> Result<Config> {
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
            lookback: lookback.ok().flatten(),
            config,
            jobs,
            early_job: None,
            outputs,
            gate: Gate::new(),
            signalled,
            inbox,
            stop: stop.clone(),
            waiting: Vec::new(),
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

    /// Takes a CPU profile of `duration` now (waiting for a running capture
    /// first) and returns the file written.
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

/// Starts the look-back sampler if `lookback` is set (`Ok(None)` if not);
/// a failure is logged (a retry's at debug level), and the agent runs
/// without it.
fn start_lookback(config: &Config, retry: bool) -> Result<Option<LookbackSampler>> {
    let Some(span) = config.lookback else {
        return Ok(None);
    };
    let settings = LookbackSettings {
        span,
        hz: config.lookback_hz,
        memory_limit: config.lookback_memory_limit,
    };
    match LookbackSampler::start(settings) {
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

fn lookback_unsupported(started: &Result<Option<LookbackSampler>>) -> bool {
    matches!(started, Err(Error::Unsupported(_)))
}

/// The CPU sampler a capture is taken with: its own, or the look-back
/// sampler, taken from the worker for the capture (given back at its end;
/// a panic meanwhile drops it, so it never stays at the capture's rate).
enum CpuSession {
    Own(CpuProfiler),
    Lookback(LookbackSampler),
}

struct Worker {
    config: Config,
    /// The look-back sampler, while it runs.
    lookback: Option<LookbackSampler>,
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
    /// Manual requests merged into the next capture of their kind.
    waiting: Vec<Request>,
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
                if self.lookback_wanted && self.lookback.is_none() {
                    self.lookback = start_lookback(&self.config, true).ok().flatten();
                }
            }
            for (kind, trigger) in wanted {
                self.request(kind, trigger);
            }
            // Between captures here: a CPU profile asked for is taken now.
            for _ in 0..JOBS_PER_TICK {
                let Some(job) = self.next_job() else { break };
                self.serve(job);
            }
            self.nap(TICK);
        }
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
        while let Ok(request) = self.inbox.try_recv() {
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

    /// Runs a capture, then whatever was merged into the gate meanwhile.
    fn request(&mut self, kind: Kind, trigger: Trigger) {
        let mut next = vec![(kind, trigger)];
        while let Some((kind, trigger)) = next.pop() {
            let Some(guard) = self.gate.try_begin(kind, trigger) else {
                continue;
            };
            self.admit_and_capture(kind, trigger);
            drop(guard);
            next.extend(self.gate.take_pending());
        }
    }

    /// One capture the gate let through: asks the throttle, captures (a
    /// panic becomes a failed capture), answers the requests waiting for it.
    fn admit_and_capture(&mut self, kind: Kind, trigger: Trigger) {
        if let Admission::Skip(reason) = self.outputs.throttle.admit(kind, trigger, Instant::now())
        {
            log::info!("firewatch: {kind} capture ({trigger}) skipped: {reason}");
            return;
        }
        // Said so an operator (or a test) knows a capture is under way:
        // a CPU profile takes `cpu_duration` before anything is written.
        log::info!("firewatch: {kind} capture ({trigger}) started");
        let waiting_before = self.waiting.len();
        // A bug in a capture (symbolizing, encoding) must not take the
        // agent thread down with it: it becomes a failed capture.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.capture(kind, trigger)))
                .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        if let Err(e) = &result {
            log::warn!("firewatch: {kind} capture ({trigger}) failed: {e}");
        }
        self.answer_waiting(kind, waiting_before, result);
    }

    /// Answers the requests for `kind` that were waiting when the capture
    /// began (the first `count`); later ones wait for the next capture.
    fn answer_waiting(&mut self, kind: Kind, count: usize, result: Result<PathBuf>) {
        let later = self.waiting.split_off(count.min(self.waiting.len()));
        let (done, mut keep): (Vec<Request>, Vec<Request>) =
            self.waiting.drain(..).partition(|r| r.kind == kind);
        keep.extend(later);
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

    fn capture(&mut self, kind: Kind, trigger: Trigger) -> Result<PathBuf> {
        // No capture work for a directory that cannot take the file.
        self.outputs.open()?;
        match kind {
            Kind::Cpu => self.capture_cpu(trigger),
            Kind::Heap => self.capture_heap(trigger),
        }
    }

    fn capture_heap(&mut self, trigger: Trigger) -> Result<PathBuf> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let (profile, report) = self.heap_profile(Origin::Trigger(trigger))?;
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
    /// limit, with the comments every heap capture carries.
    fn heap_profile(
        &mut self,
        origin: Origin,
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
            || crate::heap::snapshot_with_comments(&comments),
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

    fn capture_cpu(&mut self, trigger: Trigger) -> Result<PathBuf> {
        let duration = self
            .waiting
            .iter()
            .filter(|r| r.kind == Kind::Cpu)
            .filter_map(|r| r.duration)
            .max()
            .unwrap_or(self.config.cpu_duration);
        let started = SystemTime::now();
        let (profile, report, sampled) =
            self.cpu_profile(duration, Origin::Trigger(trigger), true)?;
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
    }

    /// A CPU profile of `duration`, symbolized within the capture memory
    /// limit, and when its sampling ended; with the look-back sampler
    /// running and `include_lookback`, it begins with the last `lookback`
    /// seconds. Meanwhile this thread keeps answering: the first heap
    /// snapshot asked for (by a signal, a threshold or the API) and every
    /// endpoint heap profile are taken at once; other captures are merged
    /// into the gate (the caller holds it); endpoint CPU profiles are
    /// refused as busy.
    fn cpu_profile(
        &mut self,
        duration: Duration,
        origin: Origin,
        include_lookback: bool,
    ) -> Result<(firewatch_profile::Profile, CaptureReport, Instant)> {
        let mut meter = RssMeter::start();
        let session = self.begin_cpu(include_lookback)?;
        let until = Instant::now() + duration;
        let mut heap_taken = false;
        while Instant::now() < until {
            if self.stop.load(Ordering::Acquire) {
                let _ = self.end_cpu(session);
                return Err(Error::Skipped(SkipReason::AgentStopped));
            }
            // Requests arriving now are merged into the gate (served after).
            // A heap snapshot takes milliseconds: the first one asked for
            // during the CPU profile does not wait for it (memory can run
            // out meanwhile). Later requests, of either kind, are merged
            // into the gate and served after, so a storm stays bounded.
            let mut wanted = self.poll_requests();
            wanted.extend(self.check_memory());
            for (kind, trigger) in wanted {
                if kind == Kind::Heap && !heap_taken {
                    heap_taken = true;
                    self.admit_and_capture(kind, trigger);
                } else {
                    let _ = self.gate.try_begin(kind, trigger);
                }
            }
            // The endpoint's requests: bounded by its connection limit, and
            // a heap profile is milliseconds.
            for _ in 0..JOBS_PER_TICK {
                let Some(job) = self.next_job() else { break };
                match job.want {
                    Want::Cpu { .. } => job.answer(Err(Error::Busy)),
                    Want::Heap | Want::Allocs => self.serve_now(job),
                }
            }
            self.nap(TICK.min(until.saturating_duration_since(Instant::now())));
            // The sampler's buffers count towards the capture's peak.
            meter.read();
        }
        let capture = self.end_cpu(session)?;
        let sampled = Instant::now();
        let mut comments = vec![
            format!("trigger: {origin}"),
            format!("service: {}", self.outputs.service),
            format!("captured by firewatch-agent {}", env!("CARGO_PKG_VERSION")),
        ];
        if include_lookback && capture.lookback.is_none() {
            match (origin, self.config.lookback) {
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
            meter,
            || capture.to_profile(&comments),
        );
        drop(capture);
        add_comments(&mut profile, report.comments());
        Ok((profile, report, sampled))
    }

    /// Starts sampling for a capture: through the look-back sampler if it
    /// runs (one that fails is dropped, and restarted at a later check),
    /// else with a `CpuProfiler` of its own.
    fn begin_cpu(&mut self, include_lookback: bool) -> Result<CpuSession> {
        if let Some(sampler) = self.lookback.take() {
            match sampler.begin(self.config.cpu_hz, include_lookback) {
                Ok(()) => return Ok(CpuSession::Lookback(sampler)),
                // Dropped (its thread joined) as this scope ends.
                Err(e) => {
                    log::warn!("firewatch: look-back sampler: {e}; restarted at the next check")
                }
            }
        }
        Ok(CpuSession::Own(CpuProfiler::start(self.config.cpu_hz)?))
    }

    /// Stops sampling for a capture and returns it (the look-back sampler
    /// goes back to the worker).
    fn end_cpu(&mut self, session: CpuSession) -> Result<CpuCapture> {
        match session {
            CpuSession::Own(profiler) => profiler.stop_raw(),
            CpuSession::Lookback(sampler) => {
                let capture = sampler.end();
                if capture.is_ok() {
                    self.lookback = Some(sampler);
                }
                capture
            }
        }
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

    /// An endpoint request, between captures: served, then the captures
    /// merged into the gate while it ran (its CPU profile held the gate).
    fn serve(&mut self, job: Job) {
        self.serve_now(job);
        for (kind, trigger) in self.gate.take_pending() {
            self.request(kind, trigger);
        }
    }

    /// Takes the profile an endpoint request wants and answers it (a panic
    /// becomes a failed request, as for captures).
    fn serve_now(&mut self, job: Job) {
        let want = job.want;
        log::debug!("firewatch: {want} for {} started", Origin::Endpoint);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match want {
            Want::Cpu { duration, lookback } => self.endpoint_cpu(duration, lookback),
            Want::Heap | Want::Allocs => self.endpoint_heap(want),
        }))
        .unwrap_or(Err(Error::Skipped(SkipReason::CapturePanicked)));
        match &result {
            Err(Error::Busy) => {
                log::info!(
                    "firewatch: {want} for {}: a CPU profile is running",
                    Origin::Endpoint
                )
            }
            Err(e) => log::warn!("firewatch: {want} for {} failed: {e}", Origin::Endpoint),
            Ok(_) => {}
        }
        job.answer(result);
    }

    /// An endpoint CPU profile: its own seconds, and with `lookback`
    /// (`lookback=1`) the look-back sampler's window before them.
    fn endpoint_cpu(&mut self, duration: Duration, lookback: bool) -> Result<Vec<u8>> {
        // Between captures the gate is free. Holding it makes signals and
        // thresholds that fire during this profile merge, and run after.
        let Some(guard) = self.gate.try_begin(Kind::Cpu, Trigger::Manual) else {
            return Err(Error::Busy);
        };
        let built = self.cpu_profile(duration, Origin::Endpoint, lookback);
        drop(guard);
        let (profile, report, sampled) = built?;
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
    }

    fn endpoint_heap(&mut self, want: Want) -> Result<Vec<u8>> {
        let clock = Instant::now();
        let (mut profile, report) = self.heap_profile(Origin::Endpoint)?;
        if want == Want::Allocs {
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
