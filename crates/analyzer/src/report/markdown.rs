//! The Markdown report, for pasting into an incident document.

use std::fmt::Write;

use super::{format_time, readable_path, Report};
use crate::units::{percentage, scaled_label};

/// Inline code that survives any backticks in the name.
fn code(s: &str) -> String {
    let s = s.replace('|', "\\|");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

pub fn render_markdown(report: &Report) -> String {
    let agg = report.aggregate;
    let meta = report.meta;
    let fmt = report.value_formatter();
    let own = report.own_value_formatter();
    let mut out = String::new();
    let kind = if agg.has_base {
        "difference"
    } else {
        "profile"
    };
    let _ = writeln!(
        out,
        "## {} {kind}: {}\n",
        agg.sample_type.r#type,
        meta.inputs.join(", ")
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let files: Vec<String> = meta.inputs.iter().map(|i| code(i)).collect();
    let _ = writeln!(out, "| Profiles | {} |", files.join(", "));
    if agg.has_base {
        let base: Vec<String> = meta.base_sources().iter().map(|i| code(i)).collect();
        let _ = writeln!(out, "| Base (subtracted) | {} |", base.join(", "));
    }
    let _ = writeln!(
        out,
        "| Sample type | {} ({}) |",
        agg.sample_type.r#type, agg.sample_type.unit
    );
    if let Some(file) = &meta.file {
        let _ = writeln!(out, "| Binary | {} |", code(file));
    }
    if let Some(id) = &meta.build_id {
        let _ = writeln!(out, "| Build ID | {} |", code(id));
    }
    if meta.time_nanos != 0 {
        let _ = writeln!(out, "| Captured | {} |", format_time(meta.time_nanos));
    }
    if meta.duration_nanos != 0 {
        let _ = writeln!(
            out,
            "| Duration | {} |",
            scaled_label(meta.duration_nanos, "nanoseconds", "auto")
        );
    }
    let total_label = if agg.has_base {
        "Sum of \\|values\\| (pprof's total, the base of %)"
    } else {
        "Total"
    };
    let _ = writeln!(out, "| {total_label} | {} |", fmt(agg.total));
    if agg.has_base {
        let _ = writeln!(out, "| Net change | {} |", fmt(agg.kept));
    }
    for c in meta.comments.iter().filter(|c| !c.starts_with('#')) {
        let _ = writeln!(out, "| Comment | {} |", c.replace('|', "\\|"));
    }
    for f in &meta.filters {
        let _ = writeln!(out, "| Filter | {} |", code(f));
    }
    if let Some(svg) = &meta.flamegraph {
        let _ = writeln!(out, "| Flamegraph | [{svg}]({svg}) |");
    }

    if agg.has_base {
        let growth = report.growth(5);
        if !growth.is_empty() {
            let _ = writeln!(out, "\n### What grew\n");
            for (f, path) in growth {
                let via = path
                    .map(|p| {
                        let names = report.frame_names(p.frames);
                        format!(
                            " (call path {})",
                            readable_path(&names, 12)
                                .iter()
                                .map(|n| code(n))
                                .collect::<Vec<_>>()
                                .join(" → ")
                        )
                    })
                    .unwrap_or_default();
                let _ = writeln!(out, "- grew by {} in {}{via}", own(f.flat), code(&f.name));
            }
        }
    }

    let _ = writeln!(out, "\n### Top functions\n");
    if report.functions.len() < report.function_count {
        let _ = writeln!(
            out,
            "The {} heaviest of {} functions.\n",
            report.functions.len(),
            report.function_count
        );
    }
    let _ = writeln!(
        out,
        "| flat | flat% | sum% | cum | cum% | function |\n|---:|---:|---:|---:|---:|---|"
    );
    let mut sum = 0i64;
    for f in &report.functions {
        sum = sum.wrapping_add(f.flat);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}{} |",
            fmt(f.flat),
            percentage(f.flat, agg.total).trim(),
            percentage(sum, agg.total).trim(),
            fmt(f.cum),
            percentage(f.cum, agg.total).trim(),
            code(&f.name),
            f.inlining.suffix()
        );
    }

    if let Some(key) = &agg.group_by {
        let _ = writeln!(out, "\n### By {}\n", code(key));
        let _ = writeln!(
            out,
            "| {} | total | % | samples | heaviest functions (flat) |\n|---|---:|---:|---:|---|",
            code(key)
        );
        for g in &report.groups {
            let top: Vec<String> = g
                .functions
                .iter()
                .take(3)
                .map(|f| format!("{} {}", code(&f.name), fmt(f.flat)))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                code(&g.group.value),
                fmt(g.group.kept),
                percentage(g.group.kept, agg.total).trim(),
                g.group.samples,
                top.join(", ")
            );
        }
    }

    if !report.hot_paths.is_empty() {
        let _ = writeln!(out, "\n### Hot paths\n");
        for (n, stack) in report.hot_paths.iter().enumerate() {
            let path: Vec<String> = report
                .readable_hot_path(stack, 16)
                .iter()
                .map(|n| code(n))
                .collect();
            let labels: Vec<String> = stack
                .labels
                .iter()
                .map(|l| {
                    let share = format!("{:.0}%", (l.share * 100.0).floor());
                    format!("{} ({share})", code(&format!("{}={}", l.key, l.value)))
                })
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!(", labelled {}", labels.join(", "))
            };
            let _ = writeln!(
                out,
                "{}. **{}** ({}{labels}): {}",
                n + 1,
                own(stack.value),
                percentage(stack.value, agg.total).trim(),
                path.join(" → ")
            );
        }
    }
    out
}
