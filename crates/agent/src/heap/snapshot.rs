//! From sampled allocation records to a Go-compatible heap profile.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use firewatch_profile::Profile;

use crate::alloc::{self, AllocatorStats, BucketRecord, Dropped};
use crate::process::{current_mappings, Mapping};
use crate::stacks_to_profile::{build_profile, ProfileSpec, RawSample};
use crate::symbolize::Symbolizer;
use crate::{Error, Result};

/// Functions of the allocator itself, dropped by pprof (`drop_frames`) so the
/// leaf of a heap sample is the code that asked for memory. Only functions
/// that never call back into user code belong here: pprof prunes from the
/// *rootmost* match down, so a pattern that also matched, say, `Vec`'s
/// `collect` would drop the user closures it calls.
pub const ALLOCATOR_FRAMES: &str = r".*firewatch_agent::alloc::.*|__rustc::__rust_.*|__rustc::__rdl_.*|__rustc::__rg_.*|__rust_alloc.*|__rust_realloc.*|__rust_alloc_zeroed.*|__rdl_.*|__rg_.*|alloc::alloc::.*|alloc::raw_vec::.*|<alloc::alloc::Global as core::alloc::Allocator>::.*|<std::alloc::System as core::alloc::global::GlobalAlloc>::.*|std::sys::alloc::.*|malloc|calloc|realloc|posix_memalign|aligned_alloc";

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
    name.contains("firewatch_agent::alloc::")
        || trait_impl_in_alloc
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || matches!(
            name,
            "malloc" | "calloc" | "realloc" | "posix_memalign" | "aligned_alloc"
        )
}

/// Go's `scaleHeapSample`: the (objects, bytes) that `count` sampled
/// allocations of `bytes` in total stand for, when one allocation is sampled
/// per `interval` bytes on average. An allocation of size `s` is sampled
/// with probability `1 - exp(-s / interval)`; Go applies it at the average
/// size of the records.
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
/// [`heap_profile`]). Fails when no [`crate::SamplingAllocator`] has served
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
        return Err(Error::Skipped(
            "heap snapshots need firewatch_agent::SamplingAllocator as the #[global_allocator]"
                .into(),
        ));
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
    let fp = stats.frame_pointer_walks;
    if fp.total() > 0 {
        out.push(format!(
            "stacks walked with frame pointers only (incomplete without them): {} sampled \
             allocations before unwind tables were ready (before Agent::start or the first \
             snapshot), {} on a stack with under 64 KiB left, {} with every unwind cache busy",
            fp.not_prepared, fp.small_stack, fp.busy
        ));
    }
    let (reserved, full) = alloc::region_reserved();
    if reserved > 0 && reserved < full {
        out.push(format!(
            "sampled small blocks: {} MiB of address space reserved, not {} MiB (RLIMIT_AS); at \
             most {} of them live at once",
            reserved >> 20,
            full >> 20,
            reserved / (64 << 10)
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
/// Each record (one stack × one size) is unsampled with Go's formula at its
/// own size and its own interval, then records are summed by call stack.
pub fn heap_profile(
    records: &[BucketRecord],
    interval: u64,
    time: SystemTime,
    comments: &[String],
    mappings: &[Mapping],
    symbolizer: &mut Symbolizer,
) -> Profile {
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    let spec = ProfileSpec {
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
        duration_nanos: 0,
        comments: comments.to_vec(),
        default_sample_type: Some("inuse_space".into()),
        drop_frames: Some(ALLOCATOR_FRAMES.into()),
    };
    let mut by_stack: HashMap<Vec<u64>, [f64; 4]> = HashMap::new();
    for r in records {
        let stack = caller_stack(&r.frames, symbolizer);
        let (alloc_objects, alloc_bytes) =
            unsample_exact(r.allocs, r.allocs.saturating_mul(r.size), r.interval);
        let live = r.allocs - r.frees.min(r.allocs);
        let (inuse_objects, inuse_bytes) =
            unsample_exact(live, live.saturating_mul(r.size), r.interval);
        let sums = by_stack.entry(stack).or_default();
        for (sum, v) in
            sums.iter_mut()
                .zip([alloc_objects, alloc_bytes, inuse_objects, inuse_bytes])
        {
            *sum += v;
        }
    }
    let mut stacks: Vec<(Vec<u64>, [f64; 4])> = by_stack.into_iter().collect();
    stacks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let samples: Vec<RawSample> = stacks
        .into_iter()
        .map(|(stack, v)| RawSample::new(stack, v.iter().map(|x| x.round() as i64).collect()))
        .collect();
    build_profile(&samples, &spec, mappings, symbolizer)
}

/// Return addresses (innermost first) → the stack a profile stores:
/// allocation plumbing cut off the leaf end (a location counts as plumbing
/// when its out-of-line function and every function inlined into it are;
/// the symbolizer remembers the verdict per address, as records share most
/// of their frames), and the new leaf given as an address inside its call
/// instruction (`stack[0]` is stored as is).
fn caller_stack(frames: &[u64], symbolizer: &mut Symbolizer) -> Vec<u64> {
    let first_caller = frames
        .iter()
        .position(|&ret| !symbolizer.is_allocation_plumbing(ret.saturating_sub(1)))
        .unwrap_or(frames.len());
    let mut stack = frames[first_caller..].to_vec();
    if let Some(leaf) = stack.first_mut() {
        *leaf = leaf.saturating_sub(1);
    }
    stack
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
        // A thread's entry point is not plumbing, though it names `alloc::`.
        assert!(!is_allocation_plumbing(
            "<alloc::boxed::Box<dyn core::ops::function::FnOnce<()>> as core::ops::function::FnOnce<()>>::call_once"
        ));
        assert_eq!(unsample(0, 0, 512 * 1024), (0, 0));
        assert_eq!(unsample(3, 300, 1), (3, 300));
    }

    #[test]
    fn a_heap_profile_has_gos_shape() {
        let here = a_heap_profile_has_gos_shape as *const () as u64;
        let stacks = [BucketRecord {
            frames: vec![here + 4],
            size: 65_536,
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
