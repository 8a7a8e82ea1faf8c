//! Merging profiles, and the rules for which profiles merge: pprof's
//! `merge.go`.
//!
//! [`Profile::merge`] combines profiles of the same kind (several replicas'
//! CPU profiles, consecutive captures) into one: equal samples (same stack,
//! same labels) are summed, and equal locations, functions and mappings are
//! shared, so the result holds each only once. [`Profile::compact`] is a
//! merge of one profile: it drops what no sample uses.
//!
//! pprof merges only profiles with identical sample types and period type
//! ([`Profile::compatible`]). A reader that reports one value of several
//! profiles needs less: that each has the chosen sample type, with the same
//! unit ([`ProfileView::find_sample_type`]).

use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use crate::model::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
use crate::view::ProfileView;
use crate::StringInterner;

/// Why two profiles cannot be merged or compared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompatibility {
    /// The period types differ (pprof's rule).
    #[error("incompatible period types {here} and {there}")]
    PeriodType {
        /// `type/unit` of the first profile's period.
        here: String,
        /// `type/unit` of the other profile's period.
        there: String,
    },
    /// The sample types differ in number, order, name or unit (pprof's rule).
    #[error("incompatible sample types [{}] and [{}]", here.join(" "), there.join(" "))]
    SampleTypes {
        /// The first profile's `type/unit`s.
        here: Vec<String>,
        /// The other profile's `type/unit`s.
        there: Vec<String>,
    },
    /// The profile has no sample type of the wanted name.
    #[error("it has no {wanted} values (its sample types are: {})", available.join(", "))]
    MissingSampleType {
        /// The wanted `type/unit`.
        wanted: String,
        /// The profile's `type/unit`s.
        available: Vec<String>,
    },
    /// The profile has the sample type, in another unit.
    #[error("{sample_type} is in {unit} here but in {wanted_unit} there")]
    Unit {
        /// The sample type's name.
        sample_type: String,
        /// Its unit in this profile.
        unit: String,
        /// The unit wanted.
        wanted_unit: String,
    },
}

/// Why [`Profile::merge`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// There was nothing to merge.
    #[error("no profiles to merge")]
    NoProfiles,
    /// The profile at `index` (0-based) cannot be merged with the first.
    #[error("profile {index} cannot be merged with the first: {reason}")]
    Incompatible {
        /// Position of the profile in the input.
        index: usize,
        /// What differs.
        reason: Incompatibility,
    },
}

fn type_name(p: &Profile, t: &ValueType) -> String {
    format!("{}/{}", p.string(t.r#type), p.string(t.unit))
}

impl Profile {
    /// Checks that `other` can be merged with (or subtracted from) this
    /// profile by pprof's rule: the same period type and the same sample
    /// types in the same order, compared by name and unit.
    pub fn compatible(&self, other: &Profile) -> Result<(), Incompatibility> {
        let same = |a: &ValueType, b: &ValueType| {
            self.string(a.r#type) == other.string(b.r#type)
                && self.string(a.unit) == other.string(b.unit)
        };
        if !same(&self.period_type, &other.period_type) {
            return Err(Incompatibility::PeriodType {
                here: type_name(self, &self.period_type),
                there: type_name(other, &other.period_type),
            });
        }
        if self.sample_type.len() != other.sample_type.len()
            || !self
                .sample_type
                .iter()
                .zip(&other.sample_type)
                .all(|(a, b)| same(a, b))
        {
            return Err(Incompatibility::SampleTypes {
                here: self
                    .sample_type
                    .iter()
                    .map(|t| type_name(self, t))
                    .collect(),
                there: other
                    .sample_type
                    .iter()
                    .map(|t| type_name(other, t))
                    .collect(),
            });
        }
        Ok(())
    }

    /// Merges profiles into a new one, as pprof's `Merge` does:
    ///
    /// - every profile must be [`compatible`](Profile::compatible) with the first;
    /// - samples with the same locations and labels are summed; samples whose
    ///   values are all zero are dropped;
    /// - equal functions (name, system name, file, start line), mappings
    ///   (build id, else file; offset; size rounded up to 4 KiB) and
    ///   locations (mapping, address relative to it, lines, folding) are
    ///   kept once, renumbered from 1 in order of first use; the first
    ///   profile's first mapping stays first (the main binary);
    /// - the header: sample types, period type, `drop_frames` and
    ///   `keep_frames` of the first profile; the earliest `time_nanos`
    ///   (pprof's rule: a later zero time resets it), the summed
    ///   `duration_nanos`, the largest `period`, every distinct comment, the
    ///   first non-empty `default_sample_type` and `doc_url`.
    ///
    /// Labels come out in pprof's order: string labels by key, then numeric
    /// ones by key. Ids that name nothing (a sample's unknown location, a
    /// line's unknown function, a location's unknown mapping) are dropped.
    /// One deviation, in a corner: pprof's location key forgets the column
    /// of all but the last inlined line, so it can share two locations that
    /// differ only there; this merge keeps them apart.
    pub fn merge<'p>(
        profiles: impl IntoIterator<Item = &'p Profile>,
    ) -> Result<Profile, MergeError> {
        let profiles: Vec<&Profile> = profiles.into_iter().collect();
        let Some(&first) = profiles.first() else {
            return Err(MergeError::NoProfiles);
        };
        for (index, p) in profiles.iter().enumerate().skip(1) {
            first
                .compatible(p)
                .map_err(|reason| MergeError::Incompatible { index, reason })?;
        }
        let mut merger = Merger::new(&profiles);
        for p in &profiles {
            merger.add(p);
        }
        let merged = merger.finish();
        if merged.sample.iter().any(is_zero) {
            // Summing cancelled some samples out: merge again to drop them
            // and whatever only they used.
            return Profile::merge([&merged]);
        }
        Ok(merged)
    }

    /// A copy without what no sample uses: unreferenced locations,
    /// functions, mappings and strings, zero samples; equal samples summed.
    /// pprof's `Compact` (a merge of one profile).
    pub fn compact(&self) -> Profile {
        Profile::merge([self]).expect("a profile merges with itself")
    }
}

impl ProfileView<'_> {
    /// The index of the sample type named `type`, which must be in `unit`:
    /// the rule for reporting one value of several profiles together (pprof,
    /// merging whole profiles, requires [identical sample
    /// types](Profile::compatible)).
    pub fn find_sample_type(&self, r#type: &str, unit: &str) -> Result<usize, Incompatibility> {
        let types = self.sample_type_names();
        match types.iter().position(|(t, _)| *t == r#type) {
            Some(i) if types[i].1 == unit => Ok(i),
            Some(i) => Err(Incompatibility::Unit {
                sample_type: r#type.to_string(),
                unit: types[i].1.to_string(),
                wanted_unit: unit.to_string(),
            }),
            None => Err(Incompatibility::MissingSampleType {
                wanted: format!("{type}/{unit}"),
                available: types.iter().map(|(t, u)| format!("{t}/{u}")).collect(),
            }),
        }
    }
}

fn is_zero(s: &Sample) -> bool {
    s.value.iter().all(|&v| v == 0)
}

/// Rounds a mapping's size up to 4 KiB, so that the same binary mapped with
/// slightly different limits is one mapping.
fn rounded_size(m: &Mapping) -> u64 {
    const ROUND: u64 = 0x1000;
    let size = m.memory_limit.wrapping_sub(m.memory_start);
    let size = size.wrapping_add(ROUND - 1);
    size - size % ROUND
}

/// A canonical label: (is numeric, key, str, num, unit), strings as indexes
/// of the merged profile.
type LabelKey = (bool, i64, i64, i64, i64);

#[derive(Clone, PartialEq, Eq, Hash)]
struct LocationKey {
    mapping_id: u64,
    /// Address relative to the mapping's start (when it has a mapping).
    address: u64,
    lines: Vec<(u64, i64, i64)>,
    is_folded: bool,
}

struct Merger {
    out: Profile,
    strings: StringInterner,
    /// Sample key (locations, canonical labels) → index in `out.sample`.
    samples: FxHashMap<(Vec<u64>, Vec<LabelKey>), usize>,
    locations: FxHashMap<LocationKey, u64>,
    /// (start line, name, system name, file) → id.
    functions: FxHashMap<(i64, i64, i64, i64), u64>,
    /// (rounded size, offset, build id or file) → index in `out.mapping`.
    mappings: FxHashMap<(u64, u64, i64), usize>,
    // Per source profile: its ids → the merged profile's.
    location_ids: FxHashMap<u64, u64>,
    function_ids: FxHashMap<u64, u64>,
    /// Source mapping id → (merged mapping index, address offset).
    mapping_ids: FxHashMap<u64, (usize, u64)>,
}

impl Merger {
    fn new(profiles: &[&Profile]) -> Merger {
        let first = profiles[0];
        let mut strings = StringInterner::new();
        let mut vt = |p: &Profile, t: &ValueType| ValueType {
            r#type: strings.intern(p.string(t.r#type)),
            unit: strings.intern(p.string(t.unit)),
        };
        let mut out = Profile {
            sample_type: first.sample_type.iter().map(|t| vt(first, t)).collect(),
            period_type: vt(first, &first.period_type),
            ..Profile::default()
        };
        let mut time_nanos = 0i64;
        let mut comments: Vec<&str> = Vec::new();
        let (mut default_sample_type, mut doc_url) = ("", "");
        for p in profiles {
            if time_nanos == 0 || p.time_nanos < time_nanos {
                time_nanos = p.time_nanos;
            }
            out.duration_nanos = out.duration_nanos.wrapping_add(p.duration_nanos);
            if out.period == 0 || out.period < p.period {
                out.period = p.period;
            }
            for &c in &p.comment {
                let c = p.string(c);
                if !comments.contains(&c) {
                    comments.push(c);
                }
            }
            if default_sample_type.is_empty() {
                default_sample_type = p.string(p.default_sample_type);
            }
            if doc_url.is_empty() {
                doc_url = p.string(p.doc_url);
            }
        }
        out.time_nanos = time_nanos;
        out.comment = comments.iter().map(|c| strings.intern(c)).collect();
        out.default_sample_type = strings.intern(default_sample_type);
        out.doc_url = strings.intern(doc_url);
        out.drop_frames = strings.intern(first.string(first.drop_frames));
        out.keep_frames = strings.intern(first.string(first.keep_frames));
        Merger {
            out,
            strings,
            samples: FxHashMap::default(),
            locations: FxHashMap::default(),
            functions: FxHashMap::default(),
            mappings: FxHashMap::default(),
            location_ids: FxHashMap::default(),
            function_ids: FxHashMap::default(),
            mapping_ids: FxHashMap::default(),
        }
    }

    fn add(&mut self, src: &Profile) {
        self.location_ids.clear();
        self.function_ids.clear();
        self.mapping_ids.clear();
        let functions: FxHashMap<u64, &Function> = src.function.iter().map(|f| (f.id, f)).collect();
        let mappings: FxHashMap<u64, &Mapping> = src.mapping.iter().map(|m| (m.id, m)).collect();
        let locations: FxHashMap<u64, &Location> = src.location.iter().map(|l| (l.id, l)).collect();
        if self.out.mapping.is_empty() {
            // The first mapping is the main binary: it stays first.
            if let Some(m) = src.mapping.first() {
                self.map_mapping(src, m);
            }
        }
        for sample in src.sample.iter().filter(|s| !is_zero(s)) {
            let stack: Vec<u64> = sample
                .location_id
                .iter()
                .filter_map(|id| {
                    let loc = locations.get(id)?;
                    Some(self.map_location(src, loc, &functions, &mappings))
                })
                .collect();
            let labels = self.labels(src, &sample.label);
            match self.samples.entry((stack, labels)) {
                Entry::Occupied(e) => {
                    let merged = &mut self.out.sample[*e.get()];
                    for (a, b) in merged.value.iter_mut().zip(&sample.value) {
                        *a = a.wrapping_add(*b);
                    }
                }
                Entry::Vacant(e) => {
                    let (stack, labels) = e.key();
                    self.out.sample.push(Sample {
                        location_id: stack.clone(),
                        value: sample.value.clone(),
                        label: labels
                            .iter()
                            .map(|&(_, key, str, num, num_unit)| Label {
                                key,
                                str,
                                num,
                                num_unit,
                            })
                            .collect(),
                    });
                    e.insert(self.out.sample.len() - 1);
                }
            }
        }
    }

    /// pprof's view of a sample's labels: string labels (`str` set) and
    /// numeric ones (else `num` or `num_unit` set; others are dropped),
    /// sorted by kind and key name, in their order within a key.
    fn labels(&mut self, src: &Profile, labels: &[Label]) -> Vec<LabelKey> {
        let mut out: Vec<(bool, &str, LabelKey)> = Vec::with_capacity(labels.len());
        for l in labels {
            let key = src.string(l.key);
            let label = if l.str != 0 {
                (false, 0, self.strings.intern(src.string(l.str)), 0, 0)
            } else if l.num != 0 || l.num_unit != 0 {
                (
                    true,
                    0,
                    0,
                    l.num,
                    self.strings.intern(src.string(l.num_unit)),
                )
            } else {
                continue;
            };
            out.push((label.0, key, label));
        }
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out.into_iter()
            .map(|(_, key, mut label)| {
                label.1 = self.strings.intern(key);
                label
            })
            .collect()
    }

    fn map_mapping(&mut self, src: &Profile, m: &Mapping) -> (usize, u64) {
        if let Some(&known) = self.mapping_ids.get(&m.id) {
            return known;
        }
        let identity = match (src.string(m.build_id), src.string(m.filename)) {
            ("", file) => file,
            (build_id, _) => build_id,
        };
        let key = (
            rounded_size(m),
            m.file_offset,
            self.strings.intern(identity),
        );
        let mapped = match self.mappings.get(&key) {
            Some(&index) => {
                let offset = self.out.mapping[index]
                    .memory_start
                    .wrapping_sub(m.memory_start);
                (index, offset)
            }
            None => {
                let index = self.out.mapping.len();
                self.out.mapping.push(Mapping {
                    id: index as u64 + 1,
                    filename: self.strings.intern(src.string(m.filename)),
                    build_id: self.strings.intern(src.string(m.build_id)),
                    ..m.clone()
                });
                self.mappings.insert(key, index);
                (index, 0)
            }
        };
        self.mapping_ids.insert(m.id, mapped);
        mapped
    }

    fn map_function(&mut self, src: &Profile, f: &Function) -> u64 {
        if let Some(&id) = self.function_ids.get(&f.id) {
            return id;
        }
        let mut s = |i| self.strings.intern(src.string(i));
        let (name, system_name, filename) = (s(f.name), s(f.system_name), s(f.filename));
        let next = self.out.function.len() as u64 + 1;
        let id = *self
            .functions
            .entry((f.start_line, name, system_name, filename))
            .or_insert(next);
        if id == next {
            self.out.function.push(Function {
                id,
                name,
                system_name,
                filename,
                start_line: f.start_line,
            });
        }
        self.function_ids.insert(f.id, id);
        id
    }

    fn map_location(
        &mut self,
        src: &Profile,
        loc: &Location,
        functions: &FxHashMap<u64, &Function>,
        mappings: &FxHashMap<u64, &Mapping>,
    ) -> u64 {
        if let Some(&known) = self.location_ids.get(&loc.id) {
            return known;
        }
        let mapping = mappings
            .get(&loc.mapping_id)
            .map(|m| self.map_mapping(src, m));
        let address = loc
            .address
            .wrapping_add(mapping.map_or(0, |(_, offset)| offset));
        let lines: Vec<Line> = loc
            .line
            .iter()
            .map(|line| Line {
                function_id: functions
                    .get(&line.function_id)
                    .map_or(0, |f| self.map_function(src, f)),
                ..*line
            })
            .collect();
        let (mapping_id, start) = match mapping {
            Some((index, _)) => {
                let m = &self.out.mapping[index];
                (m.id, m.memory_start)
            }
            None => (0, 0),
        };
        let key = LocationKey {
            mapping_id,
            address: address.wrapping_sub(start),
            lines: lines
                .iter()
                .map(|l| (l.function_id, l.line, l.column))
                .collect(),
            is_folded: loc.is_folded,
        };
        let next = self.out.location.len() as u64 + 1;
        let id = *self.locations.entry(key).or_insert(next);
        if id == next {
            self.out.location.push(Location {
                id,
                mapping_id,
                address,
                line: lines,
                is_folded: loc.is_folded,
            });
        }
        self.location_ids.insert(loc.id, id);
        id
    }

    fn finish(mut self) -> Profile {
        self.out.string_table = self.strings.into_table();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU-like profile builder over one interner.
    struct Builder {
        strings: StringInterner,
        p: Profile,
    }

    impl Builder {
        fn new(types: &[(&str, &str)]) -> Builder {
            let mut strings = StringInterner::new();
            let p = Profile {
                sample_type: types
                    .iter()
                    .map(|(t, u)| ValueType {
                        r#type: strings.intern(t),
                        unit: strings.intern(u),
                    })
                    .collect(),
                period_type: ValueType {
                    r#type: strings.intern("cpu"),
                    unit: strings.intern("nanoseconds"),
                },
                ..Profile::new()
            };
            Builder { strings, p }
        }

        fn function(&mut self, id: u64, name: &str) -> &mut Self {
            let name = self.strings.intern(name);
            self.p.function.push(Function {
                id,
                name,
                ..Default::default()
            });
            self
        }

        fn mapping(&mut self, id: u64, start: u64, limit: u64, file: &str) -> &mut Self {
            let filename = self.strings.intern(file);
            self.p.mapping.push(Mapping {
                id,
                memory_start: start,
                memory_limit: limit,
                filename,
                has_functions: true,
                ..Default::default()
            });
            self
        }

        fn location(
            &mut self,
            id: u64,
            mapping_id: u64,
            address: u64,
            functions: &[u64],
        ) -> &mut Self {
            self.p.location.push(Location {
                id,
                mapping_id,
                address,
                line: functions
                    .iter()
                    .map(|&f| Line {
                        function_id: f,
                        line: 1,
                        column: 0,
                    })
                    .collect(),
                is_folded: false,
            });
            self
        }

        fn sample(&mut self, stack: &[u64], values: &[i64], labels: &[(&str, &str)]) -> &mut Self {
            let label = labels
                .iter()
                .map(|(k, v)| Label {
                    key: self.strings.intern(k),
                    str: self.strings.intern(v),
                    ..Default::default()
                })
                .collect();
            self.p.sample.push(Sample {
                location_id: stack.to_vec(),
                value: values.to_vec(),
                label,
            });
            self
        }

        fn build(&mut self) -> Profile {
            let mut p = self.p.clone();
            p.string_table = std::mem::take(&mut self.strings).into_table();
            p
        }
    }

    /// (names of the stack's functions root first, values) per sample.
    fn samples(p: &Profile) -> Vec<(Vec<String>, Vec<i64>)> {
        let mut out: Vec<_> = p
            .sample
            .iter()
            .map(|s| {
                let names = s
                    .location_id
                    .iter()
                    .rev()
                    .flat_map(|id| {
                        let loc = p.location.iter().find(|l| l.id == *id).unwrap();
                        loc.line.iter().rev().map(|l| {
                            let f = p.function.iter().find(|f| f.id == l.function_id).unwrap();
                            p.string(f.name).to_string()
                        })
                    })
                    .collect();
                (names, s.value.clone())
            })
            .collect();
        out.sort();
        out
    }

    fn cpu_a() -> Profile {
        let mut b = Builder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
        b.function(1, "main")
            .function(2, "work")
            .function(3, "idle");
        b.mapping(1, 0x1000, 0x5000, "/bin/app");
        b.location(1, 1, 0x1100, &[1]).location(2, 1, 0x1200, &[2]);
        b.location(3, 1, 0x1300, &[3]);
        b.sample(&[2, 1], &[1, 10], &[])
            .sample(&[3, 1], &[2, 20], &[]);
        b.sample(&[2, 1], &[1, 10], &[]); // a duplicate: summed
        b.p.time_nanos = 2_000;
        b.p.duration_nanos = 5;
        b.p.period = 10;
        b.build()
    }

    /// The same program, loaded 0x10000 higher, with other ids and one
    /// function more.
    fn cpu_b() -> Profile {
        let mut b = Builder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
        b.function(7, "work")
            .function(8, "main")
            .function(9, "extra");
        b.mapping(4, 0x11000, 0x14f00, "/bin/app");
        b.location(5, 4, 0x11100, &[8])
            .location(6, 4, 0x11200, &[7]);
        b.location(7, 4, 0x11400, &[9]);
        b.sample(&[6, 5], &[3, 30], &[])
            .sample(&[7, 5], &[1, 5], &[]);
        b.sample(&[7, 5], &[0, 0], &[]); // zero: dropped
        b.p.time_nanos = 1_000;
        b.p.duration_nanos = 7;
        b.p.period = 20;
        b.build()
    }

    #[test]
    fn merging_sums_equal_stacks_and_shares_locations() {
        let merged = Profile::merge([&cpu_a(), &cpu_b()]).unwrap();
        let s =
            |names: &[&str], v: &[i64]| (names.iter().map(|n| n.to_string()).collect(), v.to_vec());
        assert_eq!(
            samples(&merged),
            [
                s(&["main", "extra"], &[1, 5]),
                s(&["main", "idle"], &[2, 20]),
                s(&["main", "work"], &[5, 50]),
            ]
        );
        // One mapping (same file, size rounded up to 4 KiB: 0x4000 both),
        // four locations, four functions.
        assert_eq!(merged.mapping.len(), 1);
        assert_eq!(merged.location.len(), 4);
        assert_eq!(merged.function.len(), 4);
        // b's addresses are rebased onto a's mapping.
        assert!(merged.location.iter().any(|l| l.address == 0x1400));
        // Header: earliest time, summed duration, largest period.
        assert_eq!(
            (merged.time_nanos, merged.duration_nanos, merged.period),
            (1_000, 12, 20)
        );
        assert!(merged.validate().is_ok());
    }

    #[test]
    fn labels_tell_samples_apart_and_are_sorted_by_key() {
        let mut b = Builder::new(&[("samples", "count")]);
        b.function(1, "f").location(1, 0, 0x10, &[1]);
        b.sample(&[1], &[1], &[("thread", "a"), ("bucket", "x")]);
        b.sample(&[1], &[2], &[("bucket", "x"), ("thread", "a")]);
        b.sample(&[1], &[4], &[("thread", "b")]);
        let merged = b.build().compact();
        assert_eq!(merged.sample.len(), 2);
        assert_eq!(merged.sample[0].value, [3]);
        let keys: Vec<&str> = merged.sample[0]
            .label
            .iter()
            .map(|l| merged.string(l.key))
            .collect();
        assert_eq!(keys, ["bucket", "thread"]);
    }

    #[test]
    fn incompatible_profiles_are_refused_as_pprof_refuses_them() {
        let heap = Builder::new(&[("inuse_space", "bytes")]).build();
        let err = Profile::merge([&cpu_a(), &heap]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "profile 1 cannot be merged with the first: incompatible sample types \
             [samples/count cpu/nanoseconds] and [inuse_space/bytes]"
        );
        let mut other_period = cpu_a();
        other_period.period_type = ValueType::default();
        assert!(matches!(
            cpu_a().compatible(&other_period),
            Err(Incompatibility::PeriodType { .. })
        ));
        assert_eq!(
            Profile::merge(std::iter::empty()),
            Err(MergeError::NoProfiles)
        );
    }

    #[test]
    fn compacting_drops_what_no_sample_uses_and_cancelled_samples() {
        let mut p = cpu_a();
        p.sample.remove(1); // the only sample through idle
        let compact = p.compact();
        assert_eq!(compact.location.len(), 2);
        assert_eq!(compact.function.len(), 2);
        assert!(!compact.string_table.iter().any(|s| s == "idle"));
        // A sample and its negation cancel: merged again, they leave nothing.
        let mut negated = cpu_a();
        for s in &mut negated.sample {
            for v in &mut s.value {
                *v = -*v;
            }
        }
        let merged = Profile::merge([&cpu_a(), &negated]).unwrap();
        assert!(merged.sample.is_empty());
        assert!(merged.location.is_empty());
    }

    #[test]
    fn finding_a_sample_type_across_profiles() {
        let bytes = cpu_a().encode();
        let view = ProfileView::decode(&bytes).unwrap();
        assert_eq!(view.find_sample_type("cpu", "nanoseconds"), Ok(1));
        assert_eq!(
            view.find_sample_type("cpu", "seconds")
                .unwrap_err()
                .to_string(),
            "cpu is in nanoseconds here but in seconds there"
        );
        assert_eq!(
            view.find_sample_type("inuse_space", "bytes")
                .unwrap_err()
                .to_string(),
            "it has no inuse_space/bytes values (its sample types are: samples/count, cpu/nanoseconds)"
        );
    }
}
