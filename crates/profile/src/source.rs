//! Getting profile bytes: files are memory-mapped, gzip is detected by its
//! magic number and inflated under a size cap, so a gzip bomb is an error
//! rather than an out-of-memory kill.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

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
/// returns other input unchanged.
pub fn decompress(bytes: &[u8], limit: u64) -> Result<Cow<'_, [u8]>> {
    if !is_gzip(bytes) {
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge { limit });
        }
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

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
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
    /// Maps (or, for `-`, reads standard input) and decompresses a profile.
    /// Errors name the file.
    pub fn open(path: impl AsRef<Path>, max_decompressed: u64) -> Result<ProfileData> {
        let path = path.as_ref();
        Self::open_inner(path, max_decompressed).map_err(|e| e.in_file(path))
    }

    fn open_inner(path: &Path, limit: u64) -> Result<ProfileData> {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(Error::Io)?;
            return Self::from_bytes(path, bytes, limit);
        }
        let file = File::open(path).map_err(Error::Io)?;
        let meta = file.metadata().map_err(Error::Io)?;
        if !meta.is_file() || meta.len() == 0 {
            // Pipes and the like cannot be mapped; an empty file cannot either.
            let mut bytes = Vec::new();
            (&file)
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(Error::Io)?;
            return Self::from_bytes(path, bytes, limit);
        }
        // SAFETY: the map is read-only and private to this process, but its
        // pages are the file's: if another process truncates the file while
        // we read it, access faults (SIGBUS), and if it rewrites the file in
        // place, bytes change under strings the view has already checked as
        // UTF-8. That is the documented limit of mapping files, shared by
        // every tool that does so; profiles are written once and renamed
        // into place, not rewritten.
        let map = unsafe { Mmap::map(&file) }.map_err(Error::Io)?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        let storage = match decompress(&map, limit)? {
            Cow::Borrowed(_) => Storage::Mapped(map),
            Cow::Owned(inflated) => Storage::Owned(inflated),
        };
        Ok(ProfileData {
            path: path.to_path_buf(),
            storage,
        })
    }

    /// Wraps bytes already in memory (gzip or raw).
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
            Storage::Mapped(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }

    /// Decodes (in parallel, on the current rayon pool) and validates. Errors name the file.
    pub fn view(&self) -> Result<ProfileView<'_>> {
        ProfileView::decode(self.bytes()).map_err(|e| e.in_file(&self.path))
    }
}
