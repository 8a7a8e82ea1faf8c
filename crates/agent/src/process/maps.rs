//! The process's memory mappings, as pprof `Mapping`s need them.
//!
//! A profile is only re-symbolizable offline if every address can be traced
//! back to a file and that file can be identified exactly: pprof finds
//! binaries by GNU build ID (`$PPROF_BINARY_PATH/<id>/…`, debuginfod) and
//! refuses a binary whose build ID differs. So each executable mapping carries
//! the hex `.note.gnu.build-id` of the file it maps, read here from the file on
//! disk with a small, bounds-checked ELF note reader (no `object` dependency:
//! the notes are one table walk away from the ELF header).
//!
//! Everything here reads `/proc` and files, allocates and takes a lock: call
//! it from the agent thread, never from a signal handler. Call it again when
//! building each profile, so libraries `dlopen`ed since the last capture are
//! included (a stale module list loses their frames).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use crate::{Error, Result};

/// One line of `/proc/self/maps` (or several merged, see [`current_mappings`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address (pprof's `memory_limit`).
    pub end: u64,
    /// Offset in the file of the byte mapped at `start` (pprof's `file_offset`;
    /// pprof translates it to an ELF virtual address with the file's program
    /// headers, so it must be the kernel's value, not a guessed vaddr).
    pub offset: u64,
    /// The mapped file as the kernel names it, `""` for anonymous memory, or a
    /// pseudo name such as `[vdso]`, `[heap]`. A file that was deleted or
    /// replaced by a rename since it was mapped keeps the kernel's
    /// `" (deleted)"` suffix, so nothing opens the new file in its place.
    pub path: String,
    /// Inode of the mapped file (0 for anonymous memory).
    pub inode: u64,
    /// The `x` permission bit.
    pub executable: bool,
    /// Lowercase hex GNU build ID of the mapped file, when it has one and it
    /// could be read. [`parse_maps`] never fills it; [`current_mappings`] does.
    pub build_id: Option<String>,
}

impl Mapping {
    /// Whether `addr` falls inside the mapping.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether the mapping is backed by a file (an absolute path).
    pub fn is_file_backed(&self) -> bool {
        self.path.starts_with('/')
    }
}

/// The executable, file-backed mappings of this process, main executable
/// first (the pprof convention for `mapping[0]`), the rest in address order,
/// each with its build ID.
///
/// Choices:
/// - `[vdso]` is kept (without a build ID): samples taken in `clock_gettime`
///   and friends then show as `[vdso]` in pprof, which knows the mapping is
///   unsymbolizable, instead of as an address with no mapping at all.
/// - `[vsyscall]` is dropped: it lies outside the user address range and
///   breaks remote symbolization (google/pprof#339); nothing samples in it.
/// - Anonymous executable memory (JIT code) is dropped: there is no file to
///   symbolize it from.
/// - Adjacent entries of the same file that are also contiguous in the file
///   (the kernel splits a mapping after `mprotect` or `madvise`) are merged,
///   as pprof's own `massageMappings` would.
pub fn current_mappings() -> Result<Vec<Mapping>> {
    let maps_path = Path::new("/proc/self/maps");
    let text = std::fs::read_to_string(maps_path).map_err(|source| Error::Io {
        path: maps_path.to_path_buf(),
        what: "reading the memory map",
        source,
    })?;
    // Without the executable's path the main binary is simply not moved to
    // the front; the mappings are still right.
    let exe = std::fs::read_link("/proc/self/exe")
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut mappings = select_executable(parse_maps(&text), exe.as_deref());
    for m in &mut mappings {
        m.build_id = cached_build_id(m);
    }
    Ok(mappings)
}

/// Parses the text of `/proc/<pid>/maps`: every well-formed line, in order,
/// without build IDs. Malformed lines are skipped (the format is stable, so
/// one would mean a truncated read, and the other lines are still good).
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

/// `start-end perms offset dev inode [path]`, fields separated by spaces; the
/// path is the rest of the line and may itself contain spaces.
fn parse_line(line: &str) -> Option<Mapping> {
    let (range, rest) = next_field(line)?;
    let (perms, rest) = next_field(rest)?;
    let (offset, rest) = next_field(rest)?;
    let (_dev, rest) = next_field(rest)?;
    let (inode, rest) = next_field(rest)?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end < start || perms.len() != 4 {
        return None;
    }
    Some(Mapping {
        start,
        end,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: rest.trim_start_matches(' ').to_string(),
        inode: inode.parse().ok()?,
        executable: perms.as_bytes()[2] == b'x',
        build_id: None,
    })
}

/// Splits off the first space-separated field (after leading spaces).
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(s.split_once(' ').unwrap_or((s, "")))
}

/// The policy of [`current_mappings`] without the I/O: keeps executable
/// file-backed mappings and `[vdso]`, merges split entries, and moves the
/// mappings of `exe` (the `/proc/self/exe` target) to the front.
pub fn select_executable(all: Vec<Mapping>, exe: Option<&str>) -> Vec<Mapping> {
    let mut kept: Vec<Mapping> = Vec::new();
    for m in all {
        if !m.executable || !(m.is_file_backed() || m.path == "[vdso]") {
            continue;
        }
        if let Some(prev) = kept.last_mut() {
            let contiguous_in_file = prev
                .end
                .checked_sub(prev.start)
                .and_then(|len| prev.offset.checked_add(len))
                == Some(m.offset);
            if prev.path == m.path
                && prev.inode == m.inode
                && prev.end == m.start
                && contiguous_in_file
            {
                prev.end = m.end;
                continue;
            }
        }
        kept.push(m);
    }
    if let Some(exe) = exe {
        // Stable: the main binary's own segments stay in address order.
        kept.sort_by_key(|m| m.path != exe);
    }
    kept
}

/// Build IDs already read, by (path, inode): reading one costs a few small
/// `pread`s, but a profile is built every few minutes from the same files.
/// The inode is part of the key so a library reloaded after being replaced
/// is read again. Negative results are cached too.
static BUILD_IDS: LazyLock<Mutex<HashMap<FileKey, Option<String>>>> =
    LazyLock::new(Default::default);

/// (path, inode) of a mapped file.
type FileKey = (String, u64);

fn cached_build_id(m: &Mapping) -> Option<String> {
    if !m.is_file_backed() {
        return None;
    }
    let key = (m.path.clone(), m.inode);
    // A poisoned lock only means another thread panicked mid-insert; the map
    // itself is still a valid cache.
    let mut cache = BUILD_IDS.lock().unwrap_or_else(|e| e.into_inner());
    cache.entry(key).or_insert_with(|| read_build_id(m)).clone()
}

/// Reads the build ID of the file behind `m`. A deleted (or renamed-over)
/// file is only reachable through `/proc/self/map_files`, which needs
/// `CAP_SYS_ADMIN` or `CAP_CHECKPOINT_RESTORE` to open; without it the
/// mapping gets no build ID rather than the ID of whatever file now has its
/// name, which pprof would then trust.
fn read_build_id(m: &Mapping) -> Option<String> {
    let path = if m.path.ends_with(" (deleted)") {
        PathBuf::from(format!("/proc/self/map_files/{:x}-{:x}", m.start, m.end))
    } else {
        PathBuf::from(&m.path)
    };
    let file = File::open(path).ok()?;
    let id = gnu_build_id(&file)?;
    Some(hex(&id))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

// ---------------------------------------------------------------------------
// The ELF note reader.
// ---------------------------------------------------------------------------

const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
const NT_GNU_BUILD_ID: u32 = 3;
/// Upper bound on one note table or header table read: real ones are a few
/// hundred bytes; this only stops a corrupt size field from allocating GBs.
const MAX_TABLE: u64 = 1 << 20;

/// The raw GNU build ID of an ELF file (32- or 64-bit, either byte order), from
/// its `PT_NOTE` segments, else its `SHT_NOTE` sections (a separate debug
/// file may lack program headers). `None` for non-ELF files, files without
/// the note, and anything malformed: every offset and size is checked.
pub fn gnu_build_id(file: &File) -> Option<Vec<u8>> {
    let ident = read_at(file, 0, 16)?;
    if ident[..4] != *b"\x7fELF" {
        return None;
    }
    let elf = Elf {
        file,
        wide: match ident[4] {
            1 => false,
            2 => true,
            _ => return None,
        },
        little: match ident[5] {
            1 => true,
            2 => false,
            _ => return None,
        },
    };
    let header = read_at(file, 0, if elf.wide { 64 } else { 52 })?;
    let h = Fields {
        elf: &elf,
        bytes: &header,
    };
    // (table offset, entry size, entry count) for program and section headers.
    let (phoff, phentsize, phnum, shoff, shentsize, shnum) = if elf.wide {
        (
            h.u64(0x20)?,
            h.u16(0x36)?,
            h.u16(0x38)?,
            h.u64(0x28)?,
            h.u16(0x3a)?,
            h.u16(0x3c)?,
        )
    } else {
        (
            h.u32(0x1c)?.into(),
            h.u16(0x2a)?,
            h.u16(0x2c)?,
            h.u32(0x20)?.into(),
            h.u16(0x2e)?,
            h.u16(0x30)?,
        )
    };

    // Program headers: (type, offset, size, align) of each note segment.
    let segments = elf.table(
        phoff,
        phentsize,
        phnum,
        if elf.wide { 56 } else { 32 },
        |e| {
            Some(if elf.wide {
                (e.u32(0)?, e.u64(8)?, e.u64(32)?, e.u64(48)?)
            } else {
                (
                    e.u32(0)?,
                    e.u32(4)?.into(),
                    e.u32(16)?.into(),
                    e.u32(28)?.into(),
                )
            })
        },
    );
    let sections = || {
        elf.table(
            shoff,
            shentsize,
            shnum,
            if elf.wide { 64 } else { 40 },
            |e| {
                Some(if elf.wide {
                    (e.u32(4)?, e.u64(24)?, e.u64(32)?, e.u64(48)?)
                } else {
                    (
                        e.u32(4)?,
                        e.u32(16)?.into(),
                        e.u32(20)?.into(),
                        e.u32(32)?.into(),
                    )
                })
            },
        )
    };
    let find = |tables: Vec<(u32, u64, u64, u64)>, note_type: u32| {
        tables
            .into_iter()
            .filter(|&(kind, ..)| kind == note_type)
            .find_map(|(_, offset, size, align)| elf.build_id_in_notes(offset, size, align))
    };
    find(segments, PT_NOTE).or_else(|| find(sections(), SHT_NOTE))
}

struct Elf<'a> {
    file: &'a File,
    /// ELFCLASS64.
    wide: bool,
    /// ELFDATA2LSB.
    little: bool,
}

impl Elf<'_> {
    /// Reads a header table and maps each entry with `f` (entries that do
    /// not parse are dropped; a table that cannot be read is empty).
    fn table<T>(
        &self,
        offset: u64,
        entsize: u16,
        count: u16,
        min_entsize: u16,
        f: impl Fn(Fields<'_>) -> Option<T>,
    ) -> Vec<T> {
        if count == 0 || entsize < min_entsize {
            return Vec::new();
        }
        let Some(bytes) = read_at(self.file, offset, u64::from(entsize) * u64::from(count)) else {
            return Vec::new();
        };
        bytes
            .chunks_exact(entsize.into())
            .filter_map(|entry| {
                f(Fields {
                    elf: self,
                    bytes: entry,
                })
            })
            .collect()
    }

    /// Walks the notes at `offset..offset + size` for `NT_GNU_BUILD_ID` named
    /// `"GNU"`. Each note is a 12-byte header (namesz, descsz, type), then the
    /// name and the descriptor, each starting at a multiple of the alignment
    /// (4, or 8 for `.note.gnu.property`-style tables), as binutils reads them.
    fn build_id_in_notes(&self, offset: u64, size: u64, align: u64) -> Option<Vec<u8>> {
        let notes = read_at(self.file, offset, size)?;
        let align: usize = if align == 8 { 8 } else { 4 };
        let align_up = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
        let mut pos = 0usize;
        while let Some(header) = notes.get(pos..pos.checked_add(12)?) {
            let h = Fields {
                elf: self,
                bytes: header,
            };
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

/// Fixed-width fields of a header, in the file's byte order.
#[derive(Clone, Copy)]
struct Fields<'a> {
    elf: &'a Elf<'a>,
    bytes: &'a [u8],
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.array(at)?;
        Some(if self.elf.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.array(at)?;
        Some(if self.elf.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.array(at)?;
        Some(if self.elf.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

/// Exactly `len` bytes at `offset` (at most [`MAX_TABLE`]), or `None`.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    if len > MAX_TABLE {
        return None;
    }
    let mut buf = vec![0; usize::try_from(len).ok()?];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SAMPLE: &str = "\
55d0c1a00000-55d0c1a24000 r--p 00000000 fd:01 1234567                    /usr/bin/svc
55d0c1a24000-55d0c1b00000 r-xp 00024000 fd:01 1234567                    /usr/bin/svc
55d0c1b00000-55d0c1b10000 r-xp 00100000 fd:01 1234567                    /usr/bin/svc
55d0c1b10000-55d0c1b20000 r--p 00110000 fd:01 1234567                    /usr/bin/svc
55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7f1000000000-7f1000028000 r--p 00000000 fd:01 42                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f1000028000-7f10001bd000 r-xp 00028000 fd:01 42                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f2000000000-7f2000001000 r-xp 00000000 fd:01 77                         /opt/my lib/libspace.so
7f3000000000-7f3000001000 r-xp 00000000 fd:01 78                         /opt/old.so (deleted)
7ffd12345000-7ffd12347000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
garbage line
";

    #[test]
    fn parses_every_well_formed_line() {
        let all = parse_maps(SAMPLE);
        assert_eq!(all.len(), 12);
        assert_eq!(
            all[1],
            Mapping {
                start: 0x55d0c1a24000,
                end: 0x55d0c1b00000,
                offset: 0x24000,
                path: "/usr/bin/svc".into(),
                inode: 1234567,
                executable: true,
                build_id: None,
            }
        );
        assert_eq!(all[4].path, "[heap]");
        assert!(!all[4].executable);
        // Anonymous mapping: empty path (the kernel leaves a trailing space).
        assert_eq!(all[5].path, "");
        assert_eq!(all[8].path, "/opt/my lib/libspace.so");
        assert_eq!(all[9].path, "/opt/old.so (deleted)");
    }

    #[test]
    fn selects_merges_and_puts_the_executable_first() {
        let picked = select_executable(
            parse_maps(SAMPLE),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6"),
        );
        let summary: Vec<_> = picked
            .iter()
            .map(|m| (m.path.as_str(), m.start, m.end, m.offset))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "/usr/lib/x86_64-linux-gnu/libc.so.6",
                    0x7f1000028000,
                    0x7f10001bd000,
                    0x28000
                ),
                // The two text entries of svc are adjacent in memory and in the file.
                ("/usr/bin/svc", 0x55d0c1a24000, 0x55d0c1b10000, 0x24000),
                ("/opt/my lib/libspace.so", 0x7f2000000000, 0x7f2000001000, 0),
                ("/opt/old.so (deleted)", 0x7f3000000000, 0x7f3000001000, 0),
                ("[vdso]", 0x7ffd12345000, 0x7ffd12347000, 0),
            ]
        );
    }

    #[test]
    fn does_not_merge_entries_that_are_not_contiguous_in_the_file() {
        let text = "\
1000-2000 r-xp 00000000 fd:01 9 /bin/x
2000-3000 r-xp 00005000 fd:01 9 /bin/x
3000-4000 r-xp 00000000 fd:01 10 /bin/y
4000-5000 r-xp 00001000 fd:01 11 /bin/y
";
        let picked = select_executable(parse_maps(text), None);
        assert_eq!(picked.len(), 4);
    }

    #[test]
    fn current_mappings_lists_the_test_binary_first_with_its_build_id() {
        let mappings = current_mappings().unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(Path::new(&mappings[0].path), exe);
        let id = mappings[0]
            .build_id
            .as_deref()
            .expect("test binary has a GNU build ID");
        assert!(
            id.len() >= 16
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // This function's code is inside the first mapping.
        let here =
            current_mappings_lists_the_test_binary_first_with_its_build_id as *const () as u64;
        assert!(mappings
            .iter()
            .filter(|m| m.path == mappings[0].path)
            .any(|m| m.contains(here)));
        assert!(mappings.iter().all(|m| m.executable));
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
        let ours = gnu_build_id(&File::open(&exe).unwrap()).unwrap();
        assert_eq!(hex(&ours), expected.trim());
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
        let put = |f: &mut Vec<u8>, at: usize, v: u64, width: usize| {
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
        };
        if wide {
            put(&mut f, 0x20, phoff as u64, 8);
            put(&mut f, 0x36, phentsize as u64, 2);
            put(&mut f, 0x38, 1, 2);
            put(&mut f, phoff, u64::from(PT_NOTE), 4);
            put(&mut f, phoff + 8, notes_off as u64, 8);
            put(&mut f, phoff + 32, notes.len() as u64, 8);
            put(&mut f, phoff + 48, note_align, 8);
        } else {
            put(&mut f, 0x1c, phoff as u64, 4);
            put(&mut f, 0x2a, phentsize as u64, 2);
            put(&mut f, 0x2c, 1, 2);
            put(&mut f, phoff, u64::from(PT_NOTE), 4);
            put(&mut f, phoff + 4, notes_off as u64, 4);
            put(&mut f, phoff + 16, notes.len() as u64, 4);
            put(&mut f, phoff + 28, note_align, 4);
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
