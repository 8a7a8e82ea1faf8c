//! The JSON report, schema 1 (`docs/analyze-reference.md` documents it).

use serde::Serialize;

use super::{DominantLabel, Report};
use crate::aggregate::SampleType;

#[derive(Serialize)]
struct Json<'a> {
    schema: u32,
    inputs: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    base: &'a [String],
    /// `pprof::base=true` when samples so labelled are the base (a
    /// profile saved by `pprof -diff_base`).
    #[serde(skip_serializing_if = "Option::is_none")]
    base_label: Option<String>,
    sample_type: &'a SampleType,
    total: i64,
    functions: Vec<Function<'a>>,
    hot_paths: Vec<HotPath<'a>>,
    /// With `--group-by`: the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    group_by: Option<&'a str>,
    /// With `--group-by`: one entry per value, largest |total| first.
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<Group<'a>>>,
}

#[derive(Serialize)]
struct Group<'a> {
    value: &'a str,
    total: i64,
    samples: u64,
    functions: Vec<Function<'a>>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    flat: i64,
    cum: i64,
}

#[derive(Serialize)]
struct HotPath<'a> {
    frames: Vec<&'a str>,
    /// Per frame: it stands for a run of direct recursion (present only
    /// when some frame does).
    #[serde(skip_serializing_if = "Option::is_none")]
    recursive: Option<&'a [bool]>,
    value: i64,
    /// Label values carried by most of the path's value (≥ 80%).
    #[serde(skip_serializing_if = "<[DominantLabel]>::is_empty")]
    labels: &'a [DominantLabel],
}

pub fn render_json<'a>(report: &Report<'a>) -> String {
    let function = |f: &&'a crate::aggregate::FunctionTotal| Function {
        name: &f.name,
        flat: f.flat,
        cum: f.cum,
    };
    let json = Json {
        schema: 1,
        inputs: &report.meta.inputs,
        base: &report.meta.base,
        base_label: report.meta.base_labelled.then(|| {
            let (key, value) = crate::aggregate::DIFF_BASE_LABEL;
            format!("{key}={value}")
        }),
        sample_type: &report.aggregate.sample_type,
        total: report.aggregate.total,
        functions: report
            .functions
            .iter()
            .map(|f| Function {
                name: &f.name,
                flat: f.flat,
                cum: f.cum,
            })
            .collect(),
        hot_paths: report
            .hot_paths
            .iter()
            .map(|s| HotPath {
                frames: report.frame_names(&s.frames),
                recursive: s
                    .recursive
                    .contains(&true)
                    .then_some(s.recursive.as_slice()),
                value: s.value,
                labels: &s.labels,
            })
            .collect(),
        group_by: report.aggregate.group_by.as_deref(),
        groups: report.aggregate.group_by.as_ref().map(|_| {
            report
                .groups
                .iter()
                .map(|g| Group {
                    value: &g.group.value,
                    total: g.group.kept,
                    samples: g.group.samples,
                    functions: g.functions.iter().map(function).collect(),
                })
                .collect()
        }),
    };
    let mut out = serde_json::to_string_pretty(&json).expect("a report serializes");
    out.push('\n');
    out
}
