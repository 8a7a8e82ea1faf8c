//! From sampled allocation records to a Go-compatible heap profile.

use std::time::{SystemTime, UNIX_EPOCH};

use firewatch_profile::Profile;

use crate::process::Mapping;
use crate::stacks_to_profile::{build_profile, ProfileSpec, RawSample};
use crate::symbolize::Symbolizer;

/// Frames of the allocator itself, dropped by pprof (`drop_frames`) so the
/// leaf of a heap sample is the code that asked for memory.
pub const ALLOCATOR_FRAMES: &str = r"firewatch_agent::alloc::.*|__rust_alloc.*|__rust_realloc.*|__rust_alloc_zeroed.*|alloc::alloc::.*|alloc::raw_vec::.*|<alloc::alloc::Global as core::alloc::Allocator>::.*|malloc|calloc|realloc|posix_memalign|aligned_alloc";

/// One call stack's *sampled* allocation records: what the allocator saw,
/// before unsampling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapStack {
    /// Leaf first: the allocation site's PC chain (return addresses).
    pub stack: Vec<u64>,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
}

/// Go's `scaleHeapSample`: the (objects, bytes) that `count` sampled
/// allocations of `bytes` in total stand for, when one allocation is sampled
/// per `interval` bytes on average. An allocation of size `s` is sampled
/// with probability `1 - exp(-s / interval)`; Go applies it at the average
/// size of the records.
pub fn unsample(count: u64, bytes: u64, interval: u64) -> (i64, i64) {
    if count == 0 || bytes == 0 {
        return (0, 0);
    }
    if interval <= 1 {
        return (count as i64, bytes as i64);
    }
    let average = bytes as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-average / interval as f64).exp());
    ((count as f64 * scale) as i64, (bytes as f64 * scale) as i64)
}

/// A heap profile as Go writes one: sample types `alloc_objects/count`,
/// `alloc_space/bytes`, `inuse_objects/count`, `inuse_space/bytes`,
/// `period_type space/bytes` with `period` = the sampling interval,
/// `default_sample_type` = `inuse_space`, values unsampled, allocator frames
/// in `drop_frames`.
pub fn heap_profile(
    stacks: &[HeapStack],
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
    let samples: Vec<RawSample> = stacks
        .iter()
        .map(|s| {
            let (alloc_objects, alloc_bytes) = unsample(s.alloc_objects, s.alloc_bytes, interval);
            let (inuse_objects, inuse_bytes) = unsample(s.inuse_objects, s.inuse_bytes, interval);
            RawSample::new(
                s.stack.clone(),
                vec![alloc_objects, alloc_bytes, inuse_objects, inuse_bytes],
            )
        })
        .collect();
    build_profile(&samples, &spec, mappings, symbolizer)
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
        assert_eq!(unsample(0, 0, 512 * 1024), (0, 0));
        assert_eq!(unsample(3, 300, 1), (3, 300));
    }

    #[test]
    fn a_heap_profile_has_gos_shape() {
        let here = a_heap_profile_has_gos_shape as *const () as u64;
        let stacks = [HeapStack {
            stack: vec![here + 4],
            alloc_objects: 4,
            alloc_bytes: 4 * 65_536,
            inuse_objects: 2,
            inuse_bytes: 2 * 65_536,
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
        assert_eq!(p.sample[0].value[3], (131_072.0 * scale) as i64);
        assert!(p.string(p.drop_frames).contains("__rust_alloc"));
    }
}
