//! Automatic triggers, as pure state machines fed by the agent thread:
//! each `observe` takes a measurement and says whether to capture now.
//!
//! A trigger fires once when its measurement crosses the threshold, then
//! stays quiet until it re-arms: when the measurement falls below the
//! threshold minus a hysteresis margin, or (for growing quantities such as
//! heap in use) rises by a further step above the level it fired at, like
//! gperftools' `HEAP_PROFILE_INUSE_INTERVAL`. Throttling (min gap, hourly
//! budget, lifetime cap) is applied on top by the capture pipeline.

use std::time::{Duration, Instant};

/// Process CPU use in % of one core, from CPU-time deltas between checks.
#[derive(Default)]
pub struct CpuMeter {
    last: Option<(Instant, Duration)>,
}

impl CpuMeter {
    /// Feeds the process's total CPU time at `now`; returns the use since the
    /// previous call, in % of one core (200 = two cores busy).
    pub fn observe(&mut self, now: Instant, cpu: Duration) -> Option<f64> {
        let previous = self.last.replace((now, cpu));
        let (then, cpu_then) = previous?;
        let wall = now.checked_duration_since(then)?.as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        Some(cpu.saturating_sub(cpu_then).as_secs_f64() / wall * 100.0)
    }
}

/// Fires after `checks` consecutive observations at or above `threshold`.
pub struct SustainedThreshold {
    threshold: f64,
    hysteresis: f64,
    checks: u32,
    streak: u32,
    armed: bool,
}

impl SustainedThreshold {
    pub fn new(threshold: f64, checks: u32, hysteresis: f64) -> Self {
        SustainedThreshold {
            threshold,
            hysteresis,
            checks: checks.max(1),
            streak: 0,
            armed: true,
        }
    }

    pub fn observe(&mut self, value: f64) -> bool {
        if value >= self.threshold {
            self.streak += 1;
        } else {
            self.streak = 0;
            if value < self.threshold - self.hysteresis {
                self.armed = true;
            }
        }
        if self.armed && self.streak >= self.checks {
            self.armed = false;
            return true;
        }
        false
    }
}

/// Fires when a growing quantity reaches `threshold`; re-arms below
/// `threshold - hysteresis`, and fires again each time it grows a further
/// `step` above the last level it fired at.
pub struct GrowthThreshold {
    threshold: u64,
    hysteresis: u64,
    step: u64,
    fired_at: Option<u64>,
}

impl GrowthThreshold {
    pub fn new(threshold: u64, hysteresis: u64, step: u64) -> Self {
        GrowthThreshold {
            threshold,
            hysteresis,
            step: step.max(1),
            fired_at: None,
        }
    }

    pub fn observe(&mut self, value: u64) -> bool {
        match self.fired_at {
            None if value >= self.threshold => {
                self.fired_at = Some(value);
                true
            }
            None => false,
            Some(_) if value < self.threshold.saturating_sub(self.hysteresis) => {
                self.fired_at = None;
                false
            }
            Some(level) if value >= level.saturating_add(self.step) => {
                self.fired_at = Some(value);
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_meter_reports_percent_of_a_core() {
        let mut m = CpuMeter::default();
        let t0 = Instant::now();
        assert_eq!(m.observe(t0, Duration::from_secs(10)), None);
        let p = m
            .observe(t0 + Duration::from_secs(2), Duration::from_secs(13))
            .unwrap();
        assert!((p - 150.0).abs() < 1e-9, "{p}");
    }

    #[test]
    fn sustained_threshold_needs_consecutive_checks_and_rearms_below_hysteresis() {
        let mut t = SustainedThreshold::new(80.0, 2, 10.0);
        let fired: Vec<bool> = [
            90.0, 50.0, 90.0, 95.0, 99.0, 75.0, 90.0, 90.0, 60.0, 85.0, 85.0,
        ]
        .iter()
        .map(|&v| t.observe(v))
        .collect();
        assert_eq!(
            fired,
            [false, false, false, true, false, false, false, false, false, false, true],
            "fires on the 2nd consecutive check; 75 is inside the hysteresis band, 60 re-arms"
        );
    }

    #[test]
    fn growth_threshold_fires_once_per_step_and_rearms_below_hysteresis() {
        let mut t = GrowthThreshold::new(1000, 100, 500);
        let fired: Vec<bool> = [500, 1000, 1200, 1499, 1500, 1600, 950, 850, 1000]
            .iter()
            .map(|&v| t.observe(v))
            .collect();
        assert_eq!(
            fired,
            [false, true, false, false, true, false, false, false, true]
        );
    }
}
