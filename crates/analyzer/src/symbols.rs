//! Offline symbolization (`--symbols`): names, files, lines and inline
//! frames for the addresses of a stripped service's profile, from its
//! binary or debug file found by GNU build ID.
//!
//! A profile written without names (the agent with `symbolize(false)`, a
//! gperftools or jemalloc dump, any pprof producer that records only
//! addresses) has locations with an address, a mapping (where a file was
//! loaded, from which file offset) and often the file's build ID, and no
//! lines. Given `--symbols` paths, each such mapping is matched to the
//! files that carry its build ID ([`sources`]), never by file name alone
//! when a build ID exists; mappings without one (legacy dumps, whose maps
//! text has none) are matched by file name, with a warning when the match
//! cannot be checked. Each address is translated to the file's own
//! addresses ([`address`], as pprof does) and looked up in the DWARF
//! (functions, inlined frames, files and lines, through `addr2line`) or,
//! without DWARF, the symbol table ([`elf`]).
//!
//! The result is a new pprof: the profile is decoded into the owned model,
//! every unnamed location gets one `Line` per frame (innermost first, as
//! pprof orders them), the mapping its `has_*` flags, and the bytes are
//! handed on to the decoder as a converted Node.js profile is. Debug
//! information is parsed once per build ID for the whole run, only distinct
//! addresses are looked up, and different binaries are looked up in
//! parallel.

pub(crate) mod address;
pub(crate) mod elf;
pub(crate) mod sources;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use firewatch_profile::{Function, Line, ProfileData, ProfileView};
use rayon::prelude::*;

use crate::driver::{Timings, Warning};
use crate::error::{Error, Result};
use crate::input::Source;
use address::Placement;
use elf::{DebugInfo, ElfInfo, Frame};
use sources::Sources;

/// Why the `--symbols` files could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// A `--symbols` path could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The system's reason.
        error: String,
    },
    /// A `--symbols` file is not an ELF file, or a malformed one.
    #[error("{}: not a usable ELF file: {reason}", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The DWARF of a `--symbols` file cannot be read.
    #[error("{}: cannot read its DWARF: {reason}", path.display())]
    Dwarf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `--symbols` file has the name of a file the profile maps, but
    /// another build: its symbols would be wrong.
    #[error(
        "{}: build ID {symbols_build_id} does not match build ID {profile_build_id} \
         that {} records for {mapping}: not the binary that ran",
        symbols.display(), profile.display()
    )]
    Mismatch {
        /// The `--symbols` file.
        symbols: PathBuf,
        /// Its build ID.
        symbols_build_id: String,
        /// The profile.
        profile: PathBuf,
        /// The mapped file, as the profile names it.
        mapping: String,
        /// The build ID the profile records for it.
        profile_build_id: String,
    },
}

/// Something about symbolization worth telling the user (in
/// [`Warning::Symbols`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SymbolWarning {
    /// No `--symbols` file has the build ID a mapping records: its
    /// addresses stay unnamed. Once per build ID.
    NoMatch {
        /// The build ID.
        build_id: String,
        /// The mapped file, as the profile names it.
        file: String,
    },
    /// A mapping without build ID whose file name no `--symbols` file has.
    NoMatchByName {
        /// The mapped file, as the profile names it.
        file: String,
    },
    /// A mapping without build ID (a legacy dump) matched by file name
    /// only: the symbols may be from another build.
    MatchedByName {
        /// The mapped file, as the profile names it.
        file: String,
        /// The `--symbols` file used.
        symbols: PathBuf,
        /// Why the match is unsure.
        reason: String,
    },
    /// A `--symbols` path matched no mapping of any profile.
    Unused {
        /// The file or directory.
        path: PathBuf,
    },
    /// A `--symbols` file was used, but some of its information is missing.
    Incomplete {
        /// The file.
        path: PathBuf,
        /// What is missing, and why.
        reason: String,
    },
    /// A mapping's addresses cannot be placed in its file.
    Placement {
        /// The mapped file, as the profile names it.
        file: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for SymbolWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymbolWarning::NoMatch { build_id, file } => write!(
                f,
                "no --symbols file has build ID {build_id} ({file}): its addresses stay unsymbolized"
            ),
            SymbolWarning::NoMatchByName { file } => write!(
                f,
                "no --symbols file is named like {file} (the profile records no build ID): its addresses stay unsymbolized"
            ),
            SymbolWarning::MatchedByName {
                file,
                symbols,
                reason,
            } => write!(
                f,
                "{file} matched {} by file name only ({reason}): names may be wrong if it is another build",
                symbols.display()
            ),
            SymbolWarning::Unused { path } => {
                write!(f, "--symbols {}: matched no mapping of the profiles", path.display())
            }
            SymbolWarning::Incomplete { path, reason } => write!(f, "{}: {reason}", path.display()),
            SymbolWarning::Placement { file, reason } => write!(
                f,
                "cannot place the addresses of {file} in its --symbols file: {reason}"
            ),
        }
    }
}

/// Reads `source` as an analysis would and returns it as uncompressed
/// pprof with the names, files, lines and inline frames the `symbols`
/// files give its unnamed addresses (as `firewatch analyze --symbols`
/// would see it), with the warnings: how a stripped service's profile is
/// handed to other pprof tools symbolized.
pub fn symbolize_to_pprof(
    source: &Source,
    symbols: &[PathBuf],
    max_decompressed: u64,
) -> Result<(Vec<u8>, Vec<Warning>)> {
    let data = ProfileData::open(&source.path, max_decompressed)?;
    let format = source.format_of(&data);
    let data = crate::input::to_pprof(format, data)?;
    let mut symbolizer = Symbolizer::new(symbols)?;
    let (mut data, _) = symbolizer.add_names(vec![data])?;
    let bytes = data.pop().expect("one input").bytes().to_vec();
    Ok((bytes, symbolizer.finish()))
}

/// Where a mapping's symbols come from: the key of the per-run cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    BuildId(String),
    /// A mapping without build ID: the `--symbols` files of this name.
    Name(String),
}

/// The state of symbolization over a run: the sources, the debug
/// information parsed so far, what was used and what to warn about.
pub(crate) struct Symbolizer {
    sources: Option<Sources>,
    cache: HashMap<Key, Arc<DebugInfo>>,
    used: HashSet<PathBuf>,
    warned: HashSet<String>,
    warnings: Vec<SymbolWarning>,
}

/// One mapping of one profile that has unnamed locations.
struct Need {
    profile: usize,
    mapping: usize,
    file: String,
    build_id: String,
    placement: Placement,
    addresses: Vec<u64>,
}

impl Symbolizer {
    /// Looks at the `--symbols` paths (files are indexed now; nothing is
    /// done without any).
    pub(crate) fn new(paths: &[PathBuf]) -> Result<Symbolizer> {
        let sources = if paths.is_empty() {
            None
        } else {
            Some(Sources::new(paths).map_err(Error::Symbols)?)
        };
        Ok(Symbolizer {
            sources,
            cache: HashMap::new(),
            used: HashSet::new(),
            warned: HashSet::new(),
            warnings: Vec::new(),
        })
    }

    /// The inputs (pprof bytes), with names added where the `--symbols`
    /// files have them; inputs with nothing to add are returned as they are.
    pub(crate) fn symbolize(
        &mut self,
        data: Vec<ProfileData>,
        timings: &mut Timings,
    ) -> Result<Vec<ProfileData>> {
        if self.sources.is_none() {
            return Ok(data);
        }
        let (data, changed) = self.add_names(data)?;
        if changed {
            timings.mark("symbolize");
        }
        Ok(data)
    }

    /// [`Symbolizer::symbolize`], saying whether any input changed.
    fn add_names(&mut self, data: Vec<ProfileData>) -> Result<(Vec<ProfileData>, bool)> {
        // Undecodable inputs are left for the decoder to report.
        let views: Vec<Option<ProfileView<'_>>> = data.par_iter().map(|d| d.view().ok()).collect();
        let needs: Vec<Need> = views
            .iter()
            .enumerate()
            .flat_map(|(i, v)| v.as_ref().map(|v| needs(i, v)).unwrap_or_default())
            .collect();
        if needs.is_empty() {
            drop(views);
            return Ok((data, false));
        }
        // Match each mapping to its debug information (loaded once per key).
        let mut keys: Vec<Option<Key>> = Vec::with_capacity(needs.len());
        for need in &needs {
            keys.push(self.key_for(need, data[need.profile].path())?);
        }
        self.load(&keys)?;

        // Translate, then look up the distinct addresses of each binary.
        let mut by_key: HashMap<&Key, Vec<u64>> = HashMap::new();
        let mut bases: Vec<Option<u64>> = Vec::with_capacity(needs.len());
        for (need, key) in needs.iter().zip(&keys) {
            let info = key.as_ref().and_then(|k| self.cache.get(k).cloned());
            let (Some(key), Some(info)) = (key, info) else {
                bases.push(None);
                continue;
            };
            match address::base(&info.layout, need.placement, need.addresses[0]) {
                Ok(base) => {
                    let svmas = by_key.entry(key).or_default();
                    svmas.extend(need.addresses.iter().map(|a| a.wrapping_sub(base)));
                    bases.push(Some(base));
                }
                Err(reason) => {
                    self.warn_once(
                        format!("placement {}", need.file),
                        SymbolWarning::Placement {
                            file: need.file.clone(),
                            reason,
                        },
                    );
                    bases.push(None);
                }
            }
        }
        let cache = &self.cache;
        let frames: HashMap<&Key, HashMap<u64, Vec<Frame>>> = by_key
            .into_par_iter()
            .map(|(key, mut svmas)| {
                svmas.sort_unstable();
                svmas.dedup();
                let found = cache[key].frames_of(&svmas).into_iter().collect();
                (key, found)
            })
            .collect();

        // Rewrite the profiles that gained names.
        let mut per_profile: Vec<Vec<Named<'_>>> = (0..data.len()).map(|_| Vec::new()).collect();
        for ((need, key), base) in needs.iter().zip(&keys).zip(&bases) {
            if let (Some(key), Some(base)) = (key, base) {
                if let Some(table) = frames.get(key) {
                    let dwarf = cache[key].has_dwarf();
                    per_profile[need.profile].push((need.mapping, *base, table, dwarf));
                }
            }
        }
        let rewritten: Vec<Option<Vec<u8>>> = views
            .par_iter()
            .zip(&per_profile)
            .map(|(view, mappings)| match view {
                Some(view) if !mappings.is_empty() => Some(rewrite(view, mappings)),
                _ => None,
            })
            .collect();
        drop(views);
        let out = data
            .into_iter()
            .zip(rewritten)
            .map(|(data, bytes)| match bytes {
                None => Ok(data),
                Some(bytes) => {
                    let path = data.path().to_path_buf();
                    drop(data);
                    ProfileData::from_bytes(path, bytes, u64::MAX).map_err(Error::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((out, true))
    }

    /// The warnings of the run, with the `--symbols` paths that matched
    /// nothing.
    pub(crate) fn finish(mut self) -> Vec<Warning> {
        if let Some(sources) = &self.sources {
            let paths = sources
                .files
                .iter()
                .map(|f| &f.path)
                .chain(&sources.dirs)
                .filter(|p| !self.used.contains(*p))
                .cloned()
                .collect::<Vec<_>>();
            self.warnings
                .extend(paths.into_iter().map(|path| SymbolWarning::Unused { path }));
        }
        self.warnings.into_iter().map(Warning::Symbols).collect()
    }

    fn warn_once(&mut self, key: String, warning: SymbolWarning) {
        if self.warned.insert(key) {
            self.warnings.push(warning);
        }
    }

    /// Which debug information serves `need`: by build ID when the profile
    /// records one, else by file name.
    fn key_for(&mut self, need: &Need, profile: &Path) -> Result<Option<Key>> {
        let sources = self.sources.as_ref().expect("sources");
        let name = Path::new(&need.file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !need.build_id.is_empty() {
            let key = Key::BuildId(need.build_id.clone());
            if self.cache.contains_key(&key) {
                return Ok(Some(key));
            }
            let found = sources.by_build_id(&need.build_id);
            if !found.is_empty() {
                return Ok(Some(key));
            }
            // A file of that name with another build ID is the wrong binary.
            if let Some(other) = sources
                .by_name(&name)
                .into_iter()
                .find(|f| f.build_id.is_some())
            {
                return Err(Error::Symbols(SymbolError::Mismatch {
                    symbols: other.path.clone(),
                    symbols_build_id: other.build_id.clone().unwrap_or_default(),
                    profile: profile.to_path_buf(),
                    mapping: need.file.clone(),
                    profile_build_id: need.build_id.clone(),
                }));
            }
            self.warn_once(
                format!("id {}", need.build_id),
                SymbolWarning::NoMatch {
                    build_id: need.build_id.clone(),
                    file: need.file.clone(),
                },
            );
            return Ok(None);
        }
        if name.is_empty() || need.file.starts_with('[') {
            return Ok(None);
        }
        let candidates = sources.by_name(&name);
        let Some(first) = candidates.first() else {
            self.warn_once(
                format!("name {}", need.file),
                SymbolWarning::NoMatchByName {
                    file: need.file.clone(),
                },
            );
            return Ok(None);
        };
        let key = Key::Name(name.clone());
        if let Some(reason) = unsure(&need.file, first) {
            self.warn_once(
                format!("byname {}", need.file),
                SymbolWarning::MatchedByName {
                    file: need.file.clone(),
                    symbols: first.path.clone(),
                    reason,
                },
            );
        }
        Ok(Some(key))
    }

    /// Parses the debug information of the keys not yet in the cache, in
    /// parallel.
    fn load(&mut self, keys: &[Option<Key>]) -> Result<()> {
        let sources = self.sources.as_ref().expect("sources");
        let mut missing: Vec<&Key> = keys
            .iter()
            .flatten()
            .filter(|k| !self.cache.contains_key(*k))
            .collect();
        missing.sort_by_key(|k| format!("{k:?}"));
        missing.dedup();
        type Loaded = Option<(Key, Vec<PathBuf>, Option<SymbolWarning>, Arc<DebugInfo>)>;
        let loaded: Vec<Loaded> = missing
            .into_par_iter()
            .map(|key| {
                let mut files: Vec<ElfInfo> = match key {
                    Key::BuildId(id) => sources.by_build_id(id),
                    // The first file of the name, and those of its build.
                    Key::Name(name) => {
                        let files = sources.by_name(name);
                        let id = files.first().and_then(|f| f.build_id.clone());
                        files
                            .into_iter()
                            .filter(|f| f.build_id == id)
                            .cloned()
                            .collect()
                    }
                };
                if files.is_empty() {
                    // Gone since it was matched.
                    return Ok(None);
                }
                if !files.iter().any(|f| f.has_dwarf) {
                    let linked = files.iter().find_map(|f| sources.separate_debug_file(f));
                    files.extend(linked);
                }
                let mut warning = None;
                let mut sup = None;
                if let Some(dwarf_file) = files.iter().find(|f| f.has_dwarf) {
                    match sources.supplementary(dwarf_file) {
                        Ok(found) => sup = found,
                        Err(reason) => {
                            warning = Some(SymbolWarning::Incomplete {
                                path: dwarf_file.path.clone(),
                                reason,
                            })
                        }
                    }
                }
                let info = elf::load(&files, sup.as_ref().map(|s| s.path.as_path()))?;
                let mut used: Vec<PathBuf> = info.files.clone();
                used.extend(sup.map(|s| s.path));
                Ok(Some((key.clone(), used, warning, Arc::new(info))))
            })
            .collect::<Result<_, SymbolError>>()
            .map_err(Error::Symbols)?;
        for (key, used, warning, info) in loaded.into_iter().flatten() {
            for path in used {
                self.mark_used(&path);
            }
            if let Some(w) = warning {
                self.warn_once(format!("incomplete {key:?}"), w);
            }
            self.cache.insert(key, info);
        }
        Ok(())
    }

    /// Records that `path` (or the directory it was found in) was used.
    fn mark_used(&mut self, path: &Path) {
        let sources = self.sources.as_ref().expect("sources");
        if let Some(dir) = sources.dirs.iter().find(|d| path.starts_with(d)) {
            self.used.insert(dir.clone());
        }
        self.used.insert(path.to_path_buf());
    }
}

/// Why a match by file name is unsure, or `None` when the file the
/// profile names is here and is the `--symbols` file's build (same build
/// ID, or the same size and modification time).
fn unsure(mapped: &str, symbols: &ElfInfo) -> Option<String> {
    let Ok(here) = elf::scan(Path::new(mapped)) else {
        return Some(format!(
            "the profile records no build ID, and {mapped} is not on this machine to compare"
        ));
    };
    match (&here.build_id, &symbols.build_id) {
        (Some(a), Some(b)) if a == b => None,
        (Some(a), Some(b)) => Some(format!(
            "the profile records no build ID; {mapped} here has build ID {a}, the --symbols file {b}"
        )),
        _ if here.size == symbols.size && here.modified == symbols.modified => None,
        _ => Some(format!(
            "the profile records no build ID, and {mapped} here differs in size or modification time"
        )),
    }
}

/// The mappings of `view` with unnamed locations, and their distinct
/// addresses.
fn needs(profile: usize, view: &ProfileView<'_>) -> Vec<Need> {
    let mut addresses: HashMap<u32, Vec<u64>> = HashMap::new();
    for location in view.locations() {
        if location.address == 0 || !view.location_lines(location).is_empty() {
            continue;
        }
        if let Some(m) = location.mapping {
            addresses.entry(m).or_default().push(location.address);
        }
    }
    let mut needs: Vec<Need> = addresses
        .into_iter()
        .map(|(m, mut addresses)| {
            addresses.sort_unstable();
            addresses.dedup();
            let mapping = &view.mappings()[m as usize];
            Need {
                profile,
                mapping: m as usize,
                file: view.string(mapping.filename).to_string(),
                build_id: normalize_build_id(view.string(mapping.build_id)),
                placement: Placement {
                    start: mapping.memory_start,
                    limit: mapping.memory_limit,
                    offset: mapping.file_offset,
                },
                addresses,
            }
        })
        .collect();
    needs.sort_by_key(|n| n.mapping);
    needs
}

/// Build IDs as lowercase hex without spaces (how pprof's producers write
/// them).
fn normalize_build_id(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

/// A mapping of a profile to name: its index, its base, the frames of its
/// binary by file address, and whether they come from DWARF.
type Named<'a> = (usize, u64, &'a HashMap<u64, Vec<Frame>>, bool);

/// `view` as a profile whose unnamed locations of `mappings` (mapping
/// index, base, frames by file address, whether from DWARF) have lines.
fn rewrite(view: &ProfileView<'_>, mappings: &[Named<'_>]) -> Vec<u8> {
    let mut profile = view.to_profile();
    let mut strings: HashMap<String, i64> = profile
        .string_table
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as i64))
        .collect();
    let mut intern = |table: &mut Vec<String>, s: &str| -> i64 {
        if let Some(&i) = strings.get(s) {
            return i;
        }
        table.push(s.to_string());
        let i = table.len() as i64 - 1;
        strings.insert(s.to_string(), i);
        i
    };
    let mut next_id = profile.function.iter().map(|f| f.id).max().unwrap_or(0) + 1;
    let mut functions: HashMap<(i64, i64, i64), u64> = HashMap::new();
    let mut named = vec![false; view.mappings().len()];
    for (location, lv) in profile.location.iter_mut().zip(view.locations()) {
        if !location.line.is_empty() || location.address == 0 {
            continue;
        }
        let Some(m) = lv.mapping else { continue };
        let Some(&(_, base, table, _)) = mappings.iter().find(|t| t.0 == m as usize) else {
            continue;
        };
        let Some(frames) = table.get(&location.address.wrapping_sub(base)) else {
            continue;
        };
        for frame in frames {
            let name = intern(&mut profile.string_table, &frame.name);
            let system_name = intern(&mut profile.string_table, &frame.system_name);
            let file = intern(&mut profile.string_table, &frame.file);
            let id = *functions
                .entry((name, system_name, file))
                .or_insert_with(|| {
                    profile.function.push(Function {
                        id: next_id,
                        name,
                        system_name,
                        filename: file,
                        start_line: 0,
                    });
                    next_id += 1;
                    next_id - 1
                });
            location.line.push(Line {
                function_id: id,
                line: frame.line,
                column: frame.column,
            });
        }
        named[m as usize] = true;
    }
    for &(m, _, _, dwarf) in mappings {
        if named[m] {
            let mapping = &mut profile.mapping[m];
            mapping.has_functions = true;
            mapping.has_filenames |= dwarf;
            mapping.has_line_numbers |= dwarf;
            mapping.has_inline_frames |= dwarf;
        }
    }
    profile.encode()
}
