//! Memory the profiler must never fault on (issue 9's reproducers).
//!
//! A thread's frame-pointer register is just a register in code built
//! without frame pointers, and a word on its stack may point anywhere. The
//! profiler reads both: from the SIGPROF handler (the stack walk) and from
//! its drain thread (what lies around a return address). Each case below
//! makes those values point into memory that was readable when profiling
//! started and is unmapped later, then profiles the thread. A profiler that
//! trusts a snapshot of `/proc/self/maps` dies of SIGSEGV; ours must not.
//!
//! Each case runs in a child process (this test binary, re-run with the
//! case's name in `FIREWATCH_FAULT_CASE`), so a crash is a failed test
//! rather than a dead test runner.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use firewatch_agent::cpu::CpuProfiler;

const CASE_VAR: &str = "FIREWATCH_FAULT_CASE";
const PAGE: usize = 4096;

/// Runs `case` in a child process and checks it exited cleanly.
fn in_child(test: &str, case: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CASE_VAR, case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success(),
        "case {case}: child ended with {:?} (signal {:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code(),
        out.status.signal()
    );
    assert!(stdout.contains(&format!("case {case} done")), "{stdout}");
}

fn mmap(addr: usize, len: usize, prot: i32, fixed: bool) -> usize {
    let flags =
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if fixed { libc::MAP_FIXED_NOREPLACE } else { 0 };
    // SAFETY: an anonymous mapping; MAP_FIXED_NOREPLACE never replaces one.
    let p = unsafe { libc::mmap(addr as *mut _, len, prot, flags, -1, 0) };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    if fixed {
        assert_eq!(p as usize, addr, "mapped elsewhere");
    }
    p as usize
}

fn munmap(addr: usize, len: usize) {
    // SAFETY: unmapping memory this test mapped and nothing else uses.
    assert_eq!(unsafe { libc::munmap(addr as *mut _, len) }, 0);
}

/// Spins for about a millisecond with the frame-pointer register set to
/// `fp` and `word` stored at the stack pointer, the state the profiler
/// sees if a signal lands here: a poisoned frame pointer, and a poisoned
/// "return address" where a frameless leaf's would be.
#[inline(never)]
fn spin_poisoned(fp: usize, word: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rbp is saved and restored around the loop, which touches no
    // memory through it; the pushed word is popped again.
    unsafe {
        std::arch::asm!(
            "push rbp",
            "push {word}",
            "mov rbp, {fp}",
            "2:",
            "dec {n}",
            "jnz 2b",
            "pop {word}",
            "pop rbp",
            fp = in(reg) fp,
            word = inout(reg) word => _,
            n = inout(reg) 2_000_000usize => _,
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: x29 is saved and restored around the loop, which touches no
    // memory through it; sp stays 16-byte aligned.
    unsafe {
        std::arch::asm!(
            "stp x29, {word}, [sp, #-16]!",
            "mov x29, {fp}",
            "2:",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            "ldp x29, {word}, [sp], #16",
            fp = in(reg) fp,
            word = inout(reg) word => _,
            n = inout(reg) 2_000_000usize => _,
        );
    }
}

/// A thread on the stack `[stack, stack + len)` that, once `go` is set,
/// spins with poisoned registers (see [`spin_poisoned`]) until it has used
/// `cpu` of CPU time. Returns its handle.
fn poisoned_thread(
    stack: Option<(usize, usize)>,
    fp: usize,
    word: usize,
    go: Arc<AtomicBool>,
    cpu: Duration,
) -> std::thread::JoinHandle<()> {
    let body = move || {
        while !go.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let until = common::thread_cpu() + cpu;
        while common::thread_cpu() < until {
            spin_poisoned(fp, word);
        }
    };
    match stack {
        None => std::thread::spawn(body),
        Some((base, len)) => spawn_on_stack(base, len, Box::new(body)),
    }
}

/// `pthread_create` on a stack we provide (std cannot), joined through a
/// channel.
fn spawn_on_stack(
    base: usize,
    len: usize,
    body: Box<dyn FnOnce() + Send>,
) -> std::thread::JoinHandle<()> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the Box leaked below, taken back exactly once.
        let body = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
        body();
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(body)) as *mut libc::c_void;
    // SAFETY: attr is initialised before use and destroyed after; the stack
    // is ours, page-aligned and stays mapped until the thread is joined.
    let tid = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_attr_setstack(&mut attr, base as *mut _, len),
            0
        );
        let mut tid: libc::pthread_t = 0;
        assert_eq!(libc::pthread_create(&mut tid, &attr, start, arg), 0);
        libc::pthread_attr_destroy(&mut attr);
        tid
    };
    let tid = tid as usize;
    // A std thread that joins the pthread, so callers join one handle type.
    std::thread::spawn(move || {
        // SAFETY: joining the thread created above, once.
        assert_eq!(
            unsafe { libc::pthread_join(tid as libc::pthread_t, std::ptr::null_mut()) },
            0
        );
    })
}

/// Profiles `thread` (already started, waiting for `go`) at 1000 Hz while
/// `unmap` runs after the profile has started; the thread's poisoned
/// registers point into what `unmap` removed.
fn profile_through(
    go: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    unmap: impl FnOnce(),
) -> u64 {
    let profiler = CpuProfiler::start(1000).unwrap();
    unmap();
    go.store(true, Ordering::Release);
    thread.join().unwrap();
    let capture = profiler.stop_raw().unwrap();
    capture.samples
}

fn finish(case: &str, samples: u64) {
    assert!(samples > 0, "the poisoned thread was sampled");
    println!("case {case} done: {samples} samples");
}

/// The handler's walk: a thread whose stack has a readable neighbour just
/// above it (so a maps snapshot shows one range), the neighbour unmapped
/// after profiling started, and the frame pointer pointing into it.
fn neighbour_unmapped_under_the_frame_pointer() {
    const STACK: usize = 256 * 1024;
    let base = mmap(0, STACK + PAGE, libc::PROT_READ | libc::PROT_WRITE, false);
    let neighbour = base + STACK;
    let go = Arc::new(AtomicBool::new(false));
    let thread = poisoned_thread(
        Some((base, STACK)),
        neighbour + 64,
        0,
        go.clone(),
        Duration::from_millis(300),
    );
    let samples = profile_through(go, thread, || munmap(neighbour, PAGE));
    munmap(base, STACK);
    finish("neighbour", samples);
}

/// The drain thread: JIT-like code (an anonymous `r-x` mapping) present
/// when profiling starts, unmapped later, while a pointer into it sits at
/// the stack pointer of a busy thread (where a frameless leaf's return
/// address would be).
fn jit_code_unmapped_under_the_stack_pointer() {
    let code = mmap(0, PAGE, libc::PROT_READ | libc::PROT_WRITE, false);
    // SAFETY: the page is ours and writable; `ret` instructions.
    unsafe { std::ptr::write_bytes(code as *mut u8, 0xC3, PAGE) };
    // SAFETY: changing the protection of our own page.
    assert_eq!(
        unsafe { libc::mprotect(code as *mut _, PAGE, libc::PROT_READ | libc::PROT_EXEC) },
        0
    );
    let go = Arc::new(AtomicBool::new(false));
    let thread = poisoned_thread(None, 0, code + 64, go.clone(), Duration::from_millis(300));
    let samples = profile_through(go, thread, || munmap(code, PAGE));
    finish("jit", samples);
}

/// A small shared library, built here with the system C compiler.
fn shared_library() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("fault.c");
    std::fs::write(
        &src,
        "int fault_answer(int x) { return x * 2 + 1; }\nchar fault_data[65536] = {1};\n",
    )
    .unwrap();
    let lib = dir.path().join("libfault.so");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc -shared");
    (dir, lib)
}

struct Library(*mut libc::c_void);

impl Library {
    fn open(path: &std::path::Path) -> Library {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; the library runs no constructors of note.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen");
        Library(handle)
    }

    fn symbol(&self, name: &str) -> usize {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid handle and name.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        assert!(!p.is_null(), "dlsym {name}");
        p as usize
    }

    fn close(self) {
        // SAFETY: nothing of the library is in use any more (the poisoned
        // thread only holds its addresses as numbers).
        assert_eq!(unsafe { libc::dlclose(self.0) }, 0);
    }
}

/// This process's mappings whose path is `path`: `(start, end, perms)`.
fn mappings_of(path: &std::path::Path) -> Vec<(usize, usize, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let path = path.to_str().unwrap();
    maps.lines()
        .filter(|l| l.ends_with(path))
        .map(|l| {
            let mut f = l.split_whitespace();
            let (a, b) = f.next().unwrap().split_once('-').unwrap();
            let perms = f.next().unwrap().to_string();
            (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
                perms,
            )
        })
        .collect()
}

/// The handler's walk with `dlclose`: a thread stack placed right below a
/// `dlopen`ed library (one readable range in a maps snapshot), the frame
/// pointer pointing into the library, the library closed after profiling
/// started.
fn dlclosed_library_under_the_frame_pointer() {
    let (_dir, path) = shared_library();
    let lib = Library::open(&path);
    let first = mappings_of(&path)
        .into_iter()
        .map(|m| m.0)
        .min()
        .expect("the library is mapped");
    const STACK: usize = 256 * 1024;
    let base = mmap(
        first - STACK,
        STACK,
        libc::PROT_READ | libc::PROT_WRITE,
        true,
    );
    let go = Arc::new(AtomicBool::new(false));
    let thread = poisoned_thread(
        Some((base, STACK)),
        first + 64,
        0,
        go.clone(),
        Duration::from_millis(300),
    );
    let samples = profile_through(go, thread, || lib.close());
    munmap(base, STACK);
    finish("dlclose-fp", samples);
}

/// The drain thread with `dlclose`: a pointer into a `dlopen`ed library's
/// code at the stack pointer of a busy thread, the library closed after
/// profiling started.
fn dlclosed_code_under_the_stack_pointer() {
    let (_dir, path) = shared_library();
    let lib = Library::open(&path);
    let code = lib.symbol("fault_answer");
    let go = Arc::new(AtomicBool::new(false));
    let thread = poisoned_thread(None, 0, code + 8, go.clone(), Duration::from_millis(300));
    let samples = profile_through(go, thread, || lib.close());
    finish("dlclose-sp", samples);
}

fn run_case_or_child(test: &str, case: &str, body: fn()) {
    match std::env::var(CASE_VAR) {
        Ok(c) if c == case => body(),
        Ok(_) => {}
        Err(_) => in_child(test, case),
    }
}

#[test]
fn the_stack_walk_survives_a_neighbour_unmapped_under_the_frame_pointer() {
    run_case_or_child(
        "the_stack_walk_survives_a_neighbour_unmapped_under_the_frame_pointer",
        "neighbour",
        neighbour_unmapped_under_the_frame_pointer,
    );
}

#[test]
fn the_drain_thread_survives_jit_code_unmapped_under_the_stack_pointer() {
    run_case_or_child(
        "the_drain_thread_survives_jit_code_unmapped_under_the_stack_pointer",
        "jit",
        jit_code_unmapped_under_the_stack_pointer,
    );
}

#[test]
fn the_stack_walk_survives_a_dlclosed_library_under_the_frame_pointer() {
    run_case_or_child(
        "the_stack_walk_survives_a_dlclosed_library_under_the_frame_pointer",
        "dlclose-fp",
        dlclosed_library_under_the_frame_pointer,
    );
}

#[test]
fn the_drain_thread_survives_dlclosed_code_under_the_stack_pointer() {
    run_case_or_child(
        "the_drain_thread_survives_dlclosed_code_under_the_stack_pointer",
        "dlclose-sp",
        dlclosed_code_under_the_stack_pointer,
    );
}
