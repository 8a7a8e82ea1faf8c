//! The driver: one [`Request`] in, a report out, as `firewatch analyze` runs
//! it. It reads and decodes the inputs in parallel, aggregates them, writes
//! the flamegraph and folded stacks the request asks for and renders the
//! report, freeing each stage's memory as soon as the next no longer needs
//! it (that bounds the peak on million-sample profiles).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firewatch_profile::{
    MmapChoice, ProfileData, ProfileView, SampleBlock, DEFAULT_MAX_DECOMPRESSED,
};
use rayon::prelude::*;

use crate::aggregate::{aggregate_samples, prepare, Input, Options, SampleType};
use crate::error::{Error, Result};
use crate::flamegraph;
use crate::input::{self, InputFormat, Source};
use crate::report::{self, Limits, Metadata, Report};

/// How the report is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportFormat {
    /// pprof's `-top` table and the hot paths, for people.
    #[default]
    Text,
    /// The stable JSON document (schema 1), for scripts.
    Json,
    /// Markdown, for incident reports.
    Markdown,
}

/// Everything one analysis needs. [`Request::new`] gives `firewatch
/// analyze`'s defaults; set the fields to change them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// The profiles, merged (at least one).
    pub profiles: Vec<Source>,
    /// Profiles subtracted from them: the report is the difference.
    pub base: Vec<Source>,
    /// Which value, which samples, which frames.
    pub options: Options,
    /// How the report is written.
    pub format: ReportFormat,
    /// Rows of the function table and hot paths shown.
    pub limits: Limits,
    /// Also write a flamegraph SVG here.
    pub flamegraph: Option<PathBuf>,
    /// Also write folded stacks here.
    pub folded: Option<PathBuf>,
    /// Refuse inputs that decompress to more than this many bytes.
    pub max_decompressed: u64,
    /// Whether input files may be memory-mapped: [`MmapChoice::never`]
    /// unless the caller vouches that they do not change while read (the
    /// `firewatch` binary maps them unless given `--no-mmap`).
    pub mmap: MmapChoice,
    /// Worker threads; `None` uses the current rayon pool (by default one
    /// thread per core).
    pub threads: Option<NonZeroUsize>,
    /// Record each phase's duration and memory in [`Summary::timings`].
    pub timings: bool,
}

impl Request {
    /// A request for a text report on `profiles`, with the CLI's defaults
    /// (top 20 functions, 10 hot paths, 1 GiB decompression cap).
    pub fn new<S: Into<Source>>(profiles: impl IntoIterator<Item = S>) -> Request {
        Request {
            profiles: profiles.into_iter().map(Into::into).collect(),
            base: Vec::new(),
            options: Options::default(),
            format: ReportFormat::Text,
            limits: Limits {
                top: 20,
                hot_paths: 10,
            },
            flamegraph: None,
            folded: None,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            mmap: MmapChoice::never(),
            threads: None,
            timings: false,
        }
    }
}

/// What an analysis found, besides the report it wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Summary {
    /// The sample type reported.
    pub sample_type: SampleType,
    /// pprof's total, the base of the percentages.
    pub total: i64,
    /// Sum of the kept samples' values.
    pub kept: i64,
    /// Samples with a non-zero value read, and kept by focus/ignore.
    pub samples: u64,
    /// See [`Summary::samples`].
    pub samples_kept: u64,
    /// Functions that carry a value.
    pub functions: usize,
    /// Things the caller may want to tell the user.
    pub warnings: Vec<Warning>,
    /// Each phase's cost, when the request asked for [timings](Request::timings).
    pub timings: Vec<PhaseTiming>,
}

/// Something worth telling the user that is not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The filters (focus/ignore, tag focus/ignore) kept none of the samples.
    NothingKept {
        /// Samples there were (with a non-zero value).
        samples: u64,
    },
    /// A `--base` heap snapshot is not from the process of the analyzed
    /// one (its object ids name other objects): only counts per
    /// constructor are compared.
    DifferentProcesses {
        /// The base snapshot.
        base: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NothingKept { samples } => {
                write!(
                    f,
                    "the filters left none of the profile's {samples} samples"
                )
            }
            Warning::DifferentProcesses { base } => write!(
                f,
                "{base} is not a snapshot of the same process (its object ids name other objects): comparing counts per constructor only"
            ),
        }
    }
}

/// The cost of one phase of an analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    /// `read and inflate`, `convert to pprof` (only for inputs in another
    /// format), `decode`, `aggregate`, `flamegraph and folded output`,
    /// `report`.
    pub phase: &'static str,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Resident memory at its end, and the peak so far, in KiB (Linux only).
    pub rss_kib: Option<u64>,
    /// See [`PhaseTiming::rss_kib`].
    pub peak_kib: Option<u64>,
}

impl fmt::Display for PhaseTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = |v: Option<u64>| v.map_or("?".to_string(), |v| format!("{v} kB"));
        write!(
            f,
            "{}: {:.3} s (RSS {}, peak {})",
            self.phase,
            self.elapsed.as_secs_f64(),
            kib(self.rss_kib),
            kib(self.peak_kib)
        )
    }
}

/// Runs the analysis `request` describes and writes its report to `out`.
/// Flamegraph and folded files are written where the request says. Runs on
/// a pool of [`Request::threads`] workers, else on the current rayon pool.
pub fn run(request: &Request, mut out: impl Write) -> Result<Summary> {
    if request.profiles.is_empty() {
        return Err(Error::NoProfiles);
    }
    let (report, summary) = match request.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.get())
            .build()
            .map_err(Error::Threads)?
            .install(|| analyze(request)),
        None => analyze(request),
    }?;
    out.write_all(report.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Report)?;
    Ok(summary)
}

/// The analysis, up to the rendered report.
fn analyze(request: &Request) -> Result<(String, Summary)> {
    let mut timings = Timings::new(request.timings);
    let sources: Vec<(&Source, bool)> = request
        .profiles
        .iter()
        .map(|s| (s, false))
        .chain(request.base.iter().map(|s| (s, true)))
        .collect();

    // Read every input in parallel, convert those in another format to
    // pprof, then decode each (in parallel too).
    let data: Vec<ProfileData> = sources
        .par_iter()
        .map(|(s, _)| ProfileData::open_with(&s.path, request.max_decompressed, request.mmap))
        .collect::<Result<_, _>>()?;
    timings.mark("read and inflate");
    let formats: Vec<InputFormat> = sources
        .par_iter()
        .zip(&data)
        .map(|((s, _), d)| s.format_of(d))
        .collect();
    let data: Vec<ProfileData> = if formats.iter().all(|&f| f == InputFormat::Pprof) {
        data
    } else {
        let data = formats
            .into_par_iter()
            .zip(data)
            .map(|(format, data)| input::to_pprof(format, data))
            .collect::<Result<_>>()?;
        timings.mark("convert to pprof");
        data
    };
    let views = data
        .par_iter()
        .map(input::decode)
        .collect::<Result<Vec<_>>>()?;
    timings.mark("decode");

    let names: Vec<String> = sources
        .iter()
        .map(|(s, _)| s.path.display().to_string())
        .collect();
    let inputs: Vec<Input> = sources
        .iter()
        .zip(&views)
        .map(|((s, base), view)| Input {
            path: s.path.clone(),
            view,
            base: *base,
        })
        .collect();
    let mut meta = Metadata::from_views(
        &names
            .iter()
            .zip(&inputs)
            .map(|(n, i)| (n.as_str(), i.view, i.base))
            .collect::<Vec<_>>(),
    );
    // Plan the locations, then keep only the samples: the rest of the
    // decoded profiles and the input bytes are freed before the sample pass
    // builds its tables.
    // Markdown and JSON name the labels that dominate a hot path, from a
    // second pass over the samples.
    let mut options = request.options.clone();
    options.label_hot_paths |=
        matches!(request.format, ReportFormat::Markdown | ReportFormat::Json)
            && request.limits.hot_paths > 0;
    let options = &options;
    let prepared = prepare(&inputs, options)?;
    drop(inputs);
    let blocks: Vec<Vec<SampleBlock>> = views
        .into_iter()
        .map(ProfileView::into_sample_blocks)
        .collect();
    drop(data);
    let block_refs: Vec<&[SampleBlock]> = blocks.iter().map(Vec::as_slice).collect();
    let agg = aggregate_samples(prepared, &block_refs);
    drop(block_refs);
    let blocks = if options.label_hot_paths {
        Some(blocks)
    } else {
        drop(blocks);
        None
    };
    let mut warnings = Vec::new();
    let filtered = options.focus.is_some()
        || options.ignore.is_some()
        || options.tag_focus.is_some()
        || options.tag_ignore.is_some();
    if filtered && agg.samples > 0 && agg.samples_kept == 0 {
        warnings.push(Warning::NothingKept {
            samples: agg.samples,
        });
    }
    meta.base_labelled = agg.diff_base_samples > 0;
    timings.mark("aggregate");

    if let Some(re) = &options.focus {
        meta.filters.push(format!("focus={re}"));
    }
    if let Some(re) = &options.ignore {
        meta.filters.push(format!("ignore={re}"));
    }
    if let Some(tags) = &options.tag_focus {
        meta.filters.push(format!("tagfocus={tags}"));
    }
    if let Some(tags) = &options.tag_ignore {
        meta.filters.push(format!("tagignore={tags}"));
    }
    if let Some(path) = &request.flamegraph {
        let mut file = create(path)?;
        flamegraph::write_flamegraph(&agg, &meta.inputs, &meta.base_sources(), &mut file)
            .and_then(|()| file.flush())
            .map_err(|error| Error::Write {
                path: path.clone(),
                error,
            })?;
        meta.flamegraph = Some(path.display().to_string());
    }
    if let Some(path) = &request.folded {
        flamegraph::write_folded(&agg, create(path)?).map_err(|error| Error::Write {
            path: path.clone(),
            error,
        })?;
    }
    timings.mark("flamegraph and folded output");

    let mut report = Report::new(&meta, &agg, request.limits);
    if let Some(blocks) = blocks {
        let refs: Vec<&[SampleBlock]> = blocks.iter().map(Vec::as_slice).collect();
        report.label_hot_paths(&refs);
    }
    let rendered = match request.format {
        ReportFormat::Text => report::render_text(&report),
        ReportFormat::Json => report::render_json(&report),
        ReportFormat::Markdown => report::render_markdown(&report),
    };
    timings.mark("report");
    let summary = Summary {
        sample_type: agg.sample_type.clone(),
        total: agg.total,
        kept: agg.kept,
        samples: agg.samples,
        samples_kept: agg.samples_kept,
        functions: report.function_count,
        warnings,
        timings: timings.phases,
    };
    Ok((rendered, summary))
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|error| Error::Create {
            path: path.to_path_buf(),
            error,
        })
}

/// Phase timings, when asked for.
pub(crate) struct Timings {
    last: Option<Instant>,
    pub(crate) phases: Vec<PhaseTiming>,
}

impl Timings {
    fn new(enabled: bool) -> Timings {
        Timings {
            last: enabled.then(Instant::now),
            phases: Vec::new(),
        }
    }

    pub(crate) fn mark(&mut self, phase: &'static str) {
        let Some(last) = self.last else {
            return;
        };
        let now = Instant::now();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..]
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        };
        self.phases.push(PhaseTiming {
            phase,
            elapsed: now - last,
            rss_kib: kib("VmRSS:"),
            peak_kib: kib("VmHWM:"),
        });
        self.last = Some(now);
    }
}
