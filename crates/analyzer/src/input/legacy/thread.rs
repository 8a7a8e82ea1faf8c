//! Thread listings: gperftools-style `threadz` (one stack per thread) and
//! Go's text count profiles before 1.9 (`goroutine`, `threadcreate`).
//!
//! ```text
//! --- threadz 1 ---
//! --- Thread 7f794ab90940 (name: main/14748) stack: ---
//!   PC:  0x00bc8f1c: helper(arg *)
//!   0x0040be31: main
//! --- Thread 7f7948978700 (name: thread3/14759) stack: ---
//!   [same as previous thread]
//! --- Memory map: ---
//! ```
//!
//! ```text
//! threadcreate profile: total 7
//! 1 @ 0x44cb3 0x45045 0x45323
//! ```
//!
//! A `threadz` listing becomes one sample per thread (`thread/count`),
//! a thread marked "same as previous" adding one to the previous sample;
//! every `0x…` number on a stack's lines is a frame, callers moved back by
//! one byte, the leaf not. A count profile's records are `count @ stack`
//! with every address moved back (`<type>/count`). Both as pprof reads them,
//! with the CPU profiler's `drop_frames`, which pprof gives any legacy
//! profile that is neither heap nor contention.

use std::borrow::Cow;

use super::text::{self, Lines};
use super::{alternatives, maps, raw_sample, Legacy, LegacyError, RawSample, CPU_DROP};

const THREAD: &str = "`--- Thread <id> (name: <name>/<tid>) stack: ---`";

/// Whether a line is a blank or a `#` comment.
fn blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The first line that is not blank or a comment, in `bytes`' first 4 KiB.
fn first_line(bytes: &[u8]) -> Option<Cow<'_, str>> {
    Lines::new(&bytes[..bytes.len().min(4096)])
        .map(|(_, l)| l)
        .find(|l| !blank(l))
}

/// Whether `bytes` start like a thread listing.
pub(crate) fn is_threadz(bytes: &[u8]) -> bool {
    first_line(bytes).is_some_and(|l| is_threadz_header(&l) || is_thread_start(&l))
}

/// Whether `bytes` start like a Go count profile.
pub(crate) fn is_count(bytes: &[u8]) -> bool {
    first_line(bytes).is_some_and(|l| count_header(&l).is_some())
}

fn is_threadz_header(line: &str) -> bool {
    line.trim()
        .strip_prefix("--- threadz ")
        .and_then(|r| r.strip_suffix(" ---"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_thread_start(line: &str) -> bool {
    let Some(rest) = line.trim().strip_prefix("--- Thread ") else {
        return false;
    };
    let Some((id, rest)) = rest.split_once(" (name: ") else {
        return false;
    };
    let Some(name) = rest.strip_suffix(") stack: ---") else {
        return false;
    };
    let tid = name.rsplit_once('/').map_or("", |(_, tid)| tid);
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !tid.is_empty()
        && tid.bytes().all(|b| b.is_ascii_digit())
}

/// The type of a `<type> profile: total <n>` line.
fn count_header(line: &str) -> Option<&str> {
    let (kind, rest) = line.split_once(" profile: total ")?;
    let valid = !kind.is_empty()
        && !kind.contains(char::is_whitespace)
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(kind)
}

/// Every `0x` number in `line`, as pprof finds them (lower-case digits).
fn hex_numbers(number: usize, line: &str) -> Result<Vec<u64>, LegacyError> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("0x") {
        let digits = &rest[at + 2..];
        let len = digits
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        if len > 0 {
            let n = u64::from_str_radix(&digits[..len], 16).map_err(|_| LegacyError::Value {
                line: number,
                reason: format!(
                    "0x{} does not fit in 64 bits",
                    text::excerpt(&digits[..len])
                ),
            })?;
            out.push(n);
        }
        rest = &digits[len..];
    }
    Ok(out)
}

pub(crate) fn parse_threadz(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let mut lines = Lines::new(bytes).peekable();
    while lines.next_if(|(_, l)| blank(l)).is_some() {}
    // After a `--- threadz` header, anything up to the first `-` line.
    if lines.next_if(|(_, l)| is_threadz_header(l)).is_some() {
        while lines
            .next_if(|(_, l)| !(maps::is_sentinel(l) || l.starts_with('-')))
            .is_some()
        {}
    }
    let mut samples: Vec<RawSample> = Vec::new();
    let mut mappings = Vec::new();
    while let Some((n, line)) = lines.next() {
        if maps::is_sentinel(&line) {
            mappings = maps::parse(lines)?;
            break;
        }
        if line.starts_with("---- no stack trace for") {
            mappings = maps::after_sentinel(lines)?;
            break;
        }
        if !is_thread_start(&line) {
            return Err(text::bad_line(n, THREAD, &line));
        }
        let mut addrs = Vec::new();
        let mut same = false;
        while let Some((n, line)) = lines.next_if(|(_, l)| !l.trim().starts_with("---")) {
            if line.contains("same as previous thread") {
                same = true;
            } else {
                addrs.extend(hex_numbers(n, &line)?);
            }
        }
        if same || addrs.is_empty() {
            if let Some(previous) = samples.last_mut() {
                previous.value[0] += 1;
            }
            continue;
        }
        for a in addrs.iter_mut().skip(1) {
            *a = a.wrapping_sub(1);
        }
        samples.push(raw_sample(addrs, vec![1], None));
    }
    for s in &mut samples {
        if s.location_id.len() > 1 && s.location_id[0] == s.location_id[1].wrapping_add(1) {
            s.location_id.remove(1);
        }
    }
    Ok(Legacy {
        period_type: ("thread", "count"),
        period: 1,
        sample_types: vec![("thread", "count")],
        samples,
        mappings,
        drop_frames: alternatives(CPU_DROP),
        ..Legacy::default()
    })
}

pub(crate) fn parse_count(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let mut lines = Lines::new(bytes).filter(|(_, l)| !blank(l));
    let (n, first) = lines.next().unwrap_or((1, "".into()));
    let kind: &'static str = match count_header(&first) {
        Some("goroutine") => "goroutine",
        Some("threadcreate") => "threadcreate",
        Some(_) => {
            return Err(LegacyError::Unsupported(
                "count profiles other than goroutine and threadcreate",
            ))
        }
        None => return Err(text::bad_line(n, "`<type> profile: total <n>`", &first)),
    };
    let mut samples = Vec::new();
    for (n, line) in lines.by_ref() {
        if line.starts_with("---") {
            break;
        }
        let bad = || text::bad_line(n, "`<count> @ <addresses>`", &line);
        let (count, stack) = line.split_once(" @ ").ok_or_else(bad)?;
        let count = text::integer(n, count, false)?;
        let addrs = text::addresses(n, stack)?;
        if addrs.is_empty() {
            return Err(bad());
        }
        samples.push(raw_sample(
            addrs.into_iter().map(|a| a.wrapping_sub(1)).collect(),
            vec![count],
            None,
        ));
    }
    Ok(Legacy {
        period_type: (kind, "count"),
        period: 1,
        sample_types: vec![(kind, "count")],
        samples,
        mappings: maps::after_sentinel(lines)?,
        drop_frames: alternatives(CPU_DROP),
        ..Legacy::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_and_same_as_previous() {
        let p = parse_threadz(
            b"--- threadz 1 ---\n\n\
              --- Thread 7f01 (name: main/1) stack: ---\n  PC: 0x100: f\n  0x201: main\n\
              --- Thread 7f02 (name: t/2) stack: ---\n  [same as previous thread]\n\
              --- Memory map: ---\n  00000000-00001000: /bin/x\n",
        )
        .unwrap();
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.samples[0].location_id, [0x100, 0x200]);
        assert_eq!(p.samples[0].value, [2]);
        assert_eq!(p.mappings.len(), 1);
        assert!(is_threadz(b"\n--- threadz 1 ---\n"));
        let e = parse_threadz(b"--- Thread 7f01 (name: main/1) stack: ---\n0x1\n--- oops\n")
            .unwrap_err();
        assert!(matches!(e, LegacyError::Line { line: 3, .. }), "{e}");
    }

    #[test]
    fn go_count_profiles() {
        assert!(is_count(b"threadcreate profile: total 7\n"));
        assert!(!is_count(b"heap profile: 1: 2 [3: 4] @ heap\n"));
        let p = parse_count(b"goroutine profile: total 3\n3 @ 0x11 0x21\n# 0x10 f\n").unwrap();
        assert_eq!(p.sample_types, [("goroutine", "count")]);
        assert_eq!(p.samples[0].location_id, [0x10, 0x20]);
        assert_eq!(p.samples[0].value, [3]);
        let e = parse_count(b"goroutine profile: total 3\n3 @ \n").unwrap_err();
        assert!(matches!(e, LegacyError::Line { line: 2, .. }), "{e}");
    }
}
