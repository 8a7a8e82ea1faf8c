//! Pruning: pprof's `prune.go`, which removes the frames a profile calls
//! uninteresting (`drop_frames`, minus the exceptions in `keep_frames`)
//! together with everything they called.
//!
//! A heap profile names the allocator (`malloc`, `__rust_alloc`, …), a CPU
//! profile the profiler's own frames. In each sample, looking from the root,
//! the first frame whose function matches after at least one frame that does
//! not match is removed with all the frames beneath it, so the caller of
//! `malloc` becomes the leaf. A match inside a location's inlined lines keeps
//! the location with the lines of its callers only.
//!
//! The rules are decided per location ([`FramePruner::classify`] →
//! [`LocationPrune`]) and applied per sample ([`prune_start`]), so a reader
//! can prune while it aggregates; [`Profile::prune`] and
//! [`Profile::remove_uninteresting`] apply them to the owned model.

use regex::Regex;
use rustc_hash::FxHashMap;

use crate::model::Profile;
use crate::view::{LineView, LocationView, ProfileView};

/// What pruning does to one location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocationPrune {
    /// No line matches: untouched.
    #[default]
    Keep,
    /// Its outermost (out-of-line) function matches: a sample that is cut
    /// here loses this location and everything beneath it.
    Drop,
    /// An inlined line matches: the location keeps only the `keep_lines`
    /// outermost lines (the callers of the match), and a sample cut here ends
    /// with this location.
    DropBeneath {
        /// How many of the outermost lines remain.
        keep_lines: usize,
    },
}

impl LocationPrune {
    /// The lines (callee first, as stored) that remain of a location's
    /// `lines`: all of them but for [`LocationPrune::DropBeneath`].
    #[inline]
    pub fn kept_lines<T>(self, lines: &[T]) -> &[T] {
        match self {
            LocationPrune::DropBeneath { keep_lines } => {
                &lines[lines.len() - keep_lines.min(lines.len())..]
            }
            _ => lines,
        }
    }
}

/// A `drop_frames` / `keep_frames` regular expression that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("{field} is not a valid regular expression: {error}")]
pub struct FrameRegexError {
    /// `"drop_frames"` or `"keep_frames"`.
    pub field: &'static str,
    /// What the regex parser says (part of the message, not a `source`).
    pub error: regex::Error,
}

/// The compiled pair of pruning expressions.
///
/// Function names are simplified before matching as pprof simplifies them:
/// an argument list is cut (`f(int)` → `f`), except in the reserved names
/// `(anonymous namespace)` and `operator()`, and a leading `.` is dropped.
#[derive(Clone, Debug)]
pub struct FramePruner {
    drop: Regex,
    keep: Option<Regex>,
}

impl FramePruner {
    /// Prunes functions matching `drop` and not `keep`, the expressions used
    /// as given (pprof's `Prune(dropRx, keepRx)`: not anchored).
    pub fn new(drop: Regex, keep: Option<Regex>) -> FramePruner {
        FramePruner { drop, keep }
    }

    /// The pruner a profile asks for with its `drop_frames` and `keep_frames`
    /// strings, which must match whole names (`^(…)$`, as pprof's
    /// `RemoveUninteresting` anchors them). `None` when `drop_frames` is empty.
    pub fn from_frames(
        drop_frames: &str,
        keep_frames: &str,
    ) -> Result<Option<FramePruner>, FrameRegexError> {
        if drop_frames.is_empty() {
            return Ok(None);
        }
        let anchored = |field, re: &str| {
            Regex::new(&format!("^({re})$")).map_err(|error| FrameRegexError { field, error })
        };
        let drop = anchored("drop_frames", drop_frames)?;
        let keep = match keep_frames {
            "" => None,
            re => Some(anchored("keep_frames", re)?),
        };
        Ok(Some(FramePruner { drop, keep }))
    }

    /// [`FramePruner::from_frames`] with a decoded profile's own fields.
    pub fn for_view(view: &ProfileView) -> Result<Option<FramePruner>, FrameRegexError> {
        Self::from_frames(view.string(view.drop_frames), view.string(view.keep_frames))
    }

    /// True when frames of the function named `name` are pruned.
    pub fn matches(&self, name: &str) -> bool {
        let name = simplify_function_name(name);
        self.drop.is_match(name) && !self.keep.as_ref().is_some_and(|k| k.is_match(name))
    }

    /// Classifies a location from its lines' function names, callee first as
    /// stored (an empty name never matches). The outermost match decides.
    pub fn classify<'n>(&self, names: impl DoubleEndedIterator<Item = &'n str>) -> LocationPrune {
        for (from_outside, name) in names.rev().enumerate() {
            if !name.is_empty() && self.matches(name) {
                return if from_outside == 0 {
                    LocationPrune::Drop
                } else {
                    LocationPrune::DropBeneath {
                        keep_lines: from_outside,
                    }
                };
            }
        }
        LocationPrune::Keep
    }

    /// Classifies a location of a decoded profile.
    pub fn classify_location(&self, view: &ProfileView, location: &LocationView) -> LocationPrune {
        self.classify(
            view.location_lines(location)
                .iter()
                .map(|l: &LineView| view.string(view.functions[l.function as usize].name)),
        )
    }
}

/// Where a sample's stack starts after pruning: `locations` (leaf first, as
/// indexes into `prune`) lose their first `prune_start(..)` entries. Frames
/// are cut only below an untouched frame, looking from the root, so a stack
/// is never pruned to nothing.
#[inline]
pub fn prune_start(locations: &[u32], prune: &[LocationPrune]) -> usize {
    start_by(locations.len(), |i| prune[locations[i] as usize])
}

/// [`prune_start`] over a stack of `len` frames whose `i`th (leaf first) is
/// pruned as `prune_at(i)` says.
#[inline]
fn start_by(len: usize, prune_at: impl Fn(usize) -> LocationPrune) -> usize {
    let mut found_user = false;
    for i in (0..len).rev() {
        match prune_at(i) {
            LocationPrune::Keep => found_user = true,
            _ if !found_user => {}
            LocationPrune::Drop => return i + 1,
            LocationPrune::DropBeneath { .. } => return i,
        }
    }
    0
}

impl Profile {
    /// Removes, in every sample, the first frame from the root that `pruner`
    /// matches (after at least one frame it does not) and everything beneath
    /// it; a location whose inlined line matches loses that line and its
    /// callees. pprof's `Profile.Prune`.
    ///
    /// Locations are changed in place and samples cut; nothing is deleted
    /// from the tables ([`Profile::compact`] does that).
    pub fn prune(&mut self, pruner: &FramePruner) {
        let function_names: FxHashMap<u64, i64> =
            self.function.iter().map(|f| (f.id, f.name)).collect();
        let mut decided: FxHashMap<u64, LocationPrune> = FxHashMap::default();
        for loc in &mut self.location {
            let strings = &self.string_table;
            let names = loc.line.iter().map(|line| {
                function_names
                    .get(&line.function_id)
                    .and_then(|&n| usize::try_from(n).ok())
                    .and_then(|n| strings.get(n))
                    .map_or("", String::as_str)
            });
            let prune = pruner.classify(names);
            if let LocationPrune::DropBeneath { keep_lines } = prune {
                loc.line.drain(..loc.line.len() - keep_lines);
            }
            if prune != LocationPrune::Keep {
                decided.insert(loc.id, prune);
            }
        }
        if decided.is_empty() {
            return;
        }
        for sample in &mut self.sample {
            let ids = &sample.location_id;
            let start = start_by(ids.len(), |i| {
                decided.get(&ids[i]).copied().unwrap_or_default()
            });
            sample.location_id.drain(..start);
        }
    }

    /// Prunes by the profile's own `drop_frames` / `keep_frames` (anchored
    /// regular expressions), if it has any: pprof's `RemoveUninteresting`.
    pub fn remove_uninteresting(&mut self) -> Result<(), FrameRegexError> {
        let pruner =
            FramePruner::from_frames(self.string(self.drop_frames), self.string(self.keep_frames))?;
        if let Some(pruner) = pruner {
            self.prune(&pruner);
        }
        Ok(())
    }
}

/// Strips a C++-style argument list (`f(int)` → `f`), except in the reserved
/// names `(anonymous namespace)` and `operator()`, and a leading `.` (PPC ELF
/// v1), as pprof's `simplifyFunc`.
fn simplify_function_name(name: &str) -> &str {
    let name = name.strip_prefix('.').unwrap_or(name);
    let mut search = 0;
    while let Some(found) = name[search..].find('(') {
        let at = search + found;
        let rest = &name[at..];
        if rest.starts_with("(anonymous namespace)") {
            search = at + "(anonymous namespace)".len();
        } else if name[..at].ends_with("operator") && rest.starts_with("()") {
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
    use crate::model::{Function, Line, Location, Sample};
    use crate::StringInterner;

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
        assert_eq!(simplify_function_name("plain"), "plain");
    }

    #[test]
    fn samples_are_cut_below_the_first_matching_frame_from_the_root() {
        let pruner = FramePruner::from_frames("malloc|operator new.*", "")
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
        // only matching frames: nothing is cut
        assert_eq!(prune_start(&[0, 2], &prune), 0);
    }

    #[test]
    fn the_profile_fields_are_anchored_and_keep_wins() {
        let pruner = FramePruner::from_frames("alloc", "").unwrap().unwrap();
        assert!(pruner.matches("alloc"));
        assert!(
            !pruner.matches("alloc_zeroed"),
            "anchored: whole names only"
        );
        let unanchored = FramePruner::new(Regex::new("alloc").unwrap(), None);
        assert!(unanchored.matches("alloc_zeroed"));
        let pruner = FramePruner::from_frames("alloc.*", "alloc_keep")
            .unwrap()
            .unwrap();
        assert!(pruner.matches("alloc_zeroed"));
        assert!(!pruner.matches("alloc_keep"));
        assert!(FramePruner::from_frames("", "x").unwrap().is_none());
        let err = FramePruner::from_frames("x", "(").unwrap_err();
        assert_eq!(err.field, "keep_frames");
        assert!(err.to_string().starts_with("keep_frames is not a valid"));
    }

    #[test]
    fn inlined_matches_keep_the_callers_lines() {
        let pruner = FramePruner::from_frames("alloc", "").unwrap().unwrap();
        // lines callee first: alloc inlined into caller
        let prune = pruner.classify(["alloc", "caller"].into_iter());
        assert_eq!(prune, LocationPrune::DropBeneath { keep_lines: 1 });
        assert_eq!(prune.kept_lines(&["alloc", "caller"]), ["caller"]);
        // the outermost match decides: inner, alloc, middle, alloc, outer
        assert_eq!(
            pruner.classify(["inner", "alloc", "middle", "alloc", "outer"].into_iter()),
            LocationPrune::DropBeneath { keep_lines: 1 }
        );
        let pruner = FramePruner::from_frames("alloc", "alloc").unwrap().unwrap();
        assert_eq!(pruner.classify(["alloc"].into_iter()), LocationPrune::Keep);
    }

    /// A profile of the given locations (each a list of function names,
    /// callee first) and samples (location ids, leaf first).
    fn profile(locations: &[&[&str]], samples: &[&[u64]], drop: &str, keep: &str) -> Profile {
        let mut strings = StringInterner::new();
        let mut p = Profile::new();
        let mut names: Vec<&str> = locations.iter().flat_map(|l| l.iter().copied()).collect();
        names.sort();
        names.dedup();
        p.function = names
            .iter()
            .enumerate()
            .map(|(i, n)| Function {
                id: i as u64 + 1,
                name: strings.intern(n),
                ..Default::default()
            })
            .collect();
        p.location = locations
            .iter()
            .enumerate()
            .map(|(i, lines)| Location {
                id: i as u64 + 1,
                line: lines
                    .iter()
                    .map(|n| Line {
                        function_id: names.iter().position(|m| m == n).unwrap() as u64 + 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        p.sample = samples
            .iter()
            .map(|ids| Sample {
                location_id: ids.to_vec(),
                value: vec![1],
                label: vec![],
            })
            .collect();
        p.drop_frames = strings.intern(drop);
        p.keep_frames = strings.intern(keep);
        p.string_table = strings.into_table();
        p
    }

    fn line_names(p: &Profile, id: u64) -> Vec<&str> {
        let loc = p.location.iter().find(|l| l.id == id).unwrap();
        loc.line
            .iter()
            .map(|l| {
                let f = p.function.iter().find(|f| f.id == l.function_id).unwrap();
                p.string(f.name)
            })
            .collect()
    }

    #[test]
    fn remove_uninteresting_applies_pprofs_rules_to_the_model() {
        // 1 malloc, 2 [alloc_inner, alloc (inlined), user_alloc], 3 main,
        // 4 worker, 5 free (kept by keep_frames), 6 std::rt::lang_start.
        let mut p = profile(
            &[
                &["malloc"],
                &["alloc_inner", "alloc", "user_alloc"],
                &["main"],
                &["worker"],
                &["free"],
                &["lang_start"],
            ],
            &[
                // malloc <- worker <- main: cut above malloc.
                &[1, 4, 3],
                // alloc_inner/alloc/user_alloc <- main: the location stays
                // (with user_alloc only) and becomes the leaf.
                &[2, 3],
                // free is kept.
                &[5, 4, 3],
                // A matching root (malloc called directly from the loader)
                // stays: no user frame above it.
                &[1],
                // worker <- malloc <- lang_start: lang_start is a user frame,
                // so malloc (and worker under it) go.
                &[4, 1, 6],
            ],
            "malloc|alloc|free",
            "free",
        );
        p.remove_uninteresting().unwrap();
        let stacks: Vec<&[u64]> = p.sample.iter().map(|s| &s.location_id[..]).collect();
        assert_eq!(
            stacks,
            [&[4, 3][..], &[2, 3], &[5, 4, 3], &[1], &[6]],
            "pruned stacks"
        );
        assert_eq!(line_names(&p, 2), ["user_alloc"]);
        assert_eq!(
            line_names(&p, 1),
            ["malloc"],
            "a Drop location keeps its lines"
        );
    }

    #[test]
    fn a_bad_expression_in_the_profile_is_an_error() {
        let mut p = profile(&[&["a"]], &[&[1]], "(", "");
        let err = p.remove_uninteresting().unwrap_err();
        assert_eq!(err.field, "drop_frames");
        // No drop_frames: nothing happens.
        let mut p = profile(&[&["a"]], &[&[1]], "", "");
        let before = p.clone();
        p.remove_uninteresting().unwrap();
        assert_eq!(p, before);
    }
}
