//! The text report: pprof's `-top` layout (header, function table), then the hot paths.

use std::fmt::Write;

use super::{format_time, Report};
use crate::units::{percentage, scaled_label};

/// Function rows shown per `--group-by` group (JSON has all of `--top`).
pub(crate) const GROUP_ROWS: usize = 10;

pub fn render_text(report: &Report) -> String {
    let agg = report.aggregate;
    let meta = report.meta;
    let fmt = report.value_formatter();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };

    if let Some(file) = &meta.file {
        line(format!("File: {file}"));
    }
    if let Some(id) = &meta.build_id {
        line(format!("Build ID: {id}"));
    }
    for c in meta.comments.iter().filter(|c| !c.starts_with('#')) {
        line(c.clone());
    }
    line(format!("Type: {}", agg.sample_type.r#type));
    if let Some(doc) = &meta.doc_url {
        line(format!("Doc: {doc}"));
    }
    if meta.time_nanos != 0 {
        line(format!("Time: {}", format_time(meta.time_nanos)));
    }
    if meta.duration_nanos != 0 {
        let duration = scaled_label(meta.duration_nanos, "nanoseconds", "auto");
        let (total_ns, u) = crate::units::scale(agg.total, &agg.sample_type.unit, "nanoseconds");
        let ratio = if u == "ns" && total_ns != 0.0 {
            format!("({})", percentage(total_ns as i64, meta.duration_nanos))
        } else {
            String::new()
        };
        line(format!(
            "Duration: {duration}, Total samples = {} {ratio}",
            fmt(agg.total)
        ));
    }
    let base = meta.base_sources();
    if !base.is_empty() {
        line(format!(
            "Base: {} (values are the profiles minus the base)",
            base.join(", ")
        ));
    }
    if !meta.filters.is_empty() {
        line("Active filters:".into());
        for f in &meta.filters {
            line(format!("   {f}"));
        }
    }
    let shown = report
        .functions
        .iter()
        .fold(0i64, |sum, f| sum.wrapping_add(f.flat));
    line(format!(
        "Showing nodes accounting for {}, {} of {} total",
        fmt(shown),
        percentage(shown, agg.total).trim(),
        fmt(agg.total)
    ));
    if report.functions.len() < report.function_count {
        line(format!(
            "Showing top {} nodes out of {}",
            report.functions.len(),
            report.function_count
        ));
    }
    line(format!(
        "{:>10} {:>5}% {:>5}% {:>10} {:>5}%",
        "flat", "flat", "sum", "cum", "cum"
    ));
    let mut sum = 0i64;
    for f in &report.functions {
        sum = sum.wrapping_add(f.flat);
        let inline = f.inlining.suffix();
        line(format!(
            "{:>10} {} {} {:>10} {}  {}{inline}",
            fmt(f.flat),
            percentage(f.flat, agg.total),
            percentage(sum, agg.total),
            fmt(f.cum),
            percentage(f.cum, agg.total),
            f.name
        ));
    }

    if let Some(key) = &agg.group_by {
        let _ = writeln!(out, "\nBy {key} (label values, largest first):");
        if report.groups.is_empty() {
            let _ = writeln!(out, "  no kept samples");
        }
        for g in &report.groups {
            let _ = writeln!(
                out,
                "{key}={}: {} ({} of total), {} samples",
                g.group.value,
                fmt(g.group.kept),
                percentage(g.group.kept, agg.total).trim(),
                g.group.samples
            );
            for f in g.functions.iter().take(GROUP_ROWS) {
                let _ = writeln!(
                    out,
                    "{:>10} {} {:>10} {}  {}{}",
                    fmt(f.flat),
                    percentage(f.flat, agg.total),
                    fmt(f.cum),
                    percentage(f.cum, agg.total),
                    f.name,
                    f.inlining.suffix()
                );
            }
            if g.function_count > GROUP_ROWS.min(g.functions.len()) {
                let shown = GROUP_ROWS.min(g.functions.len());
                let _ = writeln!(
                    out,
                    "{:>10} … {} more functions",
                    "",
                    g.function_count - shown
                );
            }
        }
    }

    if !report.hot_paths.is_empty() {
        let _ = writeln!(out, "\nHot paths (heaviest call stacks, root first):");
        let fmt = report.own_value_formatter();
        for (n, stack) in report.hot_paths.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>3}. {} ({}){}",
                n + 1,
                fmt(stack.value),
                percentage(stack.value, agg.total).trim(),
                if agg.has_base {
                    format!(", base {}", fmt(stack.base))
                } else {
                    String::new()
                }
            );
            for frame in report.readable_hot_path(stack, 24) {
                let _ = writeln!(out, "       {frame}");
            }
        }
    }
    out
}
