//! What the profiler thread counts samples into: a [`Tally`] per profile,
//! and, for the look-back sampler, a [`History`] of one-second tallies
//! covering the last `lookback` seconds, so a capture can include what
//! happened before its trigger.
//!
//! Each sample counts the CPU time it stands for, in nanoseconds, at the
//! period in force when it was taken: the look-back sampler runs at
//! `lookback_hz` between captures and at the capture's rate during one, and
//! a sum of periods times one period would be wrong across the change.
//!
//! Memory: a window holds one entry per distinct (stack, thread, flags,
//! label set) it saw. Entries are estimated at [`ENTRY_OVERHEAD_BYTES`] plus 8 bytes per
//! frame, and the oldest closed windows are dropped (and counted) while the
//! history holds more than its limit.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Length of a window of the look-back history.
pub(super) const WINDOW_LENGTH: Duration = Duration::from_secs(1);

/// Estimated bytes of one entry besides its frames: the hash table's slot
/// (48-byte key and counts, a control byte, at the table's typical
/// two-thirds load) and the allocator's header and rounding of the frames'
/// box. `benches/lookback.rs` compares the estimate with RSS.
pub(super) const ENTRY_OVERHEAD_BYTES: usize = 96;
/// Estimated bytes of an empty window (its struct and an empty table).
const WINDOW_OVERHEAD_BYTES: usize = 128;

/// A profiled thread's name, shared by every stack it is counted under: a
/// name read again later (threads name themselves after they start) is the
/// name of all its samples, and it outlives the thread while a window still
/// counts its stacks. Equal by identity: two threads of one name stay apart.
#[derive(Clone)]
pub(super) struct ThreadRef(Arc<Mutex<String>>);

impl ThreadRef {
    pub(super) fn new(name: String) -> ThreadRef {
        ThreadRef(Arc::new(Mutex::new(name)))
    }

    pub(super) fn name(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn rename(&self, name: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = name;
    }
}

impl std::fmt::Debug for ThreadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadRef({:?})", self.name())
    }
}

impl PartialEq for ThreadRef {
    fn eq(&self, other: &ThreadRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ThreadRef {}

impl Hash for ThreadRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

/// One aggregated stack: leaf-first addresses, the thread, flags, and the
/// label set it ran under (`crate::labels`; interned sets are never freed,
/// so the id stays valid in every window).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct StackKey {
    pub frames: Box<[u64]>,
    pub thread: ThreadRef,
    pub flags: u32,
    pub labels: u32,
}

/// The stack was cut: deeper than the depth limit or than the copy window.
pub(super) const FLAG_TRUNCATED: u32 = 1;
/// The stack pointer was not readable: only the PC was kept.
pub(super) const FLAG_NO_STACK: u32 = 2;

/// Samples of one stack and the CPU time they stand for.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Counts {
    pub samples: u64,
    pub cpu_ns: u64,
}

/// Samples counted per stack, with what the profile's comments report.
#[derive(Clone, Default)]
pub(super) struct Tally {
    pub stacks: HashMap<StackKey, Counts>,
    pub samples: u64,
    pub cpu_ns: u64,
    /// CPU time of samples lost because the pool was full.
    pub dropped_ns: u64,
    pub truncated: u64,
    pub unwalked: u64,
    /// Samples whose unwinding stopped before the outermost frame.
    pub incomplete: u64,
    /// Signals from a timer already deleted (old kernels queue them).
    pub stale: u64,
    /// Estimated bytes of `stacks`.
    bytes: usize,
}

/// One sample, unwound, with the CPU time it stands for.
pub(super) struct Sample<'a> {
    pub key: &'a StackKey,
    pub cpu_ns: u64,
    pub incomplete: bool,
}

impl Tally {
    pub(super) fn add(&mut self, sample: &Sample<'_>) {
        match self.stacks.get_mut(sample.key) {
            Some(counts) => {
                counts.samples += 1;
                counts.cpu_ns += sample.cpu_ns;
            }
            None => {
                self.bytes += entry_bytes(sample.key);
                self.stacks.insert(
                    sample.key.clone(),
                    Counts {
                        samples: 1,
                        cpu_ns: sample.cpu_ns,
                    },
                );
            }
        }
        self.samples += 1;
        self.cpu_ns += sample.cpu_ns;
        self.truncated += u64::from(sample.key.flags & FLAG_TRUNCATED != 0);
        self.unwalked += u64::from(sample.key.flags & FLAG_NO_STACK != 0);
        self.incomplete += u64::from(sample.incomplete);
    }

    /// Adds `other`'s counts to these (a copy: `other` is unchanged).
    pub(super) fn merge(&mut self, other: &Tally) {
        for (key, counts) in &other.stacks {
            match self.stacks.get_mut(key) {
                Some(mine) => {
                    mine.samples += counts.samples;
                    mine.cpu_ns += counts.cpu_ns;
                }
                None => {
                    self.bytes += entry_bytes(key);
                    self.stacks.insert(key.clone(), *counts);
                }
            }
        }
        self.add_totals(other);
    }

    /// Estimated bytes its stacks take.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

fn entry_bytes(key: &StackKey) -> usize {
    ENTRY_OVERHEAD_BYTES + key.frames.len() * std::mem::size_of::<u64>()
}

/// One second (at most) of samples.
pub(super) struct Window {
    pub started: Instant,
    pub started_wall: SystemTime,
    /// The process's CPU clock when the window began: with the next
    /// window's, what the process used that no sample stands for.
    pub cpu_clock: Duration,
    pub tally: Tally,
}

impl Window {
    fn bytes(&self) -> usize {
        WINDOW_OVERHEAD_BYTES + self.tally.bytes()
    }
}

/// Where a window starts: the instant, the wall clock and the process's CPU
/// clock, read together.
#[derive(Clone, Copy)]
pub(super) struct Moment {
    pub at: Instant,
    pub wall: SystemTime,
    pub cpu_clock: Duration,
}

impl Moment {
    pub(super) fn now() -> Moment {
        Moment {
            at: Instant::now(),
            wall: SystemTime::now(),
            cpu_clock: crate::process::usage::process_cpu_clock(),
        }
    }
}

/// The windows of the last `span`, oldest first, and the one filling now.
pub(super) struct History {
    span: Duration,
    memory_limit: usize,
    closed: VecDeque<Window>,
    /// Estimated bytes of `closed`.
    closed_bytes: usize,
    current: Window,
    /// Starts of windows dropped for memory that are still within `span`:
    /// a capture says how many of the windows it wanted are missing.
    dropped: VecDeque<Instant>,
}

/// The windows a capture takes: merged, and what they cover.
pub(super) struct Taken {
    pub tally: Tally,
    /// Where the first window taken began (`None`: no window was taken).
    pub from: Option<Moment>,
    pub windows: usize,
    /// Windows in the span asked for that were dropped for memory.
    pub windows_dropped: usize,
}

impl History {
    pub(super) fn new(span: Duration, memory_limit: usize, now: Moment) -> History {
        History {
            span,
            memory_limit,
            closed: VecDeque::new(),
            closed_bytes: 0,
            current: Window::at(now),
            dropped: VecDeque::new(),
        }
    }

    /// The window samples go to now.
    pub(super) fn current(&mut self) -> &mut Tally {
        &mut self.current.tally
    }

    /// Whether the current window has run its length at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.current.started) >= WINDOW_LENGTH
    }

    /// Closes the current window at `now` (the next begins there), then
    /// forgets windows older than the span and, oldest first, windows over
    /// the memory limit.
    pub(super) fn roll(&mut self, now: Moment) {
        let closed = std::mem::replace(&mut self.current, Window::at(now));
        self.closed_bytes += closed.bytes();
        self.closed.push_back(closed);
        // A window that began before `now - span` is older than any capture
        // from now on asks for.
        if let Some(horizon) = now.at.checked_sub(self.span) {
            while self.closed.front().is_some_and(|w| w.started < horizon) {
                self.pop_oldest();
            }
            while self.dropped.front().is_some_and(|&d| d < horizon) {
                self.dropped.pop_front();
            }
        }
        while self.closed_bytes + self.current.bytes() > self.memory_limit {
            let Some(oldest) = self.pop_oldest() else {
                break;
            };
            self.dropped.push_back(oldest);
        }
    }

    fn pop_oldest(&mut self) -> Option<Instant> {
        let oldest = self.closed.pop_front()?;
        self.closed_bytes -= oldest.bytes();
        Some(oldest.started)
    }

    /// A copy of the closed windows that began at or after `since` (`None`:
    /// all of them), merged; the history keeps them: a later capture may
    /// want them too.
    pub(super) fn take_since(&self, since: Option<Instant>) -> Taken {
        let wanted = |start: Instant| since.is_none_or(|since| start >= since);
        let mut taken = Taken {
            tally: Tally::default(),
            from: None,
            windows: 0,
            windows_dropped: self.dropped.iter().filter(|&&d| wanted(d)).count(),
        };
        for window in self.closed.iter().filter(|w| wanted(w.started)) {
            taken.from.get_or_insert(Moment {
                at: window.started,
                wall: window.started_wall,
                cpu_clock: window.cpu_clock,
            });
            taken.tally.merge(&window.tally);
            taken.windows += 1;
        }
        taken
    }

    /// Estimated bytes of the windows held, the current one included.
    pub(super) fn bytes(&self) -> usize {
        self.closed_bytes + self.current.bytes()
    }

    /// Closed windows held.
    pub(super) fn windows(&self) -> usize {
        self.closed.len()
    }

    /// Windows dropped for memory still within the span.
    pub(super) fn dropped(&self) -> usize {
        self.dropped.len()
    }
}

impl Window {
    fn at(moment: Moment) -> Window {
        Window {
            started: moment.at,
            started_wall: moment.wall,
            cpu_clock: moment.cpu_clock,
            tally: Tally::default(),
        }
    }
}

/// A history filled with made-up stacks, for `benches/lookback.rs`
/// (through `crate::testing`): what the windows of a busy service take.
pub(crate) struct SyntheticHistory(History);

impl SyntheticHistory {
    /// `windows` one-second windows, each with `per_window` stacks of
    /// `depth` frames on 8 threads, within `memory_limit` bytes. With
    /// `distinct`, no stack repeats across windows; without, every window
    /// holds the same stacks.
    pub(crate) fn fill(
        windows: usize,
        per_window: usize,
        depth: usize,
        distinct: bool,
        memory_limit: usize,
    ) -> SyntheticHistory {
        let base = Instant::now();
        let moment = |second: usize| Moment {
            at: base + WINDOW_LENGTH * second as u32,
            wall: SystemTime::now(),
            cpu_clock: Duration::ZERO,
        };
        let threads: Vec<ThreadRef> = (0..8)
            .map(|i| ThreadRef::new(format!("worker-{i}")))
            .collect();
        let span = WINDOW_LENGTH * (windows as u32 + 1);
        let mut history = History::new(span, memory_limit, moment(0));
        let mut frames = vec![0u64; depth];
        for window in 0..windows {
            for stack in 0..per_window {
                let id = if distinct {
                    window * per_window + stack
                } else {
                    stack
                };
                for (depth, frame) in frames.iter_mut().enumerate() {
                    *frame = 0x5555_0000_0000 + (id as u64) * 4096 + depth as u64 * 16;
                }
                let key = StackKey {
                    frames: frames.as_slice().into(),
                    thread: threads[id % threads.len()].clone(),
                    flags: 0,
                    labels: 0,
                };
                history.current().add(&Sample {
                    key: &key,
                    cpu_ns: 52_631_578,
                    incomplete: false,
                });
            }
            history.roll(moment(window + 1));
        }
        SyntheticHistory(history)
    }

    /// The history's own estimate of its bytes.
    pub(crate) fn estimated_bytes(&self) -> usize {
        self.0.bytes()
    }

    /// Windows kept.
    pub(crate) fn windows(&self) -> usize {
        self.0.windows()
    }

    /// Windows dropped for memory.
    pub(crate) fn dropped(&self) -> usize {
        self.0.dropped()
    }

    /// Entries in all windows kept.
    pub(crate) fn entries(&self) -> usize {
        self.0.closed.iter().map(|w| w.tally.stacks.len()).sum()
    }

    /// Copies every window kept, merged, as a capture does when it begins;
    /// the distinct stacks of the copy.
    pub(crate) fn take_all(&self) -> usize {
        self.0.take_since(None).tally.stacks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(frames: &[u64], thread: &ThreadRef) -> StackKey {
        StackKey {
            frames: frames.into(),
            thread: thread.clone(),
            flags: 0,
            labels: 0,
        }
    }

    fn add(tally: &mut Tally, key: &StackKey, cpu_ns: u64) {
        tally.add(&Sample {
            key,
            cpu_ns,
            incomplete: false,
        });
    }

    /// Moments one second apart from a base, with CPU clocks to match.
    fn at(base: Instant, seconds: u64) -> Moment {
        Moment {
            at: base + Duration::from_secs(seconds),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + seconds),
            cpu_clock: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_window_rolls_over_each_second() {
        let base = Instant::now();
        let thread = ThreadRef::new("t".into());
        let mut history = History::new(Duration::from_secs(30), usize::MAX, at(base, 0));
        assert!(!history.due(base + Duration::from_millis(999)));
        assert!(history.due(base + Duration::from_secs(1)));
        for second in 0..3 {
            add(history.current(), &key(&[1, 2], &thread), 10 * (second + 1));
            history.roll(at(base, second + 1));
        }
        assert_eq!(history.windows(), 3);
        assert!(!history.due(base + Duration::from_millis(3_500)));
        let all = history.take_since(Some(base));
        assert_eq!(all.windows, 3);
        assert_eq!((all.tally.samples, all.tally.cpu_ns), (3, 60));
        let from = all.from.unwrap();
        assert_eq!(from.at, base);
        assert_eq!(from.cpu_clock, Duration::ZERO);
        // Copied, not taken: the same windows are there for the next one.
        assert_eq!(history.take_since(Some(base)).tally.samples, 3);
    }

    #[test]
    fn windows_older_than_the_span_are_forgotten() {
        let base = Instant::now();
        let thread = ThreadRef::new("t".into());
        let mut history = History::new(Duration::from_secs(5), usize::MAX, at(base, 0));
        for second in 0..10 {
            add(history.current(), &key(&[second], &thread), 1);
            history.roll(at(base, second + 1));
        }
        // At 10 s the horizon is 5 s: windows that began at 5..=9 s stay.
        assert_eq!(history.windows(), 5);
        assert_eq!(history.dropped(), 0, "age is not a drop for memory");
        let taken = history.take_since(Some(base));
        assert_eq!(taken.from.unwrap().at, base + Duration::from_secs(5));
        assert_eq!(taken.windows_dropped, 0);
    }

    #[test]
    fn the_memory_limit_drops_the_oldest_windows_and_counts_them() {
        let base = Instant::now();
        let thread = ThreadRef::new("t".into());
        let per_window = WINDOW_OVERHEAD_BYTES + 10 * (ENTRY_OVERHEAD_BYTES + 8 * 4);
        // Room for three full windows and the empty current one.
        let limit = 3 * per_window + WINDOW_OVERHEAD_BYTES;
        let mut history = History::new(Duration::from_secs(60), limit, at(base, 0));
        for second in 0..6u64 {
            for stack in 0..10u64 {
                add(history.current(), &key(&[second, stack, 0, 0], &thread), 7);
            }
            history.roll(at(base, second + 1));
            assert!(history.bytes() <= limit, "{} > {limit}", history.bytes());
        }
        assert_eq!(history.windows(), 3);
        assert_eq!(history.dropped(), 3);
        let taken = history.take_since(Some(base));
        assert_eq!(taken.windows, 3);
        assert_eq!(taken.windows_dropped, 3);
        assert_eq!(
            taken.from.unwrap().at,
            base + Duration::from_secs(3),
            "the newest are kept"
        );
        assert_eq!(taken.tally.samples, 30);
        // A capture whose span starts after the drops does not report them.
        let later = history.take_since(Some(base + Duration::from_secs(4)));
        assert_eq!((later.windows, later.windows_dropped), (2, 0));
    }

    #[test]
    fn windows_since_a_time_are_merged_per_stack() {
        let base = Instant::now();
        let (a, b) = (ThreadRef::new("a".into()), ThreadRef::new("a".into()));
        let mut history = History::new(Duration::from_secs(60), usize::MAX, at(base, 0));
        for second in 0..4 {
            add(history.current(), &key(&[1, 2, 3], &a), 100);
            add(history.current(), &key(&[9], &b), 5);
            history.roll(at(base, second + 1));
        }
        let taken = history.take_since(Some(base + Duration::from_secs(2)));
        assert_eq!(taken.windows, 2);
        assert_eq!(taken.tally.stacks.len(), 2, "same name, two threads");
        assert_eq!(
            taken.tally.stacks[&key(&[1, 2, 3], &a)],
            Counts {
                samples: 2,
                cpu_ns: 200
            }
        );
        assert_eq!(
            taken.tally.stacks[&key(&[9], &b)],
            Counts {
                samples: 2,
                cpu_ns: 10
            }
        );
        assert_eq!(taken.from.unwrap().cpu_clock, Duration::from_secs(2));
        assert_eq!(
            history
                .take_since(Some(base + Duration::from_secs(5)))
                .windows,
            0
        );
        // A rename reaches every window's stacks of that thread.
        a.rename("renamed".into());
        let key_a = taken.tally.stacks.keys().find(|k| k.frames.len() == 3);
        assert_eq!(key_a.unwrap().thread.name(), "renamed");
    }

    #[test]
    fn one_stack_under_two_label_sets_is_two_entries_in_every_merge() {
        let base = Instant::now();
        let thread = ThreadRef::new("t".into());
        let a = crate::labels::LabelSet::new([("endpoint", "/a")]).id();
        let b = crate::labels::LabelSet::new([("endpoint", "/b")]).id();
        let labelled = |labels| StackKey {
            labels,
            ..key(&[7, 8], &thread)
        };
        let mut history = History::new(Duration::from_secs(60), usize::MAX, at(base, 0));
        for second in 0..2 {
            add(history.current(), &labelled(a), 10);
            add(history.current(), &labelled(a), 10);
            add(history.current(), &labelled(b), 5);
            history.roll(at(base, second + 1));
        }
        let taken = history.take_since(Some(base));
        assert_eq!(taken.tally.stacks.len(), 2);
        assert_eq!(
            taken.tally.stacks[&labelled(a)],
            Counts {
                samples: 4,
                cpu_ns: 40
            }
        );
        assert_eq!(
            taken.tally.stacks[&labelled(b)],
            Counts {
                samples: 2,
                cpu_ns: 10
            }
        );
    }

    #[test]
    fn weights_are_nanoseconds_across_a_rate_change() {
        // 19 Hz for the first second, 100 Hz for the next, as the look-back
        // sampler around a capture: each sample weighs its own period.
        let base = Instant::now();
        let thread = ThreadRef::new("t".into());
        let stack = key(&[4, 5], &thread);
        let mut history = History::new(Duration::from_secs(60), usize::MAX, at(base, 0));
        let slow = 1_000_000_000 / 19;
        let fast = 1_000_000_000 / 100;
        for _ in 0..19 {
            add(history.current(), &stack, slow);
        }
        history.roll(at(base, 1));
        for _ in 0..100 {
            add(history.current(), &stack, fast);
        }
        history.roll(at(base, 2));
        let taken = history.take_since(Some(base));
        let counts = taken.tally.stacks[&stack];
        assert_eq!(counts.samples, 119);
        // Two seconds of one busy thread, to within a period's rounding.
        assert_eq!(counts.cpu_ns, 19 * slow + 100 * fast);
        assert!(
            counts.cpu_ns.abs_diff(2_000_000_000) < 20,
            "{}",
            counts.cpu_ns
        );
        assert_eq!(taken.tally.cpu_ns, counts.cpu_ns);
    }
}
