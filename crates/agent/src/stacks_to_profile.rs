//! Raw stacks (addresses) → a pprof [`Profile`], filled the way `go tool
//! pprof`, Pyroscope and Parca expect:
//!
//! - **Samples** with the same stack, synthetic root and labels are merged.
//! - **Locations are keyed by address**, never by function name, so a
//!   profile can be re-symbolized offline and two call sites in a function
//!   stay apart (a leaf that leaves inlined frames out,
//!   [`RawSample::leaf_frames_dropped`], is a location of its own).
//! - **Addresses**: `stack[0]` is the interrupted PC, stored as is; every
//!   other entry is a return address, stored and symbolized as `return
//!   address - 1` (inside the call, not in the next line or, after a
//!   `noreturn` call, the next function), as Go and rust-jemalloc-pprof do.
//!   Zero entries are dropped (unwinders end a stack with one).
//! - **Lines**: one per resolved frame in one Location, inlined callee
//!   first; an unresolved address gets no lines (`[binary]` in pprof) but
//!   keeps its address and mapping.
//! - **Mappings**: all of them, ids = index + 1, the main binary first.
//! - **`has_*` flags** as pprof's own symbolizer sets them (any location
//!   got that kind of answer). pprof skips re-symbolizing a mapping with a
//!   name flag set, which matters: Go 1.19's object reader put wrong names
//!   on our lld-linked test binary under `-symbolize=force`.
//! - **Ids** are sequential from 1 in order of first use; functions are
//!   deduplicated by (name, system name, file).

use std::collections::HashMap;

use firewatch_profile::{
    Function, Label, Line, Location, Mapping as PprofMapping, Profile, Sample, StringInterner,
    ValueType,
};

use crate::process::Mapping;
use crate::symbolize::Symbolizer;

/// Root frame of samples the agent knows were taken but lost (ring overflow,
/// lock contention), so totals stay honest.
pub const LOST_SAMPLES_FRAME: &str = "[firewatch: lost samples]";
/// Root frame placed above stacks cut at the maximum depth, so truncated
/// stacks group under one node in a flame graph instead of posing as roots.
pub const TRUNCATED_STACK_FRAME: &str = "[firewatch: truncated stack]";

/// One sample as captured, before symbolization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSample {
    /// Leaf first: `stack[0]` is the interrupted PC, the others are return
    /// addresses (see the module doc for how each is stored).
    pub stack: Vec<u64>,
    /// One value per [`ProfileSpec::sample_types`] entry.
    pub values: Vec<i64>,
    /// String labels (`thread_name`, …). Do not repeat a key.
    pub labels: Vec<(String, String)>,
    /// A synthetic frame placed at the root, outermost, above `stack`: a
    /// function of that name with no mapping and no address. With an empty
    /// `stack` the sample is just that frame (e.g. [`LOST_SAMPLES_FRAME`]);
    /// with a stack, it marks it (e.g. [`TRUNCATED_STACK_FRAME`]).
    pub synthetic_root: Option<String>,
    /// Frames left out of the leaf's location: the first this many of
    /// `stack[0]`'s frames, innermost first (heap snapshots leave out the
    /// allocation plumbing inlined into the function that asked for
    /// memory). At least its out-of-line function always stays.
    pub leaf_frames_dropped: usize,
}

impl RawSample {
    pub fn new(stack: Vec<u64>, values: Vec<i64>) -> Self {
        RawSample {
            stack,
            values,
            ..Self::default()
        }
    }

    /// A sample made of one synthetic frame named `name`.
    pub fn synthetic(name: impl Into<String>, values: Vec<i64>) -> Self {
        RawSample {
            values,
            synthetic_root: Some(name.into()),
            ..Self::default()
        }
    }

    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    pub fn with_synthetic_root(mut self, name: impl Into<String>) -> Self {
        self.synthetic_root = Some(name.into());
        self
    }

    pub fn with_leaf_frames_dropped(mut self, frames: usize) -> Self {
        self.leaf_frames_dropped = frames;
        self
    }
}

/// Everything about a profile other than its samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileSpec {
    /// (type, unit) per sample value, e.g. `("samples", "count")`.
    pub sample_types: Vec<(String, String)>,
    pub period_type: (String, String),
    pub period: i64,
    /// Start of the window, nanoseconds since the Unix epoch.
    pub time_nanos: i64,
    pub duration_nanos: i64,
    /// For humans only (trigger, requested vs effective rate, drops).
    pub comments: Vec<String>,
    pub default_sample_type: Option<String>,
    /// Regex of function names pprof should drop with their callees.
    pub drop_frames: Option<String>,
}

impl ProfileSpec {
    /// The Go convention for CPU profiles: `samples/count`, `cpu/nanoseconds`,
    /// period `cpu/nanoseconds` (the effective sampling interval).
    pub fn cpu(period_nanos: i64, time_nanos: i64, duration_nanos: i64) -> Self {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        ProfileSpec {
            sample_types: vec![pair("samples", "count"), pair("cpu", "nanoseconds")],
            period_type: pair("cpu", "nanoseconds"),
            period: period_nanos,
            time_nanos,
            duration_nanos,
            ..Self::default()
        }
    }
}

/// Builds a complete, symbolized profile. See the module doc for the rules.
///
/// A sample whose `values` length differs from `spec.sample_types` is a bug in
/// the caller; its values are padded with zeros or cut so the file stays
/// valid (pprof rejects the whole profile otherwise), and a warning is logged.
pub fn build_profile(
    samples: &[RawSample],
    spec: &ProfileSpec,
    mappings: &[Mapping],
    symbolizer: &mut Symbolizer,
) -> Profile {
    let mut b = Builder::new(mappings, symbolizer);
    let width = spec.sample_types.len();
    let mut mismatched = 0usize;
    let mut index: HashMap<SampleKey<'_>, usize> = HashMap::new();
    let mut out: Vec<Sample> = Vec::new();
    for raw in samples {
        if raw.values.len() != width {
            mismatched += 1;
        }
        let key = (
            raw.stack.as_slice(),
            raw.leaf_frames_dropped,
            raw.synthetic_root.as_deref(),
            raw.labels.as_slice(),
        );
        let i = *index.entry(key).or_insert_with(|| {
            out.push(b.sample(raw, width));
            out.len() - 1
        });
        for (sum, &v) in out[i].value.iter_mut().zip(&raw.values) {
            *sum = sum.saturating_add(v);
        }
    }
    if mismatched > 0 {
        log::warn!("{mismatched} samples had a value count other than {width}; padded or cut");
    }

    let mut p = Profile::new();
    p.sample = out;
    p.sample_type = spec
        .sample_types
        .iter()
        .map(|(t, u)| b.value_type(t, u))
        .collect();
    p.period_type = b.value_type(&spec.period_type.0, &spec.period_type.1);
    p.period = spec.period;
    p.time_nanos = spec.time_nanos;
    p.duration_nanos = spec.duration_nanos;
    p.comment = spec.comments.iter().map(|c| b.strings.intern(c)).collect();
    p.default_sample_type = spec
        .default_sample_type
        .as_deref()
        .map_or(0, |s| b.strings.intern(s));
    p.drop_frames = spec
        .drop_frames
        .as_deref()
        .map_or(0, |s| b.strings.intern(s));
    p.mapping = b.mappings();
    p.location = b.locations;
    p.function = b.functions;
    p.string_table = b.strings.into_table();
    p
}

/// What makes two raw samples the same sample: (stack, frames dropped from
/// the leaf, synthetic root, labels), borrowed from the input.
type SampleKey<'s> = (&'s [u64], usize, Option<&'s str>, &'s [(String, String)]);

/// What symbolization achieved in one mapping: its `has_*` flags.
#[derive(Clone, Copy, Default)]
struct Coverage {
    functions: bool,
    filenames: bool,
    line_numbers: bool,
    inline_frames: bool,
}

struct Builder<'a> {
    strings: StringInterner,
    symbolizer: &'a mut Symbolizer,
    mappings: &'a [Mapping],
    /// Mapping indexes sorted by start address, for lookups.
    by_start: Vec<usize>,
    coverage: Vec<Coverage>,
    locations: Vec<Location>,
    /// (address, leading frames left out) → location id.
    location_by_address: HashMap<(u64, usize), u64>,
    location_by_synthetic: HashMap<String, u64>,
    functions: Vec<Function>,
    /// (name, system_name, filename) string indexes → function id.
    function_by_key: HashMap<(i64, i64, i64), u64>,
}

impl<'a> Builder<'a> {
    fn new(mappings: &'a [Mapping], symbolizer: &'a mut Symbolizer) -> Self {
        let mut by_start: Vec<usize> = (0..mappings.len()).collect();
        by_start.sort_by_key(|&i| mappings[i].start);
        Builder {
            strings: StringInterner::new(),
            symbolizer,
            mappings,
            by_start,
            coverage: vec![Coverage::default(); mappings.len()],
            locations: Vec::new(),
            location_by_address: HashMap::new(),
            location_by_synthetic: HashMap::new(),
            functions: Vec::new(),
            function_by_key: HashMap::new(),
        }
    }

    fn value_type(&mut self, r#type: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.strings.intern(r#type),
            unit: self.strings.intern(unit),
        }
    }

    /// A new output sample for `raw`, with zeroed values (summed by the caller).
    fn sample(&mut self, raw: &RawSample, width: usize) -> Sample {
        let mut location_id: Vec<u64> = raw
            .stack
            .iter()
            .enumerate()
            .filter(|&(_, &addr)| addr != 0)
            .map(|(depth, &addr)| {
                if depth == 0 {
                    self.address_location(addr, raw.leaf_frames_dropped)
                } else {
                    self.address_location(addr.saturating_sub(1), 0)
                }
            })
            .collect();
        if let Some(name) = &raw.synthetic_root {
            location_id.push(self.synthetic_location(name));
        }
        let label = raw
            .labels
            .iter()
            .map(|(k, v)| Label {
                key: self.strings.intern(k),
                str: self.strings.intern(v),
                ..Label::default()
            })
            .collect();
        Sample {
            location_id,
            value: vec![0; width],
            label,
        }
    }

    /// Index of the mapping containing `addr`.
    fn mapping_of(&self, addr: u64) -> Option<usize> {
        let after = self
            .by_start
            .partition_point(|&i| self.mappings[i].start <= addr);
        let i = *self.by_start.get(after.checked_sub(1)?)?;
        self.mappings[i].contains(addr).then_some(i)
    }

    /// The location of `addr` with its first `dropped` frames left out
    /// (never its outermost one).
    fn address_location(&mut self, addr: u64, dropped: usize) -> u64 {
        if let Some(&id) = self.location_by_address.get(&(addr, dropped)) {
            return id;
        }
        let mapping = self.mapping_of(addr);
        let frames = self.symbolizer.resolve(addr);
        let frames = &frames[dropped.min(frames.len().saturating_sub(1))..];
        let mut line = Vec::with_capacity(frames.len());
        let mut found = Coverage {
            functions: !frames.is_empty(),
            inline_frames: frames.len() > 1,
            ..Coverage::default()
        };
        for f in frames {
            found.filenames |= f.file.is_some();
            found.line_numbers |= f.line.is_some();
            let key = (
                self.strings.intern(&f.name),
                self.strings.intern(&f.system_name),
                f.file.as_deref().map_or(0, |s| self.strings.intern(s)),
            );
            let next_id = self.functions.len() as u64 + 1;
            let function_id = *self.function_by_key.entry(key).or_insert(next_id);
            if function_id == next_id {
                self.functions.push(Function {
                    id: function_id,
                    name: key.0,
                    system_name: key.1,
                    filename: key.2,
                    start_line: 0,
                });
            }
            line.push(Line {
                function_id,
                line: f.line.map_or(0, i64::from),
                column: 0,
            });
        }
        if let Some(m) = mapping {
            let c = &mut self.coverage[m];
            c.functions |= found.functions;
            c.filenames |= found.filenames;
            c.line_numbers |= found.line_numbers;
            c.inline_frames |= found.inline_frames;
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            mapping_id: mapping.map_or(0, |m| m as u64 + 1),
            address: addr,
            line,
            is_folded: false,
        });
        self.location_by_address.insert((addr, dropped), id);
        id
    }

    fn synthetic_location(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.location_by_synthetic.get(name) {
            return id;
        }
        let name_index = self.strings.intern(name);
        let key = (name_index, name_index, 0);
        let next_id = self.functions.len() as u64 + 1;
        let function_id = *self.function_by_key.entry(key).or_insert(next_id);
        if function_id == next_id {
            self.functions.push(Function {
                id: function_id,
                name: name_index,
                system_name: name_index,
                ..Function::default()
            });
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            line: vec![Line {
                function_id,
                ..Line::default()
            }],
            ..Location::default()
        });
        self.location_by_synthetic.insert(name.to_string(), id);
        id
    }

    fn mappings(&mut self) -> Vec<PprofMapping> {
        let mut out = Vec::with_capacity(self.mappings.len());
        for (i, m) in self.mappings.iter().enumerate() {
            let c = self.coverage[i];
            out.push(PprofMapping {
                id: i as u64 + 1,
                memory_start: m.start,
                memory_limit: m.end,
                file_offset: m.offset,
                filename: self.strings.intern(&m.path),
                build_id: m.build_id.as_deref().map_or(0, |s| self.strings.intern(s)),
                has_functions: c.functions,
                has_filenames: c.filenames,
                has_line_numbers: c.line_numbers,
                has_inline_frames: c.inline_frames,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::current_mappings;

    #[inline(never)]
    fn leaf_function_for_profile_test() -> u64 {
        std::hint::black_box(7)
    }

    /// The current stack's return addresses, innermost first, starting with
    /// the caller of this function.
    #[inline(never)]
    fn return_addresses() -> Vec<u64> {
        let mut ips = Vec::new();
        backtrace::trace(|frame| {
            ips.push(frame.ip() as u64);
            true
        });
        ips
    }

    #[inline(never)]
    fn stacks_to_profile_real_addresses_test_fn() -> (Vec<RawSample>, Vec<u64>) {
        let leaf = leaf_function_for_profile_test as *const () as u64;
        let callers = return_addresses();
        let stack: Vec<u64> = std::iter::once(leaf)
            .chain(callers.iter().copied())
            .collect();
        let samples = vec![
            RawSample::new(stack.clone(), vec![1, 10_000_000]).with_label("thread_name", "t1"),
            RawSample::new(stack.clone(), vec![2, 20_000_000]).with_label("thread_name", "t1"),
            RawSample::new(stack.clone(), vec![1, 10_000_000]).with_label("thread_name", "t2"),
            RawSample::new(stack[1..].to_vec(), vec![4, 40_000_000])
                .with_synthetic_root(TRUNCATED_STACK_FRAME),
            RawSample::synthetic(LOST_SAMPLES_FRAME, vec![3, 30_000_000]),
        ];
        (samples, stack)
    }

    #[test]
    fn builds_a_valid_symbolized_profile_from_real_addresses() {
        let (samples, stack) = stacks_to_profile_real_addresses_test_fn();
        let mappings = current_mappings().unwrap();
        let mut spec = ProfileSpec::cpu(10_000_000, 1_700_000_000_000_000_000, 1_000_000_000);
        spec.comments.push("trigger: test".into());
        let mut symbolizer = Symbolizer::new();
        let profile = build_profile(&samples, &spec, &mappings, &mut symbolizer);
        profile.validate().unwrap();

        let mut gz = Vec::new();
        profile.write_gzip(&mut gz).unwrap();
        let p = Profile::decode(&gz).unwrap();
        assert_eq!(p, profile);

        // Aggregation: t1 samples merged, t2 separate, plus truncated and lost.
        assert_eq!(p.sample.len(), 4);
        assert_eq!(p.sample[0].value, [3, 30_000_000]);
        assert_eq!(p.sample[1].value, [1, 10_000_000]);
        assert_eq!(p.sample[0].location_id, p.sample[1].location_id);

        // Sequential ids.
        for (i, l) in p.location.iter().enumerate() {
            assert_eq!(l.id, i as u64 + 1);
        }
        for (i, f) in p.function.iter().enumerate() {
            assert_eq!(f.id, i as u64 + 1);
        }
        for (i, m) in p.mapping.iter().enumerate() {
            assert_eq!(m.id, i as u64 + 1);
        }

        // Mapping 0 is this test executable, with a build id.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(p.string(p.mapping[0].filename), exe.to_str().unwrap());
        assert!(!p.string(p.mapping[0].build_id).is_empty());
        assert!(p.mapping[0].has_functions && p.mapping[0].has_filenames);
        for m in &p.mapping {
            let locs: Vec<_> = p.location.iter().filter(|l| l.mapping_id == m.id).collect();
            assert_eq!(m.has_functions, locs.iter().any(|l| !l.line.is_empty()));
            assert_eq!(m.has_inline_frames, locs.iter().any(|l| l.line.len() > 1));
            assert_eq!(
                m.has_line_numbers,
                locs.iter().flat_map(|l| &l.line).any(|line| line.line != 0)
            );
        }

        // Addresses: leaf exact, callers minus one, each inside its mapping.
        let first = &p.sample[0].location_id;
        assert_eq!(first.len(), stack.iter().filter(|&&a| a != 0).count());
        let location = |id: u64| &p.location[id as usize - 1];
        assert_eq!(location(first[0]).address, stack[0]);
        assert_eq!(location(first[1]).address, stack[1] - 1);
        for l in p.location.iter().filter(|l| l.mapping_id != 0) {
            let m = &p.mapping[l.mapping_id as usize - 1];
            assert!(m.memory_start <= l.address && l.address < m.memory_limit);
        }
        // The leaf is in the main binary and resolves to the leaf function.
        assert_eq!(location(first[0]).mapping_id, 1);
        let names_at = |id: u64| -> Vec<&str> {
            location(id)
                .line
                .iter()
                .map(|line| p.string(p.function[line.function_id as usize - 1].name))
                .collect()
        };
        assert!(names_at(first[0])
            .last()
            .unwrap()
            .ends_with("::leaf_function_for_profile_test"));
        let all_names: Vec<&str> = first.iter().flat_map(|&id| names_at(id)).collect();
        assert!(
            all_names
                .iter()
                .any(|n| n.ends_with("::stacks_to_profile_real_addresses_test_fn")),
            "{all_names:#?}"
        );

        // Synthetic frames: at the root, no mapping, one line.
        let truncated = &p.sample[2].location_id;
        assert_eq!(
            names_at(*truncated.last().unwrap()),
            [TRUNCATED_STACK_FRAME]
        );
        let lost = &p.sample[3].location_id;
        assert_eq!(lost.len(), 1);
        assert_eq!(names_at(lost[0]), [LOST_SAMPLES_FRAME]);
        assert_eq!(location(lost[0]).mapping_id, 0);

        // Functions are unique by (name, system name, file).
        let mut keys: Vec<_> = p
            .function
            .iter()
            .map(|f| (f.name, f.system_name, f.filename))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), p.function.len());

        go_tool_pprof_reads(&gz);
    }

    /// `go tool pprof` shows the names without symbolizing and knows the main
    /// binary. Skipped when Go is not installed.
    fn go_tool_pprof_reads(gz: &[u8]) {
        let has_go = std::process::Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_go {
            eprintln!("go not installed: skipping the go tool pprof check");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cpu.pb.gz");
        std::fs::write(&file, gz).unwrap();
        let out = std::process::Command::new("go")
            .args([
                "tool",
                "pprof",
                "-top",
                "-nodefraction=0",
                "-symbolize=none",
            ])
            .arg(&file)
            .env("PPROF_TMPDIR", dir.path())
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        eprintln!("go tool pprof -top:\n{stdout}{stderr}");
        let all = format!("{stdout}\n{stderr}");
        assert!(
            all.contains("stacks_to_profile_real_addresses_test_fn"),
            "{all}"
        );
        assert!(all.contains("leaf_function_for_profile_test"), "{all}");
        assert!(all.contains(LOST_SAMPLES_FRAME), "{all}");
        assert!(!all.contains("Main binary filename not available"), "{all}");
    }

    #[test]
    fn unresolved_addresses_get_locations_without_lines() {
        let fake = Mapping {
            start: 0x1000,
            end: 0x2000,
            path: "/nonexistent/lib.so".into(),
            executable: true,
            ..Mapping::default()
        };
        let samples = [RawSample::new(vec![0x1800, 0x1900, 0x5_0000], vec![1])];
        let spec = ProfileSpec {
            sample_types: vec![("samples".into(), "count".into())],
            ..ProfileSpec::default()
        };
        let p = build_profile(&samples, &spec, &[fake], &mut Symbolizer::new());
        p.validate().unwrap();
        let addrs: Vec<_> = p
            .location
            .iter()
            .map(|l| (l.address, l.mapping_id))
            .collect();
        assert_eq!(addrs, [(0x1800, 1), (0x18ff, 1), (0x4_ffff, 0)]);
        assert!(p.location.iter().all(|l| l.line.is_empty()));
        assert!(p.function.is_empty());
        let m = &p.mapping[0];
        assert!(!(m.has_functions || m.has_filenames || m.has_line_numbers || m.has_inline_frames));
    }

    #[test]
    fn mismatched_value_counts_are_padded_or_cut() {
        let spec = ProfileSpec::cpu(1, 0, 0);
        let samples = [
            RawSample::synthetic("a", vec![1]),
            RawSample::synthetic("b", vec![1, 2, 3]),
        ];
        let p = build_profile(&samples, &spec, &[], &mut Symbolizer::new());
        p.validate().unwrap();
        assert_eq!(p.sample[0].value, [1, 0]);
        assert_eq!(p.sample[1].value, [1, 2]);
        // Same synthetic name twice shares a location and function.
        let p = build_profile(
            &[
                RawSample::synthetic("a", vec![1, 1]),
                RawSample::synthetic("a", vec![1, 1]).with_label("k", "v"),
            ],
            &spec,
            &[],
            &mut Symbolizer::new(),
        );
        assert_eq!(
            (p.sample.len(), p.location.len(), p.function.len()),
            (2, 1, 1)
        );
    }

    #[test]
    fn spec_fields_are_written() {
        let mut spec = ProfileSpec::cpu(4_000_000, 11, 22);
        spec.default_sample_type = Some("cpu".into());
        spec.drop_frames = Some("^firewatch_agent::".into());
        spec.comments = vec!["hello".into()];
        let p = build_profile(&[], &spec, &[], &mut Symbolizer::new());
        p.validate().unwrap();
        assert_eq!(p.period, 4_000_000);
        assert_eq!((p.time_nanos, p.duration_nanos), (11, 22));
        assert_eq!(p.string(p.default_sample_type), "cpu");
        assert_eq!(p.string(p.drop_frames), "^firewatch_agent::");
        assert_eq!(p.string(p.comment[0]), "hello");
        assert_eq!(p.string(p.sample_type[1].r#type), "cpu");
        assert_eq!(p.string(p.period_type.unit), "nanoseconds");
    }
}
