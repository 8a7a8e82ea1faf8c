//! Checks what the agent's stacks look like in the build it is compiled in
//! (the end-to-end test `tests/stacks.rs` builds it with and without frame
//! pointers).
//!
//! ```text
//! cargo run --release -p firewatch-agent --example stacks -- OUT_DIR
//! ```
//!
//! It starts the agent as a service does (no triggers), which prepares the
//! allocator's unwind tables. A worker thread named `worker` runs `stage_one → stage_two → hot` (none
//! inlined, no tail calls) under a 250 Hz CPU profile until it has used
//! 1 s of CPU; the profile goes to `OUT_DIR/cpu.pb`. Then the main thread
//! keeps 32 MiB in `leak_in_stage_two` (called from `stage_one_alloc`) and
//! writes a heap snapshot to `OUT_DIR/heap.pb`.

use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static ALLOC: firewatch_agent::SamplingAllocator<std::alloc::System> =
    firewatch_agent::SamplingAllocator::with_sample_interval(std::alloc::System, 16 * 1024);

fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[inline(never)]
fn hot(x: u64) -> u64 {
    let mut h = x;
    for i in 0..20_000u64 {
        h = black_box(h.rotate_left(5) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h
}

#[inline(never)]
fn stage_two(x: u64) -> u64 {
    // Work after the call keeps it from being a tail call.
    black_box(hot(black_box(x))) ^ 0x55
}

#[inline(never)]
fn stage_one(x: u64) -> u64 {
    black_box(stage_two(black_box(x))).wrapping_add(1)
}

#[inline(never)]
fn leak_in_stage_two(kept: &mut Vec<Vec<u8>>, n: usize) {
    for i in 0..n {
        kept.push(black_box(vec![i as u8; 4096]));
    }
}

#[inline(never)]
fn stage_one_alloc(kept: &mut Vec<Vec<u8>>) {
    leak_in_stage_two(kept, 8192);
    black_box(kept.len());
}

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: stacks OUT_DIR"));
    std::fs::create_dir_all(&out).unwrap();
    let _agent = firewatch_agent::Agent::builder()
        .output_dir(out.join("agent"))
        .signal(None)
        .start()
        .unwrap();

    let profiler = firewatch_agent::cpu::CpuProfiler::start(250).unwrap();
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| {
            let until = thread_cpu() + Duration::from_secs(1);
            let mut x = 1;
            while thread_cpu() < until {
                // The clock is a system call: read it rarely, so the
                // worker's CPU is the chain's, not the loop's.
                for _ in 0..64 {
                    x = stage_one(x);
                }
            }
            x
        })
        .unwrap();
    black_box(worker.join().unwrap());
    let profile = profiler.stop().unwrap();
    std::fs::write(out.join("cpu.pb"), profile.encode()).unwrap();

    let mut kept = Vec::new();
    stage_one_alloc(&mut kept);
    let heap = firewatch_agent::heap::snapshot().unwrap();
    std::fs::write(out.join("heap.pb"), heap.encode()).unwrap();
    black_box(&kept);
    println!("wrote {}", out.display());
}
