//! From sampled allocation records to a Go-compatible heap profile.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firewatch_profile::Profile;

use crate::alloc::{self, AllocatorStats, BucketRecord, Dropped};
use crate::process::{current_mappings, Mapping};
use crate::stacks_to_profile::{build_profile, ProfileSpec, RawSample};
use crate::symbolize::{is_qualified, Frame, Symbolizer};
use crate::{Error, Result};

/// Functions of the allocator itself, dropped by pprof (`drop_frames`) so the
/// leaf of a heap sample is the code that asked for memory. Only functions
/// that never call back into user code belong here: pprof prunes from the
/// *rootmost* match down, so a pattern that also matched, say, `Vec`'s
/// `collect` would drop the user closures it calls.
pub const ALLOCATOR_FRAMES: &str = r".*firewatch_agent::alloc::.*|__rustc::__rust_.*|__rustc::__rdl_.*|__rustc::__rg_.*|__rust_alloc.*|__rust_realloc.*|__rust_alloc_zeroed.*|__rdl_.*|__rg_.*|alloc::alloc::.*|alloc::raw_vec::.*|<alloc::raw_vec::.*|<alloc::alloc::Global as core::alloc::Allocator>::.*|<std::alloc::System as core::alloc::global::GlobalAlloc>::.*|std::sys::alloc::.*|malloc|calloc|realloc|posix_memalign|aligned_alloc";

/// Whether `name` is allocation plumbing: the allocator ([`ALLOCATOR_FRAMES`])
/// or the standard library code between a caller and the allocator (`Vec`
/// and `String` growth, `Box::new`, `format!`, collections). Snapshots cut
/// these off the leaf end of each stack, stopping at the first frame that is
/// not plumbing, so the leaf is the service's own function.
pub fn is_allocation_plumbing(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "__rustc::__rust_",
        "__rustc::__rdl_",
        "__rustc::__rg_",
        "__rust_alloc",
        "__rust_realloc",
        "__rdl_",
        "__rg_",
        "alloc::",
        "<alloc::alloc::",
        "<alloc::vec::",
        "<alloc::string::",
        "<alloc::collections::",
        "<std::alloc::System as core::alloc::global::GlobalAlloc>::",
        "std::sys::alloc::",
        "core::fmt::",
        "<core::fmt::",
        "hashbrown::",
        "<hashbrown::",
        "std::collections::",
        "<std::collections::",
    ];
    // `<T as alloc::vec::spec_from_elem::SpecFromElem>::from_elem` and kin.
    let trait_impl_in_alloc = name.starts_with('<') && name.contains(" as alloc::");
    // Inherent methods as v0 mangling names them (the standard library's
    // symbols): `<alloc::raw_vec::RawVecInner>::finish_grow`. A trait impl
    // for an `alloc` type (`<alloc::boxed::Box<dyn FnOnce()> as
    // core::ops::function::FnOnce<()>>::call_once`) is not one.
    let inherent_in_alloc = name.starts_with("<alloc::") && !name.contains(" as ");
    name.contains("firewatch_agent::alloc::")
        || trait_impl_in_alloc
        || inherent_in_alloc
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || matches!(
            name,
            "malloc" | "calloc" | "realloc" | "posix_memalign" | "aligned_alloc"
        )
}

/// Whether a resolved frame is allocation plumbing: by its name
/// ([`is_allocation_plumbing`]), or, when debug info gave the name without
/// its path (`debug = "line-tables-only"` names an inlined
/// `Vec::with_capacity_in` just `with_capacity_in<u8, alloc::alloc::Global>`),
/// by the source file its code is in ([`is_plumbing_source`]). Functions
/// that call a closure (`call_once` and kin) are never plumbing, whatever
/// their file.
pub fn is_allocation_plumbing_frame(frame: &Frame) -> bool {
    if is_allocation_plumbing(&frame.name) {
        return true;
    }
    let base = frame.name.split('<').next().unwrap_or_default();
    !is_qualified(&frame.name)
        && !matches!(base, "call_once" | "call_mut" | "call")
        && frame.file.as_deref().is_some_and(is_plumbing_source)
}

/// Whether `file` is source of allocation plumbing, the files behind the
/// names [`is_allocation_plumbing`] knows: the standard library's `alloc`
/// crate (`…/library/alloc/src/…`, as `/rustc/<commit>/` or a `rust-src`
/// path), the allocator and collections parts of `std`, `core::fmt`,
/// `hashbrown`, and this crate's allocator (`src/alloc/`, in this build's
/// source directory or any `firewatch-agent-<version>` one).
pub fn is_plumbing_source(file: &str) -> bool {
    const IN_STD: &[&str] = &[
        "/library/alloc/src/",
        "/library/std/src/alloc.rs",
        "/library/std/src/sys/alloc/",
        "/library/std/src/collections/",
        "/library/core/src/fmt/",
    ];
    const THIS_ALLOCATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc/");
    let in_hashbrown = file
        .split_once("/hashbrown-")
        .is_some_and(|(_, rest)| rest.contains("/src/"));
    let in_released_agent = file
        .split_once("firewatch-agent-")
        .and_then(|(_, rest)| rest.split_once('/'))
        .is_some_and(|(_, path)| path.starts_with("src/alloc/"));
    IN_STD.iter().any(|p| file.contains(p))
        || in_hashbrown
        || file.starts_with(THIS_ALLOCATOR)
        || in_released_agent
}

/// Go's `scaleHeapSample`: the (objects, bytes) that `count` sampled
/// allocations of `bytes` in total stand for, when one allocation is sampled
/// per `interval` bytes on average. An allocation of size `s` is sampled
/// with probability `1 - exp(-s / interval)`; Go applies it at the average
/// size of the records.
#[cfg(test)]
pub fn unsample(count: u64, bytes: u64, interval: u64) -> (i64, i64) {
    let (objects, bytes) = unsample_exact(count, bytes, interval);
    (objects as i64, bytes as i64)
}

fn unsample_exact(count: u64, bytes: u64, interval: u64) -> (f64, f64) {
    if count == 0 || bytes == 0 {
        return (0.0, 0.0);
    }
    if interval <= 1 {
        return (count as f64, bytes as f64);
    }
    let average = bytes as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-average / interval as f64).exp());
    (count as f64 * scale, bytes as f64 * scale)
}

/// A heap profile of the sampling allocator now, as Go writes one (see
/// `heap_profile`). Fails when no [`crate::SamplingAllocator`] has served
/// allocations in this process (it is not the global allocator).
pub fn snapshot() -> Result<Profile> {
    snapshot_with_comments(&[])
}

/// [`snapshot`] with extra comments (the agent adds the trigger).
pub fn snapshot_with_comments(extra: &[String]) -> Result<Profile> {
    // Allocations sampled from now on unwind with the modules' tables.
    crate::unwind::in_place::prepare();
    let stats = alloc::stats();
    if !stats.active {
        return Err(Error::Skipped(crate::SkipReason::NoSamplingAllocator));
    }
    let records = alloc::bucket_records();
    let mut comments = extra.to_vec();
    comments.extend(describe(&stats));
    let mappings = current_mappings()?;
    // Shared: a later snapshot only resolves the addresses this one has not.
    let mut symbolizer = Symbolizer::shared(&mappings);
    let interval = records
        .first()
        .map_or(stats.sample_interval, |r| r.interval);
    Ok(heap_profile(
        &records,
        interval,
        SystemTime::now(),
        &comments,
        &mappings,
        &mut symbolizer,
    ))
}

/// Human-readable facts a heap profile carries as comments.
fn describe(stats: &AllocatorStats) -> Vec<String> {
    let mut out = vec![
        format!("sample interval: {} bytes", stats.sample_interval),
        format!(
            "heap in use (allocator counter): {} bytes",
            stats.in_use_bytes
        ),
        format!("live sampled blocks: {}", stats.live_samples),
        format!("captured by firewatch-agent {}", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(rss) = crate::process::rss_bytes() {
        out.push(format!("rss: {rss} bytes"));
    }
    if let Some(limit) = crate::process::memory_limit_bytes() {
        out.push(format!("memory limit: {limit} bytes"));
    }
    let d = stats.dropped;
    if d != Dropped::default() {
        out.push(format!(
            "samples not recorded: {} (region full), {} (large-block table full), {} (stack table full)",
            d.no_slot, d.no_large_entry, d.no_bucket
        ));
    }
    out.push(
        "unwinding: .eh_frame CFI in place at each sampled allocation, frame pointers \
         where no table covers the code"
            .into(),
    );
    if let Some(comment) = crate::unwind::self_check::result().comment() {
        out.push(comment);
    }
    if let Some(comment) = crate::labels::overflow_comment() {
        out.push(comment);
    }
    let fp = stats.frame_pointer_walks;
    if fp.total() > 0 {
        out.push(format!(
            "stacks walked with frame pointers only (incomplete without them): {} sampled \
             allocations before unwind tables were ready (before Agent::start or the first \
             snapshot), {} on a stack with under 64 KiB left, {} with every unwind cache busy",
            fp.not_prepared, fp.small_stack, fp.busy
        ));
    }
    let reclaimed = alloc::reclaimed();
    if reclaimed.buckets > 0 {
        out.push(format!(
            "stack table full: {} entries with nothing live were reused for new stacks; the {} \
             sampled allocations ({} bytes sampled) they had counted are not in alloc_objects \
             and alloc_space",
            reclaimed.buckets, reclaimed.allocs, reclaimed.bytes
        ));
    }
    let (reserved, full, slot) = alloc::region_reserved();
    if reserved > 0 && reserved < full && slot > 0 {
        out.push(format!(
            "sampled small blocks: {} MiB of address space reserved, not {} MiB (RLIMIT_AS); at \
             most {} of them live at once",
            reserved >> 20,
            full >> 20,
            reserved / slot
        ));
    }
    if alloc::region_unavailable() {
        out.push("small blocks are not sampled: the address range could not be reserved".into());
    }
    out
}

/// A heap profile as Go writes one: sample types `alloc_objects/count`,
/// `alloc_space/bytes`, `inuse_objects/count`, `inuse_space/bytes`,
/// `period_type space/bytes` with `period` = the sampling interval,
/// `default_sample_type` = `inuse_space`, allocator frames in
/// `drop_frames`, allocation plumbing cut off each stack's leaf end.
///
/// Each record (one stack × one size × one label set) is unsampled with
/// Go's formula at its own size and its own interval, then records are
/// summed by (call stack, label set); a label set becomes sample labels.
pub fn heap_profile(
    records: &[BucketRecord],
    interval: u64,
    time: SystemTime,
    comments: &[String],
    mappings: &[Mapping],
    symbolizer: &mut Symbolizer,
) -> Profile {
    let values = stack_values(records, symbolizer);
    let spec = heap_spec(interval, time, Duration::ZERO, comments);
    profile_of(values, &spec, mappings, symbolizer)
}

/// The shape every heap profile has, Go's.
fn heap_spec(
    interval: u64,
    time: SystemTime,
    duration: Duration,
    comments: &[String],
) -> ProfileSpec {
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    ProfileSpec {
        sample_types: vec![
            pair("alloc_objects", "count"),
            pair("alloc_space", "bytes"),
            pair("inuse_objects", "count"),
            pair("inuse_space", "bytes"),
        ],
        period_type: pair("space", "bytes"),
        period: interval as i64,
        time_nanos: time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        duration_nanos: duration.as_nanos() as i64,
        comments: comments.to_vec(),
        default_sample_type: Some("inuse_space".into()),
        drop_frames: Some(ALLOCATOR_FRAMES.into()),
    }
}

/// A sample's identity in a heap profile: the stack it stores and the
/// label set.
type StackKey = (CallerStack, u32);

/// The four values per (call stack, label set): records unsampled and
/// summed, then rounded, as a profile stores them.
fn stack_values(
    records: &[BucketRecord],
    symbolizer: &mut Symbolizer,
) -> HashMap<StackKey, [i64; 4]> {
    let mut by_stack: HashMap<StackKey, [f64; 4]> = HashMap::new();
    for r in records {
        let stack = caller_stack(&r.frames, symbolizer);
        let (alloc_objects, alloc_bytes) =
            unsample_exact(r.allocs, r.allocs.saturating_mul(r.size), r.interval);
        let live = r.allocs - r.frees.min(r.allocs);
        let (inuse_objects, inuse_bytes) =
            unsample_exact(live, live.saturating_mul(r.size), r.interval);
        let sums = by_stack.entry((stack, r.labels)).or_default();
        for (sum, v) in
            sums.iter_mut()
                .zip([alloc_objects, alloc_bytes, inuse_objects, inuse_bytes])
        {
            *sum += v;
        }
    }
    by_stack
        .into_iter()
        .map(|(key, sums)| (key, sums.map(|x| x.round() as i64)))
        .collect()
}

/// The profile of `values`, samples in stack order.
fn profile_of(
    values: HashMap<StackKey, [i64; 4]>,
    spec: &ProfileSpec,
    mappings: &[Mapping],
    symbolizer: &mut Symbolizer,
) -> Profile {
    let mut stacks: Vec<(StackKey, [i64; 4])> = values.into_iter().collect();
    stacks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let samples: Vec<RawSample> = stacks
        .into_iter()
        .map(|(((stack, inlined_plumbing), labels), v)| {
            let mut raw =
                RawSample::new(stack, v.to_vec()).with_leaf_frames_dropped(inlined_plumbing);
            for &(key, value) in crate::labels::LabelSet::from_id(labels).pairs() {
                raw = raw.with_label(key, value);
            }
            raw
        })
        .collect();
    build_profile(&samples, spec, mappings, symbolizer)
}

/// The sampling allocator's records at one moment, unsymbolized: the first
/// half of a delta profile (`/debug/pprof/heap?seconds=N`), kept raw so
/// that both halves are named by one symbolizer, alike.
pub(crate) struct HeapRecords {
    records: Vec<BucketRecord>,
    at: SystemTime,
    taken: std::time::Instant,
}

/// The allocator's records now. Fails as [`snapshot`] does.
pub(crate) fn records_now() -> Result<HeapRecords> {
    crate::unwind::in_place::prepare();
    if !alloc::stats().active {
        return Err(Error::Skipped(crate::SkipReason::NoSamplingAllocator));
    }
    Ok(HeapRecords {
        records: alloc::bucket_records(),
        at: SystemTime::now(),
        taken: std::time::Instant::now(),
    })
}

/// Go's delta heap profile (`net/http/pprof`'s `serveDeltaProfile`): a
/// snapshot now less `first`, as pprof merges the second with the first
/// scaled by −1: values per (stack, labels) subtracted (each snapshot's
/// rounded first), samples whose values are all zero left out, the time
/// the second snapshot's and the duration the time between. So
/// `alloc_*` are what was allocated in between, `inuse_*` how memory in
/// use changed (negative where it shrank).
pub(crate) fn delta_with_comments(first: &HeapRecords, extra: &[String]) -> Result<Profile> {
    let second = records_now()?;
    let stats = alloc::stats();
    let apart = second.taken.saturating_duration_since(first.taken);
    let mut comments = extra.to_vec();
    comments.push(format!(
        "firewatch: delta profile: a heap snapshot less the one taken {:.3} s before it; \
         alloc_* were allocated in between, inuse_* is how memory in use changed (negative \
         where it shrank)",
        apart.as_secs_f64()
    ));
    comments.extend(describe(&stats));
    let mappings = current_mappings()?;
    let mut symbolizer = Symbolizer::shared(&mappings);
    let mut values = stack_values(&second.records, &mut symbolizer);
    for (key, before) in stack_values(&first.records, &mut symbolizer) {
        let after = values.entry(key).or_default();
        for (a, b) in after.iter_mut().zip(before) {
            *a -= b;
        }
    }
    values.retain(|_, v| v.iter().any(|&x| x != 0));
    let interval = second
        .records
        .first()
        .map_or(stats.sample_interval, |r| r.interval);
    let duration = second.at.duration_since(first.at).unwrap_or(apart);
    let spec = heap_spec(interval, second.at, duration, &comments);
    Ok(profile_of(values, &spec, &mappings, &mut symbolizer))
}

/// A stack as a profile stores it (see [`caller_stack`]) and how many
/// inlined frames its leaf leaves out.
type CallerStack = (Vec<u64>, usize);

/// Return addresses (innermost first) → the stack a profile stores, and
/// how many inlined frames to leave out of its leaf: allocation plumbing cut
/// off the leaf end, frame by frame, whether a frame is a real call or was
/// inlined. Locations that are plumbing through and through go; in the
/// first that is not, the plumbing inlined into its caller is left out
/// (`Vec::with_capacity_in` inlined into `remember_session` leaves
/// `remember_session` as the leaf). The symbolizer remembers each verdict
/// per address, as records share most of their frames. The new leaf is
/// given as an address inside its call instruction (`stack[0]` is stored
/// as is).
fn caller_stack(frames: &[u64], symbolizer: &mut Symbolizer) -> CallerStack {
    for (i, &ret) in frames.iter().enumerate() {
        let at = ret.saturating_sub(1);
        if !symbolizer.is_allocation_plumbing(at) {
            let mut stack = frames[i..].to_vec();
            stack[0] = at;
            return (stack, symbolizer.plumbing_depth(at));
        }
    }
    (Vec::new(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsampling_matches_gos_formula() {
        // Independent values: 1/(1-e^-1) = 1.5819767068693265 (one sample of
        // exactly the interval), 1/(1-e^-(1/2048)) = 2048.50002 (a 256-byte
        // object at a 512 KiB interval).
        let (objects, bytes) = unsample(1, 512 * 1024, 512 * 1024);
        assert_eq!(
            (objects, bytes),
            (1, (524_288.0 * 1.581_976_706_869_326_5) as i64)
        );
        let (objects, bytes) = unsample(10, 2560, 512 * 1024);
        assert_eq!(objects, 20_485);
        assert_eq!(bytes, 5_244_160);
        // Huge allocations are always sampled: no scaling.
        assert_eq!(unsample(2, 200 << 20, 512 * 1024), (2, 200 << 20));
        assert!(is_allocation_plumbing(
            "<firewatch_agent::alloc::SamplingAllocator<A> as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(is_allocation_plumbing("alloc::raw_vec::finish_grow"));
        assert!(is_allocation_plumbing("__rustc::__rust_alloc"));
        assert!(is_allocation_plumbing(
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"
        ));
        assert!(!is_allocation_plumbing("service::leak_orders"));
        assert!(is_allocation_plumbing(
            "<alloc::raw_vec::RawVecInner>::finish_grow"
        ));
        // A thread's entry point is not plumbing, though it names `alloc::`.
        assert!(!is_allocation_plumbing(
            "<alloc::boxed::Box<dyn core::ops::function::FnOnce<()>> as core::ops::function::FnOnce<()>>::call_once"
        ));
        assert_eq!(unsample(0, 0, 512 * 1024), (0, 0));
        assert_eq!(unsample(3, 300, 1), (3, 300));
    }

    fn frame(name: &str, file: &str) -> Frame {
        Frame::for_test(name, file)
    }

    #[test]
    fn plumbing_frames_by_name_or_by_source_file() {
        let rustc = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
        let plumbing = [
            // Standard library names as v0 mangling gives them.
            frame("<alloc::raw_vec::RawVecInner>::finish_grow", "x.rs"),
            frame("<alloc::vec::Vec<u8>>::push", "x.rs"),
            // Short names (`debug = "line-tables-only"`), by their file.
            frame(
                "with_capacity_in<u8, alloc::alloc::Global>",
                &format!("{rustc}/alloc/src/vec/mod.rs"),
            ),
            frame("from_elem<u8>", &format!("{rustc}/alloc/src/vec/mod.rs")),
            frame(
                "try_allocate_in<alloc::alloc::Global>",
                &format!("{rustc}/alloc/src/raw_vec/mod.rs"),
            ),
            frame(
                "alloc",
                "/root/.rustup/toolchains/stable/lib/rustlib/src/rust/library/alloc/src/alloc.rs",
            ),
            frame("__rdl_alloc", &format!("{rustc}/std/src/alloc.rs")),
            frame(
                "reserve_rehash<u64>",
                "/rust/deps/hashbrown-0.15.2/src/raw/mod.rs",
            ),
            frame(
                "alloc<std::alloc::System>",
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc/mod.rs"),
            ),
            frame(
                "alloc_event<std::alloc::System>",
                "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/firewatch-agent-0.2.0/src/alloc/mod.rs",
            ),
        ];
        for f in &plumbing {
            assert!(is_allocation_plumbing_frame(f), "{f:?}");
        }
        let not_plumbing = [
            frame("service::remember_session", "service.rs"),
            frame("remember_session", "/work/svc/src/main.rs"),
            frame("{closure#0}", "/work/svc/src/main.rs"),
            // Calls a closure, though in `alloc`.
            frame(
                "call_once<(), dyn core::ops::function::FnOnce<(), Output=()>, alloc::alloc::Global>",
                &format!("{rustc}/alloc/src/boxed.rs"),
            ),
            frame(
                "<alloc::boxed::Box<dyn core::ops::function::FnOnce<()>> as core::ops::function::FnOnce<()>>::call_once",
                &format!("{rustc}/alloc/src/boxed.rs"),
            ),
            // A qualified name is judged by its name, not its file.
            frame("service::alloc::Pool::grow", concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc/mod.rs")),
            // A service's own `alloc` module.
            frame("grow", "/work/svc/src/alloc/mod.rs"),
            frame("spawn<u8>", "/work/svc/src/hashbrown/mod.rs"),
        ];
        for f in &not_plumbing {
            assert!(!is_allocation_plumbing_frame(f), "{f:?}");
        }
        let no_file = Frame {
            file: None,
            ..frame("from_elem<u8>", "")
        };
        assert!(!is_allocation_plumbing_frame(&no_file));
    }

    #[test]
    fn inlined_plumbing_is_left_out_of_the_leaf_only() {
        let vec = "/rustc/0123/library/alloc/src/vec/mod.rs";
        let session = "/work/svc/src/main.rs";
        // Return addresses, one past these call sites.
        let (alloc, remember, main, helper) = (0x1000, 0x2000, 0x3000, 0x4000);
        let mut symbolizer = Symbolizer::with_answers([
            (
                alloc,
                vec![frame("firewatch_agent::alloc::alloc_event", "mod.rs")],
            ),
            (
                remember,
                vec![
                    frame("with_capacity_in<u8, alloc::alloc::Global>", vec),
                    frame("alloc::vec::from_elem", vec),
                    frame("service::remember_session", session),
                ],
            ),
            (main, vec![frame("service::main", session)]),
            (helper, vec![frame("service::helper", session)]),
        ]);
        let record = |frames: Vec<u64>| BucketRecord {
            frames: frames.into_iter().map(|a| a + 1).collect(),
            size: 512,
            labels: 0,
            interval: 1,
            allocs: 1,
            frees: 0,
        };
        let records = [
            record(vec![alloc, remember, main]),
            // `remember` again, below a user frame (a closure it called,
            // say): all its frames stay.
            record(vec![alloc, helper, remember, main]),
        ];
        let p = heap_profile(&records, 1, SystemTime::now(), &[], &[], &mut symbolizer);
        p.validate().unwrap();
        let names = |sample: &firewatch_profile::Sample| -> Vec<Vec<String>> {
            sample
                .location_id
                .iter()
                .map(|&id| {
                    p.location[id as usize - 1]
                        .line
                        .iter()
                        .map(|l| {
                            p.string(p.function[l.function_id as usize - 1].name)
                                .to_string()
                        })
                        .collect()
                })
                .collect()
        };
        let stacks: Vec<_> = p.sample.iter().map(names).collect();
        assert!(
            stacks.contains(&vec![
                vec!["service::remember_session".to_string()],
                vec!["service::main".to_string()],
            ]),
            "{stacks:#?}"
        );
        assert!(
            stacks.contains(&vec![
                vec!["service::helper".to_string()],
                vec![
                    "with_capacity_in<u8, alloc::alloc::Global>".to_string(),
                    "alloc::vec::from_elem".to_string(),
                    "service::remember_session".to_string(),
                ],
                vec!["service::main".to_string()],
            ]),
            "{stacks:#?}"
        );
        // Two locations at the leak's call site: the leaf, and the full one.
        let at_remember = p.location.iter().filter(|l| l.address == remember).count();
        assert_eq!(at_remember, 2);
    }

    #[test]
    fn records_of_one_stack_under_two_label_sets_stay_two_labelled_samples() {
        let (alloc, leak, main) = (0x1000, 0x2000, 0x3000);
        let mut symbolizer = Symbolizer::with_answers([
            (
                alloc,
                vec![frame("firewatch_agent::alloc::alloc_event", "mod.rs")],
            ),
            (leak, vec![frame("service::leak", "main.rs")]),
            (main, vec![frame("service::main", "main.rs")]),
        ]);
        let a = crate::labels::LabelSet::new([("endpoint", "/a")]);
        let b = crate::labels::LabelSet::new([("endpoint", "/b"), ("tier", "gold")]);
        let record = |labels: u32, size: u64| BucketRecord {
            frames: vec![alloc + 1, leak + 1, main + 1],
            size,
            labels,
            interval: 1,
            allocs: 2,
            frees: 0,
        };
        // Two sizes under /a merge into one sample; /b and no labels stay apart.
        let records = [
            record(a.id(), 100),
            record(a.id(), 200),
            record(b.id(), 100),
            record(0, 100),
        ];
        let p = heap_profile(&records, 1, SystemTime::now(), &[], &[], &mut symbolizer);
        p.validate().unwrap();
        let mut seen: Vec<(Vec<(String, String)>, i64)> = p
            .sample
            .iter()
            .map(|s| {
                let labels = s
                    .label
                    .iter()
                    .map(|l| (p.string(l.key).to_string(), p.string(l.str).to_string()))
                    .collect();
                (labels, s.value[3])
            })
            .collect();
        seen.sort();
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            seen,
            [
                (vec![], 200),
                (vec![pair("endpoint", "/a")], 600),
                (vec![pair("endpoint", "/b"), pair("tier", "gold")], 200),
            ]
        );
    }

    #[test]
    fn a_heap_profile_has_gos_shape() {
        let here = a_heap_profile_has_gos_shape as *const () as u64;
        let stacks = [BucketRecord {
            frames: vec![here + 4],
            size: 65_536,
            labels: 0,
            interval: 65_536,
            allocs: 4,
            frees: 2,
        }];
        let mappings = crate::process::current_mappings().unwrap();
        let p = heap_profile(
            &stacks,
            65_536,
            SystemTime::now(),
            &[],
            &mappings,
            &mut Symbolizer::new(),
        );
        p.validate().unwrap();
        let types: Vec<&str> = p.sample_type.iter().map(|t| p.string(t.r#type)).collect();
        assert_eq!(
            types,
            [
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space"
            ]
        );
        assert_eq!(
            (
                p.string(p.period_type.r#type),
                p.string(p.period_type.unit),
                p.period
            ),
            ("space", "bytes", 65_536)
        );
        assert_eq!(p.string(p.default_sample_type), "inuse_space");
        let scale = 1.0 / (1.0 - (-1.0f64).exp());
        assert_eq!(p.sample[0].value[3], (131_072.0 * scale).round() as i64);
        assert!(p.string(p.drop_frames).contains("__rust_alloc"));
    }
}
