//! The `/debug/pprof/` endpoint's settings as a service meets them, in
//! process: an address open to the network without a token stops
//! `start()` naming the setting; off means no socket; without the sampling
//! allocator a heap profile is a 501, and while the service profiles the CPU
//! itself the endpoint's CPU profile is refused; dropping the agent closes
//! the endpoint even with a client connected.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use firewatch_agent::{Agent, Error};

/// Sockets this process listens on: LISTEN rows of `/proc/self/net/tcp{,6}`
/// whose inode is one of its descriptors.
fn listening_sockets() -> usize {
    let inodes: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .map(|table| {
            std::fs::read_to_string(format!("/proc/self/net/{table}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|row| {
                    let columns: Vec<&str> = row.split_whitespace().collect();
                    columns.get(3) == Some(&"0A")
                        && columns
                            .get(9)
                            .is_some_and(|i| inodes.iter().any(|n| n == i))
                })
                .count()
        })
        .sum()
}

/// `GET path`'s whole response, as text (a profile's bytes lossily).
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_non_loopback_address_without_a_token_fails_start_naming_the_setting() {
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let e = Agent::builder()
            .http_addr(addr.parse::<std::net::SocketAddr>().unwrap())
            .enabled(false)
            .start()
            .err()
            .unwrap_or_else(|| panic!("{addr} without a token is refused"));
        assert!(
            matches!(
                e,
                Error::InvalidSetting {
                    setting: "http_addr",
                    ..
                }
            ),
            "{e}"
        );
        let message = e.to_string();
        assert!(
            message.contains("http_addr") && message.contains("http_token"),
            "{message}"
        );
        // Meant: with a token, or said so.
        Agent::builder()
            .http_addr(addr.parse::<std::net::SocketAddr>().unwrap())
            .http_token("a-token-for-tests")
            .enabled(false)
            .start()
            .unwrap();
        Agent::builder()
            .http_addr(addr.parse::<std::net::SocketAddr>().unwrap())
            .http_allow_unauthenticated(true)
            .enabled(false)
            .start()
            .unwrap();
    }
    let e = Agent::builder()
        .http_token("with space")
        .enabled(false)
        .start()
        .err()
        .expect("a token with a space is refused");
    assert!(e.to_string().contains("http_token"), "{e}");
    assert!(!e.to_string().contains("with space"), "never shown: {e}");
    let e = Agent::builder()
        .http_max_seconds(0)
        .enabled(false)
        .start()
        .err()
        .expect("0 s is refused");
    assert!(e.to_string().contains("http_max_seconds"), "{e}");
}

#[test]
fn off_is_no_socket_and_dropping_the_agent_closes_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let before = listening_sockets();
    let off = Agent::builder()
        .output_dir(dir.path())
        // Not a disk-guard test: pass on a machine whose disk is over 90% full.
        .disk_usage_threshold_percent(100)
        .cpu_threshold_percent(None)
        .start()
        .unwrap();
    assert_eq!(off.http_addr(), None);
    assert_eq!(listening_sockets(), before, "no endpoint, no socket");
    drop(off);

    let on = Agent::builder()
        .output_dir(dir.path())
        // Not a disk-guard test: pass on a machine whose disk is over 90% full.
        .disk_usage_threshold_percent(100)
        .cpu_threshold_percent(None)
        .http_addr("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
        .start()
        .unwrap();
    let addr = on.http_addr().expect("bound before start() returns");
    assert_ne!(addr.port(), 0, "the port the system chose");
    assert_eq!(listening_sockets(), before + 1);
    // This test binary's allocator is the system's: no heap profile, said
    // in one line.
    let heap = get(addr, "/debug/pprof/heap");
    assert!(
        heap.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
        "{heap}"
    );
    assert!(
        heap.ends_with(
            "\r\n\r\nheap snapshots need firewatch_agent::SamplingAllocator as the \
             #[global_allocator]\n"
        ),
        "{heap}"
    );
    // A CPU profile the service took itself: the endpoint's is refused.
    let own = firewatch_agent::cpu::CpuProfiler::start(100).unwrap();
    let busy = get(addr, "/debug/pprof/profile?seconds=1");
    assert!(busy.starts_with("HTTP/1.1 500 "), "{busy}");
    assert!(
        busy.ends_with("Could not enable CPU profiling: cpu profiling already in use\n"),
        "{busy}"
    );
    drop(own);
    let cpu = get(addr, "/debug/pprof/profile?seconds=1");
    assert!(cpu.starts_with("HTTP/1.1 200 OK\r\n"), "{cpu}");
    // A client connected and silent: dropping the agent still returns, and
    // the client sees its connection closed.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    drop(on);
    assert_eq!(listening_sockets(), before);
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        closed.is_ok() || closed.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed by the agent, not by our read's deadline"
    );
    assert!(TcpStream::connect(addr).is_err(), "nobody listens any more");
}
