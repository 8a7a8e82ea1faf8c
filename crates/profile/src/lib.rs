//! `firewatch-profile`: the pprof profile format for firewatch.
//!
//! A pprof profile (`profile.proto`, usually gzip-compressed on disk) is a set
//! of **samples**, each a call stack (a list of **location** ids, leaf first)
//! with one value per **sample type** (`cpu/nanoseconds`, `inuse_space/bytes`,
//! …). A location is an address in a **mapping** (a binary or shared library)
//! and, once symbolized, one or more **lines**: the function it is in, plus
//! the functions inlined there (callee first). Every string lives once in a
//! string table and is referred to by index.
//!
//! This crate provides:
//!
//! - [`Profile`], the owned model, mirroring the proto field by field, with
//!   [`Profile::decode`], [`Profile::encode`] and [`Profile::write_gzip`];
//! - [`ProfileView`], a validated, borrowed, column-wise form decoded **in
//!   parallel** (see [`decode`](ProfileView::decode)), which the analyzer uses;
//! - [`ProfileData`], which reads a file (or maps it, by the caller's
//!   `unsafe` [`MmapChoice::auto`]) and inflates gzip under a size cap.
//!
//! It also has pprof's operations on a profile, each in its own module as in
//! pprof's `profile` package: pruning `drop_frames` ([`Profile::prune`],
//! [`Profile::remove_uninteresting`]), filtering by name (focus, ignore,
//! hide, show: [`Profile::filter_samples_by_name`]), merging under pprof's
//! compatibility rule ([`Profile::merge`], [`Profile::compatible`],
//! [`Profile::compact`]), scaling ([`Profile::scale`]) and choosing the
//! reported value ([`SampleIndex`]). Pruning and filtering also come rule by
//! rule, per location ([`FramePruner::classify_location`],
//! [`NameFilter::classify_location`]) then per sample ([`prune_start`],
//! [`LocationMatch::keeps`]), so that a reader of a [`ProfileView`] applies
//! them while it aggregates, without building an owned profile.
//!
//! Features (all default): `parallel` decodes on rayon's pool (without it,
//! on the calling thread), `mmap` offers [`MmapChoice::auto`], `libdeflate`
//! inflates with libdeflate (C; without it, flate2 in Rust). The agent uses
//! none of them. There are no conversions to `prost`-generated types:
//! pprof-rs ships its own generated module, OpenTelemetry's profiles are a
//! different schema, and either would tie this crate to a code generator's
//! version; the encoded bytes are the interface ([`Profile::encode`], then
//! `prost::Message::decode`, and [`Profile::decode`] back).
//!
//! ```
//! use firewatch_profile::{Function, Line, Location, Profile, Sample, StringInterner, ValueType};
//!
//! let mut strings = StringInterner::new();
//! let mut p = Profile::new();
//! p.sample_type = vec![ValueType { r#type: strings.intern("cpu"), unit: strings.intern("nanoseconds") }];
//! p.function = vec![Function { id: 1, name: strings.intern("main"), ..Default::default() }];
//! p.location = vec![Location { id: 1, line: vec![Line { function_id: 1, line: 3, column: 0 }], ..Default::default() }];
//! p.sample = vec![Sample { location_id: vec![1], value: vec![10_000_000], label: vec![] }];
//! p.string_table = strings.into_table();
//!
//! let bytes = p.encode_gzip();
//! let back = Profile::decode(&bytes)?;
//! assert_eq!(back, p);
//! # Ok::<(), firewatch_profile::Error>(())
//! ```

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod decode;
mod encode;
mod error;
mod filter;
/// Gzip inflation: libdeflate with the `libdeflate` feature (the default),
/// flate2 without it.
#[cfg_attr(not(feature = "libdeflate"), path = "inflate_flate2.rs")]
mod inflate;
mod merge;
mod model;
mod parallel;
mod prune;
mod sample_index;
mod scale;
mod source;
pub mod time;
pub mod units;
mod view;
mod wire;

pub use decode::SampleDecoder;
pub use error::{Error, Result};
pub use filter::{FilterMatches, LocationMatch, NameFilter};
pub use merge::{Incompatibility, MergeError};
pub use model::{
    Function, Label, Line, Location, Mapping, Profile, Sample, StringInterner, ValueType,
};
pub use prune::{prune_start, FramePruner, FrameRegexError, LocationPrune};
/// The regular expressions [`NameFilter`] and [`FramePruner`] take.
pub use regex::Regex;
pub use sample_index::{SampleIndex, SampleIndexError};
pub use scale::ScaleError;
pub use source::{decompress, is_gzip, MmapChoice, ProfileData, DEFAULT_MAX_DECOMPRESSED};
pub use view::{
    FunctionView, LabelView, LineView, LocationView, MappingView, ProfileView, SampleBlock,
    SampleRef,
};

impl Profile {
    /// Decodes gzip or raw `profile.proto` bytes (decompressed size capped at
    /// [`DEFAULT_MAX_DECOMPRESSED`]) and validates them.
    pub fn decode(bytes: &[u8]) -> Result<Profile> {
        let raw = decompress(bytes, DEFAULT_MAX_DECOMPRESSED)?;
        Ok(ProfileView::decode(&raw)?.to_profile())
    }

    /// Checks the rules pprof's `CheckValid` checks (by encoding and decoding).
    pub fn validate(&self) -> Result<()> {
        ProfileView::decode(&self.encode()).map(drop)
    }
}
