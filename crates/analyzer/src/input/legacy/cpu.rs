//! gperftools' binary CPU profile (`CPUPROFILE=…`, `ProfilerStart`), which
//! Go before 1.9 also wrote.
//!
//! Machine words, 32 or 64 bits, in the writer's byte order: a header
//! `0, 3, 0, period (µs), 0` (a third word of 1 marks a Java profile,
//! whose frames are named after the records: [`java`]), then records `count, depth, pc…`, then the end marker
//! `0, 1, 0`, then the process's memory map as text. The layout is found
//! as pprof finds it: the first of 32-bit little-endian, 32-bit big-endian,
//! 64-bit little-endian, 64-bit big-endian whose header reads right.
//!
//! Sample types `samples/count` and `cpu/nanoseconds` (count × period).
//! Callers' return addresses are moved back by one byte onto the call; the
//! leaf, taken from the signal context, is not. As pprof does, a frame
//! that nearly every stack has second (the signal handler's, when all but
//! one sample in 32 share it) is removed, up to twice, and a leaf
//! duplicated by the unwinder (`pc`, then `pc + 1` adjusted) is dropped.

use super::text::Lines;
use super::{alternatives, raw_sample, Legacy, LegacyError, RawSample, CPU_DROP};
use super::{java, maps};
use rustc_hash::FxHashMap;

/// Word size and byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    size: usize,
    big_endian: bool,
}

impl Layout {
    const ALL: [Layout; 4] = [
        Layout {
            size: 4,
            big_endian: false,
        },
        Layout {
            size: 4,
            big_endian: true,
        },
        Layout {
            size: 8,
            big_endian: false,
        },
        Layout {
            size: 8,
            big_endian: true,
        },
    ];

    fn word(self, bytes: &[u8], at: usize) -> Option<u64> {
        let b = bytes.get(at..at.checked_add(self.size)?)?;
        Some(match (self.size, self.big_endian) {
            (4, false) => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
            (4, true) => u64::from(u32::from_be_bytes(b.try_into().ok()?)),
            (_, false) => u64::from_le_bytes(b.try_into().ok()?),
            (_, true) => u64::from_be_bytes(b.try_into().ok()?),
        })
    }
}

/// The header's layout, whether it is a Java profile, and the period in
/// microseconds, if `bytes` start with a CPU profile header.
pub(crate) fn header(bytes: &[u8]) -> Option<(Layout, bool, u64)> {
    Layout::ALL.into_iter().find_map(|l| {
        let w: Vec<u64> = (0..5)
            .map(|i| l.word(bytes, i * l.size))
            .collect::<Option<_>>()?;
        (w[0] == 0 && w[1] == 3 && w[2] <= 1 && w[3] > 0 && w[4] == 0).then_some((
            l,
            w[2] == 1,
            w[3],
        ))
    })
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Legacy, LegacyError> {
    let (layout, java, period_us) = header(bytes).ok_or(LegacyError::Binary {
        offset: 0,
        reason: "no CPU profile header (words 0, 3, 0, period, 0)",
    })?;
    let period = (period_us as i64).wrapping_mul(1000);
    let w = layout.size;
    let mut at = 5 * w;
    let mut samples = Vec::new();
    while at < bytes.len() {
        let cut = |offset| LegacyError::Binary {
            offset,
            reason: "the profile is cut short inside a record",
        };
        let count = layout.word(bytes, at).ok_or(cut(at))?;
        let depth = layout.word(bytes, at + w).ok_or(cut(at + w))?;
        let pcs_at = at + 2 * w;
        let room = (bytes.len().saturating_sub(pcs_at) / w) as u64;
        if depth > room {
            return Err(LegacyError::Binary {
                offset: at + w,
                reason: "a stack is deeper than the rest of the file",
            });
        }
        let addrs: Vec<u64> = (0..depth as usize)
            .map(|i| layout.word(bytes, pcs_at + i * w).unwrap_or_default())
            .collect();
        at = pcs_at + depth as usize * w;
        if count == 0 && depth == 1 && addrs[0] == 0 {
            break;
        }
        // Java's frames are ids, not return addresses.
        let addrs = addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| if i > 0 && !java { a.wrapping_sub(1) } else { a })
            .collect();
        let count = count as i64;
        samples.push(raw_sample(
            addrs,
            vec![count, count.wrapping_mul(period)],
            None,
        ));
    }
    if java {
        return java::parse_cpu(samples, period, bytes.get(at..).unwrap_or_default());
    }
    strip_handler_frames(&mut samples);
    let mappings = maps::parse(Lines::new(bytes.get(at..).unwrap_or_default()))?;
    for s in &mut samples {
        if s.location_id.len() > 1 && s.location_id[0] == s.location_id[1].wrapping_add(1) {
            s.location_id.remove(1);
        }
    }
    Ok(Legacy {
        period_type: ("cpu", "nanoseconds"),
        period,
        sample_types: vec![("samples", "count"), ("cpu", "nanoseconds")],
        samples,
        mappings,
        drop_frames: alternatives(CPU_DROP),
        ..Legacy::default()
    })
}

/// Removes, up to twice, the second frame that all stacks but one in 32
/// share: the signal handler's frame, not the program's.
fn strip_handler_frames(samples: &mut [RawSample]) {
    let margin = samples.len() / 32;
    for _ in 0..2 {
        let mut second: FxHashMap<u64, usize> = FxHashMap::default();
        for s in samples.iter().filter(|s| s.location_id.len() > 1) {
            *second.entry(s.location_id[1]).or_default() += 1;
        }
        let Some((&common, _)) = second.iter().find(|(_, &n)| n >= samples.len() - margin) else {
            continue;
        };
        for s in samples.iter_mut() {
            if s.location_id.len() > 1 && s.location_id[1] == common {
                s.location_id.remove(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(layout: Layout, ws: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &w in ws {
            match (layout.size, layout.big_endian) {
                (4, false) => out.extend_from_slice(&(w as u32).to_le_bytes()),
                (4, true) => out.extend_from_slice(&(w as u32).to_be_bytes()),
                (_, false) => out.extend_from_slice(&w.to_le_bytes()),
                (_, true) => out.extend_from_slice(&w.to_be_bytes()),
            }
        }
        out
    }

    #[test]
    fn reads_every_word_layout() {
        for layout in Layout::ALL {
            let mut b = words(
                layout,
                &[
                    0, 3, 0, 10_000, 0, 5, 2, 0x1000, 0x2001, 1, 1, 0x3000, 0, 1, 0,
                ],
            );
            b.extend_from_slice(b"00001000-00003000 r-xp 00000000 00:00 0 /bin/x\n");
            let p = parse(&b).unwrap();
            assert_eq!(p.period, 10_000_000);
            let sample =
                |addrs: &[u64], n| raw_sample(addrs.to_vec(), vec![n, n * 10_000_000], None);
            assert_eq!(
                p.samples,
                [sample(&[0x1000, 0x2000], 5), sample(&[0x3000], 1)],
                "{layout:?}"
            );
            assert_eq!(p.mappings.len(), 1);
        }
    }

    #[test]
    fn a_second_frame_on_every_stack_is_the_handler_s() {
        let l = Layout::ALL[2];
        let stacks = |records: &[u64]| -> Vec<Vec<u64>> {
            let b = words(l, &[&[0, 3, 0, 100, 0][..], records].concat());
            let p = parse(&b).unwrap();
            p.samples.iter().map(|s| s.location_id.clone()).collect()
        };
        #[rustfmt::skip]
        let handler = stacks(&[
            1, 3, 0x10, 0x901, 0x21,
            1, 3, 0x30, 0x901, 0x41,
            1, 3, 0x50, 0x901, 0x61,
        ]);
        assert_eq!(
            handler,
            [vec![0x10, 0x20], vec![0x30, 0x40], vec![0x50, 0x60]]
        );
        // A leaf the unwinder repeated: the leaf's pc, then again as a
        // return address (moved back by one).
        #[rustfmt::skip]
        let repeated = stacks(&[
            1, 3, 0x50, 0x50, 0x61,
            1, 3, 0x70, 0x81, 0x91,
        ]);
        assert_eq!(repeated, [vec![0x50, 0x60], vec![0x70, 0x80, 0x90]]);
    }

    #[test]
    fn hostile_records_are_errors() {
        let l = Layout::ALL[2];
        let deep = words(l, &[0, 3, 0, 100, 0, 1, u64::MAX, 0x1000]);
        assert!(matches!(
            parse(&deep),
            Err(LegacyError::Binary { offset: 48, .. })
        ));
        let mut cut = words(l, &[0, 3, 0, 100, 0, 1, 1, 0x1000]);
        cut.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            parse(&cut),
            Err(LegacyError::Binary { offset: 64, .. })
        ));
    }
}
