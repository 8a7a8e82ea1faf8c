//! Java's variants of the gperftools formats (Google's Java agent): a CPU
//! profile whose header's third word is 1, and `--- heapz 1 ---` and
//! `--- contentionz 1 ---` text with `format = java`. Unlike the C++
//! formats they are symbolized: after the records, lines
//! `0x<id> <function> (<file>:<line>)` name each frame.
//!
//! Read as pprof's `legacy_java_profile.go` reads them: frames are not
//! moved back (they are ids, not return addresses); each location gets the
//! named function (a shared library's path shortened to its base name,
//! JIT stubs named `STUB`) and no address. Heap records
//! (`<bytes> <count> @ …`) are `inuse_objects`, `inuse_space`, unsampled at
//! Java's fixed 512 KiB rate; contention records (`<delay> <count> @ …`)
//! are `contentions`, `delay` in the file's `resolution`, both multiplied
//! by the sampling period.

use std::sync::OnceLock;

use regex::Regex;

use super::text::{self, Lines};
use super::{
    alternatives, raw_sample, unsample, JavaFrame, Legacy, LegacyError, RawSample, ALLOC_DROP,
    ALLOC_KEEP, CPU_DROP, LOCK_DROP,
};
use rustc_hash::FxHashMap;

/// The heap agent's sampling rate, which its files do not state.
const HEAP_RATE: f64 = 524288.0;

const RECORD: &str = "`<value> <count> @ <addresses>`";

struct Patterns {
    attribute: Regex,
    sample: Regex,
    location: Regex,
    file_line: Regex,
    path: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let compile = |re: &str| Regex::new(re).expect("static regex");
        Patterns {
            attribute: compile(r"([0-9A-Za-z_ ]+)=([0-9A-Za-z_ ]+)"),
            sample: compile(r" *(\d+) +(\d+) +@ +([ x0-9a-f]*)"),
            location: compile(r"^\s*0x([[:xdigit:]]+)\s+(.*)\s*$"),
            file_line: compile(r"^(.*)\s+\((.+):(-?[[:digit:]]+)\)$"),
            path: compile(r"^(.*)\s+\((.*)\)$"),
        }
    })
}

/// A Java CPU profile: the records as gperftools' (frames not moved back),
/// then the frames' names.
pub(crate) fn parse_cpu(
    samples: Vec<RawSample>,
    period: i64,
    rest: &[u8],
) -> Result<Legacy, LegacyError> {
    let mut legacy = Legacy {
        period_type: ("cpu", "nanoseconds"),
        period,
        sample_types: vec![("samples", "count"), ("cpu", "nanoseconds")],
        samples,
        drop_frames: alternatives(CPU_DROP),
        ..Legacy::default()
    };
    legacy.frames = frames(Lines::new(rest), &legacy.samples)?;
    Ok(legacy)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Heap,
    Contention,
}

/// A Java heap or contention profile.
pub(crate) fn parse(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let p = patterns();
    let mut lines = Lines::new(bytes).peekable();
    let (n, header) = lines.next().unwrap_or((1, "".into()));
    let kind = match header.trim() {
        "--- heapz 1 ---" => Type::Heap,
        "--- contentionz 1 ---" => Type::Contention,
        _ => {
            return Err(text::bad_line(
                n,
                "`--- heapz 1 ---` or `--- contentionz 1 ---`",
                &header,
            ))
        }
    };
    let mut legacy = Legacy {
        period_type: ("", ""),
        drop_frames: alternatives(match kind {
            Type::Heap => ALLOC_DROP,
            Type::Contention => LOCK_DROP,
        }),
        keep_frames: match kind {
            Type::Heap => alternatives(ALLOC_KEEP),
            Type::Contention => String::new(),
        },
        ..Legacy::default()
    };
    // `name = value` lines, up to the first that is not one.
    while let Some((n, line)) = lines.peek() {
        let (n, line) = (*n, line.trim());
        if line.is_empty() {
            lines.next();
            continue;
        }
        let Some(c) = p.attribute.captures(line) else {
            break;
        };
        let (name, value) = (c[1].trim(), c[2].trim());
        let number = |v: &str| {
            text::go_int(v).ok_or_else(|| LegacyError::Value {
                line: n,
                reason: format!("`{}` is not a number", text::excerpt(v)),
            })
        };
        match (kind, name) {
            (_, "format") if value == "java" => {}
            (Type::Heap, "resolution") => {
                legacy.sample_types =
                    vec![("inuse_objects", "count"), ("inuse_space", unit(n, value)?)]
            }
            (Type::Contention, "resolution") => {
                legacy.sample_types = vec![("contentions", "count"), ("delay", unit(n, value)?)]
            }
            (Type::Contention, "sampling period") => {
                legacy.period_type = ("contentions", "count");
                legacy.period = number(value)?;
            }
            (Type::Contention, "ms since reset") => {
                legacy.duration_nanos = number(value)?.wrapping_mul(1_000_000)
            }
            _ => {
                return Err(LegacyError::Value {
                    line: n,
                    reason: format!("unknown attribute `{}`", text::excerpt(line)),
                })
            }
        }
        lines.next();
    }
    if legacy.sample_types.is_empty() {
        return Err(LegacyError::Unsupported(
            "Java profiles without a `resolution` attribute",
        ));
    }
    while let Some((n, line)) = lines.peek() {
        let (n, line) = (*n, line.trim());
        if line.is_empty() {
            lines.next();
            continue;
        }
        let Some(c) = p.sample.captures(line) else {
            break;
        };
        let value = text::integer(n, &c[1], false)?;
        let count = text::integer(n, &c[2], false)?;
        let addrs = text::addresses(n, &c[3])?;
        let (values, bytes) = match kind {
            Type::Heap => {
                if count == 0 {
                    return Err(LegacyError::Value {
                        line: n,
                        reason: format!("{RECORD}: the count must not be 0"),
                    });
                }
                let (objects, space) = unsample(count, value, HEAP_RATE);
                (vec![objects, space], Some(value / count))
            }
            Type::Contention if legacy.period != 0 => (
                vec![
                    count.wrapping_mul(legacy.period),
                    value.wrapping_mul(legacy.period),
                ],
                None,
            ),
            Type::Contention => (vec![count, value], None),
        };
        legacy.samples.push(raw_sample(addrs, values, bytes));
        lines.next();
    }
    legacy.frames = frames(lines, &legacy.samples)?;
    Ok(legacy)
}

/// The unit a `resolution` attribute names (pprof takes any word; these
/// are the ones it knows how to scale).
fn unit(line: usize, value: &str) -> Result<&'static str, LegacyError> {
    Ok(match value {
        "bytes" => "bytes",
        "microseconds" => "microseconds",
        "nanoseconds" => "nanoseconds",
        "milliseconds" => "milliseconds",
        "seconds" => "seconds",
        "cycles" => "cycles",
        _ => {
            return Err(LegacyError::Value {
                line,
                reason: format!("unknown resolution `{}`", text::excerpt(value)),
            })
        }
    })
}

/// The names of the frames the samples use, from the lines
/// `0x<id> <function> (<file>:<line>)` after the records.
fn frames<'a>(
    lines: impl Iterator<Item = (usize, std::borrow::Cow<'a, str>)>,
    samples: &[RawSample],
) -> Result<FxHashMap<u64, JavaFrame>, LegacyError> {
    let p = patterns();
    let used: rustc_hash::FxHashSet<u64> = samples
        .iter()
        .flat_map(|s| s.location_id.iter().copied())
        .collect();
    let mut frames = FxHashMap::default();
    for (n, line) in lines {
        let Some(c) = p.location.captures(line.trim()) else {
            continue;
        };
        let id = u64::from_str_radix(&c[1], 16).map_err(|_| LegacyError::Value {
            line: n,
            reason: format!("0x{} does not fit in 64 bits", text::excerpt(&c[1])),
        })?;
        if !used.contains(&id) {
            continue;
        }
        let rest = &c[2];
        let frame = if let Some(f) = p.file_line.captures(rest) {
            JavaFrame {
                function: f[1].to_string(),
                file: f[2].to_string(),
                line: f[3].parse().ok().filter(|&l: &i64| l > 0).unwrap_or(0),
            }
        } else if let Some(f) = p.path.captures(rest) {
            JavaFrame {
                function: f[1].to_string(),
                file: base_name(&f[2]).to_string(),
                line: 0,
            }
        } else if rest.contains("generated stub/JIT") {
            JavaFrame {
                function: "STUB".into(),
                ..JavaFrame::default()
            }
        } else {
            JavaFrame {
                function: rest.to_string(),
                ..JavaFrame::default()
            }
        };
        frames.insert(id, frame);
    }
    Ok(frames)
}

/// The last element of a path, as Go's `filepath.Base`.
fn base_name(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::super::bytes_label;
    use super::*;

    #[test]
    fn heap_records_are_named_and_unsampled() {
        let p = parse(
            b"--- heapz 1 ---\nformat = java\nresolution = bytes\n\
              \x20  1048576 2 @ 0x00000003 0x00000004\n\
              \x20 0x00000003 com.example.f (F.java:12)\n\
              \x20 0x00000004 jvm (/usr/lib/libjvm.so)\n\
              \x20 0x00000009 unused\n",
        )
        .unwrap();
        assert_eq!(
            p.sample_types,
            [("inuse_objects", "count"), ("inuse_space", "bytes")]
        );
        assert_eq!(p.samples[0].location_id, [3, 4]);
        assert_eq!(p.samples[0].value, {
            let (n, s) = unsample(2, 1048576, HEAP_RATE);
            vec![n, s]
        });
        assert_eq!(bytes_label(&p.samples[0]), Some(524288));
        assert_eq!(p.frames[&3].function, "com.example.f");
        assert_eq!(p.frames[&3].line, 12);
        assert_eq!(p.frames[&4].file, "libjvm.so");
        assert!(!p.frames.contains_key(&9));
        assert_eq!(base_name("/a/b/"), "b");
    }

    #[test]
    fn unknown_attributes_are_named() {
        let e = parse(b"--- heapz 1 ---\nformat = java\ncolour = blue\n").unwrap_err();
        assert_eq!(e.to_string(), "line 3: unknown attribute `colour = blue`");
        let e = parse(b"--- heapz 1 ---\nformat = java\n").unwrap_err();
        assert!(matches!(e, LegacyError::Unsupported(_)), "{e}");
    }
}
