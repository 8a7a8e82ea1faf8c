//! Where symbols are looked for: the `--symbols` paths. A file (a binary,
//! stripped or not, or a separate debug file) is indexed by its build ID
//! and its name up front; a directory is searched per build ID in the two
//! layouts tools write:
//!
//! - GDB's and the distributions' `.build-id/ab/cdef….debug` (under the
//!   directory, or the directory being `.build-id` itself), and the
//!   `.build-id/ab/cdef…` link to the binary beside it;
//! - the debuginfod client cache, `<dir>/<build id>/debuginfo` and
//!   `<dir>/<build id>/executable`.
//!
//! A binary found without DWARF gets its separate debug file as GDB finds
//! it, `/usr/lib/debug` included ([`Sources::separate_debug_file`]).

use std::path::{Path, PathBuf};

use super::elf::{self, ElfInfo};
use super::SymbolError;

/// Where the system keeps separate debug files: GDB's default
/// `debug-file-directory`.
const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";

/// The `--symbols` paths, looked at.
pub(crate) struct Sources {
    /// The files named, in order.
    pub(crate) files: Vec<ElfInfo>,
    /// The directories named, in order.
    pub(crate) dirs: Vec<PathBuf>,
}

impl Sources {
    /// Looks at each path: a file must be ELF, a directory is searched
    /// later.
    pub(crate) fn new(paths: &[PathBuf]) -> Result<Sources, SymbolError> {
        let mut sources = Sources {
            files: Vec::new(),
            dirs: Vec::new(),
        };
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|error| SymbolError::Read {
                path: path.clone(),
                error: error.to_string(),
            })?;
            if meta.is_dir() {
                sources.dirs.push(path.clone());
            } else {
                sources.files.push(elf::scan(path)?);
            }
        }
        Ok(sources)
    }

    /// Every file with build ID `id` (lowercase hex): the named files
    /// first, then the directories' (a file in a directory whose build ID
    /// differs from its name is skipped).
    pub(crate) fn by_build_id(&self, id: &str) -> Vec<ElfInfo> {
        let mut found: Vec<ElfInfo> = self
            .files
            .iter()
            .filter(|f| f.build_id.as_deref() == Some(id))
            .cloned()
            .collect();
        if id.len() < 3 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return found;
        }
        let (head, tail) = id.split_at(2);
        for dir in &self.dirs {
            let candidates = [
                dir.join(".build-id")
                    .join(head)
                    .join(format!("{tail}.debug")),
                dir.join(head).join(format!("{tail}.debug")),
                dir.join(id).join("debuginfo"),
                dir.join(".build-id").join(head).join(tail),
                dir.join(head).join(tail),
                dir.join(id).join("executable"),
            ];
            for path in candidates {
                if !path.is_file() || found.iter().any(|f| same_file(&f.path, &path)) {
                    continue;
                }
                if let Ok(info) = elf::scan(&path) {
                    if info.build_id.as_deref() == Some(id) {
                        found.push(info);
                    }
                }
            }
        }
        found
    }

    /// The named files whose name is `name`, or `name.debug`.
    pub(crate) fn by_name(&self, name: &str) -> Vec<&ElfInfo> {
        self.files
            .iter()
            .filter(|f| {
                let n = f.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n == name || n.strip_suffix(".debug") == Some(name)
            })
            .collect()
    }

    /// The separate debug file of `info`, a binary without DWARF, where GDB
    /// looks for it: by the binary's build ID in the `--symbols`
    /// directories and under [`SYSTEM_DEBUG_DIR`] (`.build-id/ab/cdef….debug`,
    /// where Debian's `-dbg` and `-dbgsym` packages put them); then by the
    /// name its `.gnu_debuglink` gives, beside the binary, in `.debug/`
    /// there, and under [`SYSTEM_DEBUG_DIR`] by the binary's directory. Only
    /// a file with the binary's build ID (the link's CRC is not checked).
    pub(crate) fn separate_debug_file(&self, info: &ElfInfo) -> Option<ElfInfo> {
        let id = info.build_id.as_deref()?;
        let mut others: Vec<ElfInfo> = self
            .by_build_id(id)
            .into_iter()
            .filter(|found| !same_file(&found.path, &info.path))
            .collect();
        if let Some(at) = others
            .iter()
            .position(|f| f.has_dwarf)
            .or(others.first().map(|_| 0))
        {
            return Some(others.swap_remove(at));
        }
        let system = Path::new(SYSTEM_DEBUG_DIR);
        let mut candidates = Vec::new();
        if id.len() > 2 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let (head, tail) = id.split_at(2);
            candidates.push(
                system
                    .join(".build-id")
                    .join(head)
                    .join(format!("{tail}.debug")),
            );
        }
        if let (Some(name), Some(dir)) = (info.debug_link.as_deref(), info.path.parent()) {
            candidates.push(dir.join(name));
            candidates.push(dir.join(".debug").join(name));
            if let Ok(absolute) = dir.canonicalize() {
                let relative = absolute.strip_prefix("/").unwrap_or(&absolute);
                candidates.push(system.join(relative).join(name));
            }
        }
        candidates
            .into_iter()
            .filter(|c| c.is_file() && !same_file(c, &info.path))
            .filter_map(|c| elf::scan(&c).ok())
            .find(|found| found.build_id.as_deref() == Some(id))
    }

    /// The `dwz` supplementary file `info` names: by its build ID among the
    /// sources, else at the path it records (absolute, or relative to
    /// `info`'s directory).
    pub(crate) fn supplementary(&self, info: &ElfInfo) -> Result<Option<ElfInfo>, String> {
        let Some((path, id)) = &info.alt_link else {
            return Ok(None);
        };
        if let Some(found) = self.by_build_id(id).into_iter().next() {
            return Ok(Some(found));
        }
        let candidates = [
            Some(path.clone()),
            info.path.parent().map(|dir| dir.join(path)),
        ];
        for candidate in candidates.into_iter().flatten() {
            if let Ok(found) = elf::scan(&candidate) {
                if found.build_id.as_deref() == Some(id.as_str()) {
                    return Ok(Some(found));
                }
            }
        }
        Err(format!(
            "its DWARF is compressed with dwz and refers to the supplementary file {} \
             (build ID {id}), which is not among the --symbols paths nor at that path: \
             functions and lines defined there are missing (give the file, or a \
             directory holding .build-id/{}/{}.debug)",
            path.display(),
            &id[..2.min(id.len())],
            &id[2.min(id.len())..]
        ))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
