//! Reports built from an [`Aggregate`]: the ranked function table, the hot
//! paths, and the metadata header, rendered as text, JSON or Markdown.

mod json;
mod markdown;
mod text;

pub use json::render_json;
pub use markdown::render_markdown;
pub use text::render_text;

use firewatch_profile::ProfileView;

use std::borrow::Cow;

use rayon::prelude::*;

use crate::aggregate::{Aggregate, FunctionTotal, GroupTotal, StackTotal};
use crate::stacks::{hash_stack, merge_sharded, shard_of, StackTable, SHARDS};

/// A heavy call path: a distinct stack, with direct recursion folded (so
/// `fib` 16 and 17 deep are one path), root first.
#[derive(Clone, Debug)]
pub struct HotPath<'a> {
    pub frames: Cow<'a, [u32]>,
    /// Per frame: it stood for a run of recursive calls.
    pub recursive: Vec<bool>,
    pub value: i64,
    pub base: i64,
    /// Labels that dominate the path: one value of a key carried by at
    /// least [`DOMINANT_SHARE`] of the path's value (filled only when the
    /// report asks for them, see [`Report::label_hot_paths`]).
    pub labels: Vec<DominantLabel>,
}

/// A label value that most of a hot path's samples carry.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DominantLabel {
    pub key: String,
    pub value: String,
    /// Its share of the path's value, in (0, 1].
    pub share: f64,
}

/// The share of a hot path's value one label value must carry to be shown
/// with the path.
pub const DOMINANT_SHARE: f64 = 0.8;

/// Marks a folded frame in a folded stack (node ids are far below 2^31).
const RECURSIVE: u32 = 1 << 31;

/// `frames` with each run of one frame (direct recursion) folded into one
/// frame marked [`RECURSIVE`], into `out`.
pub(crate) fn fold_recursion(frames: &[u32], out: &mut Vec<u32>) {
    out.clear();
    for (i, &f) in frames.iter().enumerate() {
        match out.last_mut() {
            Some(last) if i > 0 && *last & !RECURSIVE == f => *last |= RECURSIVE,
            _ => out.push(f),
        }
    }
}

/// The `limit` heaviest paths by |value|.
fn hot_paths(aggregate: &Aggregate, limit: usize) -> Vec<HotPath<'static>> {
    if limit == 0 {
        return Vec::new();
    }
    let recursive = |frames: &[u32]| frames.windows(2).any(|w| w[0] == w[1]);
    // Fold the stacks that recurse directly, in parallel, into tables sharded
    // by the folded stack's hash, then merge shard by shard. A folded stack
    // carries RECURSIVE marks, so it never equals a plain stack: plain stacks
    // stay as they are.
    // One group of input tables per worker, so there are only
    // workers × SHARDS output tables to merge.
    let tables = aggregate.stack_tables();
    let per_worker = tables
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    // Each stack is looked at once: a plain one becomes a candidate as it
    // is, a recursive one is folded. A candidate carries its stack's hash,
    // which orders stacks of equal value (most of a large profile's are
    // one or two samples) without reading their frames.
    type Candidate<'s> = (&'s [u32], i64, i64, u64);
    let by_weight = |a: &Candidate, b: &Candidate| {
        b.1.unsigned_abs()
            .cmp(&a.1.unsigned_abs())
            .then_with(|| a.3.cmp(&b.3))
            .then_with(|| a.0.cmp(b.0))
    };
    // Keeps the `limit` best of `candidates`.
    let keep_best = |candidates: &mut Vec<Candidate>| {
        if candidates.len() > limit {
            candidates.select_nth_unstable_by(limit - 1, by_weight);
            candidates.truncate(limit);
        }
    };
    let parts: Vec<(Vec<StackTable>, Vec<Candidate>)> = tables
        .par_chunks(per_worker)
        .map(|group| {
            let mut out: Vec<StackTable> = Vec::new();
            // The best plain stacks so far: trimmed to `limit` whenever
            // twice that many gather, so that a million stacks are never
            // all copied.
            let mut plain: Vec<Candidate> = Vec::with_capacity(limit.min(4096) * 2);
            let mut scratch = Vec::new();
            let entries = group
                .iter()
                .flat_map(|t| t.entries().iter().map(move |e| (t.frames(e), e)));
            for (frames, e) in entries.filter(|(_, e)| e.value != 0 || e.base != 0) {
                if !recursive(frames) {
                    if e.value != 0 {
                        plain.push((frames, e.value, e.base, e.hash()));
                        if plain.len() >= limit.saturating_mul(2) {
                            keep_best(&mut plain);
                        }
                    }
                    continue;
                }
                if out.is_empty() {
                    out = (0..SHARDS).map(|_| StackTable::default()).collect();
                }
                fold_recursion(frames, &mut scratch);
                let h = hash_stack(&scratch);
                out[shard_of(h)].add(&scratch, h, e.value, e.base);
            }
            keep_best(&mut plain);
            (out, plain)
        })
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut folded_sets = Vec::new();
    for (set, plain) in parts {
        candidates.extend(plain);
        if !set.is_empty() {
            folded_sets.push(set);
        }
    }
    let folded = if folded_sets.is_empty() {
        Vec::new()
    } else {
        merge_sharded(folded_sets)
    };
    // Candidates borrow their frames; only the winners are copied.
    candidates.extend(
        folded
            .iter()
            .flat_map(|t| {
                t.entries()
                    .iter()
                    .map(move |e| (t.frames(e), e.value, e.base, e.hash()))
            })
            .filter(|c| c.1 != 0),
    );

    keep_best(&mut candidates);
    candidates.sort_by(by_weight);
    candidates
        .into_iter()
        .map(|(frames, value, base, _)| HotPath {
            frames: Cow::Owned(frames.iter().map(|f| f & !RECURSIVE).collect()),
            recursive: frames.iter().map(|f| f & RECURSIVE != 0).collect(),
            value,
            base,
            labels: Vec::new(),
        })
        .collect()
}

/// Profile-level facts for the report header (from the first input).
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub inputs: Vec<String>,
    pub base: Vec<String>,
    /// The inputs carry their own base: samples labelled `pprof::base`
    /// (a profile saved by `pprof -diff_base`).
    pub base_labelled: bool,
    /// Basename of the main binary (`mapping[0]`).
    pub file: Option<String>,
    pub build_id: Option<String>,
    pub comments: Vec<String>,
    pub doc_url: Option<String>,
    pub time_nanos: i64,
    /// Summed over the inputs, as pprof does when merging.
    pub duration_nanos: i64,
    /// Filters in effect, as `name=value`.
    pub filters: Vec<String>,
    /// Where a flamegraph was written, for a link in Markdown.
    pub flamegraph: Option<String>,
}

impl Metadata {
    pub fn from_views(inputs: &[(&str, &ProfileView, bool)]) -> Metadata {
        let mut meta = Metadata::default();
        meta.add_views(inputs);
        meta
    }

    /// Adds the facts of more inputs (a later batch): the first input of
    /// all names the binary.
    pub fn add_views(&mut self, inputs: &[(&str, &ProfileView, bool)]) {
        let meta = self;
        for (name, view, base) in inputs {
            let first = meta.inputs.is_empty() && meta.base.is_empty();
            if *base {
                meta.base.push(name.to_string());
                continue;
            }
            meta.inputs.push(name.to_string());
            meta.duration_nanos = meta.duration_nanos.wrapping_add(view.duration_nanos());
            if view.time_nanos() != 0
                && (meta.time_nanos == 0 || view.time_nanos() < meta.time_nanos)
            {
                meta.time_nanos = view.time_nanos();
            }
            for &c in view.comments() {
                let c = view.string(c).to_string();
                if !meta.comments.contains(&c) {
                    meta.comments.push(c);
                }
            }
            if first {
                if let Some(m) = view.mappings().first() {
                    let file = view.string(m.filename);
                    if !file.is_empty() {
                        meta.file = Some(file.rsplit('/').next().unwrap_or(file).to_string());
                    }
                    let build_id = view.string(m.build_id);
                    if !build_id.is_empty() {
                        meta.build_id = Some(build_id.to_string());
                    }
                }
                let doc = view.string(view.doc_url());
                meta.doc_url = (!doc.is_empty()).then(|| doc.to_string());
            }
        }
    }
}

impl Metadata {
    /// What was subtracted, for titles and headers: the `--base` files,
    /// and the labelled samples of a `pprof -diff_base` profile.
    pub fn base_sources(&self) -> Vec<String> {
        let mut sources = self.base.clone();
        if self.base_labelled {
            let (key, value) = crate::aggregate::DIFF_BASE_LABEL;
            sources.push(format!("the samples labelled {key}={value}"));
        }
        sources
    }
}

/// What to show.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rows of the function table; 0 = all.
    pub top: usize,
    /// Hot paths to list.
    pub hot_paths: usize,
}

/// A report ready to render.
pub struct Report<'a> {
    pub meta: &'a Metadata,
    pub aggregate: &'a Aggregate,
    /// Functions with a value, ordered as pprof orders them.
    pub functions: Vec<&'a FunctionTotal>,
    /// How many functions carry a value (before `top`).
    pub function_count: usize,
    pub hot_paths: Vec<HotPath<'a>>,
    /// With `--group-by`: each group's heaviest functions.
    pub groups: Vec<GroupReport<'a>>,
}

/// One value of the `--group-by` key, ready to render.
pub struct GroupReport<'a> {
    pub group: &'a GroupTotal,
    /// The group's functions, ordered and cut as the main table.
    pub functions: Vec<&'a FunctionTotal>,
    /// How many functions carry a value in the group.
    pub function_count: usize,
}

/// Functions with a value, in pprof's `-top` order (|flat| desc, name asc,
/// |cum| desc), the first `top` (0 = all), and how many there were.
fn top_functions<'a>(
    all: impl Iterator<Item = &'a FunctionTotal>,
    top: usize,
) -> (Vec<&'a FunctionTotal>, usize) {
    let mut functions: Vec<&FunctionTotal> = all.filter(|f| f.flat != 0 || f.cum != 0).collect();
    let order = |a: &&FunctionTotal, b: &&FunctionTotal| {
        b.flat
            .unsigned_abs()
            .cmp(&a.flat.unsigned_abs())
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| b.cum.unsigned_abs().cmp(&a.cum.unsigned_abs()))
    };
    let count = functions.len();
    if top > 0 && functions.len() > top {
        // Only the shown rows need sorting.
        functions.select_nth_unstable_by(top - 1, order);
        functions.truncate(top);
    }
    functions.sort_unstable_by(order);
    (functions, count)
}

impl<'a> Report<'a> {
    pub fn new(meta: &'a Metadata, aggregate: &'a Aggregate, limits: Limits) -> Report<'a> {
        let (functions, function_count) = top_functions(aggregate.functions.iter(), limits.top);
        let hot_paths = hot_paths(aggregate, limits.hot_paths);
        let groups = aggregate
            .groups
            .iter()
            .map(|group| {
                let (functions, function_count) = top_functions(group.functions.iter(), limits.top);
                GroupReport {
                    group,
                    functions,
                    function_count,
                }
            })
            .collect();
        Report {
            meta,
            aggregate,
            functions,
            function_count,
            hot_paths,
            groups,
        }
    }

    /// Finds, for each hot path, the label values that dominate it, from
    /// the samples (`blocks[i]`: the sample blocks of the aggregate's
    /// input `i`). Needs [`Options::label_hot_paths`](crate::Options::label_hot_paths);
    /// differences are left alone (a share of a net change means little).
    pub fn label_hot_paths(&mut self, blocks: &[&[firewatch_profile::SampleBlock]]) {
        if self.aggregate.has_base || self.hot_paths.is_empty() {
            return;
        }
        let folded: Vec<Vec<u32>> = self
            .hot_paths
            .iter()
            .map(|p| {
                p.frames
                    .iter()
                    .zip(&p.recursive)
                    .map(|(&f, &r)| if r { f | RECURSIVE } else { f })
                    .collect()
            })
            .collect();
        let Some(sums) = self.aggregate.label_sums(blocks, &folded) else {
            return;
        };
        for (path, sums) in self.hot_paths.iter_mut().zip(sums) {
            if path.value <= 0 {
                continue;
            }
            // Per key, the value carrying the most.
            let mut best: std::collections::BTreeMap<&str, (&str, i64)> = Default::default();
            for ((key, value), &sum) in &sums {
                let entry = best.entry(key.as_str()).or_insert((value.as_str(), sum));
                if sum > entry.1 || (sum == entry.1 && value.as_str() < entry.0) {
                    *entry = (value.as_str(), sum);
                }
            }
            path.labels = best
                .into_iter()
                .map(|(key, (value, sum))| DominantLabel {
                    key: key.to_string(),
                    value: value.to_string(),
                    share: sum as f64 / path.value as f64,
                })
                .filter(|l| l.share >= DOMINANT_SHARE)
                .collect();
        }
    }

    /// Formats values as the function table shows them: one unit for the
    /// whole table, chosen as pprof chooses it.
    pub fn value_formatter(&self) -> impl Fn(i64) -> String + '_ {
        let sample_unit = self.aggregate.sample_type.unit.as_str();
        let shown = self.functions.iter().map(|f| (f.flat, f.cum));
        let unit = crate::units::table_unit(shown, self.aggregate.total, sample_unit);
        move |v| crate::units::scaled_label(v, sample_unit, &unit)
    }

    /// Formats a value shown on its own (a hot path, a growth, a group):
    /// in the unit that suits it, as pprof's `-traces` labels each sample,
    /// rather than the function table's, in which a hot path worth 0.08%
    /// of a profile of hours would read `0`.
    pub fn own_value_formatter(&self) -> impl Fn(i64) -> String + '_ {
        let sample_unit = self.aggregate.sample_type.unit.as_str();
        move |v| crate::units::scaled_label(v, sample_unit, "minimum")
    }

    /// The frame names of a stack, root first.
    pub fn frame_names(&self, frames: &[u32]) -> Vec<&'a str> {
        frames
            .iter()
            .map(|&f| self.aggregate.functions[f as usize].name.as_str())
            .collect()
    }

    /// A hot path for people: recursive frames marked, the middle of very
    /// deep paths elided to fit `max_frames`.
    pub fn readable_hot_path(&self, path: &HotPath, max_frames: usize) -> Vec<String> {
        let names = self.path_names(path);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        readable_path(&names, max_frames)
    }

    /// A hot path's frame names for people: recursive frames marked.
    pub fn path_names(&self, path: &HotPath) -> Vec<String> {
        path.frames
            .iter()
            .zip(&path.recursive)
            .map(|(&f, &r)| {
                let name = &self.aggregate.functions[f as usize].name;
                if r {
                    format!("{name} (recursive)")
                } else {
                    name.clone()
                }
            })
            .collect()
    }

    /// The functions whose flat value grew most (diffs only), each with the
    /// heaviest growing stack that ends in it.
    pub fn growth(&self, limit: usize) -> Vec<(&'a FunctionTotal, Option<StackTotal<'a>>)> {
        let mut grew: Vec<(usize, &FunctionTotal)> = self
            .aggregate
            .functions
            .iter()
            .enumerate()
            .filter(|(_, f)| f.flat > 0)
            .collect();
        grew.sort_by(|a, b| {
            b.1.flat
                .cmp(&a.1.flat)
                .then_with(|| a.1.name.cmp(&b.1.name))
        });
        grew.truncate(limit);
        grew.into_iter()
            .map(|(i, f)| {
                let path = self
                    .aggregate
                    .stacks()
                    .filter(|s| s.value > 0 && s.frames.last() == Some(&(i as u32)))
                    .max_by(|a, b| a.value.cmp(&b.value).then_with(|| b.frames.cmp(a.frames)));
                (f, path)
            })
            .collect()
    }
}

/// Collapses runs of one frame (recursion) into `name (recursive)`, as hot
/// paths show folded recursion, and elides the middle of very deep stacks,
/// for human-readable reports.
pub fn readable_path(names: &[&str], max_frames: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let mut j = i;
        while j < names.len() && names[j] == names[i] {
            j += 1;
        }
        out.push(if j - i > 1 {
            format!("{} (recursive)", names[i])
        } else {
            names[i].to_string()
        });
        i = j;
    }
    if out.len() > max_frames {
        let head = max_frames / 3;
        let tail = max_frames - head - 1;
        let hidden = out.len() - head - tail;
        let mut elided: Vec<String> = out[..head].to_vec();
        elided.push(format!("… {hidden} more frames …"));
        elided.extend_from_slice(&out[out.len() - tail..]);
        out = elided;
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for nanoseconds since the Unix epoch.
pub fn format_time(nanos: i64) -> String {
    let t = firewatch_profile::time::UtcTime::from_unix_seconds(nanos.div_euclid(1_000_000_000));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        // sample.cpu's time, which pprof prints as "Sep 29, 2017 at 8:57pm (UTC)".
        assert!(format_time(1_506_718_620_000_000_000).starts_with("2017-09-29 20:57"));
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_time(951_782_400_000_000_000),
            "2000-02-29 00:00:00 UTC"
        );
    }

    #[test]
    fn recursion_collapses_and_deep_stacks_elide() {
        let names = ["main", "fib", "fib", "fib", "leaf"];
        assert_eq!(
            readable_path(&names, 10),
            ["main", "fib (recursive)", "leaf"]
        );
        let deep: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
        let deep: Vec<&str> = deep.iter().map(String::as_str).collect();
        let out = readable_path(&deep, 12);
        assert_eq!(out.len(), 12);
        assert_eq!(out[0], "f0");
        assert!(out[4].contains("39 more frames"));
        assert_eq!(out[11], "f49");
    }
}
