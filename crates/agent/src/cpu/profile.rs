//! A finished capture becomes a pprof profile: stacks are symbolized here, on
//! the caller's thread, never in the signal handler.

use std::time::UNIX_EPOCH;

use firewatch_profile::Profile;

use super::{CpuCapture, Lookback};
use crate::process::current_mappings;
use crate::stacks_to_profile::{
    build_profile, ProfileSpec, RawSample, LOST_SAMPLES_FRAME, TRUNCATED_STACK_FRAME,
};
use crate::symbolize::Symbolizer;

/// Root frame of samples whose stack could not be walked (the stack pointer
/// was in memory the sampler did not know yet): only their leaf is known.
pub const UNWALKED_STACK_FRAME: &str = "[firewatch: stack not walked]";

/// Frame of the process CPU time in the window that no sample stands for
/// (see [`CpuCapture::unsampled_ns`]), so the profile's total is the
/// process's CPU time, without inflating any stack.
pub const UNSAMPLED_FRAME: &str = "[firewatch: unsampled]";

/// Sample label saying which part of a look-back capture a stack was
/// counted in: [`LOOKBACK_PART`] or [`CAPTURE_PART`] (absent from other
/// profiles). `go tool pprof -tagfocus=firewatch_window=lookback` shows
/// what came before the trigger.
pub const WINDOW_LABEL: &str = "firewatch_window";
/// [`WINDOW_LABEL`]'s value for the seconds before the capture began.
pub const LOOKBACK_PART: &str = "lookback";
/// [`WINDOW_LABEL`]'s value for the capture's own seconds.
pub const CAPTURE_PART: &str = "capture";

impl CpuCapture {
    /// The pprof profile of this capture: `samples/count` and
    /// `cpu/nanoseconds` per stack and thread, mappings with build IDs,
    /// addresses, and symbolized functions; lost samples appear as a
    /// synthetic frame and in a comment, so totals stay honest.
    pub fn to_profile(&self, comments: &[String]) -> Profile {
        let time_nanos = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut spec = ProfileSpec::cpu(
            self.period_ns as i64,
            time_nanos,
            self.duration.as_nanos() as i64,
        );
        spec.comments = comments.to_vec();
        spec.comments.push(format!(
            "firewatch: requested {} Hz per thread; effective {:.1} samples per CPU-second ({} samples, {:.3}s CPU)",
            self.hz,
            self.effective_hz(),
            self.samples,
            self.cpu_ns as f64 / 1e9
        ));
        if self.sampled_hz > self.hz {
            spec.comments.push(format!(
                "firewatch: sampled at up to {} Hz for part of the window (the process's one \
                 sampler runs at the highest rate its profiles ask for); each sample weighs the \
                 CPU time of its own period, so the totals are unchanged",
                self.sampled_hz
            ));
        }
        if let Some(lookback) = &self.lookback {
            spec.comments.push(lookback.comment());
        }
        if self.dropped_ns > 0 {
            spec.comments.push(format!(
                "firewatch: lost {:.3}s of CPU samples (buffers full); shown as {LOST_SAMPLES_FRAME}",
                self.dropped_ns as f64 / 1e9
            ));
        }
        let share = |n: u64| 100.0 * n as f64 / self.samples.max(1) as f64;
        spec.comments.push(format!(
            "firewatch: unwinding: .eh_frame CFI on a copy of up to {} KiB of each sampled stack, \
             frame pointers where no table covers the code; {:.2}% of samples truncated",
            super::WINDOW / 1024,
            share(self.truncated)
        ));
        if let Some(comment) = crate::unwind::self_check::result().comment() {
            spec.comments.push(comment);
        }
        if self.truncated > 0 {
            spec.comments.push(format!(
                "firewatch: {} samples had stacks deeper than {} frames or than the copied {} KiB; shown under {TRUNCATED_STACK_FRAME}",
                self.truncated,
                super::MAX_DEPTH,
                super::WINDOW / 1024
            ));
        }
        if self.incomplete > 0 {
            spec.comments.push(format!(
                "firewatch: {} samples ({:.2}%) stop before the outermost frame (no unwind rule found the caller)",
                self.incomplete,
                share(self.incomplete)
            ));
        }
        if self.without_tables > 0 {
            spec.comments.push(format!(
                "firewatch: {} executable mappings have no readable unwind table; their frames rely on frame pointers",
                self.without_tables
            ));
        }
        if self.untracked > 0 {
            spec.comments.push(format!(
                "firewatch: up to {} threads were not profiled (more threads than the profiler's {} slots)",
                self.untracked,
                super::MAX_SLOTS
            ));
        }
        if self.stale > 0 {
            spec.comments.push(format!(
                "firewatch: {} signals from timers of exited threads were discarded",
                self.stale
            ));
        }
        if self.unwalked > 0 {
            spec.comments.push(format!(
                "firewatch: {} samples kept only their leaf frame (stack not readable); shown under {UNWALKED_STACK_FRAME}",
                self.unwalked
            ));
        }
        if self.unsampled_ns > 0 {
            spec.comments.push(format!(
                "firewatch: {:.3}s of the process's CPU time in this window is in no sample \
                 (threads' last period before exiting, threads younger than the 20 ms scan); shown as {UNSAMPLED_FRAME}",
                self.unsampled_ns as f64 / 1e9
            ));
        }
        if let Some(comment) = crate::labels::overflow_comment() {
            spec.comments.push(comment);
        }
        if self.previous_handler {
            spec.comments.push(
                "firewatch: another SIGPROF handler was present; it received foreign signals"
                    .into(),
            );
        }

        let mut samples: Vec<RawSample> = self
            .stacks
            .iter()
            .map(|s| {
                let mut raw =
                    RawSample::new(s.frames.to_vec(), vec![s.samples as i64, s.cpu_ns as i64])
                        .with_label("thread", s.thread.clone());
                raw = with_set_labels(raw, s.labels);
                if self.lookback.is_some() {
                    let part = if s.lookback {
                        LOOKBACK_PART
                    } else {
                        CAPTURE_PART
                    };
                    raw = raw.with_label(WINDOW_LABEL, part);
                }
                if s.truncated {
                    raw = raw.with_synthetic_root(TRUNCATED_STACK_FRAME);
                } else if s.unwalked {
                    raw = raw.with_synthetic_root(UNWALKED_STACK_FRAME);
                }
                raw
            })
            .collect();
        if self.unsampled_ns > 0 {
            samples.push(RawSample::synthetic(
                UNSAMPLED_FRAME,
                vec![0, self.unsampled_ns as i64],
            ));
        }
        if self.dropped_ns > 0 {
            let periods = (self.dropped_ns / self.period_ns.max(1)) as i64;
            samples.push(RawSample::synthetic(
                LOST_SAMPLES_FRAME,
                vec![periods, self.dropped_ns as i64],
            ));
        }
        let mappings = current_mappings().unwrap_or_else(|e| {
            log::warn!("firewatch: cannot read /proc/self/maps ({e}); the profile has no mappings");
            Vec::new()
        });
        let mut symbolizer = Symbolizer::shared(&mappings);
        build_profile(&samples, &spec, &mappings, &mut symbolizer)
    }

    /// Samples per second of CPU time actually delivered (below the requested
    /// rate when the kernel's tick rate caps signal delivery), of the
    /// capture's own samples (a look-back part is at its own rate).
    pub fn effective_hz(&self) -> f64 {
        let (samples, cpu_ns) = match &self.lookback {
            Some(l) => (self.samples - l.samples, self.cpu_ns - l.cpu_ns),
            None => (self.samples, self.cpu_ns),
        };
        if cpu_ns == 0 {
            0.0
        } else {
            samples as f64 / (cpu_ns as f64 / 1e9)
        }
    }
}

/// `raw` with the pairs of `set` as sample labels, leaving out keys the
/// CPU profile sets itself (a key must not repeat within a sample).
fn with_set_labels(mut raw: RawSample, set: crate::labels::LabelSet) -> RawSample {
    for &(key, value) in set.pairs() {
        if key != "thread" && key != WINDOW_LABEL {
            raw = raw.with_label(key, value);
        }
    }
    raw
}

impl Lookback {
    /// What the profile's comments say of it.
    fn comment(&self) -> String {
        let mut said = format!(
            "firewatch: look-back: {:.1}s before the capture began (of {}s asked for) at {} Hz: \
             {} samples, {:.3}s CPU, labelled {WINDOW_LABEL}={LOOKBACK_PART} (the capture's own: \
             {WINDOW_LABEL}={CAPTURE_PART})",
            self.covered.as_secs_f64(),
            self.requested.as_secs_f64(),
            self.hz,
            self.samples,
            self.cpu_ns as f64 / 1e9,
        );
        if self.windows_dropped > 0 {
            said.push_str(&format!(
                "; {} one-second windows dropped to stay within lookback_memory_limit ({:.1} MiB)",
                self.windows_dropped,
                self.memory_limit as f64 / f64::from(1 << 20)
            ));
        }
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelSet;

    #[test]
    fn a_label_set_becomes_sample_labels_without_repeating_the_profiles_own_keys() {
        let set = LabelSet::new([
            ("endpoint", "/a"),
            ("thread", "from-the-set"),
            (WINDOW_LABEL, "from-the-set"),
            ("tenant", "t1"),
        ]);
        let raw = with_set_labels(
            RawSample::new(vec![1], vec![1, 1]).with_label("thread", "worker-1"),
            set,
        );
        assert_eq!(
            raw.labels,
            [
                ("thread".to_string(), "worker-1".to_string()),
                ("endpoint".to_string(), "/a".to_string()),
                ("tenant".to_string(), "t1".to_string()),
            ]
        );
        let unlabelled = with_set_labels(RawSample::new(vec![1], vec![1, 1]), LabelSet::EMPTY);
        assert!(unlabelled.labels.is_empty());
    }
}
