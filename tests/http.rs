//! End to end for the agent's `/debug/pprof/` endpoint: the example service
//! started with `--http 127.0.0.1:0`, asked the way `go tool pprof`, Grafana
//! Alloy (`pyroscope.scrape`) and Parca ask (the same paths, parameters and
//! headers; the scrapers themselves cannot be installed here), and by plain
//! TCP clients that misbehave. Every wait is for an event (a log line, a
//! response); deadlines only catch hangs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use common::{captures, captures_of, go_available, tempdir, top_function, Service, HANG};
use firewatch_profile::Profile;

/// The service serving `/debug/pprof/` on a free loopback port, and that
/// address (from its log line, which says the port the system chose).
fn serving(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Service, SocketAddr) {
    let mut all = vec!["--http", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let service = Service::start(dir, &all, env);
    let line = service.wait_for_line(&["firewatch: serving http://"]);
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (service, addr)
}

/// A response as a plain client reads it (the server closes after each).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn profile(&self) -> Profile {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(&self.body[..2], [0x1f, 0x8b], "gzipped");
        Profile::decode(&self.body).unwrap()
    }
}

/// Sends `head` as is and reads the whole response.
fn send(addr: SocketAddr, head: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    let body = bytes[end + 4..].to_vec();
    let reply = Reply {
        status,
        headers,
        body,
    };
    if let Some(length) = reply.header("Content-Length") {
        assert_eq!(
            length.parse::<usize>().unwrap(),
            reply.body.len(),
            "{reply:?}"
        );
    }
    reply
}

/// `GET path` with these extra header lines, as a scraper sends it.
fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    send(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Alloy/v1.5.0\r\n\
             Accept-Encoding: gzip\r\n{extra}\r\n"
        ),
    )
}

/// `go tool pprof ARGS…` with its saved copies (`$HOME/pprof`,
/// `PPROF_TMPDIR`) in `home`, not the user's home.
fn go_pprof(home: &Path, args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .env("HOME", home)
        .env("PPROF_TMPDIR", home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// TCP ports the process `pid` listens on: LISTEN sockets of
/// `/proc/PID/net/tcp{,6}` whose inode is one of its descriptors.
fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
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
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for row in text.lines().skip(1) {
            let columns: Vec<&str> = row.split_whitespace().collect();
            let (Some(local), Some(&"0A"), Some(inode)) =
                (columns.get(1), columns.get(3), columns.get(9))
            else {
                continue;
            };
            if inodes.iter().any(|i| i == inode) {
                let port = local.rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[test]
fn go_tool_pprof_reads_the_cpu_profile_heap_and_allocs_over_http() {
    let dir = tempdir();
    let (mut service, addr) = serving(
        dir.path(),
        &["--threads", "2", "--leak-kib-per-sec", "8192"],
        &[],
    );
    // Enough kept that the leak dominates what is in use.
    service.wait_for_leak(16);
    let base = format!("http://{addr}/debug/pprof");

    // What every client gets, read directly.
    let cpu = get(addr, "/debug/pprof/profile?seconds=1", "");
    let profile = cpu.profile();
    let types: Vec<&str> = profile
        .sample_type
        .iter()
        .map(|t| profile.string(t.r#type))
        .collect();
    assert_eq!(types, ["samples", "cpu"]);
    let comments: Vec<&str> = profile.comment.iter().map(|&c| profile.string(c)).collect();
    assert!(comments.contains(&"trigger: http"), "{comments:?}");
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("firewatch: capture memory:")),
        "the capture memory limit applies as for files: {comments:?}"
    );
    let heap = get(addr, "/debug/pprof/heap", "").profile();
    assert_eq!(heap.string(heap.default_sample_type), "inuse_space");
    let allocs = get(addr, "/debug/pprof/allocs", "").profile();
    assert_eq!(allocs.string(allocs.default_sample_type), "alloc_space");
    assert_eq!(allocs.sample_type.len(), 4);

    if go_available() {
        let home = tempdir();
        let table = go_pprof(home.path(), &["-top", &format!("{base}/profile?seconds=2")]);
        assert!(table.contains("checksum_orders"), "{table}");
        let table = go_pprof(
            home.path(),
            &["-top", "-sample_index=inuse_space", &format!("{base}/heap")],
        );
        assert_eq!(
            top_function(&table),
            "service::remember_session",
            "go tool pprof names the leak first:\n{table}"
        );
        // `allocs` without -sample_index: its default is alloc_space (the
        // workers' short-lived vectors lead it; the leak is there too).
        let table = go_pprof(home.path(), &["-top", &format!("{base}/allocs")]);
        assert!(table.contains("Type: alloc_space"), "{table}");
        assert!(table.contains("service::remember_session"), "{table}");
    }
    // Served, never written: the output directory holds no capture.
    assert_eq!(captures(dir.path()), Vec::<std::path::PathBuf>::new());
    assert!(service.count(&["capture (", "started"]) == 0);
    service.shut_down();
}

#[test]
fn responses_carry_gos_headers() {
    let dir = tempdir();
    let (mut service, addr) = serving(dir.path(), &["--threads", "1"], &[]);

    let heap = get(addr, "/debug/pprof/heap", "");
    assert_eq!(heap.status, 200, "{}", heap.text());
    assert_eq!(
        heap.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        heap.header("Content-Disposition"),
        Some("attachment; filename=\"heap\"")
    );
    assert_eq!(heap.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(heap.header("Connection"), Some("close"));
    assert!(heap.header("Content-Length").is_some());
    let cpu = get(addr, "/debug/pprof/profile?seconds=1", "");
    assert_eq!(
        cpu.header("Content-Disposition"),
        Some("attachment; filename=\"profile\"")
    );

    // Errors as Go's serveError writes them: one line of plain text.
    let error = |reply: &Reply, status: u16, text: &str| {
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.header("X-Go-Pprof"), Some("1"));
        assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(reply.header("Content-Disposition"), None);
        assert_eq!(reply.text(), format!("{text}\n"));
    };
    error(
        &get(addr, "/debug/pprof/goroutine", ""),
        404,
        "Unknown profile",
    );
    error(&get(addr, "/metrics", ""), 404, "404 page not found");
    error(
        &get(addr, "/debug/pprof/heap?debug=1", ""),
        400,
        "debug (text output) is not supported: fetch the binary profile and read it with go \
         tool pprof",
    );
    error(
        &get(addr, "/debug/pprof/profile?seconds=61", ""),
        400,
        "profile duration exceeds the endpoint's limit of 60 seconds (http_max_seconds)",
    );
    let post = send(
        addr,
        "POST /debug/pprof/profile HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    error(&post, 405, "only GET and HEAD are served");
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    let garbage = send(addr, "\x16\x03\x01 not http\r\n\r\n");
    error(&garbage, 400, "malformed request");
    let huge = send(
        addr,
        &format!(
            "GET /debug/pprof/ HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        ),
    );
    error(&huge, 431, "request header fields too large");

    let index = get(addr, "/debug/pprof/", "");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    for name in ["allocs", "cmdline", "heap", "profile"] {
        assert!(
            index.text().contains(&format!("href='{name}'")),
            "{}",
            index.text()
        );
    }
    let moved = get(addr, "/debug/pprof", "");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("Location"), Some("/debug/pprof/"));
    let cmdline = get(addr, "/debug/pprof/cmdline", "");
    assert_eq!(
        cmdline.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    let args: Vec<&str> = std::str::from_utf8(&cmdline.body)
        .unwrap()
        .split('\0')
        .collect();
    assert!(args[0].ends_with("service"), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--http", "127.0.0.1:0"]),
        "{args:?}"
    );
    // HEAD: the headers of a GET, no body, no profile taken.
    let head = send(addr, "HEAD /debug/pprof/profile HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert!(head.body.is_empty());
    // One debug line per request.
    service.wait_for_lines(
        &["/debug/pprof/ endpoint: HEAD /debug/pprof/profile", ": 200"],
        1,
    );
    service.shut_down();
}

#[test]
fn with_a_token_only_the_right_bearer_gets_a_profile() {
    let dir = tempdir();
    const TOKEN: &str = "Zm9yLXRlc3RzLW9ubHk-not-a-secret";
    let (mut service, addr) = serving(
        dir.path(),
        &["--threads", "1"],
        &[("FIREWATCH_HTTP_TOKEN", TOKEN)],
    );
    service.wait_for_line(&["serving http://", "(bearer token required)"]);
    for (extra, why) in [
        (String::new(), "no token"),
        ("Authorization: Bearer wrong\r\n".into(), "a wrong token"),
        (
            format!("Authorization: Bearer {TOKEN}x\r\n"),
            "a longer one",
        ),
        (
            format!("Authorization: Basic {TOKEN}\r\n"),
            "another scheme",
        ),
    ] {
        for path in ["/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/"] {
            let refused = get(addr, path, &extra);
            assert_eq!(refused.status, 401, "{why}, {path}: {refused:?}");
            assert_eq!(
                refused.header("WWW-Authenticate"),
                Some("Bearer realm=\"firewatch\""),
                "{why}"
            );
            assert_eq!(refused.text(), "missing or wrong bearer token\n", "{why}");
        }
    }
    let heap = get(
        addr,
        "/debug/pprof/heap",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    heap.profile();
    // The token is never logged.
    assert_eq!(service.count(&[TOKEN]), 0);
    service.shut_down();
}

#[test]
fn a_second_cpu_profile_is_refused_at_once_and_heap_is_served_meanwhile() {
    let dir = tempdir();
    let (mut service, addr) = serving(dir.path(), &["--threads", "1"], &[]);
    let (done, first) = mpsc::channel();
    let long = std::thread::spawn(move || {
        let reply = get(addr, "/debug/pprof/profile?seconds=8", "");
        let _ = done.send(());
        reply
    });
    service.wait_for_line(&["CPU profile of 8 s for http started"]);
    let second = get(addr, "/debug/pprof/profile?seconds=1", "");
    assert_eq!(second.status, 500, "{second:?}");
    assert_eq!(
        second.text(),
        "Could not enable CPU profiling: cpu profiling already in use\n"
    );
    assert_eq!(second.header("X-Go-Pprof"), Some("1"));
    // A heap profile does not wait for the CPU profile.
    let heap = get(addr, "/debug/pprof/heap", "");
    heap.profile();
    assert!(
        first.try_recv().is_err(),
        "the refusal and the heap profile came while the first CPU profile still ran"
    );
    let long = long.join().unwrap();
    let profile = long.profile();
    assert!(
        profile.duration_nanos >= 8_000_000_000,
        "{}",
        profile.duration_nanos
    );
    service.shut_down();
}

#[test]
fn a_signal_during_a_scrape_is_written_before_the_scrape_ends() {
    // Alloy asks for 14 s of every 15: a `SIGUSR2` (or a threshold) must
    // not wait for the scrape, nor be refused. Both share the sampler.
    let dir = tempdir();
    let (mut service, addr) = serving(dir.path(), &["--threads", "2"], &[]);
    let (done, answered) = mpsc::channel();
    let scrape = std::thread::spawn(move || {
        let reply = get(addr, "/debug/pprof/profile?seconds=8", "");
        let _ = done.send(());
        reply
    });
    service.wait_for_line(&["CPU profile of 8 s for http started"]);
    service.signal();
    // The signal's profile (1 s here) is written while the scrape runs.
    service.wait_for_lines(&["wrote", ".cpu."], 1);
    assert!(
        answered.try_recv().is_err(),
        "premise: the 1 s capture began early in the 8 s scrape; here the scrape ended first \
         (a stalled machine?)"
    );
    let scraped = scrape.join().unwrap().profile();
    let files = captures_of(dir.path(), "cpu");
    assert_eq!(files.len(), 1, "{files:?}");
    let written = Profile::decode(&std::fs::read(&files[0]).unwrap()).unwrap();
    let window = |p: &Profile| (p.time_nanos, p.time_nanos + p.duration_nanos);
    let (scrape_start, scrape_end) = window(&scraped);
    let (file_start, file_end) = window(&written);
    assert!(
        scrape_start <= file_start && file_end <= scrape_end,
        "each its own window: the file's inside the scrape's"
    );
    assert!(scraped.duration_nanos >= 8_000_000_000);
    assert!(written.duration_nanos >= 1_000_000_000);
    for profile in [&scraped, &written] {
        let hot: i64 = profile
            .sample
            .iter()
            .filter(|s| {
                s.location_id.iter().any(|&id| {
                    profile.location[(id - 1) as usize].line.iter().any(|l| {
                        profile
                            .string(profile.function[(l.function_id - 1) as usize].name)
                            .contains("checksum_orders")
                    })
                })
            })
            .map(|s| s.value[1])
            .sum();
        assert!(hot > 0, "the workers' hot function is in both");
    }
    service.shut_down();
}

#[test]
fn a_token_from_a_file_is_required_and_stays_out_of_the_environment() {
    let dir = tempdir();
    let secrets = tempdir();
    const TOKEN: &str = "dG9rZW4tZnJvbS1hLWZpbGU-not-a-secret";
    let file = secrets.path().join("pprof-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let (mut service, addr) = serving(
        dir.path(),
        &["--threads", "1"],
        &[("FIREWATCH_HTTP_TOKEN_FILE", file.to_str().unwrap())],
    );
    service.wait_for_line(&["serving http://", "(bearer token required)"]);
    let refused = get(addr, "/debug/pprof/heap", "");
    assert_eq!(refused.status, 401, "{refused:?}");
    get(
        addr,
        "/debug/pprof/heap",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .profile();
    // The kernel's copy of the service's environment names the file only.
    let environ = std::fs::read(format!("/proc/{}/environ", service.pid)).unwrap();
    let holds = |needle: &str| {
        environ
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(holds(file.to_str().unwrap()) && !holds(TOKEN));
    assert_eq!(service.count(&[TOKEN]), 0, "never logged");
    service.shut_down();
}

#[test]
fn a_hundred_slow_clients_do_not_keep_a_request_out() {
    let dir = tempdir();
    let (mut service, addr) = serving(dir.path(), &["--threads", "1"], &[]);
    // Each connects and sends most of a head, never its end.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let heap = get(addr, "/debug/pprof/heap", "");
    heap.profile();
    service.wait_for_line(&["closed the oldest one still sending its request"]);
    // The last slow client, not closed for a newer one, is closed when its
    // head's time (5 s) runs out.
    let mut last = slow.last().unwrap().try_clone().unwrap();
    last.set_read_timeout(Some(HANG)).unwrap();
    let mut rest = Vec::new();
    let closed = last.read_to_end(&mut rest);
    assert!(
        closed.is_ok() || closed.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closed it (not our read's deadline)"
    );
    drop(slow);
    service.shut_down();
}

#[test]
fn the_endpoint_off_means_no_listening_socket() {
    let dir = tempdir();
    let off = Service::start(dir.path(), &["--threads", "1"], &[]);
    assert_eq!(listening_ports(off.pid), Vec::<u16>::new());
    drop(off);
    let (mut on, addr) = serving(dir.path(), &["--threads", "1"], &[]);
    assert_eq!(listening_ports(on.pid), [addr.port()]);
    // A client that connects and says nothing does not hold up shutdown.
    let idle = TcpStream::connect(addr).unwrap();
    on.shut_down();
    drop(idle);
}

#[test]
fn a_port_in_use_is_logged_and_retried_without_failing_start() {
    let dir = tempdir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut service = Service::start(dir.path(), &["--threads", "1", "--http", &addr], &[]);
    service.wait_for_line(&["cannot listen on", &addr, "trying again every 5 s"]);
    drop(taken);
    service.wait_for_line(&["firewatch: serving http://", &addr]);
    let heap = get(addr.parse().unwrap(), "/debug/pprof/heap", "");
    heap.profile();
    service.shut_down();
}
