//! `drop_frames` / `keep_frames`, honoured as pprof's `Prune` honours them.
//!
//! A profile may name frames that are uninteresting (the allocator inside a
//! heap profile, the profiler inside a CPU profile). pprof removes, in each
//! sample, the first matching frame found from the root (after at least one
//! non-matching frame) and everything it called.

use regex::Regex;

/// What pruning does to one location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocationPrune {
    /// Untouched.
    #[default]
    Keep,
    /// Its outermost line matched: a sample is cut just above it.
    Drop,
    /// An inner (inlined) line matched: the location keeps only its callers'
    /// lines, and a sample is cut just below it.
    DropBeneath { keep_lines: usize },
}

/// The compiled `drop_frames`/`keep_frames` pair (anchored, as pprof anchors them).
pub struct FramePruner {
    drop: Regex,
    keep: Option<Regex>,
}

impl FramePruner {
    pub fn new(
        drop_frames: &str,
        keep_frames: &str,
    ) -> Result<Option<FramePruner>, (&'static str, regex::Error)> {
        if drop_frames.is_empty() {
            return Ok(None);
        }
        let drop = Regex::new(&format!("^({drop_frames})$")).map_err(|e| ("drop_frames", e))?;
        let keep = if keep_frames.is_empty() {
            None
        } else {
            Some(Regex::new(&format!("^({keep_frames})$")).map_err(|e| ("keep_frames", e))?)
        };
        Ok(Some(FramePruner { drop, keep }))
    }

    fn prunes(&self, function_name: &str) -> bool {
        let name = simplify_function_name(function_name);
        self.drop.is_match(name) && !self.keep.as_ref().is_some_and(|k| k.is_match(name))
    }

    /// Classifies a location from its lines' function names (callee first).
    pub fn classify<'n>(
        &self,
        names: impl DoubleEndedIterator<Item = &'n str> + ExactSizeIterator,
    ) -> LocationPrune {
        let count = names.len();
        // From the outermost caller inwards; the first match decides.
        for (from_outside, name) in names.rev().enumerate() {
            if !name.is_empty() && self.prunes(name) {
                let i = count - 1 - from_outside;
                return if from_outside == 0 {
                    LocationPrune::Drop
                } else {
                    LocationPrune::DropBeneath {
                        keep_lines: count - 1 - i,
                    }
                };
            }
        }
        LocationPrune::Keep
    }
}

/// Where a sample's stack (leaf first) starts after pruning: frames before the
/// returned index are removed. Frames are only cut after at least one
/// untouched frame from the root, so a stack is never pruned to nothing.
pub fn prune_start(locations: &[u32], prune: &[LocationPrune]) -> usize {
    let mut found_user = false;
    for i in (0..locations.len()).rev() {
        match prune[locations[i] as usize] {
            LocationPrune::Keep => found_user = true,
            _ if !found_user => {}
            LocationPrune::Drop => return i + 1,
            LocationPrune::DropBeneath { .. } => return i,
        }
    }
    0
}

/// Strips a C++-style argument list (`f(int)` → `f`), except in the reserved
/// names `(anonymous namespace)` and `operator()`, as pprof's `simplifyFunc`.
fn simplify_function_name(name: &str) -> &str {
    let name = name.strip_prefix('.').unwrap_or(name);
    let mut search = 0;
    while let Some(found) = name[search..].find('(') {
        let at = search + found;
        let rest = &name[at..];
        if rest.starts_with("(anonymous namespace)") {
            search = at + "(anonymous namespace)".len();
        } else if at >= "operator".len()
            && name[..at].ends_with("operator")
            && rest.starts_with("()")
        {
            search = at + 2;
        } else {
            return &name[..at];
        }
        if search >= name.len() {
            break;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplification_keeps_reserved_names() {
        assert_eq!(simplify_function_name("foo(int, char)"), "foo");
        assert_eq!(
            simplify_function_name("(anonymous namespace)::bar(int)"),
            "(anonymous namespace)::bar"
        );
        assert_eq!(
            simplify_function_name("Foo::operator()(int)"),
            "Foo::operator()"
        );
        assert_eq!(simplify_function_name(".ppc_func"), "ppc_func");
    }

    #[test]
    fn samples_are_cut_below_the_first_matching_frame_from_the_root() {
        let pruner = FramePruner::new("malloc|operator new.*", "")
            .unwrap()
            .unwrap();
        let prune: Vec<LocationPrune> = ["malloc", "main", "operator new(unsigned long)", "helper"]
            .iter()
            .map(|n| pruner.classify([*n].into_iter()))
            .collect();
        assert_eq!(
            prune,
            [
                LocationPrune::Drop,
                LocationPrune::Keep,
                LocationPrune::Drop,
                LocationPrune::Keep
            ]
        );
        // leaf-first stack: malloc <- operator new <- helper <- main
        assert_eq!(prune_start(&[0, 2, 3, 1], &prune), 2);
        // a matching root frame is kept when no user frame precedes it
        assert_eq!(prune_start(&[1, 0], &prune), 0);
        assert_eq!(prune_start(&[3, 0], &prune), 0);
    }

    #[test]
    fn inlined_matches_keep_the_callers_lines() {
        let pruner = FramePruner::new("alloc", "").unwrap().unwrap();
        // lines callee first: alloc inlined into caller
        assert_eq!(
            pruner.classify(["alloc", "caller"].into_iter()),
            LocationPrune::DropBeneath { keep_lines: 1 }
        );
        let pruner = FramePruner::new("alloc", "alloc").unwrap().unwrap();
        assert_eq!(pruner.classify(["alloc"].into_iter()), LocationPrune::Keep);
    }
}
