//! `/debug/pprof/` over HTTP, as Go's `net/http/pprof` serves it, so that
//! `go tool pprof http://HOST:PORT/debug/pprof/profile`, Grafana Alloy's
//! `pyroscope.scrape` and Parca can take profiles of a Rust service. Off
//! unless `http_addr` is set: then there is no socket at all.
//!
//! **Threads.** One thread, `firewatch-http`, owns the listening socket and
//! every connection: non-blocking sockets and one `poll(2)` over them, a
//! state machine per connection (reading its head → waiting for its
//! profile → writing → draining), `httparse` for the request head. It
//! takes no profile itself: a profile request becomes a [`Job`] sent to
//! the agent's worker thread, which builds it exactly as it builds a file
//! (same comments, same memory limit, same symbolization) and answers
//! through a channel, waking the `poll` through a socket pair. So two
//! captures never symbolize at once. A CPU profile shares the agent's one
//! sampler with the triggers' captures and runs beside them; a second one
//! asked for while one runs is refused at once (Go's "cpu profiling already
//! in use"); a heap profile is served at once, during any CPU profile. A
//! client that closes its connection while it waits marks its job
//! cancelled (Go cancels the request's context), and the worker stops
//! what it was taking for it.
//!
//! **Why a server of our own.** The endpoint lives inside other people's
//! services: it must not force an async runtime on them, nor a thread pool
//! or a dependency tree, and it must cost nothing while nobody asks. What
//! was measured (`docs/performance.md`, "Agent: the /debug/pprof
//! endpoint"): this server and `httparse` (a small, maintained parser with
//! no dependencies, hyper's) add 123 KiB (6%) to the example service's
//! stripped release binary, two thirds of it the standard library's
//! sockets and address handling; a minimal `tiny_http` server (one route,
//! no token, no limits) adds 294 KiB, four crates and six threads. Idle,
//! this thread sleeps in `poll` with no timeout: 0 wakeups in 120 s. A
//! hyper or axum server would bring tokio into services that may not use
//! it. A thread per connection would make the connection limit a thread
//! limit and a slow client a blocked thread; one `poll` loop keeps every
//! limit below in one place.
//!
//! **Limits** (a hostile or broken client must not cost the service more
//! than these): a request head of at most 8 KiB and 64 fields (else 431),
//! no body; 5 s to send the head; 10 s without progress while the answer
//! is written; at most 16 connections, and at the limit a new connection
//! closes the oldest one still sending its head (a slow-loris client
//! cannot keep others out); one request per connection. The bearer token
//! is compared in constant time; without it every request gets 401.

mod request;
mod response;
mod server;

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{is_loopback, Config};
use crate::{Error, Result, SkipReason};

/// A profile the endpoint asks the worker for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// `/debug/pprof/profile`: a CPU profile of this length; with
    /// `lookback` (`lookback=1`), beginning with the look-back sampler's
    /// window.
    Cpu { duration: Duration, lookback: bool },
    /// `/debug/pprof/heap`: a heap snapshot, `inuse_space` by default.
    Heap,
    /// `/debug/pprof/allocs`: the same snapshot, `alloc_space` by default.
    Allocs,
    /// `heap` or `allocs` with `seconds`: Go's delta profile, a snapshot
    /// `duration` after the request less one taken when it came.
    HeapDelta { allocs: bool, duration: Duration },
}

impl Want {
    /// The profile's name in Go's paths and `Content-Disposition`.
    pub fn file_name(self) -> &'static str {
        match self {
            Want::Cpu { .. } => "profile",
            Want::Heap => "heap",
            Want::Allocs => "allocs",
            // Go's `filename="%s-delta"`.
            Want::HeapDelta { allocs: false, .. } => "heap-delta",
            Want::HeapDelta { allocs: true, .. } => "allocs-delta",
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Cpu {
                duration,
                lookback: false,
            } => write!(f, "CPU profile of {} s", duration.as_secs()),
            Want::Cpu {
                duration,
                lookback: true,
            } => write!(f, "CPU profile of {} s with look-back", duration.as_secs()),
            Want::Heap => f.write_str("heap profile"),
            Want::Allocs => f.write_str("allocs profile"),
            Want::HeapDelta { allocs, duration } => write!(
                f,
                "{} delta profile over {} s",
                if *allocs { "allocs" } else { "heap" },
                duration.as_secs()
            ),
        }
    }
}

/// A profile request on its way to the worker. It is answered exactly
/// once: by [`Job::answer`], or, if the worker drops it unanswered (it
/// stopped, or the client went away), with "the agent stopped".
pub(crate) struct Job {
    pub want: Want,
    reply: Option<ReplyTo>,
    /// Set by the endpoint's thread when the client goes away before its
    /// answer: the worker then cancels what it takes for it.
    gone: Arc<AtomicBool>,
}

/// Where a job's answer goes: the endpoint thread's channel, for this
/// connection, and the wake-up that makes its `poll` return.
struct ReplyTo {
    connection: u64,
    replies: Sender<Reply>,
    shared: Arc<Shared>,
}

/// A job's answer: the connection, what it asked, the gzipped profile.
type Reply = (u64, Want, Result<Vec<u8>>);

impl Job {
    /// Whether the client that asked went away (its connection closed).
    pub fn cancelled(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Sends the result to the connection that asked (which may be gone).
    pub fn answer(mut self, result: Result<Vec<u8>>) {
        if let Some(to) = self.reply.take() {
            to.send(self.want, result);
        }
    }
}

impl ReplyTo {
    fn send(self, want: Want, result: Result<Vec<u8>>) {
        // The endpoint may have stopped: nobody to answer.
        let _ = self.replies.send((self.connection, want, result));
        self.shared.waker.wake();
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(to) = self.reply.take() {
            to.send(self.want, Err(Error::Skipped(SkipReason::AgentStopped)));
        }
    }
}

/// What the endpoint's owner, its thread and the worker share.
struct Shared {
    stop: AtomicBool,
    waker: Waker,
    /// The address bound, once it is.
    local_addr: Mutex<Option<SocketAddr>>,
}

/// Makes the endpoint thread's `poll` return: one byte into a socket pair
/// whose other end it polls. Both ends live here, so a write never meets
/// a closed peer (no `SIGPIPE`, no `EPIPE`).
struct Waker {
    wake: UnixStream,
    woken: UnixStream,
}

impl Waker {
    fn new() -> std::io::Result<Waker> {
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        Ok(Waker { wake, woken })
    }

    fn wake(&self) {
        // A full buffer means a wake-up is pending already.
        let _ = (&self.wake).write(&[1]);
    }

    /// Empties the pair, so the next `poll` sleeps until the next wake.
    fn drain(&self) {
        let mut sink = [0u8; 64];
        loop {
            match (&self.woken).read(&mut sink) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

/// The running endpoint. Dropping it stops its thread, closing the
/// listening socket and every connection (profiles under way are then
/// abandoned by the worker's own stop).
pub(crate) struct Endpoint {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `addr` and starts the endpoint's thread; profile requests go
    /// to the worker through `jobs`. An address that cannot be bound now
    /// (in use, not yet configured on the host) does not fail: it is
    /// logged and retried every 5 s on the endpoint's thread.
    pub fn start(addr: SocketAddr, config: &Config, jobs: Sender<Job>) -> Result<Endpoint> {
        let token = config.http_token.as_ref().map(|t| t.0.clone().into_bytes());
        if !is_loopback(&addr) && token.is_none() {
            log::warn!(
                "firewatch: /debug/pprof/ on {addr} without a token \
                 (http_allow_unauthenticated): anyone who can reach this port can profile \
                 this process and read its command line"
            );
        }
        let waker = Waker::new().map_err(|source| Error::Sys {
            call: "creating the endpoint's wake-up socket pair",
            source,
        })?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            waker,
            local_addr: Mutex::new(None),
        });
        let mut server = server::Server::new(
            addr,
            token,
            config.http_max_seconds,
            jobs,
            Arc::clone(&shared),
        );
        // Bound before `start()` returns, so `Agent::http_addr` knows the
        // port at once (with port 0, the one the system chose).
        server.bind();
        let thread = std::thread::Builder::new()
            .name("firewatch-http".into())
            .spawn(move || server.run())
            .map_err(|source| Error::Sys {
                call: "spawning the endpoint's thread",
                source,
            })?;
        Ok(Endpoint {
            shared,
            thread: Some(thread),
        })
    }

    /// The address bound, once it is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self
            .shared
            .local_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
