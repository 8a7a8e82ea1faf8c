//! Retention: keeping the capture directory within max files, max bytes
//! and max age, so the agent never fills the disk.
//!
//! Deciding ([`plan`]) is separate from deleting ([`apply`]), so the policy
//! is a pure function of the listing and the time.
//!
//! The rules:
//!
//! - every capture older than `max_age` goes;
//! - then, while the directory is over `max_files` or `max_bytes`, captures
//!   go one by one, **automatic ones first** (threshold captures are the
//!   cheap, repeatable kind; a signal or manual capture was asked for by a
//!   person), **oldest first** within each group;
//! - the **newest** capture is never deleted, not even when it alone is
//!   over `max_bytes` or older than `max_age`: the latest evidence of an
//!   incident is the one most worth keeping.
//!
//! "Newest" and "oldest" follow [`StoredCapture::chronological`]; age is
//! measured from the time in the file name.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::store::{Store, StoredCapture};
use crate::Result;

/// A retention policy; `None` leaves that dimension unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most capture files to keep.
    pub max_files: Option<usize>,
    /// Most bytes of captures to keep.
    pub max_bytes: Option<u64>,
    /// Oldest capture to keep.
    pub max_age: Option<Duration>,
}

#[cfg(test)]
impl Retention {
    /// Keeps everything (the disk guard still protects the filesystem).
    pub const UNLIMITED: Retention = Retention {
        max_files: None,
        max_bytes: None,
        max_age: None,
    };
}

impl From<&crate::Config> for Retention {
    /// Bounded by default (20 files, 5 GiB, one day: see the settings
    /// table), because an agent left at its defaults must not be the thing
    /// that fills a disk.
    fn from(c: &crate::Config) -> Self {
        Retention {
            max_files: c.max_files,
            max_bytes: c.max_total_bytes,
            max_age: c.max_age,
        }
    }
}

/// Which captures to delete under `policy` at `now`, in deletion order.
pub fn plan(captures: &[StoredCapture], now: SystemTime, policy: &Retention) -> Vec<PathBuf> {
    let mut order: Vec<&StoredCapture> = captures.iter().collect();
    order.sort_by(|a, b| StoredCapture::chronological(a, b));
    // The newest is never a candidate.
    let Some(newest) = order.pop() else {
        return Vec::new();
    };
    // Deletion order: automatic before signal/manual, oldest first in each.
    // The sort is stable, so the chronological order survives.
    order.sort_by_key(|c| !c.name.trigger.is_automatic());

    let max_age = policy.max_age;
    let too_old = |c: &StoredCapture| {
        // A capture stamped in the future (clock steps) has age zero.
        max_age.is_some_and(|max| now.duration_since(c.name.time).unwrap_or(Duration::ZERO) > max)
    };
    let (aged, mut rest): (Vec<&StoredCapture>, Vec<&StoredCapture>) =
        order.into_iter().partition(|c| too_old(c));

    let total = |cs: &[&StoredCapture]| cs.iter().fold(0u64, |sum, c| sum.saturating_add(c.size));
    let mut files = 1 + rest.len(); // the newest counts
    let mut bytes = newest.size.saturating_add(total(&rest));
    let over = |files: usize, bytes: u64| {
        policy.max_files.is_some_and(|max| files > max)
            || policy.max_bytes.is_some_and(|max| bytes > max)
    };
    let mut n = 0;
    while n < rest.len() && over(files, bytes) {
        files -= 1;
        bytes = bytes.saturating_sub(rest[n].size);
        n += 1;
    }
    rest.truncate(n);
    aged.into_iter()
        .chain(rest)
        .map(|c| c.path.clone())
        .collect()
}

/// Deletes `paths`, logging each; returns how many were deleted. A file
/// already gone (another process of the service got there first) is not an
/// error; other failures are logged and skipped.
pub fn apply(paths: &[PathBuf]) -> usize {
    let mut deleted = 0;
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {
                log::info!("firewatch: retention removed {}", path.display());
                deleted += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("firewatch: {} already removed", path.display());
            }
            Err(e) => log::warn!("firewatch: retention cannot remove {}: {e}", path.display()),
        }
    }
    deleted
}

/// Lists `store`, plans under `policy` at `now`, and deletes: what the
/// pipeline runs at start and after every write. Returns how many files
/// were deleted.
pub fn enforce(store: &Store, policy: &Retention, now: SystemTime) -> Result<usize> {
    let captures = store.list()?;
    Ok(apply(&plan(&captures, now, policy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::store::StoreOptions;
    use crate::capture::{CaptureName, Kind, Trigger};
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    const T0: u64 = 1_700_000_000;
    const HOUR: u64 = 3600;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A capture taken `secs` after T0, `size` bytes, with `trigger`; its
    /// path is its seq, so tests can name captures by number.
    fn cap(seq: u64, secs: u64, size: u64, trigger: Trigger) -> StoredCapture {
        StoredCapture {
            path: PathBuf::from(seq.to_string()),
            name: CaptureName {
                service: "api".to_owned(),
                kind: Kind::Heap,
                time: at(T0 + secs),
                pid: 1,
                seq,
                trigger,
            },
            size,
            modified: at(T0 + secs),
        }
    }

    fn auto(seq: u64, secs: u64, size: u64) -> StoredCapture {
        cap(seq, secs, size, Trigger::HeapThreshold)
    }

    fn manual(seq: u64, secs: u64, size: u64) -> StoredCapture {
        cap(seq, secs, size, Trigger::Manual)
    }

    fn ids(paths: &[PathBuf]) -> Vec<u64> {
        paths
            .iter()
            .map(|p| {
                p.to_str()
                    .and_then(|s| s.parse().ok())
                    .expect("numeric path")
            })
            .collect()
    }

    fn policy(max_files: Option<usize>, max_bytes: Option<u64>, max_age: Option<u64>) -> Retention {
        Retention {
            max_files,
            max_bytes,
            max_age: max_age.map(Duration::from_secs),
        }
    }

    #[test]
    fn nothing_to_do() {
        let now = at(T0 + 10 * HOUR);
        assert!(plan(&[], now, &Retention::from(&crate::Config::default())).is_empty());
        let caps = [auto(0, 0, 10), auto(1, 60, 10)];
        assert!(plan(&caps, now, &Retention::UNLIMITED).is_empty());
        assert!(plan(&caps, now, &policy(Some(2), Some(20), Some(10 * HOUR))).is_empty());
    }

    #[test]
    fn max_files_deletes_oldest_first() {
        let caps = [
            auto(0, 0, 1),
            auto(1, 10, 1),
            auto(2, 20, 1),
            auto(3, 30, 1),
        ];
        let got = plan(&caps, at(T0 + 40), &policy(Some(2), None, None));
        assert_eq!(ids(&got), vec![0, 1]);
    }

    #[test]
    fn input_order_does_not_matter() {
        let caps = [
            auto(2, 20, 1),
            auto(0, 0, 1),
            auto(3, 30, 1),
            auto(1, 10, 1),
        ];
        let got = plan(&caps, at(T0 + 40), &policy(Some(1), None, None));
        assert_eq!(ids(&got), vec![0, 1, 2]);
    }

    #[test]
    fn max_bytes_deletes_until_under() {
        let caps = [
            auto(0, 0, 100),
            auto(1, 10, 50),
            auto(2, 20, 50),
            auto(3, 30, 50),
        ];
        // 250 bytes, limit 120: drop 100 (150 left), then 50 (100 left).
        let got = plan(&caps, at(T0 + 40), &policy(None, Some(120), None));
        assert_eq!(ids(&got), vec![0, 1]);
        // Exactly at the limit is fine.
        assert!(plan(&caps, at(T0 + 40), &policy(None, Some(250), None)).is_empty());
    }

    #[test]
    fn max_age_deletes_everything_older() {
        let caps = [
            auto(0, 0, 1),
            manual(1, HOUR, 1),
            auto(2, 2 * HOUR, 1),
            auto(3, 3 * HOUR, 1),
        ];
        let now = at(T0 + 3 * HOUR);
        // Older than 1.5 h: 0 and 1, the manual one included.
        let got = plan(&caps, now, &policy(None, None, Some(HOUR + HOUR / 2)));
        assert_eq!(ids(&got), vec![0, 1]);
        // Exactly max_age old is kept.
        let got = plan(&caps, now, &policy(None, None, Some(HOUR)));
        assert_eq!(ids(&got), vec![0, 1]);
    }

    #[test]
    fn automatic_captures_go_before_signal_and_manual_ones() {
        let caps = [
            manual(0, 0, 1),
            cap(1, 10, 1, Trigger::Signal),
            auto(2, 20, 1),
            cap(3, 30, 1, Trigger::CpuThreshold),
            manual(4, 40, 1),
            auto(5, 50, 1),
        ];
        let now = at(T0 + 60);
        assert_eq!(
            ids(&plan(&caps, now, &policy(Some(4), None, None))),
            vec![2, 3]
        );
        assert_eq!(
            ids(&plan(&caps, now, &policy(Some(3), None, None))),
            vec![2, 3, 0]
        );
        assert_eq!(
            ids(&plan(&caps, now, &policy(Some(1), None, None))),
            vec![2, 3, 0, 1, 4]
        );
        // The newest (automatic) one stays even though automatic go first.
        assert_eq!(
            ids(&plan(&caps, now, &policy(Some(0), None, None))),
            vec![2, 3, 0, 1, 4]
        );
    }

    #[test]
    fn newest_is_kept_even_when_it_alone_exceeds_max_bytes() {
        let caps = [auto(0, 0, 10), auto(1, 10, 1000)];
        let got = plan(&caps, at(T0 + 20), &policy(None, Some(100), None));
        assert_eq!(ids(&got), vec![0]);
        let alone = [auto(1, 10, 1000)];
        assert!(plan(&alone, at(T0 + 20), &policy(Some(0), Some(1), None)).is_empty());
    }

    #[test]
    fn newest_is_kept_even_when_too_old() {
        let caps = [auto(0, 0, 1), manual(1, 10, 1)];
        let got = plan(&caps, at(T0 + 100 * HOUR), &policy(None, None, Some(HOUR)));
        assert_eq!(ids(&got), vec![0]);
    }

    #[test]
    fn newest_is_decided_by_capture_time_then_mtime_then_seq() {
        // Same second: the later mtime is newer.
        let mut a = auto(5, 10, 1);
        let mut b = auto(3, 10, 1);
        a.modified = at(T0 + 11);
        b.modified = at(T0 + 12);
        let got = plan(
            &[b.clone(), a.clone()],
            at(T0 + 20),
            &policy(Some(1), None, None),
        );
        assert_eq!(ids(&got), vec![5]);
        // Same second and mtime: the higher seq is newer.
        b.modified = a.modified;
        let got = plan(&[b, a], at(T0 + 20), &policy(Some(1), None, None));
        assert_eq!(ids(&got), vec![3]);
    }

    #[test]
    fn captures_from_the_future_are_not_aged_out() {
        let caps = [auto(0, 10 * HOUR, 1), auto(1, 11 * HOUR, 1)];
        assert!(plan(&caps, at(T0), &policy(None, None, Some(1))).is_empty());
    }

    #[test]
    fn caps_combine_and_age_counts_towards_them() {
        let caps = [
            auto(0, 0, 100),            // too old
            manual(1, 2 * HOUR, 100),   // kept by preference
            auto(2, 2 * HOUR + 10, 10), // goes for max_files
            auto(3, 3 * HOUR, 10),
            auto(4, 4 * HOUR, 10),
        ];
        let got = plan(
            &caps,
            at(T0 + 4 * HOUR),
            &policy(Some(3), Some(1000), Some(3 * HOUR)),
        );
        assert_eq!(ids(&got), vec![0, 2]);
        // Bytes bind instead: 130 after the age cut, limit 100.
        let got = plan(
            &caps,
            at(T0 + 4 * HOUR),
            &policy(None, Some(100), Some(3 * HOUR)),
        );
        assert_eq!(ids(&got), vec![0, 2, 3, 1]);
    }

    #[test]
    fn default_policy_is_bounded() {
        let d = Retention::from(&crate::Config::default());
        assert_eq!(d.max_files, Some(20));
        assert_eq!(d.max_bytes, Some(5 << 30));
        assert_eq!(d.max_age, Some(Duration::from_secs(86_400)));
    }

    fn open_store(dir: &Path) -> Store {
        let options = StoreOptions {
            disk_threshold_percent: 100,
            disk_reserve_bytes: 0,
            stale_temp_age: Duration::ZERO,
        };
        Store::open_with(dir, "api", options, at(T0)).expect("open")
    }

    #[test]
    fn enforce_deletes_files_on_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open_store(tmp.path());
        let mut paths = Vec::new();
        for (i, trigger) in [
            Trigger::Signal,
            Trigger::RssThreshold,
            Trigger::Manual,
            Trigger::RssThreshold,
        ]
        .into_iter()
        .enumerate()
        {
            let time = at(T0 + 60 * i as u64);
            paths.push(
                store
                    .write(Kind::Heap, trigger, time, b"data")
                    .expect("write"),
            );
        }
        let deleted = enforce(&store, &policy(Some(2), None, None), at(T0 + 300)).expect("enforce");
        assert_eq!(deleted, 2);
        let left: Vec<PathBuf> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|c| c.path)
            .collect();
        // The automatic one (1) went first, then the oldest person-initiated (0).
        assert_eq!(left, vec![paths[2].clone(), paths[3].clone()]);
    }

    #[test]
    fn apply_tolerates_missing_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let present = tmp.path().join("present");
        std::fs::write(&present, b"x").expect("write");
        let missing = tmp.path().join("missing");
        let a_dir = tmp.path().join("dir");
        std::fs::create_dir(&a_dir).expect("mkdir");
        assert_eq!(apply(&[missing, present.clone(), a_dir.clone()]), 1);
        assert!(!present.exists());
        assert!(a_dir.exists());
    }
}
