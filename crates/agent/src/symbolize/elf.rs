//! The section headers of an ELF file, and where its debug info lives:
//! what the symbol-table reader ([`super::symtab`]) and the cost estimate
//! of loading debug info ([`super::cost`]) need, and nothing more.
//!
//! A small bounds-checked reader over `pread`, as
//! [`crate::process::maps`] reads build IDs: 64-bit little-endian ELF (what
//! the agent runs on; anything else reads as "not ELF"). Only the headers
//! and the section names are read, never a section's contents unless asked
//! ([`ElfFile::read_section`], for `.gnu_debuglink`).
//!
//! **Separate debug files** are found the way `backtrace` (and gdb) find
//! them, so the estimate describes the file `backtrace` would parse: by
//! GNU build ID under `/usr/lib/debug/.build-id/ab/cdef….debug` (Debian's
//! `libc6-dbg` installs libc's there), else by the `.gnu_debuglink` name,
//! next to the object, in its `.debug/` directory, or under
//! `/usr/lib/debug/<the object's directory>/`.

use std::fs::File;
use std::path::{Path, PathBuf};

pub(super) const SHT_SYMTAB: u32 = 2;
pub(super) const SHT_DYNSYM: u32 = 11;
const SHF_COMPRESSED: u64 = 0x800;
/// Reads of tables are bounded (1 MiB) by the one reader the agent has for
/// ELF files, [`crate::process::maps`]'s.
use crate::process::read_at;
/// Where distributions install separate debug files.
const DEBUG_DIR: &str = "/usr/lib/debug";

/// One section header, with its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub entsize: u64,
}

impl Section {
    /// Whether the contents are compressed (`SHF_COMPRESSED`, gABI).
    pub fn is_compressed(&self) -> bool {
        self.flags & SHF_COMPRESSED != 0
    }
}

/// An open ELF file and its section headers.
#[derive(Debug)]
pub(super) struct ElfFile {
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
        let header = read_at(&file, 0, 64)?;
        if header.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
            return None;
        }
        let shoff = u64_at(&header, 0x28)?;
        let shentsize = u64::from(u16_at(&header, 0x3a)?);
        let shnum = u64::from(u16_at(&header, 0x3c)?);
        let shstrndx = u64::from(u16_at(&header, 0x3e)?);
        if shentsize < 64 || shnum == 0 {
            return None;
        }
        let table = read_at(&file, shoff, shentsize.checked_mul(shnum)?)?;
        let header_at = |i: u64| -> Option<(u32, Section)> {
            let at = usize::try_from(i.checked_mul(shentsize)?).ok()?;
            let name = u32_at(&table, at)?;
            let section = Section {
                name: String::new(),
                kind: u32_at(&table, at + 4)?,
                flags: u64_at(&table, at + 8)?,
                offset: u64_at(&table, at + 24)?,
                size: u64_at(&table, at + 32)?,
                link: u32_at(&table, at + 40)?,
                entsize: u64_at(&table, at + 56)?,
            };
            Some((name, section))
        };
        let names = header_at(shstrndx)
            .and_then(|(_, s)| read_at(&file, s.offset, s.size))
            .unwrap_or_default();
        let sections = (0..shnum)
            .map(|i| {
                let (name, mut section) = header_at(i)?;
                section.name = usize::try_from(name)
                    .ok()
                    .and_then(|start| names.get(start..))
                    .and_then(|rest| rest.split(|&b| b == 0).next())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                Some(section)
            })
            .collect::<Option<Vec<_>>>()?;
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
    fn debuglink(&self) -> Option<String> {
        let bytes = self.read_section(self.section(".gnu_debuglink")?)?;
        let name = bytes.split(|&b| b == 0).next()?;
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }
}

/// The separate debug file of the object at `path` (whose GNU build ID is
/// `build_id`, lowercase hex, when known), found as `backtrace` finds it:
/// by build ID, then by `.gnu_debuglink`. `None` when it has none.
pub(super) fn separate_debug_file(
    path: &Path,
    object: &ElfFile,
    build_id: Option<&str>,
) -> Option<PathBuf> {
    let by_id = build_id
        .filter(|id| id.len() > 2 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| {
            PathBuf::from(format!(
                "{DEBUG_DIR}/.build-id/{}/{}.debug",
                &id[..2],
                &id[2..]
            ))
        })
        .filter(|p| p.is_file());
    by_id.or_else(|| {
        let name = object.debuglink()?;
        let path = std::fs::canonicalize(path).ok()?;
        let dir = path.parent()?;
        let candidates = [
            dir.join(&name),
            dir.join(".debug").join(&name),
            Path::new(DEBUG_DIR)
                .join(dir.strip_prefix("/").unwrap_or(dir))
                .join(&name),
        ];
        candidates
            .into_iter()
            .find(|candidate| *candidate != path && candidate.is_file())
    })
}

/// The lowercase hex GNU build ID of `file`, read as for mappings.
pub(super) fn build_id_hex(file: &File) -> Option<String> {
    let id = crate::process::maps::gnu_build_id(file)?;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(super) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use std::io::Write;
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
    fn a_debuglink_is_followed_next_to_the_object() {
        use std::io::Write;
        // An object whose only section names `x.debug` in .gnu_debuglink.
        let dir = tempfile::tempdir().unwrap();
        let names = b"\0.gnu_debuglink\0.shstrtab\0";
        let link = b"x.debug\0\0\0\0\0\0\0\0\0";
        let (link_at, names_at, headers_at) = (64u64, 80u64, 112u64);
        let mut f = vec![0u8; headers_at as usize];
        f[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        f[0x28..0x30].copy_from_slice(&headers_at.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f[link_at as usize..link_at as usize + link.len()].copy_from_slice(link);
        f[names_at as usize..names_at as usize + names.len()].copy_from_slice(names);
        let header = |name: u32, kind: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        f.extend(header(0, 0, 0, 0));
        f.extend(header(1, 1, link_at, link.len() as u64));
        f.extend(header(16, 3, names_at, names.len() as u64));
        let object = dir.path().join("x");
        std::fs::File::create(&object)
            .unwrap()
            .write_all(&f)
            .unwrap();
        let elf = ElfFile::open(&object).unwrap();
        assert_eq!(elf.debuglink().as_deref(), Some("x.debug"));
        assert_eq!(separate_debug_file(&object, &elf, None), None);
        std::fs::create_dir(dir.path().join(".debug")).unwrap();
        let debug = dir.path().join(".debug/x.debug");
        std::fs::write(&debug, b"").unwrap();
        let found = separate_debug_file(&object, &elf, None).unwrap();
        assert_eq!(found, std::fs::canonicalize(&debug).unwrap());
        // An unknown build ID is no file.
        assert_eq!(
            separate_debug_file(&object, &elf, Some("00112233")),
            Some(found)
        );
    }
}
