//! From a runtime address to the address the ELF file's symbols and DWARF
//! use, through the profile's mapping (where the file was loaded, and from
//! which file offset) and the file's `PT_LOAD` segments.
//!
//! This follows google/pprof's `elfexec.GetBase`, `ProgramHeadersForMapping`
//! and `HeaderForFileOffset` for user-space binaries: the segment that the
//! mapping maps is found by file offset, and a runtime address `x` is then
//! `x − start + offset − p_offset + p_vaddr` in the file, for position-
//! independent executables and shared libraries as for fixed-address ones
//! (where the base comes out 0). Kernel images are not handled.
//!
//! A separate debug file (`objcopy --only-keep-debug`) keeps the segments'
//! addresses but zeroes their file offsets; when no file with real offsets
//! is at hand, the mapped segment is taken to be the executable one (or the
//! first, for a mapping from file offset 0) and to start at the mapping's
//! first page, which is how the loader maps it.

use super::elf::{ElfInfo, ElfType, Segment};

/// The loader's page size (pprof assumes the same).
const PAGE: u64 = 4096;

/// The profile's view of where the file was loaded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    pub(crate) start: u64,
    pub(crate) limit: u64,
    pub(crate) offset: u64,
}

/// The base to subtract from runtime addresses of the mapping (wrapping),
/// given one of them (`addr`), or why there is none.
pub(crate) fn base(elf: &ElfInfo, m: Placement, addr: u64) -> Result<u64, String> {
    if m.start == 0 && m.offset == 0 && (m.limit == u64::MAX || m.limit == 0) {
        // A fake mapping over all addresses: already file addresses.
        return Ok(0);
    }
    if !elf.has_load_offsets() {
        return debug_file_base(elf, m);
    }
    let segment = segment_for(&elf.loads, m, addr)?;
    match (elf.elf_type, segment) {
        (ElfType::Exec, None) => Ok(0),
        (ElfType::Exec, Some(p)) if m.start > 0 && m.start < 1 << 63 => Ok(with_segment(m, p)),
        (ElfType::Exec, Some(_)) => Err("a kernel image (not supported)".into()),
        (ElfType::Rel, _) if m.offset != 0 => {
            Err("a relocatable object mapped at a file offset".into())
        }
        (ElfType::Rel, _) => Ok(m.start),
        (ElfType::Dyn, None) => Ok(m.start.wrapping_sub(m.offset)),
        (ElfType::Dyn, Some(p)) => Ok(with_segment(m, p)),
        (ElfType::Other, _) => Err("neither an executable nor a shared object".into()),
    }
}

/// `start − offset + p_offset − p_vaddr`.
fn with_segment(m: Placement, p: &Segment) -> u64 {
    m.start
        .wrapping_sub(m.offset)
        .wrapping_add(p.offset)
        .wrapping_sub(p.vaddr)
}

/// pprof's `findProgramHeader`: the `PT_LOAD` segment the mapping maps,
/// `None` when the file has none.
fn segment_for(loads: &[Segment], m: Placement, addr: u64) -> Result<Option<&Segment>, String> {
    if loads.is_empty() {
        return Ok(None);
    }
    if m.start >= m.limit || m.limit >= 1 << 63 {
        return Ok(loads.iter().find(|p| p.executable));
    }
    let headers = headers_for_mapping(loads, m.offset, m.limit - m.start);
    match headers.as_slice() {
        [] => Err(format!(
            "no PT_LOAD segment matches the mapping at file offset {:#x}",
            m.offset
        )),
        [one] => Ok(Some(one)),
        many => {
            let file_offset = addr.wrapping_sub(m.start).wrapping_add(m.offset);
            let mut found = many
                .iter()
                .filter(|h| file_offset >= h.offset && file_offset < h.offset + h.memsz);
            match (found.next(), found.next()) {
                (Some(h), None) => Ok(Some(h)),
                (None, _) => Err(format!(
                    "no PT_LOAD segment holds file offset {file_offset:#x}"
                )),
                (Some(_), Some(_)) => Err(format!(
                    "two PT_LOAD segments hold file offset {file_offset:#x}"
                )),
            }
        }
    }
}

/// pprof's `ProgramHeadersForMapping`.
fn headers_for_mapping(loads: &[Segment], map_off: u64, map_size: u64) -> Vec<&Segment> {
    let map_limit = map_off.saturating_add(map_size);
    loads
        .iter()
        .filter(|p| {
            if p.filesz == 0 {
                return false;
            }
            let seg_limit = p.offset.saturating_add(p.memsz);
            if !(map_off < seg_limit && p.offset < map_limit) {
                return false;
            }
            let align_mask = p.align.max(1) - 1;
            let aligned = p.offset.saturating_sub(p.vaddr & align_mask);
            if map_off < aligned {
                return false;
            }
            !(map_off > p.offset
                && seg_limit < map_off.saturating_add(PAGE)
                && map_limit >= seg_limit.saturating_add(PAGE))
        })
        .collect()
}

/// The base from a debug file alone (segment addresses, no offsets).
fn debug_file_base(elf: &ElfInfo, m: Placement) -> Result<u64, String> {
    if elf.elf_type == ElfType::Rel {
        return Ok(m.start);
    }
    let segment = if m.offset == 0 {
        elf.loads
            .iter()
            .filter(|p| p.memsz > 0)
            .min_by_key(|p| p.vaddr)
    } else {
        elf.loads.iter().find(|p| p.executable && p.memsz > 0)
    };
    match segment {
        Some(p) => Ok(m.start.wrapping_sub(p.vaddr & !(PAGE - 1))),
        None if elf.elf_type == ElfType::Exec => Ok(0),
        None => Err("the debug file has no loadable segment to place the mapping".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(elf_type: ElfType, loads: Vec<Segment>) -> ElfInfo {
        ElfInfo {
            path: "x".into(),
            build_id: None,
            elf_type,
            loads,
            has_dwarf: false,
            has_symtab: false,
            alt_link: None,
            debug_link: None,
            size: 0,
            modified: None,
        }
    }

    fn seg(offset: u64, vaddr: u64, size: u64, executable: bool) -> Segment {
        Segment {
            offset,
            vaddr,
            filesz: size,
            memsz: size,
            align: 0x1000,
            executable,
        }
    }

    // The cases of pprof's elfexec_test.go TestGetBase (user space).
    #[test]
    fn bases_as_pprof_computes_them() {
        let exec = info(ElfType::Exec, vec![seg(0, 0x400000, 0x1000, true)]);
        let m = |start, limit, offset| Placement {
            start,
            limit,
            offset,
        };
        assert_eq!(base(&exec, m(0x400000, 0x401000, 0), 0x400100), Ok(0));
        // Fake mapping over everything.
        assert_eq!(base(&exec, m(0, u64::MAX, 0), 0x10), Ok(0));
        // A PIE (gcc's layout): text segment at file offset and address 0x1000.
        let pie = info(
            ElfType::Dyn,
            vec![
                seg(0, 0, 0x650, false),
                seg(0x1000, 0x1000, 0x1e5, true),
                seg(0x2000, 0x2000, 0xfc, false),
            ],
        );
        let start = 0x5555_5555_5000;
        assert_eq!(
            base(&pie, m(start, start + 0x1000, 0x1000), start + 0x60),
            Ok(0x5555_5555_4000)
        );
        // lld's layout: the text segment's address is a page above its
        // offset; the loader maps it from its page-aligned offset.
        let lld = info(
            ElfType::Dyn,
            vec![seg(0, 0, 0x4f00, false), seg(0x4f00, 0x5f00, 0x3000, true)],
        );
        let start = 0x7000_0000;
        assert_eq!(
            base(&lld, m(start, start + 0x4000, 0x4000), start + 0x1000),
            Ok(start - 0x5000)
        );
    }
}
