//! gperftools' (tcmalloc's) heap profile text, and Go's before 1.9: heapz,
//! growthz and fragmentationz.
//!
//! ```text
//! heap profile:    144:  8498176 [   144:  8498176] @ heapz_v2/524288
//!      1:     9216 [     1:     9216] @ 0xc635c8 0x42ecc3 …
//! --- Memory map: ---  (or MAPPED_LIBRARIES:)
//! ```
//!
//! Each record is `in-use count: bytes [allocated count: bytes] @ stack`.
//! The header's tag says how it was sampled, read as pprof reads it:
//! `heap_v2`/`heapz_v2` with the rate `R` after the slash are Poisson
//! samples, unsampled with `R` ([`unsample`]; no scaling
//! when `R` ≤ 1 or absent); `heap` (Go's) writes twice the rate;
//! `heapprofile` (gperftools' local heap profiler) records every allocation;
//! `growthz` and `fragmentationz` are not sampled. Sample types
//! `alloc_objects`, `alloc_space`, `inuse_objects`, `inuse_space` when the
//! header's allocated totals differ from the in-use ones (and are not 0),
//! else `objects`, `space`. Each sample carries its average block size as
//! the numeric label `bytes`. Every address is moved back by one byte.

use super::text::{self, addresses, count_pairs, Lines};
use super::{
    alternatives, maps, raw_sample, unsample, Legacy, LegacyError, RawSample, ALLOC_DROP,
    ALLOC_KEEP,
};

const HEADER: &str = "`heap profile: <count>: <bytes> [<count>: <bytes>] @ <type>[/<rate>]`";
const RECORD: &str = "`<count>: <bytes> [<count>: <bytes>] @ <addresses>`";

/// How the records were sampled.
enum Sampling {
    /// Poisson, once every `rate` bytes on average.
    Poisson(i64),
    /// Every allocation, or not a sample at all.
    None,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let mut lines = Lines::new(bytes);
    let (number, first) = lines.next().unwrap_or((1, "".into()));
    if first.trim_start().starts_with("--- heapz ") {
        return super::java::parse(bytes);
    }
    let (totals, tag) = first
        .trim()
        .strip_prefix("heap profile:")
        .and_then(|rest| rest.split_once('@'))
        .ok_or_else(|| text::bad_line(number, HEADER, &first))?;
    let tag = tag.trim();
    let (kind, rate) = match tag.split_once('/') {
        Some((kind, rate)) => (kind, rate),
        None => (tag, ""),
    };
    let rate = match rate {
        "" => 0,
        r => text::integer(number, r, false)?,
    };
    let growth = matches!(
        kind,
        "growthz" | "growth" | "fragmentationz" | "fragmentation"
    );
    let t = count_pairs(number, totals, HEADER)?;
    let (sampling, period, has_alloc) = if growth {
        (Sampling::None, 1, false)
    } else {
        let has_alloc = (t[2] != t[0] && t[2] != 0) || (t[3] != t[1] && t[3] != 0);
        match kind {
            "heapz_v2" | "heap_v2" => (Sampling::Poisson(rate), rate, has_alloc),
            "heap" => (Sampling::Poisson(rate / 2), rate / 2, has_alloc),
            "heapprofile" => (Sampling::None, 1, has_alloc),
            _ => {
                return Err(LegacyError::Value {
                    line: number,
                    reason: format!(
                        "unknown heap profile type `{}` (heap_v2, heapz_v2, heap, heapprofile, growthz or fragmentationz)",
                        text::excerpt(kind)
                    ),
                })
            }
        }
    };

    let mut samples = Vec::new();
    for (number, line) in lines.by_ref() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if maps::is_sentinel(line) {
            break;
        }
        samples.push(record(number, line, &sampling, has_alloc)?);
    }
    let mappings = maps::parse(lines)?;
    Ok(Legacy {
        period_type: ("space", "bytes"),
        period,
        sample_types: if has_alloc {
            vec![
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ]
        } else {
            vec![("objects", "count"), ("space", "bytes")]
        },
        samples,
        mappings,
        drop_frames: alternatives(ALLOC_DROP),
        keep_frames: alternatives(ALLOC_KEEP),
        ..Legacy::default()
    })
}

fn record(
    number: usize,
    line: &str,
    sampling: &Sampling,
    has_alloc: bool,
) -> Result<RawSample, LegacyError> {
    let (counts, stack) = line
        .split_once('@')
        .ok_or_else(|| text::bad_line(number, RECORD, line))?;
    let [n1, s1, n2, s2] = count_pairs(number, counts, RECORD)?;
    let mut values = Vec::with_capacity(4);
    let mut block = 0;
    let mut add = |count: i64, size: i64, what: &str| {
        if count == 0 && size != 0 {
            return Err(LegacyError::Value {
                line: number,
                reason: format!("{what} count is 0 but its bytes are {size}"),
            });
        }
        let (mut count, mut size) = (count, size);
        if count != 0 {
            block = size.wrapping_div(count);
            if let Sampling::Poisson(rate) = *sampling {
                if rate > 1 {
                    (count, size) = unsample(count, size, rate as f64);
                }
            }
        }
        values.extend([count, size]);
        Ok(())
    };
    if has_alloc {
        add(n2, s2, "allocated")?;
    }
    add(n1, s1, "in-use")?;
    let addrs = addresses(number, stack)?;
    Ok(raw_sample(
        addrs.into_iter().map(|a| a.wrapping_sub(1)).collect(),
        values,
        Some(block),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::bytes_label;
    use super::*;

    #[test]
    fn heap_v2_records_are_unsampled() {
        let p = parse(
            b"heap profile: 2: 1048576 [ 2: 1048576] @ heap_v2/524288\n\
              2: 1048576 [2: 1048576] @ 0x1001 0x2001\n\
              --- Memory map: ---\n\
              00001000-00003000: /bin/x\n",
        )
        .unwrap();
        let scale = 1.0 / (1.0 - (-1f64).exp());
        assert_eq!(p.sample_types, [("objects", "count"), ("space", "bytes")]);
        assert_eq!(p.samples[0].location_id, [0x1000, 0x2000]);
        assert_eq!(
            p.samples[0].value,
            [(2.0 * scale) as i64, (1048576.0 * scale) as i64]
        );
        assert_eq!(bytes_label(&p.samples[0]), Some(524288));
        assert_eq!(p.mappings.len(), 1);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse(b"heap profile: 1: 2 [1: 2] @ heap_v2/2\n1: 2 [1: 2] 0x10\n").unwrap_err();
        assert!(matches!(e, LegacyError::Line { line: 2, .. }), "{e}");
        let e = parse(b"heap profile: 1: 2 [1: 2] @ heap_v2/2\n0: 2 [0: 0] @ 0x10\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: in-use count is 0 but its bytes are 2"
        );
        let e = parse(b"heap profile: 1: 2 [1: 2] @ heap_v2/2\n1: 2 [0: 0] @ 0xzz\n").unwrap_err();
        assert!(matches!(e, LegacyError::Value { line: 2, .. }), "{e}");
        let e = parse(b"heap profile: 1: 2 [1: 2] @ weird\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown heap profile type `weird`"),
            "{e}"
        );
        assert!(parse(b"heap profile: x\n").is_err());
        // i64::MIN / -1 would overflow: no panic.
        let odd =
            b"heap profile: 1: 2 [1: 2] @ heapprofile\n-1: -9223372036854775808 [0: 0] @ 0x1\n";
        assert!(parse(odd).is_ok());
    }
}
