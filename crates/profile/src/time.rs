//! Civil (UTC, proleptic Gregorian) dates for the times a profile carries
//! (`time_nanos`): the analyzer prints them, the agent names files by them.
//! No time-zone database: profiles and file names are in UTC.

/// A UTC date and time to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–59 (no leap seconds).
    pub second: u32,
}

const SECS_PER_DAY: i64 = 86_400;

impl UtcTime {
    /// The time `secs` seconds after 1970-01-01 00:00:00 UTC (before it when
    /// negative).
    pub fn from_unix_seconds(secs: i64) -> UtcTime {
        let (days, rem) = (secs.div_euclid(SECS_PER_DAY), secs.rem_euclid(SECS_PER_DAY));
        let (year, month, day) = civil_from_days(days);
        // `rem` is in [0, 86400).
        let rem = rem as u32;
        UtcTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Seconds since 1970-01-01 00:00:00 UTC; `None` unless every field is
    /// in range (a real date, hours to 23, minutes and seconds to 59).
    pub fn to_unix_seconds(self) -> Option<i64> {
        let valid = (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        days.checked_mul(SECS_PER_DAY)?.checked_add(secs)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1–12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: shift the year to start in March (so
/// the leap day is last), split into 400-year eras of 146 097 days, then
/// derive year of era, day of year and month arithmetically.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (see the bounds above).
    (year, month as u32, day as u32)
}

/// The inverse of [`civil_from_days`] (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_conversion_round_trips_every_day_for_centuries() {
        // 1970 .. 2500, through every leap rule (2000, 2100, 2400), counted
        // day by day independently of the formulas.
        let mut expected = (1970i64, 1u32, 1u32);
        for days in 0..(530 * 366) {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (ey, em, ed) = expected;
            expected = if ed < days_in_month(ey, em) {
                (ey, em, ed + 1)
            } else if em < 12 {
                (ey, em + 1, 1)
            } else {
                (ey + 1, 1, 1)
            };
        }
    }

    #[test]
    fn seconds_round_trip_and_invalid_fields_are_refused() {
        // 2017-09-29 20:57:00 UTC: google/pprof's sample.cpu, as pprof prints it.
        let t = UtcTime::from_unix_seconds(1_506_718_620);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute),
            (2017, 9, 29, 20, 57)
        );
        assert_eq!(t.to_unix_seconds(), Some(1_506_718_620));
        let before = UtcTime::from_unix_seconds(-1);
        assert_eq!((before.year, before.month, before.day), (1969, 12, 31));
        assert_eq!(before.second, 59);
        let feb29 = UtcTime {
            year: 2023,
            month: 2,
            day: 29,
            hour: 0,
            minute: 0,
            second: 0,
        };
        assert_eq!(feb29.to_unix_seconds(), None);
        assert!(UtcTime {
            year: 2024,
            ..feb29
        }
        .to_unix_seconds()
        .is_some());
        assert_eq!(UtcTime { hour: 24, ..t }.to_unix_seconds(), None);
    }
}
