//! Agent settings, from one table ([`SETTINGS`]): each row names the
//! builder method, the `FIREWATCH_*` environment variable, the default (as
//! the text the variable would take), what the values mean, how text is
//! parsed and what is valid. [`Config::default`] is made by parsing the
//! defaults, the environment overrides go through the same parsers, and
//! `docs/agent.md`'s options table is checked against the table by a test.
//!
//! Invalid values are refused, never clamped: a builder value makes
//! `start()` fail naming the setting (the code is wrong); an environment
//! value is logged loudly and ignored, the rest apply (an operator's typo
//! must not keep a service from starting).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use firewatch_profile::units::parse_byte_size;

use crate::{Error, Result};

/// Everything the agent needs to know. Built by [`crate::AgentBuilder`];
/// see `docs/agent.md` ("Options") for each field's meaning and default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `false` turns the agent into a no-op.
    pub enabled: bool,
    /// Where captures go.
    pub output_dir: PathBuf,
    /// The first part of file names.
    pub service_name: String,
    /// Length of a triggered CPU profile.
    pub cpu_duration: Duration,
    /// Samples per CPU-second per thread.
    pub cpu_hz: u32,
    /// Heap in use (from the sampling allocator) that triggers a heap snapshot.
    pub heap_threshold_bytes: Option<u64>,
    /// Further growth above the level a heap or RSS trigger last fired at
    /// that fires it again (`None`: a quarter of the heap threshold; for
    /// RSS, 5% of the memory limit).
    pub heap_step_bytes: Option<u64>,
    /// RSS as a percentage of the memory limit that triggers a heap snapshot.
    pub rss_threshold_percent: Option<u32>,
    /// Process CPU, in % of one core, that triggers a CPU profile.
    pub cpu_threshold_percent: Option<u32>,
    /// Consecutive checks above the CPU threshold before it fires.
    pub cpu_threshold_checks: u32,
    /// How often the CPU threshold is checked.
    pub check_interval: Duration,
    /// How far back CPU captures reach, before they begin (`None`: not at
    /// all, and no sampler runs between captures); see `docs/agent.md`,
    /// "Look-back".
    pub lookback: Option<Duration>,
    /// Samples per CPU-second per thread between captures, with `lookback`.
    pub lookback_hz: u32,
    /// Most bytes the look-back windows may hold (estimated).
    pub lookback_memory_limit: u64,
    /// Minimum gap between automatic captures of one kind.
    pub min_interval: Duration,
    /// Automatic captures of one kind allowed per hour.
    pub max_per_hour: u32,
    /// Automatic captures of one kind ever, counting files already on disk.
    pub lifetime_cap: Option<u32>,
    /// Retention: capture files kept.
    pub max_files: Option<usize>,
    /// Retention: bytes of captures kept.
    pub max_total_bytes: Option<u64>,
    /// Retention: captures older than this are deleted.
    pub max_age: Option<Duration>,
    /// Skip captures when the output filesystem is fuller than this.
    pub disk_usage_threshold_percent: u32,
    /// The signal that requests captures (`None`: no signal trigger).
    pub signal: Option<i32>,
    /// Ask glibc to return freed memory to the system after each capture.
    pub malloc_trim: bool,
    /// Name frames in the process; off: addresses, mappings and build IDs
    /// only, for `firewatch analyze --symbols`.
    pub symbolize: bool,
    /// What symbolizing a capture may add to RSS (`None`: no limit); see
    /// `docs/agent.md`, "Memory per capture", for what is left out to keep
    /// within it.
    pub capture_memory_limit: Option<u64>,
    /// Where the `/debug/pprof/` endpoint listens (`None`: no endpoint,
    /// no socket); see `docs/agent.md`, "Serving /debug/pprof".
    pub http_addr: Option<SocketAddr>,
    /// The bearer token every endpoint request must carry. Not readable
    /// back, and printed as `<redacted>`, so a logged `Config` does not
    /// leak it.
    pub(crate) http_token: Option<Secret>,
    /// Where the token was read from, at `start()`, when it came from a
    /// file (`http_token_file`).
    pub http_token_file: Option<PathBuf>,
    /// Serve a non-loopback `http_addr` without a token.
    pub http_allow_unauthenticated: bool,
    /// Longest CPU profile, in seconds, an endpoint request may ask for.
    pub http_max_seconds: u32,
}

/// A value that must not appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A setting's default.
pub(crate) enum Default {
    /// Text parsed like the environment variable's value.
    Text(&'static str),
    /// Computed at start (shown in the docs as the text).
    Computed(
        #[cfg_attr(not(test), allow(dead_code))] &'static str,
        fn(&mut Config),
    ),
}

/// One row of the settings table.
pub(crate) struct Setting {
    /// The builder method, as the docs show it: `cpu_hz(n)`.
    pub method: &'static str,
    pub env: &'static str,
    /// Forms the environment variable takes, for the docs: `` `10s`, `2m` ``.
    #[cfg_attr(not(test), allow(dead_code))]
    pub forms: &'static str,
    pub default: Default,
    #[cfg_attr(not(test), allow(dead_code))]
    pub meaning: &'static str,
    /// Parses the environment variable's text into the field.
    set: fn(&mut Config, &str) -> std::result::Result<(), String>,
    /// Whether the field's value is valid (what a builder value must meet).
    check: fn(&Config) -> std::result::Result<(), String>,
    /// The field's current value, for messages.
    show: fn(&Config) -> String,
}

impl Setting {
    /// The builder method's name without its argument.
    pub fn name(&self) -> &'static str {
        self.method.split('(').next().unwrap_or(self.method)
    }
}

/// Fewest checks of the CPU threshold per second: below this, a check
/// every 100 ms would cost more than it tells.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest triggered CPU profile: beyond, a trigger would hold the capture
/// pipeline for longer than an incident needs.
const MAX_CPU_DURATION: Duration = Duration::from_secs(3600);
/// Longest bearer token: it must fit a request head (8 KiB) with room for
/// the rest.
const MAX_TOKEN_BYTES: usize = 1024;
/// Shortest look-back: one window of the history.
const MIN_LOOKBACK: Duration = Duration::from_secs(1);
/// Longest look-back: an incident's onset is seconds to minutes before its
/// trigger, and at 19 Hz ten minutes of a busy service's distinct stacks
/// outgrow any sensible memory limit anyway.
const MAX_LOOKBACK: Duration = Duration::from_secs(600);
/// Bounds of `lookback_memory_limit`: below 64 KiB not even a second of a
/// busy process's stacks fits; above 1 GiB is a mistake in the unit.
const LOOKBACK_MEMORY_RANGE: (u64, u64) = (64 << 10, 1 << 30);

fn ok() -> std::result::Result<(), String> {
    Ok(())
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    v: T,
    lo: T,
    hi: T,
) -> std::result::Result<(), String> {
    if v < lo || v > hi {
        Err(format!("must be between {lo} and {hi}"))
    } else {
        Ok(())
    }
}

fn optional<T>(
    v: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> std::result::Result<Option<T>, String> {
    if is_off(v) {
        return Ok(None);
    }
    parse(v)
        .map(Some)
        .ok_or_else(|| format!("expected {what} or off"))
}

fn is_off(v: &str) -> bool {
    ["off", "none"].contains(&v.to_ascii_lowercase().as_str())
}

fn number<T: TryFrom<u64>>(v: &str) -> std::result::Result<T, String> {
    parse_byte_size(v)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| "expected a number".to_string())
}

fn duration(v: &str) -> std::result::Result<Duration, String> {
    parse_duration(v).ok_or_else(|| "expected a duration like 500ms, 30s, 10m, 2h, 1d".into())
}

fn boolean(v: &str) -> std::result::Result<bool, String> {
    parse_bool(v).ok_or_else(|| "expected 1/0, true/false, on/off".into())
}

fn show_duration(d: Duration) -> String {
    format!("{d:?}")
}

fn show_optional<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "off".into(), |v| v.to_string())
}

/// Every setting, in the order the docs list them.
pub(crate) const SETTINGS: &[Setting] = &[
    Setting {
        method: "output_dir(p)",
        env: "FIREWATCH_DIR",
        forms: "",
        default: Default::Computed("`$TMPDIR/firewatch-<uid>`", |c| {
            c.output_dir = default_output_dir()
        }),
        meaning: "where files go; created `0700` if missing. If it cannot be made or used, \
                  `start()` still succeeds: the log says so and each capture is skipped until \
                  the directory works",
        set: |c, v| {
            c.output_dir = PathBuf::from(v);
            ok()
        },
        check: |c| {
            if c.output_dir.as_os_str().is_empty() {
                Err("must not be empty".into())
            } else {
                ok()
            }
        },
        show: |c| c.output_dir.display().to_string(),
    },
    Setting {
        method: "service_name(s)",
        env: "FIREWATCH_SERVICE",
        forms: "",
        default: Default::Computed("executable name", |c| {
            c.service_name = default_service_name()
        }),
        meaning: "first part of file names",
        set: |c, v| {
            c.service_name = v.to_string();
            ok()
        },
        check: |c| {
            if c.service_name.trim().is_empty() {
                Err("must not be empty".into())
            } else {
                ok()
            }
        },
        show: |c| c.service_name.clone(),
    },
    Setting {
        method: "enabled(b)",
        env: "FIREWATCH_ENABLED",
        forms: "`0`/`1`; `FIREWATCH_DISABLE=1` also turns it off",
        default: Default::Text("on"),
        meaning: "off makes the agent a no-op",
        set: |c, v| {
            c.enabled = boolean(v)?;
            ok()
        },
        check: |_| ok(),
        show: |c| c.enabled.to_string(),
    },
    Setting {
        method: "cpu_duration(d)",
        env: "FIREWATCH_CPU_DURATION",
        forms: "`10s`, `2m`",
        default: Default::Text("10s"),
        meaning: "length of a triggered CPU profile (up to 1 h)",
        set: |c, v| {
            c.cpu_duration = duration(v)?;
            ok()
        },
        check: |c| {
            if c.cpu_duration.is_zero() || c.cpu_duration > MAX_CPU_DURATION {
                Err("must be more than 0 and at most 1h".into())
            } else {
                ok()
            }
        },
        show: |c| show_duration(c.cpu_duration),
    },
    Setting {
        method: "cpu_hz(n)",
        env: "FIREWATCH_CPU_HZ",
        forms: "",
        default: Default::Text("100"),
        meaning: "samples per CPU-second per thread (1–4000)",
        set: |c, v| {
            c.cpu_hz = number(v)?;
            ok()
        },
        check: |c| in_range(c.cpu_hz, 1, crate::cpu::MAX_HZ),
        show: |c| c.cpu_hz.to_string(),
    },
    Setting {
        method: "cpu_threshold_percent(p / None)",
        env: "FIREWATCH_CPU_THRESHOLD_PERCENT",
        forms: "`off`",
        default: Default::Text("80"),
        meaning: "process CPU in % of one core that triggers a profile",
        set: |c, v| {
            c.cpu_threshold_percent = optional(v, |v| number(v).ok(), "a number")?;
            ok()
        },
        check: |c| {
            c.cpu_threshold_percent
                .map_or(Ok(()), |p| in_range(p, 1, 100_000))
        },
        show: |c| show_optional(c.cpu_threshold_percent),
    },
    Setting {
        method: "cpu_threshold_checks(n)",
        env: "FIREWATCH_CPU_THRESHOLD_CHECKS",
        forms: "",
        default: Default::Text("2"),
        meaning: "consecutive checks above the CPU threshold needed",
        set: |c, v| {
            c.cpu_threshold_checks = number(v)?;
            ok()
        },
        check: |c| in_range(c.cpu_threshold_checks, 1, 1000),
        show: |c| c.cpu_threshold_checks.to_string(),
    },
    Setting {
        method: "check_interval(d)",
        env: "FIREWATCH_CHECK_INTERVAL",
        forms: "`5s`",
        default: Default::Text("5s"),
        meaning: "how often the CPU threshold is checked (at least 100 ms; memory thresholds \
                  are checked every 100 ms)",
        set: |c, v| {
            c.check_interval = duration(v)?;
            ok()
        },
        check: |c| {
            if c.check_interval < MIN_CHECK_INTERVAL {
                Err("must be at least 100ms".into())
            } else {
                ok()
            }
        },
        show: |c| show_duration(c.check_interval),
    },
    Setting {
        method: "lookback(d / None)",
        env: "FIREWATCH_LOOKBACK",
        forms: "`30s`, `off`",
        default: Default::Text("off"),
        meaning: "CPU profiles (signal, threshold, `capture_cpu`; the endpoint with \
                  `lookback=1`) also cover the `d` before they began: the agent's CPU sampler \
                  runs at `lookback_hz` for the agent's life (not only while a profile runs) and \
                  keeps the last `d` in one-second windows (1 s to 10 min; `30s` with the CPU \
                  threshold recommended). It is the process's one CPU sampler: \
                  `CpuProfiler::start` then fails with `Error::Busy`. See \
                  [Look-back](#look-back) for what it costs",
        set: |c, v| {
            c.lookback = optional(v, parse_duration, "a duration")?;
            ok()
        },
        check: |c| match c.lookback {
            Some(d) if !(MIN_LOOKBACK..=MAX_LOOKBACK).contains(&d) => {
                Err("must be between 1s and 10m, or off".into())
            }
            _ => ok(),
        },
        show: |c| c.lookback.map_or_else(|| "off".into(), show_duration),
    },
    Setting {
        method: "lookback_hz(n)",
        env: "FIREWATCH_LOOKBACK_HZ",
        forms: "",
        default: Default::Text("19"),
        meaning: "samples per CPU-second per thread between captures, with `lookback` (1–4000; \
                  captures sample at `cpu_hz`). 19, as Parca's agent: an odd rate that no \
                  periodic work of the service keeps in step with",
        set: |c, v| {
            c.lookback_hz = number(v)?;
            ok()
        },
        check: |c| in_range(c.lookback_hz, 1, crate::cpu::MAX_HZ),
        show: |c| c.lookback_hz.to_string(),
    },
    Setting {
        method: "lookback_memory_limit(n)",
        env: "FIREWATCH_LOOKBACK_MEMORY_LIMIT",
        forms: "`4M`, `16M`",
        default: Default::Text("4M"),
        meaning: "most the look-back windows may hold (64 KiB–1 GiB, estimated from their \
                  stacks); over it the oldest seconds are dropped and the profile says how many. \
                  4 MiB holds 60 s of 10,000 distinct 32-frame stacks with room to spare",
        set: |c, v| {
            c.lookback_memory_limit = parse_byte_size(v).ok_or("expected a size")?;
            ok()
        },
        check: |c| {
            let (lo, hi) = LOOKBACK_MEMORY_RANGE;
            if (lo..=hi).contains(&c.lookback_memory_limit) {
                ok()
            } else {
                Err("must be between 64K and 1G".into())
            }
        },
        show: |c| c.lookback_memory_limit.to_string(),
    },
    Setting {
        method: "min_interval(d)",
        env: "FIREWATCH_MIN_INTERVAL",
        forms: "`10m`",
        default: Default::Text("10m"),
        meaning: "minimum gap between automatic captures of one kind",
        set: |c, v| {
            c.min_interval = duration(v)?;
            ok()
        },
        check: |_| ok(),
        show: |c| show_duration(c.min_interval),
    },
    Setting {
        method: "max_per_hour(n)",
        env: "FIREWATCH_MAX_PER_HOUR",
        forms: "",
        default: Default::Text("4"),
        meaning: "automatic captures per kind per hour, a token bucket: after a quiet spell up \
                  to `n` more than the refill may come (`min_interval` apart), then one per \
                  `60/n` min; 0 turns automatic captures off",
        set: |c, v| {
            c.max_per_hour = number(v)?;
            ok()
        },
        check: |_| ok(),
        show: |c| c.max_per_hour.to_string(),
    },
    Setting {
        method: "lifetime_cap(n / None)",
        env: "FIREWATCH_LIFETIME_CAP",
        forms: "`off`",
        default: Default::Text("20"),
        meaning: "automatic captures per kind ever, counting files already on disk",
        set: |c, v| {
            c.lifetime_cap = optional(v, |v| number(v).ok(), "a number")?;
            ok()
        },
        check: |_| ok(),
        show: |c| show_optional(c.lifetime_cap),
    },
    Setting {
        method: "max_files(n)",
        env: "FIREWATCH_MAX_FILES",
        forms: "`off`",
        default: Default::Text("20"),
        meaning: "retention: files kept",
        set: |c, v| {
            c.max_files = optional(v, |v| number(v).ok(), "a number")?;
            ok()
        },
        check: |c| c.max_files.map_or(Ok(()), |n| in_range(n, 1, usize::MAX)),
        show: |c| show_optional(c.max_files),
    },
    Setting {
        method: "max_total_bytes(n)",
        env: "FIREWATCH_MAX_BYTES",
        forms: "`512M`, `5G`, `off`",
        default: Default::Text("5G"),
        meaning: "retention: bytes kept",
        set: |c, v| {
            c.max_total_bytes = optional(v, parse_byte_size, "a size")?;
            ok()
        },
        check: |c| {
            c.max_total_bytes
                .map_or(Ok(()), |n| in_range(n, 1, u64::MAX))
        },
        show: |c| show_optional(c.max_total_bytes),
    },
    Setting {
        method: "max_age(d)",
        env: "FIREWATCH_MAX_AGE",
        forms: "`off`",
        default: Default::Text("24h"),
        meaning: "retention: older files are deleted",
        set: |c, v| {
            c.max_age = optional(v, parse_duration, "a duration")?;
            ok()
        },
        check: |_| ok(),
        show: |c| c.max_age.map_or_else(|| "off".into(), show_duration),
    },
    Setting {
        method: "disk_usage_threshold_percent(p)",
        env: "FIREWATCH_DISK_USAGE_THRESHOLD_PERCENT",
        forms: "",
        default: Default::Text("90"),
        meaning: "skip captures when the filesystem is fuller",
        set: |c, v| {
            c.disk_usage_threshold_percent = number(v)?;
            ok()
        },
        check: |c| in_range(c.disk_usage_threshold_percent, 1, 100),
        show: |c| c.disk_usage_threshold_percent.to_string(),
    },
    Setting {
        method: "signal(n / None)",
        env: "FIREWATCH_SIGNAL",
        forms: "`USR1`, `USR2`, a number, `off`",
        default: Default::Text("USR2"),
        meaning: "the capture signal",
        set: |c, v| {
            c.signal = parse_signal(v).ok_or("expected USR1, USR2, a number, or off")?;
            ok()
        },
        check: |c| match c.signal {
            Some(n) if !usable_signal(n) => {
                Err("must be a signal from 1 to 64 other than SIGPROF, SIGKILL and SIGSTOP".into())
            }
            _ => ok(),
        },
        show: |c| show_optional(c.signal),
    },
    Setting {
        method: "symbolize(b)",
        env: "FIREWATCH_SYMBOLIZE",
        forms: "",
        default: Default::Text("on"),
        meaning: "name frames in the process. `off`: captures hold addresses with their \
                  mappings and GNU build IDs only (no debug info read, no symbol memory in the \
                  service), named offline with `firewatch analyze --symbols BINARY` or \
                  `go tool pprof`; heap snapshots then keep the allocator's frames at their leaves",
        set: |c, v| {
            c.symbolize = boolean(v)?;
            ok()
        },
        check: |_| ok(),
        show: |c| c.symbolize.to_string(),
    },
    Setting {
        method: "capture_memory_limit(n / None)",
        env: "FIREWATCH_CAPTURE_MEMORY_LIMIT",
        forms: "`8M`, `64M`, `off`",
        default: Default::Text("8M"),
        meaning: "what symbolizing one capture may add to RSS. An object whose debug info would \
                  not fit is named from its symbol table only (no inlined frames, files or \
                  lines); one whose symbol table would not fit either keeps addresses and build \
                  IDs only, for offline symbolization. Each cut is said in the profile's \
                  comments and once in the log; every profile reports its RSS before and the \
                  highest seen. `off`: debug info for everything, tens of MiB per capture for a \
                  large binary",
        set: |c, v| {
            c.capture_memory_limit = optional(v, parse_byte_size, "a size")?;
            ok()
        },
        check: |c| {
            c.capture_memory_limit
                .map_or(Ok(()), |n| in_range(n, 1, u64::MAX))
        },
        show: |c| show_optional(c.capture_memory_limit),
    },
    Setting {
        method: "malloc_trim(b)",
        env: "FIREWATCH_MALLOC_TRIM",
        forms: "",
        default: Default::Text("off"),
        meaning: "after each capture, `malloc_trim(0)` returns freed heap to the system (RSS \
                  drops by what symbolization used); it locks every glibc arena while it walks \
                  them, so allocating threads of a large heap can stall: turn on where RSS \
                  matters more",
        set: |c, v| {
            c.malloc_trim = boolean(v)?;
            ok()
        },
        check: |_| ok(),
        show: |c| c.malloc_trim.to_string(),
    },
    Setting {
        method: "heap_threshold_bytes(n)",
        env: "FIREWATCH_HEAP_THRESHOLD",
        forms: "`2G`, `off`",
        default: Default::Text("off"),
        meaning: "heap snapshot when the sampling allocator's bytes in use reach `n`",
        set: |c, v| {
            c.heap_threshold_bytes = optional(v, parse_byte_size, "a size")?;
            ok()
        },
        check: |c| {
            c.heap_threshold_bytes
                .map_or(Ok(()), |n| in_range(n, 1, u64::MAX))
        },
        show: |c| show_optional(c.heap_threshold_bytes),
    },
    Setting {
        method: "rss_threshold_percent(p / None)",
        env: "FIREWATCH_RSS_THRESHOLD_PERCENT",
        forms: "`off`",
        default: Default::Text("90"),
        meaning: "heap snapshot when RSS reaches `p`% of the memory limit (cgroup v2 \
                  `memory.max`, cgroup v1 `memory.limit_in_bytes`, else `MemTotal`)",
        set: |c, v| {
            c.rss_threshold_percent = optional(v, |v| number(v).ok(), "a number")?;
            ok()
        },
        check: |c| {
            c.rss_threshold_percent
                .map_or(Ok(()), |p| in_range(p, 1, 100))
        },
        show: |c| show_optional(c.rss_threshold_percent),
    },
    Setting {
        method: "heap_step_bytes(n)",
        env: "FIREWATCH_HEAP_STEP",
        forms: "`512M`, `auto`",
        default: Default::Text("auto"),
        meaning: "growth above the last firing level that fires again (`auto`: ¼ of the heap \
                  threshold; 5% of the limit for RSS)",
        set: |c, v| {
            c.heap_step_bytes = if v.eq_ignore_ascii_case("auto") {
                None
            } else {
                Some(parse_byte_size(v).ok_or("expected a size or auto")?)
            };
            ok()
        },
        check: |c| {
            c.heap_step_bytes
                .map_or(Ok(()), |n| in_range(n, 1, u64::MAX))
        },
        show: |c| {
            c.heap_step_bytes
                .map_or_else(|| "auto".into(), |n| n.to_string())
        },
    },
    Setting {
        method: "http_addr(a / None)",
        env: "FIREWATCH_HTTP_ADDR",
        forms: "`127.0.0.1:6060`, `[::1]:0`, `off`",
        default: Default::Text("off"),
        meaning: "serve Go's `/debug/pprof/` paths (CPU profile, heap, allocs, cmdline) on this \
                  address, for `go tool pprof`, Grafana Alloy and Parca; port 0 picks a free \
                  port (logged). Off: no socket at all. A non-loopback address needs \
                  `http_token` or `http_allow_unauthenticated`. An address in use does not fail \
                  `start()`: it is logged and retried every 5 s",
        set: |c, v| {
            c.http_addr = optional(
                v,
                |v| v.parse::<SocketAddr>().ok(),
                "an address like 127.0.0.1:6060",
            )?;
            ok()
        },
        check: |_| ok(),
        show: |c| show_optional(c.http_addr),
    },
    Setting {
        method: "http_token(s)",
        env: TOKEN_VARIABLE,
        forms: "",
        default: Default::Computed("none", |c| c.http_token = None),
        meaning: "bearer token every endpoint request must carry (`Authorization: Bearer \
                  <token>`, else 401), on any address; 1–1024 visible ASCII characters; never \
                  logged",
        set: |c, v| {
            c.http_token = Some(Secret(v.to_string()));
            ok()
        },
        check: |c| match &c.http_token {
            Some(Secret(token)) => check_token(token),
            None => ok(),
        },
        show: |c| {
            if c.http_token.is_some() {
                "<redacted>".into()
            } else {
                "none".into()
            }
        },
    },
    Setting {
        method: "http_token_file(p)",
        env: TOKEN_FILE_VARIABLE,
        forms: "`/run/secrets/pprof-token`",
        default: Default::Computed("none", |c| c.http_token_file = None),
        meaning: "a file holding the bearer token, read once at `start()` (whitespace around \
                  it, such as a final newline, ignored): the token need not be in the \
                  environment, the command line or the code (a mounted secret). Not with \
                  `http_token` as well. A file that cannot be read, or whose token is invalid, \
                  fails `start()` from the builder, and from the environment is logged and \
                  ignored, as any invalid value",
        set: |c, v| {
            let path = PathBuf::from(v);
            c.http_token = Some(Secret(read_token_file(&path)?));
            c.http_token_file = Some(path);
            ok()
        },
        check: |_| ok(),
        show: |c| {
            c.http_token_file
                .as_ref()
                .map_or_else(|| "none".into(), |p| p.display().to_string())
        },
    },
    Setting {
        method: "http_allow_unauthenticated(b)",
        env: "FIREWATCH_HTTP_ALLOW_UNAUTHENTICATED",
        forms: "",
        default: Default::Text("off"),
        meaning: "serve a non-loopback `http_addr` without a token (a warning is logged): anyone \
                  who can reach the port can profile the process",
        set: |c, v| {
            c.http_allow_unauthenticated = boolean(v)?;
            ok()
        },
        check: |_| ok(),
        show: |c| c.http_allow_unauthenticated.to_string(),
    },
    Setting {
        method: "http_max_seconds(n)",
        env: "FIREWATCH_HTTP_MAX_SECONDS",
        forms: "",
        default: Default::Text("60"),
        meaning: "longest CPU profile or heap delta an endpoint request may ask for \
                  (`seconds`; more gets a 400), 1–3600. An endpoint CPU profile shares the \
                  agent's sampler with signal, threshold and `capture_cpu` profiles, which run \
                  beside it, but a second endpoint CPU profile is refused while it runs; 60 \
                  covers `go tool pprof`'s default 30 s and scrapers, which ask for their \
                  interval less a second",
        set: |c, v| {
            c.http_max_seconds = number(v)?;
            ok()
        },
        check: |c| in_range(c.http_max_seconds, 1, MAX_CPU_DURATION.as_secs() as u32),
        show: |c| c.http_max_seconds.to_string(),
    },
];

impl std::default::Default for Config {
    /// Every setting at its default, parsed from the table.
    fn default() -> Config {
        let mut config = Config {
            enabled: true,
            output_dir: PathBuf::new(),
            service_name: String::new(),
            cpu_duration: Duration::ZERO,
            cpu_hz: 0,
            heap_threshold_bytes: None,
            heap_step_bytes: None,
            rss_threshold_percent: None,
            cpu_threshold_percent: None,
            cpu_threshold_checks: 0,
            check_interval: Duration::ZERO,
            lookback: None,
            lookback_hz: 0,
            lookback_memory_limit: 0,
            min_interval: Duration::ZERO,
            max_per_hour: 0,
            lifetime_cap: None,
            max_files: None,
            max_total_bytes: None,
            max_age: None,
            disk_usage_threshold_percent: 0,
            signal: None,
            malloc_trim: false,
            capture_memory_limit: None,
            http_addr: None,
            http_token: None,
            http_token_file: None,
            http_allow_unauthenticated: false,
            symbolize: true,
            http_max_seconds: 0,
        };
        for setting in SETTINGS {
            match setting.default {
                // Checked for every row by `defaults_parse_and_are_valid`.
                Default::Text(text) => {
                    let _ = (setting.set)(&mut config, text);
                }
                Default::Computed(_, make) => make(&mut config),
            }
        }
        config
    }
}

/// `$TMPDIR/firewatch-<uid>`: per user, so a second user's service on the
/// same host does not find the first one's `0700` directory in its way.
fn default_output_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("firewatch-{uid}"))
}

/// The executable's file name, else "service".
fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "service".into())
}

impl Config {
    /// Checks every setting, then the endpoint's exposure (a non-loopback
    /// `http_addr` needs a token or `http_allow_unauthenticated`); the first
    /// invalid one is returned, named by its builder method.
    pub fn validate(&self) -> Result<()> {
        self.validate_each()?;
        self.endpoint_exposure()
            .map_err(|reason| Error::InvalidSetting {
                setting: "http_addr",
                value: show_optional(self.http_addr),
                reason,
            })
    }

    /// Reads the builder's `http_token_file` into the token (once, at
    /// `start()`); an error names the setting and the file.
    pub(crate) fn read_token_file(&mut self) -> Result<()> {
        let Some(path) = &self.http_token_file else {
            return Ok(());
        };
        let error = |reason| Error::InvalidSetting {
            setting: "http_token_file",
            value: path.display().to_string(),
            reason,
        };
        if self.http_token.is_some() {
            return Err(error(
                "http_token is set too: set one of them (the token, or the file)".into(),
            ));
        }
        self.http_token = Some(Secret(read_token_file(path).map_err(error)?));
        Ok(())
    }

    /// Each setting on its own. The builder's values are checked so before
    /// the environment applies: the endpoint's token often comes from there.
    pub(crate) fn validate_each(&self) -> Result<()> {
        for setting in SETTINGS {
            (setting.check)(self).map_err(|reason| Error::InvalidSetting {
                setting: setting.name(),
                value: (setting.show)(self),
                reason,
            })?;
        }
        Ok(())
    }

    /// Refuses to serve profiles to the network without a token unless told
    /// to: a profile shows the code, the command line can hold secrets, and
    /// every CPU profile request costs the service CPU.
    fn endpoint_exposure(&self) -> std::result::Result<(), String> {
        match self.http_addr {
            Some(addr)
                if !is_loopback(&addr)
                    && self.http_token.is_none()
                    && !self.http_allow_unauthenticated =>
            {
                Err(
                    "a non-loopback address serves profiles to anyone who can reach it: set \
                     http_token (FIREWATCH_HTTP_TOKEN), or http_allow_unauthenticated(true) to \
                     mean it"
                        .into(),
                )
            }
            _ => Ok(()),
        }
    }

    /// Applies `FIREWATCH_*` overrides read through `var` (the process
    /// environment in production, a map in tests). A value that does not
    /// parse or is not valid is logged as an error and ignored; the others
    /// apply. Returns the variables ignored.
    pub(crate) fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Vec<Error> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let before = self.clone();
        let mut ignored = Vec::new();
        let mut apply = |config: &mut Config, setting: &Setting, name: &'static str, v: &str| {
            let mut trial = config.clone();
            match (setting.set)(&mut trial, v).and_then(|()| (setting.check)(&trial)) {
                Ok(()) => *config = trial,
                Err(reason) => {
                    let e = Error::InvalidSetting {
                        setting: name,
                        value: if name == TOKEN_VARIABLE {
                            "<redacted>".into()
                        } else {
                            v.to_string()
                        },
                        reason,
                    };
                    log::error!("firewatch: {e}; ignored, the other settings apply");
                    ignored.push(e);
                }
            }
        };
        for setting in SETTINGS {
            let Some(v) = get(setting.env) else { continue };
            if setting.env == TOKEN_FILE_VARIABLE && get(TOKEN_VARIABLE).is_some() {
                // Which one was meant is unknown: the token set directly.
                continue;
            }
            apply(self, setting, setting.env, &v);
        }
        if let (Some(path), Some(_)) = (get(TOKEN_FILE_VARIABLE), get(TOKEN_VARIABLE)) {
            let e = Error::InvalidSetting {
                setting: TOKEN_FILE_VARIABLE,
                value: path,
                reason: format!("{TOKEN_VARIABLE} is set too: set one of them"),
            };
            log::error!("firewatch: {e}; ignored, the other settings apply");
            ignored.push(e);
        }
        // A shorthand kept for operators: FIREWATCH_DISABLE=1.
        if let Some(v) = get("FIREWATCH_DISABLE") {
            match parse_bool(&v) {
                Some(off) => self.enabled &= !off,
                None => {
                    let e = Error::InvalidSetting {
                        setting: "FIREWATCH_DISABLE",
                        value: v,
                        reason: "expected 1/0, true/false, on/off".into(),
                    };
                    log::error!("firewatch: {e}; ignored, the other settings apply");
                    ignored.push(e);
                }
            }
        }
        // Each value passed its own check; together, the environment must
        // not open the endpoint to the network without a token (a builder
        // value that does fails `start()` instead: the code is wrong).
        if before.endpoint_exposure().is_ok() {
            if let Err(reason) = self.endpoint_exposure() {
                let (setting, value) = [
                    "FIREWATCH_HTTP_ADDR",
                    "FIREWATCH_HTTP_ALLOW_UNAUTHENTICATED",
                ]
                .into_iter()
                .find_map(|name| get(name).map(|v| (name, v)))
                .unwrap_or(("FIREWATCH_HTTP_ADDR", show_optional(self.http_addr)));
                self.http_addr = before.http_addr;
                self.http_allow_unauthenticated = before.http_allow_unauthenticated;
                let e = Error::InvalidSetting {
                    setting,
                    value,
                    reason,
                };
                log::error!("firewatch: {e}; ignored, the other settings apply");
                ignored.push(e);
            }
        }
        ignored
    }
}

/// The options table of `docs/agent.md`, made from [`SETTINGS`].
#[cfg(test)]
fn docs_table() -> String {
    let mut out =
        String::from("| builder | environment | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let env = if s.forms.is_empty() {
            format!("`{}`", s.env)
        } else {
            format!("`{}` ({})", s.env, s.forms)
        };
        let default = match s.default {
            Default::Text(t) => format!("`{t}`"),
            Default::Computed(shown, _) => shown.to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {env} | {default} | {} |\n",
            s.method, s.meaning
        ));
    }
    out
}

/// The variable holding the endpoint's token: its value is never shown.
const TOKEN_VARIABLE: &str = "FIREWATCH_HTTP_TOKEN";
/// The variable naming a file that holds the endpoint's token.
const TOKEN_FILE_VARIABLE: &str = "FIREWATCH_HTTP_TOKEN_FILE";

/// Whether `token` can be a bearer token here (it is never shown).
fn check_token(token: &str) -> std::result::Result<(), String> {
    if token.is_empty()
        || token.len() > MAX_TOKEN_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        Err("must be 1 to 1024 visible ASCII characters (no spaces)".into())
    } else {
        Ok(())
    }
}

/// The token in `path`, without the whitespace around it; an error names
/// the file, never its content. At most a few KiB are read: a token is at
/// most 1 KiB, and a wrong path must not read a large file.
fn read_token_file(path: &std::path::Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(4 * MAX_TOKEN_BYTES as u64).read_to_end(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = std::str::from_utf8(&text)
        .map(str::trim)
        .map_err(|_| format!("{} does not hold a token: not text", path.display()))?;
    check_token(token).map_err(|reason| format!("the token in {}: {reason}", path.display()))?;
    Ok(token.to_string())
}

/// Whether only this host can connect to `addr` (`127.0.0.0/8`, `::1`, and
/// `::ffff:127.0.0.0/104`, which a dual-stack socket treats as IPv4's).
pub(crate) fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `30` (seconds), `500ms`, `30s`, `10m`, `2h`, `1d`.
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().ok()?;
    let secs = |s: u64| Some(Duration::from_secs(n.checked_mul(s)?));
    match v[split..].trim() {
        "" | "s" => secs(1),
        "ms" => Some(Duration::from_millis(n)),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => None,
    }
}

fn usable_signal(n: i32) -> bool {
    (1..=64).contains(&n) && n != libc::SIGPROF && n != libc::SIGKILL && n != libc::SIGSTOP
}

fn parse_signal(v: &str) -> Option<Option<i32>> {
    let upper = v.to_ascii_uppercase();
    match upper.trim_start_matches("SIG") {
        "OFF" | "NONE" => Some(None),
        "USR1" => Some(Some(libc::SIGUSR1)),
        "USR2" => Some(Some(libc::SIGUSR2)),
        _ => v
            .parse::<i32>()
            .ok()
            .filter(|&n| usable_signal(n))
            .map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> (Config, Vec<Error>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Config::default();
        let ignored = c.apply_env(|k| map.get(k).cloned());
        (c, ignored)
    }

    #[test]
    fn defaults_parse_and_are_valid() {
        let mut config = Config::default();
        for s in SETTINGS {
            if let Default::Text(text) = s.default {
                assert_eq!((s.set)(&mut config, text), Ok(()), "{}", s.method);
            }
        }
        config.validate().unwrap();
        assert_eq!(config.cpu_hz, 100);
        assert_eq!(config.min_interval, Duration::from_secs(600));
        assert_eq!(config.signal, Some(libc::SIGUSR2));
        assert!(config.enabled && !config.malloc_trim);
        assert_eq!(config.heap_threshold_bytes, None);
        assert_eq!(config.max_total_bytes, Some(5 << 30));
        assert_eq!(config.capture_memory_limit, Some(8 << 20));
    }

    #[test]
    fn look_back_is_off_by_default_and_checked() {
        let c = Config::default();
        assert_eq!(c.lookback, None);
        assert_eq!(c.lookback_hz, 19);
        assert_eq!(c.lookback_memory_limit, 4 << 20);
        let (c, ignored) = with(&[
            ("FIREWATCH_LOOKBACK", "30s"),
            ("FIREWATCH_LOOKBACK_HZ", "49"),
            ("FIREWATCH_LOOKBACK_MEMORY_LIMIT", "16M"),
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(c.lookback, Some(Duration::from_secs(30)));
        assert_eq!((c.lookback_hz, c.lookback_memory_limit), (49, 16 << 20));
        assert_eq!(with(&[("FIREWATCH_LOOKBACK", "off")]).0.lookback, None);
        for (variable, bad) in [
            ("FIREWATCH_LOOKBACK", "11m"),
            ("FIREWATCH_LOOKBACK", "500ms"),
            ("FIREWATCH_LOOKBACK", "soon"),
            ("FIREWATCH_LOOKBACK_HZ", "0"),
            ("FIREWATCH_LOOKBACK_HZ", "4001"),
            ("FIREWATCH_LOOKBACK_MEMORY_LIMIT", "32K"),
            ("FIREWATCH_LOOKBACK_MEMORY_LIMIT", "2G"),
            ("FIREWATCH_LOOKBACK_MEMORY_LIMIT", "off"),
        ] {
            let (c, ignored) = with(&[(variable, bad)]);
            assert_eq!(ignored.len(), 1, "{variable}={bad}");
            assert!(ignored[0].to_string().contains(variable), "{}", ignored[0]);
            assert_eq!(c, Config::default(), "{variable}={bad} is ignored");
        }
        let e = Config {
            lookback: Some(Duration::from_secs(3600)),
            ..Config::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("lookback") && e.contains("10m"), "{e}");
    }

    /// The complaint: with a 30 min gap at most 2 captures fit an
    /// hour, so a limit of 4 per hour never bound. The default gap must let
    /// the hourly limit be the one that binds.
    #[test]
    fn the_default_hourly_limit_can_bind() {
        let c = Config::default();
        let gaps_per_hour = Duration::from_secs(3600).as_secs() / c.min_interval.as_secs();
        assert!(u64::from(c.max_per_hour) < gaps_per_hour + 1, "{c:?}");
    }

    #[test]
    fn every_setting_has_a_distinct_environment_variable_and_method() {
        let mut envs: Vec<_> = SETTINGS.iter().map(|s| s.env).collect();
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name()).collect();
        envs.sort_unstable();
        envs.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!(envs.len(), SETTINGS.len());
        assert_eq!(names.len(), SETTINGS.len());
        assert!(envs.iter().all(|e| e.starts_with("FIREWATCH_")));
    }

    #[test]
    fn environment_overrides_the_builder() {
        let (c, ignored) = with(&[
            ("FIREWATCH_DIR", "/var/lib/x"),
            ("FIREWATCH_SERVICE", "api"),
            ("FIREWATCH_CPU_HZ", "250"),
            ("FIREWATCH_CPU_DURATION", "30s"),
            ("FIREWATCH_HEAP_THRESHOLD", "2G"),
            ("FIREWATCH_CPU_THRESHOLD_PERCENT", "off"),
            ("FIREWATCH_CPU_THRESHOLD_CHECKS", "3"),
            ("FIREWATCH_DISK_USAGE_THRESHOLD_PERCENT", "80"),
            ("FIREWATCH_MIN_INTERVAL", "10m"),
            ("FIREWATCH_MAX_FILES", "5"),
            ("FIREWATCH_MAX_AGE", "2d"),
            ("FIREWATCH_SIGNAL", "SIGUSR1"),
            ("FIREWATCH_HEAP_STEP", "64M"),
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(c.output_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.service_name, "api");
        assert_eq!(c.cpu_hz, 250);
        assert_eq!(c.cpu_duration, Duration::from_secs(30));
        assert_eq!(c.heap_threshold_bytes, Some(2 << 30));
        assert_eq!(c.cpu_threshold_percent, None);
        assert_eq!(c.cpu_threshold_checks, 3);
        assert_eq!(c.disk_usage_threshold_percent, 80);
        assert_eq!(c.min_interval, Duration::from_secs(600));
        assert_eq!(c.max_files, Some(5));
        assert_eq!(c.max_age, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(c.signal, Some(libc::SIGUSR1));
        assert_eq!(c.heap_step_bytes, Some(64 << 20));
    }

    #[test]
    fn a_bad_environment_value_is_ignored_and_the_rest_apply() {
        let (c, ignored) = with(&[
            ("FIREWATCH_CPU_HZ", "fast"),
            ("FIREWATCH_RSS_THRESHOLD_PERCENT", "150"),
            ("FIREWATCH_SIGNAL", "KILL"),
            ("FIREWATCH_MAX_FILES", "7"),
        ]);
        assert_eq!(c.cpu_hz, 100);
        assert_eq!(c.rss_threshold_percent, Some(90));
        assert_eq!(c.signal, Some(libc::SIGUSR2));
        assert_eq!(c.max_files, Some(7));
        let messages: Vec<String> = ignored.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        let said = |words: &[&str]| messages.iter().any(|m| words.iter().all(|w| m.contains(w)));
        assert!(said(&["FIREWATCH_CPU_HZ", "fast"]), "{messages:?}");
        assert!(
            said(&["FIREWATCH_RSS_THRESHOLD_PERCENT", "between 1 and 100"]),
            "{messages:?}"
        );
        assert!(said(&["FIREWATCH_SIGNAL", "KILL"]), "{messages:?}");
        assert!(with(&[("FIREWATCH_SIGNAL", "9")]).1.len() == 1);
        assert_eq!(with(&[("FIREWATCH_SIGNAL", "off")]).0.signal, None);
    }

    #[test]
    fn off_switches() {
        assert!(!with(&[("FIREWATCH_ENABLED", "0")]).0.enabled);
        assert!(!with(&[("FIREWATCH_DISABLE", "1")]).0.enabled);
        assert!(with(&[]).0.enabled);
        assert!(with(&[("FIREWATCH_MALLOC_TRIM", "on")]).0.malloc_trim);
        let limit = |v| with(&[("FIREWATCH_CAPTURE_MEMORY_LIMIT", v)]);
        assert_eq!(limit("off").0.capture_memory_limit, None);
        assert_eq!(limit("64M").0.capture_memory_limit, Some(64 << 20));
        assert_eq!(limit("512K").0.capture_memory_limit, Some(512 << 10));
        assert_eq!(limit("0").1.len(), 1, "0 is refused; off means no limit");
        assert_eq!(limit("lots").1.len(), 1);
        assert_eq!(with(&[("FIREWATCH_MALLOC_TRIM", "maybe")]).1.len(), 1);
    }

    #[test]
    fn invalid_values_are_refused_with_the_settings_name_not_clamped() {
        let c = Config {
            cpu_hz: 10_000,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("cpu_hz") && e.contains("10000"), "{e}");
        let c = Config {
            check_interval: Duration::from_millis(1),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("check_interval"));
        let c = Config {
            rss_threshold_percent: Some(0),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_byte_size("512K"), Some(512 << 10));
        assert_eq!(parse_byte_size("x"), None);
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("3 weeks"), None);
    }

    #[test]
    fn the_endpoint_is_off_by_default_and_refuses_the_network_without_a_token() {
        let c = Config::default();
        assert_eq!(c.http_addr, None);
        assert_eq!(c.http_token, None);
        assert!(!c.http_allow_unauthenticated);
        assert_eq!(c.http_max_seconds, 60);
        let at = |addr: &str| Config {
            http_addr: Some(addr.parse().unwrap()),
            ..Config::default()
        };
        for local in [
            "127.0.0.1:6060",
            "127.1.2.3:0",
            "[::1]:6060",
            "[::ffff:127.0.0.1]:1",
        ] {
            at(local).validate().unwrap();
        }
        for exposed in [
            "0.0.0.0:6060",
            "10.1.2.3:6060",
            "[::]:0",
            "[::ffff:10.0.0.1]:1",
        ] {
            let e = at(exposed).validate().unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidSetting {
                        setting: "http_addr",
                        ..
                    }
                ),
                "{exposed}: {e}"
            );
            assert!(e.to_string().contains("http_token"), "{e}");
            let with_token = Config {
                http_token: Some(Secret("t0ken".into())),
                ..at(exposed)
            };
            with_token.validate().unwrap();
            let allowed = Config {
                http_allow_unauthenticated: true,
                ..at(exposed)
            };
            allowed.validate().unwrap();
        }
        let too_long = Config {
            http_max_seconds: 3601,
            ..Config::default()
        };
        assert!(too_long
            .validate()
            .unwrap_err()
            .to_string()
            .contains("http_max_seconds"));
    }

    #[test]
    fn the_environment_cannot_open_the_endpoint_to_the_network_without_a_token() {
        let (c, ignored) = with(&[("FIREWATCH_HTTP_ADDR", "127.0.0.1:6060")]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(c.http_addr, Some("127.0.0.1:6060".parse().unwrap()));
        let (c, ignored) = with(&[("FIREWATCH_HTTP_ADDR", "0.0.0.0:6060")]);
        assert_eq!(c.http_addr, None, "ignored: the endpoint stays off");
        assert_eq!(ignored.len(), 1);
        assert!(
            ignored[0].to_string().contains("FIREWATCH_HTTP_ADDR"),
            "{}",
            ignored[0]
        );
        let (c, ignored) = with(&[
            ("FIREWATCH_HTTP_ADDR", "0.0.0.0:6060"),
            ("FIREWATCH_HTTP_TOKEN", "s3cret-token"),
            ("FIREWATCH_HTTP_MAX_SECONDS", "120"),
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(c.http_addr, Some("0.0.0.0:6060".parse().unwrap()));
        assert_eq!(c.http_max_seconds, 120);
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        let (c, ignored) = with(&[
            ("FIREWATCH_HTTP_ADDR", "[::]:6060"),
            ("FIREWATCH_HTTP_ALLOW_UNAUTHENTICATED", "1"),
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert!(c.http_allow_unauthenticated && c.http_addr.is_some());
        // A builder's open address with the token from the environment.
        let mut c = Config {
            http_addr: Some("0.0.0.0:6060".parse().unwrap()),
            ..Config::default()
        };
        c.validate_each().unwrap();
        let ignored = c.apply_env(|k| (k == "FIREWATCH_HTTP_TOKEN").then(|| "t0ken".to_string()));
        assert!(ignored.is_empty(), "{ignored:?}");
        c.validate().unwrap();
    }

    #[test]
    fn a_bad_token_is_refused_and_never_shown() {
        for bad in ["has space", "t\u{e9}l\u{e9}", &"x".repeat(1025)] {
            let (c, ignored) = with(&[("FIREWATCH_HTTP_TOKEN", bad)]);
            assert_eq!(c.http_token, None, "{bad:?}");
            assert_eq!(ignored.len(), 1, "{bad:?}");
            let message = ignored[0].to_string();
            assert!(
                message.contains("<redacted>") && !message.contains(bad),
                "{message}"
            );
        }
        let c = Config {
            http_token: Some(Secret(String::new())),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("http_token"), "{e}");
        let c = Config {
            http_token: Some(Secret("a b".into())),
            ..Config::default()
        };
        assert!(!c.validate().unwrap_err().to_string().contains("a b"));
    }

    #[test]
    fn the_token_can_come_from_a_file_read_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret-from-a-file\n").unwrap();
        let path = file.to_str().unwrap();
        let (c, ignored) = with(&[("FIREWATCH_HTTP_TOKEN_FILE", path)]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(c.http_token, Some(Secret("s3cret-from-a-file".into())));
        assert_eq!(c.http_token_file.as_deref(), Some(file.as_path()));
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        // The builder's: read by `read_token_file`, before the checks.
        let mut c = Config {
            http_token_file: Some(file.clone()),
            http_addr: Some("0.0.0.0:6060".parse().unwrap()),
            ..Config::default()
        };
        c.read_token_file().unwrap();
        c.validate().unwrap();
        assert_eq!(c.http_token, Some(Secret("s3cret-from-a-file".into())));
        // Both ways at once: refused, naming the setting.
        let mut both = Config {
            http_token: Some(Secret("t0ken".into())),
            http_token_file: Some(file.clone()),
            ..Config::default()
        };
        let e = both.read_token_file().unwrap_err().to_string();
        assert!(
            e.contains("http_token_file") && e.contains("http_token is set too"),
            "{e}"
        );
        let (c, ignored) = with(&[
            ("FIREWATCH_HTTP_TOKEN", "t0ken"),
            ("FIREWATCH_HTTP_TOKEN_FILE", path),
        ]);
        assert_eq!(c.http_token, Some(Secret("t0ken".into())));
        assert_eq!(ignored.len(), 1);
        assert!(ignored[0].to_string().contains("FIREWATCH_HTTP_TOKEN_FILE"));
        // A missing file, or one whose content is no token: one line naming
        // the file, never its content.
        let missing = dir.path().join("missing");
        let mut c = Config {
            http_token_file: Some(missing.clone()),
            ..Config::default()
        };
        let e = c.read_token_file().unwrap_err().to_string();
        assert!(
            e.contains("http_token_file") && e.contains(missing.to_str().unwrap()),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        std::fs::write(&file, "two words\n").unwrap();
        let (c, ignored) = with(&[("FIREWATCH_HTTP_TOKEN_FILE", path)]);
        assert_eq!(c.http_token, None);
        let message = ignored[0].to_string();
        assert!(
            message.contains(path) && !message.contains("two words"),
            "{message}"
        );
    }

    /// `docs/agent.md`'s table is this table. Run with
    /// `FIREWATCH_BLESS_DOCS=1` to rewrite it after changing a setting.
    #[test]
    fn the_docs_table_is_the_settings_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/agent.md");
        let docs = std::fs::read_to_string(&path).unwrap();
        let start = docs
            .find("| builder | environment | default | meaning |")
            .expect("docs/agent.md has the options table");
        let end = docs[start..]
            .find("\n\n")
            .map_or(docs.len(), |e| start + e + 1);
        let expected = docs_table();
        if std::env::var_os("FIREWATCH_BLESS_DOCS").is_some() {
            let updated = format!("{}{}{}", &docs[..start], expected, &docs[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        assert_eq!(
            &docs[start..end],
            expected,
            "docs/agent.md's options table is out of date: run \
             FIREWATCH_BLESS_DOCS=1 cargo test -p firewatch-agent --lib the_docs_table"
        );
    }
}
