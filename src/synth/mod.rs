//! A synthetic, deterministic CPU profile shaped like one a busy async Rust
//! service would produce, for benchmarks (`benches/decode.rs`) and for the
//! `synth-profile` example, which writes it to a file for `benches/compare.sh`.
//!
//! What makes it realistic:
//!
//! - ~40,000 functions with Rust-like names (service code, tokio, hyper,
//!   serde, std monomorphisations such as `core::ptr::drop_in_place<…>`),
//!   files and line numbers, plus libc / libgcc / vDSO leaves;
//! - four mappings with build ids, addresses inside them;
//! - call sites (locations) that call a fixed callee, some with inlined
//!   frames (2–3 lines);
//! - stacks walked through that call graph from a few thread roots, so they
//!   share prefixes, yet most are unique; depth uniform in 8..=64 frames;
//! - Zipf-like choices everywhere, so a few functions are hot;
//! - recursion (functions whose hottest call site calls themselves);
//! - a `thread` string label (16 values) and a `request_bytes` numeric label.
//!
//! Tests use it too (`tests/profile_round_trip.rs`, `tests/profile_mutation.rs`),
//! with two options a profiler's output would not exercise:
//!
//! - [`Config::ids`]: [`Ids::Sparse`] numbers mappings, functions and locations
//!   with unique, far-apart ids in shuffled order (the decoder's hash-map path)
//!   instead of `1..=n` in order (its fast path);
//! - [`Config::every_field`]: also sets every field a CPU profile leaves unset,
//!   and the odd values `profile.proto` allows (see [`Config::every_field`]).
//!
//! Sizes go down to [`MIN_FUNCTIONS`] functions, for small test inputs.
//!
//! The same [`Config`] (seed included) always yields the same profile: the
//! generator uses its own [`Rng`] (SplitMix64), no external randomness. With
//! both options at their defaults it yields what it did before they existed.

pub mod fleet;
mod names;
mod rng;

use std::collections::HashSet;

use firewatch_profile::{
    Function, Label, Line, Location, Mapping, Profile, Sample, StringInterner, ValueType,
};

use names::{
    app_name, lib_name, source_file, unique_names, BLOCKING_ROOT, MAIN, MAIN_ROOT, MAPPINGS,
    SYSTEM, WORKER_ROOT,
};
pub use rng::Rng;

/// The CPU sampling period: 100 Hz.
pub const PERIOD_NANOS: i64 = 10_000_000;

/// Shortest and longest stacks, in frames.
pub const MIN_DEPTH: usize = 8;
pub const MAX_DEPTH: usize = 64;

/// The fewest functions a profile can have (`Config::functions`): the thread
/// roots and system functions take about 60, and the rest need a few.
pub const MIN_FUNCTIONS: usize = 100;

/// The distance between consecutive [`Ids::Sparse`] ids.
pub const SPARSE_STRIDE: u64 = 1_000_003;

/// Size, seed and options of a synthetic profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub samples: usize,
    /// Total locations (every function has at least one).
    pub locations: usize,
    /// Total functions, thread roots and system functions included; at
    /// least [`MIN_FUNCTIONS`].
    pub functions: usize,
    pub seed: u64,
    /// How mappings, functions and locations are numbered.
    pub ids: Ids,
    /// Also set what a CPU profile leaves unset, and values at the edges of
    /// what `profile.proto` allows:
    ///
    /// - `drop_frames`, `keep_frames`, two comments (one not ASCII),
    ///   `default_sample_type` (`cpu`) and `doc_url` (not ASCII);
    /// - a column on every line (−1, unknown, on one in ten), and a negative
    ///   line number on one line in 40;
    /// - one location in 20 folded (`is_folded`), one in 20 without a
    ///   mapping (`mapping_id` 0), one in 20 naming a mapping that does not
    ///   exist (an id of 2^63 or more: ten-byte varints), one in 20 without
    ///   lines (not symbolized);
    /// - one sample in 50 without locations; one in ten with negated values
    ///   (as in the difference of two profiles: ten-byte varints), one in 20
    ///   with values of every magnitude and sign; one in four with a
    ///   `trace_id` numeric label, a random 64-bit value.
    ///
    /// Drawn from a random stream of their own: the rest of the profile is
    /// the same with or without them.
    pub every_field: bool,
}

/// How mappings, functions and locations are numbered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ids {
    /// `1..=n` in order, as profilers number them (the decoder's fast path).
    #[default]
    Sequential,
    /// Unique, non-zero, [`SPARSE_STRIDE`] apart and in shuffled order (the
    /// decoder's hash-map path).
    Sparse,
}

impl Ids {
    /// The ids of `n` items, in the items' order.
    fn assign(self, n: usize, rng: &mut Rng) -> Vec<u64> {
        match self {
            Ids::Sequential => (1..=n as u64).collect(),
            Ids::Sparse => {
                let mut ids: Vec<u64> = (0..n as u64).map(|i| i * SPARSE_STRIDE + 7).collect();
                for i in (1..n).rev() {
                    ids.swap(i, rng.below(i + 1));
                }
                ids
            }
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            samples: 1_000_000,
            locations: 160_000,
            functions: 40_000,
            seed: 1,
            ids: Ids::Sequential,
            every_field: false,
        }
    }
}

/// Seeds, xored with [`Config::seed`], of the streams that number sparse ids
/// and draw the `every_field` extras, apart from the main one.
const IDS_STREAM: u64 = 0x6964_7300_0000_0000;
const EXTRAS_STREAM: u64 = 0x6578_7472_6100_0000;

/// Generates the profile described by `config`.
///
/// # Panics
///
/// When `config.functions` is below [`MIN_FUNCTIONS`] or `config.locations`
/// is below `config.functions`.
pub fn generate(config: &Config) -> Profile {
    assert!(
        config.functions >= MIN_FUNCTIONS,
        "need at least {MIN_FUNCTIONS} functions"
    );
    assert!(
        config.locations >= config.functions,
        "need at least one location per function"
    );
    let mut rng = Rng::new(config.seed);
    let mut strings = StringInterner::new();
    let graph = Graph::build(config, &mut rng);
    let mut id_rng = Rng::new(config.seed ^ IDS_STREAM);
    let mapping_ids = config.ids.assign(MAPPINGS.len(), &mut id_rng);
    let function_ids = config.ids.assign(graph.funcs.len(), &mut id_rng);
    let location_ids = config.ids.assign(graph.locs.len(), &mut id_rng);
    let mut profile = Profile::new();

    let samples = strings.intern("samples");
    let count = strings.intern("count");
    let cpu = strings.intern("cpu");
    let nanoseconds = strings.intern("nanoseconds");
    profile.sample_type = vec![
        ValueType {
            r#type: samples,
            unit: count,
        },
        ValueType {
            r#type: cpu,
            unit: nanoseconds,
        },
    ];
    profile.period_type = ValueType {
        r#type: cpu,
        unit: nanoseconds,
    };
    profile.period = PERIOD_NANOS;
    // 2024-11-28T00:00:00Z.
    profile.time_nanos = 1_732_752_000_000_000_000;

    profile.mapping = graph.mappings(&mapping_ids, &mut strings);
    profile.function = graph
        .funcs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = strings.intern(&f.name);
            Function {
                id: function_ids[i],
                name,
                // pprof-rs writes the demangled name as the system name too.
                system_name: name,
                filename: strings.intern(&f.file),
                start_line: f.start_line,
            }
        })
        .collect();
    profile.location = graph
        .locs
        .iter()
        .enumerate()
        .map(|(i, loc)| Location {
            id: location_ids[i],
            mapping_id: mapping_ids[graph.funcs[loc.func as usize].mapping],
            address: loc.address,
            line: loc
                .lines
                .iter()
                .map(|&(func, line)| Line {
                    function_id: function_ids[func as usize],
                    line,
                    column: 0,
                })
                .collect(),
            is_folded: false,
        })
        .collect();

    let thread_key = strings.intern("thread");
    let threads: Vec<i64> = THREADS
        .iter()
        .map(|&(_, name)| strings.intern(name))
        .collect();
    let of_kind = |kind: Root| -> Vec<i64> {
        (0..THREADS.len())
            .filter(|&i| THREADS[i].0 == kind)
            .map(|i| threads[i])
            .collect()
    };
    let (workers, blocking, main) = (
        of_kind(Root::Worker),
        of_kind(Root::Blocking),
        of_kind(Root::Main),
    );
    let request_bytes = strings.intern("request_bytes");
    let bytes = strings.intern("bytes");

    let mut stack = Vec::with_capacity(MAX_DEPTH);
    let mut total_cpu = 0i64;
    profile.sample = (0..config.samples)
        .map(|_| {
            // Workers do most of the work; threads of a kind are equally busy.
            let (kind, threads) = match rng.unit() {
                x if x < 0.85 => (Root::Worker, &workers),
                x if x < 0.97 => (Root::Blocking, &blocking),
                _ => (Root::Main, &main),
            };
            let thread = *rng.pick(threads);
            graph.walk(kind, &mut rng, &mut stack);
            let count = match rng.unit() {
                x if x < 0.92 => 1,
                x if x < 0.98 => 2,
                _ => 3,
            };
            total_cpu += count * PERIOD_NANOS;
            let mut label = vec![Label {
                key: thread_key,
                str: thread,
                ..Label::default()
            }];
            if kind == Root::Worker && rng.chance(0.7) {
                // Log-uniform between 64 B and 16 MiB.
                let num = (64.0 * (262_144f64).powf(rng.unit())) as i64;
                label.push(Label {
                    key: request_bytes,
                    num,
                    num_unit: bytes,
                    ..Label::default()
                });
            }
            Sample {
                // Leaf first, as pprof wants.
                location_id: stack
                    .iter()
                    .rev()
                    .map(|&l| location_ids[l as usize])
                    .collect(),
                value: vec![count, count * PERIOD_NANOS],
                label,
            }
        })
        .collect();
    // Twelve busy worker threads' worth of CPU time.
    profile.duration_nanos = total_cpu / 12;
    if config.every_field {
        let mut extra = Rng::new(config.seed ^ EXTRAS_STREAM);
        set_every_field(&mut profile, &mut strings, &mut extra);
    }
    profile.string_table = strings.into_table();
    profile
}

/// [`Config::every_field`]'s additions.
fn set_every_field(profile: &mut Profile, strings: &mut StringInterner, rng: &mut Rng) {
    profile.drop_frames = strings.intern("^std::panicking::");
    profile.keep_frames = strings.intern("^myservice::");
    profile.comment = vec![
        strings.intern("synthetic profile (firewatch::synth)"),
        strings.intern("région: eu-west-3, hôte: café-01, ノード: 東京"),
    ];
    profile.default_sample_type = strings.intern("cpu");
    profile.doc_url = strings.intern("https://example.invalid/firewatch/profils/synthétique");
    for location in &mut profile.location {
        match rng.below(20) {
            0 => location.mapping_id = 0,
            1 => location.mapping_id = rng.next_u64() | 1 << 63,
            _ => {}
        }
        location.is_folded = rng.below(20) == 0;
        if rng.below(20) == 0 {
            location.line.clear();
        }
        for line in &mut location.line {
            line.column = match rng.below(10) {
                0 => -1,
                _ => rng.range(1, 119) as i64,
            };
            if rng.below(40) == 0 {
                line.line = -line.line - 1;
            }
        }
    }
    let trace_id = strings.intern("trace_id");
    for sample in &mut profile.sample {
        if rng.below(50) == 0 {
            sample.location_id.clear();
        }
        match rng.below(20) {
            0 | 1 => sample.value.iter_mut().for_each(|v| *v = -*v),
            2 => {
                for v in &mut sample.value {
                    *v = rng.next_u64() as i64 >> rng.below(64);
                }
            }
            _ => {}
        }
        if rng.below(4) == 0 {
            sample.label.push(Label {
                key: trace_id,
                num: rng.next_u64() as i64,
                ..Label::default()
            });
        }
    }
}

/// Which thread a stack starts on; each has a fixed chain of root frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    Worker,
    Blocking,
    Main,
}

/// The 16 values of the `thread` label.
const THREADS: &[(Root, &str)] = &[
    (Root::Worker, "tokio-runtime-worker-0"),
    (Root::Worker, "tokio-runtime-worker-1"),
    (Root::Worker, "tokio-runtime-worker-2"),
    (Root::Worker, "tokio-runtime-worker-3"),
    (Root::Worker, "tokio-runtime-worker-4"),
    (Root::Worker, "tokio-runtime-worker-5"),
    (Root::Worker, "tokio-runtime-worker-6"),
    (Root::Worker, "tokio-runtime-worker-7"),
    (Root::Worker, "tokio-runtime-worker-8"),
    (Root::Worker, "tokio-runtime-worker-9"),
    (Root::Worker, "tokio-runtime-worker-10"),
    (Root::Worker, "tokio-runtime-worker-11"),
    (Root::Blocking, "tokio-blocking-0"),
    (Root::Blocking, "tokio-blocking-1"),
    (Root::Blocking, "tokio-blocking-2"),
    (Root::Main, "myservice"),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Thread roots: never reached by walking the graph.
    Root,
    /// Leaves outside the binary.
    System,
    App,
    Lib,
}

struct Func {
    name: String,
    file: String,
    start_line: i64,
    mapping: usize,
    kind: Kind,
    /// Locations `locs.0..locs.1`, hottest first.
    locs: (u32, u32),
}

struct Loc {
    func: u32,
    address: u64,
    /// (function index, line), inlined callees first, `func` last.
    lines: Vec<(u32, i64)>,
    /// The function this call site calls.
    callee: u32,
}

/// The synthetic program: its functions, their call sites (each calling one
/// function), and the thread roots stacks start from.
struct Graph {
    funcs: Vec<Func>,
    locs: Vec<Loc>,
    /// Function indexes by kind.
    app: Vec<u32>,
    system: Vec<u32>,
    /// Root chains, outermost first, as location indexes.
    worker_root: Vec<u32>,
    blocking_root: Vec<u32>,
    main_root: Vec<u32>,
    memory_limits: [u64; 4],
}

impl Graph {
    fn build(config: &Config, rng: &mut Rng) -> Graph {
        let mut funcs: Vec<Func> = Vec::with_capacity(config.functions);
        let mut seen = HashSet::new();
        let add = |funcs: &mut Vec<Func>, name: String, file: String, mapping, kind| {
            funcs.push(Func {
                name,
                file,
                start_line: 0,
                mapping,
                kind,
                locs: (0, 0),
            });
            funcs.len() as u32 - 1
        };

        // Root chains share functions by name.
        let mut root_funcs = Vec::new();
        let mut chains = [Vec::new(), Vec::new(), Vec::new()];
        for (chain, frames) in chains
            .iter_mut()
            .zip([WORKER_ROOT, BLOCKING_ROOT, MAIN_ROOT])
        {
            for &(name, mapping, file) in frames {
                let f = match root_funcs.iter().position(|&(n, _)| n == name) {
                    Some(i) => root_funcs[i].1,
                    None => {
                        let file = source_file(file);
                        let i = add(&mut funcs, name.to_string(), file, mapping, Kind::Root);
                        seen.insert(name.to_string());
                        root_funcs.push((name, i));
                        i
                    }
                };
                chain.push(f);
            }
        }
        let system: Vec<u32> = SYSTEM
            .iter()
            .map(|&(name, mapping)| {
                seen.insert(name.to_string());
                add(
                    &mut funcs,
                    name.to_string(),
                    String::new(),
                    mapping,
                    Kind::System,
                )
            })
            .collect();

        let rest = config.functions - funcs.len();
        let app_count = rest * 11 / 20;
        let mut app = Vec::with_capacity(app_count);
        for (name, file) in unique_names(app_count, rng, &mut seen, app_name) {
            app.push(add(&mut funcs, name, file, MAIN, Kind::App));
        }
        let mut lib = Vec::with_capacity(rest - app_count);
        for (name, file) in unique_names(rest - app_count, rng, &mut seen, lib_name) {
            lib.push(add(&mut funcs, name, file, MAIN, Kind::Lib));
        }
        for f in &mut funcs {
            if !f.file.is_empty() {
                f.start_line = rng.range(1, 1500) as i64;
            }
        }

        // Locations per function: one each, the rest spread over service,
        // library and system code (roots have exactly one call site).
        let mut per_func = vec![1u32; funcs.len()];
        let spread: Vec<u32> = app.iter().chain(&lib).chain(&system).copied().collect();
        for _ in funcs.len()..config.locations {
            per_func[*rng.pick(&spread) as usize] += 1;
        }

        // Lay functions out in their mappings and create their call sites.
        // Callees are drawn Zipf-like from a kind's functions, so a few are
        // hot; each role starts its ranking at a different offset.
        let pick = |rng: &mut Rng, pool: &[u32], offset: usize| {
            pool[(rng.zipf(pool.len()) + offset) % pool.len()]
        };
        let mut cursors: [u64; 4] = MAPPINGS.map(|(_, start, _)| start + 0x1000);
        let mut locs = Vec::with_capacity(config.locations);
        let inlinable = &lib[..lib.len().min(4000)];
        for (f, func) in funcs.iter_mut().enumerate() {
            let start = locs.len() as u32;
            let cursor = &mut cursors[func.mapping];
            let mut address = *cursor + rng.range(4, 60) as u64;
            let code = matches!(func.kind, Kind::App | Kind::Lib);
            // Only with another call site to leave by, or it never returns.
            let recursive = code && per_func[f] >= 2 && rng.chance(0.03);
            for i in 0..per_func[f] {
                address += rng.range(5, 120) as u64;
                let line = if func.file.is_empty() {
                    0
                } else {
                    func.start_line + rng.range(1, 150) as i64
                };
                let inlined = match rng.unit() {
                    _ if !code => 0,
                    x if x < 0.12 => 1,
                    x if x < 0.16 => 2,
                    _ => 0,
                };
                let mut lines = Vec::with_capacity(inlined + 1);
                for _ in 0..inlined {
                    let g = inlinable[rng.zipf(inlinable.len())];
                    lines.push((g, rng.range(1, 2000) as i64));
                }
                lines.push((f as u32, line));
                let callee = match (func.kind, rng.unit()) {
                    // The hottest call site of a recursive function calls itself.
                    _ if recursive && i == 0 => f as u32,
                    (Kind::System, _) => pick(rng, &system, 0),
                    (Kind::App, x) if x < 0.6 => pick(rng, &app, app.len() / 3),
                    (Kind::App, _) => pick(rng, &lib, 0),
                    (_, x) if x < 0.25 => pick(rng, &app, 2 * app.len() / 3),
                    _ => pick(rng, &lib, lib.len() / 2),
                };
                locs.push(Loc {
                    func: f as u32,
                    address,
                    lines,
                    callee,
                });
            }
            *cursor = (address + 0x40) & !0xf;
            func.locs = (start, locs.len() as u32);
        }

        let first_loc = |f: &u32| funcs[*f as usize].locs.0;
        let [worker, blocking, main] = chains;
        Graph {
            worker_root: worker.iter().map(first_loc).collect(),
            blocking_root: blocking.iter().map(first_loc).collect(),
            main_root: main.iter().map(first_loc).collect(),
            memory_limits: cursors.map(|end| (end + 0xfff) & !0xfff),
            funcs,
            locs,
            app,
            system,
        }
    }

    fn mappings(&self, ids: &[u64], strings: &mut StringInterner) -> Vec<Mapping> {
        let mut rng = Rng::new(0x6275_696c_6469_6473);
        MAPPINGS
            .iter()
            .enumerate()
            .map(|(i, &(file, start, offset))| {
                let build_id: String = (0..20).map(|_| format!("{:02x}", rng.below(256))).collect();
                Mapping {
                    id: ids[i],
                    memory_start: start,
                    memory_limit: self.memory_limits[i],
                    file_offset: offset,
                    filename: strings.intern(file),
                    build_id: strings.intern(&build_id),
                    has_functions: true,
                    has_filenames: i == MAIN,
                    has_line_numbers: i == MAIN,
                    has_inline_frames: i == MAIN,
                }
            })
            .collect()
    }

    /// A location of `f`: Zipf over its call sites, the first the hottest.
    fn loc_of(&self, f: u32, rng: &mut Rng) -> u32 {
        let (start, end) = self.funcs[f as usize].locs;
        start + rng.zipf((end - start) as usize) as u32
    }

    /// Fills `stack` (root first) with location indexes.
    fn walk(&self, root: Root, rng: &mut Rng, stack: &mut Vec<u32>) {
        stack.clear();
        stack.extend_from_slice(match root {
            Root::Worker => &self.worker_root,
            Root::Blocking => &self.blocking_root,
            Root::Main => &self.main_root,
        });
        let depth = rng.range(MIN_DEPTH, MAX_DEPTH);
        // The task or request the thread is running.
        let offset = match root {
            Root::Worker => 0,
            Root::Blocking => self.app.len() / 4,
            Root::Main => self.app.len() / 2,
        };
        let mut f = self.app[(rng.zipf(self.app.len()) + offset) % self.app.len()];
        while stack.len() < depth - 1 {
            let loc = self.loc_of(f, rng);
            stack.push(loc);
            f = self.locs[loc as usize].callee;
        }
        // The leaf: a third of the time in libc & co., else the next callee.
        if self.funcs[f as usize].kind != Kind::System && rng.chance(0.3) {
            f = self.system[rng.zipf(self.system.len())];
        }
        stack.push(self.loc_of(f, rng));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firewatch_profile::ProfileView;

    fn small() -> Config {
        Config {
            samples: 3_000,
            locations: 8_000,
            functions: 2_000,
            seed: 7,
            ..Config::default()
        }
    }

    #[test]
    fn valid_and_as_configured() {
        let config = small();
        let p = generate(&config);
        let raw = p.encode();
        let view = ProfileView::decode(&raw).expect("the synthetic profile is valid");
        assert_eq!(view.sample_count(), config.samples);
        assert_eq!(p.location.len(), config.locations);
        assert_eq!(p.function.len(), config.functions);
        assert_eq!(p.mapping.len(), 4);
        assert_eq!(view.period(), PERIOD_NANOS);
        assert!(p.duration_nanos > 0 && p.time_nanos > 0);
        for s in &p.sample {
            assert!((MIN_DEPTH..=MAX_DEPTH).contains(&s.location_id.len()));
            assert_eq!(s.value[1], s.value[0] * PERIOD_NANOS);
        }
        let names: HashSet<&str> = p.function.iter().map(|f| p.string(f.name)).collect();
        assert_eq!(names.len(), p.function.len(), "function names are unique");
        assert!(p.location.iter().any(|l| l.line.len() == 3));
        let recursive = p.sample.iter().any(|s| {
            s.location_id.windows(2).any(|w| {
                let f = |id: u64| p.location[id as usize - 1].line.last().unwrap().function_id;
                f(w[0]) == f(w[1])
            })
        });
        assert!(recursive, "some stacks recurse");
    }

    #[test]
    fn deterministic_per_seed() {
        let a = generate(&small()).encode();
        assert_eq!(a, generate(&small()).encode());
        let other = Config { seed: 8, ..small() };
        assert_ne!(a, generate(&other).encode());
    }

    /// Panics unless every field of every message is set (non-zero,
    /// non-empty, true) somewhere in `p`, with the odd values of
    /// [`Config::every_field`] among them.
    fn assert_every_field_set(p: &Profile) {
        let (m, f, l, s) = (&p.mapping, &p.function, &p.location, &p.sample);
        let mapping_ids: HashSet<u64> = m.iter().map(|m| m.id).collect();
        let lines: Vec<&Line> = l.iter().flat_map(|l| &l.line).collect();
        let labels: Vec<&Label> = s.iter().flat_map(|s| &s.label).collect();
        let values: Vec<i64> = s.iter().flat_map(|s| s.value.iter().copied()).collect();
        let t = &p.sample_type;
        for (what, found) in [
            (
                "sample types",
                t.iter().all(|t| t.r#type != 0 && t.unit != 0),
            ),
            (
                "a period type",
                p.period_type.r#type != 0 && p.period_type.unit != 0,
            ),
            ("a period", p.period != 0),
            ("a time", p.time_nanos != 0),
            ("a duration", p.duration_nanos != 0),
            ("drop_frames", p.drop_frames != 0),
            ("keep_frames", p.keep_frames != 0),
            ("comments", !p.comment.is_empty() && !p.comment.contains(&0)),
            ("a default sample type", p.default_sample_type != 0),
            ("a doc_url", p.doc_url != 0),
            (
                "a non-ASCII string",
                p.string_table.iter().any(|s| !s.is_ascii()),
            ),
            (
                "mapping.memory_start",
                m.iter().any(|m| m.memory_start != 0),
            ),
            (
                "mapping.memory_limit",
                m.iter().any(|m| m.memory_limit != 0),
            ),
            ("mapping.file_offset", m.iter().any(|m| m.file_offset != 0)),
            ("mapping.filename", m.iter().any(|m| m.filename != 0)),
            ("mapping.build_id", m.iter().any(|m| m.build_id != 0)),
            ("mapping.has_functions", m.iter().any(|m| m.has_functions)),
            ("mapping.has_filenames", m.iter().any(|m| m.has_filenames)),
            (
                "mapping.has_line_numbers",
                m.iter().any(|m| m.has_line_numbers),
            ),
            (
                "mapping.has_inline_frames",
                m.iter().any(|m| m.has_inline_frames),
            ),
            ("function.name", f.iter().any(|f| f.name != 0)),
            ("function.system_name", f.iter().any(|f| f.system_name != 0)),
            ("function.filename", f.iter().any(|f| f.filename != 0)),
            ("function.start_line", f.iter().any(|f| f.start_line != 0)),
            ("location.address", l.iter().any(|l| l.address != 0)),
            ("location.is_folded", l.iter().any(|l| l.is_folded)),
            (
                "a mapping",
                l.iter().any(|l| mapping_ids.contains(&l.mapping_id)),
            ),
            ("no mapping", l.iter().any(|l| l.mapping_id == 0)),
            (
                "a missing mapping",
                l.iter().any(|l| l.mapping_id >= 1 << 63),
            ),
            ("inlined lines", l.iter().any(|l| l.line.len() > 1)),
            (
                "a location without lines",
                l.iter().any(|l| l.line.is_empty()),
            ),
            ("line.function_id", lines.iter().all(|l| l.function_id != 0)),
            ("line.line", lines.iter().any(|l| l.line > 0)),
            ("a negative line.line", lines.iter().any(|l| l.line < 0)),
            ("line.column", lines.iter().any(|l| l.column > 0)),
            ("a negative line.column", lines.iter().any(|l| l.column < 0)),
            (
                "sample.location_id",
                s.iter().any(|s| !s.location_id.is_empty()),
            ),
            (
                "a sample without locations",
                s.iter().any(|s| s.location_id.is_empty()),
            ),
            ("a positive value", values.iter().any(|&v| v > 0)),
            ("a negative value", values.iter().any(|&v| v < 0)),
            (
                "a value of 2^32 or more",
                values.iter().any(|&v| v >= 1 << 32),
            ),
            ("label.key", labels.iter().all(|l| l.key != 0)),
            ("label.str", labels.iter().any(|l| l.str != 0)),
            ("label.num", labels.iter().any(|l| l.num > 0)),
            ("a negative label.num", labels.iter().any(|l| l.num < 0)),
            ("label.num_unit", labels.iter().any(|l| l.num_unit != 0)),
        ] {
            assert!(found, "nothing has {what}");
        }
        for l in l.iter().filter(|l| l.mapping_id >= 1 << 63) {
            assert!(!mapping_ids.contains(&l.mapping_id), "names no mapping");
        }
    }

    /// Panics unless `ids` are unique, non-zero, and neither `1..=n` nor in
    /// increasing order.
    fn assert_sparse(what: &str, ids: impl Iterator<Item = u64>) {
        let ids: Vec<u64> = ids.collect();
        let unique: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{what} ids are unique");
        assert!(!unique.contains(&0), "{what} ids are non-zero");
        assert!(
            ids.iter().any(|&id| id > ids.len() as u64),
            "{what} ids are sparse"
        );
        assert!(
            ids.windows(2).any(|w| w[0] > w[1]),
            "{what} ids are shuffled"
        );
    }

    #[test]
    fn every_field_and_sparse_ids() {
        let config = Config {
            ids: Ids::Sparse,
            every_field: true,
            ..small()
        };
        let p = generate(&config);
        let raw = p.encode();
        let view = ProfileView::decode(&raw).expect("valid with every option");
        assert_eq!(view.sample_count(), config.samples);
        assert_eq!(view.default_sample_index(), 1, "cpu");
        assert_every_field_set(&p);
        assert_sparse("mapping", p.mapping.iter().map(|m| m.id));
        assert_sparse("function", p.function.iter().map(|f| f.id));
        assert_sparse("location", p.location.iter().map(|l| l.id));
        let functions: HashSet<u64> = p.function.iter().map(|f| f.id).collect();
        let locations: HashSet<u64> = p.location.iter().map(|l| l.id).collect();
        for l in &p.location {
            assert!(l
                .line
                .iter()
                .all(|line| functions.contains(&line.function_id)));
        }
        for s in &p.sample {
            assert!(s.location_id.iter().all(|id| locations.contains(id)));
        }

        // The options change only what they are about: the same shape of
        // profile, numbered and decorated differently.
        let plain = generate(&small());
        assert!(plain.drop_frames == 0 && plain.comment.is_empty() && plain.doc_url == 0);
        assert!(plain
            .location
            .iter()
            .all(|l| !l.is_folded && l.mapping_id != 0));
        assert!(plain.sample.iter().all(|s| s.value.iter().all(|&v| v > 0)));
        assert_eq!(p.sample.len(), plain.sample.len());
        let mut same_values = 0;
        for (a, b) in p.sample.iter().zip(&plain.sample) {
            assert!(a.location_id.is_empty() || a.location_id.len() == b.location_id.len());
            same_values += usize::from(a.value[0].abs() == b.value[0]);
        }
        assert!(same_values >= p.sample.len() * 9 / 10, "{same_values}");
        for (ids, every_field) in [(Ids::Sparse, false), (Ids::Sequential, true)] {
            let q = generate(&Config {
                ids,
                every_field,
                ..small()
            });
            assert_eq!(q.sample.len(), plain.sample.len());
            assert_eq!(q.location.len(), plain.location.len());
            ProfileView::decode(&q.encode()).expect("valid with one option");
        }
    }

    #[test]
    fn smallest_profile() {
        let config = Config {
            samples: 3,
            locations: MIN_FUNCTIONS,
            functions: MIN_FUNCTIONS,
            seed: 9,
            ids: Ids::Sparse,
            every_field: true,
        };
        let p = generate(&config);
        assert_eq!(p.function.len(), MIN_FUNCTIONS);
        assert_eq!(p.location.len(), MIN_FUNCTIONS);
        let raw = p.encode();
        let view = ProfileView::decode(&raw).expect("the smallest profile is valid");
        assert_eq!(view.sample_count(), 3);
    }
}
