//! The agent's reader of ELF files: the file header, program headers, notes
//! and section headers of a file on disk. [`crate::process::maps`] reads the
//! GNU build ID of each mapped file with it, [`crate::symbolize`] the section
//! headers that locate symbol tables and debug info. (The unwinder reads
//! program headers too, from a module's image in memory rather than its
//! file: `unwind/modules.rs`.)
//!
//! Files are read with `pread` ([`read_at`], at most 1 MiB a read) and every
//! offset and size is checked, so a truncated or corrupt file reads as
//! `None`, never as a panic or a huge allocation. No `object` dependency:
//! what is needed is a few table walks away from the ELF header.
//!
//! Build IDs are read from files of either class and byte order;
//! [`ElfFile`] reads 64-bit little-endian files only (what the agent runs on;
//! anything else reads as "not ELF"), and only their headers and section
//! names, never a section's contents unless asked.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(crate) const SHT_SYMTAB: u32 = 2;
pub(crate) const SHT_DYNSYM: u32 = 11;
const SHT_NOTE: u32 = 7;
const SHF_COMPRESSED: u64 = 0x800;
const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;
/// Upper bound on one read: real tables are KiBs (a batch of symbols
/// 96 KiB); this only stops a corrupt size field from allocating GBs.
const MAX_READ: u64 = 1 << 20;

/// Exactly `len` bytes at `offset` (at most [`MAX_READ`]), or `None`.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    if len > MAX_READ {
        return None;
    }
    let mut buf = vec![0; usize::try_from(len).ok()?];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// The fields of the ELF header that locate its tables.
struct Header {
    /// ELFCLASS64.
    wide: bool,
    /// ELFDATA2LSB.
    little: bool,
    program_table: Table,
    section_table: Table,
    /// Index of the section holding the section names.
    shstrndx: u16,
}

/// Where a header table is: file offset, entry size, entry count.
struct Table(u64, u16, u16);

/// One program header: the fields the note reader uses.
struct ProgramHeader {
    kind: u32,
    offset: u64,
    size: u64,
    align: u64,
}

/// One section header, with its name ([`ElfFile`] reads names; elsewhere
/// it is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub align: u64,
    pub entsize: u64,
}

impl Section {
    /// Whether the contents are compressed (`SHF_COMPRESSED`, gABI).
    pub fn is_compressed(&self) -> bool {
        self.flags & SHF_COMPRESSED != 0
    }
}

impl Header {
    /// `None` for a file that is not ELF or is cut short in its header.
    fn read(file: &File) -> Option<Header> {
        let ident = read_at(file, 0, 16)?;
        if ident[..4] != *b"\x7fELF" {
            return None;
        }
        let wide = match ident[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match ident[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let bytes = read_at(file, 0, if wide { 64 } else { 52 })?;
        let h = Fields {
            bytes: &bytes,
            little,
        };
        let (program_table, section_table, shstrndx) = if wide {
            (
                Table(h.u64(0x20)?, h.u16(0x36)?, h.u16(0x38)?),
                Table(h.u64(0x28)?, h.u16(0x3a)?, h.u16(0x3c)?),
                h.u16(0x3e)?,
            )
        } else {
            (
                Table(h.u32(0x1c)?.into(), h.u16(0x2a)?, h.u16(0x2c)?),
                Table(h.u32(0x20)?.into(), h.u16(0x2e)?, h.u16(0x30)?),
                h.u16(0x32)?,
            )
        };
        Some(Header {
            wide,
            little,
            program_table,
            section_table,
            shstrndx,
        })
    }

    /// Fields of `bytes` in this file's byte order.
    fn fields<'a>(&self, bytes: &'a [u8]) -> Fields<'a> {
        Fields {
            bytes,
            little: self.little,
        }
    }

    fn program_headers(&self, file: &File) -> Option<Vec<ProgramHeader>> {
        let min_entsize = if self.wide { 56 } else { 32 };
        self.table(file, &self.program_table, min_entsize, |e| {
            Some(if self.wide {
                ProgramHeader {
                    kind: e.u32(0)?,
                    offset: e.u64(8)?,
                    size: e.u64(32)?,
                    align: e.u64(48)?,
                }
            } else {
                ProgramHeader {
                    kind: e.u32(0)?,
                    offset: e.u32(4)?.into(),
                    size: e.u32(16)?.into(),
                    align: e.u32(28)?.into(),
                }
            })
        })
    }

    /// The section headers, each with the offset of its name in the
    /// section name table (the names themselves are not read).
    fn section_headers(&self, file: &File) -> Option<Vec<(u32, Section)>> {
        let min_entsize = if self.wide { 64 } else { 40 };
        self.table(file, &self.section_table, min_entsize, |e| {
            let section = if self.wide {
                Section {
                    name: String::new(),
                    kind: e.u32(4)?,
                    flags: e.u64(8)?,
                    offset: e.u64(24)?,
                    size: e.u64(32)?,
                    link: e.u32(40)?,
                    align: e.u64(48)?,
                    entsize: e.u64(56)?,
                }
            } else {
                Section {
                    name: String::new(),
                    kind: e.u32(4)?,
                    flags: e.u32(8)?.into(),
                    offset: e.u32(16)?.into(),
                    size: e.u32(20)?.into(),
                    link: e.u32(24)?,
                    align: e.u32(32)?.into(),
                    entsize: e.u32(36)?.into(),
                }
            };
            Some((e.u32(0)?, section))
        })
    }

    /// Reads a header table and parses each entry with `parse` (entries
    /// that do not parse are dropped). `None` when the file has no such
    /// table, its entries are smaller than `min_entsize`, or it cannot be
    /// read whole.
    fn table<T>(
        &self,
        file: &File,
        &Table(offset, entsize, count): &Table,
        min_entsize: u16,
        parse: impl Fn(Fields<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        if count == 0 || entsize < min_entsize {
            return None;
        }
        let bytes = read_at(file, offset, u64::from(entsize) * u64::from(count))?;
        let entries = bytes.chunks_exact(entsize.into());
        Some(entries.filter_map(|e| parse(self.fields(e))).collect())
    }

    /// The `NT_GNU_BUILD_ID` note named `"GNU"` among the notes stored at
    /// `offset..offset + size`. Each note is a 12-byte header (namesz,
    /// descsz, type), then the name and the descriptor, each starting at a
    /// multiple of the alignment (4, or 8 for `.note.gnu.property`-style
    /// tables), as binutils reads them.
    fn build_id_in_notes(
        &self,
        file: &File,
        offset: u64,
        size: u64,
        align: u64,
    ) -> Option<Vec<u8>> {
        let notes = read_at(file, offset, size)?;
        let align: usize = if align == 8 { 8 } else { 4 };
        let align_up = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
        let mut pos = 0usize;
        while let Some(header) = notes.get(pos..pos.checked_add(12)?) {
            let h = self.fields(header);
            let namesz = usize::try_from(h.u32(0)?).ok()?;
            let descsz = usize::try_from(h.u32(4)?).ok()?;
            let kind = h.u32(8)?;
            let name_start = pos + 12;
            let desc_start = pos.checked_add(align_up(12usize.checked_add(namesz)?)?)?;
            let desc_end = desc_start.checked_add(descsz)?;
            let name = notes.get(name_start..name_start.checked_add(namesz)?)?;
            let desc = notes.get(desc_start..desc_end)?;
            if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
                return Some(desc.to_vec());
            }
            pos = align_up(desc_end)?;
        }
        None
    }
}

/// The lowercase hex GNU build ID of an ELF file: what pprof (and
/// debuginfod) identify a binary by.
pub(crate) fn gnu_build_id_hex(file: &File) -> Option<String> {
    use std::fmt::Write;
    let id = gnu_build_id(file)?;
    let mut hex = String::with_capacity(id.len() * 2);
    for b in id {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    Some(hex)
}

/// The raw GNU build ID, from the `PT_NOTE` segments, else the `SHT_NOTE`
/// sections (a separate debug file may lack program headers). `None` for
/// non-ELF files, files without the note, and anything malformed.
fn gnu_build_id(file: &File) -> Option<Vec<u8>> {
    let header = Header::read(file)?;
    let segments = header.program_headers(file).unwrap_or_default();
    let in_segments = segments
        .iter()
        .filter(|s| s.kind == PT_NOTE)
        .find_map(|s| header.build_id_in_notes(file, s.offset, s.size, s.align));
    in_segments.or_else(|| {
        header
            .section_headers(file)
            .unwrap_or_default()
            .iter()
            .filter(|(_, s)| s.kind == SHT_NOTE)
            .find_map(|(_, s)| header.build_id_in_notes(file, s.offset, s.size, s.align))
    })
}

/// An open 64-bit little-endian ELF file and its section headers.
#[derive(Debug)]
pub(crate) struct ElfFile {
    pub file: File,
    pub sections: Vec<Section>,
}

impl ElfFile {
    pub fn open(path: &Path) -> Option<ElfFile> {
        Self::read(File::open(path).ok()?)
    }

    /// `None` for anything that is not a 64-bit little-endian ELF file with
    /// readable section headers.
    pub fn read(file: File) -> Option<ElfFile> {
        let header = Header::read(&file).filter(|h| h.wide && h.little)?;
        let headers = header.section_headers(&file)?;
        let names = headers
            .get(usize::from(header.shstrndx))
            .and_then(|(_, s)| read_at(&file, s.offset, s.size))
            .unwrap_or_default();
        let sections = headers
            .into_iter()
            .map(|(name, mut section)| {
                section.name = usize::try_from(name)
                    .ok()
                    .and_then(|start| names.get(start..))
                    .and_then(|rest| rest.split(|&b| b == 0).next())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                section
            })
            .collect();
        Some(ElfFile { file, sections })
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn section_of_kind(&self, kind: u32) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The bytes of a section as stored (at most 1 MiB).
    pub fn read_section(&self, section: &Section) -> Option<Vec<u8>> {
        read_at(&self.file, section.offset, section.size)
    }

    /// The size a section takes once loaded: the uncompressed size for a
    /// compressed one (from its `Elf64_Chdr`), else its size.
    pub fn loaded_size(&self, section: &Section) -> u64 {
        if !section.is_compressed() {
            return section.size;
        }
        read_at(&self.file, section.offset, 24)
            .and_then(|chdr| u64_at(&chdr, 8))
            .unwrap_or(section.size)
    }

    /// The file name in `.gnu_debuglink`, if any.
    pub fn debuglink(&self) -> Option<String> {
        let bytes = self.read_section(self.section(".gnu_debuglink")?)?;
        let name = bytes.split(|&b| b == 0).next()?;
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }
}

/// Fixed-width fields of a header, in the file's byte order.
#[derive(Clone, Copy)]
struct Fields<'a> {
    bytes: &'a [u8],
    /// ELFDATA2LSB.
    little: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.array(at)?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.array(at)?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.array(at)?;
        Some(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

/// Little-endian fields, as the files [`ElfFile`] reads (and the memory of
/// the targets the agent unwinds on) store them.
fn le(bytes: &[u8]) -> Fields<'_> {
    Fields {
        bytes,
        little: true,
    }
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    le(b).u16(at)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    le(b).u32(at)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    le(b).u64(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_this_binarys_sections_with_their_names() {
        let elf = ElfFile::open(Path::new("/proc/self/exe")).expect("an ELF file");
        let text = elf.section(".text").expect(".text");
        assert!(text.size > 0 && !text.is_compressed());
        assert_eq!(elf.loaded_size(text), text.size);
        // Test binaries have debug info and a symbol table.
        assert!(elf.section(".debug_info").is_some());
        let symtab = elf.section_of_kind(SHT_SYMTAB).expect(".symtab");
        assert_eq!(symtab.name, ".symtab");
        assert_eq!(symtab.entsize, 24);
    }

    #[test]
    fn what_is_not_elf_reads_as_nothing() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(b"#!/bin/sh\necho not elf\n").unwrap();
        assert!(ElfFile::read(tmp).is_none());
        let exe = std::fs::read("/proc/self/exe").unwrap();
        for len in [0, 5, 63, 64, 65, 4096] {
            let mut tmp = tempfile::tempfile().unwrap();
            tmp.write_all(&exe[..len.min(exe.len())]).unwrap();
            assert!(ElfFile::read(tmp).is_none(), "{len}");
        }
    }

    #[test]
    fn build_id_matches_readelf_when_available() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let Ok(out) = std::process::Command::new("readelf")
            .arg("-n")
            .arg(&exe)
            .output()
        else {
            eprintln!("readelf not installed; skipping the cross-check");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let expected = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .expect("readelf -n shows a build ID");
        let ours = gnu_build_id_hex(&File::open(&exe).unwrap()).unwrap();
        assert_eq!(ours, expected.trim());
    }

    /// Writes the low `width` bytes of `v` at `at`, in the given byte order.
    fn put(f: &mut [u8], little: bool, at: usize, v: u64, width: usize) {
        let bytes = if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        let b = if little {
            &bytes[..width]
        } else {
            &bytes[8 - width..]
        };
        f[at..at + width].copy_from_slice(b);
    }

    /// A minimal ELF file: header, program headers, one note segment.
    fn elf(wide: bool, little: bool, notes: &[u8], note_align: u64) -> Vec<u8> {
        let (ehsize, phentsize) = if wide { (64usize, 56usize) } else { (52, 32) };
        let phoff = ehsize;
        let notes_off = phoff + phentsize;
        let mut f = vec![0u8; notes_off];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = if wide { 2 } else { 1 };
        f[5] = if little { 1 } else { 2 };
        if wide {
            put(&mut f, little, 0x20, phoff as u64, 8);
            put(&mut f, little, 0x36, phentsize as u64, 2);
            put(&mut f, little, 0x38, 1, 2);
            put(&mut f, little, phoff, u64::from(PT_NOTE), 4);
            put(&mut f, little, phoff + 8, notes_off as u64, 8);
            put(&mut f, little, phoff + 32, notes.len() as u64, 8);
            put(&mut f, little, phoff + 48, note_align, 8);
        } else {
            put(&mut f, little, 0x1c, phoff as u64, 4);
            put(&mut f, little, 0x2a, phentsize as u64, 2);
            put(&mut f, little, 0x2c, 1, 2);
            put(&mut f, little, phoff, u64::from(PT_NOTE), 4);
            put(&mut f, little, phoff + 4, notes_off as u64, 4);
            put(&mut f, little, phoff + 16, notes.len() as u64, 4);
            put(&mut f, little, phoff + 28, note_align, 4);
        }
        f.extend_from_slice(notes);
        f
    }

    fn note(little: bool, name: &[u8], kind: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let word = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let mut n = Vec::new();
        n.extend_from_slice(&word(name.len() as u32));
        n.extend_from_slice(&word(desc.len() as u32));
        n.extend_from_slice(&word(kind));
        n.extend_from_slice(name);
        while n.len() % align != 0 {
            n.push(0);
        }
        n.extend_from_slice(desc);
        while n.len() % align != 0 {
            n.push(0);
        }
        n
    }

    fn build_id_of(bytes: &[u8]) -> Option<Vec<u8>> {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(bytes).unwrap();
        gnu_build_id(&tmp)
    }

    #[test]
    fn reads_build_ids_in_all_classes_and_byte_orders() {
        let id = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03];
        for wide in [true, false] {
            for little in [true, false] {
                // Another note first, with a name needing padding.
                let mut notes = note(little, b"stapsdt\0", 1, &[9; 5], 4);
                notes.extend(note(little, b"GNU\0", NT_GNU_BUILD_ID, &id, 4));
                let file = elf(wide, little, &notes, 4);
                assert_eq!(
                    build_id_of(&file),
                    Some(id.to_vec()),
                    "wide={wide} little={little}"
                );
            }
        }
        // An 8-aligned note table (as `.note.gnu.property`).
        let mut notes = note(true, b"GNU\0", 5, &[1; 12], 8);
        notes.extend(note(true, b"GNU\0", NT_GNU_BUILD_ID, &id, 8));
        assert_eq!(build_id_of(&elf(true, true, &notes, 8)), Some(id.to_vec()));
    }

    #[test]
    fn reads_build_ids_from_note_sections_without_program_headers() {
        // As in a separate debug file: the note is in a section only.
        let id = [7u8; 20];
        for wide in [true, false] {
            for little in [true, false] {
                let notes = note(little, b"GNU\0", NT_GNU_BUILD_ID, &id, 4);
                let mut f = elf(wide, little, &notes, 4);
                let notes_off = (f.len() - notes.len()) as u64;
                let (phnum_at, shoff_at, shoff_width, shentsize_at, shnum_at) = if wide {
                    (0x38, 0x28, 8, 0x3a, 0x3c)
                } else {
                    (0x2c, 0x20, 4, 0x2e, 0x30)
                };
                put(&mut f, little, phnum_at, 0, 2);
                let shoff = f.len();
                let shentsize = if wide { 64 } else { 40 };
                f.resize(shoff + 2 * shentsize, 0);
                put(&mut f, little, shoff_at, shoff as u64, shoff_width);
                put(&mut f, little, shentsize_at, shentsize as u64, 2);
                put(&mut f, little, shnum_at, 2, 2);
                // sh_type, sh_offset, sh_size, sh_addralign of section 1.
                let at = shoff + shentsize;
                let fields = if wide {
                    [(4, 4), (24, 8), (32, 8), (48, 8)]
                } else {
                    [(4, 4), (16, 4), (20, 4), (32, 4)]
                };
                let values = [u64::from(SHT_NOTE), notes_off, notes.len() as u64, 4];
                for ((offset, width), v) in fields.into_iter().zip(values) {
                    put(&mut f, little, at + offset, v, width);
                }
                let case = format!("wide={wide} little={little}");
                assert_eq!(build_id_of(&f), Some(id.to_vec()), "{case}");
                put(&mut f, little, shnum_at, 0, 2);
                assert_eq!(build_id_of(&f), None, "{case}");
            }
        }
    }

    #[test]
    fn malformed_files_give_none_without_panicking() {
        assert_eq!(build_id_of(b""), None);
        assert_eq!(build_id_of(b"#!/bin/sh\n"), None);
        let id = [1u8; 20];
        let good = elf(
            true,
            true,
            &note(true, b"GNU\0", NT_GNU_BUILD_ID, &id, 4),
            4,
        );
        // Every truncation, and every single-byte corruption, of a valid file.
        for len in 0..good.len() {
            let _ = build_id_of(&good[..len]);
        }
        for at in 0..good.len() {
            for v in [0x00, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = build_id_of(&bad);
            }
        }
        // A note claiming a huge descriptor.
        let mut huge = note(true, b"GNU\0", NT_GNU_BUILD_ID, &id, 4);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(build_id_of(&elf(true, true, &huge, 4)), None);
        // Wrong note name or type.
        assert_eq!(
            build_id_of(&elf(true, true, &note(true, b"GNV\0", 3, &id, 4), 4)),
            None
        );
        assert_eq!(
            build_id_of(&elf(true, true, &note(true, b"GNU\0", 4, &id, 4), 4)),
            None
        );
    }
}
