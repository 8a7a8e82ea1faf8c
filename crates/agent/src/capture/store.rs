//! The capture directory: guarded, atomic, never-overwriting writes, and the
//! listing that retention and the throttle work from.
//!
//! A write is: disk guard (skip when the filesystem is too full or the file
//! would not fit), write to a hidden temp name in the same directory
//! (`O_CREAT|O_EXCL`, mode 0600), fsync the file, move it to its final name
//! *without replacing* anything there, fsync the directory. So a reader —
//! the analyzer, a log shipper — sees either no file or the whole file, and
//! after a crash or power loss a file that was reported written is there.
//!
//! Only this service's files are ever listed, counted or removed: a
//! directory may be shared with other services, whose retention is their own.

use std::ffi::CString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::naming::{sanitize_service, CaptureName};
use super::{Kind, Trigger};
use crate::{Error, Result};

/// Default space a capture must leave free beyond its own size, so the agent
/// never takes the last few megabytes the service may need for itself.
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 16 << 20;

/// Default age after which a temp file of ours is considered left over by a
/// crash. A live write holds its temp file for as long as writing and
/// fsyncing one profile takes (well under a minute); waiting longer than that
/// keeps a sibling process of the same service, writing into the same
/// directory at the same time, from losing its capture to our cleanup.
pub const DEFAULT_STALE_TEMP_AGE: Duration = Duration::from_secs(10 * 60);

/// How many final names a write tries before giving up, when names are
/// taken (another process with the same service name and pid — typical of
/// PID 1 in containers sharing a volume).
const NAME_ATTEMPTS: u32 = 8;

/// How many temp names a write tries before giving up.
const TEMP_ATTEMPTS: u32 = 8;

/// Tells temp files of one process apart (the final name already tells
/// stores apart; two stores on one directory share this counter).
static TEMP_NONCE: AtomicU64 = AtomicU64::new(0);

/// Knobs of a [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Skip writes when the filesystem is at least this many percent used.
    /// 100 turns the percentage check off (a full filesystem still fails
    /// the fit check); 0 skips every write.
    pub disk_threshold_percent: u8,
    /// Free space a write must leave behind, in bytes.
    pub disk_reserve_bytes: u64,
    /// Temp files of this service at least this old are removed on open.
    pub stale_temp_age: Duration,
}

impl From<&crate::Config> for StoreOptions {
    /// The disk guard's percentage is a setting (percent of the space
    /// available to unprivileged users, as `df`); the reserve and the temp
    /// age are not.
    fn from(c: &crate::Config) -> Self {
        StoreOptions {
            disk_threshold_percent: c.disk_usage_threshold_percent.min(100) as u8,
            disk_reserve_bytes: DEFAULT_DISK_RESERVE_BYTES,
            stale_temp_age: DEFAULT_STALE_TEMP_AGE,
        }
    }
}

impl Default for StoreOptions {
    /// The options of a default [`crate::Config`].
    fn default() -> Self {
        StoreOptions::from(&crate::Config::default())
    }
}

/// A capture file of this service found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCapture {
    pub path: PathBuf,
    /// What the file name says.
    pub name: CaptureName,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (the name's time if the filesystem has none).
    pub modified: SystemTime,
}

impl StoredCapture {
    /// Chronological order: by the time in the name (when the capture was
    /// taken, which copying or touching the file does not change), then by
    /// modification time, then by sequence number and path, so the order is
    /// total and stable.
    pub fn chronological(a: &StoredCapture, b: &StoredCapture) -> std::cmp::Ordering {
        a.name
            .time
            .cmp(&b.name.time)
            .then(a.modified.cmp(&b.modified))
            .then(a.name.seq.cmp(&b.name.seq))
            .then_with(|| a.path.cmp(&b.path))
    }
}

/// Space on the filesystem holding the capture directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub available_bytes: u64,
    /// Percent used, rounded up, as `df` computes it: used / (used + available).
    pub used_percent: u8,
}

impl DiskUsage {
    /// Reads the usage of the filesystem holding `path` (`statvfs`).
    pub fn of(path: &Path) -> Result<DiskUsage> {
        let c_path = c_path(path).map_err(|source| Error::Sys {
            call: "statvfs",
            source,
        })?;
        // SAFETY: `statvfs` is plain old data, for which all-zero is valid.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call,
        // and `st` is a valid, writable `statvfs` the call fills in.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
            return Err(Error::Sys {
                call: "statvfs",
                source: io::Error::last_os_error(),
            });
        }
        // The field types differ between platforms (u32 on some, u64 on
        // Linux), hence the casts; none of them is wider than 64 bits.
        #[allow(clippy::unnecessary_cast)]
        let (blocks, free, avail, frsize) = (
            st.f_blocks as u64,
            st.f_bfree as u64,
            st.f_bavail as u64,
            st.f_frsize as u64,
        );
        Ok(DiskUsage::from_blocks(blocks, free, avail, frsize))
    }

    /// Computes usage from `statvfs` block counts.
    pub fn from_blocks(blocks: u64, free: u64, avail: u64, block_size: u64) -> DiskUsage {
        let used = u128::from(blocks.saturating_sub(free));
        let avail_blocks = u128::from(avail);
        let denominator = used + avail_blocks;
        let used_percent = if denominator == 0 {
            0
        } else {
            (used * 100).div_ceil(denominator).min(100) as u8
        };
        let available_bytes = (avail_blocks * u128::from(block_size)).min(u128::from(u64::MAX));
        DiskUsage {
            available_bytes: available_bytes as u64,
            used_percent,
        }
    }

    /// The disk guard: `Err(reason)` when a write of `len` bytes must be
    /// skipped under `options`.
    pub fn check(&self, len: u64, options: &StoreOptions) -> std::result::Result<(), String> {
        if self.used_percent >= options.disk_threshold_percent {
            return Err(format!(
                "filesystem is {}% full (threshold {}%)",
                self.used_percent, options.disk_threshold_percent
            ));
        }
        let fits = len
            .checked_add(options.disk_reserve_bytes)
            .is_some_and(|needed| needed <= self.available_bytes);
        if !fits {
            return Err(format!(
                "{len} bytes would not fit: {} bytes available, {} kept in reserve",
                self.available_bytes, options.disk_reserve_bytes
            ));
        }
        Ok(())
    }
}

/// The capture directory of one service.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    service: String,
    pid: u32,
    /// The next sequence number; starts past every seq of this service and
    /// pid already in the directory, so names never collide with a previous
    /// incarnation that had the same pid.
    seq: AtomicU64,
    options: StoreOptions,
}

impl Store {
    /// Opens (creating it 0700 if missing) the capture directory of
    /// `service`, with default options, and removes stale temp files.
    #[cfg(test)]
    pub fn open(dir: impl Into<PathBuf>, service: &str) -> Result<Store> {
        Store::open_with(dir, service, StoreOptions::default(), SystemTime::now())
    }

    /// [`open`](Self::open) with explicit options and current time.
    pub fn open_with(
        dir: impl Into<PathBuf>,
        service: &str,
        options: StoreOptions,
        now: SystemTime,
    ) -> Result<Store> {
        let dir = dir.into();
        ensure_dir(&dir)?;
        let store = Store {
            service: sanitize_service(service),
            pid: std::process::id(),
            seq: AtomicU64::new(0),
            options,
            dir,
        };
        let next_seq = store.scan_next_seq()?;
        store.seq.store(next_seq, Ordering::Relaxed);
        let removed = store.remove_stale_temps(now);
        if removed > 0 {
            log::info!(
                "firewatch: removed {removed} stale temp file(s) from {}",
                store.dir.display()
            );
        }
        Ok(store)
    }

    /// Writes one capture and returns its final path.
    ///
    /// Returns [`Error::Skipped`] when the disk guard says no, and
    /// [`Error::Io`] when the filesystem fails; in both cases nothing is left
    /// behind. An existing file is never replaced: if the name is taken, the
    /// next sequence number is used.
    pub fn write(
        &self,
        kind: Kind,
        trigger: Trigger,
        time: SystemTime,
        bytes: &[u8],
    ) -> Result<PathBuf> {
        // Someone cleaned up the directory while the service ran (a tmp
        // cleaner, an operator): make it again rather than lose captures.
        if fs::symlink_metadata(&self.dir).is_err() {
            log::warn!(
                "firewatch: {} is gone; creating it again",
                self.dir.display()
            );
            ensure_dir(&self.dir)?;
        }
        let usage = DiskUsage::of(&self.dir)?;
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if let Err(reason) = usage.check(len, &self.options) {
            log::warn!(
                "firewatch: skipping {kind} capture ({trigger}) in {}: {reason}",
                self.dir.display()
            );
            return Err(Error::Skipped(crate::SkipReason::DiskGuard(reason)));
        }

        let mut name = CaptureName {
            service: self.service.clone(),
            kind,
            time,
            pid: self.pid,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            trigger,
        };
        let temp = self.write_temp(&name, bytes)?;

        let mut attempts = 0;
        let path = loop {
            let path = self.dir.join(name.file_name());
            match rename_noreplace(&temp, &path) {
                Ok(()) => break path,
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && attempts + 1 < NAME_ATTEMPTS =>
                {
                    attempts += 1;
                    log::debug!("firewatch: {} exists, trying the next name", path.display());
                    name.seq = self.seq.fetch_add(1, Ordering::Relaxed);
                }
                Err(source) => {
                    remove_quietly(&temp);
                    return Err(Error::Io {
                        path,
                        what: "moving capture into place",
                        source,
                    });
                }
            }
        };

        // The file is complete and visible; failing to persist the directory
        // entry only weakens durability across power loss, which is no
        // reason to throw the capture away.
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            log::warn!("firewatch: fsync of {} failed: {e}", self.dir.display());
        }
        log::info!("firewatch: wrote {} ({len} bytes)", path.display());
        Ok(path)
    }

    /// Creates a fresh temp file for `name`, writes and fsyncs `bytes`.
    /// Removes it again on failure.
    fn write_temp(&self, name: &CaptureName, bytes: &[u8]) -> Result<PathBuf> {
        let mut attempts = 0;
        let (temp, mut file) = loop {
            let nonce = TEMP_NONCE.fetch_add(1, Ordering::Relaxed);
            let temp = self.dir.join(name.temp_file_name(nonce));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
            {
                Ok(file) => break (temp, file),
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && attempts + 1 < TEMP_ATTEMPTS =>
                {
                    attempts += 1;
                }
                Err(source) => {
                    return Err(Error::Io {
                        path: temp,
                        what: "creating temp file",
                        source,
                    })
                }
            }
        };
        let written = file
            .write_all(bytes)
            .map_err(|e| (e, "writing temp file"))
            .and_then(|()| file.sync_all().map_err(|e| (e, "fsyncing temp file")));
        drop(file);
        match written {
            Ok(()) => Ok(temp),
            Err((source, what)) => {
                remove_quietly(&temp);
                Err(Error::Io {
                    path: temp,
                    what,
                    source,
                })
            }
        }
    }

    /// This service's captures in the directory, oldest first (see
    /// [`StoredCapture::chronological`]). Temp files, other services' files,
    /// symlinks and anything not named like a capture are left out.
    pub fn list(&self) -> Result<Vec<StoredCapture>> {
        let mut out = Vec::new();
        for (file_name, path) in self.entries()? {
            let Some(name) = CaptureName::parse(&file_name) else {
                continue;
            };
            if name.service != self.service {
                continue;
            }
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                Err(e) => {
                    // Typically removed between readdir and stat.
                    log::debug!("firewatch: cannot stat {}: {e}", path.display());
                    continue;
                }
            };
            out.push(StoredCapture {
                modified: meta.modified().unwrap_or(name.time),
                size: meta.len(),
                path,
                name,
            });
        }
        out.sort_by(StoredCapture::chronological);
        Ok(out)
    }

    /// Removes this service's temp files that are at least
    /// [`StoreOptions::stale_temp_age`] old at `now`: they were left by a
    /// crash (or a failed cleanup). Returns how many were removed; failures
    /// are logged, never returned, as cleanup is best effort.
    pub fn remove_stale_temps(&self, now: SystemTime) -> usize {
        let entries = match self.entries() {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!("firewatch: cannot look for stale temp files: {e}");
                return 0;
            }
        };
        let mut removed = 0;
        for (file_name, path) in entries {
            let Some(name) = CaptureName::parse_temp(&file_name) else {
                continue;
            };
            if name.service != self.service {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            // A modification time in the future (clock steps) counts as new.
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or(Duration::ZERO);
            // A temp file whose writer is gone is stale at once: a process
            // that no longer exists, or an earlier process with our pid
            // (containers reuse pid 1), since this runs before we write.
            let writer_gone = name.pid == std::process::id() || !process_exists(name.pid);
            if !meta.is_file() || (age < self.options.stale_temp_age && !writer_gone) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    log::debug!("firewatch: removed stale temp file {}", path.display());
                    removed += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("firewatch: cannot remove {}: {e}", path.display()),
            }
        }
        removed
    }

    /// The first sequence number not used by this service and pid in the
    /// directory, counting temp files too.
    fn scan_next_seq(&self) -> Result<u64> {
        let mut next = 0;
        for (file_name, _) in self.entries()? {
            let Some(name) =
                CaptureName::parse(&file_name).or_else(|| CaptureName::parse_temp(&file_name))
            else {
                continue;
            };
            if name.service == self.service && name.pid == self.pid {
                next = next.max(name.seq.saturating_add(1));
            }
        }
        Ok(next)
    }

    /// The directory's entries with UTF-8 names (ours always are).
    fn entries(&self) -> Result<Vec<(String, PathBuf)>> {
        let io_err = |source| Error::Io {
            path: self.dir.clone(),
            what: "reading capture directory",
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            if let Ok(name) = entry.file_name().into_string() {
                out.push((name, entry.path()));
            }
        }
        Ok(out)
    }
}

/// Creates `dir` and any missing parents with mode 0700 (whatever the
/// umask), leaving directories that already exist as they are — an operator
/// may have chosen their mode — but warning when the capture directory is
/// writable by others, who could then plant or remove captures.
fn ensure_dir(dir: &Path) -> Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
        .collect();
    if !missing.is_empty() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| Error::Io {
                path: dir.to_owned(),
                what: "creating capture directory",
                source,
            })?;
        for created in missing {
            fs::set_permissions(created, fs::Permissions::from_mode(0o700)).map_err(|source| {
                Error::Io {
                    path: created.to_owned(),
                    what: "setting capture directory mode",
                    source,
                }
            })?;
        }
    }
    let meta = fs::metadata(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        what: "reading capture directory",
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::Skipped(crate::SkipReason::OutputDirUnusable {
            dir: dir.to_owned(),
            reason: "not a directory".into(),
        }));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        log::warn!(
            "firewatch: capture directory {} is writable by group or others (mode {:o})",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Moves `from` to `to`, failing with `AlreadyExists` instead of replacing
/// `to`. Both must be in the same directory.
///
/// Linux: `renameat2(RENAME_NOREPLACE)`, atomic. It is called through
/// `syscall` because the libc wrapper needs glibc 2.28. Filesystems or
/// kernels without it (EINVAL, ENOSYS, or EPERM from a seccomp filter) fall
/// back to `link` + `unlink`, also atomic with respect to the target.
/// Elsewhere: `link` + `unlink` directly.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let (c_from, c_to) = (c_path(from)?, c_path(to)?);
        // SAFETY: both paths are NUL-terminated strings that outlive the
        // call; renameat2 only reads them. AT_FDCWD makes relative paths
        // resolve as `rename` would.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                c_from.as_ptr(),
                libc::AT_FDCWD,
                c_to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS | libc::EPERM) => {
                log::debug!("firewatch: renameat2 unavailable ({err}), using link + unlink");
            }
            _ => return Err(err),
        }
    }
    link_noreplace(from, to)
}

/// `link` + `unlink`: the link fails if `to` exists, so nothing is replaced.
///
/// Where hard links are not supported at all (some FUSE or FAT mounts), the
/// last resort is "check, then rename", which could only replace a file
/// created in the instant between the two — and only by another writer with
/// the same service name, pid and sequence number.
fn link_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            if let Err(e) = fs::remove_file(from) {
                // The capture is in place; the leftover temp file is removed
                // as stale on a later start.
                log::warn!("firewatch: cannot remove {}: {e}", from.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(e) if e.raw_os_error().is_some_and(links_unsupported) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e),
    }
}

/// Errors with which `link` says the filesystem has no hard links. (ENOTSUP
/// and EOPNOTSUPP are the same number on Linux, not everywhere.)
fn links_unsupported(code: i32) -> bool {
    code == libc::EPERM || code == libc::ENOTSUP || code == libc::EOPNOTSUPP || code == libc::ENOSYS
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("firewatch: cannot remove {}: {e}", path.display());
        }
    }
}

/// Whether a process with this pid exists (signal 0 probes without sending).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 performs only the existence/permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Options that let writes through whatever the test machine's disk
    /// looks like, and remove any stale temp file on open.
    fn permissive() -> StoreOptions {
        StoreOptions {
            disk_threshold_percent: 100,
            disk_reserve_bytes: 0,
            stale_temp_age: Duration::ZERO,
        }
    }

    fn open(dir: &Path, service: &str) -> Store {
        Store::open_with(dir, service, permissive(), at(T0)).expect("open")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    fn capture_name(service: &str, pid: u32, seq: u64) -> CaptureName {
        CaptureName {
            service: service.to_owned(),
            kind: Kind::Heap,
            time: at(T0),
            pid,
            seq,
            trigger: Trigger::Signal,
        }
    }

    fn set_mtime(path: &Path, time: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(time)
            .expect("set_modified");
    }

    #[test]
    fn creates_missing_directories_0700() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = tmp.path().join("a/b/profiles");
        open(&dir, "api");
        for p in [tmp.path().join("a"), tmp.path().join("a/b"), dir.clone()] {
            assert!(p.is_dir());
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        // The pre-existing parent is left alone.
        assert_eq!(mode(tmp.path()), 0o755);
    }

    #[test]
    fn a_directory_removed_while_running_is_made_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("profiles");
        let store = open(&dir, "api");
        fs::remove_dir_all(&dir).expect("rm -r");
        let path = store
            .write(Kind::Heap, Trigger::Signal, at(T0), b"profile")
            .expect("write after removal");
        assert_eq!(path.parent(), Some(dir.as_path()));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(fs::read(&path).expect("read"), b"profile");
    }

    #[test]
    fn leaves_existing_directory_mode_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("shared");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        open(&dir, "api"); // warns, does not fail
        assert_eq!(mode(&dir), 0o777);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).expect("chmod");
        open(&dir, "api");
        assert_eq!(mode(&dir), 0o750);
    }

    #[test]
    fn refuses_a_file_as_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, b"x").expect("write");
        let err = Store::open_with(&file, "api", permissive(), at(T0)).expect_err("file");
        assert!(
            matches!(
                err,
                Error::Skipped(crate::SkipReason::OutputDirUnusable { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn writes_atomically_with_the_documented_name_and_mode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), "billing.api");
        let path = store
            .write(Kind::Cpu, Trigger::CpuThreshold, at(T0), b"profile bytes")
            .expect("write");
        let pid = std::process::id();
        let expected = format!("billing.api.cpu.20231114T221320Z.{pid}.0.cpu-threshold.pb.gz");
        assert_eq!(path, tmp.path().join(&expected));
        assert_eq!(fs::read(&path).expect("read"), b"profile bytes");
        assert_eq!(mode(&path), 0o600);
        // No temp file is left behind.
        assert_eq!(names_in(tmp.path()), vec![expected]);
    }

    #[test]
    fn sequence_numbers_increase_and_names_never_collide() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), "api");
        let paths: Vec<PathBuf> = (0..5)
            .map(|i| {
                store
                    .write(Kind::Heap, Trigger::Manual, at(T0), &[i])
                    .expect("write")
            })
            .collect();
        let seqs: Vec<u64> = store
            .list()
            .expect("list")
            .iter()
            .map(|c| c.name.seq)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(fs::read(p).expect("read"), vec![i as u8]);
        }
    }

    #[test]
    fn sequence_starts_past_files_of_this_pid_on_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pid = std::process::id();
        // A previous incarnation with the same pid (PID 1 in a container).
        fs::write(
            tmp.path().join(capture_name("api", pid, 41).file_name()),
            b"old",
        )
        .expect("w");
        // A temp file with an even higher seq counts too, as does nothing else.
        let young_temp = tmp
            .path()
            .join(capture_name("api", pid, 50).temp_file_name(1));
        fs::write(&young_temp, b"").expect("w");
        fs::write(
            tmp.path()
                .join(capture_name("api", pid + 1, 99).file_name()),
            b"",
        )
        .expect("w");
        fs::write(
            tmp.path().join(capture_name("web", pid, 99).file_name()),
            b"",
        )
        .expect("w");

        let options = StoreOptions {
            stale_temp_age: Duration::from_secs(3600),
            ..permissive()
        };
        let store = Store::open_with(tmp.path(), "api", options, at(T0)).expect("open");
        let path = store
            .write(Kind::Heap, Trigger::Signal, at(T0), b"new")
            .expect("write");
        let written = CaptureName::parse(path.file_name().and_then(|n| n.to_str()).expect("name"))
            .expect("parse");
        assert_eq!(written.seq, 51);
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), "api");
        let pid = std::process::id();
        // Someone else takes the names the store will try next.
        for seq in 0..3 {
            let mut n = capture_name("api", pid, seq);
            n.kind = Kind::Cpu;
            fs::write(tmp.path().join(n.file_name()), b"theirs").expect("write");
        }
        let path = store
            .write(Kind::Cpu, Trigger::Signal, at(T0), b"ours")
            .expect("write");
        assert!(path
            .to_string_lossy()
            .contains(&format!(".{pid}.3.signal.")));
        assert_eq!(fs::read(&path).expect("read"), b"ours");
        for seq in 0..3 {
            let mut n = capture_name("api", pid, seq);
            n.kind = Kind::Cpu;
            assert_eq!(
                fs::read(tmp.path().join(n.file_name())).expect("read"),
                b"theirs"
            );
        }
        assert_eq!(names_in(tmp.path()).len(), 4, "no temp file left");
    }

    #[test]
    fn gives_up_when_every_name_is_taken_and_cleans_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), "api");
        let pid = std::process::id();
        for seq in 0..u64::from(NAME_ATTEMPTS) {
            fs::write(
                tmp.path().join(capture_name("api", pid, seq).file_name()),
                b"x",
            )
            .expect("write");
        }
        let err = store
            .write(Kind::Heap, Trigger::Signal, at(T0), b"ours")
            .expect_err("all names taken");
        match err {
            Error::Io { source, .. } => assert_eq!(source.kind(), io::ErrorKind::AlreadyExists),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(
            names_in(tmp.path()).len(),
            NAME_ATTEMPTS as usize,
            "temp removed"
        );
    }

    #[test]
    fn disk_guard_skips_and_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let full = StoreOptions {
            disk_threshold_percent: 0, // any usage is "too full"
            ..permissive()
        };
        let store = Store::open_with(tmp.path(), "api", full, at(T0)).expect("open");
        let err = store
            .write(Kind::Heap, Trigger::Signal, at(T0), b"x")
            .expect_err("guard");
        assert!(
            matches!(&err, Error::Skipped(crate::SkipReason::DiskGuard(r)) if r.contains("full")),
            "{err}"
        );

        let no_room = StoreOptions {
            disk_reserve_bytes: u64::MAX / 2,
            ..permissive()
        };
        let store = Store::open_with(tmp.path(), "api", no_room, at(T0)).expect("open");
        let err = store
            .write(Kind::Heap, Trigger::Manual, at(T0), b"x")
            .expect_err("guard");
        assert!(
            matches!(&err, Error::Skipped(crate::SkipReason::DiskGuard(r)) if r.contains("not fit")),
            "{err}"
        );
        assert!(names_in(tmp.path()).is_empty());
    }

    #[test]
    fn disk_usage_math_matches_df() {
        // 1000 blocks, 100 free for root, 50 for users: used 900 / (900 + 50).
        let u = DiskUsage::from_blocks(1000, 100, 50, 4096);
        assert_eq!(u.used_percent, 95);
        assert_eq!(u.available_bytes, 50 * 4096);
        // Rounded up, like df.
        assert_eq!(DiskUsage::from_blocks(1000, 999, 999, 1).used_percent, 1);
        assert_eq!(DiskUsage::from_blocks(0, 0, 0, 4096).used_percent, 0);
        assert_eq!(DiskUsage::from_blocks(100, 0, 0, 4096).used_percent, 100);
        // No overflow on absurd sizes.
        let huge = DiskUsage::from_blocks(u64::MAX, 0, u64::MAX, u64::MAX);
        assert_eq!(huge.available_bytes, u64::MAX);
        assert_eq!(huge.used_percent, 50);
    }

    #[test]
    fn disk_guard_decisions() {
        let options = StoreOptions {
            disk_threshold_percent: 90,
            disk_reserve_bytes: 100,
            ..StoreOptions::default()
        };
        let usage = |used_percent, available_bytes| DiskUsage {
            available_bytes,
            used_percent,
        };
        assert!(usage(89, 10_000).check(1000, &options).is_ok());
        assert!(usage(90, 10_000).check(1000, &options).is_err());
        assert!(usage(100, 10_000).check(0, &options).is_err());
        assert!(usage(10, 1100).check(1000, &options).is_ok());
        assert!(usage(10, 1099).check(1000, &options).is_err());
        assert!(usage(10, u64::MAX).check(u64::MAX, &options).is_err());
        let off = StoreOptions {
            disk_threshold_percent: 100,
            ..options
        };
        assert!(usage(99, 10_000).check(1000, &off).is_ok());
    }

    #[test]
    fn real_disk_usage_is_readable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let u = DiskUsage::of(tmp.path()).expect("statvfs");
        assert!(u.used_percent <= 100);
        assert!(DiskUsage::of(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn removes_only_our_stale_temp_files_on_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let now = at(T0);
        let old = now - Duration::from_secs(3600);
        let ours_old = dir.join(capture_name("api", 7, 0).temp_file_name(1));
        let ours_young = dir.join(capture_name("api", 8, 0).temp_file_name(2));
        let theirs_old = dir.join(capture_name("web", 7, 0).temp_file_name(3));
        let capture = dir.join(capture_name("api", 7, 1).file_name());
        let other = dir.join(".something.tmp.1");
        for p in [&ours_old, &ours_young, &theirs_old, &capture, &other] {
            fs::write(p, b"x").expect("write");
            set_mtime(p, old);
        }
        set_mtime(&ours_young, now - Duration::from_secs(5));

        let options = StoreOptions {
            stale_temp_age: Duration::from_secs(600),
            ..permissive()
        };
        Store::open_with(dir, "api", options, now).expect("open");
        assert!(!ours_old.exists());
        for p in [&ours_young, &theirs_old, &capture, &other] {
            assert!(p.exists(), "{}", p.display());
        }
    }

    #[test]
    fn a_temp_file_from_the_future_is_not_stale() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join(capture_name("api", 7, 0).temp_file_name(1));
        fs::write(&p, b"x").expect("write");
        set_mtime(&p, at(T0 + 3600));
        let options = StoreOptions {
            stale_temp_age: Duration::from_secs(1),
            ..permissive()
        };
        let store = Store::open_with(tmp.path(), "api", options, at(T0)).expect("open");
        assert!(p.exists());
        assert_eq!(store.remove_stale_temps(at(T0 + 3601)), 1);
        assert!(!p.exists());
    }

    #[test]
    fn lists_only_this_services_captures_oldest_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let store = open(dir, "api");
        let newer = store
            .write(Kind::Heap, Trigger::Signal, at(T0 + 60), b"12345")
            .expect("write");
        let older = store
            .write(Kind::Cpu, Trigger::CpuThreshold, at(T0), b"1")
            .expect("write");
        // Not ours, or not captures.
        fs::write(dir.join(capture_name("web", 1, 0).file_name()), b"x").expect("w");
        fs::write(dir.join(capture_name("api", 1, 9).temp_file_name(1)), b"x").expect("w");
        fs::write(dir.join("README"), b"x").expect("w");
        fs::create_dir(dir.join(capture_name("api", 1, 5).file_name())).expect("mkdir");
        std::os::unix::fs::symlink(&newer, dir.join(capture_name("api", 1, 6).file_name()))
            .expect("symlink");

        let list = store.list().expect("list");
        let paths: Vec<&Path> = list.iter().map(|c| c.path.as_path()).collect();
        assert_eq!(paths, vec![older.as_path(), newer.as_path()]);
        assert_eq!(list[0].size, 1);
        assert_eq!(list[1].size, 5);
        assert_eq!(list[0].name.kind, Kind::Cpu);
        assert_eq!(list[0].name.trigger, Trigger::CpuThreshold);
        assert_eq!(list[1].name.time, at(T0 + 60));
    }

    #[test]
    fn service_names_are_sanitized() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), "my service/v2");
        assert_eq!(store.service, "my_service_v2");
        let path = store
            .write(Kind::Heap, Trigger::Manual, at(T0), b"x")
            .expect("write");
        assert_eq!(path.parent(), Some(tmp.path()));
        assert_eq!(store.list().expect("list").len(), 1);
    }

    #[test]
    fn write_into_a_directory_replaced_by_a_file_fails_cleanly() {
        // A removed directory is made again (see above); one replaced by a
        // file cannot be, and the write fails without touching the file.
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("gone");
        let store = open(&dir, "api");
        fs::remove_dir(&dir).expect("rmdir");
        fs::write(&dir, b"not a directory").expect("write");
        let err = store
            .write(Kind::Heap, Trigger::Signal, at(T0), b"x")
            .expect_err("no dir");
        assert!(matches!(err, Error::Sys { .. } | Error::Io { .. }), "{err}");
        assert!(store.list().is_err());
        assert_eq!(store.remove_stale_temps(at(T0)), 0);
        assert_eq!(fs::read(&dir).expect("read"), b"not a directory");
    }

    #[test]
    fn rename_noreplace_moves_or_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::write(&a, b"A").expect("write");
        rename_noreplace(&a, &b).expect("rename");
        assert!(!a.exists());
        assert_eq!(fs::read(&b).expect("read"), b"A");

        fs::write(&a, b"A2").expect("write");
        let err = rename_noreplace(&a, &b).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&a).expect("read"), b"A2");
        assert_eq!(fs::read(&b).expect("read"), b"A");
    }

    #[test]
    fn link_fallback_moves_or_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::write(&a, b"A").expect("write");
        link_noreplace(&a, &b).expect("link");
        assert!(!a.exists());
        assert_eq!(fs::read(&b).expect("read"), b"A");

        fs::write(&a, b"A2").expect("write");
        let err = link_noreplace(&a, &b).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).expect("read"), b"A");
        assert!(a.exists());
    }

    #[test]
    fn stores_share_a_directory_without_clashing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (s1, s2) = (open(tmp.path(), "api"), open(tmp.path(), "api"));
        // Both start at seq 0 for the same pid: the second write must move on.
        let p1 = s1
            .write(Kind::Heap, Trigger::Signal, at(T0), b"1")
            .expect("w1");
        let p2 = s2
            .write(Kind::Heap, Trigger::Signal, at(T0), b"2")
            .expect("w2");
        assert_ne!(p1, p2);
        assert_eq!(fs::read(&p1).expect("read"), b"1");
        assert_eq!(fs::read(&p2).expect("read"), b"2");
    }

    #[test]
    fn a_temp_file_whose_writer_is_gone_is_removed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mine = CaptureName {
            service: "svc".into(),
            kind: Kind::Cpu,
            time: SystemTime::now(),
            pid: std::process::id(),
            seq: 0,
            trigger: Trigger::Signal,
        };
        // Our own pid before we wrote anything: an earlier process's leftover.
        std::fs::write(dir.path().join(mine.temp_file_name(7)), b"partial").unwrap();
        // A pid that cannot exist (above the kernel's pid_max).
        let dead = CaptureName {
            pid: 1 << 30,
            ..mine.clone()
        };
        std::fs::write(dir.path().join(dead.temp_file_name(8)), b"partial").unwrap();
        Store::open(dir.path(), "svc").unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
