//! Aggregation: samples of one or more profiles into per-function flat and
//! cumulative values and per-stack totals, in parallel.
//!
//! This follows pprof's function-granularity graph: every line of a location
//! is a frame (inlined functions are frames of their own), frames are named
//! by function name (or `[binary]` / `<unknown>` when unsymbolized), flat goes
//! to the leaf frame, and cum is added once per function per sample, so
//! recursion is not counted twice. Samples whose chosen value is zero are
//! skipped, as pprof skips them.
//!
//! The pprof rules themselves (`drop_frames` pruning, focus/ignore, which
//! inputs merge, which sample type) come from `firewatch-profile`, applied
//! per location once ([`prepare`]) and per sample in the parallel pass.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use firewatch_profile::{
    prune_start, FramePruner, LocationMatch, LocationPrune, NameFilter, ProfileData, ProfileView,
    SampleBlock, SampleDecoder, SampleIndex,
};
use rayon::prelude::*;
use regex::Regex;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::stacks::{hash_stack, merge_sharded, shard_of, StackTable, SHARDS};
use crate::tags::{group_name, plan_groups, InputGroups, InputTags, TagFilter, GROUP_SLOTS};
use hashbrown::HashTable;

/// What to aggregate and how (start from `Options::default()`).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// Which value to report, chosen in the first input (see [`SampleIndex`]);
    /// every other input must have a sample type of that name and unit.
    pub sample_index: SampleIndex,
    /// Keep only samples with a frame whose function name, source file or
    /// binary matches.
    pub focus: Option<Regex>,
    /// Drop samples with a frame whose function name, source file or binary matches.
    pub ignore: Option<Regex>,
    /// Ignore the profiles' `drop_frames`/`keep_frames`.
    pub all_frames: bool,
    /// Keep only samples whose labels match (pprof's `-tagfocus`).
    pub tag_focus: Option<TagFilter>,
    /// Drop samples whose labels match (pprof's `-tagignore`).
    pub tag_ignore: Option<TagFilter>,
    /// Also total the kept samples per value of this label key
    /// ([`Aggregate::groups`]).
    pub group_by: Option<String>,
    /// Keep what [`Report::label_hot_paths`](crate::report::Report::label_hot_paths)
    /// needs: the label strings and location plans, for a second pass over
    /// the samples.
    pub label_hot_paths: bool,
}

/// One decoded profile to aggregate; a `base` is subtracted.
pub struct Input<'v, 'a> {
    pub path: PathBuf,
    pub view: &'v ProfileView<'a>,
    pub base: bool,
}

/// The sample type a report is about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SampleType {
    #[serde(rename = "type")]
    pub r#type: String,
    pub unit: String,
}

/// How a function is reached: pprof marks functions only ever reached
/// through inlining with `(inline)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Inlining {
    #[default]
    No,
    Always,
    Sometimes,
}

impl Inlining {
    /// From (entered inline somewhere, entered by a call somewhere).
    fn from_flags((inline, not_inline): (bool, bool)) -> Inlining {
        match (inline, not_inline) {
            (true, false) => Inlining::Always,
            (true, true) => Inlining::Sometimes,
            _ => Inlining::No,
        }
    }

    /// pprof's label after the function name: ` (inline)`, ` (partial-inline)` or nothing.
    pub fn suffix(self) -> &'static str {
        match self {
            Inlining::Always => " (inline)",
            Inlining::Sometimes => " (partial-inline)",
            Inlining::No => "",
        }
    }
}

/// A function (at function granularity, a node of pprof's graph).
#[derive(Clone, Debug)]
pub struct FunctionTotal {
    pub name: String,
    pub flat: i64,
    pub cum: i64,
    pub inlining: Inlining,
}

/// One distinct call stack, root first, as indexes into [`Aggregate::functions`].
#[derive(Clone, Copy, Debug)]
pub struct StackTotal<'a> {
    pub frames: &'a [u32],
    /// Net value: the profiles minus the base.
    pub value: i64,
    /// The base's contribution (positive; `value` already has it subtracted).
    pub base: i64,
}

/// Everything the reports need.
pub struct Aggregate {
    pub sample_type: SampleType,
    /// pprof's total, the base of every percentage: the sum of |value| over
    /// all samples before focus/ignore (for a difference, over stacks after
    /// the base has been netted out, as pprof merges before summing).
    pub total: i64,
    /// Sum of the kept samples' values (for a diff: the net change).
    pub kept: i64,
    /// Samples read / kept by focus and ignore (zero-valued samples not counted).
    pub samples: u64,
    pub samples_kept: u64,
    /// All functions that carry value, unsorted; indexes match `StackTotal::frames`.
    pub functions: Vec<FunctionTotal>,
    stacks: Vec<StackTable>,
    /// Values are a difference: a `--base` was given, or the input holds
    /// samples labelled `pprof::base` (a profile saved by `pprof -diff_base`).
    pub has_base: bool,
    /// Samples labelled `pprof::base=true`: their |values| are the total,
    /// as pprof computes it for such a file, and they are its base side.
    pub diff_base_samples: u64,
    /// With [`Options::group_by`]: the key, and the kept samples' totals per
    /// value (largest |total| first; empty groups left out).
    pub group_by: Option<String>,
    pub groups: Vec<GroupTotal>,
    /// With [`Options::label_hot_paths`]: the plans, for [`Aggregate::label_sums`].
    plans: Option<Vec<Plan>>,
}

/// The samples of one value of the `--group-by` key.
#[derive(Clone, Debug)]
pub struct GroupTotal {
    /// The value, or [`crate::tags::OTHER_GROUP`] / [`crate::tags::UNSET_GROUP`].
    pub value: String,
    /// Sum of the group's kept values (for a difference, the net change).
    pub kept: i64,
    pub samples: u64,
    /// The functions with a value in this group, unsorted.
    pub functions: Vec<FunctionTotal>,
}

/// Frame identity at function granularity.
#[derive(Clone, PartialEq, Eq, Hash)]
enum FrameKey<'s> {
    Function(&'s str),
    /// Unsymbolized: by binary (empty = unknown) and start line.
    Object(&'s str, i64),
}

/// Per-input tables, computed once before the sample pass.
struct Plan {
    value_index: usize,
    sign: i64,
    /// Location `l`'s frames are `frames[frame_start[l]..frame_start[l+1]]`, root first.
    frame_start: Vec<u32>,
    frames: Vec<u32>,
    /// Location `l`'s one frame, or [`SEVERAL_FRAMES`] (for none, or
    /// inlined ones): most locations are one frame, found with one memory
    /// access instead of three.
    single_frame: Vec<u32>,
    prune: Option<Vec<LocationPrune>>,
    /// Per location: focused, ignored (wins) or neither.
    filter: Option<Vec<LocationMatch>>,
    /// String indexes of the label `pprof::base` = `true`, when the
    /// input's string table has both.
    diff_base_label: Option<(u32, u32)>,
    /// `--tag-focus`/`--tag-ignore` against this input's labels.
    tags: Option<InputTags>,
    /// `--group-by`: each sample's group.
    groups: Option<InputGroups>,
    /// With [`Options::label_hot_paths`]: the text of every string-label
    /// key and value (string index → text).
    label_strings: Option<FxHashMap<u32, Box<str>>>,
    /// In a difference: what makes two samples one when pprof merges.
    identity: Option<SampleIdentity>,
}

/// pprof merges samples (of a profile and its base) that have the same
/// locations, by location identity, and the same labels; the total of a
/// difference sums |value| over what remains. A sample's identity here is
/// a 64-bit hash of the same things, comparable across inputs: per
/// location its mapping (size, offset, build ID or file), address relative
/// to the mapping, `is_folded` and lines (function name, system name,
/// file, start line; line), and the labels as text. Two identities collide
/// with probability about n²/2⁶⁵ (3·10⁻⁸ for a million samples).
struct SampleIdentity {
    locations: Vec<u64>,
    strings: Vec<u64>,
}

/// A 64-bit mix (splitmix64's finalizer) of `h` and `v`.
#[inline]
fn mix(h: u64, v: u64) -> u64 {
    let mut z = (h ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(27);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SampleIdentity {
    fn of_view(view: &ProfileView) -> SampleIdentity {
        use std::hash::{Hash, Hasher};
        let strings: Vec<u64> = view
            .strings()
            .par_iter()
            .map(|s| {
                let mut h = std::hash::DefaultHasher::new();
                s.hash(&mut h);
                h.finish()
            })
            .collect();
        let mappings: Vec<u64> = view
            .mappings()
            .iter()
            .map(|m| {
                let name = if m.build_id != 0 {
                    m.build_id
                } else {
                    m.filename
                };
                let h = mix(1, m.memory_limit.wrapping_sub(m.memory_start));
                mix(mix(h, m.file_offset), strings[name as usize])
            })
            .collect();
        let locations = view
            .locations()
            .par_iter()
            .map(|l| {
                let (mut h, start) = match l.mapping {
                    Some(m) => (
                        mappings[m as usize],
                        view.mappings()[m as usize].memory_start,
                    ),
                    None => (2, 0),
                };
                h = mix(mix(h, l.address.wrapping_sub(start)), l.is_folded as u64);
                for line in view.location_lines(l) {
                    let f = &view.functions()[line.function as usize];
                    for v in [
                        strings[f.name as usize],
                        strings[f.system_name as usize],
                        strings[f.filename as usize],
                        f.start_line as u64,
                        line.line as u64,
                    ] {
                        h = mix(h, v);
                    }
                }
                h
            })
            .collect();
        SampleIdentity { locations, strings }
    }

    #[inline]
    fn of(&self, sample: firewatch_profile::SampleRef) -> u64 {
        let mut h = mix(3, sample.locations.len() as u64);
        for &l in sample.locations {
            h = mix(h, self.locations[l as usize]);
        }
        // Labels in any order: a sum of their hashes.
        let labels = sample.labels.iter().fold(0u64, |sum, l| {
            let mut lh = mix(4, self.strings[l.key as usize]);
            lh = mix(lh, self.strings[l.str as usize]);
            lh = mix(mix(lh, l.num as u64), self.strings[l.num_unit as usize]);
            sum.wrapping_add(lh)
        });
        mix(h, labels)
    }
}

/// Below this many samples per thread, aggregation stays on fewer threads.
const SAMPLES_PER_WORKER: usize = 50_000;

/// Aggregates the samples of `inputs` (see [`prepare`] and
/// [`aggregate_samples`] for doing it in two steps, freeing the decoded
/// profiles in between).
pub fn aggregate(inputs: &[Input], options: &Options) -> Result<Aggregate> {
    let prepared = prepare(inputs, options)?;
    let blocks: Vec<&[SampleBlock]> = inputs.iter().map(|i| i.view.sample_blocks()).collect();
    Ok(aggregate_samples(prepared, &blocks))
}

/// Everything aggregation needs from the profiles except their samples: the
/// frame of every location, pruning and filters, the sample type. Once it is
/// built, the profiles' other tables and their input bytes can be freed.
pub struct Prepared {
    aggregator: Aggregator,
    batch: Batch,
}

/// The first step of [`aggregate`]: checks the sample types and plans every
/// input's locations.
pub fn prepare(inputs: &[Input], options: &Options) -> Result<Prepared> {
    let mut aggregator = Aggregator::new(options, inputs.iter().any(|i| i.base));
    let batch = aggregator.plan(inputs)?;
    Ok(Prepared { aggregator, batch })
}

/// The second step of [`aggregate`]: the sample pass, in parallel.
/// `blocks[i]` are the sample blocks of the `i`th input given to [`prepare`].
pub fn aggregate_samples(prepared: Prepared, blocks: &[&[SampleBlock]]) -> Aggregate {
    let Prepared { aggregator, batch } = prepared;
    let mut sums = aggregator.sums();
    let sources: Vec<SampleSource> = blocks.iter().map(|b| SampleSource::Blocks(b)).collect();
    sums.add(batch, &sources)
        .expect("decoded samples are added without errors");
    aggregator.finish(sums)
}

/// The samples of one input for [`Sums::add`]: decoded already, or
/// decoded a chunk at a time as they are added (a block per worker,
/// reused), so that a large profile's samples are never all decoded at
/// once.
pub(crate) enum SampleSource<'d> {
    Blocks(&'d [SampleBlock]),
    Chunks {
        data: &'d ProfileData,
        decoder: &'d SampleDecoder,
    },
}

/// A piece of the sample pass: a decoded block, or a chunk to decode, of
/// input `.0`.
#[derive(Clone, Copy)]
enum Task<'d> {
    Block(usize, &'d SampleBlock),
    Chunk(usize, &'d ProfileData, &'d SampleDecoder, usize),
}

impl Task<'_> {
    fn len(&self) -> usize {
        match *self {
            Task::Block(_, block) => block.len(),
            Task::Chunk(_, _, decoder, k) => decoder.chunk_len(k),
        }
    }

    /// Adds the task's samples to `partial`, decoding them into `scratch`
    /// first if need be.
    fn add_to(
        &self,
        partial: &mut Partial,
        plans: &[Plan],
        scratch: &mut SampleBlock,
    ) -> std::result::Result<(), firewatch_profile::Error> {
        match *self {
            Task::Block(i, block) => partial.add_block(i, &plans[i], block),
            Task::Chunk(i, data, decoder, k) => {
                decoder
                    .decode_chunk(data.bytes(), k, scratch)
                    .map_err(|e| e.in_file(data.path()))?;
                partial.add_block(i, &plans[i], scratch);
            }
        }
        Ok(())
    }
}

/// Frame identity at function granularity, owned: it outlives the batch of
/// profiles that first named the frame. Looked up by [`FrameKey`].
#[derive(Clone, PartialEq, Eq, Hash)]
enum OwnedFrameKey {
    Function(Box<str>),
    Object(Box<str>, i64),
}

impl hashbrown::Equivalent<OwnedFrameKey> for FrameKey<'_> {
    fn equivalent(&self, key: &OwnedFrameKey) -> bool {
        match (self, key) {
            (FrameKey::Function(a), OwnedFrameKey::Function(b)) => *a == &**b,
            (FrameKey::Object(a, x), OwnedFrameKey::Object(b, y)) => *a == &**b && x == y,
            _ => false,
        }
    }
}

impl FrameKey<'_> {
    fn to_owned(&self) -> OwnedFrameKey {
        match *self {
            FrameKey::Function(name) => OwnedFrameKey::Function(name.into()),
            FrameKey::Object(object, line) => OwnedFrameKey::Object(object.into(), line),
        }
    }
}

/// The frames of every batch so far (global ids are indexes), found by
/// key.
#[derive(Default)]
struct FrameTable {
    names: Vec<String>,
    /// Per frame: (entered inline somewhere, entered by a call somewhere).
    inlining: Vec<(bool, bool)>,
    keys: Vec<OwnedFrameKey>,
    /// (the key's [`frame_hash`], id).
    index: HashTable<(u64, u32)>,
}

impl FrameTable {
    /// Global ids for an input's local frames (new frames get the next
    /// ids, in order of their first use), and their inlining flags.
    fn intern(&mut self, local: &LocalPlan) -> Vec<u32> {
        let mut ids = Vec::with_capacity(local.keys.len());
        for (&(hash, ref key), &(inline, call)) in local.keys.iter().zip(&local.flags) {
            let keys = &self.keys;
            let found = self.index.find(hash, |&(h, id)| {
                h == hash && hashbrown::Equivalent::equivalent(key, &keys[id as usize])
            });
            let id = match found {
                Some(&(_, id)) => id,
                None => {
                    let id = u32::try_from(self.names.len())
                        .expect("frames fit in u32: bounded by input size");
                    self.names.push(bounded_name(match *key {
                        FrameKey::Function(name) => name.to_string(),
                        FrameKey::Object(object, _) => object_name(object),
                    }));
                    self.keys.push(key.to_owned());
                    self.inlining.push((false, false));
                    self.index.insert_unique(hash, (hash, id), |&(h, _)| h);
                    id
                }
            };
            let flags = &mut self.inlining[id as usize];
            flags.0 |= inline;
            flags.1 |= call;
            ids.push(id);
        }
        ids
    }
}

/// The plans of one batch of inputs, for [`Aggregator::add`].
pub(crate) struct Batch {
    plans: Vec<Plan>,
    /// Frames known once this batch was planned.
    node_count: usize,
}

/// Aggregation over batches of inputs: each batch is planned
/// ([`Aggregator::plan`]), its samples added ([`Aggregator::add`]) and its
/// profiles freed before the next is read, so thousands of profiles merge
/// in the memory of the distinct functions and stacks they hold, not of
/// their bytes. Frames, groups and sums carry over from batch to batch.
pub(crate) struct Aggregator {
    options: Options,
    /// A base is among the inputs (possibly in a later batch).
    has_base: bool,
    /// The reported sample type, and the input that chose it.
    sample_type: Option<(SampleType, PathBuf)>,
    frames: FrameTable,
    filter: NameFilter,
    /// `--group-by` values that have a group, in order of their group id.
    group_values: Vec<String>,
}

/// The running sums of the batches added so far ([`Sums::add`]), apart
/// from the [`Aggregator`] that plans them, so that the next batch can be
/// planned while one is added.
pub(crate) struct Sums {
    running: Option<Partial>,
    /// A base is among the inputs.
    has_base: bool,
    /// Flat and cum added sample by sample (see [`Partial::new`]).
    per_sample_sums: bool,
    /// With [`Options::label_hot_paths`]: every batch's plans.
    kept_plans: Option<Vec<Plan>>,
}

impl Aggregator {
    /// `has_base`: whether any input, in any batch, is a base.
    pub(crate) fn new(options: &Options, has_base: bool) -> Aggregator {
        Aggregator {
            options: options.clone(),
            has_base,
            sample_type: None,
            frames: FrameTable::default(),
            filter: NameFilter {
                focus: options.focus.clone(),
                ignore: options.ignore.clone(),
                ..NameFilter::default()
            },
            group_values: Vec::new(),
        }
    }

    /// Empty sums for the batches this aggregator plans.
    pub(crate) fn sums(&self) -> Sums {
        Sums {
            running: None,
            has_base: self.has_base,
            // Flat and cum are linear in the stacks' values: without groups
            // they are summed once over the distinct stacks, at the end.
            per_sample_sums: self.options.group_by.is_some(),
            kept_plans: self.options.label_hot_paths.then(Vec::new),
        }
    }

    /// Plans a batch: checks its sample types (the first input of the
    /// first batch chooses the reported one) and plans every location.
    pub(crate) fn plan(&mut self, inputs: &[Input]) -> Result<Batch> {
        let options = &self.options;
        if self.sample_type.is_none() {
            let first = inputs.first().expect("at least one input");
            let index = first
                .view
                .sample_index(&options.sample_index)
                .map_err(|error| Error::SampleType {
                    path: first.path.clone(),
                    error,
                })?;
            let (type_name, unit) = first.view.sample_type_names()[index];
            let sample_type = SampleType {
                r#type: type_name.to_string(),
                unit: unit.to_string(),
            };
            self.sample_type = Some((sample_type, first.path.clone()));
        }
        let (sample_type, first_path) = self.sample_type.as_ref().expect("set above");

        // Each input's locations are planned in parallel with frames
        // numbered locally; the local frames then get their global ids one
        // input after another (a probe per distinct frame); the locations'
        // frames are renumbered in parallel again.
        let value_indexes = inputs
            .iter()
            .map(|input| {
                input
                    .view
                    .find_sample_type(&sample_type.r#type, &sample_type.unit)
                    .map_err(|reason| Error::Incompatible {
                        path: input.path.clone(),
                        first: first_path.clone(),
                        reason,
                    })
            })
            .collect::<Result<Vec<usize>>>()?;
        let filter = &self.filter;
        let locals: Vec<Result<LocalPlan>> = inputs
            .par_iter()
            .map(|input| plan_locations(input, options.all_frames, filter))
            .collect();
        let mut planned = Vec::with_capacity(inputs.len());
        for local in locals {
            let local = local?;
            let ids = self.frames.intern(&local);
            planned.push((local, ids));
        }
        let mut plans: Vec<Plan> = planned
            .into_par_iter()
            .zip(inputs.par_iter().zip(value_indexes))
            .map(|((local, ids), (input, value_index))| {
                let mut frames = local.frames;
                for frame in &mut frames {
                    *frame = ids[*frame as usize];
                }
                let single_frame = local
                    .frame_start
                    .windows(2)
                    .map(|w| {
                        if w[1] == w[0] + 1 {
                            frames[w[0] as usize]
                        } else {
                            SEVERAL_FRAMES
                        }
                    })
                    .collect();
                Plan {
                    value_index,
                    sign: if input.base { -1 } else { 1 },
                    frame_start: local.frame_start,
                    frames,
                    single_frame,
                    prune: local.prune,
                    filter: local.filter,
                    diff_base_label: diff_base_label(input.view),
                    tags: None,
                    groups: None,
                    label_strings: None,
                    identity: None,
                }
            })
            .collect();
        if self.has_base {
            let identities: Vec<SampleIdentity> = inputs
                .par_iter()
                .map(|input| SampleIdentity::of_view(input.view))
                .collect();
            for (plan, identity) in plans.iter_mut().zip(identities) {
                plan.identity = Some(identity);
            }
        }
        if options.tag_focus.is_some() || options.tag_ignore.is_some() {
            let tags: Vec<InputTags> = inputs
                .par_iter()
                .map(|input| InputTags {
                    focus: options.tag_focus.as_ref().map(|f| f.for_input(input.view)),
                    ignore: options.tag_ignore.as_ref().map(|f| f.for_input(input.view)),
                })
                .collect();
            for (plan, tags) in plans.iter_mut().zip(tags) {
                plan.tags = Some(tags);
            }
        }
        if let Some(key) = &options.group_by {
            let views: Vec<_> = inputs
                .iter()
                .zip(&plans)
                .map(|(i, p)| (i.view, p.value_index))
                .collect();
            let groups = plan_groups(&views, key, &mut self.group_values);
            for (plan, groups) in plans.iter_mut().zip(groups) {
                plan.groups = Some(groups);
            }
        }
        if options.label_hot_paths {
            let strings: Vec<_> = inputs
                .par_iter()
                .map(|input| {
                    let view = input.view;
                    let mut text = FxHashMap::default();
                    for (key, value) in crate::tags::distinct_string_labels(view) {
                        if view.string(key) == DIFF_BASE_LABEL.0 {
                            continue;
                        }
                        for s in [key, value] {
                            text.entry(s).or_insert_with(|| view.string(s).into());
                        }
                    }
                    text
                })
                .collect();
            for (plan, strings) in plans.iter_mut().zip(strings) {
                plan.label_strings = Some(strings);
            }
        }
        Ok(Batch {
            plans,
            node_count: self.frames.names.len(),
        })
    }

    /// The totals of every batch added to `sums`.
    pub(crate) fn finish(self, sums: Sums) -> Aggregate {
        let Sums {
            running,
            kept_plans,
            ..
        } = sums;
        let Aggregator {
            has_base,
            sample_type,
            frames: FrameTable {
                names, inlining, ..
            },
            options,
            group_values,
            ..
        } = self;
        let (sample_type, _) = sample_type.expect("a batch was planned");
        let mut partial = running.unwrap_or_else(|| Partial::new(0, false, true));
        if !partial.per_sample_sums {
            partial.sum_stacks(names.len());
        }
        // pprof merges a base into the profile sample by sample, so
        // identical samples (same locations and labels) cancel before it
        // sums |values|: do the same. Sums wrap like Go's int64 (pprof's),
        // here as everywhere else.
        let total = match &partial.diff_units {
            Some(units) => units
                .values()
                .map(|v| v.wrapping_abs())
                .fold(0i64, i64::wrapping_add),
            None => partial.total,
        };
        // pprof: "If any samples have label indicating they belong to the
        // diff base, then the total will only include samples with that
        // label."
        let total = if partial.diff_base_total > 0 {
            partial.diff_base_total
        } else {
            total
        };

        // Free what the reports do not need before building their inputs.
        drop(std::mem::take(&mut partial.seen));
        drop(std::mem::take(&mut partial.scratch));
        let groups = partial.group_totals(&group_values, &names, &inlining);
        let functions = names
            .into_iter()
            .zip(inlining)
            .enumerate()
            .map(|(i, (name, flags))| FunctionTotal {
                name,
                flat: partial.flat.get(i).copied().unwrap_or(0),
                cum: partial.cum.get(i).copied().unwrap_or(0),
                inlining: Inlining::from_flags(flags),
            })
            .collect();
        Aggregate {
            sample_type,
            total,
            kept: partial.kept,
            samples: partial.samples,
            samples_kept: partial.samples_kept,
            functions,
            stacks: partial.stacks,
            has_base: has_base || partial.diff_base_samples > 0,
            diff_base_samples: partial.diff_base_samples,
            group_by: options.group_by,
            groups,
            plans: kept_plans,
        }
    }
}

impl Sums {
    /// The sample pass over a planned batch, in parallel; `blocks[i]` are
    /// the sample blocks of the batch's `i`th input. Its sums join the
    /// running ones.
    pub(crate) fn add(&mut self, batch: Batch, inputs: &[SampleSource]) -> Result<()> {
        let Batch { plans, node_count } = batch;
        let tasks: Vec<Task> = inputs
            .iter()
            .enumerate()
            .flat_map(|(i, source)| -> Box<dyn Iterator<Item = Task>> {
                match *source {
                    SampleSource::Blocks(blocks) => {
                        Box::new(blocks.iter().map(move |b| Task::Block(i, b)))
                    }
                    SampleSource::Chunks { data, decoder } => Box::new(
                        (0..decoder.chunk_count()).map(move |k| Task::Chunk(i, data, decoder, k)),
                    ),
                }
            })
            .collect();
        let (diff, per_sample_sums) = (self.has_base, self.per_sample_sums);
        // One partial sum per worker thread (not per rayon split: merging
        // millions of stacks is the expensive part), then the stack tables
        // are merged shard by shard in parallel.
        // Small profiles get one worker: a second one would only duplicate
        // the stack tables it then has to merge.
        let samples: usize = tasks.iter().map(Task::len).sum();
        let workers = rayon::current_num_threads()
            .min(samples / SAMPLES_PER_WORKER)
            .clamp(1, tasks.len().max(1));
        let use_cache =
            plans.iter().all(|p| p.groups.is_none()) && repeats(inputs)? >= CACHE_WORTH_REPEATS;
        if workers == 1 {
            // One worker (a batch of small profiles, as a fleet's are): add
            // into the running sums, where most of its stacks already are,
            // rather than into new tables merged with them afterwards.
            let mut partial = self
                .running
                .take()
                .unwrap_or_else(|| Partial::new(node_count, diff, per_sample_sums));
            partial.grow(node_count);
            if use_cache {
                partial.location_stacks = Some(LocationStacks::with_capacity(samples / 2, 0));
            }
            let mut scratch = SampleBlock::default();
            let added = tasks
                .iter()
                .try_for_each(|task| task.add_to(&mut partial, &plans, &mut scratch));
            partial.fold_location_stacks(Vec::new(), &plans);
            self.running = Some(partial);
            added?;
            if let Some(kept) = &mut self.kept_plans {
                kept.extend(plans);
            }
            return Ok(());
        }
        // Workers take the next block as they finish one, so that one
        // slowed down (by another process, or by blocks of more distinct
        // stacks) does not leave the other idle at the end.
        let next_task = AtomicUsize::new(0);
        // A chunk that does not decode stops every worker; the first such
        // chunk in input order is then found again, so that the error does
        // not depend on which worker met which.
        let failed = AtomicBool::new(false);
        let refs: usize = tasks
            .iter()
            .map(|t| match t {
                Task::Block(_, b) => b.location_count(),
                // A guess: a location reference takes two or three bytes,
                // and samples most of a profile's.
                Task::Chunk(_, data, decoder, k) => {
                    data.bytes().len() / 3 * decoder.chunk_len(*k) / decoder.sample_count().max(1)
                }
            })
            .sum();
        let partials: Vec<Partial> = (0..workers)
            .into_par_iter()
            .map(|_| {
                let mut partial = Partial::new(node_count, diff, per_sample_sums);
                // Groups need their own flat and cum per sample; otherwise,
                // where stacks repeat, samples are matched to their stacks
                // by their locations, and frames come after the pass.
                if use_cache {
                    partial.location_stacks = Some(LocationStacks::with_capacity(
                        samples / workers / 2,
                        refs / workers / 2,
                    ));
                } else {
                    // Room for every sample of an even share being a
                    // distinct stack, twice over per shard (hash skew,
                    // uneven shares); inlined lines add frames. Tables grow
                    // past it if need be.
                    let (per_shard_stacks, per_shard_frames) =
                        (samples * 2 / workers / SHARDS, refs * 3 / workers / SHARDS);
                    partial.stacks = (0..SHARDS)
                        .map(|_| StackTable::with_capacity(per_shard_stacks, per_shard_frames))
                        .collect();
                }
                let mut scratch = SampleBlock::default();
                while let Some(task) = tasks.get(next_task.fetch_add(1, Ordering::Relaxed)) {
                    if failed.load(Ordering::Relaxed)
                        || task.add_to(&mut partial, &plans, &mut scratch).is_err()
                    {
                        failed.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                partial
            })
            .collect();
        if failed.into_inner() {
            let mut scratch = SampleBlock::default();
            for task in &tasks {
                if let Task::Chunk(_, data, decoder, k) = *task {
                    decoder
                        .decode_chunk(data.bytes(), k, &mut scratch)
                        .map_err(|e| e.in_file(data.path()))?;
                }
            }
            unreachable!("a chunk that failed to decode fails again");
        }
        let mut partials = partials;
        // The workers' distinct location stacks, merged, get their frames
        // once (in parallel).
        let sets: Vec<LocationStacks> = partials
            .iter_mut()
            .filter_map(|p| p.location_stacks.take())
            .collect();
        if let Some(first) = partials.first_mut() {
            first.fold_location_stacks(sets, &plans);
        }
        let partials: Vec<Partial> = self.running.take().into_iter().chain(partials).collect();
        // Nothing to merge when no input so far had a sample block (a
        // profile without samples): `finish` starts from an empty partial.
        if !partials.is_empty() {
            self.running = Some(Partial::merge_all(partials));
        }
        if let Some(kept) = &mut self.kept_plans {
            kept.extend(plans);
        }
        Ok(())
    }
}

impl Aggregate {
    /// Every distinct stack with its totals (in no particular order).
    pub fn stacks(&self) -> impl Iterator<Item = StackTotal<'_>> + '_ {
        self.stacks.iter().flat_map(|table| {
            table.entries().iter().map(move |e| StackTotal {
                frames: table.frames(e),
                value: e.value,
                base: e.base,
            })
        })
    }

    /// For each of `stacks` (root first, recursion folded as hot paths fold
    /// it), the sum of the kept samples' values per string label (key,
    /// value) they carry. `None` without [`Options::label_hot_paths`] or
    /// when no input has string labels.
    pub(crate) fn label_sums(
        &self,
        blocks: &[&[SampleBlock]],
        stacks: &[Vec<u32>],
    ) -> Option<Vec<FxHashMap<(String, String), i64>>> {
        let plans = self.plans.as_ref()?;
        if plans
            .iter()
            .all(|p| p.label_strings.as_ref().is_none_or(|s| s.is_empty()))
        {
            return None;
        }
        let index: FxHashMap<&[u32], usize> = stacks
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_slice(), i))
            .collect();
        type Sums<'p> = Vec<FxHashMap<(&'p str, &'p str), i64>>;
        let empty = || -> Sums { vec![FxHashMap::default(); stacks.len()] };
        let tasks: Vec<(&Plan, &SampleBlock)> = plans
            .iter()
            .zip(blocks)
            .filter(|(p, _)| p.label_strings.as_ref().is_some_and(|s| !s.is_empty()))
            .flat_map(|(p, blocks)| blocks.iter().map(move |b| (p, b)))
            .collect();
        let sums = tasks
            .par_iter()
            .fold(empty, |mut sums, &(plan, block)| {
                let strings = plan.label_strings.as_ref().expect("filtered above");
                let (mut stack, mut folded) = (Vec::new(), Vec::new());
                for sample in block.iter() {
                    let value = sample.values[plan.value_index].wrapping_mul(plan.sign);
                    if value == 0 || sample.labels.is_empty() {
                        continue;
                    }
                    let mut locations = sample.locations;
                    if let Some(prune) = &plan.prune {
                        locations = &locations[prune_start(locations, prune)..];
                    }
                    if plan
                        .filter
                        .as_ref()
                        .is_some_and(|f| !LocationMatch::keeps(locations, f))
                        || plan.tags.as_ref().is_some_and(|t| !t.keeps(sample.labels))
                    {
                        continue;
                    }
                    fill_stack(&mut stack, plan, locations);
                    crate::report::fold_recursion(&stack, &mut folded);
                    let Some(&path) = index.get(folded.as_slice()) else {
                        continue;
                    };
                    for l in sample.labels {
                        let (Some(key), Some(text)) = (strings.get(&l.key), strings.get(&l.str))
                        else {
                            continue;
                        };
                        let sum = sums[path].entry((key, text)).or_insert(0);
                        *sum = sum.wrapping_add(value);
                    }
                }
                sums
            })
            .reduce(empty, |mut a, b| {
                for (a, b) in a.iter_mut().zip(b) {
                    for (k, v) in b {
                        let e = a.entry(k).or_insert(0);
                        *e = e.wrapping_add(v);
                    }
                }
                a
            });
        Some(
            sums.into_iter()
                .map(|m| {
                    m.into_iter()
                        .map(|((k, v), sum)| ((k.to_string(), v.to_string()), sum))
                        .collect()
                })
                .collect(),
        )
    }

    pub(crate) fn stack_tables(&self) -> &[StackTable] {
        &self.stacks
    }

    pub fn stack_count(&self) -> usize {
        self.stacks.iter().map(StackTable::len).sum()
    }
}

/// One input's locations planned with frames numbered locally: the part of
/// planning that needs no shared state, run for every input of a batch in
/// parallel. [`Aggregator::intern`] then gives the local frames their
/// global ids, one hash probe per distinct frame of the input (hashes
/// computed here), so the serial part of planning is a few thousand
/// probes per file, not a walk of every line.
struct LocalPlan<'s> {
    prune: Option<Vec<LocationPrune>>,
    filter: Option<Vec<LocationMatch>>,
    /// Local frame `f`'s key and its hash (`frame_hash`).
    keys: Vec<(u64, FrameKey<'s>)>,
    /// Per local frame: (entered inline somewhere, entered by a call somewhere).
    flags: Vec<(bool, bool)>,
    /// Location `l`'s frames are `frames[frame_start[l]..frame_start[l+1]]`
    /// (local ids), root first.
    frame_start: Vec<u32>,
    frames: Vec<u32>,
}

/// The hash frames are interned by, the same in every input.
#[inline]
fn frame_hash(key: &FrameKey) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

fn plan_locations<'s>(
    input: &'s Input,
    all_frames: bool,
    filter: &NameFilter,
) -> Result<LocalPlan<'s>> {
    let view = input.view;
    let pruner = if all_frames {
        None
    } else {
        FramePruner::for_view(view).map_err(|error| Error::ProfileRegex {
            path: input.path.clone(),
            error,
        })?
    };
    let prune: Option<Vec<LocationPrune>> = pruner.map(|p| {
        view.locations()
            .par_iter()
            .map(|loc| p.classify_location(view, loc))
            .collect()
    });

    // Local ids: a function's on its first use (by function index, so a
    // name is hashed once per input), an unsymbolized frame's by its key.
    let mut keys: Vec<(u64, FrameKey<'s>)> = Vec::new();
    let mut of_function = vec![u32::MAX; view.functions().len()];
    let mut of_object: FxHashMap<FrameKey<'s>, u32> = FxHashMap::default();
    let mut object_frame = |keys: &mut Vec<(u64, FrameKey<'s>)>, key: FrameKey<'s>| -> u32 {
        *of_object.entry(key).or_insert_with_key(|key| {
            keys.push((frame_hash(key), key.clone()));
            (keys.len() - 1) as u32
        })
    };
    let object = |loc: &firewatch_profile::LocationView| -> &'s str {
        loc.mapping
            .map_or("", |m| view.string(view.mappings()[m as usize].filename))
    };
    let mut flags: Vec<(bool, bool)> = Vec::new();
    let mut frame_start = Vec::with_capacity(view.locations().len() + 1);
    let mut frames = Vec::with_capacity(view.lines().len() + 16);
    frame_start.push(0u32);
    for (l, loc) in view.locations().iter().enumerate() {
        let lines = kept_lines(view, prune.as_deref(), l);
        let first_frame = frames.len();
        if lines.is_empty() {
            frames.push(object_frame(&mut keys, FrameKey::Object(object(loc), 0)));
        }
        // Callers first: the last line is the out-of-line function.
        for line in lines.iter().rev() {
            let function = &view.functions()[line.function as usize];
            let name = view.string(function.name);
            let frame = if name.is_empty() {
                object_frame(
                    &mut keys,
                    FrameKey::Object(object(loc), function.start_line),
                )
            } else {
                let local = &mut of_function[line.function as usize];
                if *local == u32::MAX {
                    let key = FrameKey::Function(name);
                    keys.push((frame_hash(&key), key));
                    *local = (keys.len() - 1) as u32;
                }
                *local
            };
            frames.push(frame);
        }
        // Inlined frames are entered through an inline edge; the location's
        // outermost frame through a call.
        flags.resize(keys.len(), (false, false));
        for k in first_frame..frames.len() {
            let frame = frames[k] as usize;
            if k == first_frame {
                flags[frame].1 = true;
            } else if frames[k - 1] as usize != frame {
                flags[frame].0 = true;
            }
        }
        frame_start
            .push(u32::try_from(frames.len()).expect("frames fit in u32: bounded by input size"));
    }

    // Focus and ignore see the lines pruning left, as in pprof, which
    // prunes when it reads a profile and filters afterwards.
    let filter = filter.selects_samples().then(|| {
        view.locations()
            .par_iter()
            .enumerate()
            .map(|(l, loc)| {
                filter.classify_location(view, loc, kept_lines(view, prune.as_deref(), l))
            })
            .collect()
    });
    Ok(LocalPlan {
        prune,
        filter,
        keys,
        flags,
        frame_start,
        frames,
    })
}

/// pprof marks the samples of a `-diff_base` profile with the label
/// `pprof::base` = `true` (and keeps the mark when it saves the profile).
pub const DIFF_BASE_LABEL: (&str, &str) = ("pprof::base", "true");

fn diff_base_label(view: &ProfileView) -> Option<(u32, u32)> {
    let index = |s: &str| view.strings().iter().position(|x| x == s);
    let key = index(DIFF_BASE_LABEL.0)?;
    let value = index(DIFF_BASE_LABEL.1)?;
    Some((key as u32, value as u32))
}

/// The lines of location `l` that pruning keeps.
fn kept_lines<'v>(
    view: &'v ProfileView,
    prune: Option<&[LocationPrune]>,
    l: usize,
) -> &'v [firewatch_profile::LineView] {
    let lines = view.location_lines(&view.locations()[l]);
    prune.map_or(lines, |p| p[l].kept_lines(lines))
}

/// Longest function name shown, in bytes. Frames are still told apart by
/// their full names; only what reports, JSON and flamegraphs print is cut,
/// so a hostile 64 MiB name cannot make every output line 64 MiB.
pub const MAX_NAME_BYTES: usize = 4096;

fn bounded_name(mut name: String) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let total = name.len();
    let mut cut = MAX_NAME_BYTES;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name.push_str(&format!("…[{total} bytes]"));
    name
}

fn object_name(object: &str) -> String {
    let base = object
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    if base.is_empty() {
        "<unknown>".into()
    } else {
        format!("[{base}]")
    }
}

/// The frames of a (pruned) sample, root first, into `scratch`.
#[inline]
fn fill_stack(scratch: &mut Vec<u32>, plan: &Plan, locations: &[u32]) {
    scratch.clear();
    push_frames(scratch, plan, locations);
}

/// The frames of a (pruned) sample, root first, after those of `out`.
#[inline]
fn push_frames(out: &mut Vec<u32>, plan: &Plan, locations: &[u32]) {
    for &l in locations.iter().rev() {
        let frame = plan.single_frame[l as usize];
        if frame != SEVERAL_FRAMES {
            out.push(frame);
            continue;
        }
        let (start, end) = (
            plan.frame_start[l as usize] as usize,
            plan.frame_start[l as usize + 1] as usize,
        );
        // Two or three frames: pushed one by one, cheaper than a call to
        // copy them.
        for &frame in &plan.frames[start..end] {
            out.push(frame);
        }
    }
}

/// [`Plan::single_frame`] of a location that is not one frame. Frame ids
/// are below it: they index a table of at most one frame per line of the
/// inputs, which a u32 offset (`frame_start`) already bounds.
const SEVERAL_FRAMES: u32 = u32::MAX;

/// One worker's share of the sums.
struct Partial {
    /// Per function; empty until [`Partial::sum_stacks`] unless
    /// `per_sample_sums`.
    flat: Vec<i64>,
    cum: Vec<i64>,
    /// `seen[n] == sample_serial` when node `n` already got this sample's cum.
    seen: Vec<u32>,
    sample_serial: u32,
    /// Distinct stacks and their (value, base), sharded by hash.
    stacks: Vec<StackTable>,
    scratch: Vec<u32>,
    total: i64,
    /// Sum of |value| over the samples labelled `pprof::base`, and their count.
    diff_base_total: i64,
    diff_base_samples: u64,
    /// For a difference: the net value of every sample identity (see
    /// [`SampleIdentity`]), before filters, from which pprof's total is
    /// computed.
    diff_units: Option<FxHashMap<u64, i64>>,
    kept: i64,
    samples: u64,
    samples_kept: u64,
    /// Per `--group-by` group; a group's tables are allocated at its first sample.
    groups: Vec<GroupPartial>,
    /// Without groups, where stacks repeat: each distinct (input, base or
    /// not, locations) seen by this worker, with the values added to it so
    /// far; frames are built once per distinct location stack of the whole
    /// pass ([`LocationStacks::into_stack_tables`]), after the workers'
    /// sets are merged. Flat and cum wait for [`Partial::sum_stacks`].
    location_stacks: Option<LocationStacks>,
    /// Whether flat and cum are added sample by sample (see [`Partial::new`]).
    per_sample_sums: bool,
}

/// Distinct location stacks and their values ([`Partial::location_stacks`]).
struct LocationStacks {
    table: HashTable<LocationStack>,
    /// The locations of the entries, one after another; after a merge,
    /// one arena per merged set.
    arenas: Vec<Vec<u32>>,
}

/// A distinct location stack ([`LocationStacks`]).
struct LocationStack {
    /// [`hash_locations`] of its input, side and locations.
    key: u128,
    /// Its locations: arena << 48 | start, `len` of them.
    at: u64,
    len: u32,
    input: u32,
    /// The values of its samples so far (net, and the base's part).
    value: i64,
    base: i64,
}

impl LocationStack {
    fn locations<'a>(&self, arenas: &'a [Vec<u32>]) -> &'a [u32] {
        let start = (self.at & ((1 << 48) - 1)) as usize;
        &arenas[(self.at >> 48) as usize][start..start + self.len as usize]
    }
}

impl LocationStacks {
    /// Room for `stacks` distinct stacks of `locations` locations in all:
    /// the arena is reserved at once (address space only until written),
    /// since growing it by doubling copies it into fresh pages each time.
    fn with_capacity(stacks: usize, locations: usize) -> LocationStacks {
        LocationStacks {
            table: HashTable::with_capacity(stacks),
            arenas: vec![Vec::with_capacity(locations)],
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// Adds `pending`'s samples: a location stack seen before gets their
    /// values; a new one, its locations copied.
    fn add(&mut self, input: usize, pending: &mut Vec<Pending>) {
        for p in pending.drain(..) {
            let hash = p.key as u64;
            if let Some(found) = self.table.find_mut(hash, |e| e.key == p.key) {
                found.value = found.value.wrapping_add(p.value);
                found.base = found.base.wrapping_add(p.base_value);
                continue;
            }
            let arena = self.arenas.len() - 1;
            let locations = &mut self.arenas[arena];
            let at = (arena as u64) << 48 | locations.len() as u64;
            locations.extend_from_slice(p.locations);
            self.table.insert_unique(
                hash,
                LocationStack {
                    key: p.key,
                    at,
                    len: p.locations.len() as u32,
                    input: input as u32,
                    value: p.value,
                    base: p.base_value,
                },
                |e| e.key as u64,
            );
        }
    }

    /// Adds `other`'s stacks: equal keys sum, new ones keep their
    /// locations in `other`'s arenas, which join these.
    fn absorb(&mut self, other: LocationStacks) {
        let shift = self.arenas.len() as u64;
        for mut e in other.table {
            let hash = e.key as u64;
            if let Some(found) = self.table.find_mut(hash, |f| f.key == e.key) {
                found.value = found.value.wrapping_add(e.value);
                found.base = found.base.wrapping_add(e.base);
                continue;
            }
            e.at += shift << 48;
            self.table.insert_unique(hash, e, |f| f.key as u64);
        }
        self.arenas.extend(other.arenas);
    }

    /// Merges the sets of several workers (each distinct location stack
    /// once), then builds each one's frames and adds it to stack tables,
    /// in parallel: the work of frames is done once per distinct location
    /// stack rather than once per worker that met it, and each shard's
    /// table once, at its final size.
    fn into_stack_tables(sets: Vec<LocationStacks>, plans: &[Plan]) -> Vec<StackTable> {
        let mut sets = sets.into_iter();
        let Some(mut merged) = sets.next() else {
            return (0..SHARDS).map(|_| StackTable::default()).collect();
        };
        for set in sets {
            if merged.len() < set.len() {
                let smaller = std::mem::replace(&mut merged, set);
                merged.absorb(smaller);
            } else {
                merged.absorb(set);
            }
        }
        let LocationStacks { table, arenas } = merged;
        let entries: Vec<LocationStack> = table.into_iter().collect();
        let threads = rayon::current_num_threads().max(1);
        let per_thread = entries.len().div_ceil(threads).max(1);
        // First each thread writes the frames of its share of the stacks
        // into one arena of its own, sorting the stacks by shard; then
        // each shard's table takes its stacks from every thread's arena.
        // Equal frame stacks of different threads meet in their shard's
        // table, and no table is built twice (once per thread, then
        // merged), nor grown: its size is known.
        let built: Vec<BuiltStacks> = entries
            .par_chunks(per_thread)
            .map(|entries| {
                let locations: usize = entries.iter().map(|e| e.len as usize).sum();
                let mut built = BuiltStacks {
                    // Inlined lines add frames: a quarter more.
                    frames: Vec::with_capacity(locations + locations / 4),
                    by_shard: (0..SHARDS)
                        .map(|_| Vec::with_capacity(entries.len() * 5 / 4 / SHARDS))
                        .collect(),
                };
                for e in entries {
                    let start = built.frames.len();
                    push_frames(
                        &mut built.frames,
                        &plans[e.input as usize],
                        e.locations(&arenas),
                    );
                    let hash = hash_stack(&built.frames[start..]);
                    built.by_shard[shard_of(hash)].push(BuiltStack {
                        hash,
                        start,
                        len: (built.frames.len() - start) as u32,
                        value: e.value,
                        base: e.base,
                    });
                }
                built
            })
            .collect();
        drop(entries);
        drop(arenas);
        (0..SHARDS)
            .into_par_iter()
            .map(|shard| {
                let stacks = built.iter().map(|b| b.by_shard[shard].len()).sum();
                let frames = built
                    .iter()
                    .flat_map(|b| &b.by_shard[shard])
                    .map(|s| s.len as usize)
                    .sum();
                let mut table = StackTable::with_expected(stacks, frames);
                for b in &built {
                    for s in &b.by_shard[shard] {
                        let stack = &b.frames[s.start..s.start + s.len as usize];
                        table.add(stack, s.hash, s.value, s.base);
                    }
                }
                table
            })
            .collect()
    }
}

/// One thread's share of the distinct location stacks with their frames
/// ([`LocationStacks::into_stack_tables`]).
struct BuiltStacks {
    frames: Vec<u32>,
    /// Per shard, the stacks whose frames hash there.
    by_shard: Vec<Vec<BuiltStack>>,
}

struct BuiltStack {
    hash: u64,
    /// Its frames: `frames[start..start + len]` of its [`BuiltStacks`].
    start: usize,
    len: u32,
    value: i64,
    base: i64,
}

/// A sample waiting for its location-stack lookup.
struct Pending<'b> {
    key: u128,
    value: i64,
    base_value: i64,
    locations: &'b [u32],
}

/// Samples looked up together: enough for the lookups' cache misses to
/// overlap, few enough to stay in L1.
const PENDING_RUN: usize = 32;

/// Samples drawn to estimate how often stacks repeat ([`repeats`]).
const REPEAT_PROBES: usize = 1 << 14;

/// Below this many samples per distinct stack, the location-stack cache
/// costs more than it saves (measured: with every stack distinct it is
/// 10% slower, with each stack 3 times 10% faster).
const CACHE_WORTH_REPEATS: f64 = 1.5;

/// Roughly how many samples `tasks` hold per distinct location stack,
/// from the collisions among [`REPEAT_PROBES`] samples drawn at an even
/// stride: m draws from N equally likely stacks collide about m²/2N times.
fn repeats(inputs: &[SampleSource]) -> Result<f64> {
    let counts: Vec<usize> = inputs
        .iter()
        .map(|source| match source {
            SampleSource::Blocks(blocks) => blocks.iter().map(SampleBlock::len).sum(),
            SampleSource::Chunks { decoder, .. } => decoder.sample_count(),
        })
        .collect();
    let samples: usize = counts.iter().sum();
    if samples == 0 {
        return Ok(0.0);
    }
    let stride = (samples / REPEAT_PROBES).max(1);
    let mut seen: FxHashMap<u128, ()> = FxHashMap::default();
    let (mut drawn, mut collisions) = (0usize, 0usize);
    let mut draw = |input: usize, locations: &[u32]| {
        drawn += 1;
        if seen
            .insert(hash_locations(input, false, locations), ())
            .is_some()
        {
            collisions += 1;
        }
    };
    // Sample `next` of all is drawn, then every `stride`th after it.
    let (mut next, mut offset) = (0usize, 0usize);
    let mut probe = SampleBlock::default();
    for (input, (source, &count)) in inputs.iter().zip(&counts).enumerate() {
        let end = offset + count;
        match source {
            SampleSource::Blocks(blocks) => {
                let mut block_start = offset;
                for block in blocks.iter() {
                    while next < block_start + block.len() {
                        draw(input, block.get(next - block_start).locations);
                        next += stride;
                    }
                    block_start += block.len();
                }
            }
            SampleSource::Chunks { data, decoder } => {
                let first = next - offset;
                decoder
                    .decode_some(data.bytes(), (first..count).step_by(stride), &mut probe)
                    .map_err(|e| e.in_file(data.path()))?;
                for sample in probe.iter() {
                    draw(input, sample.locations);
                }
                next += (count - first.min(count)).div_ceil(stride) * stride;
            }
        }
        offset = end;
        next = next.max(offset);
    }
    if stride == 1 {
        // Every sample drawn: the exact ratio.
        return Ok(drawn as f64 / (drawn - collisions).max(1) as f64);
    }
    let distinct = (drawn * drawn) as f64 / (2.0 * collisions.max(1) as f64);
    if collisions == 0 {
        return Ok(1.0);
    }
    Ok(samples as f64 / distinct.max(1.0))
}

/// A 128-bit hash of a sample's input, side (base or not) and locations:
/// two 64-bit lanes of folded multiplies (as foldhash and ahash mix). Two
/// distinct location stacks of one input share it with probability about
/// 2⁻¹²⁸ per pair (3·10⁻²⁶ for a million stacks), so samples are matched to
/// their stack by it alone, without comparing their locations.
#[inline]
fn hash_locations(input: usize, base: bool, locations: &[u32]) -> u128 {
    #[inline]
    fn fold(a: u64, b: u64) -> u64 {
        let m = u128::from(a).wrapping_mul(u128::from(b));
        (m as u64) ^ ((m >> 64) as u64)
    }
    const K: [u64; 4] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let seed = (input as u64) << 1 | base as u64;
    let (mut a, mut b) = (
        fold(seed ^ K[0], K[1]),
        fold(locations.len() as u64 ^ K[2], K[3]),
    );
    let mut pairs = locations.chunks_exact(2);
    for pair in &mut pairs {
        let v = u64::from(pair[0]) << 32 | u64::from(pair[1]);
        a = fold(a ^ v, K[1]).rotate_left(23);
        b = fold(b ^ v.rotate_left(32), K[3]).rotate_left(17);
    }
    if let [last] = pairs.remainder() {
        a = fold(a ^ u64::from(*last), K[2]);
        b = fold(b ^ u64::from(*last), K[0]);
    }
    u128::from(fold(a, K[3])) << 64 | u128::from(fold(b, K[1]))
}

#[derive(Default)]
struct GroupPartial {
    flat: Vec<i64>,
    cum: Vec<i64>,
    kept: i64,
    samples: u64,
}

impl GroupPartial {
    fn add(&mut self, mut other: GroupPartial) {
        if other.samples == 0 {
            return;
        }
        if self.flat.len() < other.flat.len() {
            std::mem::swap(self, &mut other);
        }
        add_into(&mut self.flat, &other.flat);
        add_into(&mut self.cum, &other.cum);
        self.kept = self.kept.wrapping_add(other.kept);
        self.samples += other.samples;
    }
}

/// `into[i] += from[i]`, growing `into` to `from`'s length (later batches
/// know more functions).
fn add_into(into: &mut Vec<i64>, from: &[i64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.wrapping_add(*b);
    }
}

impl Partial {
    /// `per_sample_sums`: flat and cum are added sample by sample (for
    /// `--group-by`, whose groups need their own); otherwise they wait for
    /// [`Partial::sum_stacks`] over the merged stacks.
    fn new(nodes: usize, diff: bool, per_sample_sums: bool) -> Partial {
        let nodes = if per_sample_sums { nodes } else { 0 };
        Partial {
            flat: vec![0; nodes],
            cum: vec![0; nodes],
            seen: vec![0; nodes],
            per_sample_sums,
            sample_serial: 0,
            stacks: (0..SHARDS).map(|_| StackTable::default()).collect(),
            scratch: Vec::with_capacity(256),
            total: 0,
            diff_base_total: 0,
            diff_base_samples: 0,
            diff_units: diff.then(FxHashMap::default),
            kept: 0,
            samples: 0,
            samples_kept: 0,
            groups: (0..GROUP_SLOTS).map(|_| GroupPartial::default()).collect(),
            location_stacks: None,
        }
    }

    /// Adds a block of input `input`'s samples (`plan` is its plan).
    fn add_block(&mut self, input: usize, plan: &Plan, block: &SampleBlock) {
        let mut pending = Vec::with_capacity(if self.location_stacks.is_some() {
            PENDING_RUN
        } else {
            0
        });
        for sample in block.iter() {
            let value = sample.values[plan.value_index].wrapping_mul(plan.sign);
            if value == 0 {
                continue;
            }
            self.samples += 1;
            self.total = self.total.wrapping_add(value.wrapping_abs());
            let diff_base = plan
                .diff_base_label
                .is_some_and(|(k, v)| sample.labels.iter().any(|l| l.key == k && l.str == v));
            if diff_base {
                self.diff_base_samples += 1;
                self.diff_base_total = self.diff_base_total.wrapping_add(value.wrapping_abs());
            }
            if let (Some(units), Some(identity)) = (&mut self.diff_units, &plan.identity) {
                let unit = units.entry(identity.of(sample)).or_insert(0);
                *unit = unit.wrapping_add(value);
            }
            let mut locations = sample.locations;
            if let Some(prune) = &plan.prune {
                locations = &locations[prune_start(locations, prune)..];
            }
            if let Some(filter) = &plan.filter {
                if !LocationMatch::keeps(locations, filter) {
                    continue;
                }
            }
            if let Some(tags) = &plan.tags {
                if !tags.keeps(sample.labels) {
                    continue;
                }
            }
            self.samples_kept += 1;
            self.kept = self.kept.wrapping_add(value);
            let base = plan.sign < 0 || diff_base;
            // The base's part of the stack's value, positive.
            let base_value = if base { -value } else { 0 };
            if self.location_stacks.is_some() {
                // Most samples repeat a stack seen before: found by their
                // locations, without building their frames; looked up in
                // runs, so that the memory accesses of one lookup overlap
                // those of the next.
                pending.push(Pending {
                    key: hash_locations(input, base, locations),
                    value,
                    base_value,
                    locations,
                });
                if pending.len() == PENDING_RUN {
                    self.flush_pending(input, &mut pending);
                }
                continue;
            }
            fill_stack(&mut self.scratch, plan, locations);
            let group = plan.groups.as_ref().map(|g| {
                let g = g.group_of(sample.labels) as usize;
                let nodes = self.flat.len();
                let group = &mut self.groups[g];
                if group.flat.len() < nodes {
                    group.flat.resize(nodes, 0);
                    group.cum.resize(nodes, 0);
                }
                group.kept = group.kept.wrapping_add(value);
                group.samples += 1;
                g
            });
            self.add_stack(value, base_value, group);
        }
        self.flush_pending(input, &mut pending);
    }

    /// Looks up the pending samples' stacks by their locations, adding
    /// their values there (see [`LocationStacks::add`]).
    fn flush_pending(&mut self, input: usize, pending: &mut Vec<Pending>) {
        if let Some(stacks) = &mut self.location_stacks {
            stacks.add(input, pending);
        }
    }

    /// Adds the stacks gathered in `location_stacks` (and `others'`, of
    /// other workers of the same batch) to the stack tables.
    fn fold_location_stacks(&mut self, others: Vec<LocationStacks>, plans: &[Plan]) {
        let own = self.location_stacks.take();
        if others.is_empty() {
            // One worker (a batch of small profiles): straight into the
            // running tables, where most of its stacks already are.
            let Some(LocationStacks { table, arenas }) = own else {
                return;
            };
            for e in table {
                fill_stack(
                    &mut self.scratch,
                    &plans[e.input as usize],
                    e.locations(&arenas),
                );
                let hash = hash_stack(&self.scratch);
                self.stacks[shard_of(hash)].add(&self.scratch, hash, e.value, e.base);
            }
            return;
        }
        let sets: Vec<LocationStacks> = own.into_iter().chain(others).collect();
        let tables = LocationStacks::into_stack_tables(sets, plans);
        let sets = vec![std::mem::take(&mut self.stacks), tables];
        self.stacks = merge_sharded(sets);
    }

    /// Makes room for `nodes` functions (a later batch may know more).
    fn grow(&mut self, nodes: usize) {
        if self.per_sample_sums && self.flat.len() < nodes {
            self.flat.resize(nodes, 0);
            self.cum.resize(nodes, 0);
            self.seen.resize(nodes, 0);
        }
    }

    /// Flat and cum of `nodes` functions from the distinct stacks: each
    /// stack adds its value to its leaf's flat and, once per function, to
    /// the cum of the functions on it: the sums the per-sample path makes,
    /// since they are linear in the values. Shards are summed in parallel,
    /// a set of sums per thread.
    fn sum_stacks(&mut self, nodes: usize) {
        let threads = rayon::current_num_threads().max(1);
        let per_thread = self.stacks.len().div_ceil(threads).max(1);
        let sums = self
            .stacks
            .par_chunks(per_thread)
            .map(|tables| {
                let (mut flat, mut cum) = (vec![0i64; nodes], vec![0i64; nodes]);
                let mut seen = vec![0u32; nodes];
                let mut serial = 0u32;
                for table in tables {
                    for entry in table.entries() {
                        if entry.value == 0 {
                            continue;
                        }
                        serial = serial.wrapping_add(1);
                        if serial == 0 {
                            seen.fill(0);
                            serial = 1;
                        }
                        let frames = table.frames(entry);
                        for &node in frames {
                            let seen = &mut seen[node as usize];
                            if *seen != serial {
                                *seen = serial;
                                let cum = &mut cum[node as usize];
                                *cum = cum.wrapping_add(entry.value);
                            }
                        }
                        if let Some(&leaf) = frames.last() {
                            let flat = &mut flat[leaf as usize];
                            *flat = flat.wrapping_add(entry.value);
                        }
                    }
                }
                (flat, cum)
            })
            .reduce(
                || (Vec::new(), Vec::new()),
                |(mut flat, mut cum), (f, c)| {
                    add_into(&mut flat, &f);
                    add_into(&mut cum, &c);
                    (flat, cum)
                },
            );
        (self.flat, self.cum) = sums;
        self.flat.resize(nodes, 0);
        self.cum.resize(nodes, 0);
    }

    /// Adds the stack in `scratch` (filled by the caller): `value` (net)
    /// and `base_value` (the base's part, positive).
    #[inline]
    fn add_stack(&mut self, value: i64, base_value: i64, group: Option<usize>) {
        if self.per_sample_sums {
            self.add_sums(value, group);
        }
        let hash = hash_stack(&self.scratch);
        self.stacks[shard_of(hash)].add(&self.scratch, hash, value, base_value);
    }

    /// Flat and cum of the stack in `scratch`, sample by sample.
    fn add_sums(&mut self, value: i64, group: Option<usize>) {
        self.sample_serial = self.sample_serial.wrapping_add(1);
        if self.sample_serial == 0 {
            self.seen.fill(0);
            self.sample_serial = 1;
        }
        for &node in &self.scratch {
            let seen = &mut self.seen[node as usize];
            if *seen != self.sample_serial {
                *seen = self.sample_serial;
                self.cum[node as usize] = self.cum[node as usize].wrapping_add(value);
                if let Some(g) = group {
                    let cum = &mut self.groups[g].cum[node as usize];
                    *cum = cum.wrapping_add(value);
                }
            }
        }
        if let Some(&leaf) = self.scratch.last() {
            self.flat[leaf as usize] = self.flat[leaf as usize].wrapping_add(value);
            if let Some(g) = group {
                let flat = &mut self.groups[g].flat[leaf as usize];
                *flat = flat.wrapping_add(value);
            }
        }
    }

    /// The groups that kept samples, largest |total| first.
    fn group_totals(
        &mut self,
        group_values: &[String],
        names: &[String],
        inlining: &[(bool, bool)],
    ) -> Vec<GroupTotal> {
        let mut groups: Vec<GroupTotal> = std::mem::take(&mut self.groups)
            .into_iter()
            .enumerate()
            .filter(|(_, g)| g.samples > 0)
            .map(|(id, g)| GroupTotal {
                value: group_name(id, group_values).to_string(),
                kept: g.kept,
                samples: g.samples,
                functions: (0..g.flat.len())
                    .filter(|&i| g.flat[i] != 0 || g.cum[i] != 0)
                    .map(|i| FunctionTotal {
                        name: names[i].clone(),
                        flat: g.flat[i],
                        cum: g.cum[i],
                        inlining: Inlining::from_flags(inlining[i]),
                    })
                    .collect(),
            })
            .collect();
        groups.sort_by(|a, b| {
            b.kept
                .unsigned_abs()
                .cmp(&a.kept.unsigned_abs())
                .then_with(|| a.value.cmp(&b.value))
        });
        groups
    }

    /// Sums partials (the running one of earlier batches first, then the
    /// workers'), each added into the largest.
    fn merge_all(partials: Vec<Partial>) -> Partial {
        let mut partials = partials.into_iter();
        let mut out = partials.next().expect("at least one partial");
        for p in partials {
            out.absorb(p);
        }
        out
    }

    /// Adds `other`'s sums to this one's; stack shards in parallel, each
    /// smaller table inserted into the larger.
    fn absorb(&mut self, mut other: Partial) {
        if self.stack_count() < other.stack_count() {
            std::mem::swap(self, &mut other);
        }
        add_into(&mut self.flat, &other.flat);
        add_into(&mut self.cum, &other.cum);
        if self.seen.len() < self.flat.len() {
            self.seen.resize(self.flat.len(), 0);
        }
        self.total = self.total.wrapping_add(other.total);
        self.diff_base_total = self.diff_base_total.wrapping_add(other.diff_base_total);
        self.diff_base_samples += other.diff_base_samples;
        self.kept = self.kept.wrapping_add(other.kept);
        self.samples += other.samples;
        self.samples_kept += other.samples_kept;
        match (&mut self.diff_units, other.diff_units.take()) {
            (Some(mine), Some(mut theirs)) => {
                if mine.len() < theirs.len() {
                    std::mem::swap(mine, &mut theirs);
                }
                for (stack, value) in theirs {
                    let entry = mine.entry(stack).or_insert(0);
                    *entry = entry.wrapping_add(value);
                }
            }
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        for (mine, theirs) in self
            .groups
            .iter_mut()
            .zip(std::mem::take(&mut other.groups))
        {
            mine.add(theirs);
        }
        let sets = vec![std::mem::take(&mut self.stacks), other.stacks];
        self.stacks = merge_sharded(sets);
    }

    fn stack_count(&self) -> usize {
        self.stacks.iter().map(StackTable::len).sum()
    }
}
