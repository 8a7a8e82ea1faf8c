//! Sample labels, which pprof calls tags: `--tag-focus`/`--tag-ignore`
//! filters with the rules of pprof's `-tagfocus`/`-tagignore`, and the
//! label lookups behind `--group-by`.
//!
//! A filter is `[KEY=]VALUE`. VALUE is either a comma-separated list of
//! regular expressions (unanchored, as Go's `MatchString`) or, when it reads
//! as one, a numeric range: `32kb`, `4mb:`, `:64kb`, `12kb:64mb`. With a
//! KEY, a sample matches when one of its values for KEY matches one of the
//! expressions (or lies in the range). Without one, every expression must
//! match some `key:value` of the sample (pprof's historical rule), or any
//! numeric label must lie in the range.
//!
//! Labels are matched once per distinct (key, value) string pair of an
//! input, not once per sample: a million samples over twenty endpoints cost
//! twenty regex evaluations.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use firewatch_profile::{LabelView, ProfileView, SampleBlock};
use rayon::prelude::*;
use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::units::scale;

/// A parsed `--tag-focus`/`--tag-ignore` expression.
#[derive(Clone, Debug)]
pub struct TagFilter {
    spec: String,
    key: Option<String>,
    matcher: Matcher,
}

#[derive(Clone, Debug)]
enum Matcher {
    /// At most 64 expressions (more would not fit the per-pair bit mask).
    Regexes(Vec<Regex>),
    Range(NumericRange),
}

/// A range of numeric label values, in `unit` (as pprof's
/// `measurement.Scale` names it).
#[derive(Clone, Debug)]
pub(crate) struct NumericRange {
    unit: String,
    min: Option<f64>,
    max: Option<f64>,
}

/// Why a tag filter could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagFilterError {
    /// The expression is empty.
    Empty,
    /// One of the comma-separated expressions is not a valid regex.
    Regex {
        /// The expression.
        expression: String,
        /// The regex parser's message.
        message: String,
    },
    /// More than 64 comma-separated expressions.
    TooManyExpressions,
}

impl fmt::Display for TagFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagFilterError::Empty => f.write_str("empty tag filter"),
            TagFilterError::Regex {
                expression,
                message,
            } => write!(f, "{expression:?} is not a regular expression: {message}"),
            TagFilterError::TooManyExpressions => {
                f.write_str("more than 64 comma-separated expressions")
            }
        }
    }
}

impl std::error::Error for TagFilterError {}

impl FromStr for TagFilter {
    type Err = TagFilterError;

    fn from_str(spec: &str) -> Result<TagFilter, TagFilterError> {
        TagFilter::parse(spec)
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl TagFilter {
    /// Parses `[KEY=]VALUE` as pprof's `-tagfocus` does.
    pub fn parse(spec: &str) -> Result<TagFilter, TagFilterError> {
        if spec.is_empty() {
            return Err(TagFilterError::Empty);
        }
        let (key, value) = match spec.split_once('=') {
            Some((key, value)) => (Some(key.to_string()), value),
            None => (None, spec),
        };
        let matcher = match NumericRange::parse(value) {
            Some(range) => Matcher::Range(range),
            None => {
                let regexes = value
                    .split(',')
                    .map(|e| {
                        Regex::new(e).map_err(|error| TagFilterError::Regex {
                            expression: e.to_string(),
                            message: error.to_string(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if regexes.len() > 64 {
                    return Err(TagFilterError::TooManyExpressions);
                }
                Matcher::Regexes(regexes)
            }
        };
        Ok(TagFilter {
            spec: spec.to_string(),
            key,
            matcher,
        })
    }

    /// Whether the value reads as a numeric range (pprof says so on
    /// standard error: "Interpreted '…' as range, not regexp").
    pub fn is_numeric_range(&self) -> bool {
        matches!(self.matcher, Matcher::Range(_))
    }

    /// The filter for one input, with its label strings evaluated.
    pub(crate) fn for_input(&self, view: &ProfileView) -> InputTagFilter {
        let key_index = self
            .key
            .as_deref()
            .map(|k| view.strings().iter().position(|s| s == k));
        match &self.matcher {
            Matcher::Regexes(regexes) => {
                let mut masks = FxHashMap::default();
                if key_index != Some(None) {
                    for (key, value) in distinct_string_labels(view) {
                        let text = match key_index {
                            Some(Some(k)) if k as u32 == key => view.string(value).to_string(),
                            Some(_) => continue,
                            None => format!("{}:{}", view.string(key), view.string(value)),
                        };
                        let mask = regexes
                            .iter()
                            .enumerate()
                            .filter(|(_, re)| re.is_match(&text))
                            .fold(0u64, |m, (i, _)| m | 1 << i);
                        if mask != 0 {
                            masks.insert((key, value), mask);
                        }
                    }
                }
                let all = if regexes.len() == 64 {
                    u64::MAX
                } else {
                    (1u64 << regexes.len()) - 1
                };
                InputTagFilter::Strings {
                    masks,
                    // With a key, one expression matching is enough.
                    required: if self.key.is_some() { 0 } else { all },
                }
            }
            Matcher::Range(range) => {
                let units = numeric_label_units(view);
                let units = units
                    .into_iter()
                    .filter(|(key, _)| match key_index {
                        Some(Some(k)) => *key == k as u32,
                        Some(None) => false,
                        None => true,
                    })
                    .collect();
                InputTagFilter::Numbers {
                    range: range.clone(),
                    units,
                }
            }
        }
    }
}

impl NumericRange {
    /// pprof's `parseTagFilterRange`: at most two `[+-]digits[letters]`
    /// matches, which must make up the whole value as `A`, `A:`, `:A` or
    /// `A:B` (with B convertible to A's unit); anything else is a regex.
    fn parse(value: &str) -> Option<NumericRange> {
        static NUMBER: OnceLock<Regex> = OnceLock::new();
        let number =
            NUMBER.get_or_init(|| Regex::new("([+-]?[0-9]+)([A-Za-z]+)?").expect("valid regex"));
        let found: Vec<(&str, i64, &str)> = number
            .captures_iter(value)
            .take(2)
            .map(|c| {
                let whole = c.get(0).expect("group 0").as_str();
                let n = c[1].parse::<i64>().ok();
                let unit = c.get(2).map_or("", |u| u.as_str());
                n.map(|n| (whole, n, unit))
            })
            .collect::<Option<_>>()?;
        let &(first, n, unit) = found.first()?;
        let (v, unit) = scale(n, unit, unit);
        let range = |min, max| {
            Some(NumericRange {
                unit: unit.clone(),
                min,
                max,
            })
        };
        if found.len() == 1 {
            return if value == first {
                range(Some(v), Some(v))
            } else if value.strip_suffix(':') == Some(first) {
                range(Some(v), None)
            } else if value.strip_prefix(':') == Some(first) {
                range(None, Some(v))
            } else {
                None
            };
        }
        let (second, n2, unit2) = found[1];
        if value != format!("{first}:{second}") {
            return None;
        }
        let (v2, u2) = scale(n2, unit2, &unit);
        if u2 != unit {
            return None;
        }
        range(Some(v), Some(v2))
    }

    fn contains(&self, value: i64, unit: &str) -> bool {
        let (v, u) = scale(value, unit, &self.unit);
        u == self.unit && self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// The distinct (key, value) string-label pairs of an input.
pub(crate) fn distinct_string_labels(view: &ProfileView) -> FxHashSet<(u32, u32)> {
    view.sample_blocks()
        .par_iter()
        .map(|block| {
            let mut pairs = FxHashSet::default();
            for sample in block.iter() {
                for l in sample.labels.iter().filter(|l| l.str != 0) {
                    pairs.insert((l.key, l.str));
                }
            }
            pairs
        })
        .reduce(FxHashSet::default, |mut a, b| {
            a.extend(b);
            a
        })
}

/// pprof's `NumLabelUnits`: per numeric label key, the first unit a
/// sample gives it; a key never given one is its own unit (`alignment`
/// and `request` are bytes).
fn numeric_label_units(view: &ProfileView) -> FxHashMap<u32, String> {
    let mut units: FxHashMap<u32, String> = FxHashMap::default();
    let mut keys: FxHashSet<u32> = FxHashSet::default();
    for block in view.sample_blocks() {
        for sample in block.iter() {
            for l in sample.labels.iter().filter(|l| is_numeric(l)) {
                keys.insert(l.key);
                if l.num_unit != 0 && !units.contains_key(&l.key) {
                    units.insert(l.key, view.string(l.num_unit).to_string());
                }
            }
        }
    }
    for key in keys {
        units.entry(key).or_insert_with(|| {
            match view.string(key) {
                "alignment" | "request" => "bytes",
                other => other,
            }
            .to_string()
        });
    }
    units
}

/// A label with no string value is numeric (pprof's `NumLabel`).
fn is_numeric(label: &LabelView) -> bool {
    label.str == 0
}

/// A [`TagFilter`] evaluated against one input's strings.
pub(crate) enum InputTagFilter {
    Strings {
        /// Which expressions each (key, value) pair matches; pairs that
        /// match none are absent.
        masks: FxHashMap<(u32, u32), u64>,
        /// Every expression must be matched (no key), or `0`: any one.
        required: u64,
    },
    Numbers {
        range: NumericRange,
        /// The keys that may match, with their unit.
        units: FxHashMap<u32, String>,
    },
}

impl InputTagFilter {
    #[inline]
    pub(crate) fn matches(&self, labels: &[LabelView]) -> bool {
        match self {
            InputTagFilter::Strings { masks, required } => {
                if masks.is_empty() {
                    return false;
                }
                let mut seen = 0u64;
                for l in labels.iter().filter(|l| l.str != 0) {
                    if let Some(m) = masks.get(&(l.key, l.str)) {
                        seen |= m;
                        if *required == 0 || seen == *required {
                            return true;
                        }
                    }
                }
                false
            }
            InputTagFilter::Numbers { range, units } => labels.iter().any(|l| {
                is_numeric(l)
                    && units
                        .get(&l.key)
                        .is_some_and(|unit| range.contains(l.num, unit))
            }),
        }
    }
}

/// The focus and ignore filters of one input.
pub(crate) struct InputTags {
    pub(crate) focus: Option<InputTagFilter>,
    pub(crate) ignore: Option<InputTagFilter>,
}

impl InputTags {
    /// pprof's `FilterSamplesByTag`: kept when focused (or no focus) and
    /// not ignored.
    #[inline]
    pub(crate) fn keeps(&self, labels: &[LabelView]) -> bool {
        self.focus.as_ref().is_none_or(|f| f.matches(labels))
            && !self.ignore.as_ref().is_some_and(|f| f.matches(labels))
    }
}

/// Most groups `--group-by` reports on their own; the rest are summed
/// into one (each group keeps a function table per worker thread).
pub const MAX_GROUPS: usize = 24;

/// The name of the group of samples whose key has a value outside the
/// [`MAX_GROUPS`] largest.
pub const OTHER_GROUP: &str = "(other values)";

/// The name of the group of samples without the key.
pub const UNSET_GROUP: &str = "(not set)";

/// Group ids: one per value up to [`MAX_GROUPS`], then these two.
const OTHER_ID: u16 = MAX_GROUPS as u16;
const UNSET_ID: u16 = MAX_GROUPS as u16 + 1;

/// Group ids in all.
pub(crate) const GROUP_SLOTS: usize = MAX_GROUPS + 2;

/// The name of group `id`, whose values are `values` (by id).
pub(crate) fn group_name(id: usize, values: &[String]) -> &str {
    match id as u16 {
        OTHER_ID => OTHER_GROUP,
        UNSET_ID => UNSET_GROUP,
        _ => &values[id],
    }
}

/// Which group each sample of one input belongs to, for `--group-by`.
pub(crate) struct InputGroups {
    /// The key's string index; `None` when the input lacks the key.
    key: Option<u32>,
    /// Group of each value (string index) the key takes.
    of_value: FxHashMap<u32, u16>,
}

impl InputGroups {
    /// The group of a sample: its (first) value of the key.
    #[inline]
    pub(crate) fn group_of(&self, labels: &[LabelView]) -> u16 {
        let Some(key) = self.key else {
            return UNSET_ID;
        };
        match labels.iter().find(|l| l.key == key && l.str != 0) {
            Some(l) => self.of_value.get(&l.str).copied().unwrap_or(OTHER_ID),
            None => UNSET_ID,
        }
    }
}

/// Plans `--group-by key` over a batch of inputs (`value_index`: the
/// reported sample type's index in each). `values` holds the values that
/// already have a group (earlier batches); the batch's new values, largest
/// sum of |value| first, get groups while fewer than [`MAX_GROUPS`] are
/// taken, the rest fall in [`OTHER_GROUP`]. With one batch, the groups are
/// the [`MAX_GROUPS`] largest values.
pub(crate) fn plan_groups(
    views: &[(&ProfileView, usize)],
    key: &str,
    values: &mut Vec<String>,
) -> Vec<InputGroups> {
    let keys: Vec<Option<u32>> = views
        .iter()
        .map(|(view, _)| {
            view.strings()
                .iter()
                .position(|s| s == key)
                .map(|k| k as u32)
        })
        .collect();
    let per_input: Vec<FxHashMap<u32, i64>> = views
        .iter()
        .zip(&keys)
        .map(|((view, value_index), key)| {
            let Some(key) = *key else {
                return FxHashMap::default();
            };
            view.sample_blocks()
                .par_iter()
                .map(|block| group_block_totals(block, key, *value_index))
                .reduce(FxHashMap::default, |mut a, b| {
                    for (v, t) in b {
                        let e = a.entry(v).or_insert(0);
                        *e = e.wrapping_add(t);
                    }
                    a
                })
        })
        .collect();
    let mut by_name: FxHashMap<&str, i64> = FxHashMap::default();
    for (totals, (view, _)) in per_input.iter().zip(views) {
        for (&value, &total) in totals {
            let e = by_name.entry(view.string(value)).or_insert(0);
            *e = e.wrapping_add(total);
        }
    }
    let mut index: FxHashMap<String, u16> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), i as u16))
        .collect();
    let mut ranked: Vec<(&str, i64)> = by_name
        .into_iter()
        .filter(|(name, _)| !index.contains_key(*name))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    for (name, _) in ranked.into_iter().take(MAX_GROUPS - values.len()) {
        index.insert(name.to_string(), values.len() as u16);
        values.push(name.to_string());
    }
    per_input
        .iter()
        .zip(views)
        .zip(keys)
        .map(|((totals, (view, _)), key)| InputGroups {
            key,
            of_value: totals
                .keys()
                .filter_map(|&v| index.get(view.string(v)).map(|&g| (v, g)))
                .collect(),
        })
        .collect()
}

fn group_block_totals(block: &SampleBlock, key: u32, value_index: usize) -> FxHashMap<u32, i64> {
    let mut totals = FxHashMap::default();
    for sample in block.iter() {
        if let Some(l) = sample.labels.iter().find(|l| l.key == key && l.str != 0) {
            let e = totals.entry(l.str).or_insert(0i64);
            *e = e.wrapping_add(sample.values[value_index].wrapping_abs());
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_pprof_parses_them() {
        let range = |s: &str| match TagFilter::parse(s).unwrap().matcher {
            Matcher::Range(r) => Some((r.unit, r.min, r.max)),
            Matcher::Regexes(_) => None,
        };
        assert_eq!(range("32kb"), Some(("kB".into(), Some(32.0), Some(32.0))));
        assert_eq!(range("bytes=4mb:"), Some(("MB".into(), Some(4.0), None)));
        assert_eq!(range(":64kb"), Some(("kB".into(), None, Some(64.0))));
        assert_eq!(
            range("12kb:64mb"),
            Some(("kB".into(), Some(12.0), Some(65536.0)))
        );
        // Not a whole range: regexes.
        assert_eq!(range("v2"), None);
        assert_eq!(range("1.5kb"), None);
        assert_eq!(range("/api/v1"), None);
        // Units that do not convert: a regex, as in pprof.
        assert_eq!(range("1kb:2s"), None);
    }

    #[test]
    fn bad_expressions_are_refused() {
        assert_eq!(TagFilter::parse("").unwrap_err(), TagFilterError::Empty);
        assert!(matches!(
            TagFilter::parse("endpoint=(").unwrap_err(),
            TagFilterError::Regex { .. }
        ));
    }
}
