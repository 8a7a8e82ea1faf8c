//! Filtering samples by frame names: pprof's `FilterSamplesByName`, behind
//! its `-focus`, `-ignore`, `-hide` and `-show` options.
//!
//! A location *matches* an expression when one of its lines' function names
//! or source file names does, or the file of its mapping (the binary) does.
//! A sample is kept when one of its locations matches `focus` (any location
//! does when there is no focus) and none matches `ignore`; samples stay whole.
//! `hide` then removes the matching lines from locations, and `show` keeps
//! only the matching ones; a location left without lines leaves its samples,
//! and a sample left without locations is dropped.
//!
//! Focus and ignore are decided per location ([`NameFilter::classify`] →
//! [`LocationMatch`]) and applied per sample ([`LocationMatch::keeps`]), so a
//! reader can filter while it aggregates; [`Profile::filter_samples_by_name`]
//! applies all four to the owned model.

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{Line, Profile};
use crate::view::{LineView, LocationView, ProfileView};

/// Regular expressions selecting samples and frames by name (unanchored: a
/// match anywhere in a name counts, as in pprof).
#[derive(Clone, Debug, Default)]
pub struct NameFilter {
    /// Keep only samples with a matching location.
    pub focus: Option<Regex>,
    /// Drop samples with a matching location (wins over `focus`).
    pub ignore: Option<Regex>,
    /// Remove matching lines from locations.
    pub hide: Option<Regex>,
    /// Keep only matching lines in locations.
    pub show: Option<Regex>,
}

/// The focus/ignore verdict on one location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum LocationMatch {
    /// Matches neither: it neither keeps nor drops a sample.
    #[default]
    Neither,
    /// Matches `focus` (or there is no focus) and not `ignore`.
    Focused,
    /// Matches `ignore`: its samples are dropped.
    Ignored,
}

impl LocationMatch {
    /// True when a sample through `locations` (indexes into `matches`) is
    /// kept: one location is focused and none is ignored (pprof's
    /// `focusedAndNotIgnored`). A sample without locations is not kept.
    #[inline]
    pub fn keeps(locations: &[u32], matches: &[LocationMatch]) -> bool {
        Self::keeps_all(locations.iter().map(|&l| matches[l as usize]))
    }

    #[inline]
    fn keeps_all(stack: impl Iterator<Item = LocationMatch>) -> bool {
        let mut focused = false;
        for m in stack {
            match m {
                LocationMatch::Ignored => return false,
                LocationMatch::Focused => focused = true,
                LocationMatch::Neither => {}
            }
        }
        focused
    }
}

/// Which of a [`NameFilter`]'s expressions matched anything (pprof returns
/// the same four flags, for its "no matches" warnings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterMatches {
    /// A location matched `focus`, or there is no focus.
    pub focus: bool,
    /// A location matched `ignore`.
    pub ignore: bool,
    /// A location matched `hide`.
    pub hide: bool,
    /// A location kept lines by `show`.
    pub show: bool,
}

/// A location as the name rules see it: its lines' (function name, file
/// name) and its mapping's file.
fn location_matches<'s>(
    re: &Regex,
    mut lines: impl Iterator<Item = Option<(&'s str, &'s str)>>,
    mapping_file: Option<&str>,
) -> bool {
    lines.any(|l| l.is_some_and(|(name, file)| re.is_match(name) || re.is_match(file)))
        || mapping_file.is_some_and(|file| re.is_match(file))
}

impl NameFilter {
    /// True when no expression is set (the filter keeps everything).
    pub fn is_empty(&self) -> bool {
        self.focus.is_none() && self.ignore.is_none() && self.hide.is_none() && self.show.is_none()
    }

    /// True when `focus` or `ignore` is set, so that samples are selected.
    pub fn selects_samples(&self) -> bool {
        self.focus.is_some() || self.ignore.is_some()
    }

    /// The focus/ignore verdict on a location with these lines (function
    /// name and source file name of each, `None` for a line without a
    /// function) and this mapping file (`None` without a mapping).
    pub fn classify<'s, I>(&self, lines: I, mapping_file: Option<&str>) -> LocationMatch
    where
        I: IntoIterator<Item = Option<(&'s str, &'s str)>>,
        I::IntoIter: Clone,
    {
        let lines = lines.into_iter();
        if let Some(re) = &self.ignore {
            if location_matches(re, lines.clone(), mapping_file) {
                return LocationMatch::Ignored;
            }
        }
        match &self.focus {
            Some(re) if !location_matches(re, lines, mapping_file) => LocationMatch::Neither,
            _ => LocationMatch::Focused,
        }
    }

    /// [`NameFilter::classify`] for a location of a decoded profile, given
    /// the lines it has (all of [`ProfileView::location_lines`], or what
    /// pruning left of them: [`LocationPrune::kept_lines`](crate::LocationPrune::kept_lines)).
    pub fn classify_location(
        &self,
        view: &ProfileView,
        location: &LocationView,
        lines: &[LineView],
    ) -> LocationMatch {
        let lines = lines.iter().map(|l| {
            let f = &view.functions[l.function as usize];
            Some((view.string(f.name), view.string(f.filename)))
        });
        let mapping = location
            .mapping
            .map(|m| view.string(view.mappings[m as usize].filename));
        self.classify(lines, mapping)
    }
}

impl Profile {
    /// Keeps the samples with a location matching `filter.focus` and none
    /// matching `filter.ignore`, then removes the lines `filter.hide` matches
    /// and those `filter.show` does not; locations left without lines leave
    /// their samples, samples left without locations are dropped. pprof's
    /// `Profile.FilterSamplesByName`; nothing happens when `filter` is empty.
    ///
    /// Locations are changed in place; nothing is deleted from the tables
    /// ([`Profile::compact`] does that).
    pub fn filter_samples_by_name(&mut self, filter: &NameFilter) -> FilterMatches {
        let mut found = FilterMatches::default();
        if filter.is_empty() {
            found.focus = true; // no focus: everything is in focus
            return found;
        }
        let functions: FxHashMap<u64, (i64, i64)> = self
            .function
            .iter()
            .map(|f| (f.id, (f.name, f.filename)))
            .collect();
        let mappings: FxHashMap<u64, i64> =
            self.mapping.iter().map(|m| (m.id, m.filename)).collect();
        let strings = &self.string_table;
        let string = |i: i64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| strings.get(i))
                .map_or("", String::as_str)
        };
        let names = |line: &Line| {
            functions
                .get(&line.function_id)
                .map(|&(name, file)| (string(name), string(file)))
        };
        // The lines that match `re`, or all of them when the binary does.
        let matching = |re: &Regex, lines: &[Line], mapping_file: Option<&str>| -> Vec<bool> {
            if mapping_file.is_some_and(|f| re.is_match(f)) {
                return vec![true; lines.len()];
            }
            lines
                .iter()
                .map(|l| names(l).is_some_and(|(n, f)| re.is_match(n) || re.is_match(f)))
                .collect()
        };

        let mut verdicts: FxHashMap<u64, LocationMatch> = FxHashMap::default();
        let mut hidden: FxHashSet<u64> = FxHashSet::default();
        let mut new_lines: Vec<(usize, Vec<Line>)> = Vec::new();
        for (index, loc) in self.location.iter().enumerate() {
            let mapping_file = mappings.get(&loc.mapping_id).map(|&f| string(f));
            let verdict = filter.classify(loc.line.iter().map(names), mapping_file);
            match verdict {
                LocationMatch::Ignored => found.ignore = true,
                LocationMatch::Focused => found.focus = true,
                LocationMatch::Neither => {}
            }
            verdicts.insert(loc.id, verdict);

            let mut lines = std::borrow::Cow::Borrowed(&loc.line[..]);
            if let Some(re) = &filter.hide {
                if location_matches(re, lines.iter().map(names), mapping_file) {
                    found.hide = true;
                    let hit = matching(re, &lines, mapping_file);
                    let kept = lines.iter().zip(&hit).filter(|(_, &h)| !h);
                    lines = kept.map(|(l, _)| *l).collect::<Vec<_>>().into();
                    if lines.is_empty() {
                        hidden.insert(loc.id);
                    }
                }
            }
            if let Some(re) = &filter.show {
                let hit = matching(re, &lines, mapping_file);
                // Lines without a function are not judged: they stay.
                let kept: Vec<Line> = lines
                    .iter()
                    .zip(&hit)
                    .filter(|(l, &h)| h || names(l).is_none())
                    .map(|(l, _)| *l)
                    .collect();
                if kept.is_empty() {
                    hidden.insert(loc.id);
                } else {
                    found.show = true;
                }
                lines = kept.into();
            }
            if let std::borrow::Cow::Owned(lines) = lines {
                new_lines.push((index, lines));
            }
        }
        for (index, lines) in new_lines {
            self.location[index].line = lines;
        }

        self.sample.retain_mut(|sample| {
            let stack = sample.location_id.iter();
            let verdict = |id: &u64| verdicts.get(id).copied().unwrap_or_default();
            if !LocationMatch::keeps_all(stack.map(verdict)) {
                return false;
            }
            if !hidden.is_empty() {
                sample.location_id.retain(|id| !hidden.contains(id));
                if sample.location_id.is_empty() {
                    return false;
                }
            }
            true
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Function, Location, Mapping, Sample, ValueType};
    use crate::StringInterner;

    fn re(s: &str) -> Option<Regex> {
        Some(Regex::new(s).unwrap())
    }

    /// Locations (lines callee first, as (function, file); an optional
    /// mapping file) and samples (location ids, leaf first; value = index).
    /// A location: lines (function, file), callee first; a mapping file.
    type TestLocation<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);

    fn profile(locations: &[TestLocation], samples: &[&[u64]]) -> Profile {
        let mut strings = StringInterner::new();
        let mut p = Profile::new();
        for (i, (lines, mapping)) in locations.iter().enumerate() {
            let id = i as u64 + 1;
            let mut loc = Location {
                id,
                ..Default::default()
            };
            for (name, file) in lines.iter() {
                let fid = p.function.len() as u64 + 1;
                p.function.push(Function {
                    id: fid,
                    name: strings.intern(name),
                    filename: strings.intern(file),
                    ..Default::default()
                });
                loc.line.push(Line {
                    function_id: fid,
                    ..Default::default()
                });
            }
            if let Some(file) = mapping {
                p.mapping.push(Mapping {
                    id,
                    filename: strings.intern(file),
                    ..Default::default()
                });
                loc.mapping_id = id;
            }
            p.location.push(loc);
        }
        p.sample = samples
            .iter()
            .enumerate()
            .map(|(i, ids)| Sample {
                location_id: ids.to_vec(),
                value: vec![i as i64],
                label: vec![],
            })
            .collect();
        p.sample_type = vec![ValueType {
            r#type: strings.intern("samples"),
            unit: strings.intern("count"),
        }];
        p.string_table = strings.into_table();
        p
    }

    /// The kept samples, by their values.
    fn kept(p: &Profile) -> Vec<i64> {
        p.sample.iter().map(|s| s.value[0]).collect()
    }

    /// 1 main, 2 handler (in handlers.rs), 3 db::query, 4 memcpy in libc,
    /// 5 [inlined helper, quote].
    fn fixture() -> Profile {
        profile(
            &[
                (&[("main", "main.rs")], None),
                (&[("handler", "handlers.rs")], None),
                (&[("db::query", "db.rs")], None),
                (&[("memcpy", "")], Some("/lib/libc.so.6")),
                (&[("helper", "pricing.rs"), ("quote", "pricing.rs")], None),
            ],
            &[
                &[3, 2, 1],    // 0
                &[4, 3, 2, 1], // 1
                &[5, 2, 1],    // 2
                &[4, 5, 1],    // 3
                &[1],          // 4
                &[],           // 5: no locations
            ],
        )
    }

    #[test]
    fn focus_keeps_whole_samples_through_a_match() {
        let mut p = fixture();
        let m = p.filter_samples_by_name(&NameFilter {
            focus: re("db::"),
            ..Default::default()
        });
        assert_eq!(kept(&p), [0, 1]);
        assert_eq!(p.sample[1].location_id, [4, 3, 2, 1], "stacks stay whole");
        assert!(m.focus && !m.ignore);
    }

    #[test]
    fn file_names_and_binaries_match_too() {
        let mut p = fixture();
        p.filter_samples_by_name(&NameFilter {
            focus: re(r"pricing\.rs"),
            ..Default::default()
        });
        assert_eq!(kept(&p), [2, 3]);
        let mut p = fixture();
        p.filter_samples_by_name(&NameFilter {
            focus: re(r"libc\.so"),
            ..Default::default()
        });
        assert_eq!(kept(&p), [1, 3]);
    }

    #[test]
    fn ignore_wins_and_empty_stacks_go() {
        let mut p = fixture();
        let m = p.filter_samples_by_name(&NameFilter {
            focus: re("handler"),
            ignore: re("memcpy"),
            ..Default::default()
        });
        assert_eq!(kept(&p), [0, 2]);
        assert!(m.focus && m.ignore);
        // Ignore alone: everything else is in focus, except the sample
        // without locations, which nothing focuses.
        let mut p = fixture();
        p.filter_samples_by_name(&NameFilter {
            ignore: re("memcpy"),
            ..Default::default()
        });
        assert_eq!(kept(&p), [0, 2, 4]);
    }

    #[test]
    fn a_focus_matching_nothing_drops_everything_and_says_so() {
        let mut p = fixture();
        let m = p.filter_samples_by_name(&NameFilter {
            focus: re("nothing"),
            ..Default::default()
        });
        assert!(p.sample.is_empty());
        assert_eq!(m, FilterMatches::default());
    }

    #[test]
    fn hide_removes_lines_and_then_locations() {
        let mut p = fixture();
        let m = p.filter_samples_by_name(&NameFilter {
            hide: re("helper|main"),
            ..Default::default()
        });
        assert!(m.hide && m.focus);
        // Location 5 keeps quote; location 1 (main) is gone from every
        // stack; sample 4 (main only) and 5 (empty) are dropped.
        assert_eq!(kept(&p), [0, 1, 2, 3]);
        assert_eq!(p.sample[0].location_id, [3, 2]);
        assert_eq!(p.sample[2].location_id, [5, 2]);
        assert_eq!(p.location[4].line.len(), 1);
        assert_eq!(p.location[4].line[0].function_id, 6, "quote");
        // A matching binary hides the whole location.
        let mut p = fixture();
        p.filter_samples_by_name(&NameFilter {
            hide: re("libc"),
            ..Default::default()
        });
        assert_eq!(p.sample[1].location_id, [3, 2, 1]);
        assert_eq!(p.sample[3].location_id, [5, 1]);
    }

    #[test]
    fn show_keeps_only_matching_lines() {
        let mut p = fixture();
        let m = p.filter_samples_by_name(&NameFilter {
            show: re("quote|handler"),
            ..Default::default()
        });
        assert!(m.show);
        // Locations 2 and 5 remain (5 with quote only); samples keep just
        // those; samples with neither are dropped.
        assert_eq!(kept(&p), [0, 1, 2, 3]);
        assert_eq!(p.sample[0].location_id, [2]);
        assert_eq!(p.sample[2].location_id, [5, 2]);
        assert_eq!(p.sample[3].location_id, [5]);
        assert_eq!(p.location[4].line.len(), 1);
    }

    #[test]
    fn view_classification_agrees_with_the_model() {
        let p = fixture();
        let bytes = p.encode();
        let view = ProfileView::decode(&bytes).unwrap();
        let filter = NameFilter {
            focus: re("handler|libc"),
            ignore: re("quote"),
            ..Default::default()
        };
        let matches: Vec<LocationMatch> = view
            .locations
            .iter()
            .map(|l| filter.classify_location(&view, l, view.location_lines(l)))
            .collect();
        use LocationMatch::*;
        assert_eq!(matches, [Neither, Focused, Neither, Focused, Ignored]);
        let kept_by_view: Vec<i64> = view
            .samples()
            .filter(|s| LocationMatch::keeps(s.locations, &matches))
            .map(|s| s.values[0])
            .collect();
        let mut p = p;
        p.filter_samples_by_name(&filter);
        assert_eq!(kept_by_view, kept(&p));
        assert_eq!(kept_by_view, [0, 1]);
    }
}
