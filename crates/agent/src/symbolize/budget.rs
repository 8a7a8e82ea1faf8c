//! The memory a capture may take: a limit on what symbolization adds to
//! RSS, the symbol source per object that keeps within it, and the figures
//! a profile reports. Debug info was most of a capture's memory (72 of the
//! example's 81 MiB during one heap snapshot; docs/performance.md, "Agent:
//! memory per capture"), and triggers capture under load, unasked.
//!
//! Each object's names come from the best source that fits what the limit
//! has left, decided from [`super::cost`]'s estimates *before* loading:
//! debug info (inlined frames, files, lines), else the symbol table
//! ([`super::symtab`]), else addresses only (kept with mapping and build
//! ID for offline symbolization). The main executable is decided first.
//! What was left out is said in the profile's comments and once in the log.
//!
//! **Backstop**: estimates cannot see how many units lookups will parse, so
//! RSS (`/proc/self/statm`) is read after an object's first debug-info
//! lookup, after any slow lookup and every 64; past the limit, debug info is
//! dropped and the remaining addresses take the next source.
//!
//! **Measuring without disturbing**: resetting VmHWM in-process would change
//! the service's own `ru_maxrss`, so [`RssMeter`] reads RSS at points and
//! reports the highest (a peak between readings is missed);
//! `tests/capture_memory.rs` measures from outside with VmHWM.
//!
//! The limit reaches the profile builders through a per-thread scope
//! ([`capture`]) rather than a parameter through every builder; a
//! symbolizer made outside any scope (a library call, a test) is unlimited.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::cost::{self, Costs, DebugInfo};

/// A lookup slower than this parsed something: RSS is read after it.
const SLOW_LOOKUP: Duration = Duration::from_micros(100);
/// Debug-info lookups between two RSS readings, at most.
const CHECK_EVERY: u32 = 64;

/// Where an address's names come from, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Source {
    /// None: the address, its mapping and build ID only.
    Addresses,
    /// The object's symbol table: the out-of-line function's name.
    SymbolTable,
    /// Debug info: inlined frames, files and lines too.
    DebugInfo,
}

/// RSS readings over one capture: at its start and wherever the capture
/// asks, keeping the highest.
#[derive(Clone, Debug)]
pub(crate) struct RssMeter {
    start: Option<u64>,
    highest: Option<u64>,
    last: Option<u64>,
    reader: fn() -> Option<u64>,
}

impl RssMeter {
    /// A meter whose first reading is now.
    pub fn start() -> RssMeter {
        Self::with_reader(crate::process::rss_bytes)
    }

    fn with_reader(reader: fn() -> Option<u64>) -> RssMeter {
        let mut meter = RssMeter {
            start: None,
            highest: None,
            last: None,
            reader,
        };
        meter.start = meter.read();
        meter
    }

    /// Reads RSS now (`None` without `/proc`).
    pub fn read(&mut self) -> Option<u64> {
        let now = (self.reader)()?;
        self.highest = Some(self.highest.map_or(now, |h| h.max(now)));
        self.last = Some(now);
        Some(now)
    }

    pub fn start_bytes(&self) -> Option<u64> {
        self.start
    }

    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

/// Why an object got the source it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    /// The best there is for it (debug info, or the symbol table of an
    /// object without debug info): nothing to say.
    Best,
    /// Its debug info, estimated at this many bytes, would not fit.
    DebugInfoOverLimit(u64),
    /// The backstop dropped debug info during this capture.
    Stopped,
    /// Its symbol table, estimated at this many bytes, would not fit.
    TableOverLimit(u64),
    /// It has no symbol table and no debug info we could read.
    NoSymbols,
    /// Symbolization is off (`symbolize(false)`): addresses for offline
    /// symbolization.
    Off,
}

/// One object's part in a capture.
#[derive(Clone, Debug)]
struct Outcome {
    path: String,
    build_id: Option<String>,
    costs: Costs,
    source: Source,
    reason: Reason,
    /// Whether the backstop made it change source: decided again at its
    /// next lookup.
    redecide: bool,
    /// Addresses resolved from each [`Source`] (indexed by it).
    resolved: [u64; 3],
    debug_info_lookups: u64,
}

/// When the backstop dropped debug info.
#[derive(Clone, Copy, Debug)]
struct Stop {
    growth: u64,
    lookups: u64,
}

/// One capture's symbolization budget and what it did.
#[derive(Debug)]
pub(crate) struct CaptureMemory {
    limit: Option<u64>,
    /// `symbolize` setting: off leaves every address unnamed.
    symbolize: bool,
    meter: RssMeter,
    /// RSS when symbolization began: the limit bounds growth above it.
    base: Option<u64>,
    objects: Vec<Outcome>,
    since_check: u32,
    debug_info_lookups: u64,
    stopped: Option<Stop>,
    /// The scope ended: a symbolizer that outlived it is not limited.
    finished: bool,
}

impl CaptureMemory {
    /// Symbolization begins now: RSS read as the base the limit bounds.
    fn new(limit: Option<u64>, symbolize: bool, mut meter: RssMeter) -> CaptureMemory {
        let base = meter.read();
        CaptureMemory {
            limit,
            symbolize,
            meter,
            base,
            objects: Vec::new(),
            since_check: 0,
            debug_info_lookups: 0,
            stopped: None,
            finished: false,
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Mutex<CaptureMemory>>>> = const { RefCell::new(None) };
}

/// The capture in progress on this thread, if any.
pub(crate) fn current() -> Option<Arc<Mutex<CaptureMemory>>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// A poisoned lock only means a panic during a lookup; the state is whole.
pub(crate) fn lock(memory: &Mutex<CaptureMemory>) -> MutexGuard<'_, CaptureMemory> {
    memory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `build` (which makes the capture's profile) as one capture whose
/// symbolization may add at most `limit` bytes to RSS (`None`: no limit),
/// then releases what symbolization loaded ([`super::Symbolizer::release_debug_info`]).
/// `meter` started with the capture (a CPU profile's sampling came before).
pub(crate) fn capture<T>(
    limit: Option<u64>,
    symbolize: bool,
    meter: RssMeter,
    build: impl FnOnce() -> T,
) -> (T, CaptureReport) {
    super::set_shared_cache_budget(super::shared_cache_budget(limit));
    let memory = Arc::new(Mutex::new(CaptureMemory::new(limit, symbolize, meter)));
    /// Restores the previous scope, also when `build` panics.
    struct Scope(Option<Arc<Mutex<CaptureMemory>>>);
    impl Drop for Scope {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(Arc::clone(&memory)));
    let scope = Scope(previous);
    let started = Instant::now();
    let built = build();
    let took = started.elapsed();
    drop(scope);
    let mut m = lock(&memory);
    m.finished = true;
    let after_symbols = m.meter.read();
    super::Symbolizer::release_debug_info();
    m.meter.read();
    let report = CaptureReport {
        limit,
        symbolize: m.symbolize,
        meter: m.meter.clone(),
        base: m.base,
        after_symbols,
        objects: std::mem::take(&mut m.objects),
        stopped: m.stopped,
        took,
    };
    drop(m);
    report.log_once();
    (built, report)
}

impl CaptureMemory {
    /// Decides the main executable's source first: it holds most addresses.
    pub fn begin_profile(&mut self, main: Option<(&str, Option<&str>)>) {
        if let Some((path, build_id)) = main {
            self.source_for(path, build_id);
        }
    }

    /// The source for addresses of the object mapped from `path`, decided at
    /// its first address in this capture (see the module doc).
    pub fn source_for(&mut self, path: &str, build_id: Option<&str>) -> Source {
        if self.finished {
            return Source::DebugInfo;
        }
        if let Some(i) = self.find(path, build_id) {
            if !self.objects[i].redecide {
                return self.objects[i].source;
            }
            // The backstop took debug info away: the next source that fits.
            let costs = self.objects[i].costs.clone();
            let (source, _) = self.decide(&costs);
            let o = &mut self.objects[i];
            (o.source, o.reason, o.redecide) = (source, Reason::Stopped, false);
            return source;
        }
        let (costs, (source, reason)) = if self.symbolize {
            let costs = cost::of(path, build_id);
            let decided = self.decide(&costs);
            (costs, decided)
        } else {
            // Not even sized: nothing of it will be read.
            let costs = Costs {
                debug_info: DebugInfo::Absent,
                symbol_table: None,
                debug_file: None,
            };
            (costs, (Source::Addresses, Reason::Off))
        };
        self.objects.push(Outcome {
            path: path.to_string(),
            build_id: build_id.map(str::to_string),
            costs,
            source,
            reason,
            redecide: false,
            resolved: [0; 3],
            debug_info_lookups: 0,
        });
        source
    }

    /// For an address in no known object: debug info when unlimited (as
    /// before), else nothing (no file to size or read).
    pub fn source_outside_objects(&self) -> Source {
        if !self.symbolize && !self.finished {
            Source::Addresses
        } else if self.limit.is_none() || self.finished {
            Source::DebugInfo
        } else {
            Source::Addresses
        }
    }

    /// Counts an address of `path` resolved from `source`.
    pub fn resolved(&mut self, path: &str, build_id: Option<&str>, source: Source) {
        if let Some(i) = self.find(path, build_id) {
            self.objects[i].resolved[source as usize] += 1;
        }
    }

    /// After a debug-info lookup in `path` that took `elapsed`: the
    /// backstop's reading, when one is due.
    pub fn after_debug_info_lookup(
        &mut self,
        path: &str,
        build_id: Option<&str>,
        elapsed: Duration,
    ) {
        if self.finished {
            return;
        }
        self.debug_info_lookups += 1;
        self.since_check += 1;
        let first = self.find(path, build_id).is_some_and(|i| {
            self.objects[i].debug_info_lookups += 1;
            self.objects[i].debug_info_lookups == 1
        });
        if !(first || elapsed >= SLOW_LOOKUP || self.since_check >= CHECK_EVERY) {
            return;
        }
        self.since_check = 0;
        let previous = self.meter.last();
        let growth = self.growth_now();
        if first {
            // What the estimate is checked against (calibration, `cost`).
            let added = self
                .meter
                .last()
                .zip(previous)
                .map(|(now, then)| now.saturating_sub(then));
            let estimate = self
                .find(path, build_id)
                .map(|i| self.objects[i].costs.debug_info);
            log::debug!(
                "firewatch: first debug-info lookup in {path} took {elapsed:?}, RSS {}: estimated {estimate:?}",
                added.map_or_else(|| "unknown".into(), |a| format!("+{}", mib(a)))
            );
        }
        if self.stopped.is_none() && self.limit.is_some_and(|limit| growth > limit) {
            // Process-wide: other users of `backtrace` just reload lazily.
            backtrace::clear_symbol_cache();
            self.stopped = Some(Stop {
                growth,
                lookups: self.debug_info_lookups,
            });
            for o in &mut self.objects {
                if o.source == Source::DebugInfo {
                    o.redecide = true;
                }
            }
        }
    }

    fn find(&self, path: &str, build_id: Option<&str>) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| o.path == path && o.build_id.as_deref() == build_id)
    }

    /// RSS growth since symbolization began, read now.
    fn growth_now(&mut self) -> u64 {
        match (self.meter.read(), self.base) {
            (Some(now), Some(base)) => now.saturating_sub(base),
            _ => 0,
        }
    }

    fn decide(&mut self, costs: &Costs) -> (Source, Reason) {
        let Some(limit) = self.limit else {
            return (Source::DebugInfo, Reason::Best);
        };
        let growth = self.growth_now();
        let fits = |bytes: u64| growth.saturating_add(bytes) <= limit;
        let why_not_debug_info = match costs.debug_info {
            DebugInfo::Absent => Reason::Best,
            _ if self.stopped.is_some() => Reason::Stopped,
            DebugInfo::Bytes(n) if fits(n) => return (Source::DebugInfo, Reason::Best),
            DebugInfo::Bytes(n) => Reason::DebugInfoOverLimit(n),
            // Not sized: tried, under the backstop's watch.
            DebugInfo::Unknown => return (Source::DebugInfo, Reason::Best),
        };
        match costs.symbol_table {
            Some(table) if fits(table) => (Source::SymbolTable, why_not_debug_info),
            Some(table) => (Source::Addresses, Reason::TableOverLimit(table)),
            None => (Source::Addresses, Reason::NoSymbols),
        }
    }
}

/// What a capture's symbolization did, for the profile's comments and the
/// log.
#[derive(Clone, Debug)]
pub(crate) struct CaptureReport {
    limit: Option<u64>,
    symbolize: bool,
    /// The capture's readings; the agent reads once more after writing.
    pub meter: RssMeter,
    base: Option<u64>,
    after_symbols: Option<u64>,
    objects: Vec<Outcome>,
    stopped: Option<Stop>,
    /// How long building the profile took, symbolization included.
    pub took: Duration,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn shown(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unknown".into(), mib)
}

impl CaptureReport {
    /// Whether some object was left with addresses only although it has
    /// symbols (the limit): heap stacks through it keep their plumbing.
    pub fn left_addresses_only(&self) -> bool {
        self.objects
            .iter()
            .any(|o| o.resolved[Source::Addresses as usize] > 0 && o.reason != Reason::NoSymbols)
    }

    /// The peak over the capture's start, when both are known.
    pub fn peak_growth(&self) -> Option<u64> {
        Some(
            self.meter
                .highest()?
                .saturating_sub(self.meter.start_bytes()?),
        )
    }

    /// The profile's comments: the memory figures, how they were read, and
    /// one line per object whose names the limit cut short.
    pub fn comments(&self) -> Vec<String> {
        let limit = self.limit.map_or_else(
            || "no limit (capture_memory_limit off)".into(),
            |l| format!("symbolization may add {} (capture_memory_limit)", mib(l)),
        );
        let mut out = vec![
            format!(
                "firewatch: capture memory: RSS {} at the start, {} when symbolization began, \
                 highest seen {} (+{} over the start), {} after symbolization; {limit}; \
                 building the profile, symbolization included, took {} ms",
                shown(self.meter.start_bytes()),
                shown(self.base),
                shown(self.meter.highest()),
                shown(self.peak_growth()),
                shown(self.after_symbols),
                self.took.as_millis(),
            ),
            "firewatch: capture memory is RSS from /proc/self/statm (VmHWM is left alone), read \
             at the capture's start, every 100 ms while a CPU profile samples, before and after \
             symbolization, after each object's first debug-info lookup and every 64 lookups; \
             growth between readings is not seen"
                .into(),
        ];
        if !self.symbolize {
            out.push(
                "firewatch: symbolize off: frames are addresses with their mapping and build ID, \
                 to be named offline: firewatch analyze --symbols BINARY_OR_DEBUG_FILE (or \
                 go tool pprof with the binary)"
                    .into(),
            );
        }
        if let Some(stop) = self.stopped {
            out.push(format!(
                "firewatch: symbolization stopped using debug info after {} lookups: RSS had grown \
                 by {}, over the limit; the remaining addresses were named from symbol tables, \
                 or left as addresses where even those did not fit",
                stop.lookups,
                mib(stop.growth)
            ));
        }
        out.extend(self.objects.iter().filter_map(|o| self.object_comment(o)));
        out
    }

    fn object_comment(&self, o: &Outcome) -> Option<String> {
        let named = |source: Source| o.resolved[source as usize];
        let total: u64 = o.resolved.iter().sum();
        if total == 0 {
            return None;
        }
        let id = o.build_id.as_deref().map_or_else(
            || " (no build ID)".to_string(),
            |id| format!(" (build ID {id})"),
        );
        let object = format!("firewatch: symbols of {}{id}", o.path);
        let limit = shown(self.limit);
        Some(match o.reason {
            Reason::Best => return None,
            Reason::DebugInfoOverLimit(n) => format!(
                "{object}: function names from its symbol table only, no inlined frames, files or \
                 lines ({} addresses): loading its debug info would add about {}, over the \
                 capture memory limit ({limit})",
                named(Source::SymbolTable),
                mib(n)
            ),
            Reason::Stopped => format!(
                "{object}: {} addresses named from its debug info, then {} from its symbol table \
                 only and {} left as addresses: the capture reached its memory limit ({limit})",
                named(Source::DebugInfo),
                named(Source::SymbolTable),
                named(Source::Addresses)
            ),
            Reason::TableOverLimit(n) => format!(
                "{object}: no names, {} addresses with their mapping and build ID only, for \
                 offline symbolization: reading its symbol table would add about {}, over what \
                 the capture memory limit ({limit}) had left",
                named(Source::Addresses) + named(Source::SymbolTable),
                mib(n)
            ),
            Reason::NoSymbols => format!(
                "{object}: no names, {total} addresses with their mapping and build ID only: it \
                 has no symbol table or debug info this process can read"
            ),
            // Said once for the whole profile (`comments`).
            Reason::Off => return None,
        })
    }

    /// Says each object's cut once per process (the first capture it
    /// happens in), at `info`.
    fn log_once(&self) {
        static SAID: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);
        let mut said = SAID.lock().unwrap_or_else(PoisonError::into_inner);
        for o in &self.objects {
            let Some(comment) = self.object_comment(o) else {
                continue;
            };
            let key = format!(
                "{}\0{:?}\0{:?}",
                o.path,
                o.build_id,
                std::mem::discriminant(&o.reason)
            );
            if said.len() < 4096 && said.insert(key) {
                let hint = if self.limit.is_some() {
                    "; raise capture_memory_limit (FIREWATCH_CAPTURE_MEMORY_LIMIT) for more"
                } else {
                    ""
                };
                log::info!("{comment}{hint} (said once)");
            }
        }
    }

    /// One line for the log once the profile is written (to a file, or as
    /// an endpoint's response): the figures, with the reading taken then.
    pub fn summary(&self) -> String {
        format!(
            "RSS {} at the start, highest seen {} (+{}), {} when written",
            shown(self.meter.start_bytes()),
            shown(self.meter.highest()),
            shown(self.peak_growth()),
            shown(self.meter.last()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        static FAKE_RSS: Cell<u64> = const { Cell::new(100 << 20) };
    }

    fn fake_rss() -> Option<u64> {
        Some(FAKE_RSS.with(Cell::get))
    }

    fn set_rss(bytes: u64) {
        FAKE_RSS.with(|r| r.set(bytes));
    }

    fn memory(limit: Option<u64>) -> CaptureMemory {
        set_rss(100 << 20);
        CaptureMemory::new(limit, true, RssMeter::with_reader(fake_rss))
    }

    fn costs(debug_info: DebugInfo, table: Option<u64>) -> Costs {
        Costs {
            debug_info,
            symbol_table: table,
            debug_file: None,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn each_object_gets_the_best_source_that_fits() {
        let mut m = memory(Some(8 * MIB));
        let small = costs(DebugInfo::Bytes(6 * MIB), Some(MIB));
        let big = costs(DebugInfo::Bytes(30 * MIB), Some(MIB));
        let stripped = costs(DebugInfo::Absent, Some(MIB / 4));
        let nothing = costs(DebugInfo::Absent, None);
        assert_eq!(m.decide(&small), (Source::DebugInfo, Reason::Best));
        assert_eq!(
            m.decide(&big),
            (Source::SymbolTable, Reason::DebugInfoOverLimit(30 * MIB))
        );
        assert_eq!(m.decide(&stripped), (Source::SymbolTable, Reason::Best));
        assert_eq!(m.decide(&nothing), (Source::Addresses, Reason::NoSymbols));
        // 7.5 MiB already used: a 1 MiB table no longer fits.
        set_rss((100 << 20) + 7 * MIB + MIB / 2);
        assert_eq!(
            m.decide(&big),
            (Source::Addresses, Reason::TableOverLimit(MIB))
        );
        assert_eq!(m.decide(&stripped), (Source::SymbolTable, Reason::Best));
        // No limit: debug info for all, as before the limit existed.
        let mut m = memory(None);
        assert_eq!(m.decide(&big), (Source::DebugInfo, Reason::Best));
        assert_eq!(m.decide(&nothing), (Source::DebugInfo, Reason::Best));
        assert_eq!(m.source_outside_objects(), Source::DebugInfo);
        assert_eq!(
            memory(Some(MIB)).source_outside_objects(),
            Source::Addresses
        );
    }

    #[test]
    fn the_backstop_drops_debug_info_once_rss_grows_past_the_limit() {
        let mut m = memory(Some(8 * MIB));
        // Sized debug info that fits: chosen (the real file of this test
        // binary: any path works for the backstop).
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        m.objects.push(Outcome {
            path: exe.into(),
            build_id: None,
            costs: costs(DebugInfo::Bytes(MIB), Some(MIB / 8)),
            source: Source::DebugInfo,
            reason: Reason::Best,
            redecide: false,
            resolved: [0; 3],
            debug_info_lookups: 0,
        });
        assert_eq!(m.source_for(exe, None), Source::DebugInfo);
        // Fast lookups under the limit: read at the first and every 64th.
        for _ in 0..100 {
            m.after_debug_info_lookup(exe, None, Duration::from_micros(3));
            m.resolved(exe, None, Source::DebugInfo);
        }
        assert!(m.stopped.is_none());
        // A slow lookup parsed a large unit: RSS is 9 MiB up.
        set_rss((100 << 20) + 9 * MIB);
        m.after_debug_info_lookup(exe, None, Duration::from_millis(3));
        let stop = m.stopped.expect("stopped");
        assert_eq!((stop.growth, stop.lookups), (9 * MIB, 101));
        // Still over the limit: not even the symbol table fits now.
        assert_eq!(m.source_for(exe, None), Source::Addresses);
        m.resolved(exe, None, Source::Addresses);
        let report = CaptureReport {
            limit: m.limit,
            symbolize: true,
            meter: m.meter.clone(),
            base: m.base,
            after_symbols: m.meter.last(),
            objects: m.objects.clone(),
            stopped: m.stopped,
            took: Duration::ZERO,
        };
        let comments = report.comments().join("\n");
        assert!(
            comments.contains("stopped using debug info after 101 lookups"),
            "{comments}"
        );
        assert!(
            comments.contains("100 addresses named from its debug info"),
            "{comments}"
        );
        assert!(comments.contains("1 left as addresses"), "{comments}");
        assert!(report.left_addresses_only());
        assert_eq!(report.peak_growth(), Some(9 * MIB));
    }

    #[test]
    fn a_scope_limits_symbolizers_made_inside_it_and_reports() {
        assert!(current().is_none());
        let ((), report) = capture(Some(64 << 10), true, RssMeter::start(), || {
            let memory = current().expect("inside the scope");
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let mut m = lock(&memory);
            // This test binary's debug info and symbol table are both far
            // larger than 64 KiB.
            assert_eq!(m.source_for(exe.to_str().unwrap(), None), Source::Addresses);
            m.resolved(exe.to_str().unwrap(), None, Source::Addresses);
        });
        assert!(current().is_none(), "the scope is gone");
        let comments = report.comments();
        assert!(
            comments[0].starts_with("firewatch: capture memory: RSS "),
            "{comments:?}"
        );
        assert!(
            comments[0].contains("symbolization may add 0.1 MiB"),
            "{comments:?}"
        );
        assert!(
            comments.iter().any(|c| c.contains("no names, 1 addresses")),
            "{comments:?}"
        );
        assert!(report.left_addresses_only());
        // A panic inside the scope does not leave it installed.
        let caught = std::panic::catch_unwind(|| {
            capture(None, true, RssMeter::start(), || {
                panic!("a bug while building")
            })
        });
        assert!(caught.is_err());
        assert!(current().is_none());
    }

    /// `symbolize(false)`: no object is read or sized, every address of an
    /// object stays an address, and the profile says how to name them.
    #[test]
    fn symbolize_off_leaves_addresses_and_says_so() {
        let exe = "/usr/bin/service";
        let ((), report) = capture(None, false, RssMeter::start(), || {
            let memory = current().expect("inside a capture");
            let mut m = lock(&memory);
            assert_eq!(m.source_for(exe, Some("abcd")), Source::Addresses);
            assert_eq!(m.source_outside_objects(), Source::Addresses);
            m.resolved(exe, Some("abcd"), Source::Addresses);
        });
        assert!(report.left_addresses_only());
        let comments = report.comments().join("\n");
        assert!(
            comments.contains("symbolize off") && comments.contains("--symbols"),
            "{comments}"
        );
        assert!(!comments.contains("capture memory limit ("), "{comments}");
    }
}
