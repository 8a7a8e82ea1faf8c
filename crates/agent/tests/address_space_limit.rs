//! Under an address-space limit (`ulimit -v`, `RLIMIT_AS`), the sampling
//! allocator must not take what the limit allows the service. It used to
//! reserve 8 GiB of address space for sampled small blocks at the first
//! one: with a limit of 10 GiB above what the process uses, a 4 GiB
//! reservation then failed under `SamplingAllocator` and succeeded under
//! `System`.
//!
//! One test in its own binary: the limit is process-wide, and the range is
//! reserved once per process (at the default 512 KiB interval the test
//! harness's own allocations have almost surely not sampled a small block
//! yet; the test checks that the range is reserved under the limit).

use std::alloc::System;

use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::new(System);

fn address_space_used() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').next().unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn sampling_leaves_the_service_what_its_address_space_limit_allows() {
    let limit = address_space_used() + (10 << 30);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: lowering our own soft and hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);

    // Enough small allocations for a few samples: the range is reserved now.
    let kept: Vec<Vec<u8>> = (0..16_384).map(|i| vec![i as u8; 256]).collect();
    let stats = firewatch_agent::heap::stats();
    assert!(
        stats.region_slots_used > 0,
        "small blocks were sampled: {stats:?}"
    );

    // What the limit leaves is the service's: 4 GiB of its 10.
    let mut big: Vec<u8> = Vec::new();
    assert!(
        big.try_reserve_exact(4 << 30).is_ok(),
        "a 4 GiB reservation under a 10 GiB allowance"
    );
    drop(big);
    std::hint::black_box(&kept);
}
