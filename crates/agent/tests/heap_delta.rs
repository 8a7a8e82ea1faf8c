//! `/debug/pprof/heap?seconds=N`: Go's delta profile, a snapshot N s after
//! the request less one taken when it came. The reference is what the test
//! itself allocates and frees inside the window: blocks of 100–300 KiB at
//! a 4 KiB sampling interval are sampled with probability 1 − e^−25 or
//! more, and unsampled by a factor that is 1 in floating point, so the
//! profile's values must be those bytes and counts exactly, and
//! `go tool pprof` (when installed) must read the same numbers from it.

use std::alloc::System;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firewatch_agent::{Agent, SamplingAllocator};
use firewatch_profile::Profile;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 4096);

const HANG: Duration = Duration::from_secs(180);
const KIB: i64 = 1024;
/// The window: long enough for the allocations below, whatever the load
/// (the test checks that they ended inside it).
const SECONDS: u64 = 3;

/// A response: the head and the body.
fn get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut stream = send(addr, path);
    read(&mut stream)
}

fn send(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    stream
}

fn read(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    (
        String::from_utf8_lossy(&response[..end]).into_owned(),
        response[end + 4..].to_vec(),
    )
}

#[inline(never)]
fn allocated_before_the_window(kept: &mut Vec<Vec<u8>>) {
    for _ in 0..8 {
        kept.push(black_box(Vec::with_capacity(100 << 10)));
    }
}

#[inline(never)]
fn allocated_in_the_window(kept: &mut Vec<Vec<u8>>, before: &mut Vec<Vec<u8>>) {
    for _ in 0..5 {
        kept.push(black_box(Vec::with_capacity(200 << 10)));
    }
    for _ in 0..4 {
        drop(black_box(Vec::<u8>::with_capacity(300 << 10)));
    }
    // Three of the earlier blocks are freed in the window.
    before.truncate(5);
}

/// Per sample type, the values of the samples whose stack holds
/// `function` (pprof's cum).
fn cum(profile: &Profile, function: &str) -> Vec<i64> {
    let mut sums = vec![0; profile.sample_type.len()];
    for sample in &profile.sample {
        let holds = sample.location_id.iter().any(|&id| {
            profile.location[(id - 1) as usize].line.iter().any(|line| {
                let f = &profile.function[(line.function_id - 1) as usize];
                profile.string(f.name).contains(function)
            })
        });
        if holds {
            for (sum, v) in sums.iter_mut().zip(&sample.value) {
                *sum += v;
            }
        }
    }
    sums
}

/// `go tool pprof -top`'s cum for `function` at `index`, in bytes.
fn go_cum(path: &std::path::Path, index: &str, function: &str) -> i64 {
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-unit=B", "-symbolize=none"])
        .arg(format!("-sample_index={index}"))
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.contains(function))
        .unwrap_or_else(|| panic!("{function} not in\n{text}"));
    // flat flat% sum% cum cum% name
    let cum = row.split_whitespace().nth(3).unwrap();
    cum.trim_end_matches('B').parse().unwrap()
}

#[test]
fn a_heap_delta_holds_what_the_window_allocated_and_freed() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::builder()
        .output_dir(dir.path())
        // Not a disk-guard test: pass on a machine whose disk is over 90% full.
        .disk_usage_threshold_percent(100)
        .signal(None)
        .cpu_threshold_percent(None)
        .rss_threshold_percent(None)
        .http_addr("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .start()
        .unwrap();
    let addr = agent.http_addr().unwrap();
    // Room for every block made below: no reallocation in the window.
    let mut before = Vec::with_capacity(16);
    let mut kept = Vec::with_capacity(16);
    allocated_before_the_window(&mut before);

    let mut delta = send(addr, &format!("/debug/pprof/heap?seconds={SECONDS}"));
    // The endpoint hands requests to the agent's thread in the order their
    // heads arrive, and that thread serves them in order: once a plain
    // heap profile asked for after it is answered, the delta's first
    // snapshot has been taken.
    let (head, _) = get(addr, "/debug/pprof/heap");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    allocated_in_the_window(&mut kept, &mut before);
    let done = SystemTime::now();
    let (head, body) = read(&mut delta);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains("Content-Disposition: attachment; filename=\"heap-delta\""),
        "{head}"
    );
    let profile = Profile::decode(&body).unwrap();
    let second = UNIX_EPOCH + Duration::from_nanos(profile.time_nanos as u64);
    assert!(
        done <= second,
        "premise: the allocations ended after the second snapshot (a stalled machine?)"
    );
    // Go's: the time of the second snapshot, the duration between them.
    assert!(profile.duration_nanos >= (SECONDS * 1_000_000_000) as i64);
    let types: Vec<&str> = profile
        .sample_type
        .iter()
        .map(|t| profile.string(t.r#type))
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(profile.string(profile.default_sample_type), "inuse_space");
    // What the window did, exactly.
    assert_eq!(
        cum(&profile, "allocated_in_the_window"),
        [9, 5 * 200 * KIB + 4 * 300 * KIB, 5, 5 * 200 * KIB]
    );
    // Allocated before, three freed in the window: no allocation, less in use.
    assert_eq!(
        cum(&profile, "allocated_before_the_window"),
        [0, 0, -3, -3 * 100 * KIB]
    );
    // pprof's merge leaves out samples that net to zero.
    assert!(profile
        .sample
        .iter()
        .all(|s| s.value.iter().any(|&v| v != 0)));

    if std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let path = dir.path().join("heap-delta.pb.gz");
        std::fs::write(&path, &body).unwrap();
        assert_eq!(
            go_cum(&path, "alloc_space", "allocated_in_the_window"),
            5 * 200 * KIB + 4 * 300 * KIB
        );
        assert_eq!(
            go_cum(&path, "inuse_space", "allocated_before_the_window"),
            -3 * 100 * KIB
        );
    } else {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_GO").is_none(),
            "FIREWATCH_REQUIRE_GO set but no go"
        );
        eprintln!("go not installed: skipped the go tool pprof check");
    }

    // `allocs` the same, with Go's default sample type for it.
    let (head, body) = get(addr, "/debug/pprof/allocs?seconds=1");
    assert!(head.contains("filename=\"allocs-delta\""), "{head}");
    let allocs = Profile::decode(&body).unwrap();
    assert_eq!(allocs.string(allocs.default_sample_type), "alloc_space");
    drop((before, kept));
}
