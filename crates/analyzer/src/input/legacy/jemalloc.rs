//! jemalloc's heap profile dump (`prof.dump`, `prof_prefix`,
//! tikv-jemalloc-ctl's `PROF_DUMP`), read as `jeprof` reads it.
//!
//! ```text
//! heap_v2/524288
//!   t*: 597: 67113807 [0: 0]
//!   t0: 597: 67113807 [0: 0]
//! @ 0x7f12e8aa2630 0x7f12e8aa2d21 …
//!   t*: 596: 67035065 [0: 0]
//!   t0: 596: 67035065 [0: 0]
//!
//! MAPPED_LIBRARIES:
//! 563be78e9000-563be78ea000 r-xp 00001000 fe:00 10010966   /usr/bin/app
//! ```
//!
//! The rate after `heap_v2/` is the mean sampling interval in bytes
//! (`2^lg_prof_sample`). Before the first stack, `t*` and `t<thread>` lines
//! are totals (a named thread's line ends with its name); after each `@`
//! stack, its `t*` line gives the stack's
//! `in-use count: bytes [allocated count: bytes]` over all threads (what
//! jeprof reports without `--thread`; the per-thread lines are checked and
//! not kept). Allocated counts are non-zero only with `prof_accum`.
//!
//! Sample types `inuse_objects`/`inuse_space` (the default), preceded by
//! `alloc_objects`/`alloc_space` when any allocated count is non-zero.
//! Each pair is unsampled as jeprof's `AdjustSamples` does (the Poisson
//! rule, [`unsample`]), truncated to whole numbers per stack as pprof
//! does; jeprof keeps fractions, so its per-function sums may exceed these
//! by less than one per stack. Callers' return addresses are moved back by
//! one byte onto the call, the leaf's not (jeprof's `FixCallerAddresses`).
//! `drop_frames` is jeprof's list of allocator functions it skips.
//! `MAPPED_LIBRARIES` is `/proc/self/maps`: it gives the mappings, with no
//! build IDs.

use super::text::{self, addresses, count_pairs, Lines};
use super::{maps, raw_sample, unsample, Legacy, LegacyError};

const HEADER: &str = "`heap_v2/<sampling rate>`";
const COUNTS: &str = "`t<thread or *>: <count>: <bytes> [<count>: <bytes>]`";

/// The functions jeprof removes from heap stacks (with everything they
/// call), each also with the `_` that Mach-O symbols carry.
const JEPROF_SKIP: &[&str] = &[
    "calloc",
    "cfree",
    "malloc",
    "newImpl",
    "void\\* newImpl",
    "free",
    "memalign",
    "posix_memalign",
    "aligned_alloc",
    "pvalloc",
    "valloc",
    "realloc",
    "mallocx",
    "rallocx",
    "xallocx",
    "dallocx",
    "sdallocx",
    "sdallocx_noflags",
    "tc_calloc",
    "tc_cfree",
    "tc_malloc",
    "tc_free",
    "tc_memalign",
    "tc_posix_memalign",
    "tc_pvalloc",
    "tc_valloc",
    "tc_realloc",
    "tc_new",
    "tc_delete",
    "tc_newarray",
    "tc_deletearray",
    "tc_new_nothrow",
    "tc_newarray_nothrow",
    "do_malloc",
    "::do_malloc",
    "::do_malloc_or_cpp_alloc",
    "DoSampledAllocation",
    "simple_alloc::allocate",
    "__malloc_alloc_template::allocate",
    "__builtin_delete",
    "__builtin_new",
    "__builtin_vec_delete",
    "__builtin_vec_new",
    "operator new",
    "operator new\\[\\]",
    "malloc_zone_malloc",
    "malloc_zone_calloc",
    "malloc_zone_valloc",
    "malloc_zone_realloc",
    "malloc_zone_memalign",
    "malloc_zone_free",
    "__start_google_malloc",
    "__stop_google_malloc",
    "__start_malloc_hook",
    "__stop_malloc_hook",
];

/// jeprof's `drop_frames`: the skipped names, `_`-prefixed or not, and
/// anything with `TCMalloc` in it or in `tcmalloc::`.
fn drop_frames() -> String {
    let names: Vec<&str> = JEPROF_SKIP.to_vec();
    format!("_?({})|.*TCMalloc.*|tcmalloc::.*", names.join("|"))
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let mut lines = Lines::new(bytes);
    let (number, first) = lines.next().unwrap_or((1, "".into()));
    let rate = first
        .trim()
        .strip_prefix("heap_v2/")
        .ok_or_else(|| text::bad_line(number, HEADER, &first))
        .and_then(|r| text::integer(number, r, false))?;
    let mut records: Vec<(Vec<u64>, [i64; 4])> = Vec::new();
    let mut stack: Option<Vec<u64>> = None;
    for (number, line) in lines.by_ref() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("MAPPED_LIBRARIES:") || line.starts_with("--- Memory map:") {
            break;
        }
        if let Some(list) = line.strip_prefix('@') {
            let addrs = addresses(number, list)?;
            if addrs.is_empty() {
                return Err(text::bad_line(number, "addresses after `@`", line));
            }
            stack = Some(
                addrs
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| if i > 0 { a.wrapping_sub(1) } else { a })
                    .collect(),
            );
            continue;
        }
        let (thread, counts) = line
            .split_once(':')
            .filter(|(t, _)| {
                t.strip_prefix('t').is_some_and(|id| {
                    id == "*" || (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .ok_or_else(|| text::bad_line(number, COUNTS, line))?;
        // jemalloc writes a named thread's name after its totals.
        let counts = match counts.find(']') {
            Some(end) => &counts[..=end],
            None => counts,
        };
        let counts = count_pairs(number, counts, COUNTS).map_err(|e| match e {
            LegacyError::Line { .. } => text::bad_line(number, COUNTS, line),
            e => e,
        })?;
        if counts.iter().any(|&c| c < 0) {
            return Err(LegacyError::Value {
                line: number,
                reason: "a negative count".into(),
            });
        }
        if thread == "t*" {
            match stack.take() {
                Some(addrs) => records.push((addrs, counts)),
                // Totals before the first stack.
                None if records.is_empty() => {}
                None => {
                    return Err(LegacyError::Value {
                        line: number,
                        reason: "a second `t*` line for one stack".into(),
                    })
                }
            }
        }
    }
    let has_alloc = records.iter().any(|(_, c)| c[2] != 0 || c[3] != 0);
    let adjust = |count: i64, size: i64| match rate {
        0 => (count, size),
        rate => unsample(count, size, rate as f64),
    };
    let samples = records
        .into_iter()
        .map(|(addrs, [n1, s1, n2, s2])| {
            let (n1u, s1u) = adjust(n1, s1);
            let mut values = Vec::with_capacity(4);
            if has_alloc {
                let (n2u, s2u) = adjust(n2, s2);
                values.extend([n2u, s2u]);
            }
            values.extend([n1u, s1u]);
            let bytes = match (n1, n2) {
                (0, 0) => 0,
                (0, n2) => s2 / n2,
                (n1, _) => s1 / n1,
            };
            raw_sample(addrs, values, Some(bytes))
        })
        .collect();
    let mappings = maps::parse(lines)?;
    Ok(Legacy {
        period_type: ("space", "bytes"),
        period: rate,
        sample_types: if has_alloc {
            vec![
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ]
        } else {
            vec![("inuse_objects", "count"), ("inuse_space", "bytes")]
        },
        samples,
        mappings,
        drop_frames: drop_frames(),
        ..Legacy::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "heap_v2/131072\n  t*: 3: 300000 [0: 0]\n  t0: 3: 300000 [0: 0] main\n\
        @ 0x1010 0x2020\n  t*: 3: 300000 [0: 0]\n  t0: 3: 300000 [0: 0]\n\n\
        MAPPED_LIBRARIES:\n00001000-00003000 r-xp 00000000 00:00 0 /bin/app\n";

    #[test]
    fn stacks_take_their_all_threads_line_unsampled() {
        let p = parse(DUMP.as_bytes()).unwrap();
        assert_eq!(
            p.sample_types,
            [("inuse_objects", "count"), ("inuse_space", "bytes")]
        );
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.samples[0].location_id, [0x1010, 0x201f]);
        let scale = 1.0 / (1.0 - (-(100000.0f64 / 131072.0)).exp());
        assert_eq!(
            p.samples[0].value,
            [(3.0 * scale) as i64, (300000.0 * scale) as i64]
        );
        assert_eq!(p.mappings.len(), 1);
        let re = regex::Regex::new(&format!("^({})$", drop_frames())).unwrap();
        for name in [
            "malloc",
            "_malloc",
            "operator new[]",
            "tcmalloc::Foo",
            "xTCMallocY",
        ] {
            assert!(re.is_match(name), "{name}");
        }
        assert!(!re.is_match("main"));
    }

    #[test]
    fn bad_lines_are_named() {
        let bad = DUMP.replace("  t0: 3: 300000 [0: 0]\n\n", "  t0: 3: 300000\n\n");
        let e = parse(bad.as_bytes()).unwrap_err();
        assert!(matches!(e, LegacyError::Line { line: 6, .. }), "{e}");
        let e = parse(b"heap_v2/x\n").unwrap_err();
        assert!(matches!(e, LegacyError::Value { line: 1, .. }), "{e}");
        let e = parse(b"heap_v2/1\n@ 0x1 zz\n").unwrap_err();
        assert!(matches!(e, LegacyError::Value { line: 2, .. }), "{e}");
        let e = parse(b"heap_v2/1\nhello\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: expected `t<thread or *>: <count>: <bytes> [<count>: <bytes>]`, found `hello`"
        );
    }
}
