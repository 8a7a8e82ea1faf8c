//! Folded stacks and flamegraph SVGs (through inferno).
//!
//! A folded line is `root;caller;leaf value`. For a difference it carries two
//! columns, `stack before after`, which inferno draws as a differential
//! flamegraph: widths from the newer profile, red where a stack grew and blue
//! where it shrank.

use std::io::Write;

use inferno::flamegraph::{self, color::BasicPalette, Options, Palette};

use crate::aggregate::Aggregate;
use crate::units::scaled_label;

/// A frame name made safe for the folded format (`;` separates frames,
/// the last space separates the count, a line ends the stack) and for the
/// SVG it becomes (XML 1.0 has no way to write most control characters,
/// not even escaped).
fn folded_frame(name: &str) -> String {
    let name = name.replace(';', ":").replace(['\n', '\r'], " ");
    xml_safe(&name).into_owned()
}

/// `text` with the characters XML 1.0 forbids (C0 controls other than tab,
/// line feed and carriage return; U+FFFE and U+FFFF) written as visible
/// escapes, `\x01`, so an SVG title stays well-formed and still says what
/// the name held.
pub(crate) fn xml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let forbidden = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if !text.contains(forbidden) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !forbidden(c) {
            out.push(c);
        } else if c < ' ' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out.into()
}

/// The frame that stands for samples without any frame (they count in the
/// total, and folded lines need at least one frame).
pub const NO_FRAMES: &str = "[no frames]";

/// Deepest stack a flamegraph draws: deeper ones keep their root-most and
/// leaf-most halves around one frame that counts what was left out, so a
/// million-frame stack cannot make a 200 MB SVG.
pub const MAX_FLAMEGRAPH_DEPTH: usize = 1024;

/// Folded stacks, sorted, one line per distinct stack. Stacks with a
/// negative value (possible only in odd profiles) are left out of a
/// single-column flamegraph, which cannot draw them.
pub fn folded_lines(agg: &Aggregate) -> Vec<String> {
    folded_lines_up_to(agg, usize::MAX)
}

fn folded_lines_up_to(agg: &Aggregate, max_depth: usize) -> Vec<String> {
    let names: Vec<String> = agg
        .functions
        .iter()
        .map(|f| folded_frame(&f.name))
        .collect();
    let mut lines: Vec<String> = agg
        .stacks()
        .filter(|s| {
            if agg.has_base {
                s.value != 0 || s.base != 0
            } else {
                s.value > 0
            }
        })
        .map(|s| {
            let depth = s.frames.len().min(max_depth);
            let mut line = String::with_capacity(depth * 24);
            let (head, tail) = if s.frames.len() > max_depth {
                let head = max_depth / 2;
                (head, max_depth - head - 1)
            } else {
                (s.frames.len(), 0)
            };
            let push = |line: &mut String, name: &str| {
                if !line.is_empty() {
                    line.push(';');
                }
                line.push_str(name);
            };
            for &f in &s.frames[..head] {
                push(&mut line, &names[f as usize]);
            }
            if tail > 0 {
                let elided = s.frames.len() - head - tail;
                push(&mut line, &format!("[{elided} frames not drawn]"));
                for &f in &s.frames[s.frames.len() - tail..] {
                    push(&mut line, &names[f as usize]);
                }
            }
            if line.is_empty() {
                line.push_str(NO_FRAMES);
            }
            if agg.has_base {
                let before = s.base.max(0);
                let after = s.value.wrapping_add(s.base).max(0);
                line.push_str(&format!(" {before} {after}"));
            } else {
                line.push_str(&format!(" {}", s.value));
            }
            line
        })
        .collect();
    lines.sort_unstable();
    lines
}

pub fn write_folded(agg: &Aggregate, mut out: impl Write) -> std::io::Result<()> {
    for line in folded_lines(agg) {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Writes the flamegraph SVG: deterministic colours (by name), a title with
/// the sample type and inputs, a subtitle with the total.
pub fn write_flamegraph(
    agg: &Aggregate,
    inputs: &[String],
    base: &[String],
    out: impl Write,
) -> std::io::Result<()> {
    let mut lines = folded_lines_up_to(agg, MAX_FLAMEGRAPH_DEPTH);
    let unit = agg.sample_type.unit.as_str();
    let kind = &agg.sample_type.r#type;
    let mut options = Options::default();
    let total = scaled_label(agg.kept, unit, "auto");
    if agg.has_base {
        options.title = xml_safe(&format!(
            "{kind}, net {total}: {} minus {}",
            inputs.join(", "),
            base.join(", ")
        ))
        .into_owned();
        options.subtitle = Some(format!(
            "net change {total}; red grew, blue shrank; widths are the profiles, not the base"
        ));
    } else {
        options.title =
            xml_safe(&format!("{kind}, total {total}: {}", inputs.join(", "))).into_owned();
        options.subtitle = Some(format!("total {total}"));
    }
    options.count_name = xml_safe(unit).into_owned();
    options.deterministic = true;
    let palette = if unit == "bytes" {
        BasicPalette::Mem
    } else {
        BasicPalette::Hot
    };
    options.colors = Palette::Basic(palette);
    // inferno draws widths from the last column and refuses input where
    // they are all zero (a diff whose newer side is empty): same as empty.
    let drawable = lines.iter().any(|l| {
        l.rsplit(' ')
            .next()
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| n > 0)
    });
    if !drawable {
        lines.clear();
    }
    if lines.is_empty() {
        // inferno refuses empty input; an empty profile still gets a valid
        // SVG, with one frame that says so.
        lines.push(
            if agg.has_base {
                "no samples 1 1"
            } else {
                "no samples 1"
            }
            .to_string(),
        );
        options.subtitle =
            Some("no samples: the profile is empty, or the filters left nothing".into());
    }
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
}
