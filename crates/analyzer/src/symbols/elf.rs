//! What the symbolizer needs from an ELF file: first a quick look
//! ([`ElfInfo`]: build ID, type, `PT_LOAD` segments, whether it has DWARF
//! or a symbol table), then, for the files a profile needs, the debug
//! information itself ([`DebugInfo`]).
//!
//! Files are read through [`object::ReadCache`]: only the headers and the
//! sections asked for are read, so indexing a 200 MB binary costs a few
//! reads, and no file is mapped (a file changing while mapped is the
//! caller's `unsafe` promise, which `--symbols` does not ask for). The
//! DWARF sections are copied, inflated when compressed (`SHF_COMPRESSED`,
//! `.zdebug_*`), into reference-counted buffers that the
//! [`addr2line::Context`] reads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use object::elf;
use object::read::elf::{ElfFile, FileHeader, ProgramHeader};
use object::{Endianness, FileKind, Object, ObjectSection, ObjectSymbol, ReadCache, SymbolKind};
use rayon::prelude::*;

use super::SymbolError;

/// The reader the DWARF is parsed with: owned, shareable section bytes.
pub(crate) type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// A `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) offset: u64,
    pub(crate) vaddr: u64,
    pub(crate) filesz: u64,
    pub(crate) memsz: u64,
    pub(crate) align: u64,
    pub(crate) executable: bool,
}

/// The ELF file type, as far as address translation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElfType {
    Exec,
    Dyn,
    Rel,
    Other,
}

/// A quick look at one ELF file.
#[derive(Clone, Debug)]
pub(crate) struct ElfInfo {
    pub(crate) path: PathBuf,
    /// The GNU build ID, lowercase hex.
    pub(crate) build_id: Option<String>,
    pub(crate) elf_type: ElfType,
    pub(crate) loads: Vec<Segment>,
    /// Has a `.debug_info` with contents (not `NOBITS`, as in a stripped
    /// file's leftovers).
    pub(crate) has_dwarf: bool,
    /// Has a non-empty `.symtab`.
    pub(crate) has_symtab: bool,
    /// `.gnu_debugaltlink`: the `dwz` supplementary file's path and build ID.
    pub(crate) alt_link: Option<(PathBuf, String)>,
    /// `.gnu_debuglink`: the file name of a stripped binary's debug file.
    pub(crate) debug_link: Option<String>,
    pub(crate) size: u64,
    pub(crate) modified: Option<SystemTime>,
}

impl ElfInfo {
    /// Whether the `PT_LOAD` headers carry real file offsets: a file made
    /// by `objcopy --only-keep-debug` zeroes the code segment's offset and
    /// file size (it keeps the first segment's, which holds the headers).
    pub(crate) fn has_load_offsets(&self) -> bool {
        self.loads.iter().any(|s| s.executable && s.filesz > 0)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn open(path: &Path) -> Result<ReadCache<File>, SymbolError> {
    File::open(path)
        .map(ReadCache::new)
        .map_err(|error| SymbolError::Read {
            path: path.to_path_buf(),
            error: error.to_string(),
        })
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> SymbolError {
    SymbolError::NotElf {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads the headers of the ELF file at `path`.
pub(crate) fn scan(path: &Path) -> Result<ElfInfo, SymbolError> {
    let cache = open(path)?;
    let meta = std::fs::metadata(path).ok();
    match FileKind::parse(&cache).map_err(|e| invalid(path, e))? {
        FileKind::Elf32 => scan_elf::<elf::FileHeader32<Endianness>>(path, &cache, meta),
        FileKind::Elf64 => scan_elf::<elf::FileHeader64<Endianness>>(path, &cache, meta),
        other => Err(invalid(path, format!("a {other:?} file, not ELF"))),
    }
}

fn scan_elf<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    cache: &ReadCache<File>,
    meta: Option<std::fs::Metadata>,
) -> Result<ElfInfo, SymbolError> {
    let file = ElfFile::<Elf, _>::parse(cache).map_err(|e| invalid(path, e))?;
    let endian = file.endian();
    let elf_type = match file.elf_header().e_type(endian) {
        elf::ET_EXEC => ElfType::Exec,
        elf::ET_DYN => ElfType::Dyn,
        elf::ET_REL => ElfType::Rel,
        _ => ElfType::Other,
    };
    let loads = file
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| Segment {
            offset: p.p_offset(endian).into(),
            vaddr: p.p_vaddr(endian).into(),
            filesz: p.p_filesz(endian).into(),
            memsz: p.p_memsz(endian).into(),
            align: p.p_align(endian).into(),
            executable: p.p_flags(endian).0 & elf::PF_X.0 != 0,
        })
        .collect();
    let build_id = file
        .build_id()
        .map_err(|e| invalid(path, e))?
        .map(hex)
        .filter(|id| !id.is_empty());
    let has_dwarf = file
        .section_by_name(".debug_info")
        .is_some_and(|s| s.kind() != object::SectionKind::UninitializedData && s.size() > 0);
    let has_symtab = file.symbols().nth(1).is_some();
    let alt_link = match file.gnu_debugaltlink() {
        Ok(Some((name, id))) => Some((
            PathBuf::from(String::from_utf8_lossy(name).into_owned()),
            hex(id),
        )),
        _ => None,
    };
    let debug_link = match file.gnu_debuglink() {
        Ok(Some((name, _crc))) => Some(String::from_utf8_lossy(name).into_owned()),
        _ => None,
    };
    Ok(ElfInfo {
        path: path.to_path_buf(),
        build_id,
        elf_type,
        loads,
        has_dwarf,
        has_symtab,
        alt_link,
        debug_link,
        size: meta.as_ref().map_or(0, |m| m.len()),
        modified: meta.and_then(|m| m.modified().ok()),
    })
}

/// One frame of an address: innermost first, as pprof's `Location.line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Demangled name.
    pub(crate) name: String,
    /// The name as the binary spells it (mangled).
    pub(crate) system_name: String,
    /// Source file, empty when unknown.
    pub(crate) file: String,
    /// Line, 0 when unknown.
    pub(crate) line: i64,
    pub(crate) column: i64,
}

/// A function symbol: start, size (0 when the table does not say) and
/// name.
struct Symbol {
    address: u64,
    size: u64,
    name: String,
}

/// The parsed debug information of one binary (cached per build ID for
/// the run).
pub(crate) struct DebugInfo {
    /// The file whose `PT_LOAD` headers translate addresses.
    pub(crate) layout: ElfInfo,
    /// DWARF, when some file had it.
    dwarf: Option<Contexts>,
    /// Function symbols, by address.
    symbols: Vec<Symbol>,
    /// The files read, for messages.
    pub(crate) files: Vec<PathBuf>,
}

impl DebugInfo {
    /// Whether line numbers and inline frames come from DWARF.
    pub(crate) fn has_dwarf(&self) -> bool {
        self.dwarf.is_some()
    }

    /// The frames of each of `svmas` (sorted addresses in the ELF's own
    /// terms) that DWARF or the symbol table knows. Runs of nearby
    /// addresses are looked up in parallel, each by a context of its own
    /// (a context parses units lazily and is not `Sync`), so that each
    /// mostly parses the units of its own run.
    pub(crate) fn frames_of(&self, svmas: &[u64]) -> Vec<(u64, Vec<Frame>)> {
        let chunk = (svmas.len() / (4 * rayon::current_num_threads())).max(1024);
        svmas
            .par_chunks(chunk)
            .flat_map_iter(|run| {
                let context = self.dwarf.as_ref().and_then(Contexts::take);
                let found: Vec<(u64, Vec<Frame>)> = run
                    .iter()
                    .map(|&svma| (svma, self.frames(context.as_ref(), svma)))
                    .filter(|(_, f)| !f.is_empty())
                    .collect();
                if let (Some(dwarf), Some(context)) = (&self.dwarf, context) {
                    dwarf.give_back(context);
                }
                found
            })
            .collect()
    }

    /// The frames at `svma`, innermost first; empty when neither DWARF nor
    /// the symbol table knows it.
    fn frames(&self, context: Option<&addr2line::Context<Reader>>, svma: u64) -> Vec<Frame> {
        let mut frames = Vec::new();
        if let Some(context) = context {
            let found = context.find_frames(svma).skip_all_loads();
            if let Ok(mut iter) = found {
                while let Ok(Some(frame)) = iter.next() {
                    let (file, line, column) = match &frame.location {
                        Some(l) => (
                            l.file.unwrap_or_default().to_string(),
                            l.line.map_or(0, i64::from),
                            l.column.map_or(0, i64::from),
                        ),
                        None => (String::new(), 0, 0),
                    };
                    let (name, system_name) = match &frame.function {
                        Some(f) => (
                            f.demangle().map(|n| n.into_owned()).unwrap_or_default(),
                            f.raw_name().map(|n| n.into_owned()).unwrap_or_default(),
                        ),
                        None => (String::new(), String::new()),
                    };
                    frames.push(Frame {
                        name,
                        system_name,
                        file,
                        line,
                        column,
                    });
                }
            }
        }
        // The outermost frame's name from the symbol table when DWARF has
        // none (no DWARF, or a unit without functions).
        let symbol = self.symbol(svma);
        match frames.last_mut() {
            Some(outer) if outer.name.is_empty() => {
                if let Some(s) = symbol {
                    outer.system_name = s.to_string();
                    outer.name = demangle(s);
                }
            }
            None => {
                if let Some(s) = symbol {
                    frames.push(Frame {
                        name: demangle(s),
                        system_name: s.to_string(),
                        file: String::new(),
                        line: 0,
                        column: 0,
                    });
                }
            }
            _ => {}
        }
        frames.retain(|f| !f.name.is_empty() || !f.file.is_empty());
        frames
    }

    fn symbol(&self, svma: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|s| s.address <= svma);
        let s = self.symbols.get(i.checked_sub(1)?)?;
        (s.size == 0 || svma < s.address.saturating_add(s.size)).then_some(s.name.as_str())
    }
}

/// Contexts over one binary's DWARF, made as threads need them and kept
/// for the run: the sections are shared, each context's parsed units its
/// own.
struct Contexts {
    dwarf: Arc<gimli::Dwarf<Reader>>,
    idle: Mutex<Vec<addr2line::Context<Reader>>>,
}

impl Contexts {
    fn take(&self) -> Option<addr2line::Context<Reader>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        // The first context was made when loading, so this one parses too.
        idle.or_else(|| addr2line::Context::from_arc_dwarf(self.dwarf.clone()).ok())
    }

    fn give_back(&self, context: addr2line::Context<Reader>) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(context);
    }
}

fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}

/// Loads the debug information of one binary from the files that carry
/// its build ID (or match its name): DWARF from the first that has it,
/// the symbol table from the first with a `.symtab` (else the dynamic
/// symbols), the segment layout from one with real `PT_LOAD` offsets.
/// `sup` is the `dwz` supplementary file, when the DWARF file names one
/// and it was found.
/// `files` is not empty.
pub(crate) fn load(files: &[ElfInfo], sup: Option<&Path>) -> Result<DebugInfo, SymbolError> {
    let first = &files[0];
    let layout = files
        .iter()
        .find(|f| f.has_load_offsets())
        .unwrap_or(first)
        .clone();
    let dwarf = match files.iter().find(|f| f.has_dwarf) {
        Some(f) => Some(load_dwarf(&f.path, sup)?),
        None => None,
    };
    let symbol_file = files.iter().find(|f| f.has_symtab).unwrap_or(first);
    let symbols = load_symbols(&symbol_file.path)?;
    Ok(DebugInfo {
        layout,
        dwarf,
        symbols,
        files: files.iter().map(|f| f.path.clone()).collect(),
    })
}

fn with_object<T>(
    path: &Path,
    f: impl for<'a> FnOnce(&object::File<'a, &'a ReadCache<File>>) -> Result<T, SymbolError>,
) -> Result<T, SymbolError> {
    let cache = open(path)?;
    let file = object::File::parse(&cache).map_err(|e| invalid(path, e))?;
    f(&file)
}

fn load_symbols(path: &Path) -> Result<Vec<Symbol>, SymbolError> {
    with_object(path, |file| {
        let mut symbols: Vec<Symbol> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                Some(Symbol {
                    address: s.address(),
                    size: s.size(),
                    name: s.name().ok()?.to_string(),
                })
            })
            .collect();
        // At one address, a sized symbol over an unsized one, then a global
        // name (`main`) over a local alias.
        symbols.sort_by(|a, b| {
            a.address
                .cmp(&b.address)
                .then((b.size > 0).cmp(&(a.size > 0)))
        });
        symbols.dedup_by_key(|s| s.address);
        Ok(symbols)
    })
}

/// The DWARF sections of `path` (and of `sup`), inflated into owned
/// buffers, as an addr2line context.
fn load_dwarf(path: &Path, sup: Option<&Path>) -> Result<Contexts, SymbolError> {
    let mut dwarf = with_object(path, |file| dwarf_sections(path, file))?;
    if let Some(sup) = sup {
        let sup_dwarf = with_object(sup, |file| dwarf_sections(sup, file))?;
        dwarf.set_sup(sup_dwarf);
    }
    let dwarf = Arc::new(dwarf);
    let first =
        addr2line::Context::from_arc_dwarf(dwarf.clone()).map_err(|e| SymbolError::Dwarf {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Contexts {
        dwarf,
        idle: Mutex::new(vec![first]),
    })
}

fn dwarf_sections<'a>(
    path: &Path,
    file: &object::File<'a, &'a ReadCache<File>>,
) -> Result<gimli::Dwarf<Reader>, SymbolError> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, SymbolError> {
        let data: Arc<[u8]> = match file.section_by_name(id.name()) {
            Some(section) => match section.uncompressed_data() {
                Ok(data) => Arc::from(&*data),
                Err(e) => {
                    return Err(SymbolError::Dwarf {
                        path: path.to_path_buf(),
                        reason: format!("section {}: {e}", id.name()),
                    })
                }
            },
            None => Arc::from(&[][..]),
        };
        Ok(gimli::EndianArcSlice::new(data, endian))
    };
    gimli::Dwarf::load(load)
}
