//! The figures `benches/axum_stacks.sh` reports, computed from a CPU profile
//! the agent wrote (`firewatch_profile::Profile`, leaf-first locations).
//!
//! - **worker loop**: of the samples (`samples/count`) whose `thread` label is
//!   a tokio worker, the share with a frame named [`WORKER_LOOP`] anywhere in
//!   the stack (any line of any location, so inlined frames count too).
//! - **libc leaf alone**: of all samples, the share whose stack is exactly one
//!   location, in a mapping whose file is libc (`libc.so.6`, `libc-2.x.so`),
//!   with the address inside that mapping: a libc function whose caller was
//!   lost.
//! - **median depth**: the sample-weighted median number of locations per
//!   stack (all samples; the truncated marker counts as one).
//! - **truncated**: the share of samples whose root is [`TRUNCATED`], and the
//!   profile's own comment about it.

use std::collections::HashMap;
use std::fmt::Write as _;

use firewatch_profile::{Location, Profile};

/// The function every tokio multi-thread worker runs for its whole life.
pub const WORKER_LOOP: &str = "tokio::runtime::scheduler::multi_thread::worker::run";
/// The root the agent puts above stacks it had to cut.
pub const TRUNCATED: &str = "[firewatch: truncated stack]";
/// tokio's default worker thread name: `tokio-rt-worker` since tokio 1.50,
/// `tokio-runtime-worker` before, which the kernel keeps as `tokio-runtime-w`
/// (`comm`, at most 15 bytes), the name the agent labels. tokio's blocking
/// pool threads have the same name; this service starts none (no
/// `spawn_blocking`, no `tokio::fs`).
pub const WORKER_THREADS: [&str; 2] = ["tokio-rt-worker", "tokio-runtime-w"];

#[derive(Debug, Default)]
pub struct Figures {
    pub total_samples: i64,
    pub worker_samples: i64,
    pub worker_with_loop: i64,
    pub libc_leaf_alone: i64,
    pub truncated: i64,
    pub median_depth: usize,
    pub median_worker_depth: usize,
    /// `samples/count` per `thread` label, largest first.
    pub threads: Vec<(String, i64)>,
    /// Worker samples without [`WORKER_LOOP`]: their outermost frame.
    pub outermost_without_loop: Vec<(String, i64)>,
    /// Worker samples without [`WORKER_LOOP`]: their leaf frame.
    pub leaf_without_loop: Vec<(String, i64)>,
    /// Depth (locations) of worker samples without [`WORKER_LOOP`].
    pub depth_without_loop: Vec<(String, i64)>,
    /// Samples that are a libc leaf alone: that leaf.
    pub libc_alone_functions: Vec<(String, i64)>,
    pub comments: Vec<String>,
}

fn pct(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn is_libc_file(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.starts_with("libc.so") || (base.starts_with("libc-") && base.ends_with(".so"))
}

fn location(p: &Profile, id: u64) -> &Location {
    &p.location[(id - 1) as usize]
}

/// Function names of a location, innermost (inlined) first.
fn names<'p>(p: &'p Profile, loc: &'p Location) -> impl Iterator<Item = &'p str> + 'p {
    loc.line
        .iter()
        .map(move |l| p.string(p.function[(l.function_id - 1) as usize].name))
}

/// `name` or, for an address without one, `file+0xoffset`; `outermost`
/// picks the out-of-line function of an inlined chain, else the innermost.
fn describe(p: &Profile, loc: &Location, outermost: bool) -> String {
    let named = if outermost {
        names(p, loc).last()
    } else {
        names(p, loc).next()
    };
    if let Some(n) = named {
        return n.to_string();
    }
    if loc.mapping_id == 0 {
        return format!("[no mapping] {:#x}", loc.address);
    }
    let m = &p.mapping[(loc.mapping_id - 1) as usize];
    let file = p.string(m.filename);
    let base = file.rsplit('/').next().unwrap_or(file);
    format!(
        "[{base}]+{:#x}",
        loc.address - m.memory_start + m.file_offset
    )
}

fn weighted_median(mut v: Vec<(usize, i64)>) -> usize {
    v.retain(|&(_, w)| w > 0);
    v.sort_unstable();
    let total: i64 = v.iter().map(|&(_, w)| w).sum();
    let mut seen = 0;
    for (d, w) in v {
        seen += w;
        if 2 * seen >= total {
            return d;
        }
    }
    0
}

fn ranked(m: HashMap<String, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

pub fn compute(p: &Profile) -> Figures {
    let count = p
        .sample_type
        .iter()
        .position(|t| p.string(t.r#type) == "samples")
        .unwrap_or(0);
    let thread_key = p.string_table.iter().position(|s| s == "thread");
    let libc: Vec<bool> = p
        .mapping
        .iter()
        .map(|m| is_libc_file(p.string(m.filename)))
        .collect();

    let mut f = Figures {
        comments: p.comment.iter().map(|&c| p.string(c).to_string()).collect(),
        ..Figures::default()
    };
    let (mut depths, mut worker_depths) = (Vec::new(), Vec::new());
    let mut threads: HashMap<String, i64> = HashMap::new();
    let mut outermost: HashMap<String, i64> = HashMap::new();
    let mut leaves: HashMap<String, i64> = HashMap::new();
    let mut depth_hist: HashMap<String, i64> = HashMap::new();
    let mut libc_alone: HashMap<String, i64> = HashMap::new();

    for s in &p.sample {
        let n = s.value.get(count).copied().unwrap_or(0);
        if n == 0 {
            continue; // `[firewatch: unsampled]` carries CPU time, no samples
        }
        let thread = thread_key
            .and_then(|k| s.label.iter().find(|l| l.key == k as i64))
            .map_or("(no thread label)", |l| p.string(l.str));
        *threads.entry(thread.to_string()).or_default() += n;
        f.total_samples += n;
        depths.push((s.location_id.len(), n));

        let root = s.location_id.last().map(|&id| location(p, id));
        if root.is_some_and(|r| names(p, r).any(|name| name == TRUNCATED)) {
            f.truncated += n;
        }
        if let [only] = s.location_id[..] {
            let loc = location(p, only);
            if loc.mapping_id != 0 {
                let m = &p.mapping[(loc.mapping_id - 1) as usize];
                if libc[(loc.mapping_id - 1) as usize]
                    && (m.memory_start..m.memory_limit).contains(&loc.address)
                {
                    f.libc_leaf_alone += n;
                    *libc_alone.entry(describe(p, loc, false)).or_default() += n;
                }
            }
        }

        if !WORKER_THREADS.contains(&thread) {
            continue;
        }
        f.worker_samples += n;
        worker_depths.push((s.location_id.len(), n));
        let reaches = s
            .location_id
            .iter()
            .any(|&id| names(p, location(p, id)).any(|name| name == WORKER_LOOP));
        if reaches {
            f.worker_with_loop += n;
        } else {
            if let Some(r) = root {
                *outermost.entry(describe(p, r, true)).or_default() += n;
            }
            if let Some(&leaf) = s.location_id.first() {
                *leaves
                    .entry(describe(p, location(p, leaf), false))
                    .or_default() += n;
            }
            *depth_hist
                .entry(format!("{} locations", s.location_id.len()))
                .or_default() += n;
        }
    }
    f.median_depth = weighted_median(depths);
    f.median_worker_depth = weighted_median(worker_depths);
    f.threads = ranked(threads);
    f.outermost_without_loop = ranked(outermost);
    f.leaf_without_loop = ranked(leaves);
    f.depth_without_loop = ranked(depth_hist);
    f.libc_alone_functions = ranked(libc_alone);
    f
}

impl Figures {
    pub fn worker_loop_pct(&self) -> f64 {
        pct(self.worker_with_loop, self.worker_samples)
    }
    pub fn libc_alone_pct(&self) -> f64 {
        pct(self.libc_leaf_alone, self.total_samples)
    }
    pub fn truncated_pct(&self) -> f64 {
        pct(self.truncated, self.total_samples)
    }

    /// One machine-readable line (the script greps `^FIGURES `).
    pub fn summary_line(&self) -> String {
        format!(
            "FIGURES total_samples={} worker_samples={} worker_loop_pct={:.2} libc_alone_pct={:.3} \
             median_depth={} median_worker_depth={} truncated_pct={:.2}",
            self.total_samples,
            self.worker_samples,
            self.worker_loop_pct(),
            self.libc_alone_pct(),
            self.median_depth,
            self.median_worker_depth,
            self.truncated_pct()
        )
    }

    /// The summary line, then what a reader needs to judge it.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.summary_line());
        let _ = writeln!(
            out,
            "worker samples ({}) with `{WORKER_LOOP}`: {} of {} ({:.2}%)",
            WORKER_THREADS.join(" or "),
            self.worker_with_loop,
            self.worker_samples,
            self.worker_loop_pct()
        );
        let _ = writeln!(
            out,
            "samples that are a libc leaf alone: {} of {} ({:.3}%)",
            self.libc_leaf_alone,
            self.total_samples,
            self.libc_alone_pct()
        );
        let _ = writeln!(
            out,
            "median depth: {} locations (tokio workers: {}); truncated: {} ({:.2}%)",
            self.median_depth,
            self.median_worker_depth,
            self.truncated,
            self.truncated_pct()
        );
        let list = |out: &mut String, title: &str, v: &[(String, i64)], total: i64| {
            if v.is_empty() {
                return;
            }
            let _ = writeln!(out, "{title}:");
            for (name, n) in v.iter().take(10) {
                let _ = writeln!(out, "  {n:>7} {:>6.2}%  {name}", pct(*n, total));
            }
        };
        list(
            &mut out,
            "samples per thread",
            &self.threads,
            self.total_samples,
        );
        let missing = self.worker_samples - self.worker_with_loop;
        list(
            &mut out,
            "worker samples without the worker loop: 10 most common outermost frames",
            &self.outermost_without_loop,
            missing,
        );
        list(
            &mut out,
            "worker samples without the worker loop: 10 most common leaf frames",
            &self.leaf_without_loop,
            missing,
        );
        list(
            &mut out,
            "worker samples without the worker loop: depth",
            &self.depth_without_loop,
            missing,
        );
        list(
            &mut out,
            "libc leaf alone: functions",
            &self.libc_alone_functions,
            self.libc_leaf_alone,
        );
        let _ = writeln!(out, "profile comments:");
        for c in &self.comments {
            let _ = writeln!(out, "  {c}");
        }
        out
    }
}

/// The `n` heaviest stacks of tokio worker samples, one frame a line, root
/// last (inlined frames marked), for looking at what the figures count.
pub fn worker_stacks(p: &Profile, n: usize) -> String {
    let count = p
        .sample_type
        .iter()
        .position(|t| p.string(t.r#type) == "samples")
        .unwrap_or(0);
    let thread_key = p.string_table.iter().position(|s| s == "thread");
    let mut stacks: Vec<_> = p
        .sample
        .iter()
        .filter(|s| {
            thread_key
                .and_then(|k| s.label.iter().find(|l| l.key == k as i64))
                .is_some_and(|l| WORKER_THREADS.contains(&p.string(l.str)))
        })
        .collect();
    stacks.sort_by_key(|s| std::cmp::Reverse(s.value.get(count).copied().unwrap_or(0)));
    let mut out = String::new();
    for s in stacks.into_iter().take(n) {
        let _ = writeln!(
            out,
            "{} samples, {} locations:",
            s.value.get(count).copied().unwrap_or(0),
            s.location_id.len()
        );
        for &id in &s.location_id {
            let loc = location(p, id);
            let mut lines: Vec<&str> = names(p, loc).collect();
            if lines.is_empty() {
                let _ = writeln!(out, "  {:#014x} {}", loc.address, describe(p, loc, false));
                continue;
            }
            let last = lines.pop().unwrap_or_default();
            for inlined in lines {
                let _ = writeln!(out, "  {:14} (inlined) {inlined}", "");
            }
            let _ = writeln!(out, "  {:#014x} {last}", loc.address);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_file_names() {
        assert!(is_libc_file("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_libc_file("/lib/libc-2.31.so"));
        assert!(!is_libc_file("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"));
        assert!(!is_libc_file("/usr/lib/libcap.so.2"));
    }

    #[test]
    fn median_is_weighted() {
        assert_eq!(weighted_median(vec![(3, 1), (10, 5), (2, 1)]), 10);
        assert_eq!(weighted_median(vec![(1, 1), (2, 1)]), 1);
        assert_eq!(weighted_median(vec![]), 0);
    }
}
