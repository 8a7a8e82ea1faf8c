//! Numbers formatted exactly as `go tool pprof` formats them (its
//! `measurement` package), so a report reads the same in both tools.

/// A family of convertible units, smallest first.
struct UnitFamily {
    units: &'static [(&'static str, &'static [&'static str], f64)],
    default: (&'static str, f64),
}

const FAMILIES: &[UnitFamily] = &[
    UnitFamily {
        units: &[
            ("B", &["b", "byte"], 1.0),
            ("kB", &["kb", "kbyte", "kilobyte"], 1024.0),
            ("MB", &["mb", "mbyte", "megabyte"], 1048576.0),
            ("GB", &["gb", "gbyte", "gigabyte"], 1073741824.0),
            ("TB", &["tb", "tbyte", "terabyte"], 1099511627776.0),
            ("PB", &["pb", "pbyte", "petabyte"], 1125899906842624.0),
        ],
        default: ("B", 1.0),
    },
    UnitFamily {
        units: &[
            ("ns", &["ns", "nanosecond"], 1.0),
            ("us", &["μs", "us", "microsecond"], 1e3),
            ("ms", &["ms", "millisecond"], 1e6),
            ("s", &["s", "sec", "second"], 1e9),
            ("hrs", &["hour", "hr"], 3.6e12),
        ],
        default: ("s", 1e9),
    },
    UnitFamily {
        units: &[
            ("n*GCU", &["nanogcu"], 1e-9),
            ("u*GCU", &["microgcu"], 1e-6),
            ("m*GCU", &["milligcu"], 1e-3),
            ("GCU", &["gcu"], 1.0),
            ("k*GCU", &["kilogcu"], 1e3),
            ("M*GCU", &["megagcu"], 1e6),
            ("G*GCU", &["gigagcu"], 1e9),
            ("T*GCU", &["teragcu"], 1e12),
            ("P*GCU", &["petagcu"], 1e15),
        ],
        default: ("GCU", 1.0),
    },
];

impl UnitFamily {
    fn sniff(&self, unit: &str) -> Option<(&'static str, f64)> {
        let mut unit = unit.to_lowercase();
        if unit.chars().count() > 2 && unit.ends_with('s') {
            unit.pop();
        }
        self.units
            .iter()
            .find(|(_, aliases, _)| aliases.contains(&unit.as_str()))
            .map(|&(name, _, f)| (name, f))
    }

    fn convert(&self, value: i64, from: &str, to: &str) -> Option<(f64, &'static str)> {
        let (_, factor) = self.sniff(from)?;
        let v = value as f64 * factor;
        if to == "minimum" || to == "auto" {
            let mut best: Option<(&str, f64)> = None;
            for &(name, _, f) in self.units {
                if best.is_none_or(|(_, bf)| f >= bf) && v / f >= 1.0 {
                    best = Some((name, f));
                }
            }
            return Some(match best {
                Some((name, f)) => (v / f, name),
                None => (v / self.default.1, self.default.0),
            });
        }
        Some(match self.sniff(to) {
            Some((name, f)) => (v / f, name),
            None => (v / self.default.1, self.default.0),
        })
    }
}

/// `measurement.Scale`: `value` in `from` expressed in `to` (`minimum`/`auto`
/// pick a readable unit); the unit is `""` when not worth printing.
pub fn scale(value: i64, from: &str, to: &str) -> (f64, String) {
    if value < 0 && value != i64::MIN {
        let (v, u) = scale(-value, from, to);
        return (-v, u);
    }
    for family in FAMILIES {
        if let Some((v, u)) = family.convert(value, from, to) {
            return (v, u.to_string());
        }
    }
    match to {
        "count" | "sample" | "unit" | "minimum" | "auto" => (value as f64, String::new()),
        other => (value as f64, other.to_string()),
    }
}

/// `measurement.ScaledLabel`: `1.28s`, `512kB`, `0`.
pub fn scaled_label(value: i64, from: &str, to: &str) -> String {
    let (v, u) = scale(value, from, to);
    let formatted = format!("{v:.2}");
    let s = formatted.strip_suffix(".00").unwrap_or(&formatted);
    if s == "0" || s == "-0" {
        return "0".into();
    }
    format!("{s}{u}")
}

/// `measurement.Percentage`: `  100%`, `72.73%`, ` 0.89%`, `3.2e-05%`.
pub fn percentage(value: i64, total: i64) -> String {
    let ratio = if total != 0 {
        (value as f64 / total as f64).abs() * 100.0
    } else {
        0.0
    };
    if (99.95..=100.05).contains(&ratio) {
        "  100%".into()
    } else if ratio >= 1.0 {
        format!("{ratio:5.2}%")
    } else {
        format!("{:>5}%", go_g2(ratio))
    }
}

/// Go's `%.2g`: two significant digits, exponent form below 1e-4.
fn go_g2(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let sci = format!("{x:.1e}"); // e.g. "3.2e-5", rounded to two digits
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("integer exponent");
    if !(-4..2).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (1 - exp).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The unit pprof's text report uses for a whole table (`-unit=minimum`):
/// the unit of the smallest shown value, scaled up when it is tiny next to
/// the total.
pub fn table_unit(
    shown: impl Iterator<Item = (i64, i64)>,
    total: i64,
    sample_unit: &str,
) -> String {
    let mut min = 0i64;
    for (flat, cum) in shown {
        let v = if flat != 0 { flat.abs() } else { cum.abs() };
        if v > 0 && (min == 0 || v < min) {
            min = v;
        }
    }
    let max = total;
    if min == 0 {
        min = max;
    }
    let (_, min_unit) = scale(min, sample_unit, "minimum");
    let (_, max_unit) = scale(max, sample_unit, "minimum");
    let mut unit = min_unit.clone();
    if min_unit != max_unit && min.saturating_mul(100) < max {
        unit = scale(min.saturating_mul(100), sample_unit, "minimum").1;
    }
    if unit.is_empty() {
        sample_unit.to_string()
    } else {
        unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are pprof's own output for these values (its
    // `measurement` package's scaling and `-top`'s percentage format).
    #[test]
    fn percentages_match_pprof() {
        assert_eq!(percentage(100, 100), "  100%");
        assert_eq!(percentage(7273, 10000), "72.73%");
        assert_eq!(percentage(852, 10000), " 8.52%");
        assert_eq!(percentage(89, 10000), " 0.89%");
        assert_eq!(percentage(9, 1000), "  0.9%");
        assert_eq!(percentage(17, 100000), "0.017%");
        assert_eq!(percentage(0, 100), "    0%");
        assert_eq!(percentage(32, 100_000_000), "3.2e-05%");
        assert_eq!(percentage(5, 0), "    0%");
    }

    #[test]
    fn labels_match_pprof() {
        assert_eq!(scaled_label(1_280_000_000, "nanoseconds", "s"), "1.28s");
        assert_eq!(scaled_label(1_280_000_000, "nanoseconds", "ms"), "1280ms");
        assert_eq!(
            scaled_label(1_280_000_000, "nanoseconds", "ns"),
            "1280000000ns"
        );
        assert_eq!(scaled_label(2_000_000_000, "nanoseconds", "auto"), "2s");
        assert_eq!(
            scaled_label(240_360_000_000, "nanoseconds", "auto"),
            "240.36s"
        );
        assert_eq!(scaled_label(1_761_607, "bytes", "MB"), "1.68MB");
        assert_eq!(scaled_label(0, "bytes", "MB"), "0");
        assert_eq!(scaled_label(42, "count", "count"), "42");
        assert_eq!(scaled_label(-1_500_000, "nanoseconds", "ms"), "-1.50ms");
    }

    #[test]
    fn table_unit_follows_pprof_minimum_rule() {
        // sample.cpu: smallest row 10ms, total 1.76s -> "s" (10ms*100 = 1s).
        assert_eq!(
            table_unit([(10_000_000, 0)].into_iter(), 1_760_000_000, "nanoseconds"),
            "s"
        );
        // With the smallest shown row at 70ms: 7s > 1.76s, so the unit is ms.
        assert_eq!(
            table_unit([(70_000_000, 0)].into_iter(), 1_760_000_000, "nanoseconds"),
            "ms"
        );
        assert_eq!(table_unit([(3, 0)].into_iter(), 100, "count"), "count");
    }
}
