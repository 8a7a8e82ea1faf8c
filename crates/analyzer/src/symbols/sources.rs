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

use std::path::{Path, PathBuf};

use super::elf::{self, ElfInfo};
use super::SymbolError;

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

    /// The debug file a stripped binary names in `.gnu_debuglink`, where
    /// GDB looks for it: beside the binary, in `.debug/` there, and under
    /// `/usr/lib/debug` by the binary's directory; only with the binary's
    /// build ID (the link's CRC is not checked).
    pub(crate) fn debug_link(&self, info: &ElfInfo) -> Option<ElfInfo> {
        let name = info.debug_link.as_deref()?;
        let id = info.build_id.as_deref()?;
        let dir = info.path.parent()?;
        let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
        if let Ok(absolute) = dir.canonicalize() {
            let relative = absolute.strip_prefix("/").unwrap_or(&absolute);
            candidates.push(Path::new("/usr/lib/debug").join(relative).join(name));
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
