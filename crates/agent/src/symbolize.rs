//! In-process symbolization: program counter → function names, files and
//! lines, with inlined functions expanded.
//!
//! Profiles carry addresses, mappings and build IDs first of all, so the
//! analyzer (or `go tool pprof`, Parca) can symbolize them offline; names are
//! added in-process so a file is readable as-is (Pyroscope cannot symbolize
//! customer code). This is the expensive half of a capture, hence the rules:
//!
//! - **Never call it from a signal handler.** `backtrace::resolve` takes a
//!   global lock, allocates, enumerates the loaded objects on first use, and
//!   opens, `mmap`s and parses the DWARF of each object it is asked about.
//! - **Cost.** The first lookup in an object maps the file and loads its
//!   debug info (`backtrace` keeps up to four objects' parsed DWARF in a
//!   process-wide cache); each new compilation unit touched is then parsed
//!   lazily. Measured on this crate's unit-test binary (`symbolization_cost`
//!   below; 2-vCPU VM):
//!
//!   | | debug build (29 MB binary) | release, `debug = 1` (15 MB) |
//!   |---|---|---|
//!   | first lookup in the binary | ~42 ms, RSS +25 MiB | ~14 ms, RSS +16 MiB |
//!   | first lookup in a new unit | 0.1–28 ms | 0.03–5 ms |
//!   | libc with its separate debug file (`libc6-dbg`) | ~370 ms, +34 MiB | ~80 ms, +34 MiB |
//!   | later lookup, not in our cache | ~24 µs | ~3.5 µs |
//!   | cached lookup | ~170 ns | ~10 ns |
//!
//!   Objects without debug info resolve from the symbol table only, cheaply.
//!   Call [`Symbolizer::release_debug_info`] after building a profile to
//!   give the memory back (RSS back to within ~2 MiB of where it started),
//!   at the price of reloading next time.
//! - **Stale modules.** `backtrace` enumerates the loaded objects once per
//!   process (its first lookup) and never again, so code in a library
//!   `dlopen`ed later resolves to nothing here; the mapping and address are
//!   still in the profile, so offline symbolization still works for it.
//!
//! Addresses are looked up **exactly**: `resolve(a)` describes the
//! instruction at `a`. `backtrace::resolve` itself always subtracts one (it
//! assumes a return address); this module adds it back, so a leaf PC at a
//! function's first byte is not attributed to the previous function. Callers
//! pass `return address - 1` for non-leaf frames (see
//! [`crate::stacks_to_profile`]).

use std::collections::HashMap;

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

/// Resolves addresses of the running process, caching each answer.
///
/// Build one per profile, on the agent thread (never in a signal handler).
#[derive(Debug, Default)]
pub struct Symbolizer {
    cache: HashMap<u64, Box<[Frame]>>,
}

impl Symbolizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The functions at exactly `addr`, innermost (inlined callee) first and
    /// the out-of-line function last; empty when the address is in no loaded
    /// object or the object has neither debug info nor a symbol for it.
    pub fn resolve(&mut self, addr: u64) -> &[Frame] {
        self.cache.entry(addr).or_insert_with(|| lookup(addr))
    }

    /// Number of distinct addresses resolved so far.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Drops the debug info `backtrace` has parsed, process-wide (its cache is
    /// global; other users of the crate just reload lazily), and asks glibc
    /// to return the freed heap to the system: without `malloc_trim` most of
    /// the freed memory stays in glibc's arenas and RSS barely drops
    /// (measured: 68 MiB → 31 MiB without, → 7 MiB with). The next resolution
    /// pays the first-lookup cost again.
    pub fn release_debug_info() {
        backtrace::clear_symbol_cache();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions; it takes glibc's arena
        // locks itself. With another global allocator it only trims what
        // glibc holds, which is harmless.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

fn lookup(addr: u64) -> Box<[Frame]> {
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
    frames.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

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
