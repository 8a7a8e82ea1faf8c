//! The sampling allocator under abuse (issue 4's safety acceptance): 8
//! threads allocate, free each other's blocks, reallocate across the
//! region/large boundary and exit to be replaced, for 30 s
//! (`FIREWATCH_STRESS_SECS` to change) and at least until
//! [`MIN_OVERLAPPING_SNAPSHOTS`] heap snapshots have run from start to end
//! while workers were running (a snapshot thread takes one after another,
//! 100 ms apart). Every block carries a pattern checked before it is freed,
//! so two live blocks sharing memory would show; a watchdog aborts on a
//! deadlock; the live tables must stay bounded and return to their starting
//! point. How fast snapshots come is reported, not asserted.
//!
//! The interval is 4 KiB, not 512 KiB, so the sampled paths (region slots,
//! the large-block table, bucket interning) run thousands of times a second.

use std::alloc::System;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 4096);

const THREADS: usize = 8;

/// Snapshots that must run entirely while workers allocate and free.
const MIN_OVERLAPPING_SNAPSHOTS: u64 = 10;

fn seconds() -> u64 {
    std::env::var("FIREWATCH_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Mostly small sizes, some around the 64 KiB slot limit, a few large.
    fn size(&mut self) -> usize {
        match self.next() % 100 {
            0..=69 => 1 + (self.next() % 512) as usize,
            70..=89 => 512 + (self.next() % 8192) as usize,
            90..=97 => (60 << 10) + (self.next() % (8 << 10)) as usize,
            _ => (64 << 10) + (self.next() % (512 << 10)) as usize,
        }
    }
}

/// A block whose every byte is derived from its tag.
struct Block {
    data: Vec<u8>,
    tag: u8,
}

impl Block {
    fn new(len: usize, tag: u8) -> Block {
        Block {
            data: (0..len).map(|i| tag ^ (i as u8)).collect(),
            tag,
        }
    }

    fn check(&self) {
        for (i, &b) in self.data.iter().enumerate() {
            assert_eq!(
                b,
                self.tag ^ (i as u8),
                "corrupted block of {}",
                self.data.len()
            );
        }
    }

    /// Grows or shrinks through `realloc`, keeping the pattern.
    fn resize(&mut self, len: usize) {
        self.check();
        if len > self.data.len() {
            self.data.reserve_exact(len - self.data.len());
            let tag = self.tag;
            let start = self.data.len();
            self.data.extend((start..len).map(|i| tag ^ (i as u8)));
        } else {
            self.data.truncate(len);
            self.data.shrink_to_fit();
        }
    }
}

/// Counts how many workers are between their first and last operation.
struct Running<'a>(&'a AtomicU64);

impl<'a> Running<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Running(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn worker(
    seed: u64,
    lifetime: Duration,
    stop: &AtomicBool,
    to_neighbour: mpsc::Sender<Block>,
    from_neighbour: &mpsc::Receiver<Block>,
    done: &AtomicU64,
    running: &AtomicU64,
) {
    let _running = Running::enter(running);
    let mut rng = Rng(seed | 1);
    let mut mine: Vec<Block> = Vec::new();
    let until = Instant::now() + lifetime;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            match rng.next() % 10 {
                0..=3 => {
                    let size = rng.size();
                    mine.push(Block::new(size, rng.next() as u8));
                }
                4..=5 if !mine.is_empty() => {
                    let i = (rng.next() as usize) % mine.len();
                    let size = rng.size();
                    mine[i].resize(size);
                }
                6 if !mine.is_empty() => {
                    // Freed by another thread.
                    let i = (rng.next() as usize) % mine.len();
                    let _ = to_neighbour.send(mine.swap_remove(i));
                }
                7..=8 if !mine.is_empty() => {
                    let i = (rng.next() as usize) % mine.len();
                    mine.swap_remove(i).check();
                }
                _ => {
                    let zeroed = vec![0u8; rng.size()];
                    assert!(zeroed.iter().all(|&b| b == 0));
                }
            }
        }
        while let Ok(block) = from_neighbour.try_recv() {
            block.check();
        }
        if mine.len() > 256 {
            for block in mine.drain(..128) {
                block.check();
            }
        }
        done.fetch_add(64, Ordering::Relaxed);
    }
    for block in mine {
        block.check();
    }
}

/// Whether any worker is running now.
fn operations_now(running: &AtomicU64) -> bool {
    running.load(Ordering::SeqCst) > 0
}

#[test]
fn eight_threads_allocate_free_across_threads_reallocate_and_exit_under_snapshots() {
    let secs = seconds();
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    // A first snapshot prepares what stays for the process's life (the
    // allocator's unwind tables); what it leaves in caches is released.
    firewatch_agent::heap::snapshot().expect("snapshot");
    firewatch_agent::testing::forget_symbols();
    let live_before = firewatch_agent::heap::stats().live_samples;
    let operations = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicU64::new(0));
    let overlapping = Arc::new(AtomicU64::new(0));
    {
        // A deadlock must fail the test, not hang CI: abort when neither the
        // workers nor the snapshots have moved for two minutes.
        let (finished, operations, overlapping) =
            (finished.clone(), operations.clone(), overlapping.clone());
        std::thread::spawn(move || {
            let progress = || {
                (
                    operations.load(Ordering::Relaxed),
                    overlapping.load(Ordering::Relaxed),
                )
            };
            let (mut last, mut since) = (progress(), Instant::now());
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = progress();
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() > Duration::from_secs(120) {
                    eprintln!("heap stress: no progress for 120 s: deadlock");
                    std::process::abort();
                }
            }
        });
    }
    let snapshots = {
        let (stop, running, overlapping) = (stop.clone(), running.clone(), overlapping.clone());
        std::thread::spawn(move || {
            let (mut taken, mut max_live) = (0u64, 0u64);
            let mut busy = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ops_before = operations_now(&running);
                let profile = firewatch_agent::heap::snapshot().expect("snapshot");
                profile.validate().expect("valid profile");
                // Workers were allocating from before the snapshot began
                // until after it ended.
                if ops_before && operations_now(&running) {
                    overlapping.fetch_add(1, Ordering::SeqCst);
                }
                let stats = firewatch_agent::heap::stats();
                max_live = max_live.max(stats.live_samples);
                taken += 1;
                busy += started.elapsed();
                std::thread::sleep(Duration::from_millis(100));
            }
            (taken, max_live, busy / taken.max(1) as u32)
        })
    };

    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut generation = 0u64;
    let mut threads_started = 0u64;
    while Instant::now() < until || overlapping.load(Ordering::SeqCst) < MIN_OVERLAPPING_SNAPSHOTS {
        // A ring of 8 threads, each freeing its neighbour's blocks, living
        // 0.2–1.2 s; then a new generation.
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
        let handles: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                let tx = senders[(i + 1) % THREADS].clone();
                let stop = stop.clone();
                let (done, running) = (operations.clone(), running.clone());
                let seed = generation * 131 + i as u64 + 1;
                let lifetime = Duration::from_millis(200 + (seed * 7919) % 1000);
                std::thread::spawn(move || worker(seed, lifetime, &stop, tx, &rx, &done, &running))
            })
            .collect();
        drop(senders);
        for h in handles {
            h.join().expect("a worker panicked (corrupted block?)");
        }
        threads_started += THREADS as u64;
        generation += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (taken, max_live, snapshot_time) = snapshots.join().unwrap();
    finished.store(true, Ordering::Relaxed);
    // Symbolizing keeps parsed debug info (tens of MiB) until released, and
    // the resolved names in a bounded cache: both are live, sampled memory.
    firewatch_agent::testing::forget_symbols();

    let stats = firewatch_agent::heap::stats();
    println!(
        "{:.1?}: {} operations, {threads_started} threads, {taken} snapshots \
         ({snapshot_time:?} each, {} while workers ran), \
         at most {max_live} live samples, {} buckets, {} region slots used, dropped {:?}",
        started.elapsed(),
        operations.load(Ordering::Relaxed),
        overlapping.load(Ordering::SeqCst),
        stats.buckets,
        stats.region_slots_used,
        stats.dropped,
    );
    // Bounded: at most what the region and the large table can hold.
    assert!(max_live <= (1 << 17) + (1 << 16), "{max_live}");
    // Everything the workers allocated is gone, so are its samples (the
    // snapshot thread's last profile may still be draining: allow a few).
    let live_after = stats.live_samples;
    assert!(
        live_after <= live_before + 16,
        "sampled blocks leaked in the bookkeeping: {live_before} → {live_after}"
    );
}
