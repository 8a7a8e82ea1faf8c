//! A Rust program on tikv-jemallocator with jemalloc's heap profiling on:
//! it holds known amounts of memory under known functions, then writes a
//! heap profile (`prof.dump`) to its argument. `tests/jemalloc_rust.rs`
//! runs it and reads the dump with `jeprof` and `firewatch analyze
//! --symbols`.
//!
//! ```text
//! _RJEM_MALLOC_CONF=prof:true,lg_prof_sample:16 \
//!     cargo run --example jemalloc-dump --features jemalloc-bench -- OUT.heap
//! ```
//!
//! tikv-jemalloc-sys builds jemalloc with the `_rjem_` prefix, so jemalloc
//! reads `_RJEM_MALLOC_CONF`, not `MALLOC_CONF`. Without `prof:true` there
//! is nothing to dump: the program says so and exits with 1.
//!
//! In use at the dump (each size a jemalloc size class, so the dump's bytes
//! are these): `leak_large` 64 × 1 MiB (leaked), `hold_medium` 2000 ×
//! 10 KiB, `hold_small` 100000 × 48 B, `worker_hold` (on a thread named
//! `worker`) 500 × 64 KiB; `churn` allocates and frees 1000 × 112 KiB.
//! Containers are sized before the functions run, so nothing else is
//! allocated under them. Each line `expect FUNCTION IN_USE ALLOCATED BYTES`
//! on stdout states one of these (block counts, and each block's size).

use std::ffi::CString;
use std::hint::black_box;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// (count, bytes each) per function.
const LEAK_LARGE: (usize, usize) = (64, 1 << 20);
const HOLD_MEDIUM: (usize, usize) = (2000, 10 << 10);
const HOLD_SMALL: (usize, usize) = (100_000, 48);
const WORKER_HOLD: (usize, usize) = (500, 64 << 10);
const CHURN: (usize, usize) = (1000, 112 << 10);

/// Leaked: in use for the rest of the process (through `calloc`).
#[inline(never)]
fn leak_large() {
    for _ in 0..LEAK_LARGE.0 {
        black_box(vec![0u8; LEAK_LARGE.1].leak());
    }
}

/// Held by the caller until after the dump (through `malloc`).
#[inline(never)]
fn hold_medium(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..HOLD_MEDIUM.0 {
        let mut v = Vec::with_capacity(HOLD_MEDIUM.1);
        v.push(1u8);
        keep.push(v);
    }
}

/// Small blocks, most of them unsampled: the dump scales the sampled ones up.
#[inline(never)]
fn hold_small(keep: &mut Vec<String>) {
    for _ in 0..HOLD_SMALL.0 {
        let mut s = String::with_capacity(HOLD_SMALL.1);
        s.push('x');
        keep.push(s);
    }
}

/// Allocated and freed: allocated bytes, none in use.
#[inline(never)]
fn churn() {
    for _ in 0..CHURN.0 {
        let v: Vec<u8> = Vec::with_capacity(CHURN.1);
        black_box(v);
    }
}

#[inline(never)]
fn worker_hold(keep: &mut Vec<Box<[u8]>>) {
    for _ in 0..WORKER_HOLD.0 {
        keep.push(vec![2u8; WORKER_HOLD.1].into_boxed_slice());
    }
}

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: jemalloc-dump OUTPUT.heap");
        std::process::exit(2);
    };
    if !tikv_jemalloc_ctl::profiling::prof::read().unwrap_or(false) {
        eprintln!(
            "jemalloc-dump: jemalloc's profiling is off: run with \
             _RJEM_MALLOC_CONF=prof:true (and build with --features jemalloc-bench)"
        );
        std::process::exit(1);
    }
    let path = CString::new(path.into_encoded_bytes()).expect("a path without NUL");

    let mut medium = Vec::with_capacity(HOLD_MEDIUM.0);
    let mut small = Vec::with_capacity(HOLD_SMALL.0);
    let mut worker = Vec::with_capacity(WORKER_HOLD.0);
    leak_large();
    hold_medium(&mut medium);
    hold_small(&mut small);
    churn();
    worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            worker_hold(&mut worker);
            worker
        })
        .expect("spawn the worker")
        .join()
        .expect("the worker");

    // SAFETY: `prof.dump` takes a `const char *` file name; `path` is a
    // NUL-terminated string that outlives the call.
    if let Err(e) = unsafe { tikv_jemalloc_ctl::raw::write(b"prof.dump\0", path.as_ptr()) } {
        eprintln!("jemalloc-dump: prof.dump {path:?}: {e}");
        std::process::exit(1);
    }
    // function, in use, allocated, bytes each
    for (function, in_use, (allocated, bytes)) in [
        ("leak_large", LEAK_LARGE.0, LEAK_LARGE),
        ("hold_medium", HOLD_MEDIUM.0, HOLD_MEDIUM),
        ("hold_small", HOLD_SMALL.0, HOLD_SMALL),
        ("worker_hold", WORKER_HOLD.0, WORKER_HOLD),
        ("churn", 0, CHURN),
    ] {
        println!("expect {function} {in_use} {allocated} {bytes}");
    }
    drop((medium, small, worker));
}
