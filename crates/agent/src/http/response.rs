//! The response side: status lines and the headers Go's `net/http/pprof`
//! sends, for profiles, the index, the command line and errors.

use std::fmt::Write as _;

use super::Want;
use crate::{Error, SkipReason};

/// An HTTP status code the endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);

    fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            301 => "Moved Permanently",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            _ => "",
        }
    }
}

/// A whole response, before it is encoded.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: Status,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// `false` for the answer to a `HEAD` of a profile: the length is only
    /// known by taking the profile, which a `HEAD` does not, so
    /// `Content-Length` is left out (RFC 9110 §9.3.2 allows it).
    length_known: bool,
}

impl Response {
    fn new(status: Status, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", content_type.to_string()),
                // Go's handlers set it on every answer, errors included.
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
            body,
            length_known: true,
        }
    }

    /// Go's `serveError`: the status, plain text, `X-Go-Pprof: 1`, and
    /// one line.
    pub fn error(status: Status, text: &str) -> Response {
        let mut line = text.replace(['\r', '\n'], " ");
        line.push('\n');
        Response::new(status, "text/plain; charset=utf-8", line.into_bytes())
            .with_header("X-Go-Pprof", "1")
    }

    /// A gzipped pprof profile, as Go sends one (`filename` is the name
    /// of the path's profile: `profile`, `heap`, `allocs`).
    pub fn profile(want: Want, gzipped: Vec<u8>) -> Response {
        Response::new(Status::OK, "application/octet-stream", gzipped).with_header(
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", want.file_name()),
        )
    }

    /// The headers [`Response::profile`] would have, for a `HEAD`.
    pub fn profile_head(want: Want) -> Response {
        let mut response = Response::profile(want, Vec::new());
        response.length_known = false;
        response
    }

    /// `/debug/pprof/cmdline`: the process's arguments joined by NUL.
    pub fn cmdline() -> Response {
        use std::os::unix::ffi::OsStrExt;
        let mut body = Vec::new();
        for (i, arg) in std::env::args_os().enumerate() {
            if i > 0 {
                body.push(0);
            }
            body.extend_from_slice(arg.as_bytes());
        }
        Response::new(Status::OK, "text/plain; charset=utf-8", body)
    }

    /// `/debug/pprof/`: Go's index page, listing the profiles served here.
    pub fn index() -> Response {
        const PROFILES: [(&str, &str); 4] = [
            ("allocs", "A sampling of all past memory allocations"),
            (
                "cmdline",
                "The command line invocation of the current program",
            ),
            (
                "heap",
                "A sampling of memory allocations of live objects (inuse_space by default)",
            ),
            (
                "profile",
                "CPU profile. You can specify the duration in the seconds GET parameter. After \
                 you get the profile file, use the go tool pprof command to investigate the \
                 profile.",
            ),
        ];
        let mut page = String::from(
            "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n\
             \tdisplay:inline-block;\n\twidth:6rem;\n}\n</style>\n</head>\n<body>\n\
             /debug/pprof/<br>\n<br>\nTypes of profiles available:\n<table>\n\
             <thead><td>Profile</td></thead>\n",
        );
        for (name, _) in PROFILES {
            let _ = writeln!(page, "<tr><td><a href='{name}'>{name}</a></td></tr>");
        }
        page.push_str("</table>\n<p>\nProfile Descriptions:\n<ul>\n");
        for (name, description) in PROFILES {
            let _ = writeln!(
                page,
                "<li><div class=profile-name>{name}: </div> {description}</li>"
            );
        }
        page.push_str(
            "</ul>\n</p>\n<p>Served by firewatch-agent in a Rust process: Go's runtime \
             profiles (block, goroutine, mutex, threadcreate, trace) do not exist here.</p>\n\
             </body>\n</html>",
        );
        Response::new(Status::OK, "text/html; charset=utf-8", page.into_bytes())
    }

    /// What Go's mux answers `/debug/pprof`: the same path with a slash.
    pub fn redirect(location: &str) -> Response {
        Response::new(
            Status::MOVED_PERMANENTLY,
            "text/html; charset=utf-8",
            format!("<a href=\"{location}\">Moved Permanently</a>.\n").into_bytes(),
        )
        .with_header("Location", location)
    }

    /// The answer to a profile the worker took, or could not.
    pub fn from_capture(want: Want, result: crate::Result<Vec<u8>>) -> Response {
        let error = match result {
            Ok(gzipped) => return Response::profile(want, gzipped),
            Err(e) => e,
        };
        let (status, text) = match (&error, want) {
            (Error::Busy, Want::HeapDelta { .. }) => (
                Status::SERVICE_UNAVAILABLE,
                "too many heap delta profiles under way: try again when one ends".to_string(),
            ),
            // Go's words, which scrapers and people already know.
            (Error::Busy, _) => (
                Status::INTERNAL_SERVER_ERROR,
                "Could not enable CPU profiling: cpu profiling already in use".to_string(),
            ),
            (Error::Unsupported(_), _) => (
                Status::NOT_IMPLEMENTED,
                format!("Could not enable CPU profiling: {error}"),
            ),
            (Error::Sys { .. }, Want::Cpu { .. }) => (
                Status::INTERNAL_SERVER_ERROR,
                format!("Could not enable CPU profiling: {error}"),
            ),
            (Error::Skipped(reason @ SkipReason::NoSamplingAllocator), _) => {
                (Status::NOT_IMPLEMENTED, reason.to_string())
            }
            (Error::Skipped(reason @ SkipReason::AgentStopped), _) => {
                (Status::SERVICE_UNAVAILABLE, reason.to_string())
            }
            _ => (Status::INTERNAL_SERVER_ERROR, error.to_string()),
        };
        Response::error(status, &text)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes to send; without the body for a `HEAD`. Every response
    /// closes its connection: one request per connection keeps the server
    /// a state machine of four states (scrapers reconnect anyway, once per
    /// scrape interval).
    pub fn encode(self, head_only: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status.0, self.status.reason());
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if self.length_known {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(response: Response, head_only: bool) -> String {
        String::from_utf8_lossy(&response.encode(head_only)).into_owned()
    }

    #[test]
    fn a_profile_has_gos_headers() {
        let cpu = Want::Cpu {
            duration: Duration::from_secs(1),
            lookback: false,
        };
        let t = text(Response::profile(cpu, vec![0x1f, 0x8b, 8]), false);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        for line in [
            "Content-Type: application/octet-stream\r\n",
            "Content-Disposition: attachment; filename=\"profile\"\r\n",
            "X-Content-Type-Options: nosniff\r\n",
            "Content-Length: 3\r\n",
            "Connection: close\r\n",
        ] {
            assert!(t.contains(line), "{line:?} in {t}");
        }
        assert!(t.ends_with("\r\n\r\n\u{1f}\u{fffd}\u{8}"), "{t:?}");
        let heap = text(Response::profile(Want::Heap, vec![1]), true);
        assert!(heap.contains("filename=\"heap\""), "{heap}");
        assert!(heap.ends_with("\r\n\r\n"), "HEAD: no body: {heap:?}");
        let head = text(Response::profile_head(Want::Allocs), true);
        assert!(head.contains("filename=\"allocs\""), "{head}");
        // Go's name for a delta: `filename="%s-delta"`.
        let delta = |allocs| Want::HeapDelta {
            allocs,
            duration: Duration::from_secs(5),
        };
        let t = text(Response::profile(delta(false), vec![1]), true);
        assert!(t.contains("filename=\"heap-delta\""), "{t}");
        let t = text(Response::profile(delta(true), vec![1]), true);
        assert!(t.contains("filename=\"allocs-delta\""), "{t}");
        // Over the limit of deltas at once: not Go's CPU words.
        let busy = Response::from_capture(delta(false), Err(Error::Busy));
        assert_eq!(busy.status, Status::SERVICE_UNAVAILABLE);
        assert!(!head.contains("Content-Length"), "{head}");
    }

    #[test]
    fn an_error_is_gos_serve_error() {
        let t = text(
            Response::from_capture(
                Want::Cpu {
                    duration: Duration::from_secs(1),
                    lookback: false,
                },
                Err(Error::Busy),
            ),
            false,
        );
        assert!(
            t.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{t}"
        );
        assert!(
            t.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{t}"
        );
        assert!(t.contains("X-Go-Pprof: 1\r\n"), "{t}");
        assert!(t.contains("X-Content-Type-Options: nosniff\r\n"), "{t}");
        assert!(!t.contains("Content-Disposition"), "{t}");
        assert!(
            t.ends_with("\r\n\r\nCould not enable CPU profiling: cpu profiling already in use\n"),
            "{t}"
        );
        let no_allocator = Response::from_capture(
            Want::Heap,
            Err(Error::Skipped(SkipReason::NoSamplingAllocator)),
        );
        assert_eq!(no_allocator.status, Status::NOT_IMPLEMENTED);
        let multi = text(Response::error(Status::BAD_REQUEST, "a\nb\r\nc"), false);
        assert!(multi.ends_with("\r\n\r\na b  c\n"), "{multi:?}");
    }

    #[test]
    fn the_index_lists_the_profiles_served() {
        let t = text(Response::index(), false);
        assert!(t.contains("Content-Type: text/html; charset=utf-8"), "{t}");
        for name in ["allocs", "cmdline", "heap", "profile"] {
            assert!(t.contains(&format!("<a href='{name}'>{name}</a>")), "{t}");
        }
        let cmdline = text(Response::cmdline(), false);
        assert!(
            cmdline.contains("Content-Type: text/plain; charset=utf-8"),
            "{cmdline}"
        );
    }
}
