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
//! The same [`Config`] (seed included) always yields the same profile: the
//! generator uses its own [`Rng`] (SplitMix64), no external randomness.

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

/// Size and seed of a synthetic profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub samples: usize,
    /// Total locations (every function has at least one).
    pub locations: usize,
    /// Total functions, thread roots and system functions included.
    pub functions: usize,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            samples: 1_000_000,
            locations: 160_000,
            functions: 40_000,
            seed: 1,
        }
    }
}

/// Generates the profile described by `config`.
///
/// # Panics
///
/// When `config.functions` is below 1,000 or `config.locations` is below
/// `config.functions`.
pub fn generate(config: &Config) -> Profile {
    assert!(config.functions >= 1_000, "need at least 1,000 functions");
    assert!(
        config.locations >= config.functions,
        "need at least one location per function"
    );
    let mut rng = Rng::new(config.seed);
    let mut strings = StringInterner::new();
    let graph = Graph::build(config, &mut rng);
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

    profile.mapping = graph.mappings(&mut strings);
    profile.function = graph
        .funcs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = strings.intern(&f.name);
            Function {
                id: i as u64 + 1,
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
            id: i as u64 + 1,
            mapping_id: graph.funcs[loc.func as usize].mapping as u64 + 1,
            address: loc.address,
            line: loc
                .lines
                .iter()
                .map(|&(func, line)| Line {
                    function_id: func as u64 + 1,
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
                location_id: stack.iter().rev().map(|&l| l as u64 + 1).collect(),
                value: vec![count, count * PERIOD_NANOS],
                label,
            }
        })
        .collect();
    // Twelve busy worker threads' worth of CPU time.
    profile.duration_nanos = total_cpu / 12;
    profile.string_table = strings.into_table();
    profile
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

    fn mappings(&self, strings: &mut StringInterner) -> Vec<Mapping> {
        let mut rng = Rng::new(0x6275_696c_6469_6473);
        MAPPINGS
            .iter()
            .enumerate()
            .map(|(i, &(file, start, offset))| {
                let build_id: String = (0..20).map(|_| format!("{:02x}", rng.below(256))).collect();
                Mapping {
                    id: i as u64 + 1,
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
}
