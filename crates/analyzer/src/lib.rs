//! `firewatch-analyzer`: turns pprof profiles into answers.
//!
//! Given one or more profiles (merged), optionally minus a base, it computes
//! what pprof's function view computes, the *flat* value of each function
//! (samples whose leaf it is) and its *cum* value (samples it appears in, once
//! per sample even when it recurses), plus the heaviest call stacks, and
//! renders them as a text, JSON or Markdown report or a flamegraph SVG.
//!
//! Node.js's `.cpuprofile` and `.heapprofile` are read too, converted to
//! pprof on the way in (see [`InputFormat`]). A V8 heap snapshot
//! (`.heapsnapshot`) gets a report of its own: retained sizes from the
//! dominator tree (by memlab's rules) by constructor, the largest objects
//! with their retaining paths, and what is new since one or two earlier
//! snapshots (`docs/node.md`).
//!
//! A profile of a stripped service, which holds addresses, mappings and
//! build IDs but no names, is symbolized from the binary or its debug file
//! ([`Request::symbols`], `--symbols`), as `go tool pprof` does.
//!
//! The pipeline is: [`Source`] → [`firewatch_profile::ProfileData`] (read or
//! map, inflate) → [`firewatch_profile::ProfileView`] (parallel decode) →
//! [`aggregate()`] (parallel aggregation, with pprof's pruning and filters
//! from `firewatch-profile`) → [`report`] / [`flamegraph`]. [`run`] drives it
//! all for a [`Request`], as the `firewatch` binary does:
//!
//! ```no_run
//! use firewatch_analyzer::{run, ReportFormat, Request, SampleIndex};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut request = Request::new(["heap.pb.gz"]);
//! request.base = vec!["heap-an-hour-ago.pb.gz".into()];
//! request.options.sample_index = SampleIndex::Name("inuse_space".into());
//! request.format = ReportFormat::Json;
//! let summary = run(&request, std::io::stdout())?;
//! eprintln!("{} functions changed", summary.functions);
//! # Ok(()) }
//! ```
//!
//! The stages are public for callers that want the numbers rather than a
//! report:
//!
//! ```no_run
//! use firewatch_analyzer::{aggregate, report, Input, Options};
//! use firewatch_profile::{ProfileData, DEFAULT_MAX_DECOMPRESSED};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = ProfileData::open("cpu.pb.gz", DEFAULT_MAX_DECOMPRESSED)?;
//! let view = data.view()?;
//! let inputs = [Input { path: "cpu.pb.gz".into(), view: &view, base: false }];
//! let agg = aggregate(&inputs, &Options::default())?;
//! let meta = report::Metadata::from_views(&[("cpu.pb.gz", &view, false)]);
//! let limits = report::Limits { top: 10, hot_paths: 5 };
//! print!("{}", report::render_text(&report::Report::new(&meta, &agg, limits)));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod aggregate;
mod driver;
mod error;
pub mod flamegraph;
mod heapsnapshot;
mod input;
pub mod report;
mod stacks;
mod symbols;
pub mod tags;
pub mod units;

pub use aggregate::{
    aggregate, aggregate_samples, prepare, Aggregate, FunctionTotal, GroupTotal, Inlining, Input,
    Options, Prepared, SampleType, StackTotal,
};
pub use driver::{run, PhaseTiming, Progress, ReportFormat, Request, Summary, Warning};
pub use error::{Error, Result};
pub use firewatch_profile::{MmapChoice, SampleIndex};
pub use heapsnapshot::HeapSnapshotError;
pub use input::legacy::LegacyError;
pub use input::node::NodeError;
pub use input::{convert_to_pprof, InputFormat, Source};
pub use symbols::{symbolize_to_pprof, SymbolError, SymbolWarning};
pub use tags::{TagFilter, TagFilterError};
