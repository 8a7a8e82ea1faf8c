//! The frame-pointer walk done inside the SIGPROF handler.
//!
//! It starts from the interrupted registers (so the leaf PC is always the
//! first frame) and follows the saved frame-pointer chain. Every read is
//! checked against a table of readable memory built off the signal path (see
//! [`ReadableRanges`]): the walk stays inside the mapping that holds the
//! interrupted stack pointer, frame pointers must grow strictly and be
//! aligned, so a broken chain ends the walk instead of faulting.

use super::ring::{Record, FLAG_NO_STACK, FLAG_TRUNCATED, MAX_DEPTH};

/// Sorted, non-overlapping readable address ranges (from /proc/self/maps).
pub struct ReadableRanges {
    pub ranges: Vec<(u64, u64)>,
    /// Executable mappings (a subset of `ranges`), for checking return addresses.
    pub executable: Vec<(u64, u64)>,
}

impl ReadableRanges {
    /// The range holding `addr`.
    #[inline]
    fn containing(&self, addr: u64) -> Option<(u64, u64)> {
        range_containing(&self.ranges, addr)
    }

    /// Whether `ret` looks like a return address: inside executable memory,
    /// right after a call instruction (x86-64 `call rel32`, or `call` with
    /// an `FF /2` operand of 2 to 7 bytes). Off the signal path only.
    pub fn is_return_address(&self, ret: u64) -> bool {
        let Some((start, _)) = range_containing(&self.executable, ret) else {
            return false;
        };
        if ret < start + 7 || !cfg!(target_arch = "x86_64") {
            return false;
        }
        // SAFETY: [ret - 7, ret) lies inside an executable (readable) mapping.
        let code = unsafe { std::slice::from_raw_parts((ret - 7) as *const u8, 7) };
        let direct = code[2] == 0xE8;
        let indirect = (2..=7).any(|k| code[7 - k] == 0xFF && (code[8 - k] >> 3) & 7 == 2);
        direct || indirect
    }

    /// Readable ranges of this process now, adjacent ones merged.
    pub fn snapshot() -> std::io::Result<ReadableRanges> {
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        Ok(Self::parse(&maps))
    }

    pub fn parse(maps: &str) -> ReadableRanges {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut executable: Vec<(u64, u64)> = Vec::new();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(span), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !perms.starts_with('r') {
                continue;
            }
            let Some((start, end)) = span.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            else {
                continue;
            };
            if perms.as_bytes().get(2) == Some(&b'x') {
                executable.push((start, end));
            }
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => ranges.push((start, end)),
            }
        }
        ranges.sort_unstable();
        executable.sort_unstable();
        ReadableRanges { ranges, executable }
    }
}

#[inline]
fn range_containing(ranges: &[(u64, u64)], addr: u64) -> Option<(u64, u64)> {
    let i = ranges.partition_point(|&(start, _)| start <= addr);
    let (start, end) = *ranges.get(i.checked_sub(1)?)?;
    (addr < end).then_some((start, end))
}

/// Registers of the interrupted context that the walk needs.
#[derive(Clone, Copy, Debug)]
pub struct Registers {
    pub pc: u64,
    pub fp: u64,
    pub sp: u64,
    /// aarch64's link register (the return address of a frameless leaf).
    pub lr: Option<u64>,
}

/// Fills `record` with the stack of `regs`. Async-signal-safe: reads memory
/// only inside `table`'s readable ranges, no allocation, no locks, no syscalls.
///
/// # Safety
/// `table` must describe memory that is still mapped; the interrupted
/// thread's own stack always is while it sits in the signal handler.
#[inline]
pub unsafe fn walk(regs: Registers, table: Option<&ReadableRanges>, record: &mut Record) {
    record.frames[0] = regs.pc;
    let mut depth = 1;
    record.flags = 0;
    record.sp_word = 0;
    let Some((_, stack_end)) = table.and_then(|t| t.containing(regs.sp)) else {
        record.flags |= FLAG_NO_STACK;
        record.depth = 1;
        return;
    };
    if regs.sp % 8 == 0 && regs.sp.saturating_add(8) <= stack_end {
        // SAFETY: [sp, sp + 8) is inside the interrupted thread's stack.
        record.sp_word = unsafe { std::ptr::read_volatile(regs.sp as *const u64) };
    }
    if let Some(lr) = regs.lr {
        // A frameless aarch64 leaf has not saved LR yet: it is the caller.
        // Skipped when the frame record already holds it.
        let saved = read_pair(regs.fp, regs.sp, stack_end).map(|(_, ret)| ret);
        if lr != 0 && saved != Some(lr) {
            record.frames[depth] = lr;
            depth += 1;
        }
    }
    let mut fp = regs.fp;
    let mut low = regs.sp;
    while let Some((next, ret)) = read_pair(fp, low, stack_end) {
        if ret == 0 {
            break;
        }
        if depth == MAX_DEPTH {
            record.flags |= FLAG_TRUNCATED;
            break;
        }
        record.frames[depth] = ret;
        depth += 1;
        if next <= fp {
            break;
        }
        low = fp + 16;
        fp = next;
    }
    record.depth = depth as u32;
}

/// The frame record `[fp] = caller's fp, [fp + 8] = return address`, if it
/// lies inside `[low, end)` and is aligned.
#[inline]
fn read_pair(fp: u64, low: u64, end: u64) -> Option<(u64, u64)> {
    if fp < low || fp % 8 != 0 || fp.checked_add(16)? > end {
        return None;
    }
    // SAFETY: [fp, fp + 16) lies in a range that was readable when the table
    // was built and holds the interrupted thread's own live stack, which
    // cannot be unmapped while that thread is stopped in this handler.
    unsafe {
        let next = std::ptr::read_volatile(fp as *const u64);
        let ret = std::ptr::read_volatile((fp + 8) as *const u64);
        Some((next, ret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_look_up() {
        let maps = "\
1000-2000 r-xp 00000000 08:01 1 /bin/x
2000-3000 rw-p 00000000 00:00 0
4000-5000 ---p 00000000 00:00 0
5000-6000 rw-p 00000000 00:00 0 [stack]
";
        let t = ReadableRanges::parse(maps);
        assert_eq!(t.ranges, vec![(0x1000, 0x3000), (0x5000, 0x6000)]);
        assert_eq!(t.containing(0x2fff), Some((0x1000, 0x3000)));
        assert_eq!(t.containing(0x3000), None);
        assert_eq!(t.containing(0x4500), None);
        assert_eq!(t.containing(0x5000), Some((0x5000, 0x6000)));
        assert_eq!(t.containing(0x10), None);
    }

    #[test]
    fn walks_a_synthetic_frame_chain_and_stops_at_bounds() {
        // Three frame records laid out like a real stack (growing upwards).
        let mut stack = vec![0u64; 32];
        let base = stack.as_mut_ptr() as u64;
        let at = |i: usize| base + 8 * i as u64;
        stack[4] = at(10); // frame 0 -> frame 1
        stack[5] = 0x1111;
        stack[10] = at(20);
        stack[11] = 0x2222;
        stack[20] = 0; // outermost: fp 0 ends the chain after its return address
        stack[21] = 0x3333;
        let table = ReadableRanges {
            ranges: vec![(base, base + 8 * 32)],
            executable: vec![],
        };
        let table = Some(&table);
        let mut record = Record {
            periods: 1,
            flags: 0,
            depth: 0,
            sp_word: 0,
            frames: [0; MAX_DEPTH],
        };
        let regs = Registers {
            pc: 0xabc,
            fp: at(4),
            sp: at(0),
            lr: None,
        };
        // SAFETY: the table describes `stack`, which is alive.
        unsafe { walk(regs, table, &mut record) };
        assert_eq!(
            &record.frames[..record.depth as usize],
            &[0xabc, 0x1111, 0x2222, 0x3333]
        );
        assert_eq!(record.flags, 0);

        // A frame pointer outside the stack's range stops the walk at once.
        let regs = Registers {
            pc: 0xabc,
            fp: 0x10,
            sp: at(0),
            lr: None,
        };
        unsafe { walk(regs, table, &mut record) };
        assert_eq!(record.depth, 1);
        // An unknown stack pointer keeps only the PC.
        let regs = Registers {
            pc: 0xabc,
            fp: at(4),
            sp: 0x10,
            lr: None,
        };
        unsafe { walk(regs, table, &mut record) };
        assert_eq!((record.depth, record.flags), (1, FLAG_NO_STACK));
    }
}
