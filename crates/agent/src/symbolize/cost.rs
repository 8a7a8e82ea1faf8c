//! What loading an object's symbols would add to the process's memory,
//! estimated from section headers before anything is loaded, so a capture
//! can choose what fits its limit ([`super::budget`]) instead of finding
//! out afterwards.
//!
//! **Debug info**, as `backtrace` loads it: opening the context walks every
//! unit, which makes nearly every page of the uncompressed sections
//! resident; compressed sections are inflated into the heap; abbreviations
//! cost ~24 bytes of heap per stored byte, ranges, line headers and the
//! first unit's rows ~1.5 bytes per byte of `.debug_info`, `.debug_line`
//! and ranges; `backtrace` also sorts a copy of the symbol table. Hence,
//! on the safe side of three files measured (docs/performance.md,
//! "Debug-info estimates"):
//!
//! ```text
//! Σ .debug_* loaded size + Σ stored size of the compressed ones
//!   + 24 × .debug_abbrev + 1.5 × (.debug_info + .debug_line + ranges)
//!   + 2 × symbol table size + the .dwp file
//! ```
//!
//! Units that later lookups touch add more, which no header tells:
//! [`super::budget`] watches RSS for that. **A symbol table**, as
//! [`super::symtab`] reads it, is bounded by `32 × symbols + 96 KiB`.
//! Estimates are kept per object (path and build ID) for the life of the
//! process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

use super::debug_file::separate_debug_file;
use crate::elf::{ElfFile, SHT_SYMTAB};

/// Heap per byte of `.debug_abbrev`, parsed (see the module doc).
const ABBREV_EXPANSION: u64 = 24;
/// Heap per two bytes of `.debug_info`, `.debug_line` and the ranges
/// sections (see the module doc): 1.5 bytes per byte.
const PARSED_PER_TWO_BYTES: u64 = 3;
/// Symbol-table entry size (ELF64).
const SYMBOL_SIZE: u64 = 24;
/// [`super::symtab`]'s read buffer.
const SYMTAB_READ_BUFFER: u64 = 96 << 10;
/// Estimates kept at most (objects seen); then they are all forgotten.
const MAX_KEPT: usize = 1024;

/// What an object's debug info would cost to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DebugInfo {
    /// It has none (no `.debug_info` in the object nor a debug file): its
    /// names can only come from a symbol table, whatever the limit.
    Absent,
    /// About this many bytes of RSS.
    Bytes(u64),
    /// Its files could not be read as 64-bit little-endian ELF: loading is
    /// left to `backtrace`, watched by the RSS backstop only.
    Unknown,
}

/// The estimates for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Costs {
    pub debug_info: DebugInfo,
    /// Reading its symbol table, if it has one (its own, its debug file's,
    /// or `.dynsym`).
    pub symbol_table: Option<u64>,
    /// The separate debug file, when it has one (for comments).
    pub debug_file: Option<PathBuf>,
}

type Key = (String, Option<String>);

static KNOWN: LazyLock<Mutex<HashMap<Key, Costs>>> = LazyLock::new(Default::default);

/// The estimates for the object mapped from `path` (build ID `build_id`,
/// lowercase hex), computed once per object.
pub(crate) fn of(path: &str, build_id: Option<&str>) -> Costs {
    let key = (path.to_string(), build_id.map(str::to_string));
    // A poisoned lock only means a thread panicked while inserting; the
    // map holds whole entries only.
    if let Some(known) = KNOWN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return known.clone();
    }
    let costs = estimate(Path::new(path), build_id);
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if known.len() >= MAX_KEPT {
        known.clear();
    }
    known.insert(key, costs.clone());
    costs
}

fn estimate(path: &Path, build_id: Option<&str>) -> Costs {
    let symbol_table =
        super::symtab::symbols_of(path, build_id).map(|(_, table)| table_cost(table.size));
    let Some(object) = ElfFile::open(path) else {
        return Costs {
            debug_info: DebugInfo::Unknown,
            symbol_table,
            debug_file: None,
        };
    };
    let debug_file = separate_debug_file(path, &object, build_id);
    let with_dwarf = debug_file.as_deref().and_then(ElfFile::open);
    let debug_info = match &with_dwarf {
        Some(debug) => debug_info_cost(debug),
        None if debug_file.is_some() => DebugInfo::Unknown,
        None => debug_info_cost(&object),
    };
    let dwp = {
        let mut name = path.as_os_str().to_os_string();
        name.push(".dwp");
        std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len())
    };
    let debug_info = match debug_info {
        DebugInfo::Bytes(n) => DebugInfo::Bytes(n.saturating_add(dwp)),
        other => other,
    };
    Costs {
        debug_info,
        symbol_table,
        debug_file,
    }
}

/// The estimate of the module doc for the file holding debug info.
pub(crate) fn debug_info_cost(file: &ElfFile) -> DebugInfo {
    let is_dwarf = |name: &str| name.starts_with(".debug_") || name.starts_with(".zdebug_");
    if !file
        .sections
        .iter()
        .any(|s| s.name == ".debug_info" || s.name == ".zdebug_info")
    {
        return DebugInfo::Absent;
    }
    let mut bytes = 0u64;
    for section in file.sections.iter().filter(|s| is_dwarf(&s.name)) {
        let loaded = file.loaded_size(section);
        bytes = bytes.saturating_add(loaded);
        if section.is_compressed() || section.name.starts_with(".zdebug_") {
            bytes = bytes.saturating_add(section.size);
        }
        let kind = section
            .name
            .trim_start_matches(".z")
            .trim_start_matches('.');
        let kind = kind.trim_start_matches("debug_");
        let parsed = match kind {
            "abbrev" => loaded.saturating_mul(ABBREV_EXPANSION),
            "info" | "line" | "ranges" | "rnglists" => {
                loaded.saturating_mul(PARSED_PER_TWO_BYTES) / 2
            }
            _ => 0,
        };
        bytes = bytes.saturating_add(parsed);
    }
    let symbols = file
        .section_of_kind(SHT_SYMTAB)
        .map_or(0, |s| s.size.saturating_mul(2));
    DebugInfo::Bytes(bytes.saturating_add(symbols))
}

/// What [`super::symtab`] takes to hold a table of `size` bytes.
fn table_cost(size: u64) -> u64 {
    (size / SYMBOL_SIZE)
        .saturating_mul(32)
        .saturating_add(SYMTAB_READ_BUFFER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_has_debug_info_and_a_symbol_table() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let costs = of(exe.to_str().unwrap(), None);
        let DebugInfo::Bytes(debug) = costs.debug_info else {
            panic!("{costs:?}");
        };
        // At least what the DWARF sections hold.
        let elf = ElfFile::open(&exe).unwrap();
        let stored: u64 = elf
            .sections
            .iter()
            .filter(|s| s.name.starts_with(".debug_"))
            .map(|s| s.size)
            .sum();
        assert!(debug >= stored && stored > 0, "{debug} < {stored}");
        let table = costs.symbol_table.unwrap();
        assert!(table > SYMTAB_READ_BUFFER && table < debug, "{costs:?}");
        // Asked again: the same answer, from memory.
        assert_eq!(of(exe.to_str().unwrap(), None), costs);
    }

    #[test]
    fn what_cannot_be_read_is_unknown_without_a_table() {
        let costs = of("/nonexistent/lib.so", Some("abcd"));
        assert_eq!(costs.debug_info, DebugInfo::Unknown);
        assert_eq!(costs.symbol_table, None);
    }

    #[test]
    fn compressed_sections_count_inflated_and_stored() {
        // libc's debug file, where `libc6-dbg` is installed, is compressed.
        let getpid = libc::getpid as *const () as u64;
        let mappings = crate::process::current_mappings().unwrap();
        let Some(libc) = mappings.iter().find(|m| m.contains(getpid)) else {
            return;
        };
        let costs = of(&libc.path, libc.build_id.as_deref());
        let Some(debug_file) = &costs.debug_file else {
            eprintln!("no separate debug file for {}", libc.path);
            return;
        };
        let elf = ElfFile::open(debug_file).unwrap();
        let info = elf.section(".debug_info").unwrap();
        if !info.is_compressed() {
            return;
        }
        assert!(elf.loaded_size(info) > info.size);
        let DebugInfo::Bytes(bytes) = costs.debug_info else {
            panic!("{costs:?}");
        };
        assert!(bytes > elf.loaded_size(info) + info.size, "{costs:?}");
        assert!(costs.symbol_table.is_some());
    }
}
