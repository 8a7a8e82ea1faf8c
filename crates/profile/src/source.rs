//! Getting profile bytes: files are read (or, by an explicit `unsafe`
//! choice, memory-mapped), gzip is detected by its magic number and inflated
//! under a size cap, so a gzip bomb is an error rather than an out-of-memory
//! kill. The cap bounds only what the input itself does not state: inflated
//! output, and standard input or a pipe read to its end. A regular file's
//! size is the filesystem's to state, so a raw one is held whatever its size.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

#[cfg(feature = "mmap")]
use memmap2::Mmap;

use crate::decode::SampleDecoder;
use crate::error::{Error, Result};
use crate::view::ProfileView;

/// Default cap on decompressed size: 1 GiB (about ten times the largest
/// production profiles we have seen).
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 1 << 30;

/// True when `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflates gzip input (all members, as Go's reader does) under `limit`;
/// returns other input unchanged, whatever its size (it is already held:
/// the cap bounds what inflation would add).
pub fn decompress(bytes: &[u8], limit: u64) -> Result<Cow<'_, [u8]>> {
    if !is_gzip(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    // The trailer's ISIZE (size mod 2^32 of the last member) is a good first
    // guess for the buffer, but a hostile one could ask for the whole cap up
    // front: trust it only up to 16 times the input (profiles compress 3-8x);
    // beyond that the buffer grows as data actually arrives.
    let hint = bytes.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes(bytes[at..].try_into().expect("four bytes")) as u64
    });
    let capacity = hint.min(bytes.len() as u64 * 16).min(limit);
    let out = crate::inflate::gunzip(bytes, capacity as usize, limit)?;
    Ok(Cow::Owned(out))
}

/// Reads all of a stream of unstated length, or fails once it passes
/// `limit` bytes (gzip never inflates to less than about its compressed
/// size, so a stream over the cap is too large either way).
fn read_capped(input: impl Read, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Error::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge { limit });
    }
    Ok(bytes)
}

enum Storage {
    #[cfg(feature = "mmap")]
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// Whether [`ProfileData::open_with`] may memory-map a file, as ripgrep's
/// `MmapChoice`: reading is safe and the default; mapping saves a copy of
/// a large uncompressed profile but is only sound while nobody changes the
/// file, which this crate cannot check, so choosing it is `unsafe`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmapChoice {
    map: bool,
}

impl MmapChoice {
    /// Read files into memory; never map them.
    pub const fn never() -> MmapChoice {
        MmapChoice { map: false }
    }

    /// Map regular, non-empty files (pipes, standard input and empty files
    /// are read).
    ///
    /// # Safety
    ///
    /// Each file opened with this choice must not be truncated or written
    /// to while its [`ProfileData`] (or a view of it) lives: a truncated
    /// file makes reads of the mapping fault (`SIGBUS`), and a rewritten one
    /// changes bytes under strings already checked as UTF-8. Profiles are
    /// usually written once and renamed into place, which is fine.
    #[cfg(feature = "mmap")]
    pub const unsafe fn auto() -> MmapChoice {
        MmapChoice { map: true }
    }

    /// Whether this choice maps files.
    pub const fn maps(self) -> bool {
        self.map
    }
}

/// The decompressed bytes of one profile file, ready to decode.
///
/// ```no_run
/// # fn main() -> Result<(), firewatch_profile::Error> {
/// let data = firewatch_profile::ProfileData::open("cpu.pb.gz", firewatch_profile::DEFAULT_MAX_DECOMPRESSED)?;
/// let view = data.view()?;
/// println!("{} samples", view.sample_count());
/// # Ok(()) }
/// ```
pub struct ProfileData {
    path: PathBuf,
    storage: Storage,
}

impl ProfileData {
    /// Reads (`-`: standard input) and decompresses a profile. Errors name
    /// the file. `max_decompressed` caps gzip's inflated output and what is
    /// read from standard input or a pipe; a raw regular file is read (or
    /// mapped) whole, as its size is known before reading.
    pub fn open(path: impl AsRef<Path>, max_decompressed: u64) -> Result<ProfileData> {
        Self::open_with(path, max_decompressed, MmapChoice::never())
    }

    /// As [`open`](Self::open), mapping the file when `mmap` says so.
    pub fn open_with(
        path: impl AsRef<Path>,
        max_decompressed: u64,
        mmap: MmapChoice,
    ) -> Result<ProfileData> {
        let path = path.as_ref();
        Self::open_inner(path, max_decompressed, mmap).map_err(|e| e.in_file(path))
    }

    fn open_inner(path: &Path, limit: u64, mmap: MmapChoice) -> Result<ProfileData> {
        if path.as_os_str() == "-" {
            let bytes = read_capped(std::io::stdin(), limit)?;
            return Self::from_bytes(path, bytes, limit);
        }
        let file = File::open(path).map_err(Error::Io)?;
        let meta = file.metadata().map_err(Error::Io)?;
        if !meta.is_file() {
            // A pipe or device (`<(zcat …)`, /dev/stdin): no stated size.
            let bytes = read_capped(&file, limit)?;
            return Self::from_bytes(path, bytes, limit);
        }
        #[cfg(feature = "mmap")]
        if mmap.maps() && meta.len() > 0 {
            // SAFETY: the caller chose `MmapChoice::auto`, whose contract is
            // that nobody truncates or rewrites the file while this data
            // lives; the map itself is read-only and private.
            let map = unsafe { Mmap::map(&file) }.map_err(Error::Io)?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            let storage = match decompress(&map, limit)? {
                Cow::Borrowed(_) => Storage::Mapped(map),
                Cow::Owned(inflated) => Storage::Owned(inflated),
            };
            return Ok(ProfileData {
                path: path.to_path_buf(),
                storage,
            });
        }
        #[cfg(not(feature = "mmap"))]
        let _ = mmap;
        // std sizes the buffer from the file's length, and a failed
        // reservation is an error, not an abort.
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes).map_err(Error::Io)?;
        Self::from_bytes(path, bytes, limit)
    }

    /// Wraps bytes already in memory (gzip, inflated under `limit`, or raw,
    /// kept whatever their size).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>, limit: u64) -> Result<ProfileData> {
        let path = path.into();
        let storage = match decompress(&bytes, limit).map_err(|e| e.in_file(&path))? {
            Cow::Borrowed(_) => Storage::Owned(bytes),
            Cow::Owned(inflated) => Storage::Owned(inflated),
        };
        Ok(ProfileData { path, storage })
    }

    /// The path the profile was opened from (or named by, for `from_bytes`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw protobuf bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            #[cfg(feature = "mmap")]
            Storage::Mapped(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }

    /// Decodes (in parallel, on the current rayon pool) and validates. Errors name the file.
    pub fn view(&self) -> Result<ProfileView<'_>> {
        ProfileView::decode(self.bytes()).map_err(|e| e.in_file(&self.path))
    }

    /// [`ProfileView::decode_without_samples`] of the bytes, errors naming
    /// the file.
    pub fn view_without_samples(&self) -> Result<(ProfileView<'_>, SampleDecoder)> {
        ProfileView::decode_without_samples(self.bytes()).map_err(|e| e.in_file(&self.path))
    }
}
