//! The heap snapshot report: one structure, rendered as text, JSON (the
//! schema is in `docs/node.md`) or Markdown, and the dominator tree as
//! folded stacks for a flamegraph.

use std::fmt::Write as _;

use serde::Serialize;

use super::analysis::{
    class_summary, duplicated_strings, largest_collections, top_objects, Analyzed, ClassRow,
    CollectionRow, DuplicateString, ObjectRow, PathStep,
};
use super::diff::Diff;
use crate::units::{percentage, scaled_label};

#[derive(Serialize)]
pub(crate) struct HeapReport {
    pub schema: u32,
    pub kind: &'static str,
    pub input: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base: Vec<String>,
    pub node_count: u64,
    pub edge_count: u64,
    /// Sum of all nodes' self sizes (the root's retained size).
    pub total_size: u64,
    pub constructor_count: u64,
    pub constructors: Vec<ClassRow>,
    pub top_objects: Vec<ObjectRow>,
    pub duplicated_strings: Vec<DuplicateString>,
    pub largest_collections: Vec<CollectionRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
}

/// Rows shown when the request says 0 (all) for a table that could hold
/// millions of rows.
const ALL: usize = usize::MAX;

impl HeapReport {
    pub fn new(
        a: &Analyzed,
        input: String,
        base: Vec<String>,
        top: usize,
        diff: Option<Diff>,
    ) -> Self {
        let limit = if top == 0 { ALL } else { top };
        // Four independent scans of the graph.
        let ((mut constructors, top_objects), (duplicated_strings, largest_collections)) =
            rayon::join(
                || rayon::join(|| class_summary(a), || top_objects(a, limit)),
                || {
                    rayon::join(
                        || duplicated_strings(a, limit),
                        || largest_collections(a, limit),
                    )
                },
            );
        let constructor_count = constructors.len() as u64;
        constructors.truncate(limit);
        HeapReport {
            schema: 1,
            kind: "heapsnapshot",
            input,
            base,
            node_count: a.snapshot.node_count() as u64,
            edge_count: a.snapshot.edge_count() as u64,
            total_size: a.total_size(),
            constructor_count,
            constructors,
            top_objects,
            duplicated_strings,
            largest_collections,
            diff,
        }
    }
}

fn bytes(v: u64) -> String {
    scaled_label(v.min(i64::MAX as u64) as i64, "bytes", "auto")
}

fn pct(v: u64, total: u64) -> String {
    percentage(
        v.min(i64::MAX as u64) as i64,
        total.min(i64::MAX as u64) as i64,
    )
}

/// `global @6047 .server → Object @50665 .requestCache → Map @78537`:
/// the path from the root's first node, each node followed by the edge
/// that leaves it (`.name` for a property or variable, `[i]` for an
/// element).
pub(crate) fn path_line(path: &[PathStep]) -> String {
    let mut out = String::new();
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            if p.edge.starts_with('[') {
                let _ = write!(out, " {} → ", p.edge);
            } else if !p.edge.is_empty() && p.edge.bytes().all(|b| b.is_ascii_digit()) {
                let _ = write!(out, " [{}] → ", p.edge);
            } else {
                let _ = write!(out, " .{} → ", p.edge);
            }
        }
        let _ = write!(out, "{} @{}", p.node, p.id);
    }
    out
}

pub(crate) fn render_json(r: &HeapReport) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_default();
    s.push('\n');
    s
}

pub(crate) fn render_text(r: &HeapReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Heap snapshot: {}", r.input);
    if !r.base.is_empty() {
        let _ = writeln!(o, "Base: {}", r.base.join(", "));
    }
    let _ = writeln!(
        o,
        "Nodes: {}, edges: {}, total size: {}",
        r.node_count,
        r.edge_count,
        bytes(r.total_size)
    );
    if let Some(d) = &r.diff {
        render_diff_text(&mut o, d, r.total_size);
    }
    let _ = writeln!(
        o,
        "\nSummary by constructor ({} of {}, by retained size):",
        r.constructors.len(),
        r.constructor_count
    );
    let _ = writeln!(
        o,
        "{:>10} {:>10} {:>10} {:>7}  constructor",
        "count", "shallow", "retained", "ret%"
    );
    for c in &r.constructors {
        let _ = writeln!(
            o,
            "{:>10} {:>10} {:>10} {:>7}  {}",
            c.count,
            bytes(c.self_size),
            bytes(c.retained_size),
            pct(c.retained_size, r.total_size),
            c.name
        );
    }
    let _ = writeln!(
        o,
        "\nLargest objects (by retained size), with their retaining path from the root:"
    );
    for (i, t) in r.top_objects.iter().enumerate() {
        let _ = writeln!(
            o,
            "{:>3}. {} @{}  retained {} ({}), self {}",
            i + 1,
            t.class,
            t.id,
            bytes(t.retained_size),
            pct(t.retained_size, r.total_size).trim(),
            bytes(t.self_size)
        );
        let _ = writeln!(o, "       {}", path_line(&t.path));
    }
    if !r.duplicated_strings.is_empty() {
        let _ = writeln!(o, "\nDuplicated strings:");
        let _ = writeln!(o, "{:>8} {:>10}  value", "copies", "wasted");
        for d in &r.duplicated_strings {
            let _ = writeln!(o, "{:>8} {:>10}  {:?}", d.count, bytes(d.wasted), d.value);
        }
    }
    if !r.largest_collections.is_empty() {
        let _ = writeln!(o, "\nLargest arrays, Maps and Sets:");
        let _ = writeln!(o, "{:>10} {:>10}  collection", "elements", "retained");
        for c in &r.largest_collections {
            let _ = writeln!(
                o,
                "{:>10} {:>10}  {} @{}",
                c.elements,
                bytes(c.retained_size),
                c.class,
                c.id
            );
        }
    }
    o
}

fn render_diff_text(o: &mut String, d: &Diff, total: u64) {
    if d.rule == "constructor-counts" {
        let _ = writeln!(
            o,
            "\nThe snapshots are not from the same process: comparing counts per constructor."
        );
        let _ = writeln!(
            o,
            "{:>10} {:>10} {:>12}  constructor",
            "count", "Δcount", "Δshallow"
        );
        for c in &d.counts {
            let _ = writeln!(
                o,
                "{:>10} {:>+10} {:>12}  {}",
                c.count,
                c.count as i64 - c.base_count as i64,
                signed_bytes(c.self_size as i64 - c.base_self_size as i64),
                c.name
            );
        }
        return;
    }
    let what = if d.rule == "new-since-base" {
        "New objects (not in the base)"
    } else {
        "Objects allocated between the two bases and still alive"
    };
    let _ = writeln!(
        o,
        "\n{what}: {}, {} shallow.",
        d.new_objects,
        bytes(d.new_self_size)
    );
    let _ = writeln!(
        o,
        "{:>10} {:>10} {:>10} {:>7}  constructor",
        "count", "shallow", "retained", "ret%"
    );
    for c in &d.constructors {
        let _ = writeln!(
            o,
            "{:>10} {:>10} {:>10} {:>7}  {}",
            c.count,
            bytes(c.self_size),
            bytes(c.retained_size),
            pct(c.retained_size, total),
            c.name
        );
    }
    let _ = writeln!(o, "\nBy retaining path:");
    for p in &d.paths {
        let _ = writeln!(
            o,
            "  {} × {}, retained {}",
            p.count,
            p.class,
            bytes(p.retained_size)
        );
        let _ = writeln!(o, "       {}", path_line(&p.path));
    }
}

fn signed_bytes(v: i64) -> String {
    if v < 0 {
        format!("-{}", bytes(v.unsigned_abs()))
    } else {
        format!("+{}", bytes(v as u64))
    }
}

fn md_code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'").replace('|', "\\|"))
}

pub(crate) fn render_markdown(r: &HeapReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Heap snapshot: {}\n", r.input);
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| Snapshot | {} |", md_code(&r.input));
    if !r.base.is_empty() {
        let base: Vec<String> = r.base.iter().map(|b| md_code(b)).collect();
        let _ = writeln!(o, "| Base | {} |", base.join(", "));
    }
    let _ = writeln!(o, "| Nodes | {} |", r.node_count);
    let _ = writeln!(o, "| Edges | {} |", r.edge_count);
    let _ = writeln!(o, "| Total size | {} |", bytes(r.total_size));
    if let Some(d) = &r.diff {
        let _ = writeln!(o);
        if d.rule == "constructor-counts" {
            let _ = writeln!(o, "**The snapshots are from different processes**: object ids cannot be compared; counts per constructor instead.\n");
            let _ = writeln!(
                o,
                "| constructor | count | Δ count | Δ shallow |\n|---|---:|---:|---:|"
            );
            for c in &d.counts {
                let _ = writeln!(
                    o,
                    "| {} | {} | {:+} | {} |",
                    md_code(&c.name),
                    c.count,
                    c.count as i64 - c.base_count as i64,
                    signed_bytes(c.self_size as i64 - c.base_self_size as i64)
                );
            }
        } else {
            if let Some(top) = d.constructors.first() {
                let held = d
                    .paths
                    .iter()
                    .find(|p| p.class == top.name)
                    .map(|p| format!(", held by {}", md_code(&path_line(&p.path))))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "**Leak suspect:** {} new {} objects still alive, retaining {}{held}.\n",
                    top.count,
                    md_code(&top.name),
                    bytes(top.retained_size)
                );
            }
            let _ = writeln!(o, "### New objects by constructor\n");
            let _ = writeln!(
                o,
                "| constructor | count | shallow | retained |\n|---|---:|---:|---:|"
            );
            for c in &d.constructors {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    md_code(&c.name),
                    c.count,
                    bytes(c.self_size),
                    bytes(c.retained_size)
                );
            }
            let _ = writeln!(o, "\n### New objects by retaining path\n");
            let _ = writeln!(
                o,
                "| count | constructor | retained | path |\n|---:|---|---:|---|"
            );
            for p in &d.paths {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    p.count,
                    md_code(&p.class),
                    bytes(p.retained_size),
                    md_code(&path_line(&p.path))
                );
            }
        }
    }
    let _ = writeln!(o, "\n### Summary by constructor\n");
    let _ = writeln!(
        o,
        "| constructor | count | shallow | retained | % of heap |\n|---|---:|---:|---:|---:|"
    );
    for c in &r.constructors {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            md_code(&c.name),
            c.count,
            bytes(c.self_size),
            bytes(c.retained_size),
            pct(c.retained_size, r.total_size).trim()
        );
    }
    let _ = writeln!(o, "\n### Largest objects\n");
    let _ = writeln!(
        o,
        "| object | retained | self | retaining path |\n|---|---:|---:|---|"
    );
    for t in &r.top_objects {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            md_code(&format!("{} @{}", t.class, t.id)),
            bytes(t.retained_size),
            bytes(t.self_size),
            md_code(&path_line(&t.path))
        );
    }
    if !r.duplicated_strings.is_empty() {
        let _ = writeln!(o, "\n### Duplicated strings\n");
        let _ = writeln!(o, "| value | copies | wasted |\n|---|---:|---:|");
        for d in &r.duplicated_strings {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                md_code(&d.value.replace('\n', "\\n")),
                d.count,
                bytes(d.wasted)
            );
        }
    }
    if !r.largest_collections.is_empty() {
        let _ = writeln!(o, "\n### Largest arrays, Maps and Sets\n");
        let _ = writeln!(o, "| collection | elements | retained |\n|---|---:|---:|");
        for c in &r.largest_collections {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                md_code(&format!("{} @{}", c.class, c.id)),
                c.elements,
                bytes(c.retained_size)
            );
        }
    }
    o
}

/// Folded stacks of the dominator tree, by class name: each node's self
/// size on the stack of its dominators' classes. Subtrees retaining less
/// than 1/2000 of the heap are folded into their parent's frame, so the
/// output stays small on graphs of millions of nodes.
pub(crate) fn folded_dominators(a: &Analyzed) -> Vec<String> {
    let retained = &a.dominators.retained;
    let min = (retained[0] / 2000).max(1);
    let (start, children) = super::dominators::children(&a.dominators.idom);
    let mut out: rustc_hash::FxHashMap<String, u64> = rustc_hash::FxHashMap::default();
    // (node, next child, the frame's folded stack, its depth).
    let mut stack: Vec<(u32, u32, String, usize)> = vec![(0, start[0], "(root)".to_string(), 0)];
    while let Some(top) = stack.last_mut() {
        let (v, next) = (top.0, top.1);
        let depth = top.3;
        if next < start[v as usize + 1] {
            top.1 += 1;
            let child = children[next as usize] as usize;
            if retained[child] >= min && depth < 200 {
                let name = a
                    .class_name(child)
                    .replace(';', ":")
                    .replace(['\n', '\r'], " ");
                let frame = format!("{};{}", top.2, crate::flamegraph::xml_safe(&name));
                stack.push((child as u32, start[child], frame, depth + 1));
            } else {
                let key = top.2.clone();
                *out.entry(key).or_default() += retained[child];
            }
        } else {
            let (v, _, frame, _) = stack.pop().unwrap_or_default();
            *out.entry(frame).or_default() += u64::from(a.snapshot.self_size[v as usize]);
        }
    }
    let mut lines: Vec<String> = out
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    lines.sort_unstable();
    lines
}
