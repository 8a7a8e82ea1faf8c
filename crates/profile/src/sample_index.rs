//! Choosing which value of a profile to report: pprof's `-sample_index`
//! (`SampleIndexByName`).

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use crate::model::Profile;
use crate::view::ProfileView;

/// Which of a profile's sample types to report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SampleIndex {
    /// `default_sample_type` when it names a sample type, else the last.
    #[default]
    Default,
    /// A sample type by name. `inuse_space` also finds `space`, and
    /// `inuse_objects` `objects`, as in pprof (legacy heap profiles).
    Name(String),
    /// A sample type by position, from 0.
    Index(usize),
}

impl FromStr for SampleIndex {
    type Err = Infallible;

    /// A number is an [`SampleIndex::Index`], anything else a
    /// [`SampleIndex::Name`] (as pprof reads `-sample_index`).
    fn from_str(s: &str) -> Result<SampleIndex, Infallible> {
        Ok(match s.parse::<usize>() {
            Ok(i) => SampleIndex::Index(i),
            Err(_) => SampleIndex::Name(s.to_string()),
        })
    }
}

impl fmt::Display for SampleIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleIndex::Default => f.write_str("default"),
            SampleIndex::Name(name) => f.write_str(name),
            SampleIndex::Index(i) => write!(f, "{i}"),
        }
    }
}

/// A [`SampleIndex`] that selects nothing in a profile. The lists are the
/// profile's sample types as `type/unit`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SampleIndexError {
    /// The profile has no sample types at all.
    #[error("the profile has no sample types")]
    NoSampleTypes,
    /// The index is not below the number of sample types.
    #[error("sample index {index} is out of range (the sample types are: {})", available.join(", "))]
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The profile's sample types.
        available: Vec<String>,
    },
    /// No sample type has the name.
    #[error("no sample type named {name:?} (the sample types are: {})", available.join(", "))]
    NoSuchName {
        /// The name asked for.
        name: String,
        /// The profile's sample types.
        available: Vec<String>,
    },
}

impl SampleIndex {
    /// The position this selects among `types` (`(type, unit)` pairs), given
    /// the position of the profile's default (see [`SampleIndex::Default`]).
    fn resolve(&self, types: &[(&str, &str)], default: usize) -> Result<usize, SampleIndexError> {
        if types.is_empty() {
            return Err(SampleIndexError::NoSampleTypes);
        }
        let available = || types.iter().map(|(t, u)| format!("{t}/{u}")).collect();
        match self {
            SampleIndex::Default => Ok(default),
            &SampleIndex::Index(index) if index < types.len() => Ok(index),
            &SampleIndex::Index(index) => Err(SampleIndexError::OutOfRange {
                index,
                available: available(),
            }),
            SampleIndex::Name(name) => {
                let without_inuse = name.strip_prefix("inuse_").unwrap_or(name);
                types
                    .iter()
                    .position(|(t, _)| t == name || *t == without_inuse)
                    .ok_or_else(|| SampleIndexError::NoSuchName {
                        name: name.clone(),
                        available: available(),
                    })
            }
        }
    }
}

impl ProfileView<'_> {
    /// The position of the sample type `which` selects.
    pub fn sample_index(&self, which: &SampleIndex) -> Result<usize, SampleIndexError> {
        which.resolve(&self.sample_type_names(), self.default_sample_index())
    }
}

impl Profile {
    /// The position of the sample type `which` selects.
    pub fn sample_index(&self, which: &SampleIndex) -> Result<usize, SampleIndexError> {
        let types: Vec<(&str, &str)> = self
            .sample_type
            .iter()
            .map(|t| (self.string(t.r#type), self.string(t.unit)))
            .collect();
        let wanted = self.string(self.default_sample_type);
        let default = match types
            .iter()
            .position(|(t, _)| !wanted.is_empty() && *t == wanted)
        {
            Some(i) => i,
            None => types.len().saturating_sub(1),
        };
        which.resolve(&types, default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ValueType;
    use crate::StringInterner;

    fn heap() -> Profile {
        let mut strings = StringInterner::new();
        let mut vt = |t: &str, u: &str| ValueType {
            r#type: strings.intern(t),
            unit: strings.intern(u),
        };
        let sample_type = vec![
            vt("alloc_space", "bytes"),
            vt("space", "bytes"),
            vt("objects", "count"),
        ];
        let default_sample_type = strings.intern("space");
        Profile {
            sample_type,
            default_sample_type,
            string_table: strings.into_table(),
            ..Profile::default()
        }
    }

    fn parse(s: &str) -> SampleIndex {
        s.parse().unwrap()
    }

    #[test]
    fn by_default_name_number_and_legacy_prefix() {
        let mut p = heap();
        assert_eq!(p.sample_index(&SampleIndex::Default), Ok(1));
        assert_eq!(p.sample_index(&parse("objects")), Ok(2));
        assert_eq!(p.sample_index(&parse("inuse_objects")), Ok(2));
        assert_eq!(p.sample_index(&parse("alloc_space")), Ok(0));
        assert_eq!(p.sample_index(&parse("0")), Ok(0));
        // No (or an unknown) default_sample_type: the last type.
        p.default_sample_type = 0;
        assert_eq!(p.sample_index(&SampleIndex::Default), Ok(2));
        let bytes = p.encode();
        let view = ProfileView::decode(&bytes).unwrap();
        assert_eq!(view.sample_index(&SampleIndex::Default), Ok(2));
        assert_eq!(view.sample_index(&parse("inuse_space")), Ok(1));
    }

    #[test]
    fn errors_list_the_sample_types() {
        let p = heap();
        assert_eq!(
            p.sample_index(&parse("3")).unwrap_err().to_string(),
            "sample index 3 is out of range (the sample types are: alloc_space/bytes, space/bytes, objects/count)"
        );
        assert_eq!(
            p.sample_index(&parse("cpu")).unwrap_err().to_string(),
            "no sample type named \"cpu\" (the sample types are: alloc_space/bytes, space/bytes, objects/count)"
        );
        assert_eq!(
            Profile::new().sample_index(&SampleIndex::Default),
            Err(SampleIndexError::NoSampleTypes)
        );
    }

    #[test]
    fn parsing_and_printing() {
        assert_eq!(parse("12"), SampleIndex::Index(12));
        assert_eq!(parse("cpu"), SampleIndex::Name("cpu".into()));
        assert_eq!(parse("-1"), SampleIndex::Name("-1".into()));
        assert_eq!(SampleIndex::Index(3).to_string(), "3");
        assert_eq!(SampleIndex::Default.to_string(), "default");
    }
}
