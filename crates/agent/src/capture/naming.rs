//! Capture file names: how a capture is named on disk, and how the agent
//! recognizes its own files again (for retention, the lifetime cap, the
//! sequence counter, and cleaning up after a crash).
//!
//! A capture is `<service>.<kind>.<YYYYMMDDTHHMMSSZ>.<pid>.<seq>.<trigger>.pb.gz`,
//! for example `api.heap.20240229T235959Z.4242.0.signal.pb.gz`: sorted by
//! name, one service's files of one kind list chronologically, and the name
//! alone says what, when, who and why. The timestamp is UTC.
//!
//! While it is being written, a capture lives under
//! `.<final name>.tmp.<nonce>`: hidden (dot first), in the same directory (so
//! the final rename is atomic), and recognizably ours, so a temp file left by
//! a crash can be found and removed.
//!
//! Service names may contain dots (`billing.api`), so names are parsed from
//! the right, where every field has a fixed shape.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firewatch_profile::time::UtcTime;

use super::{Kind, Trigger};

/// The suffix of every capture file: gzip-compressed pprof.
pub const EXTENSION: &str = ".pb.gz";

/// Separates the final name from the nonce in a temporary name.
const TEMP_MARKER: &str = ".tmp.";

/// Longest service name kept in file names, in bytes. With the other fields
/// and the temp-file decoration a name then stays far below the usual
/// 255-byte limit on a file name.
pub const MAX_SERVICE_LEN: usize = 128;

/// Used when the service name is empty after sanitizing.
const FALLBACK_SERVICE: &str = "service";

/// Makes a service name safe as the first field of a file name.
///
/// `/` (a path separator), whitespace and control characters become `_`; a
/// leading `.` becomes `_` too, so a capture is never a hidden file (hidden
/// names are how temp files are told apart) and never `.` or `..`. The
/// result is cut to [`MAX_SERVICE_LEN`] bytes on a character boundary; an
/// empty result becomes `service`. Sanitizing is idempotent.
pub fn sanitize_service(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_SERVICE_LEN));
    for (i, c) in name.chars().enumerate() {
        let c = if c == '/' || c.is_whitespace() || c.is_control() || (i == 0 && c == '.') {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_SERVICE_LEN {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str(FALLBACK_SERVICE);
    }
    out
}

/// The parts of a capture's file name.
///
/// [`parse`](Self::parse) returns the same type; a parsed `time` has whole
/// seconds, as the name does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureName {
    /// The service name; sanitized when the name is formatted.
    pub service: String,
    pub kind: Kind,
    /// When the capture was taken (formatted in UTC, to the second).
    pub time: SystemTime,
    pub pid: u32,
    /// Per-process sequence number: makes names unique within a second.
    pub seq: u64,
    pub trigger: Trigger,
}

impl CaptureName {
    /// The final file name, e.g. `api.cpu.20240101T000000Z.42.0.signal.pb.gz`.
    pub fn file_name(&self) -> String {
        format!(
            "{}.{}.{}.{}.{}.{}{}",
            sanitize_service(&self.service),
            self.kind.as_str(),
            format_timestamp(self.time),
            self.pid,
            self.seq,
            self.trigger.as_str(),
            EXTENSION
        )
    }

    /// The temporary name the capture is written under before the rename:
    /// `.<final name>.tmp.<nonce in hex>`.
    pub fn temp_file_name(&self, nonce: u64) -> String {
        format!(".{}{TEMP_MARKER}{nonce:x}", self.file_name())
    }

    /// Recognizes a final capture name; `None` for anything else (including
    /// our temp files).
    pub fn parse(file_name: &str) -> Option<CaptureName> {
        let stem = file_name.strip_suffix(EXTENSION)?;
        // From the right: trigger, seq, pid, timestamp, kind; the rest
        // (which may contain dots) is the service.
        let mut fields = stem.rsplitn(6, '.');
        let trigger = Trigger::from_name(fields.next()?)?;
        let seq = parse_decimal(fields.next()?)?;
        let pid = u32::try_from(parse_decimal(fields.next()?)?).ok()?;
        let time = parse_timestamp(fields.next()?)?;
        let kind = Kind::from_name(fields.next()?)?;
        let service = fields.next()?;
        if service.is_empty() {
            return None;
        }
        Some(CaptureName {
            service: service.to_owned(),
            kind,
            time,
            pid,
            seq,
            trigger,
        })
    }

    /// Recognizes a temporary name made by
    /// [`temp_file_name`](Self::temp_file_name) and returns the final name it
    /// was meant for.
    pub fn parse_temp(file_name: &str) -> Option<CaptureName> {
        let rest = file_name.strip_prefix('.')?;
        let (final_name, nonce) = rest.rsplit_once(TEMP_MARKER)?;
        if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        CaptureName::parse(final_name)
    }
}

/// Digits only: `str::parse` would also take a leading `+`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The last second a four-digit year can express: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECS: u64 = 253_402_300_799;

/// Formats a time as `YYYYMMDDTHHMMSSZ` (UTC, basic ISO 8601), truncated to
/// the second. Times before 1970 are written as the epoch and times after
/// year 9999 as its last second, so the field always has its fixed width and
/// parses back.
pub fn format_timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_TIMESTAMP_SECS);
    // `secs` fits easily: MAX_TIMESTAMP_SECS < 2^38.
    let t = UtcTime::from_unix_seconds(secs as i64);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The inverse of [`format_timestamp`]: `None` unless `s` is exactly
/// `YYYYMMDDTHHMMSSZ` with a valid date and time, not before 1970.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &b[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    };
    let t = UtcTime {
        year: i64::from(num(0..4)?),
        month: num(4..6)?,
        day: num(6..8)?,
        hour: num(9..11)?,
        minute: num(11..13)?,
        second: num(13..15)?,
    };
    let secs = u64::try_from(t.to_unix_seconds()?).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn name(service: &str) -> CaptureName {
        CaptureName {
            service: service.to_owned(),
            kind: Kind::Heap,
            time: at(1_709_251_199), // 2024-02-29T23:59:59Z
            pid: 4242,
            seq: 7,
            trigger: Trigger::HeapThreshold,
        }
    }

    #[test]
    fn formats_known_timestamps() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(format_timestamp(at(951_782_400)), "20000229T000000Z");
        assert_eq!(format_timestamp(at(1_709_251_199)), "20240229T235959Z");
        assert_eq!(format_timestamp(at(1_709_251_200)), "20240301T000000Z");
        assert_eq!(format_timestamp(at(4_107_542_400)), "21000301T000000Z");
        // Sub-second parts are truncated.
        assert_eq!(
            format_timestamp(at(86_399) + Duration::from_millis(999)),
            "19700101T235959Z"
        );
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        assert_eq!(
            format_timestamp(UNIX_EPOCH - Duration::from_secs(1)),
            "19700101T000000Z"
        );
        assert_eq!(format_timestamp(at(MAX_TIMESTAMP_SECS)), "99991231T235959Z");
        assert_eq!(
            format_timestamp(at(MAX_TIMESTAMP_SECS + 10)),
            "99991231T235959Z"
        );
    }

    #[test]
    fn timestamps_round_trip() {
        for secs in [
            0,
            59,
            3600,
            951_782_400,
            1_709_251_199,
            4_102_444_800,
            MAX_TIMESTAMP_SECS,
        ] {
            let s = format_timestamp(at(secs));
            assert_eq!(parse_timestamp(&s), Some(at(secs)), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for s in [
            "",
            "20240229T235959",
            "20240229 235959Z",
            "20240229T235959z",
            "2024022XT235959Z",
            "20240230T000000Z", // no Feb 30
            "20230229T000000Z", // 2023 is not a leap year
            "21000229T000000Z", // 2100 is not a leap year
            "20241301T000000Z",
            "20240001T000000Z",
            "20240100T000000Z",
            "20240101T240000Z",
            "20240101T006000Z",
            "20240101T000060Z",
            "19691231T235959Z",
            "+2024010T000000Z",
            "202401011T00000Z",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s:?}");
        }
        assert!(parse_timestamp("20000229T000000Z").is_some());
    }

    #[test]
    fn formats_the_documented_name() {
        assert_eq!(
            name("api").file_name(),
            "api.heap.20240229T235959Z.4242.7.heap-threshold.pb.gz"
        );
        let n = CaptureName {
            kind: Kind::Cpu,
            trigger: Trigger::Signal,
            seq: 0,
            ..name("api")
        };
        assert_eq!(
            n.file_name(),
            "api.cpu.20240229T235959Z.4242.0.signal.pb.gz"
        );
    }

    #[test]
    fn names_round_trip_for_every_kind_and_trigger() {
        for kind in Kind::ALL {
            for trigger in Trigger::ALL {
                let n = CaptureName {
                    kind,
                    trigger,
                    ..name("api")
                };
                assert_eq!(CaptureName::parse(&n.file_name()), Some(n));
            }
        }
    }

    #[test]
    fn service_names_with_dots_parse_from_the_right() {
        for service in [
            "billing.api",
            "a.cpu.b",
            "x.heap.20240229T235959Z.1.2.signal",
            "v1.2.3",
        ] {
            let n = name(service);
            let parsed = CaptureName::parse(&n.file_name()).expect(service);
            assert_eq!(parsed.service, service);
            assert_eq!(parsed, n);
        }
    }

    #[test]
    fn rejects_names_that_are_not_captures() {
        let good = name("api").file_name();
        assert!(CaptureName::parse(&good).is_some());
        for bad in [
            "",
            ".pb.gz",
            "api.heap.20240229T235959Z.4242.7.heap-threshold.pb",
            "api.heap.20240229T235959Z.4242.7.heap-threshold.pb.gz.bak",
            "api.heap.20240229T235959Z.4242.7.threshold.pb.gz",
            "api.mem.20240229T235959Z.4242.7.signal.pb.gz",
            "api.heap.2024-02-29T235959Z.4242.7.signal.pb.gz",
            "api.heap.20240229T235959Z.-1.7.signal.pb.gz",
            "api.heap.20240229T235959Z.+1.7.signal.pb.gz",
            "api.heap.20240229T235959Z.4242.x.signal.pb.gz",
            "api.heap.20240229T235959Z.4294967296.7.signal.pb.gz", // pid > u32
            "api.heap.20240229T235959Z.4242.18446744073709551616.signal.pb.gz",
            ".heap.20240229T235959Z.4242.7.signal.pb.gz", // empty service
            "heap.20240229T235959Z.4242.7.signal.pb.gz",  // no service at all
            "profile.pb.gz",
        ] {
            assert_eq!(CaptureName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn temp_names_are_hidden_and_recognized() {
        let n = name("billing.api");
        let tmp = n.temp_file_name(0xbeef);
        assert_eq!(tmp, format!(".{}.tmp.beef", n.file_name()));
        assert!(tmp.starts_with('.'));
        assert_eq!(CaptureName::parse_temp(&tmp), Some(n.clone()));
        // A temp name is not a capture, and a capture is not a temp name.
        assert_eq!(CaptureName::parse(&tmp), None);
        assert_eq!(CaptureName::parse_temp(&n.file_name()), None);
        for bad in [
            format!("{}.tmp.beef", n.file_name()),   // not hidden
            format!(".{}.tmp.", n.file_name()),      // no nonce
            format!(".{}.tmp.xyz", n.file_name()),   // not hex
            format!(".{}.temp.beef", n.file_name()), // other marker
            ".x.tmp.1".to_owned(),
        ] {
            assert_eq!(CaptureName::parse_temp(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sanitizes_service_names() {
        assert_eq!(sanitize_service("api"), "api");
        assert_eq!(sanitize_service("billing.api-v2"), "billing.api-v2");
        assert_eq!(sanitize_service("a/b c\td\ne\u{0}f\u{7f}"), "a_b_c_d_e_f_");
        assert_eq!(sanitize_service("../etc/passwd"), "_._etc_passwd");
        assert_eq!(sanitize_service("."), "_");
        assert_eq!(sanitize_service(".."), "_.");
        assert_eq!(sanitize_service(".hidden"), "_hidden");
        assert_eq!(sanitize_service("ünïcödé"), "ünïcödé");
        assert_eq!(sanitize_service(""), "service");
        assert_eq!(sanitize_service("\u{a0}"), "_"); // non-ASCII whitespace
    }

    #[test]
    fn long_service_names_are_cut_on_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let s = sanitize_service(&long);
        assert!(s.len() <= MAX_SERVICE_LEN);
        assert_eq!(s, "é".repeat(MAX_SERVICE_LEN / 2));
        let ascii = "a".repeat(1000);
        assert_eq!(sanitize_service(&ascii).len(), MAX_SERVICE_LEN);
        // The longest possible temp name still fits in 255 bytes.
        let n = CaptureName {
            service: ascii,
            pid: u32::MAX,
            seq: u64::MAX,
            trigger: Trigger::HeapThreshold,
            ..name("x")
        };
        assert!(n.temp_file_name(u64::MAX).len() <= 255);
    }

    #[test]
    fn sanitizing_is_idempotent_and_formatting_applies_it() {
        for raw in ["a/b", " x ", ".hidden", "", "ok.name", "\u{1b}[31m"] {
            let once = sanitize_service(raw);
            assert_eq!(sanitize_service(&once), once, "{raw:?}");
            let n = name(raw);
            let parsed = CaptureName::parse(&n.file_name()).expect(raw);
            assert_eq!(parsed.service, once);
        }
    }
}
