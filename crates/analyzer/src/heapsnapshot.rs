//! V8 heap snapshots (`.heapsnapshot`): the object graph of a Node.js (or
//! Chrome, Bun) heap, read natively and reported as DevTools' Summary,
//! Retainers and Comparison views and memlab's leak detection report it.
//!
//! A snapshot is one JSON object: `snapshot.meta` names the fields of the
//! flat `nodes` and `edges` integer arrays and the type names their `type`
//! fields index; `strings` holds every name. [`parse`] reads it into
//! columns without building a JSON document (the integer arrays are
//! tokenized in parallel chunks); [`dominators`] computes the dominator
//! tree and retained sizes with memlab's edge rules (memlab is the
//! reference: `crates/analyzer/tests/node_heapsnapshot.rs` compares every
//! fixture with it); [`analysis`] derives the summary by constructor, the
//! largest objects and their retaining paths, duplicated strings and the
//! largest collections; [`diff`] finds what is new since one or two earlier
//! snapshots; [`report`] renders it all as text, JSON or Markdown, and the
//! dominator tree as a flamegraph.
//!
//! **Memory.** The input bytes (mapped or inflated) stay while the columns
//! are built: 20 bytes per node and 12 per edge, then 4 per node and per
//! edge for the retainers and about 40 per node for the dominator pass
//! (freed before the reports). Every array is sized from what was counted
//! in the input, so a hostile file cannot ask for more than a small
//! multiple of its own size. Numbers over 2^32 − 1 are refused.

pub(crate) mod analysis;
pub(crate) mod diff;
pub(crate) mod dominators;
pub(crate) mod parse;
pub(crate) mod report;

use std::fmt;

/// Why a heap snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapSnapshotError {
    /// Not JSON, or JSON cut short or malformed where the reader looked.
    Json(String),
    /// `snapshot.meta` lacks a field the analysis needs, or is malformed.
    Meta(String),
    /// A required top-level key (`nodes`, `edges`, `strings`) is missing.
    Missing(&'static str),
    /// The arrays disagree with `meta` or with each other: a count that is
    /// not a multiple of the field count, edge counts that do not add up,
    /// an edge to a node that does not exist, a type or string index out
    /// of range.
    Shape(String),
}

impl fmt::Display for HeapSnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapSnapshotError::Json(what) => write!(f, "{what}"),
            HeapSnapshotError::Meta(what) => write!(f, "bad snapshot.meta: {what}"),
            HeapSnapshotError::Missing(key) => write!(f, "no `{key}` array"),
            HeapSnapshotError::Shape(what) => write!(f, "{what}"),
        }
    }
}

use std::io::Write;

use firewatch_profile::ProfileData;
use rayon::prelude::*;

use crate::driver::{Request, Summary, Timings, Warning};
use crate::error::{Error, Result};
use crate::input::InputFormat;
use crate::ReportFormat;
use analysis::Analyzed;

/// Whether `bytes` start as V8 writes a snapshot: `{"snapshot":{"meta"`,
/// white space allowed between the tokens.
pub(crate) fn starts_like_snapshot(bytes: &[u8]) -> bool {
    let mut rest = crate::input::node::json::strip_bom(bytes);
    for token in [&b"{"[..], b"\"snapshot\"", b":", b"{", b"\"meta\""] {
        rest = rest.trim_ascii_start();
        match rest.strip_prefix(token) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    true
}

fn invalid(data: &ProfileData, error: HeapSnapshotError) -> Error {
    Error::HeapSnapshot {
        path: data.path().to_path_buf(),
        error,
    }
}

/// Reads one snapshot's bytes.
pub(crate) fn read(data: &ProfileData) -> Result<parse::Snapshot> {
    parse::parse(data.bytes()).map_err(|e| invalid(data, e))
}

/// The analysis of `firewatch analyze` when its inputs are heap snapshots:
/// `data` holds the profiles then the bases, as the request lists them.
pub(crate) fn analyze(
    request: &Request,
    data: Vec<ProfileData>,
    formats: &[InputFormat],
    timings: &mut Timings,
) -> Result<(String, Summary)> {
    let profiles = request.profiles.len();
    let refuse = |data: &ProfileData, reason: String| Error::UnknownFormat {
        path: data.path().to_path_buf(),
        reason,
    };
    if let Some(i) = formats
        .iter()
        .position(|&f| f != InputFormat::NodeHeapSnapshot)
    {
        return Err(refuse(
            &data[i],
            format!(
                "a {} cannot be analyzed with a heap snapshot (snapshots are compared only with other snapshots)",
                formats[i]
            ),
        ));
    }
    if profiles != 1 || request.base.len() > 2 {
        return Err(refuse(
            &data[0],
            "heap snapshots are analyzed one at a time, with at most two --base snapshots".into(),
        ));
    }
    let snapshots: Vec<parse::Snapshot> = data.par_iter().map(read).collect::<Result<_>>()?;
    let names: Vec<String> = data
        .iter()
        .map(|d| d.path().display().to_string())
        .collect();
    drop(data);
    timings.mark("parse heap snapshots");
    let mut snapshots = snapshots.into_iter();
    let target = snapshots.next().expect("one profile");
    let bases: Vec<parse::Snapshot> = snapshots.collect();
    let mut warnings = Vec::new();
    let same: Vec<bool> = bases
        .par_iter()
        .map(|b| diff::same_process(b, &target))
        .collect();
    let analyzed = Analyzed::new(target);
    timings.mark("dominators and retaining paths");
    let limit = if request.limits.top == 0 {
        usize::MAX
    } else {
        request.limits.top
    };
    let diff = if bases.is_empty() {
        None
    } else if same.iter().all(|&s| s) {
        let ids: Vec<Vec<u32>> = bases.par_iter().map(diff::ids).collect();
        drop(bases);
        Some(diff::diff(&analyzed, &ids, limit))
    } else {
        let other = same.iter().position(|&s| !s).unwrap_or(0);
        warnings.push(Warning::DifferentProcesses {
            base: names[1 + other].clone(),
        });
        let base = Analyzed::new(bases.into_iter().nth(other).expect("a base"));
        Some(diff::constructor_counts(&base, &analyzed, limit))
    };
    let heap = report::HeapReport::new(
        &analyzed,
        names[0].clone(),
        names[1..].to_vec(),
        request.limits.top,
        diff,
    );
    if let Some(path) = &request.flamegraph {
        let lines = report::folded_dominators(&analyzed);
        let mut file = std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .map_err(|error| Error::Create {
                path: path.clone(),
                error,
            })?;
        let mut options = inferno::flamegraph::Options::default();
        options.title =
            crate::flamegraph::xml_safe(&format!("Dominator tree by retained size: {}", names[0]))
                .into_owned();
        options.count_name = "bytes".into();
        options.deterministic = true;
        options.colors =
            inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut file)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|()| file.flush())
            .map_err(|error| Error::Write {
                path: path.clone(),
                error,
            })?;
    }
    let rendered = match request.format {
        ReportFormat::Text => report::render_text(&heap),
        ReportFormat::Json => report::render_json(&heap),
        ReportFormat::Markdown => report::render_markdown(&heap),
    };
    timings.mark("report");
    let summary = Summary {
        sample_type: crate::aggregate::SampleType {
            r#type: "retained".into(),
            unit: "bytes".into(),
        },
        total: heap.total_size.min(i64::MAX as u64) as i64,
        kept: heap.total_size.min(i64::MAX as u64) as i64,
        samples: heap.node_count,
        samples_kept: heap.node_count,
        functions: heap.constructor_count as usize,
        warnings,
        timings: std::mem::take(&mut timings.phases),
    };
    Ok((rendered, summary))
}
