//! gperftools-style contention profiles: C++ `contentionz`, and Go's
//! `mutex`/`contention` text before 1.8.
//!
//! ```text
//! --- contentionz 1 ---
//! cycles/second = 3201000000
//! sampling period = 100
//! ms since reset = 16502830
//!   19490304       27 @ 0xbccc97 0xc61202 …
//! --- Memory map: ---
//! ```
//!
//! Records are `delay (cycles) count @ stack`. Sample types
//! `contentions/count` and `delay/nanoseconds`, unsampled as pprof does:
//! both multiplied by the sampling period, the delay converted from cycles
//! at `cycles/second`. Every address is moved back by one byte. Java's
//! variant (`format = java`) is not read.

use super::text::{self, addresses, integer, Lines};
use super::{alternatives, maps, raw_sample, Legacy, LegacyError, RawSample, LOCK_DROP};

const RECORD: &str = "`<delay> <count> @ <addresses>`";

/// Whether a first line is a contention profile's header.
pub(crate) fn is_header(line: &[u8]) -> bool {
    [&b"--- contentionz "[..], b"--- mutex:", b"--- contention:"]
        .iter()
        .any(|h| line.starts_with(h))
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let mut lines = Lines::new(bytes).peekable();
    match lines.next() {
        Some((_, first)) if is_header(first.trim_start().as_bytes()) => {}
        Some((n, first)) => return Err(text::bad_line(n, "`--- contentionz …`", &first)),
        None => return Err(text::bad_line(1, "`--- contentionz …`", "")),
    }
    let mut period: i64 = 1;
    let mut cycles_per_second: i64 = 0;
    let mut duration_nanos: i64 = 0;
    // `name = value` attributes, up to the first record.
    while let Some((n, line)) = lines.peek() {
        let (n, line) = (*n, line.trim());
        if line.is_empty() || line.starts_with('#') {
            lines.next();
            continue;
        }
        if line.starts_with("---") {
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            break;
        };
        let value = value.trim();
        let number = |v: &str| {
            text::go_int(v).ok_or_else(|| LegacyError::Value {
                line: n,
                reason: format!("`{}` is not a number", text::excerpt(v)),
            })
        };
        match key.trim() {
            "cycles/second" => cycles_per_second = number(value)?,
            "sampling period" => period = number(value)?,
            "ms since reset" => duration_nanos = number(value)?.wrapping_mul(1_000_000),
            "discarded samples" => {}
            // Java's variant.
            "format" | "resolution" => return super::java::parse(bytes),
            other => {
                return Err(LegacyError::Value {
                    line: n,
                    reason: format!("unknown attribute `{}`", text::excerpt(other)),
                })
            }
        }
        lines.next();
    }
    let mut samples = Vec::new();
    for (n, line) in lines.by_ref() {
        let line = line.trim();
        if line.starts_with("---") {
            if maps::is_sentinel(line) {
                break;
            }
            return Ok(finish(
                samples,
                maps::after_sentinel(lines)?,
                period,
                duration_nanos,
            ));
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(record(n, line, period, cycles_per_second)?);
    }
    let mappings = maps::parse(lines)?;
    Ok(finish(samples, mappings, period, duration_nanos))
}

fn finish(
    samples: Vec<RawSample>,
    mappings: Vec<maps::RawMapping>,
    period: i64,
    duration_nanos: i64,
) -> Legacy {
    Legacy {
        period_type: ("contentions", "count"),
        period,
        sample_types: vec![("contentions", "count"), ("delay", "nanoseconds")],
        duration_nanos,
        samples,
        mappings,
        drop_frames: alternatives(LOCK_DROP),
        ..Legacy::default()
    }
}

fn record(
    n: usize,
    line: &str,
    period: i64,
    cycles_per_second: i64,
) -> Result<RawSample, LegacyError> {
    let (counts, stack) = line
        .split_once('@')
        .ok_or_else(|| text::bad_line(n, RECORD, line))?;
    let mut fields = counts.split_ascii_whitespace();
    let (Some(delay), Some(count), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(text::bad_line(n, RECORD, line));
    };
    let (mut delay, mut count) = (integer(n, delay, false)?, integer(n, count, false)?);
    if period > 0 {
        if cycles_per_second > 0 {
            let ghz = cycles_per_second as f64 / 1e9;
            delay = (delay as f64 * period as f64 / ghz) as i64;
        }
        count = count.wrapping_mul(period);
    }
    let addrs = addresses(n, stack)?;
    Ok(raw_sample(
        addrs.into_iter().map(|a| a.wrapping_sub(1)).collect(),
        vec![count, delay],
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_scaled_by_the_period_and_clock() {
        let p = parse(
            b"--- contentionz 1 ---\n\
              cycles/second = 2000000000\n\
              sampling period = 100\n\
              ms since reset = 5\n\
              \x20 4000 3 @ 0x11 0x21\n\
              --- Memory map: ---\n\
              00000000-00003000: /bin/x\n",
        )
        .unwrap();
        assert_eq!(p.samples[0].value, [300, 200_000]);
        assert_eq!(p.samples[0].location_id, [0x10, 0x20]);
        assert_eq!(p.duration_nanos, 5_000_000);
        assert_eq!(p.mappings.len(), 1);
    }

    #[test]
    fn bad_input_is_named() {
        let e = parse(b"--- contentionz 1 ---\nbogus = 1\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: unknown attribute `bogus`");
        let e = parse(b"--- contentionz 1 ---\n1 2 3 @ 0x1\n").unwrap_err();
        assert!(matches!(e, LegacyError::Line { line: 2, .. }), "{e}");
        let e = parse(b"--- contentionz 1 ---\nformat = java\n").unwrap_err();
        assert!(matches!(e, LegacyError::Unsupported(_)));
        assert_eq!(text::go_int("0x10"), Some(16));
        assert_eq!(text::go_int("010"), Some(8));
        assert_eq!(text::go_int("x"), None);
    }
}
