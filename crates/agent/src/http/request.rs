//! The request side: a request head parsed with `httparse` under the
//! endpoint's limits, and what to answer it, as Go's `net/http/pprof`
//! answers (its paths, its `seconds` rules, its error texts).
//!
//! Everything here takes bytes from the network: it returns a decision
//! for any input and never panics (see the tests at the end, which feed it
//! garbage, oversized heads and heads cut at every byte).

use std::time::Duration;

use super::response::{Response, Status};
use super::Want;

/// Largest request head (request line and header fields) accepted. Go's
/// `http.Server` allows 1 MiB; a scraper sends a few hundred bytes, and a
/// head that does not fit is answered 431.
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header fields parsed; more is answered 431.
const MAX_HEADERS: usize = 64;
/// Go's default CPU profile length, for a missing, zero, negative or
/// unparsable `seconds`.
const DEFAULT_SECONDS: u64 = 30;
/// Where Go serves the profiles.
pub(crate) const PREFIX: &str = "/debug/pprof/";

/// The request method, as far as the endpoint cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Other,
}

/// The parts of a request head the endpoint uses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: Method,
    /// The request line's method and target as sent, for the log (cut to
    /// 200 bytes; `httparse` admits no control characters in either).
    pub summary: String,
    /// The target's path, percent-decoded.
    pub path: String,
    /// The target's query (after `?`), as sent.
    pub query: String,
    /// The first `Authorization` field's value.
    pub authorization: Option<Vec<u8>>,
    /// Whether a body follows (`Content-Length` other than 0, or any
    /// `Transfer-Encoding`): the endpoint accepts none.
    pub has_body: bool,
}

/// What the bytes received so far are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A head not yet complete: read more.
    Partial,
    Complete(Head),
    /// Not a head the endpoint answers other than with this error.
    Invalid(Status, &'static str),
}

/// Parses the start of a connection's bytes (at most [`MAX_HEAD_BYTES`]).
pub(crate) fn parse(received: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(received) {
        Ok(httparse::Status::Partial) if received.len() >= MAX_HEAD_BYTES => {
            Parsed::Invalid(Status::HEADERS_TOO_LARGE, "request header fields too large")
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(_)) => head(&request),
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Invalid(Status::HEADERS_TOO_LARGE, "too many header fields")
        }
        Err(_) => Parsed::Invalid(Status::BAD_REQUEST, "malformed request"),
    }
}

fn head(request: &httparse::Request<'_, '_>) -> Parsed {
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Parsed::Invalid(Status::BAD_REQUEST, "malformed request");
    };
    let mut summary = format!("{method} {target}");
    if summary.len() > 200 {
        let mut cut = 200;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push('…');
    }
    // An absolute-form target (`http://host/debug/pprof/heap`, as sent to
    // a proxy) names the same path.
    let origin_form = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            let rest = target.get(scheme.len()..)?;
            target[..scheme.len()]
                .eq_ignore_ascii_case(scheme)
                .then(|| rest.find('/').map_or("/", |slash| &rest[slash..]))
        })
        .unwrap_or(target);
    let (raw_path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    let Some(path) = percent_decode(raw_path, false) else {
        return Parsed::Invalid(Status::BAD_REQUEST, "malformed request target");
    };
    let mut authorization = None;
    let mut has_body = false;
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("authorization") {
            authorization.get_or_insert_with(|| field.value.to_vec());
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        } else if field.name.eq_ignore_ascii_case("content-length") {
            has_body |= field.value.trim_ascii() != b"0";
        }
    }
    Parsed::Complete(Head {
        method: match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => Method::Other,
        },
        summary,
        path: String::from_utf8_lossy(&path).into_owned(),
        query: query.to_string(),
        authorization,
        has_body,
    })
}

/// What a request is for, once it may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/debug/pprof/`: the HTML list of profiles.
    Index,
    /// `/debug/pprof/cmdline`: the arguments, joined by NUL.
    Cmdline,
    /// A profile the agent's worker takes.
    Capture(Want),
}

/// What the endpoint checks every request against.
pub(crate) struct Rules<'a> {
    /// The bearer token, if one is required.
    pub token: Option<&'a [u8]>,
    /// The longest CPU profile a request may ask for, in seconds.
    pub max_seconds: u32,
}

/// The route a complete head asks for, or the response that refuses it:
/// the token first (without it, nothing else is said), then the method,
/// a body, the path, the parameters.
pub(crate) fn route(head: &Head, rules: &Rules<'_>) -> Result<Route, Response> {
    if let Some(token) = rules.token {
        if !authorized(head.authorization.as_deref(), token) {
            return Err(
                Response::error(Status::UNAUTHORIZED, "missing or wrong bearer token")
                    .with_header("WWW-Authenticate", "Bearer realm=\"firewatch\""),
            );
        }
    }
    if head.method == Method::Other {
        return Err(
            Response::error(Status::METHOD_NOT_ALLOWED, "only GET and HEAD are served")
                .with_header("Allow", "GET, HEAD"),
        );
    }
    if head.has_body {
        return Err(Response::error(
            Status::BAD_REQUEST,
            "a request body is not accepted",
        ));
    }
    if head.path == PREFIX.trim_end_matches('/') {
        return Err(Response::redirect(PREFIX));
    }
    let Some(name) = head.path.strip_prefix(PREFIX) else {
        return Err(Response::error(Status::NOT_FOUND, "404 page not found"));
    };
    let form = |key: &str| form_value(&head.query, key);
    match name {
        "" => Ok(Route::Index),
        "cmdline" => Ok(Route::Cmdline),
        "profile" => {
            // Go: `strconv.ParseInt(seconds)`, and 30 for an error or <= 0.
            let default = DEFAULT_SECONDS.min(u64::from(rules.max_seconds));
            let seconds = form("seconds")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&s| s > 0)
                .map_or(default, |s| s as u64);
            if seconds > u64::from(rules.max_seconds) {
                return Err(too_long(rules.max_seconds));
            }
            // `lookback=1` (Go's rule for its own flags such as `gc`:
            // `strconv.Atoi`, and on for a number above 0): begin with the
            // look-back sampler's window, where the agent keeps one.
            let lookback = form("lookback")
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > 0);
            Ok(Route::Capture(Want::Cpu {
                duration: Duration::from_secs(seconds),
                lookback,
            }))
        }
        "heap" | "allocs" => {
            let allocs = name == "allocs";
            // Go: `strconv.Atoi(debug)`, text output for anything but 0.
            let debug = form("debug")
                .and_then(|d| d.parse::<i64>().ok())
                .unwrap_or(0)
                != 0;
            // Go serves a delta profile for any `seconds` that is not empty
            // (`serveDeltaProfile`), with its checks in its order.
            if let Some(seconds) = form("seconds").filter(|s| !s.is_empty()) {
                let seconds = seconds
                    .parse::<i64>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        Response::error(
                            Status::BAD_REQUEST,
                            "invalid value for \"seconds\" - must be a positive integer",
                        )
                    })?;
                if seconds > i64::from(rules.max_seconds) {
                    return Err(too_long(rules.max_seconds));
                }
                if debug {
                    return Err(Response::error(
                        Status::BAD_REQUEST,
                        "seconds and debug params are incompatible",
                    ));
                }
                return Ok(Route::Capture(Want::HeapDelta {
                    allocs,
                    duration: Duration::from_secs(seconds as u64),
                }));
            }
            if debug {
                return Err(Response::error(
                    Status::BAD_REQUEST,
                    "debug (text output) is not supported: fetch the binary profile and read \
                     it with go tool pprof",
                ));
            }
            Ok(Route::Capture(if allocs {
                Want::Allocs
            } else {
                Want::Heap
            }))
        }
        _ => Err(Response::error(Status::NOT_FOUND, "Unknown profile")),
    }
}

/// The answer to a `seconds` over `http_max_seconds` (where Go checks
/// its server's `WriteTimeout`).
fn too_long(max_seconds: u32) -> Response {
    Response::error(
        Status::BAD_REQUEST,
        &format!(
            "profile duration exceeds the endpoint's limit of {max_seconds} seconds \
             (http_max_seconds)"
        ),
    )
}

/// Whether `authorization` is `Bearer <token>` (the scheme in any case,
/// RFC 9110 §11.1). The token is compared in constant time.
fn authorized(authorization: Option<&[u8]>, token: &[u8]) -> bool {
    const SCHEME: &[u8] = b"bearer ";
    let Some(value) = authorization else {
        return false;
    };
    match value.split_at_checked(SCHEME.len()) {
        Some((scheme, credentials)) if scheme.eq_ignore_ascii_case(SCHEME) => {
            same_secret(credentials.trim_ascii(), token)
        }
        _ => false,
    }
}

/// `given == expected`, in a time that depends on `expected`'s length only:
/// every byte is compared, with no early exit, so the time a wrong token
/// takes says nothing about how much of it was right.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        difference |= given.get(i).copied().unwrap_or(!e) ^ e;
    }
    std::hint::black_box(difference) == 0
}

/// The first value of `key` in a query, decoded as Go's `url.ParseQuery`
/// decodes it (`+` is a space, `%XX` a byte; a pair that does not decode,
/// or holds a `;`, is skipped).
fn form_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        if pair.is_empty() || pair.contains(';') {
            return None;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k, true)?;
        if k != key.as_bytes() {
            return None;
        }
        Some(String::from_utf8_lossy(&percent_decode(v, true)?).into_owned())
    })
}

/// `%XX` escapes decoded (and `+` as a space, in a query); `None` for a
/// `%` not followed by two hex digits.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let digit = |at: usize| char::from(*bytes.get(at)?).to_digit(16);
                out.push((digit(i + 1)? * 16 + digit(i + 2)?) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules<'static> = Rules {
        token: None,
        max_seconds: 60,
    };

    fn complete(text: &str) -> Head {
        match parse(text.as_bytes()) {
            Parsed::Complete(head) => head,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn route_of(text: &str, rules: &Rules<'_>) -> Result<Route, Status> {
        route(&complete(text), rules).map_err(|r| r.status)
    }

    fn get(target: &str) -> Result<Route, Status> {
        route_of(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"), &RULES)
    }

    #[test]
    fn a_scrapers_request_parses() {
        let head = complete(
            "GET /debug/pprof/profile?seconds=14 HTTP/1.1\r\nHost: 10.0.0.7:6060\r\n\
             User-Agent: Alloy/v1.5.0\r\nAuthorization: Bearer s3cret\r\n\
             Accept-Encoding: gzip\r\n\r\n",
        );
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/debug/pprof/profile");
        assert_eq!(head.query, "seconds=14");
        assert_eq!(head.authorization.as_deref(), Some(&b"Bearer s3cret"[..]));
        assert!(!head.has_body);
        assert_eq!(head.summary, "GET /debug/pprof/profile?seconds=14");
    }

    #[test]
    fn the_paths_go_serves() {
        let cpu = |s| {
            Ok(Route::Capture(Want::Cpu {
                duration: Duration::from_secs(s),
                lookback: false,
            }))
        };
        let with_lookback = |s| {
            Ok(Route::Capture(Want::Cpu {
                duration: Duration::from_secs(s),
                lookback: true,
            }))
        };
        assert_eq!(get("/debug/pprof/"), Ok(Route::Index));
        assert_eq!(get("/debug/pprof/cmdline"), Ok(Route::Cmdline));
        assert_eq!(get("/debug/pprof/heap"), Ok(Route::Capture(Want::Heap)));
        assert_eq!(get("/debug/pprof/allocs"), Ok(Route::Capture(Want::Allocs)));
        assert_eq!(
            get("/debug/pprof/heap?gc=1&debug=0"),
            Ok(Route::Capture(Want::Heap))
        );
        assert_eq!(get("/debug/pprof/%68eap"), Ok(Route::Capture(Want::Heap)));
        assert_eq!(
            get("http://h:1/debug/pprof/heap"),
            Ok(Route::Capture(Want::Heap))
        );
        assert_eq!(get("/debug/pprof"), Err(Status::MOVED_PERMANENTLY));
        for missing in ["goroutine", "mutex", "block", "trace", "symbol", "x/heap"] {
            assert_eq!(
                get(&format!("/debug/pprof/{missing}")),
                Err(Status::NOT_FOUND)
            );
        }
        assert_eq!(get("/"), Err(Status::NOT_FOUND));
        assert_eq!(get("/metrics"), Err(Status::NOT_FOUND));
        // Go's `seconds`: 30 when missing, unparsable, zero or negative.
        assert_eq!(get("/debug/pprof/profile"), cpu(30));
        assert_eq!(get("/debug/pprof/profile?seconds=2"), cpu(2));
        assert_eq!(get("/debug/pprof/profile?seconds=%32"), cpu(2));
        assert_eq!(get("/debug/pprof/profile?seconds=%2B5"), cpu(5));
        assert_eq!(
            get("/debug/pprof/profile?seconds=+5"),
            cpu(30),
            "+ is a space"
        );
        assert_eq!(get("/debug/pprof/profile?seconds=0"), cpu(30));
        assert_eq!(get("/debug/pprof/profile?seconds=-3"), cpu(30));
        assert_eq!(get("/debug/pprof/profile?seconds=ten"), cpu(30));
        assert_eq!(get("/debug/pprof/profile?seconds=2.5"), cpu(30));
        assert_eq!(get("/debug/pprof/profile?seconds=60"), cpu(60));
        assert_eq!(get("/debug/pprof/profile?seconds=7&seconds=9"), cpu(7));
        assert_eq!(get("/debug/pprof/profile?debug=1&seconds=1"), cpu(1));
        // `lookback`: on for a whole number above 0, as Go reads `gc`.
        assert_eq!(
            get("/debug/pprof/profile?seconds=5&lookback=1"),
            with_lookback(5)
        );
        assert_eq!(get("/debug/pprof/profile?lookback=2"), with_lookback(30));
        assert_eq!(get("/debug/pprof/profile?lookback=%31"), with_lookback(30));
        for off in [
            "lookback=0",
            "lookback=-1",
            "lookback=true",
            "lookback",
            "lookback=",
        ] {
            assert_eq!(
                get(&format!("/debug/pprof/profile?{off}")),
                cpu(30),
                "{off}"
            );
        }
        assert_eq!(
            get("/debug/pprof/profile?seconds=61"),
            Err(Status::BAD_REQUEST)
        );
        assert_eq!(
            get("/debug/pprof/profile?seconds=99999999999999999999999"),
            cpu(30),
            "overflow is an error in Go's ParseInt: the default"
        );
        assert_eq!(get("/debug/pprof/heap?debug=1"), Err(Status::BAD_REQUEST));
        assert_eq!(get("/debug/pprof/allocs?debug=2"), Err(Status::BAD_REQUEST));
        // `seconds` on heap and allocs: Go's delta profile, with Go's checks.
        let delta = |allocs, seconds| {
            Ok(Route::Capture(Want::HeapDelta {
                allocs,
                duration: Duration::from_secs(seconds),
            }))
        };
        assert_eq!(get("/debug/pprof/heap?seconds=10"), delta(false, 10));
        assert_eq!(get("/debug/pprof/allocs?seconds=%33"), delta(true, 3));
        assert_eq!(
            get("/debug/pprof/heap?seconds=&debug=0"),
            Ok(Route::Capture(Want::Heap))
        );
        for invalid in ["0", "-1", "ten", "2.5", "99999999999999999999999", "+5"] {
            let head = complete(&format!(
                "GET /debug/pprof/heap?seconds={invalid} HTTP/1.1\r\n\r\n"
            ));
            let refused = route(&head, &RULES).expect_err(invalid);
            assert_eq!(refused.status, Status::BAD_REQUEST, "{invalid}");
            let text = String::from_utf8_lossy(&refused.encode(false)).into_owned();
            assert!(
                text.ends_with(
                    "\r\n\r\ninvalid value for \"seconds\" - must be a positive integer\n"
                ),
                "{invalid}: {text}"
            );
        }
        assert_eq!(
            get("/debug/pprof/heap?seconds=61"),
            Err(Status::BAD_REQUEST)
        );
        assert_eq!(
            get("/debug/pprof/allocs?seconds=5&debug=1"),
            Err(Status::BAD_REQUEST),
            "seconds and debug params are incompatible"
        );
        // A limit under Go's default makes the limit the default.
        let short = Rules {
            token: None,
            max_seconds: 10,
        };
        assert_eq!(
            route_of("GET /debug/pprof/profile HTTP/1.1\r\n\r\n", &short),
            cpu(10)
        );
    }

    #[test]
    fn methods_and_bodies() {
        let text = |method: &str, extra: &str| {
            format!("{method} /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
        };
        assert_eq!(
            route_of(&text("HEAD", ""), &RULES),
            Ok(Route::Capture(Want::Heap))
        );
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get", "BREW"] {
            assert_eq!(
                route_of(&text(method, ""), &RULES),
                Err(Status::METHOD_NOT_ALLOWED),
                "{method}"
            );
        }
        let with_body = text("GET", "Content-Length: 5\r\n");
        assert_eq!(route_of(&with_body, &RULES), Err(Status::BAD_REQUEST));
        let chunked = text("GET", "Transfer-Encoding: chunked\r\n");
        assert_eq!(route_of(&chunked, &RULES), Err(Status::BAD_REQUEST));
        let empty = text("GET", "Content-Length: 0\r\n");
        assert_eq!(route_of(&empty, &RULES), Ok(Route::Capture(Want::Heap)));
    }

    #[test]
    fn the_token_is_checked_before_anything_else() {
        let rules = Rules {
            token: Some(b"s3cret-token"),
            max_seconds: 60,
        };
        let with = |auth: &str| {
            route_of(
                &format!("GET /debug/pprof/heap HTTP/1.1\r\n{auth}\r\n"),
                &rules,
            )
        };
        assert_eq!(with(""), Err(Status::UNAUTHORIZED));
        assert_eq!(
            with("Authorization: Bearer s3cret-token\r\n"),
            Ok(Route::Capture(Want::Heap))
        );
        assert_eq!(
            with("authorization: bearer   s3cret-token \r\n"),
            Ok(Route::Capture(Want::Heap))
        );
        for wrong in [
            "Authorization: Bearer s3cret-toke\r\n",
            "Authorization: Bearer s3cret-token2\r\n",
            "Authorization: Bearer S3cret-token\r\n",
            "Authorization: Bearer\r\n",
            "Authorization: Basic czNjcmV0LXRva2Vu\r\n",
            "Authorization: s3cret-token\r\n",
            "X-Token: s3cret-token\r\n",
        ] {
            assert_eq!(with(wrong), Err(Status::UNAUTHORIZED), "{wrong:?}");
        }
        // Without the token, a wrong method or path is not revealed.
        let post = route_of("POST /nowhere HTTP/1.1\r\n\r\n", &rules);
        assert_eq!(post, Err(Status::UNAUTHORIZED));
        let refused = route(&complete("GET / HTTP/1.1\r\n\r\n"), &rules).unwrap_err();
        let bytes = String::from_utf8(refused.encode(false)).unwrap();
        assert!(bytes.contains("\r\nWWW-Authenticate: Bearer"), "{bytes}");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
        // A given byte equal to `!expected` where `given` is short must not
        // pass: the length alone already differs.
        assert!(!same_secret(&[!b'a'], b"a\x00"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn heads_too_large_or_malformed_are_refused() {
        let mut huge = b"GET /debug/pprof/heap HTTP/1.1\r\nX-Filler: ".to_vec();
        huge.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(
            parse(&huge),
            Parsed::Invalid(Status::HEADERS_TOO_LARGE, "request header fields too large")
        );
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(
            parse(many.as_bytes()),
            Parsed::Invalid(Status::HEADERS_TOO_LARGE, _)
        ));
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS hello
            b"GET / HTTP/1.1\r\nHost\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET\x00/ HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \x01\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(Status::BAD_REQUEST, _)),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
        assert_eq!(
            parse(b"GET /debug/pprof/%zzheap HTTP/1.1\r\n\r\n"),
            Parsed::Invalid(Status::BAD_REQUEST, "malformed request target"),
            "an escape that does not decode"
        );
    }

    /// A head arrives in pieces: every prefix is `Partial` (or the same
    /// answer), never a panic, and the whole is the same head.
    #[test]
    fn a_head_cut_at_every_byte() {
        let text = b"GET /debug/pprof/profile?seconds=2 HTTP/1.1\r\nHost: a\r\n\
                     Authorization: Bearer t\r\n\r\n";
        for cut in 0..text.len() {
            assert_eq!(parse(&text[..cut]), Parsed::Partial, "cut at {cut}");
        }
        assert!(matches!(parse(text), Parsed::Complete(_)));
        // Bytes after the head (a pipelined request) do not matter.
        let mut more = text.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&more), parse(text));
    }

    /// Garbage of every kind gives an answer, never a panic: random bytes,
    /// random mixes of request syntax, and mutations of a good head.
    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 16] = [
            b"GET ",
            b"HEAD ",
            b"/debug/pprof/",
            b"profile",
            b"heap",
            b"?seconds=",
            b"%",
            b"%4",
            b"&",
            b" HTTP/1.1",
            b"\r\n",
            b"\n",
            b"Authorization: Bearer ",
            b": ",
            b"\xff\xfe",
            b"\r\n\r\n",
        ];
        let good = b"GET /debug/pprof/profile?seconds=2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let rules = Rules {
            token: Some(b"t"),
            max_seconds: 60,
        };
        for round in 0..20_000 {
            let input: Vec<u8> = match round % 3 {
                0 => (0..next() % 300).map(|_| next() as u8).collect(),
                1 => (0..next() % 12)
                    .flat_map(|_| pieces[(next() % 16) as usize].iter().copied())
                    .collect(),
                _ => {
                    let mut g = good.to_vec();
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % g.len();
                        g[at] = next() as u8;
                    }
                    g
                }
            };
            if let Parsed::Complete(head) = parse(&input) {
                let _ = route(&head, &RULES);
                let _ = route(&head, &rules);
            }
        }
    }

    #[test]
    fn queries_decode_as_go_decodes_them() {
        assert_eq!(form_value("a=1&b=2", "b").as_deref(), Some("2"));
        assert_eq!(form_value("b=1&b=2", "b").as_deref(), Some("1"));
        assert_eq!(form_value("b", "b").as_deref(), Some(""));
        assert_eq!(form_value("a+b=c+d", "a b").as_deref(), Some("c d"));
        assert_eq!(form_value("%62=%31", "b").as_deref(), Some("1"));
        assert_eq!(form_value("b=1;c=2", "b"), None);
        assert_eq!(form_value("b=%g1&b=3", "b").as_deref(), Some("3"));
        assert_eq!(form_value("", "b"), None);
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%é1", false), None);
        assert_eq!(percent_decode("%+1", false), None);
        assert_eq!(percent_decode("%4a%4A", false).unwrap(), b"JJ");
        assert_eq!(percent_decode("a+b", false).unwrap(), b"a+b");
    }
}
