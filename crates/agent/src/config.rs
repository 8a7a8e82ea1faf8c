//! Agent settings: defaults, the builder's values, then `FIREWATCH_*`
//! environment overrides (so operators can retune a deployed service without
//! a rebuild).

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// Everything the agent needs to know. Built by [`crate::AgentBuilder`].
#[derive(Clone, Debug)]
pub struct Config {
    /// `false` turns the agent into a no-op (`FIREWATCH_ENABLED=0`).
    pub enabled: bool,
    pub output_dir: PathBuf,
    pub service_name: String,
    pub cpu_duration: Duration,
    pub cpu_hz: u32,
    /// Heap in use (from the sampling allocator) that triggers a heap snapshot.
    pub heap_threshold_bytes: Option<u64>,
    /// Further growth, above the level a heap or RSS trigger last fired at,
    /// that fires it again (default: a quarter of the heap threshold; for
    /// RSS, 5% of the memory limit).
    pub heap_step_bytes: Option<u64>,
    /// RSS as a percentage of the memory limit that triggers a heap snapshot.
    pub rss_threshold_percent: Option<u32>,
    /// Process CPU, in % of one core, that triggers a CPU profile.
    pub cpu_threshold_percent: Option<u32>,
    /// Consecutive checks above the CPU threshold before it fires.
    pub cpu_threshold_checks: u32,
    /// How often thresholds are checked.
    pub check_interval: Duration,
    /// Minimum gap between automatic captures of one kind.
    pub min_interval: Duration,
    /// Automatic captures of one kind allowed per hour.
    pub max_per_hour: u32,
    /// Automatic captures of one kind ever, counting files already on disk.
    pub lifetime_cap: Option<u32>,
    pub max_files: Option<usize>,
    pub max_total_bytes: Option<u64>,
    pub max_age: Option<Duration>,
    /// Skip captures when the output filesystem is fuller than this.
    pub disk_usage_threshold_percent: u32,
    /// The signal that requests captures (`None`: no signal trigger).
    pub signal: Option<i32>,
    /// Ask glibc to return freed memory to the system after each capture
    /// (`malloc_trim(0)`). Off by default: it walks every arena under its
    /// lock and can stall allocating threads of a large heap.
    pub malloc_trim: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            enabled: true,
            output_dir: default_output_dir(),
            service_name: default_service_name(),
            cpu_duration: Duration::from_secs(10),
            cpu_hz: 100,
            heap_threshold_bytes: None,
            heap_step_bytes: None,
            rss_threshold_percent: Some(90),
            cpu_threshold_percent: Some(80),
            cpu_threshold_checks: 2,
            check_interval: Duration::from_secs(5),
            min_interval: Duration::from_secs(30 * 60),
            max_per_hour: 4,
            lifetime_cap: Some(20),
            max_files: Some(20),
            max_total_bytes: Some(5 << 30),
            max_age: Some(Duration::from_secs(24 * 3600)),
            disk_usage_threshold_percent: 90,
            signal: Some(libc::SIGUSR2),
            malloc_trim: false,
        }
    }
}

/// `$TMPDIR/firewatch-<uid>`: per user, so a second user's service on the
/// same host does not find the first one's `0700` directory in its way.
pub fn default_output_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("firewatch-{uid}"))
}

/// The executable's file name, else "service".
pub fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "service".into())
}

impl Config {
    /// Applies `FIREWATCH_*` overrides read through `var` (the process
    /// environment in production, a map in tests).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        let bad = |name: &str, value: &str, what: &str| {
            Error::Config(format!("{name}={value:?}: {what}"))
        };
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("FIREWATCH_ENABLED") {
            self.enabled = parse_bool(&v)
                .ok_or_else(|| bad("FIREWATCH_ENABLED", &v, "expected 1/0, true/false, on/off"))?;
        }
        if let Some(v) = get("FIREWATCH_DISABLE") {
            let off = parse_bool(&v)
                .ok_or_else(|| bad("FIREWATCH_DISABLE", &v, "expected 1/0, true/false"))?;
            self.enabled &= !off;
        }
        if let Some(v) = get("FIREWATCH_DIR") {
            self.output_dir = PathBuf::from(v);
        }
        if let Some(v) = get("FIREWATCH_SERVICE") {
            self.service_name = v;
        }
        let number = |name: &str| -> Result<Option<u64>> {
            get(name)
                .map(|v| parse_size(&v).ok_or_else(|| bad(name, &v, "expected a number")))
                .transpose()
        };
        let seconds = |name: &str| -> Result<Option<Duration>> {
            get(name)
                .map(|v| {
                    parse_duration(&v)
                        .ok_or_else(|| bad(name, &v, "expected a duration like 30s, 10m, 2h"))
                })
                .transpose()
        };
        // "off" disables an optional threshold or cap.
        let optional = |name: &str| -> Result<Option<Option<u64>>> {
            match get(name) {
                Some(v) if ["off", "none", "0"].contains(&v.to_ascii_lowercase().as_str()) => {
                    Ok(Some(None))
                }
                Some(v) => parse_size(&v)
                    .map(|n| Some(Some(n)))
                    .ok_or_else(|| bad(name, &v, "expected a number or off")),
                None => Ok(None),
            }
        };
        if let Some(hz) = number("FIREWATCH_CPU_HZ")? {
            self.cpu_hz = hz.clamp(1, 4000) as u32;
        }
        if let Some(d) = seconds("FIREWATCH_CPU_DURATION")? {
            self.cpu_duration = d;
        }
        if let Some(t) = optional("FIREWATCH_HEAP_THRESHOLD")? {
            self.heap_threshold_bytes = t;
        }
        if let Some(t) = optional("FIREWATCH_HEAP_STEP")? {
            self.heap_step_bytes = t;
        }
        if let Some(t) = optional("FIREWATCH_RSS_THRESHOLD_PERCENT")? {
            self.rss_threshold_percent = t.map(|p| p.min(100) as u32);
        }
        if let Some(t) = optional("FIREWATCH_CPU_THRESHOLD_PERCENT")? {
            self.cpu_threshold_percent = t.map(|p| p.min(100_000) as u32);
        }
        if let Some(d) = seconds("FIREWATCH_CHECK_INTERVAL")? {
            self.check_interval = d.max(Duration::from_millis(100));
        }
        if let Some(d) = seconds("FIREWATCH_MIN_INTERVAL")? {
            self.min_interval = d;
        }
        if let Some(n) = number("FIREWATCH_MAX_PER_HOUR")? {
            self.max_per_hour = n.min(u64::from(u32::MAX)) as u32;
        }
        if let Some(n) = optional("FIREWATCH_LIFETIME_CAP")? {
            self.lifetime_cap = n.map(|n| n.min(u64::from(u32::MAX)) as u32);
        }
        if let Some(n) = optional("FIREWATCH_MAX_FILES")? {
            self.max_files = n.map(|n| n as usize);
        }
        if let Some(n) = optional("FIREWATCH_MAX_BYTES")? {
            self.max_total_bytes = n;
        }
        if let Some(v) = get("FIREWATCH_MAX_AGE") {
            self.max_age =
                if v.eq_ignore_ascii_case("off") {
                    None
                } else {
                    Some(parse_duration(&v).ok_or_else(|| {
                        bad("FIREWATCH_MAX_AGE", &v, "expected a duration or off")
                    })?)
                };
        }
        if let Some(v) = get("FIREWATCH_MALLOC_TRIM") {
            self.malloc_trim = parse_bool(&v).ok_or_else(|| {
                bad(
                    "FIREWATCH_MALLOC_TRIM",
                    &v,
                    "expected 1/0, true/false, on/off",
                )
            })?;
        }
        if let Some(v) = get("FIREWATCH_SIGNAL") {
            self.signal = parse_signal(&v).ok_or_else(|| {
                bad(
                    "FIREWATCH_SIGNAL",
                    &v,
                    "expected USR1, USR2, a number, or off",
                )
            })?;
        }
        Ok(())
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `1234`, `512K`, `2G` (powers of 1024).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, factor) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(factor)
}

/// `30` (seconds), `500ms`, `30s`, `10m`, `2h`, `1d`.
pub fn parse_duration(v: &str) -> Option<Duration> {
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

fn parse_signal(v: &str) -> Option<Option<i32>> {
    let upper = v.to_ascii_uppercase();
    match upper.trim_start_matches("SIG") {
        "OFF" | "NONE" => Some(None),
        "USR1" => Some(Some(libc::SIGUSR1)),
        "USR2" => Some(Some(libc::SIGUSR2)),
        _ => v
            .parse::<i32>()
            .ok()
            .filter(|&n| {
                (1..=64).contains(&n)
                    && n != libc::SIGPROF
                    && n != libc::SIGKILL
                    && n != libc::SIGSTOP
            })
            .map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Config::default();
        c.apply_env(|k| map.get(k).cloned())?;
        Ok(c)
    }

    #[test]
    fn environment_overrides_the_builder() {
        let c = with(&[
            ("FIREWATCH_DIR", "/var/lib/x"),
            ("FIREWATCH_SERVICE", "api"),
            ("FIREWATCH_CPU_HZ", "250"),
            ("FIREWATCH_CPU_DURATION", "30s"),
            ("FIREWATCH_HEAP_THRESHOLD", "2G"),
            ("FIREWATCH_CPU_THRESHOLD_PERCENT", "off"),
            ("FIREWATCH_MIN_INTERVAL", "10m"),
            ("FIREWATCH_MAX_FILES", "5"),
            ("FIREWATCH_MAX_AGE", "2d"),
            ("FIREWATCH_SIGNAL", "SIGUSR1"),
        ])
        .unwrap();
        assert_eq!(c.output_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.service_name, "api");
        assert_eq!(c.cpu_hz, 250);
        assert_eq!(c.cpu_duration, Duration::from_secs(30));
        assert_eq!(c.heap_threshold_bytes, Some(2 << 30));
        assert_eq!(c.cpu_threshold_percent, None);
        assert_eq!(c.min_interval, Duration::from_secs(600));
        assert_eq!(c.max_files, Some(5));
        assert_eq!(c.max_age, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(c.signal, Some(libc::SIGUSR1));
    }

    #[test]
    fn off_switch_and_bad_values() {
        assert!(!with(&[("FIREWATCH_ENABLED", "0")]).unwrap().enabled);
        assert!(!with(&[("FIREWATCH_DISABLE", "1")]).unwrap().enabled);
        assert!(with(&[]).unwrap().enabled);
        let err = with(&[("FIREWATCH_CPU_HZ", "fast")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FIREWATCH_CPU_HZ") && err.contains("fast"),
            "{err}"
        );
        assert!(with(&[("FIREWATCH_SIGNAL", "KILL")]).is_err());
        assert!(with(&[("FIREWATCH_SIGNAL", "9")]).is_err());
        assert_eq!(with(&[("FIREWATCH_SIGNAL", "off")]).unwrap().signal, None);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("3 weeks"), None);
    }

    #[test]
    fn malloc_trim_is_off_unless_asked() {
        assert!(!Config::default().malloc_trim);
        let mut c = Config::default();
        c.apply_env(|k| (k == "FIREWATCH_MALLOC_TRIM").then(|| "on".to_string()))
            .unwrap();
        assert!(c.malloc_trim);
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "FIREWATCH_MALLOC_TRIM").then(|| "maybe".to_string()))
            .is_err());
    }
}
