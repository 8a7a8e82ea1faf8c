//! The process's memory mappings, as pprof `Mapping`s need them.
//!
//! A profile is only re-symbolizable offline if every address can be traced
//! back to a file and that file can be identified exactly: pprof finds
//! binaries by GNU build ID (`$PPROF_BINARY_PATH/<id>/…`, debuginfod) and
//! refuses a binary whose build ID differs. So each executable mapping carries
//! the hex `.note.gnu.build-id` of the file it maps, read from the file on
//! disk by [`crate::elf`].
//!
//! Everything here reads `/proc` and files, allocates and takes a lock: call
//! it from the agent thread, never from a signal handler. Call it again when
//! building each profile, so libraries `dlopen`ed since the last capture are
//! included (a stale module list loses their frames).

use std::collections::HashMap;
use std::fs::File;
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
    crate::elf::gnu_build_id_hex(&File::open(path).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
