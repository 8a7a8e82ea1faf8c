//! The endpoint's thread: one `poll(2)` loop over the wake-up socket, the
//! listening socket and every connection, all non-blocking.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::request::{self, Method, Parsed, Route, Rules, MAX_HEAD_BYTES, PREFIX};
use super::response::{Response, Status};
use super::{Job, Reply, ReplyTo, Shared};

/// Connections open at once; at the limit, the oldest one still sending
/// its head is closed for a new one.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Time a client has, from its connection, to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a response may make no progress before its connection is closed.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection stays open after its response, reading and dropping
/// what the client still sends, so that closing it does not reset the
/// connection before the client has read the response.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an address that could not be bound is tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);
/// How long accepting pauses after `accept` failed for want of resources
/// (no descriptors left): the listener stays readable, and polling it
/// again at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(500);
/// Connections accepted per wake-up, so a flood does not starve the rest.
const ACCEPTS_PER_WAKE: usize = 64;

/// The endpoint's thread and everything it owns.
pub(crate) struct Server {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    /// Failed attempts to bind `addr` in a row (the first is a warning).
    bind_failures: u32,
    next_bind: Instant,
    accept_paused_until: Option<Instant>,
    connections: Vec<Connection>,
    next_id: u64,
    context: Context,
    replies: Receiver<Reply>,
}

/// What every connection's progress needs.
struct Context {
    token: Option<Vec<u8>>,
    max_seconds: u32,
    jobs: Sender<Job>,
    replies: Sender<Reply>,
    shared: Arc<Shared>,
}

struct Connection {
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    /// The request line, once read, for the log.
    summary: Option<String>,
    state: State,
    closed: bool,
}

enum State {
    /// Receiving the request head (at most [`MAX_HEAD_BYTES`]).
    Reading { received: Vec<u8> },
    /// The worker takes its profile; `gone` tells it the client went away.
    Waiting { gone: Arc<AtomicBool> },
    /// Sending the response.
    Writing {
        out: Vec<u8>,
        sent: usize,
        progressed: Instant,
    },
    /// The response is sent and our side shut: reading what is left
    /// until the client closes.
    Draining { until: Instant },
}

impl Server {
    pub fn new(
        addr: SocketAddr,
        token: Option<Vec<u8>>,
        max_seconds: u32,
        jobs: Sender<Job>,
        shared: Arc<Shared>,
    ) -> Server {
        let (replies_to, replies) = mpsc::channel();
        Server {
            addr,
            listener: None,
            bind_failures: 0,
            next_bind: Instant::now(),
            accept_paused_until: None,
            connections: Vec::new(),
            next_id: 0,
            context: Context {
                token,
                max_seconds,
                jobs,
                replies: replies_to,
                shared,
            },
            replies,
        }
    }

    /// Binds the address, or logs why not and schedules another try.
    pub fn bind(&mut self) {
        let bound = TcpListener::bind(self.addr).and_then(|listener| {
            listener.set_nonblocking(true)?;
            Ok(listener)
        });
        match bound {
            Ok(listener) => {
                let local = listener.local_addr().unwrap_or(self.addr);
                *self
                    .context
                    .shared
                    .local_addr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(local);
                let access = if self.context.token.is_some() {
                    "bearer token required"
                } else if crate::config::is_loopback(&local) {
                    "no token, loopback only"
                } else {
                    "no token"
                };
                log::info!("firewatch: serving http://{local}{PREFIX} ({access})");
                self.listener = Some(listener);
            }
            Err(e) => {
                if self.bind_failures == 0 {
                    log::warn!(
                        "firewatch: cannot listen on {} for {PREFIX}: {e}; trying again every \
                         {} s",
                        self.addr,
                        BIND_RETRY.as_secs()
                    );
                } else {
                    log::debug!("firewatch: still cannot listen on {}: {e}", self.addr);
                }
                self.bind_failures = self.bind_failures.saturating_add(1);
                self.next_bind = Instant::now() + BIND_RETRY;
            }
        }
    }

    /// The loop, until the endpoint is dropped. A bug in it takes down
    /// the endpoint, never the service.
    pub fn run(mut self) {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        if ran.is_err() {
            log::error!("firewatch: the {PREFIX} endpoint failed and stopped serving");
        }
    }

    fn serve(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2 + MAX_CONNECTIONS);
        loop {
            if self.context.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if self.listener.is_none() && now >= self.next_bind {
                self.bind();
            }
            if self.accept_paused_until.is_some_and(|until| now >= until) {
                self.accept_paused_until = None;
            }
            fds.clear();
            fds.push(interest(
                self.context.shared.waker.woken.as_raw_fd(),
                libc::POLLIN,
            ));
            let listening = match &self.listener {
                Some(listener) if self.accept_paused_until.is_none() => {
                    fds.push(interest(listener.as_raw_fd(), libc::POLLIN));
                    true
                }
                _ => false,
            };
            let first = fds.len();
            for connection in &self.connections {
                fds.push(interest(connection.stream.as_raw_fd(), connection.events()));
            }
            match poll(&mut fds, self.timeout(now)) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Not expected (EINVAL, ENOMEM): never spin on it.
                    log::warn!("firewatch: poll failed in the {PREFIX} endpoint: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            if fds[0].revents != 0 {
                self.context.shared.waker.drain();
            }
            if self.context.shared.stop.load(Ordering::Acquire) {
                return;
            }
            self.take_replies();
            // `take_replies` may have finished (and closed) some already.
            for (connection, fd) in self.connections.iter_mut().zip(&fds[first..]) {
                if fd.revents != 0 && !connection.closed {
                    connection.progress(fd.revents, &self.context);
                }
            }
            let now = Instant::now();
            for connection in self.connections.iter_mut().filter(|c| !c.closed) {
                connection.expire(now);
            }
            self.connections.retain(|c| !c.closed);
            if listening && fds[1].revents != 0 {
                self.accept();
            }
        }
    }

    /// The next deadline's distance (`None`: none, sleep until woken).
    fn timeout(&self, now: Instant) -> Option<Duration> {
        let bind = self.listener.is_none().then_some(self.next_bind);
        self.connections
            .iter()
            .filter_map(Connection::deadline)
            .chain(bind)
            .chain(self.accept_paused_until)
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Profiles the worker finished: to their connections, if still open.
    fn take_replies(&mut self) {
        while let Ok((id, want, result)) = self.replies.try_recv() {
            if let Some(connection) = self.connections.iter_mut().find(|c| c.id == id) {
                if matches!(connection.state, State::Waiting { .. }) {
                    connection.respond(Response::from_capture(want, result), false);
                }
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        for _ in 0..ACCEPTS_PER_WAKE {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.connections.len() >= MAX_CONNECTIONS
                        && !make_room(&mut self.connections, peer)
                    {
                        refuse(&stream);
                        continue;
                    }
                    self.connections.push(Connection {
                        id: self.next_id,
                        stream,
                        peer,
                        accepted: Instant::now(),
                        summary: None,
                        state: State::Reading {
                            received: Vec::new(),
                        },
                        closed: false,
                    });
                    self.next_id += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    log::warn!(
                        "firewatch: {PREFIX} endpoint cannot accept a connection: {e}; pausing \
                         {} ms",
                        ACCEPT_PAUSE.as_millis()
                    );
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }
}

/// Closes a connection that has nothing under way, for a new one: one
/// draining after its response, else the oldest still sending its
/// head. `false` when every connection has a profile under way or a
/// response to send.
fn make_room(connections: &mut Vec<Connection>, newcomer: SocketAddr) -> bool {
    let draining = connections
        .iter()
        .position(|c| matches!(c.state, State::Draining { .. }));
    let oldest_reading = || {
        connections
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.state, State::Reading { .. }))
            .min_by_key(|(_, c)| c.accepted)
            .map(|(i, _)| i)
    };
    let Some(victim) = draining.or_else(oldest_reading) else {
        return false;
    };
    let closed = connections.swap_remove(victim);
    if matches!(closed.state, State::Reading { .. }) {
        log::debug!(
            "firewatch: {PREFIX} endpoint at {MAX_CONNECTIONS} connections: closed the \
             oldest one still sending its request ({}, for {:?}) for {newcomer}",
            closed.peer,
            closed.accepted.elapsed()
        );
    }
    true
}

/// A connection over the limit with no room: told so, if its buffer
/// takes the few bytes at once, and closed.
fn refuse(stream: &TcpStream) {
    let busy = Response::error(
        Status::SERVICE_UNAVAILABLE,
        "too many connections to the profiling endpoint",
    );
    let _ = (&*stream).write(&busy.encode(false));
    let _ = stream.shutdown(Shutdown::Both);
}

impl Connection {
    /// What `poll` should watch for. While the worker takes the profile,
    /// the end of the client's stream (it went away: the profile is
    /// cancelled, as Go cancels a request whose client closed).
    fn events(&self) -> libc::c_short {
        match self.state {
            State::Reading { .. } | State::Draining { .. } | State::Waiting { .. } => libc::POLLIN,
            State::Writing { .. } => libc::POLLOUT,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Reading { .. } => Some(self.accepted + HEAD_TIMEOUT),
            State::Waiting { .. } => None,
            State::Writing { progressed, .. } => Some(*progressed + WRITE_STALL_TIMEOUT),
            State::Draining { until } => Some(*until),
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.deadline().is_some_and(|at| now >= at) {
            if let State::Reading { received } = &self.state {
                log::debug!(
                    "firewatch: {PREFIX} endpoint: {} sent no complete request in {} s \
                     ({} bytes): closed",
                    self.peer,
                    HEAD_TIMEOUT.as_secs(),
                    received.len()
                );
            }
            self.close();
        }
    }

    fn close(&mut self) {
        if let State::Waiting { gone } = &self.state {
            gone.store(true, Ordering::Release);
            log::debug!(
                "firewatch: {PREFIX} endpoint: {} from {} went away before its answer: \
                 cancelled",
                self.summary.as_deref().unwrap_or("(no request line)"),
                self.peer
            );
        }
        self.closed = true;
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn progress(&mut self, revents: libc::c_short, context: &Context) {
        if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return self.close();
        }
        let readable = revents & (libc::POLLIN | libc::POLLHUP) != 0;
        match self.state {
            State::Reading { .. } if readable => self.read_head(context),
            // The client may have gone away while its profile is taken.
            State::Waiting { .. } if readable => self.watch(),
            State::Writing { .. } if revents & (libc::POLLOUT | libc::POLLHUP) != 0 => self.write(),
            State::Draining { .. } if readable => self.drain(),
            _ => {}
        }
    }

    fn read_head(&mut self, context: &Context) {
        let mut chunk = [0u8; 2048];
        loop {
            let State::Reading { received } = &mut self.state else {
                return;
            };
            let room = MAX_HEAD_BYTES
                .saturating_sub(received.len())
                .min(chunk.len());
            let read = match (&self.stream).read(&mut chunk[..room]) {
                // The client gave up before its head was complete.
                Ok(0) => return self.close(),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(),
            };
            received.extend_from_slice(&chunk[..read]);
            match request::parse(received) {
                Parsed::Partial => continue,
                Parsed::Complete(head) => return self.dispatch(head, context),
                Parsed::Invalid(status, why) => {
                    return self.respond(Response::error(status, why), false)
                }
            }
        }
    }

    fn dispatch(&mut self, head: request::Head, context: &Context) {
        self.summary = Some(head.summary.clone());
        let head_only = head.method == Method::Head;
        let rules = Rules {
            token: context.token.as_deref(),
            max_seconds: context.max_seconds,
        };
        match request::route(&head, &rules) {
            Err(refusal) => self.respond(refusal, head_only),
            Ok(Route::Index) => self.respond(Response::index(), head_only),
            Ok(Route::Cmdline) => self.respond(Response::cmdline(), head_only),
            // A HEAD takes no profile: the headers a GET would get.
            Ok(Route::Capture(want)) if head_only => {
                self.respond(Response::profile_head(want), true)
            }
            Ok(Route::Capture(want)) => {
                let gone = Arc::new(AtomicBool::new(false));
                let job = Job {
                    want,
                    gone: Arc::clone(&gone),
                    reply: Some(ReplyTo {
                        connection: self.id,
                        replies: context.replies.clone(),
                        shared: Arc::clone(&context.shared),
                    }),
                };
                // If the worker is gone, the job, dropped with the error,
                // answers "the agent stopped".
                let _ = context.jobs.send(job);
                self.state = State::Waiting { gone };
            }
        }
    }

    fn respond(&mut self, response: Response, head_only: bool) {
        let status = response.status.0;
        let out = response.encode(head_only);
        log::debug!(
            "firewatch: {PREFIX} endpoint: {} from {}: {status}, {} bytes, {} ms",
            self.summary.as_deref().unwrap_or("(no request line)"),
            self.peer,
            out.len(),
            self.accepted.elapsed().as_millis()
        );
        self.state = State::Writing {
            out,
            sent: 0,
            progressed: Instant::now(),
        };
        self.write();
    }

    fn write(&mut self) {
        loop {
            let State::Writing {
                out,
                sent,
                progressed,
            } = &mut self.state
            else {
                return;
            };
            if *sent == out.len() {
                let _ = self.stream.shutdown(Shutdown::Write);
                self.state = State::Draining {
                    until: Instant::now() + DRAIN_TIMEOUT,
                };
                return;
            }
            match (&self.stream).write(&out[*sent..]) {
                Ok(0) => return self.close(),
                Ok(n) => {
                    *sent += n;
                    *progressed = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(),
            }
        }
    }

    /// While its profile is taken: the client's end of stream (or a reset)
    /// means it went away, and closing says so to the worker. Bytes it
    /// sends meanwhile are read and dropped (one request per connection),
    /// a bounded amount per wake-up.
    fn watch(&mut self) {
        let mut sink = [0u8; 2048];
        for _ in 0..8 {
            match (&self.stream).read(&mut sink) {
                Ok(0) => return self.close(),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(),
            }
        }
    }

    fn drain(&mut self) {
        let mut sink = [0u8; 2048];
        // Bounded: a client that keeps sending is closed at its deadline.
        for _ in 0..8 {
            match (&self.stream).read(&mut sink) {
                Ok(0) => return self.close(),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(),
            }
        }
    }
}

fn interest(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll(2)` over `fds` for at most `timeout` (`None`: until an event),
/// rounded up to a millisecond so a deadline is never polled for early.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> std::io::Result<usize> {
    let millis = timeout.map_or(-1, |t| {
        t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `fds` is an exclusively borrowed, initialized array of
    // `fds.len()` pollfd structs, which poll reads and whose `revents` it
    // writes during the call only; each `fd` is a descriptor this thread
    // owns and keeps open across the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ready as usize)
    }
}
