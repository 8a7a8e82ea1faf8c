//! Function names from the ELF symbol table (`.symtab`) of a loaded object.
//!
//! Debug info with line tables only (`debug = "line-tables-only"`) names a
//! function without its path (`remember_session`, `alloc_event<std::alloc::System>`),
//! and `backtrace` reads the symbol table only for addresses that have no
//! debug info at all. The symbol table has the full, mangled name of every
//! out-of-line function (unless the binary was built with
//! `strip = "symbols"`), so [`super::Symbolizer`] asks it for the outermost
//! frame of an address when debug info gave a short name.
//!
//! A small bounds-checked reader: 64-bit little-endian ELF (what the agent
//! runs on), headers and symbols read through [`crate::elf`]'s bounded
//! `pread`, names read on demand, so a table costs 16 bytes per function in
//! memory ([`super::cost`] counts it before it is read). Tables are kept
//! per object until [`super::Symbolizer::release_debug_info`]. Reading one
//! is cheap next to debug info: about 30 ms for this crate's unit-test
//! binary (unoptimized, 22,000 symbols), including the lookup.
//!
//! Which table ([`symbols_of`]): the object's own `.symtab`; else that of
//! its separate debug file (Debian's `libc.so.6` has only `.dynsym`, its
//! `libc6-dbg` file the full table, `start_thread` included); else its
//! `.dynsym` (exported functions only, what a stripped binary keeps). So a
//! capture whose memory limit leaves debug info out ([`super::budget`])
//! still names libc's frames from the debug file's symbol table, at a
//! hundredth of the cost of its DWARF.
//!
//! The object is found with `dl_iterate_phdr`, its file by the name the
//! loader gives it (`/proc/self/exe` for the executable). A library replaced
//! on disk since it was loaded gives another file's names; the caller only
//! takes a name whose last segment matches what debug info said.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use super::debug_file::separate_debug_file;
use crate::elf::{
    gnu_build_id_hex, read_at, u16_at, u32_at, u64_at, ElfFile, Section, SHT_DYNSYM, SHT_SYMTAB,
};

const STT_FUNC: u8 = 2;
const SHN_UNDEF: u16 = 0;
const SYMBOL_SIZE: u64 = 24;
/// Symbols read per `pread` (96 KiB).
const SYMBOLS_PER_READ: u64 = 4096;
/// Larger symbol tables are not read (a binary with 16 million symbols is
/// not something to index inside a service).
const MAX_SYMBOLS: u64 = 16 << 20;
/// Longest name read (Rust's longest mangled names are a few KiB).
const MAX_NAME: u64 = 64 << 10;

/// The mangled name of the function whose code contains `addr`, from the
/// symbol table of the loaded object that maps it; `None` when no object
/// maps it, the object's file has no symbol table, or no sized function
/// symbol covers the address.
pub(super) fn function_name(addr: u64) -> Option<Vec<u8>> {
    let (path, bias) = loaded_object(addr)?;
    let table = table(&path)?;
    table.name_at(addr.checked_sub(bias)?)
}

/// Forgets every table read (memory and open files).
pub(super) fn clear() {
    lock().clear();
}

/// Tables by file path; `None` for a file without one (read once, too).
static TABLES: LazyLock<Mutex<HashMap<String, Option<Arc<SymbolTable>>>>> =
    LazyLock::new(Default::default);

/// A poisoned lock only means a thread panicked while reading a table; the
/// map holds only complete tables.
fn lock() -> MutexGuard<'static, HashMap<String, Option<Arc<SymbolTable>>>> {
    TABLES.lock().unwrap_or_else(PoisonError::into_inner)
}

fn table(path: &str) -> Option<Arc<SymbolTable>> {
    let mut tables = lock();
    if let Some(known) = tables.get(path) {
        return known.clone();
    }
    let read = symbols_of(Path::new(path), None)
        .and_then(|(elf, symbols)| SymbolTable::read(elf, &symbols))
        .map(Arc::new);
    tables.insert(path.to_string(), read.clone());
    read
}

/// The function symbols of the object at `path` (whose build ID, lowercase
/// hex, is `build_id` when the caller knows it; else it is read when
/// needed): the file and the table section to read them from, chosen as
/// the module doc says. `None` when it has no symbol table at all.
pub(super) fn symbols_of(path: &Path, build_id: Option<&str>) -> Option<(ElfFile, Section)> {
    let object = ElfFile::open(path)?;
    if let Some(symtab) = object.section_of_kind(SHT_SYMTAB).cloned() {
        return Some((object, symtab));
    }
    let build_id = match build_id {
        Some(id) => Some(id.to_string()),
        None => gnu_build_id_hex(&object.file),
    };
    let in_debug_file = separate_debug_file(path, &object, build_id.as_deref())
        .and_then(|debug| ElfFile::open(&debug))
        .and_then(|debug| {
            let symtab = debug.section_of_kind(SHT_SYMTAB)?.clone();
            Some((debug, symtab))
        });
    in_debug_file.or_else(|| {
        let dynsym = object.section_of_kind(SHT_DYNSYM)?.clone();
        Some((object, dynsym))
    })
}

/// The function symbols of one ELF file.
#[derive(Debug)]
struct SymbolTable {
    file: File,
    /// Where `.strtab` (the names) is in the file.
    strings: Range<u64>,
    /// (start address, size, name offset in `.strtab`), sorted by start,
    /// one per start address.
    functions: Vec<(u64, u32, u32)>,
}

impl SymbolTable {
    /// Reads the function symbols of `symtab` (a `.symtab` or `.dynsym` of
    /// `elf`): `None` when it is malformed.
    fn read(elf: ElfFile, symtab: &Section) -> Option<SymbolTable> {
        let strtab = elf
            .sections
            .get(usize::try_from(symtab.link).ok()?)?
            .clone();
        let file = elf.file;
        let count = symtab.size / SYMBOL_SIZE;
        if symtab.entsize != SYMBOL_SIZE || count > MAX_SYMBOLS {
            return None;
        }
        // Reserved once for every symbol (a bound on the functions), so the
        // table never regrows: what `super::cost` counts is what it takes.
        let mut functions = Vec::with_capacity(usize::try_from(count).ok()?);
        for first in (0..count).step_by(SYMBOLS_PER_READ as usize) {
            let n = SYMBOLS_PER_READ.min(count - first);
            let at = symtab.offset.checked_add(first * SYMBOL_SIZE)?;
            let bytes = read_at(&file, at, n * SYMBOL_SIZE)?;
            functions.extend(
                bytes
                    .chunks_exact(SYMBOL_SIZE as usize)
                    .filter_map(function),
            );
        }
        // Aliases (several names at one address): the largest covers most.
        functions
            .sort_unstable_by_key(|&(start, size, name)| (start, std::cmp::Reverse(size), name));
        functions.dedup_by_key(|f| f.0);
        functions.shrink_to_fit();
        Some(SymbolTable {
            file,
            strings: strtab.offset..strtab.offset.checked_add(strtab.size)?,
            functions,
        })
    }

    /// The name of the function covering `svma` (an address as the file's
    /// symbol table gives them).
    fn name_at(&self, svma: u64) -> Option<Vec<u8>> {
        let i = self
            .functions
            .partition_point(|f| f.0 <= svma)
            .checked_sub(1)?;
        let (start, size, name) = self.functions[i];
        if svma - start >= u64::from(size) {
            return None;
        }
        self.name(name)
    }

    /// The NUL-terminated string at `offset` in `.strtab`.
    fn name(&self, offset: u32) -> Option<Vec<u8>> {
        let mut at = self.strings.start.checked_add(offset.into())?;
        let mut name = Vec::new();
        while at < self.strings.end && (name.len() as u64) < MAX_NAME {
            let chunk = read_some_at(&self.file, at, (self.strings.end - at).min(256))?;
            if let Some(end) = chunk.iter().position(|&b| b == 0) {
                name.extend_from_slice(&chunk[..end]);
                return (!name.is_empty()).then_some(name);
            }
            at += chunk.len() as u64;
            name.extend_from_slice(&chunk);
        }
        None
    }
}

/// `(start, size, name offset)` of a symbol entry that is a defined,
/// sized, named function.
fn function(symbol: &[u8]) -> Option<(u64, u32, u32)> {
    let name = u32_at(symbol, 0)?;
    let info = *symbol.get(4)?;
    let section = u16_at(symbol, 6)?;
    let start = u64_at(symbol, 8)?;
    let size = u64_at(symbol, 16)?;
    let defined = info & 0xf == STT_FUNC && section != SHN_UNDEF;
    (defined && name != 0 && start != 0 && size != 0)
        .then(|| (start, u32::try_from(size).unwrap_or(u32::MAX), name))
}

/// Up to `len` bytes at `offset`, at least one; `None` at the end of the
/// file or on an error.
fn read_some_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).ok()?];
    let n = file.read_at(&mut buf, offset).ok()?;
    buf.truncate(n);
    (n > 0).then_some(buf)
}

/// The file of the loaded object whose segments contain `addr`, and its
/// load bias (`addr - bias` is the address in the file's symbol table).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn loaded_object(addr: u64) -> Option<(String, u64)> {
    use std::ffi::{c_int, c_void, CStr};

    struct Search {
        addr: u64,
        bias: u64,
        /// The object's name, copied without allocating: the callback runs
        /// under the loader's lock.
        name: [u8; 4096],
        name_len: usize,
        found: bool,
        /// The first object listed is the executable.
        first: bool,
    }

    /// # Safety
    /// `info` is the loader's description of one object, valid during the
    /// call; `data` is the `Search` passed to `dl_iterate_phdr` below.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: see the function's contract; nothing else uses `search`
        // during the iteration.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        let first = std::mem::replace(&mut search.first, false);
        let phdrs = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: the loader's program headers of this object, `dlpi_phnum` of them.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) }
        };
        let bias = info.dlpi_addr;
        let inside = phdrs.iter().any(|p| {
            let start = bias.wrapping_add(p.p_vaddr);
            p.p_type == libc::PT_LOAD && search.addr >= start && search.addr - start < p.p_memsz
        });
        if !inside {
            return 0;
        }
        let name: &[u8] = if info.dlpi_name.is_null() {
            b""
        } else {
            // SAFETY: the loader's NUL-terminated name of this object.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        let name: &[u8] = if name.is_empty() && first {
            b"/proc/self/exe"
        } else {
            name
        };
        if name.len() > search.name.len() {
            return 1; // found, but the name does not fit: give up on it
        }
        search.name[..name.len()].copy_from_slice(name);
        search.name_len = name.len();
        search.bias = bias;
        search.found = true;
        1
    }

    let mut search = Search {
        addr,
        bias: 0,
        name: [0; 4096],
        name_len: 0,
        found: false,
        first: true,
    };
    // SAFETY: `visit` only reads what the loader passes it and writes to
    // `search`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast());
    }
    let name = std::str::from_utf8(&search.name[..search.name_len]).ok()?;
    (search.found && !name.is_empty()).then(|| (name.to_string(), search.bias))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn loaded_object(_addr: u64) -> Option<(String, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn find_my_symbol() -> u64 {
        std::hint::black_box(11)
    }

    #[test]
    fn names_a_function_of_this_binary_anywhere_inside_it() {
        let start = find_my_symbol as *const () as u64;
        for addr in [start, start + 1] {
            let name = function_name(addr).expect("the test binary has a symbol table");
            let demangled = format!("{:#}", backtrace::SymbolName::new(&name));
            assert!(
                demangled.ends_with("symbolize::symtab::tests::find_my_symbol"),
                "{demangled}"
            );
        }
        // A function in libc, through its own (dynamic-loader) name.
        assert!(loaded_object(libc::getpid as *const () as u64).is_some());
        // Not code of any object.
        assert_eq!(function_name(16), None);
        assert_eq!(loaded_object(16), None);
    }

    #[test]
    fn libc_is_named_from_its_debug_files_table_when_installed() {
        let getpid = libc::getpid as *const () as u64;
        let (libc_path, _) = loaded_object(getpid).unwrap();
        // Exported: in `.dynsym` whatever else is installed.
        let name = function_name(getpid).expect("getpid is named");
        assert!(String::from_utf8_lossy(&name).contains("getpid"));
        let (elf, table) = symbols_of(Path::new(&libc_path), None).unwrap();
        let id = gnu_build_id_hex(&ElfFile::open(Path::new(&libc_path)).unwrap().file);
        let debug_file =
            id.map(|id| format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]));
        if !debug_file.as_ref().is_some_and(|f| Path::new(f).is_file()) {
            eprintln!("no separate debug file for {libc_path}: the .dynsym case only");
            return;
        }
        // The debug file's full table, with libc's own internal functions:
        // the thread's outermost frames are `start_thread` and `clone3`.
        assert_eq!(table.kind, SHT_SYMTAB, "{elf:?}");
        let mut ips = Vec::new();
        backtrace::trace(|frame| {
            ips.push(frame.ip() as u64);
            true
        });
        let names: Vec<String> = ips
            .iter()
            .filter(|&&ip| ip > 1 && loaded_object(ip).is_some_and(|(p, _)| p == libc_path))
            .filter_map(|&ip| function_name(ip - 1))
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "start_thread"), "{names:?}");
    }

    #[test]
    fn files_that_are_not_elf_with_a_symbol_table_give_nothing() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script");
        std::fs::write(&path, b"#!/bin/sh\necho not elf\n").unwrap();
        assert!(symbols_of(&path, None).is_none());
        // Every truncation of this binary's first page (headers cut short).
        let exe = std::fs::read("/proc/self/exe").unwrap();
        for len in [0, 5, 16, 63, 64, 65, 512, 4096] {
            let path = dir.path().join(format!("cut-{len}"));
            std::fs::File::create(&path)
                .unwrap()
                .write_all(&exe[..len.min(exe.len())])
                .unwrap();
            assert!(symbols_of(&path, None).is_none(), "{len}");
        }
        // A symbol table whose string table link is out of range.
        let (elf, mut symtab) = symbols_of(Path::new("/proc/self/exe"), None).unwrap();
        symtab.link = u32::MAX;
        assert!(SymbolTable::read(elf, &symtab).is_none());
    }

    #[test]
    fn symbols_are_sized_defined_named_functions() {
        let entry = |name: u32, info: u8, section: u16, start: u64, size: u64| {
            let mut e = Vec::new();
            e.extend_from_slice(&name.to_le_bytes());
            e.push(info);
            e.push(0);
            e.extend_from_slice(&section.to_le_bytes());
            e.extend_from_slice(&start.to_le_bytes());
            e.extend_from_slice(&size.to_le_bytes());
            e
        };
        // STB_GLOBAL | STT_FUNC, in section 14.
        assert_eq!(
            function(&entry(7, 0x12, 14, 0x1000, 64)),
            Some((0x1000, 64, 7))
        );
        assert_eq!(function(&entry(7, 0x11, 14, 0x1000, 64)), None, "an object");
        assert_eq!(function(&entry(7, 0x12, 0, 0x1000, 64)), None, "undefined");
        assert_eq!(function(&entry(7, 0x12, 14, 0x1000, 0)), None, "no size");
        assert_eq!(function(&entry(0, 0x12, 14, 0x1000, 64)), None, "no name");
        assert_eq!(function(&entry(7, 0x12, 14, 0x1000, 64)[..20]), None);
    }
}
