//! The unwind tables of every loaded ELF module (the executable, shared
//! libraries, the vDSO), copied into memory the agent owns.
//!
//! Tables are read from each module's *memory*, not its file: the program
//! headers at the module's base give `PT_GNU_EH_FRAME` (`.eh_frame_hdr`),
//! whose header points at `.eh_frame`; both are copied with
//! [`memory::copy_all`], so a module unloaded meanwhile (`dlclose`) gives a
//! short or empty copy, never a fault, and a file replaced on disk (a
//! deploy) cannot give tables that do not match the code. The copies stay
//! valid after `dlclose`: samples taken before it still unwind.
//!
//! Built off the signal path (it reads `/proc/self/maps` and allocates);
//! rebuilt when a sample's address is in no known module (after `dlopen`).

use std::ops::Range;
use std::sync::Arc;

use framehop::{ExplicitModuleSectionInfo, Module};

use super::memory;
use crate::elf::{u16_at, u32_at, u64_at};
use crate::process::maps::{parse_maps, Mapping};

#[cfg(any(target_arch = "aarch64", test))]
mod ra_state;

/// Bytes of one module's table, shared by every unwinder built from it.
pub(crate) type Bytes = Arc<[u8]>;

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;
/// Larger tables than this are not copied (no real module comes close).
const MAX_TABLE: u64 = 256 << 20;

/// One module, ready for framehop.
pub(crate) struct LoadedModule {
    /// Its executable code, `[start, end)`.
    pub(crate) code: Range<u64>,
    pub(crate) module: Module<Bytes>,
}

/// The modules mapped now, in address order, and the executable ranges
/// that have no unwind table (counted, so a profile can say so).
pub(crate) fn load() -> (Vec<LoadedModule>, usize) {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return (Vec::new(), 0);
    };
    let maps = parse_maps(&text);
    let mut modules = Vec::new();
    let mut without_tables = 0;
    let mut seen: Vec<u64> = Vec::new();
    for m in maps.iter().filter(|m| m.executable) {
        if !(m.is_file_backed() || m.path == "[vdso]") {
            continue; // anonymous code (JIT): no table to read
        }
        let Some(base) = elf_base(&maps, m) else {
            without_tables += 1;
            continue;
        };
        if seen.contains(&base) {
            continue; // a module with several executable mappings
        }
        seen.push(base);
        match read_module(base, &m.path) {
            Some(module) => modules.push(module),
            None => without_tables += 1,
        }
    }
    modules.sort_by_key(|m| m.code.start);
    (modules, without_tables)
}

/// The executable file mappings now (start, end, inode): what [`load`]
/// would build tables from, cheap to compare.
pub(crate) fn executable_mappings() -> Vec<(u64, u64, u64)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    parse_maps(&text)
        .into_iter()
        .filter(|m| m.executable && (m.is_file_backed() || m.path == "[vdso]"))
        .map(|m| (m.start, m.end, m.inode))
        .collect()
}

/// Where the ELF header of `code`'s file is mapped: the lowest mapping of
/// the same file at file offset 0 (the vDSO is one mapping that starts with it).
fn elf_base(maps: &[Mapping], code: &Mapping) -> Option<u64> {
    if code.path == "[vdso]" {
        return Some(code.start);
    }
    maps.iter()
        .filter(|m| m.path == code.path && m.inode == code.inode && m.offset == 0)
        .filter(|m| m.start <= code.start)
        .map(|m| m.start)
        .max()
}

/// A 64-bit little-endian ELF program header.
struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    memsz: u64,
}

fn read_module(base: u64, name: &str) -> Option<LoadedModule> {
    let header = memory::copy_all(base, 64);
    // \x7fELF, 64-bit, little-endian: the only kind the agent runs on.
    if header.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return None;
    }
    let phoff = u64_at(&header, 0x20)?;
    let phentsize = u64::from(u16_at(&header, 0x36)?);
    let phnum = u64::from(u16_at(&header, 0x38)?);
    if phentsize < 56 || phnum == 0 || phnum > 256 {
        return None;
    }
    let table = memory::copy_all(base.checked_add(phoff)?, (phentsize * phnum) as usize);
    let segments: Vec<Segment> = (0..phnum as usize)
        .filter_map(|i| {
            let at = i * phentsize as usize;
            Some(Segment {
                kind: u32_at(&table, at)?,
                flags: u32_at(&table, at + 4)?,
                offset: u64_at(&table, at + 8)?,
                vaddr: u64_at(&table, at + 16)?,
                memsz: u64_at(&table, at + 40)?,
            })
        })
        .collect();
    // The load bias: `base` holds file offset 0 of the first PT_LOAD.
    let first = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .min_by_key(|s| s.offset)?;
    let bias = base.checked_sub(first.vaddr.checked_sub(first.offset)?)?;
    let code = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD && s.flags & PF_X != 0)
        .map(|s| (s.vaddr, s.vaddr.saturating_add(s.memsz)))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))?;
    let hdr_segment = segments.iter().find(|s| s.kind == PT_GNU_EH_FRAME)?;
    let hdr_svma = hdr_segment.vaddr;
    let hdr = memory::copy_all(
        bias.checked_add(hdr_svma)?,
        hdr_segment.memsz.min(MAX_TABLE) as usize,
    );
    let eh_frame_svma = eh_frame_address(&hdr, hdr_svma)?;
    // `.eh_frame` ends at the latest where its segment does; bytes after its
    // terminator are never read.
    let holder = segments.iter().find(|s| {
        s.kind == PT_LOAD && s.vaddr <= eh_frame_svma && eh_frame_svma < s.vaddr + s.memsz
    })?;
    let len = (holder.vaddr + holder.memsz - eh_frame_svma).min(MAX_TABLE);
    let eh_frame = memory::copy_all(bias.checked_add(eh_frame_svma)?, len as usize);
    if eh_frame.is_empty() {
        return None;
    }
    #[cfg(target_arch = "aarch64")]
    let eh_frame = {
        let mut eh_frame = eh_frame;
        ra_state::drop_ra_state_instructions(&mut eh_frame);
        eh_frame
    };
    let section_info = ExplicitModuleSectionInfo::<Bytes> {
        base_svma: 0,
        eh_frame_svma: Some(eh_frame_svma..eh_frame_svma + eh_frame.len() as u64),
        eh_frame: Some(eh_frame.into()),
        eh_frame_hdr_svma: Some(hdr_svma..hdr_svma + hdr.len() as u64),
        eh_frame_hdr: Some(hdr.into()),
        ..Default::default()
    };
    let code = bias.checked_add(code.0)?..bias.checked_add(code.1)?;
    Some(LoadedModule {
        code: code.clone(),
        module: Module::new(name.to_string(), code, bias, section_info),
    })
}

/// The SVMA of `.eh_frame`, from the `eh_frame_ptr` field of an
/// `.eh_frame_hdr` that starts at `hdr_svma` (version 1; the pointer
/// encodings linkers use: absolute, pc-relative or data-relative, 4 or 8
/// bytes).
fn eh_frame_address(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
    if *hdr.first()? != 1 {
        return None;
    }
    let encoding = *hdr.get(1)?;
    let field = 4usize;
    let value = match encoding & 0x0f {
        0x03 => u64::from(u32_at(hdr, field)?),
        0x0b => u32_at(hdr, field)? as i32 as i64 as u64,
        0x04 | 0x0c => u64_at(hdr, field)?,
        _ => return None,
    };
    let base = match encoding & 0x70 {
        0x00 => 0,
        0x10 => hdr_svma + field as u64, // pc-relative: the field's own address
        0x30 => hdr_svma,                // data-relative: the header's start
        _ => return None,
    };
    Some(base.wrapping_add(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_test_binary_and_libc_with_their_tables() {
        memory::remember_pid();
        let (modules, _) = load();
        let here = finds_the_test_binary_and_libc_with_their_tables as *const () as u64;
        assert!(
            modules.iter().any(|m| m.code.contains(&here)),
            "this function's module"
        );
        let strlen = libc::strlen as *const () as u64;
        assert!(
            modules.iter().any(|m| m.code.contains(&strlen)),
            "libc: {:x?}",
            modules.iter().map(|m| &m.code).collect::<Vec<_>>()
        );
    }

    #[test]
    fn decodes_eh_frame_pointer_encodings() {
        // pcrel sdata4: -16 from the field at hdr + 4.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1000 + 4 - 16));
        // absolute udata8.
        let mut hdr = vec![1, 0x04, 0x03, 0x3b];
        hdr.extend_from_slice(&0x4000u64.to_le_bytes());
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x4000));
        // Unknown version or encoding: none.
        assert_eq!(eh_frame_address(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x50, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1], 0), None);
    }
}
