//! The memory map at the end of a legacy profile, and which mapping each
//! address falls in.
//!
//! The map is `/proc/self/maps` text (`start-end perms offset dev inode
//! path`) or gperftools' brief form (`start-end: path`, with an optional
//! `(@offset)` and build ID), possibly behind glog prefixes, with
//! `name=value` lines whose `$name` later lines use. Non-executable ranges
//! are skipped, and lines of no known shape ignored, as pprof does.
//!
//! Then pprof's heuristics, in its order: adjacent ranges of one file
//! merged; the first mapping that looks like the main binary (not a `.so`,
//! not `[vdso]`) moved first; a leading `/anon_hugepage` range dropped; a
//! main binary whose start minus offset is 0x400000 rebased there. An
//! address belongs to the first mapping in the list that contains it; else
//! to a mapping whose file offset, counted back from its start, covers it
//! (the mapping is then extended down by its offset); else to one
//! catch-all mapping covering every address. pprof tries the mappings in
//! turn for each address; here both rules are an interval sweep, so a map
//! of many ranges and a profile of many addresses cost `O((n + m) log m)`
//! (the results differ only for overlapping ranges, which a process's map
//! does not have).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;

use super::LegacyError;

/// One mapping as the map section states it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawMapping {
    pub start: u64,
    pub limit: u64,
    pub offset: u64,
    pub file: String,
    pub build_id: String,
}

struct Patterns {
    proc_maps: Regex,
    brief: Regex,
    log_prefix: Regex,
    lib: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // `start-end` (or `start end`, `0x` optional, `:` after end optional).
        let range = r"^\s*(?:0x)?([[:xdigit:]]+)[\s-]?\s*(?:0x)?([[:xdigit:]]+):?";
        let perms = r"(?:\s+([-rwxp]+))?";
        let compile = |re: String| Regex::new(&re).expect("static regex");
        Patterns {
            // perms, offset, dev (hex:hex), inode, path.
            proc_maps: compile(format!(
                r"{range}{perms}(?:\s+([[:xdigit:]]+))?\s+[[:xdigit:]]+:[[:xdigit:]]+\s+[[:digit:]]+(?:\s+(\S+))?"
            )),
            // perms, path, (@offset), build id.
            brief: compile(format!(
                r"{range}{perms}(?:\s+(\S+))?(?:\s+\(@([[:xdigit:]]+)\))?(?:\s+([[:xdigit:]]+))?"
            )),
            // glog's `… file.cc:123] ` before a line.
            log_prefix: compile(r"^[^\[\]]+:[0-9]+]\s".into()),
            lib: compile(r"([.]so$|[.]so[._][0-9]+)".into()),
        }
    })
}

/// The most executable mappings a map section may list: a process has at
/// most `vm.max_map_count` (65,530 by default) mappings in all.
pub(crate) const MAX_MAPPINGS: usize = 1 << 20;

/// The most `name=value` lines a map section may define: gperftools
/// writes one or two. Each costs a comparison at every `$` of later lines.
const MAX_ATTRIBUTES: usize = 64;

/// The longest line `$name` substitution may make; longer ones are skipped.
const MAX_LINE: usize = 64 << 10;

/// Parses the map section: every line from the one after the sentinel to
/// the end. Lines of no known shape are skipped, as pprof does; only the
/// bounds above are errors.
pub(crate) fn parse<'a>(
    lines: impl Iterator<Item = (usize, std::borrow::Cow<'a, str>)>,
) -> Result<Vec<RawMapping>, LegacyError> {
    let p = patterns();
    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for (_, line) in lines {
        let line: &str = &line;
        let line = match p.log_prefix.find(line) {
            Some(m) => &line[m.end()..],
            None => line,
        };
        let Some(line) = substitute(line, &attrs) else {
            continue;
        };
        match entry(p, &line) {
            Entry::Mapping(_) if out.len() == MAX_MAPPINGS => {
                return Err(LegacyError::Limit {
                    what: "executable mappings",
                    limit: MAX_MAPPINGS,
                });
            }
            Entry::Mapping(m) => out.push(m),
            Entry::Skipped => {}
            Entry::Unrecognized => {
                if let Some((name, value)) = line.split_once('=') {
                    if attrs.len() == MAX_ATTRIBUTES {
                        return Err(LegacyError::Limit {
                            what: "`name=value` lines in the memory map",
                            limit: MAX_ATTRIBUTES,
                        });
                    }
                    attrs.push((format!("${}", name.trim()), value.trim().to_string()));
                }
            }
        }
    }
    Ok(out)
}

/// `line` with each `$name` replaced by its value, scanning left to right,
/// the first-defined name winning where several match (Go's
/// `strings.Replacer`, as pprof uses it); `None` past [`MAX_LINE`] bytes.
fn substitute<'l>(line: &'l str, attrs: &[(String, String)]) -> Option<Cow<'l, str>> {
    if attrs.is_empty() || !line.contains('$') {
        return Some(Cow::Borrowed(line));
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    'scan: while !rest.is_empty() {
        if out.len() > MAX_LINE {
            return None;
        }
        if rest.starts_with('$') {
            for (name, value) in attrs {
                if let Some(after) = rest.strip_prefix(name.as_str()) {
                    out.push_str(value);
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Some(Cow::Owned(out))
}

enum Entry {
    Mapping(RawMapping),
    /// A range that is not executable.
    Skipped,
    Unrecognized,
}

fn entry(p: &Patterns, line: &str) -> Entry {
    let (start, end, perms, file, offset, build_id);
    if let Some(c) = p.proc_maps.captures(line) {
        (start, end, perms) = (c.get(1), c.get(2), c.get(3));
        (offset, file, build_id) = (c.get(4), c.get(5), None);
    } else if let Some(c) = p.brief.captures(line) {
        (start, end, perms) = (c.get(1), c.get(2), c.get(3));
        (file, offset, build_id) = (c.get(4), c.get(5), c.get(6));
    } else {
        return Entry::Unrecognized;
    }
    fn text<'a>(m: Option<regex::Match<'a>>) -> &'a str {
        m.map_or("", |m| m.as_str())
    }
    let perms = text(perms);
    if !perms.is_empty() && !perms.contains('x') {
        return Entry::Skipped;
    }
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let (Some(start), Some(limit)) = (hex(text(start)), hex(text(end))) else {
        return Entry::Unrecognized;
    };
    let offset = match text(offset) {
        "" => 0,
        s => match hex(s) {
            Some(o) => o,
            None => return Entry::Unrecognized,
        },
    };
    Entry::Mapping(RawMapping {
        start,
        limit,
        offset,
        file: text(file).to_string(),
        build_id: text(build_id).to_string(),
    })
}

/// pprof's `massageMappings` and the start of `remapMappingIDs`: merges
/// adjacent pieces, puts the main binary first, fixes known quirks.
fn massage(mappings: Vec<RawMapping>) -> Vec<RawMapping> {
    let mut merged: Vec<RawMapping> = Vec::with_capacity(mappings.len());
    for m in mappings {
        match merged.last_mut() {
            Some(last) if adjacent(last, &m) => {
                last.limit = m.limit;
                if !m.file.is_empty() {
                    last.file = m.file;
                }
                if !m.build_id.is_empty() {
                    last.build_id = m.build_id;
                }
            }
            _ => merged.push(m),
        }
    }
    let lib = &patterns().lib;
    if let Some(main) = merged.iter().position(|m| {
        let file = m.file.replace("(deleted)", "");
        let file = file.trim();
        !file.is_empty() && !lib.is_match(file) && !file.starts_with('[')
    }) {
        merged.swap(0, main);
    }
    if merged.len() > 1
        && merged[0].file.starts_with("/anon_hugepage")
        && merged[0].limit == merged[1].start
    {
        merged.remove(0);
    }
    const EXPECTED_START: u64 = 0x400000;
    if let Some(m) = merged.first_mut() {
        if m.start.wrapping_sub(m.offset) == EXPECTED_START {
            m.start = EXPECTED_START;
            m.offset = 0;
        }
    }
    merged
}

/// Whether `b` continues `a`: same file and build ID where both are known,
/// contiguous, and offsets consistent where both are known.
fn adjacent(a: &RawMapping, b: &RawMapping) -> bool {
    if !a.file.is_empty() && !b.file.is_empty() && a.file != b.file {
        return false;
    }
    if !a.build_id.is_empty() && !b.build_id.is_empty() && a.build_id != b.build_id {
        return false;
    }
    if a.limit != b.start {
        return false;
    }
    if a.offset != 0 && b.offset != 0 {
        let end = a.offset.wrapping_add(a.limit.wrapping_sub(a.start));
        if end != b.offset {
            return false;
        }
    }
    true
}

/// The final mappings and, for each address (in order), the id of its
/// mapping (0 for address 0, which pprof leaves unmapped).
pub(crate) fn assign(mappings: Vec<RawMapping>, addresses: &[u64]) -> (Vec<RawMapping>, Vec<u64>) {
    let mut mappings = massage(mappings);
    let mut ids = vec![0u64; addresses.len()];
    let ranges: Vec<(u64, u64)> = mappings.iter().map(|m| (m.start, m.limit)).collect();
    let inside = first_containing(&ranges, addresses);
    let mut unmatched = Vec::new();
    for (i, (&a, found)) in addresses.iter().zip(&inside).enumerate() {
        match found {
            _ if a == 0 => {}
            Some(m) => ids[i] = *m as u64 + 1,
            None => unmatched.push(i),
        }
    }
    if unmatched.is_empty() {
        return (mappings, ids);
    }
    // Below a mapping by at most its offset: the first piece of a split
    // mapping that the profiler did not write.
    let below: Vec<(u64, u64)> = mappings
        .iter()
        .map(|m| match m.offset {
            0 => (0, 0),
            o => (m.start.saturating_sub(o), m.start),
        })
        .collect();
    let wanted: Vec<u64> = unmatched.iter().map(|&i| addresses[i]).collect();
    let extended = first_containing(&below, &wanted);
    let mut fake = None;
    for (&i, found) in unmatched.iter().zip(extended) {
        ids[i] = match found {
            Some(m) => {
                let mapping = &mut mappings[m];
                if mapping.offset != 0 {
                    mapping.start = mapping.start.wrapping_sub(mapping.offset);
                    mapping.offset = 0;
                }
                m as u64 + 1
            }
            None => *fake.get_or_insert_with(|| {
                mappings.push(RawMapping {
                    limit: u64::MAX,
                    ..RawMapping::default()
                });
                mappings.len() as u64
            }),
        };
    }
    (mappings, ids)
}

/// For each address, the lowest index of the ranges `[start, limit)` that
/// contain it: a sweep over the sorted addresses and range ends.
fn first_containing(ranges: &[(u64, u64)], addresses: &[u64]) -> Vec<Option<usize>> {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ranges.len() * 2);
    for (i, &(start, limit)) in ranges.iter().enumerate() {
        if start < limit {
            // `false` (open) sorts before `true` (close) at one position.
            events.push((start, false, i));
            events.push((limit, true, i));
        }
    }
    events.sort_unstable();
    let mut order: Vec<usize> = (0..addresses.len()).collect();
    order.sort_unstable_by_key(|&i| addresses[i]);
    let mut open = BTreeSet::new();
    let mut next = 0;
    let mut out = vec![None; addresses.len()];
    for i in order {
        let a = addresses[i];
        while let Some(&(at, close, m)) = events.get(next) {
            if at > a {
                break;
            }
            if close {
                open.remove(&m);
            } else {
                open.insert(m);
            }
            next += 1;
        }
        out[i] = open.first().copied();
    }
    out
}

/// The lines after the map sentinel, if `line` is one.
pub(crate) fn is_sentinel(line: &str) -> bool {
    line.contains("--- Memory map: ---") || line.contains("MAPPED_LIBRARIES:")
}

/// The mappings of the text after the first sentinel line of `lines`.
pub(crate) fn after_sentinel<'a>(
    mut lines: impl Iterator<Item = (usize, Cow<'a, str>)>,
) -> Result<Vec<RawMapping>, LegacyError> {
    for (_, line) in lines.by_ref() {
        if is_sentinel(&line) {
            return parse(lines);
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::text::Lines;

    fn lines(text: &str) -> Vec<RawMapping> {
        parse(Lines::new(text.as_bytes())).unwrap()
    }

    #[test]
    fn reads_proc_maps_and_brief_lines() {
        let m = lines(
            "563be78e8000-563be78e9000 r--p 00000000 fe:00 10010966   /tmp/jt/t\n\
             563be78e9000-563be78ea000 r-xp 00001000 fe:00 10010966   /tmp/jt/t\n\
             7ffd1000-7ffd2000 r-xp 00000000 00:00 0\n\
             garbage\n\
             \tsource=/home\n\
             \x20 00400000-00fcb000: $source/main\n\
             7f0-7f8: /lib/libc.so.6 (@1000) abc123\n",
        );
        assert_eq!(
            m,
            [
                RawMapping {
                    start: 0x563be78e9000,
                    limit: 0x563be78ea000,
                    offset: 0x1000,
                    file: "/tmp/jt/t".into(),
                    build_id: String::new(),
                },
                RawMapping {
                    start: 0x7ffd1000,
                    limit: 0x7ffd2000,
                    ..RawMapping::default()
                },
                RawMapping {
                    start: 0x400000,
                    limit: 0xfcb000,
                    file: "/home/main".into(),
                    ..RawMapping::default()
                },
                RawMapping {
                    start: 0x7f0,
                    limit: 0x7f8,
                    offset: 0x1000,
                    file: "/lib/libc.so.6".into(),
                    build_id: "abc123".into(),
                },
            ]
        );
    }

    #[test]
    fn addresses_go_to_the_first_containing_mapping_else_a_catch_all() {
        let m = |start, limit, offset, file: &str| RawMapping {
            start,
            limit,
            offset,
            file: file.into(),
            build_id: String::new(),
        };
        let maps = vec![
            m(0x7000, 0x8000, 0, "/lib/libc.so.6"),
            m(0x1000, 0x2000, 0x1000, "/bin/main"),
            m(0x2000, 0x3000, 0x2000, "/bin/main"),
        ];
        let (out, ids) = assign(maps, &[0x7100, 0x2500, 0x800, 0x9000, 0]);
        // Main binary merged and moved first, extended down by its offset.
        assert_eq!(out[0], m(0, 0x3000, 0, "/bin/main"));
        assert_eq!(out[1], m(0x7000, 0x8000, 0, "/lib/libc.so.6"));
        assert_eq!(out[2], m(0, u64::MAX, 0, ""));
        assert_eq!(ids, [2, 1, 1, 3, 0]);
    }

    #[test]
    fn substitution_and_attributes_are_bounded() {
        let mut text = String::from("a=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
        text.push_str(&"$a".repeat(10_000));
        text.push_str("\n0-1: /bin/x\n");
        assert_eq!(lines(&text).len(), 1);
        let many: String = (0..100).map(|i| format!("k{i}=v\n")).collect();
        let e = parse(Lines::new(many.as_bytes())).unwrap_err();
        assert!(matches!(e, LegacyError::Limit { limit: 64, .. }), "{e}");
    }
}
