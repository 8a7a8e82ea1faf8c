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

use firewatch_profile::{
    prune_start, FramePruner, LocationMatch, LocationPrune, NameFilter, ProfileView, SampleBlock,
    SampleIndex,
};
use rayon::prelude::*;
use regex::Regex;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::stacks::{hash_stack, merge_sharded, shard_of, StackTable, SHARDS};
use crate::tags::{plan_groups, InputGroups, InputTags, TagFilter};

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
    sample_type: SampleType,
    names: Vec<String>,
    inlining: Vec<(bool, bool)>,
    plans: Vec<Plan>,
    has_base: bool,
    group_by: Option<String>,
    group_names: Vec<String>,
    keep_plans: bool,
}

/// The first step of [`aggregate`]: checks the sample types and plans every
/// input's locations.
pub fn prepare(inputs: &[Input], options: &Options) -> Result<Prepared> {
    let first = inputs.first().expect("at least one input");
    let first_index = first
        .view
        .sample_index(&options.sample_index)
        .map_err(|error| Error::SampleType {
            path: first.path.clone(),
            error,
        })?;
    let (type_name, unit) = first.view.sample_type_names()[first_index];
    let sample_type = SampleType {
        r#type: type_name.to_string(),
        unit: unit.to_string(),
    };

    // Most frames are functions: size the tables for them up front.
    let functions: usize = inputs.iter().map(|i| i.view.functions().len() + 1).sum();
    let mut names: Vec<String> = Vec::with_capacity(functions);
    let mut inlining: Vec<(bool, bool)> = Vec::new();
    let mut keys: FxHashMap<FrameKey, u32> =
        FxHashMap::with_capacity_and_hasher(functions, Default::default());
    let mut plans = Vec::with_capacity(inputs.len());
    let filter = NameFilter {
        focus: options.focus.clone(),
        ignore: options.ignore.clone(),
        ..NameFilter::default()
    };
    for input in inputs {
        let value_index = input
            .view
            .find_sample_type(&sample_type.r#type, &sample_type.unit)
            .map_err(|reason| Error::Incompatible {
                path: input.path.clone(),
                first: first.path.clone(),
                reason,
            })?;
        plans.push(plan(
            input,
            value_index,
            options.all_frames,
            &filter,
            &mut keys,
            &mut names,
            &mut inlining,
        )?);
    }
    drop(keys);
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
    let mut group_names = Vec::new();
    if let Some(key) = &options.group_by {
        let views: Vec<_> = inputs
            .iter()
            .zip(&plans)
            .map(|(i, p)| (i.view, p.value_index))
            .collect();
        let (names, groups) = plan_groups(&views, key);
        group_names = names;
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
    let has_base = inputs.iter().any(|i| i.base);
    Ok(Prepared {
        sample_type,
        names,
        inlining,
        plans,
        has_base,
        group_by: options.group_by.clone(),
        group_names,
        keep_plans: options.label_hot_paths,
    })
}

/// The second step of [`aggregate`]: the sample pass, in parallel.
/// `blocks[i]` are the sample blocks of the `i`th input given to [`prepare`].
pub fn aggregate_samples(prepared: Prepared, blocks: &[&[SampleBlock]]) -> Aggregate {
    let Prepared {
        sample_type,
        names,
        inlining,
        plans,
        has_base,
        group_by,
        group_names,
        keep_plans,
    } = prepared;
    let tasks: Vec<(usize, &SampleBlock)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(i, blocks)| blocks.iter().map(move |b| (i, b)))
        .collect();
    let node_count = names.len();
    let track_unfiltered = has_base && plans.iter().any(|p| p.filter.is_some() || p.tags.is_some());
    let group_count = group_names.len();
    // One partial sum per worker thread (not per rayon split: merging
    // millions of stacks is the expensive part), then the stack tables are
    // merged shard by shard in parallel.
    // Small profiles get one worker: a second one would only duplicate the
    // stack tables it then has to merge.
    let samples: usize = tasks.iter().map(|(_, b)| b.len()).sum();
    let workers = rayon::current_num_threads()
        .min(samples / SAMPLES_PER_WORKER)
        .clamp(1, tasks.len().max(1));
    let per_worker = tasks.len().div_ceil(workers).max(1);
    let partials: Vec<Partial> = tasks
        .par_chunks(per_worker)
        .map(|group| {
            let mut partial = Partial::new(node_count, track_unfiltered, group_count);
            // Room for every sample being a distinct stack, twice an even
            // share per shard (hash skew); inlined lines add frames.
            let samples: usize = group.iter().map(|(_, b)| b.len()).sum();
            let refs: usize = group.iter().map(|(_, b)| b.location_count()).sum();
            let (per_shard_stacks, per_shard_frames) = (samples * 2 / SHARDS, refs * 3 / SHARDS);
            partial.stacks = (0..SHARDS)
                .map(|_| StackTable::with_capacity(per_shard_stacks, per_shard_frames))
                .collect();
            for &(i, block) in group {
                partial.add_block(&plans[i], block);
            }
            partial
        })
        .collect();
    let mut partial = Partial::merge_all(partials, node_count, track_unfiltered, group_count);
    // pprof merges a base into the profile sample by sample, so identical
    // stacks cancel before it sums |values|: do the same with our stacks.
    // Sums wrap like Go's int64 (pprof's), here as everywhere else.
    let total = match (&partial.unfiltered, has_base) {
        (Some(unfiltered), _) => unfiltered
            .values()
            .map(|v| v.wrapping_abs())
            .fold(0i64, i64::wrapping_add),
        (None, true) => partial
            .stacks
            .iter()
            .flat_map(|s| s.entries())
            .map(|e| e.value.wrapping_abs())
            .fold(0i64, i64::wrapping_add),
        (None, false) => partial.total,
    };
    // pprof: "If any samples have label indicating they belong to the diff
    // base, then the total will only include samples with that label."
    let total = if partial.diff_base_total > 0 {
        partial.diff_base_total
    } else {
        total
    };

    // Free what the reports do not need before building their inputs.
    drop(std::mem::take(&mut partial.seen));
    drop(std::mem::take(&mut partial.scratch));
    let groups = partial.group_totals(&group_names, &names, &inlining);
    let functions = names
        .into_iter()
        .zip(inlining)
        .enumerate()
        .map(|(i, (name, (inline, not_inline)))| FunctionTotal {
            name,
            flat: partial.flat.get(i).copied().unwrap_or(0),
            cum: partial.cum.get(i).copied().unwrap_or(0),
            inlining: Inlining::from_flags((inline, not_inline)),
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
        group_by,
        groups,
        plans: keep_plans.then_some(plans),
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

fn plan<'s>(
    input: &'s Input,
    value_index: usize,
    all_frames: bool,
    filter: &NameFilter,
    keys: &mut FxHashMap<FrameKey<'s>, u32>,
    names: &mut Vec<String>,
    inlining: &mut Vec<(bool, bool)>,
) -> Result<Plan> {
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

    let mut intern = |key: FrameKey<'s>, display: &dyn Fn() -> String| -> u32 {
        *keys.entry(key).or_insert_with(|| {
            names.push(bounded_name(display()));
            (names.len() - 1) as u32
        })
    };
    let object = |loc: &firewatch_profile::LocationView| -> &'s str {
        loc.mapping
            .map_or("", |m| view.string(view.mappings()[m as usize].filename))
    };
    // (node, entered inline) for every frame, applied once interning is done.
    let mut entries: Vec<(u32, bool)> = Vec::new();
    let mut frame_start = Vec::with_capacity(view.locations().len() + 1);
    let mut frames = Vec::with_capacity(view.lines().len() + 16);
    frame_start.push(0u32);
    for (l, loc) in view.locations().iter().enumerate() {
        let lines = kept_lines(view, prune.as_deref(), l);
        let first_frame = frames.len();
        if lines.is_empty() {
            let obj = object(loc);
            frames.push(intern(FrameKey::Object(obj, 0), &|| object_name(obj)));
        }
        // Callers first: the last line is the out-of-line function.
        for line in lines.iter().rev() {
            let function = &view.functions()[line.function as usize];
            let name = view.string(function.name);
            let node = if name.is_empty() {
                let obj = object(loc);
                intern(FrameKey::Object(obj, function.start_line), &|| {
                    object_name(obj)
                })
            } else {
                intern(FrameKey::Function(name), &|| name.to_string())
            };
            frames.push(node);
        }
        // Inlined frames are entered through an inline edge; the location's
        // outermost frame through a call.
        for (k, &node) in frames[first_frame..].iter().enumerate() {
            if k == 0 {
                entries.push((node, false));
            } else if frames[first_frame + k - 1] != node {
                entries.push((node, true));
            }
        }
        frame_start
            .push(u32::try_from(frames.len()).expect("frames fit in u32: bounded by input size"));
    }

    inlining.resize(names.len(), (false, false));
    for (node, inline) in entries {
        let flags = &mut inlining[node as usize];
        if inline {
            flags.0 = true;
        } else {
            flags.1 = true;
        }
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

    Ok(Plan {
        value_index,
        sign: if input.base { -1 } else { 1 },
        frame_start,
        frames,
        prune,
        filter,
        diff_base_label: diff_base_label(view),
        tags: None,
        groups: None,
        label_strings: None,
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
    for &l in locations.iter().rev() {
        let (start, end) = (
            plan.frame_start[l as usize] as usize,
            plan.frame_start[l as usize + 1] as usize,
        );
        scratch.extend_from_slice(&plan.frames[start..end]);
    }
}

/// One worker's share of the sums.
struct Partial {
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
    /// For a difference with filters: every (unfiltered) stack's net value,
    /// from which pprof's total is computed.
    unfiltered: Option<FxHashMap<Box<[u32]>, i64>>,
    kept: i64,
    samples: u64,
    samples_kept: u64,
    /// Per `--group-by` group; a group's tables are allocated at its first sample.
    groups: Vec<GroupPartial>,
}

#[derive(Default)]
struct GroupPartial {
    flat: Vec<i64>,
    cum: Vec<i64>,
    kept: i64,
    samples: u64,
}

impl GroupPartial {
    fn add(&mut self, other: GroupPartial) {
        if other.flat.is_empty() {
            return;
        }
        if self.flat.is_empty() {
            *self = other;
            return;
        }
        for (a, b) in self.flat.iter_mut().zip(&other.flat) {
            *a = a.wrapping_add(*b);
        }
        for (a, b) in self.cum.iter_mut().zip(&other.cum) {
            *a = a.wrapping_add(*b);
        }
        self.kept = self.kept.wrapping_add(other.kept);
        self.samples += other.samples;
    }
}

impl Partial {
    fn new(nodes: usize, track_unfiltered: bool, groups: usize) -> Partial {
        Partial {
            flat: vec![0; nodes],
            cum: vec![0; nodes],
            seen: vec![0; nodes],
            sample_serial: 0,
            stacks: (0..SHARDS).map(|_| StackTable::default()).collect(),
            scratch: Vec::with_capacity(256),
            total: 0,
            diff_base_total: 0,
            diff_base_samples: 0,
            unfiltered: track_unfiltered.then(FxHashMap::default),
            kept: 0,
            samples: 0,
            samples_kept: 0,
            groups: (0..groups).map(|_| GroupPartial::default()).collect(),
        }
    }

    fn add_block(&mut self, plan: &Plan, block: &SampleBlock) {
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
            let mut locations = sample.locations;
            if let Some(prune) = &plan.prune {
                locations = &locations[prune_start(locations, prune)..];
            }
            // The stack is built once per sample: here when the unfiltered
            // total needs it, else in add_stack for kept samples only.
            let filled = self.unfiltered.is_some();
            if let Some(unfiltered) = &mut self.unfiltered {
                fill_stack(&mut self.scratch, plan, locations);
                let entry = unfiltered
                    .entry(self.scratch.as_slice().into())
                    .or_insert(0);
                *entry = entry.wrapping_add(value);
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
            if !filled {
                fill_stack(&mut self.scratch, plan, locations);
            }
            let group = plan.groups.as_ref().map(|g| {
                let g = g.group_of(sample.labels) as usize;
                let nodes = self.flat.len();
                let group = &mut self.groups[g];
                if group.flat.is_empty() {
                    group.flat = vec![0; nodes];
                    group.cum = vec![0; nodes];
                }
                group.kept = group.kept.wrapping_add(value);
                group.samples += 1;
                g
            });
            self.add_stack(plan.sign < 0 || diff_base, value, group);
        }
    }

    /// Adds the stack in `scratch` (filled by the caller); a `base`
    /// sample's value is already negative.
    #[inline]
    fn add_stack(&mut self, base: bool, value: i64, group: Option<usize>) {
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
        let (value, base) = if base { (value, -value) } else { (value, 0) };
        let hash = hash_stack(&self.scratch);
        self.stacks[shard_of(hash)].add(&self.scratch, hash, value, base);
    }

    /// The groups that kept samples, largest |total| first.
    fn group_totals(
        &mut self,
        group_names: &[String],
        names: &[String],
        inlining: &[(bool, bool)],
    ) -> Vec<GroupTotal> {
        let mut groups: Vec<GroupTotal> = std::mem::take(&mut self.groups)
            .into_iter()
            .zip(group_names)
            .filter(|(g, _)| g.samples > 0)
            .map(|(g, value)| GroupTotal {
                value: value.clone(),
                kept: g.kept,
                samples: g.samples,
                functions: (0..names.len())
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

    /// Sums the workers' partials; stack shards are merged in parallel.
    fn merge_all(
        mut partials: Vec<Partial>,
        nodes: usize,
        track_unfiltered: bool,
        groups: usize,
    ) -> Partial {
        if partials.len() == 1 {
            return partials.pop().expect("one partial");
        }
        let mut out = Partial::new(nodes, track_unfiltered, groups);
        let mut sets = Vec::new();
        for mut p in partials {
            for (a, b) in out.flat.iter_mut().zip(&p.flat) {
                *a = a.wrapping_add(*b);
            }
            for (a, b) in out.cum.iter_mut().zip(&p.cum) {
                *a = a.wrapping_add(*b);
            }
            out.total = out.total.wrapping_add(p.total);
            out.diff_base_total = out.diff_base_total.wrapping_add(p.diff_base_total);
            out.diff_base_samples += p.diff_base_samples;
            out.kept = out.kept.wrapping_add(p.kept);
            out.samples += p.samples;
            out.samples_kept += p.samples_kept;
            if let (Some(mine), Some(theirs)) = (&mut out.unfiltered, p.unfiltered.take()) {
                for (stack, value) in theirs {
                    let entry = mine.entry(stack).or_insert(0);
                    *entry = entry.wrapping_add(value);
                }
            }
            for (mine, theirs) in out.groups.iter_mut().zip(std::mem::take(&mut p.groups)) {
                mine.add(theirs);
            }
            sets.push(p.stacks);
        }
        out.stacks = merge_sharded(sets);
        out
    }
}
