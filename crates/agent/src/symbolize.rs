//! In-process symbolization: program counter → function names, files and
//! lines, with inlined functions expanded. Profiles carry addresses,
//! mappings and build IDs first of all (for offline symbolizers); names are
//! added so a file reads as-is. This is the expensive half of a capture
//! (first lookup in a binary: tens of ms and tens of MiB; docs/performance.md,
//! "Symbolization cost"), hence the rules:
//!
//! - **Never from a signal handler**: `backtrace::resolve` locks, allocates
//!   and maps files.
//! - **A limit per capture** (`capture_memory_limit`, `symbolize/budget.rs`):
//!   each object gets the best source of names that fits, decided from its
//!   section headers before anything is loaded (`symbolize/cost.rs`): debug
//!   info, else its symbol table (`symbolize/symtab.rs`: functions with
//!   their path, no inlined frames or lines), else addresses only. The file
//!   readers take a path and a build ID, not this process's state, so an
//!   offline symbolizer can use them too.
//! - **Give memory back**: [`Symbolizer::release_debug_info`] after each
//!   profile; [`Symbolizer::shared`] keeps only resolved frames, per mapping
//!   and within [`SHARED_CACHE_BUDGET`].
//! - **Stale modules**: `backtrace` lists loaded objects once per process,
//!   so a library `dlopen`ed later resolves to nothing here (its addresses
//!   and mapping are still in the profile).
//! - **Names keep their path**: with line tables only, debug info names
//!   `remember_session`; the outermost frame then takes the symbol table's
//!   `service::remember_session`, which also tells allocation plumbing apart
//!   ([`crate::heap::is_allocation_plumbing_frame`] for inlined frames).
//!
//! Addresses are looked up **exactly** (`backtrace::resolve` subtracts one;
//! this module adds it back, so a leaf PC at a function's first byte stays
//! in that function); callers pass `return address - 1` for non-leaf frames
//! ([`crate::stacks_to_profile`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use crate::process::Mapping;

pub(crate) mod budget;
mod cost;
mod debug_file;
mod symtab;

use budget::{CaptureMemory, Source};

/// Byte budget of the process-wide cache of resolved frames (see
/// [`Symbolizer::shared`]). An address costs ~600 bytes as counted (two
/// names, a file path, overhead; measured in `tests/heap_stress.rs`: 1,093
/// addresses, 645 KiB), so 8 MiB holds ~14,000 addresses, several busy
/// profiles' worth. Under a capture memory limit the cache gets a quarter
/// of the limit, at most this: it stays in RSS
/// between captures.
pub const SHARED_CACHE_BUDGET: usize = 8 << 20;

/// The shared cache's byte budget under a capture memory limit of `limit`
/// bytes (`None`: no limit).
pub(crate) fn shared_cache_budget(limit: Option<u64>) -> usize {
    limit.map_or(SHARED_CACHE_BUDGET, |l| {
        usize::try_from(l / 4).map_or(SHARED_CACHE_BUDGET, |b| b.min(SHARED_CACHE_BUDGET))
    })
}

/// Gives the process-wide cache a new byte budget (emptied if over it).
pub(crate) fn set_shared_cache_budget(budget: usize) {
    let mut cache = lock(&SHARED_CACHE);
    if cache.budget != budget {
        cache.budget = budget;
        if cache.bytes > budget {
            cache.clear();
        }
    }
}

/// One function at an address: the function the instruction belongs to, or
/// one of the functions inlined into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Demangled, without the legacy-mangling hash suffix
    /// (`core::ptr::drop_in_place<alloc::vec::Vec<u8>>`).
    pub name: String,
    /// The name as the linker knows it (mangled), or the same as `name` for a
    /// symbol that is not mangled (C).
    pub system_name: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line, when debug info has it.
    pub line: Option<u32>,
}

#[cfg(test)]
impl Frame {
    /// A frame named `name` (mangled the same) in `file`, line 1.
    pub(crate) fn for_test(name: &str, file: &str) -> Frame {
        Frame {
            name: name.into(),
            system_name: name.into(),
            file: Some(file.into()),
            line: Some(1),
        }
    }
}

/// Resolves addresses of the running process, caching each answer.
///
/// Build one per profile, on the agent thread or the caller's (never in a
/// signal handler nor inside the allocator). [`Symbolizer::shared`] also
/// reuses what earlier profiles resolved, which is what makes a second heap
/// snapshot cost only its new addresses; [`Symbolizer::new`] starts empty.
#[derive(Debug, Default)]
pub struct Symbolizer {
    /// This profile's answers: each address takes the shared lock at most
    /// once per profile.
    local: HashMap<u64, Arc<Resolved>>,
    shared: Option<Shared>,
    /// The capture this profile belongs to, when made inside one
    /// ([`budget::capture`]): what it may load.
    memory: Option<Arc<Mutex<CaptureMemory>>>,
}

/// What an address resolved to, shared between a profile and the cache.
#[derive(Debug)]
struct Resolved {
    frames: Box<[Frame]>,
    /// [`Symbolizer::plumbing_depth`], computed on first use: heap snapshots
    /// ask it for every frame of every record.
    plumbing: OnceLock<usize>,
    /// Where the frames came from: a cached answer from a lesser source
    /// than a later capture may use is looked up again.
    source: Source,
}

/// The process-wide cache behind [`Symbolizer::shared`].
static SHARED_CACHE: LazyLock<Arc<Mutex<SymbolCache>>> =
    LazyLock::new(|| Arc::new(Mutex::new(SymbolCache::new(SHARED_CACHE_BUDGET))));

/// A profile's handle on the process-wide cache.
#[derive(Debug)]
struct Shared {
    cache: Arc<Mutex<SymbolCache>>,
    /// The profile's mappings, sorted by start: an address is cached under
    /// the identity of the mapping that contains it, or not at all.
    objects: Vec<ObjectKey>,
    /// This profile's number, stamped on the entries it uses.
    profile: u64,
}

impl Symbolizer {
    /// A symbolizer with a cache of its own, empty: every address is looked
    /// up once per symbolizer.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// A symbolizer backed by the process-wide cache of resolved frames,
    /// for a profile of `mappings` (the current [`crate::process::current_mappings`]).
    ///
    /// Entries are kept per mapping identity (start, end, file offset, inode,
    /// path, build ID), so a library unloaded and another loaded at the same
    /// address never shares answers; entries of mappings absent from
    /// `mappings` are dropped here. Addresses outside `mappings` are resolved
    /// but not shared.
    ///
    /// Memory: the cache holds only resolved names, files and lines, never
    /// debug info ([`Symbolizer::release_debug_info`] still frees that), and
    /// at most [`SHARED_CACHE_BUDGET`] bytes as counted (string capacities
    /// plus a fixed overhead per entry and per mapping; hash-table slack
    /// comes on top). Over budget it evicts the entries the running profile
    /// has not used, oldest profile first, then everything.
    ///
    /// Made inside a capture (as the agent makes its profiles: see
    /// `symbolize/budget.rs`), it loads only what the capture's memory
    /// limit allows: each object's names come from its debug info, its
    /// symbol table, or not at all.
    pub fn shared(mappings: &[Mapping]) -> Self {
        let mut symbolizer = Self::with_cache(Arc::clone(&SHARED_CACHE), mappings);
        symbolizer.memory = budget::current();
        if let Some(memory) = &symbolizer.memory {
            let main = mappings
                .first()
                .map(|m| (m.path.as_str(), m.build_id.as_deref()));
            budget::lock(memory).begin_profile(main);
        }
        symbolizer
    }

    /// Empties the process-wide cache [`Symbolizer::shared`] keeps, giving
    /// its memory back; the next profile resolves every address again. For
    /// a service that needs the memory, and for tests that check the heap
    /// returns to where it started (the cache is live memory, and sampled),
    /// through `testing` (Linux x86_64/aarch64 only).
    #[cfg_attr(
        not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )),
        allow(dead_code)
    )]
    pub fn clear_shared_cache() {
        lock(&SHARED_CACHE).clear();
    }

    /// A symbolizer that answers `frames` for each given address (tests of
    /// what is built from the answers).
    #[cfg(test)]
    pub(crate) fn with_answers(answers: impl IntoIterator<Item = (u64, Vec<Frame>)>) -> Self {
        let local = answers
            .into_iter()
            .map(|(addr, frames)| {
                let resolved = Resolved {
                    frames: frames.into_boxed_slice(),
                    plumbing: OnceLock::new(),
                    source: Source::DebugInfo,
                };
                (addr, Arc::new(resolved))
            })
            .collect();
        Symbolizer {
            local,
            shared: None,
            memory: None,
        }
    }

    /// [`Symbolizer::shared`] over a given cache (tests inject small ones).
    fn with_cache(cache: Arc<Mutex<SymbolCache>>, mappings: &[Mapping]) -> Self {
        let mut objects: Vec<ObjectKey> = mappings.iter().map(ObjectKey::from).collect();
        objects.sort_by_key(|o| o.start);
        let profile = lock(&cache).begin_profile(&objects);
        Symbolizer {
            local: HashMap::new(),
            shared: Some(Shared {
                cache,
                objects,
                profile,
            }),
            memory: None,
        }
    }

    /// The functions at exactly `addr`, innermost (inlined callee) first and
    /// the out-of-line function last; empty when the address is in no loaded
    /// object or the object has neither debug info nor a symbol for it.
    pub fn resolve(&mut self, addr: u64) -> &[Frame] {
        &self.resolved(addr).frames
    }

    /// Whether the location at `addr` is allocation plumbing: it resolved,
    /// and its out-of-line function and every function inlined into it are
    /// ([`crate::heap::is_allocation_plumbing_frame`]).
    pub fn is_allocation_plumbing(&mut self, addr: u64) -> bool {
        let depth = self.plumbing_depth(addr);
        depth > 0 && depth == self.resolved(addr).frames.len()
    }

    /// How many of the frames at `addr`, innermost first, are allocation
    /// plumbing before the first that is not: 0 when the innermost is not,
    /// all of them when the location is plumbing through and through. In
    /// between, plumbing was inlined into the caller (`Vec::with_capacity`
    /// into the function that made the vector), and a heap snapshot whose
    /// stack ends there leaves those frames out of its leaf. Computed once
    /// per address while the address stays cached, not once per record.
    pub fn plumbing_depth(&mut self, addr: u64) -> usize {
        let resolved = self.resolved(addr);
        *resolved.plumbing.get_or_init(|| {
            resolved
                .frames
                .iter()
                .take_while(|f| crate::heap::is_allocation_plumbing_frame(f))
                .count()
        })
    }

    fn resolved(&mut self, addr: u64) -> &Resolved {
        let shared = self.shared.as_ref();
        let memory = self.memory.as_deref();
        self.local.entry(addr).or_insert_with(|| match shared {
            Some(shared) => shared.resolve(addr, memory),
            None => Arc::new(lookup(addr, Source::DebugInfo)),
        })
    }

    /// Number of distinct addresses resolved so far.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Drops the debug info `backtrace` has parsed, process-wide (its cache is
    /// global; other users of the crate just reload lazily). The next
    /// resolution of an address not in the shared cache pays the
    /// first-lookup cost again; the shared cache of resolved frames (small,
    /// bounded) is kept. Most of the freed memory stays in glibc's arenas
    /// unless [`Symbolizer::trim_heap`] follows (measured: RSS 68 MiB → 31
    /// MiB without, → 7 MiB with).
    pub fn release_debug_info() {
        backtrace::clear_symbol_cache();
        symtab::clear();
    }

    /// Asks glibc to return freed heap to the system (`malloc_trim(0)`).
    /// It walks every arena under its lock, so on a large heap allocating
    /// threads can stall meanwhile: the agent does it only when asked
    /// (`malloc_trim(true)`, `FIREWATCH_MALLOC_TRIM=1`).
    pub fn trim_heap() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions; it takes glibc's arena
        // locks itself. With another global allocator it only trims what
        // glibc holds, which is harmless.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

impl Shared {
    /// `addr` from the cache, or looked up (from the source the capture's
    /// budget allows, if any) and cached. The locks are not held during the
    /// lookup: `backtrace` allocates, takes its own lock and may parse
    /// DWARF for a long time, and other profiles may use the cache
    /// meanwhile.
    fn resolve(&self, addr: u64, memory: Option<&Mutex<CaptureMemory>>) -> Arc<Resolved> {
        let after = self.objects.partition_point(|o| o.start <= addr);
        let object = after
            .checked_sub(1)
            .map(|i| &self.objects[i])
            .filter(|o| o.start <= addr && addr < o.end);
        let Some(object) = object else {
            let source = memory.map_or(Source::DebugInfo, |m| {
                budget::lock(m).source_outside_objects()
            });
            return Arc::new(lookup(addr, source));
        };
        let (path, build_id) = (object.path.as_str(), object.build_id.as_deref());
        let source = memory.map_or(Source::DebugInfo, |m| {
            budget::lock(m).source_for(path, build_id)
        });
        let hit = lock(&self.cache).get(object, addr, self.profile);
        if let Some(hit) = hit.filter(|hit| hit.source >= source) {
            if let Some(m) = memory {
                budget::lock(m).resolved(path, build_id, hit.source);
            }
            return hit;
        }
        let started = Instant::now();
        let fresh = Arc::new(lookup(addr, source));
        if let Some(m) = memory {
            let mut m = budget::lock(m);
            m.resolved(path, build_id, source);
            if source == Source::DebugInfo {
                m.after_debug_info_lookup(path, build_id, started.elapsed());
            }
        }
        // No names only because of the limit: not worth keeping.
        if source == Source::Addresses {
            return fresh;
        }
        lock(&self.cache).insert(object, addr, fresh, self.profile)
    }
}

/// A poisoned lock only means a thread panicked while holding it; every
/// update leaves the cache usable (at worst its byte count is off until the
/// next clear), so the agent goes on.
fn lock(cache: &Mutex<SymbolCache>) -> MutexGuard<'_, SymbolCache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The identity of a mapped object: two mappings with the same key map the
/// same bytes of the same file at the same place, so they resolve alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ObjectKey {
    start: u64,
    end: u64,
    offset: u64,
    inode: u64,
    path: String,
    build_id: Option<String>,
}

impl From<&Mapping> for ObjectKey {
    fn from(m: &Mapping) -> Self {
        ObjectKey {
            start: m.start,
            end: m.end,
            offset: m.offset,
            inode: m.inode,
            path: m.path.clone(),
            build_id: m.build_id.clone(),
        }
    }
}

/// Resolved frames by mapping identity and address, within a byte budget.
#[derive(Debug)]
struct SymbolCache {
    budget: usize,
    /// Counted bytes of everything held (see [`entry_bytes`], [`object_bytes`]).
    bytes: usize,
    /// Profiles started so far; the last one's number is the newest.
    profiles: u64,
    objects: HashMap<ObjectKey, Object>,
}

#[derive(Debug, Default)]
struct Object {
    entries: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    resolved: Arc<Resolved>,
    /// What the entry counts for in [`SymbolCache::bytes`].
    bytes: usize,
    /// The newest profile that used it.
    last_profile: u64,
}

impl SymbolCache {
    fn new(budget: usize) -> Self {
        SymbolCache {
            budget,
            bytes: 0,
            profiles: 0,
            objects: HashMap::new(),
        }
    }

    /// Drops every entry and the tables' memory.
    fn clear(&mut self) {
        self.objects = HashMap::new();
        self.bytes = 0;
    }

    /// Starts a profile over the mappings `current`: drops the objects no
    /// longer mapped, returns the profile's number.
    fn begin_profile(&mut self, current: &[ObjectKey]) -> u64 {
        let current: HashSet<&ObjectKey> = current.iter().collect();
        let bytes = &mut self.bytes;
        self.objects.retain(|key, object| {
            let keep = current.contains(key);
            if !keep {
                *bytes = bytes.saturating_sub(object.bytes(key));
            }
            keep
        });
        self.profiles += 1;
        self.profiles
    }

    fn get(&mut self, key: &ObjectKey, addr: u64, profile: u64) -> Option<Arc<Resolved>> {
        let entry = self.objects.get_mut(key)?.entries.get_mut(&addr)?;
        entry.last_profile = entry.last_profile.max(profile);
        Some(Arc::clone(&entry.resolved))
    }

    /// Caches `resolved` unless another profile cached `addr` first from as
    /// good a source (then returns that) or it alone exceeds the budget.
    /// An answer from a lesser source is replaced.
    fn insert(
        &mut self,
        key: &ObjectKey,
        addr: u64,
        resolved: Arc<Resolved>,
        profile: u64,
    ) -> Arc<Resolved> {
        if let Some(hit) = self.get(key, addr, profile) {
            if hit.source >= resolved.source {
                return hit;
            }
            if let Some(old) = self
                .objects
                .get_mut(key)
                .and_then(|o| o.entries.remove(&addr))
            {
                self.bytes = self.bytes.saturating_sub(old.bytes);
            }
        }
        let bytes = entry_bytes(&resolved.frames);
        // The mapping's key counts too when it is new (or was just evicted).
        let needed = |cache: &Self| {
            bytes
                + if cache.objects.contains_key(key) {
                    0
                } else {
                    object_bytes(key)
                }
        };
        self.make_room(needed(self), profile);
        if self.bytes + needed(self) > self.budget {
            return resolved;
        }
        let object = match self.objects.get_mut(key) {
            Some(object) => object,
            None => {
                self.bytes += object_bytes(key);
                self.objects.entry(key.clone()).or_default()
            }
        };
        object.entries.insert(
            addr,
            Entry {
                resolved: Arc::clone(&resolved),
                bytes,
                last_profile: profile,
            },
        );
        self.bytes += bytes;
        resolved
    }

    /// Makes room for `needed` more bytes. First the entries that `profile`
    /// has not used go, oldest profile first, down to three quarters of the
    /// budget so the next insertions do not scan again; if even all of them
    /// are not enough, everything goes.
    fn make_room(&mut self, needed: usize, profile: u64) {
        if self.bytes + needed <= self.budget {
            return;
        }
        let mut stale_by_profile: BTreeMap<u64, usize> = BTreeMap::new();
        for entry in self.objects.values().flat_map(|o| o.entries.values()) {
            if entry.last_profile < profile {
                *stale_by_profile.entry(entry.last_profile).or_default() += entry.bytes;
            }
        }
        let stale: usize = stale_by_profile.values().sum();
        if self.bytes.saturating_sub(stale) + needed > self.budget {
            self.clear();
            return;
        }
        // Evict entries last used before `cutoff`.
        let low_water = self.budget - self.budget / 4;
        let (mut cutoff, mut left) = (0, self.bytes);
        for (&last_profile, &bytes) in &stale_by_profile {
            if left + needed <= low_water {
                break;
            }
            left = left.saturating_sub(bytes);
            cutoff = last_profile + 1;
        }
        let total = &mut self.bytes;
        self.objects.retain(|key, object| {
            object.entries.retain(|_, entry| {
                let keep = entry.last_profile >= cutoff;
                if !keep {
                    *total = total.saturating_sub(entry.bytes);
                }
                keep
            });
            object.entries.shrink_to_fit();
            let keep = !object.entries.is_empty();
            if !keep {
                *total = total.saturating_sub(object_bytes(key));
            }
            keep
        });
    }
}

impl Object {
    /// Everything this object counts for, its key included.
    fn bytes(&self, key: &ObjectKey) -> usize {
        object_bytes(key) + self.entries.values().map(|e| e.bytes).sum::<usize>()
    }
}

/// Counted size of one cached address: its strings (capacity), the frames,
/// and a fixed overhead (the table slot, the shared allocation and its
/// reference counts).
fn entry_bytes(frames: &[Frame]) -> usize {
    const OVERHEAD: usize =
        size_of::<(u64, Entry)>() + size_of::<Resolved>() + 2 * size_of::<usize>();
    let strings: usize = frames
        .iter()
        .map(|f| {
            f.name.capacity()
                + f.system_name.capacity()
                + f.file.as_ref().map_or(0, String::capacity)
        })
        .sum();
    OVERHEAD + size_of_val(frames) + strings
}

/// Counted size of a mapping's key and table.
fn object_bytes(key: &ObjectKey) -> usize {
    size_of::<(ObjectKey, Object)>()
        + key.path.capacity()
        + key.build_id.as_ref().map_or(0, String::capacity)
}

/// Looks `addr` up in `source`, uncached.
fn lookup(addr: u64, source: Source) -> Resolved {
    #[cfg(test)]
    tests::LOOKUPS.with(|n| n.set(n.get() + 1));
    let frames = match source {
        Source::DebugInfo => lookup_frames(addr),
        Source::SymbolTable => symbol_table_frames(addr),
        Source::Addresses => Box::new([]),
    };
    Resolved {
        frames,
        plumbing: OnceLock::new(),
        source,
    }
}

/// The out-of-line function at `addr` from its object's symbol table
/// ([`symtab`]): one frame, named with its path (demangled as `backtrace`
/// demangles, legacy hash stripped), without file or line.
fn symbol_table_frames(addr: u64) -> Box<[Frame]> {
    let Some(linker_name) = symtab::function_name(addr) else {
        return Box::new([]);
    };
    let name = format!("{:#}", backtrace::SymbolName::new(&linker_name));
    Box::new([Frame {
        name,
        system_name: String::from_utf8_lossy(&linker_name).into_owned(),
        file: None,
        line: None,
    }])
}

fn lookup_frames(addr: u64) -> Box<[Frame]> {
    // `backtrace::resolve` looks up `probe - 1`; see the module doc.
    let Some(probe) = addr.checked_add(1).and_then(|p| usize::try_from(p).ok()) else {
        return Box::new([]);
    };
    if addr == 0 {
        return Box::new([]);
    }
    let mut frames = Vec::new();
    backtrace::resolve(std::ptr::without_provenance_mut(probe), |symbol| {
        // A frame without a name (DWARF for an anonymous function) is of no
        // use to a profile: pprof shows functions, not bare file:line.
        let Some(name) = symbol.name() else {
            return;
        };
        frames.push(Frame {
            name: format!("{name:#}"),
            system_name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
            file: symbol
                .filename()
                .map(|path| path.to_string_lossy().into_owned()),
            line: symbol.lineno(),
        });
    });
    if let Some(outer) = frames.last_mut() {
        if !is_qualified(&outer.name) {
            if let Some(linker_name) = symtab::function_name(addr) {
                qualify(outer, &linker_name);
            }
        }
    }
    frames.into_boxed_slice()
}

/// Whether `name` carries its path (`alloc::vec::from_elem`,
/// `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem`) rather
/// than only the function's own name, as debug info with line tables only
/// gives it (`from_elem<u8>`, `{closure#0}`), or as C functions are named
/// (`malloc`).
pub fn is_qualified(name: &str) -> bool {
    name.starts_with('<')
        || name
            .split('<')
            .next()
            .is_some_and(|head| head.contains("::"))
}

/// Gives `frame`, the out-of-line function at an address, the symbol
/// table's name for it, `linker_name` (mangled), when that is the same
/// function with its path: demangled as `backtrace` demangles (legacy hash
/// stripped), and `linker_name` as the system name. A name that does not
/// end like the short one (another function, identical code folded
/// together) is not taken.
fn qualify(frame: &mut Frame, linker_name: &[u8]) {
    let symbol = backtrace::SymbolName::new(linker_name);
    let qualified = format!("{symbol:#}");
    if qualified != frame.name && names_same_function(&frame.name, &qualified) {
        frame.name = qualified;
        frame.system_name = String::from_utf8_lossy(linker_name).into_owned();
    }
}

/// Whether `qualified` (`service::remember_session`,
/// `firewatch_agent::alloc::alloc_event`,
/// `service::main::{{closure}}::{{closure}}`) can be the function debug
/// info calls `short` (`remember_session`, `alloc_event<std::alloc::System>`,
/// `{closure#0}`): its last path segment is `short` without generic
/// arguments, or both are closures.
fn names_same_function(short: &str, qualified: &str) -> bool {
    let base = short.split('<').next().unwrap_or(short);
    let last = last_segment(qualified);
    if base.starts_with("{closure") {
        return last.contains("{closure") || last.contains("{{closure}}");
    }
    !base.is_empty() && is_qualified(qualified) && last.starts_with(base)
}

/// The last `::`-separated segment of a demangled path that is not a list
/// of generic arguments (v0 names end functions with `::<T>`): `call_once`
/// of `<alloc::boxed::Box<F> as core::ops::function::FnOnce<A>>::call_once`.
fn last_segment(name: &str) -> &str {
    let bytes = name.as_bytes();
    let (mut depth, mut last_start, mut prev_start) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            // `->` in a function pointer type is not a closing bracket.
            b'>' if i == 0 || bytes[i - 1] != b'-' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                prev_start = last_start;
                last_start = i + 2;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    let last = &name[last_start..];
    if last.starts_with('<') && prev_start < last_start {
        &name[prev_start..last_start.saturating_sub(2)]
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// `backtrace` lookups made by this thread (tests run in parallel, so
        /// a process-wide count would mix them).
        pub(super) static LOOKUPS: Cell<usize> = const { Cell::new(0) };
    }

    fn lookups() -> usize {
        LOOKUPS.with(Cell::get)
    }

    #[inline(never)]
    fn symbolize_me_please() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn resolves_a_function_entry_exactly() {
        let addr = symbolize_me_please as *const () as u64;
        let mut s = Symbolizer::new();
        let frames = s.resolve(addr).to_vec();
        let outer = frames.last().expect("resolved");
        assert!(
            outer
                .name
                .ends_with("symbolize::tests::symbolize_me_please"),
            "{frames:?}"
        );
        // `{:#}` strips the legacy hash; the system name keeps it.
        assert!(!outer.name.contains("::h"), "{}", outer.name);
        assert_ne!(outer.system_name, outer.name);
        assert!(outer.file.as_deref().unwrap().ends_with("symbolize.rs"));
        assert!(outer.line.is_some());
        // Cached: the same answer, one entry.
        assert_eq!(s.resolve(addr), &frames[..]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn unknown_addresses_resolve_to_nothing() {
        let mut s = Symbolizer::new();
        assert!(s.resolve(0).is_empty());
        assert!(s.resolve(u64::MAX).is_empty());
        assert!(s.resolve(16).is_empty());
    }

    #[test]
    fn return_addresses_minus_one_resolve_to_the_caller() {
        let mut ips = Vec::new();
        backtrace::trace(|frame| {
            ips.push(frame.ip() as u64);
            true
        });
        let mut s = Symbolizer::new();
        // The outermost "return address" is 0, where the unwinder stopped.
        let names: Vec<String> = ips[1..]
            .iter()
            .filter(|&&ip| ip != 0)
            .flat_map(|&ip| {
                s.resolve(ip - 1)
                    .iter()
                    .map(|f| f.name.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.ends_with("return_addresses_minus_one_resolve_to_the_caller")),
            "{names:#?}"
        );
    }

    fn frame(name: &str, file: &str) -> Frame {
        Frame::for_test(name, file)
    }

    #[test]
    fn names_with_and_without_their_path() {
        for qualified in [
            "service::remember_session",
            "alloc::vec::Vec<T,A>::with_capacity_in",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<alloc::raw_vec::RawVecInner>::finish_grow",
            "core::ops::function::FnOnce::call_once{{vtable.shim}}",
        ] {
            assert!(is_qualified(qualified), "{qualified}");
        }
        // What `debug = "line-tables-only"` gives, and C.
        for short in [
            "remember_session",
            "from_elem<alloc::alloc::Global>",
            "alloc_event<std::alloc::System>",
            "{closure#0}",
            "malloc",
        ] {
            assert!(!is_qualified(short), "{short}");
        }
    }

    #[test]
    fn a_short_name_takes_the_symbol_tables_name_of_the_same_function() {
        let cases = [
            // (short, symbol table's demangled name, taken)
            ("remember_session", "service::remember_session", true),
            (
                "alloc_event<std::alloc::System>",
                "firewatch_agent::alloc::alloc_event",
                true,
            ),
            ("{closure#0}", "service::main::{{closure}}::{{closure}}", true),
            ("{closure#0}", "service::main::{closure#0}::{closure#0}", true),
            (
                "call_once<(), dyn core::ops::function::FnOnce<(), Output=()>>",
                "<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
                true,
            ),
            (
                "__rust_begin_short_backtrace<service::main::{closure_env#4}, usize>",
                "std::sys::backtrace::__rust_begin_short_backtrace::<service::main::{closure#4}, usize>",
                true,
            ),
            // Another function (folded code, a replaced file): not taken.
            ("remember_session", "service::forget_session", false),
            ("remember_session", "service::main::{{closure}}", false),
            ("{closure#0}", "service::remember_session", false),
            // A C function's symbol is no better.
            ("malloc", "malloc", false),
        ];
        for (short, qualified, taken) in cases {
            assert_eq!(
                names_same_function(short, qualified),
                taken,
                "{short} / {qualified}"
            );
        }
        assert_eq!(last_segment("a::b::<c::d>"), "b");
        assert_eq!(last_segment("<a::B<fn() -> u8> as c::D>::e"), "e");
        assert_eq!(last_segment("plain"), "plain");

        // The legacy mangled name: demangled, the hash stripped, kept as the
        // system name.
        let mut f = frame("remember_session", "service.rs");
        qualify(&mut f, b"_ZN7service16remember_session17h7cd6e8e5930f2aeeE");
        assert_eq!(f.name, "service::remember_session");
        assert_eq!(
            f.system_name,
            "_ZN7service16remember_session17h7cd6e8e5930f2aeeE"
        );
        let mut f = frame("remember_session", "service.rs");
        qualify(&mut f, b"_ZN7service14forget_session17h7cd6e8e5930f2aeeE");
        assert_eq!(f.name, "remember_session");
    }

    #[test]
    fn plumbing_depth_counts_the_innermost_plumbing_frames() {
        let vec = "/rustc/0123/library/alloc/src/vec/mod.rs";
        let mut s = Symbolizer::with_answers([
            // The allocator, through and through.
            (
                0x10,
                vec![
                    frame("firewatch_agent::alloc::alloc_event", "mod.rs"),
                    frame("__rustc::__rust_alloc", "lib.rs"),
                ],
            ),
            // `vec![…]` inlined into the leak (line-tables-only names).
            (
                0x20,
                vec![
                    frame("with_capacity_in<u8, alloc::alloc::Global>", vec),
                    frame("from_elem<u8>", vec),
                    frame("service::remember_session", "service.rs"),
                ],
            ),
            (0x30, vec![frame("service::main", "service.rs")]),
            (0x40, vec![]),
        ]);
        assert_eq!(s.plumbing_depth(0x10), 2);
        assert!(s.is_allocation_plumbing(0x10));
        assert_eq!(s.plumbing_depth(0x20), 2);
        assert!(!s.is_allocation_plumbing(0x20));
        assert_eq!(s.plumbing_depth(0x30), 0);
        assert!(!s.is_allocation_plumbing(0x30));
        // Unresolved: not plumbing, the cut stops there.
        assert_eq!(s.plumbing_depth(0x40), 0);
        assert!(!s.is_allocation_plumbing(0x40));
    }

    #[test]
    fn the_outermost_frame_of_this_binary_has_its_path() {
        // This binary has full debug info: names come qualified from it, and
        // the symbol table agrees.
        let addr = symbolize_me_please as *const () as u64;
        let linker_name = symtab::function_name(addr).unwrap();
        let mut f = frame("symbolize_me_please", "symbolize.rs");
        qualify(&mut f, &linker_name);
        assert!(
            f.name.ends_with("symbolize::tests::symbolize_me_please"),
            "{}",
            f.name
        );
        assert_eq!(Symbolizer::new().resolve(addr).last().unwrap().name, f.name);
    }

    fn new_cache(budget: usize) -> Arc<Mutex<SymbolCache>> {
        Arc::new(Mutex::new(SymbolCache::new(budget)))
    }

    /// The cache's byte count, checked against what it holds.
    fn counted_bytes(cache: &Mutex<SymbolCache>) -> usize {
        let c = lock(cache);
        let held: usize = c.objects.iter().map(|(k, o)| o.bytes(k)).sum();
        assert_eq!(c.bytes, held);
        assert!(c.bytes <= c.budget, "{} > {}", c.bytes, c.budget);
        c.bytes
    }

    #[test]
    fn a_second_profile_does_not_look_up_again() {
        let mappings = crate::process::current_mappings().unwrap();
        let cache = new_cache(SHARED_CACHE_BUDGET);
        let addr = symbolize_me_please as *const () as u64;
        let before = lookups();
        let mut first = Symbolizer::with_cache(Arc::clone(&cache), &mappings);
        let frames = first.resolve(addr).to_vec();
        assert!(!frames.is_empty());
        assert!(!first.is_allocation_plumbing(addr));
        assert_eq!(lookups(), before + 1);
        drop(first);

        let mut second = Symbolizer::with_cache(Arc::clone(&cache), &mappings);
        assert_eq!(second.resolve(addr), &frames[..]);
        assert_eq!(lookups(), before + 1);
        // The plumbing verdict came along, computed by the first profile.
        let entries: usize = lock(&cache).objects.values().map(|o| o.entries.len()).sum();
        assert_eq!(entries, 1);
        assert_eq!(second.local[&addr].plumbing.get(), Some(&0));
        counted_bytes(&cache);

        // A private symbolizer does not share.
        Symbolizer::new().resolve(addr);
        assert_eq!(lookups(), before + 2);
    }

    #[test]
    fn entries_of_a_mapping_that_disappears_are_dropped() {
        let real = crate::process::current_mappings().unwrap();
        let lib = Mapping {
            start: 0x1000,
            end: 0x2000,
            path: "/nonexistent/lib.so".into(),
            executable: true,
            ..Mapping::default()
        };
        let with = |m: &Mapping| {
            let mut all = real.clone();
            all.push(m.clone());
            all
        };
        let cache = new_cache(SHARED_CACHE_BUDGET);
        let here = symbolize_me_please as *const () as u64;
        let before = lookups();
        let mut s = Symbolizer::with_cache(Arc::clone(&cache), &with(&lib));
        s.resolve(here);
        assert!(s.resolve(0x1800).is_empty());
        let lib_key = ObjectKey::from(&lib);
        assert_eq!(lock(&cache).objects[&lib_key].entries.len(), 1);
        let with_lib = counted_bytes(&cache);

        // Unloaded: the next profile drops its entries, keeps the others.
        let mut s = Symbolizer::with_cache(Arc::clone(&cache), &real);
        assert!(!lock(&cache).objects.contains_key(&lib_key));
        assert!(counted_bytes(&cache) < with_lib);
        s.resolve(here);
        assert_eq!(lookups(), before + 2);

        // Another file at the same address shares nothing with the first.
        let other = Mapping {
            path: "/nonexistent/other.so".into(),
            ..lib.clone()
        };
        let mut s = Symbolizer::with_cache(Arc::clone(&cache), &with(&other));
        s.resolve(0x1800);
        assert_eq!(lookups(), before + 3);
        // An address in no mapping is resolved but not cached.
        s.resolve(0x3000);
        assert!(lock(&cache)
            .objects
            .values()
            .all(|o| !o.entries.contains_key(&0x3000)));

        lock(&cache).clear();
        assert_eq!(counted_bytes(&cache), 0);
        assert!(lock(&cache).objects.is_empty());
    }

    #[test]
    fn the_byte_budget_is_respected_older_profiles_go_first() {
        let mappings = crate::process::current_mappings().unwrap();
        let exe = &mappings[0];
        let mut ips = Vec::new();
        backtrace::trace(|frame| {
            ips.push((frame.ip() as u64).saturating_sub(1));
            true
        });
        ips.retain(|&ip| exe.contains(ip));
        ips.sort_unstable();
        ips.dedup();
        assert!(ips.len() >= 4, "{ips:x?}");
        let mut plain = Symbolizer::new();
        let mut size = |ip: u64| entry_bytes(plain.resolve(ip));
        let (a, b, c, d) = (ips[0], ips[1], ips[2], ips[3]);
        let object = object_bytes(&ObjectKey::from(exe));
        let budget = object + size(a) + size(b) + size(c) - 1;
        let cache = new_cache(budget);
        let profile = || Symbolizer::with_cache(Arc::clone(&cache), &mappings);

        profile().resolve(a);
        let mut second = profile();
        second.resolve(b);
        second.resolve(c);
        // `c` did not fit: `a`, which this profile did not use, made room.
        let held = |ip: u64| {
            lock(&cache)
                .objects
                .values()
                .any(|o| o.entries.contains_key(&ip))
        };
        assert!(!held(a) && held(b) && held(c));
        counted_bytes(&cache);
        drop(second);

        let before = lookups();
        let mut third = profile();
        third.resolve(b);
        third.resolve(a);
        assert_eq!(lookups(), before + 1, "only `a` was evicted");

        // A profile larger than the budget: the cache stays within it, and
        // answers stay right.
        let mut big = profile();
        for &ip in &ips {
            assert_eq!(big.resolve(ip), plain.resolve(ip));
            counted_bytes(&cache);
        }

        // An entry larger than the whole budget is not cached at all.
        let tiny = new_cache(16);
        let before = lookups();
        for _ in 0..2 {
            Symbolizer::with_cache(Arc::clone(&tiny), &mappings).resolve(d);
        }
        assert_eq!(lookups(), before + 2);
        assert_eq!(counted_bytes(&tiny), 0);
    }

    /// Measures the cost documented above. Run alone so nothing else has
    /// loaded the debug info yet:
    /// `cargo test -p firewatch-agent --lib symbolization_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement; prints numbers"]
    fn symbolization_cost() {
        use std::time::Instant;
        let mut ips = Vec::new();
        backtrace::trace(|frame| {
            ips.push((frame.ip() as u64).saturating_sub(1));
            true
        });
        let rss = || crate::process::rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64;
        let rss0 = rss();
        let mut s = Symbolizer::new();
        let t = Instant::now();
        s.resolve(symbolize_me_please as *const () as u64);
        let first = t.elapsed();
        let rss1 = rss();
        let t = Instant::now();
        for &ip in &ips {
            s.resolve(ip);
        }
        let stack = t.elapsed();
        // Warm, uncached: fresh symbolizers over the same addresses.
        let rounds = 200;
        let t = Instant::now();
        for _ in 0..rounds {
            let mut fresh = Symbolizer::new();
            for &ip in &ips {
                fresh.resolve(ip);
            }
        }
        let warm = t.elapsed() / (rounds * ips.len() as u32);
        let t = Instant::now();
        for _ in 0..rounds {
            for &ip in &ips {
                s.resolve(ip);
            }
        }
        let cached = t.elapsed() / (rounds * ips.len() as u32);
        let rss2 = rss();
        Symbolizer::release_debug_info();
        let rss3 = rss();
        eprintln!(
            "first resolve {first:?} (RSS {rss0:.1} -> {rss1:.1} MiB); {} stack addresses {stack:?} \
             (RSS {rss2:.1} MiB); warm uncached {warm:?}/address; cached {cached:?}/address; \
             after release_debug_info RSS {rss3:.1} MiB",
            ips.len()
        );
    }
}
