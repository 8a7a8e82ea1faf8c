//! The driver: one [`Request`] in, a report out, as `firewatch analyze` runs
//! it. It reads and decodes the inputs in parallel, aggregates them, writes
//! the flamegraph and folded stacks the request asks for and renders the
//! report, freeing each stage's memory as soon as the next no longer needs
//! it (that bounds the peak on million-sample profiles).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firewatch_profile::{
    MmapChoice, ProfileData, ProfileView, SampleBlock, SampleDecoder, DEFAULT_MAX_DECOMPRESSED,
};
use rayon::prelude::*;

use crate::aggregate::{Aggregator, Batch, Input, Options, SampleSource, SampleType};
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
    /// Refuse gzip inputs that inflate to more than this many bytes, and
    /// standard input or pipes longer than this: what the input does not
    /// state in advance. A raw regular file is read whatever its size.
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
    /// Told how many inputs are done as batches of them are aggregated.
    pub progress: Option<Progress>,
    /// Binaries, debug files and `.build-id`/debuginfod directories that
    /// name the addresses of inputs written without symbols (matched by
    /// build ID; `firewatch analyze --symbols`).
    pub symbols: Vec<PathBuf>,
}

/// A callback told `(inputs done, inputs in all)` after each batch of
/// inputs is aggregated, for a progress bar.
#[derive(Clone)]
pub struct Progress(std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>);

impl Progress {
    /// Wraps `report`.
    pub fn new(report: impl Fn(usize, usize) + Send + Sync + 'static) -> Progress {
        Progress(std::sync::Arc::new(report))
    }

    fn report(&self, done: usize, all: usize) {
        (self.0)(done, all)
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
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
            progress: None,
            symbols: Vec::new(),
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
    /// About `--symbols`: a build ID no file has, a file that matched
    /// nothing, a match by name only.
    Symbols(crate::symbols::SymbolWarning),
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
            Warning::Symbols(warning) => warning.fmt(f),
        }
    }
}

/// The cost of one phase of an analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    /// `read and inflate`, `convert to pprof` (only for inputs in another
    /// format), `symbolize` (only with [`Request::symbols`]), `decode`,
    /// `aggregate`, `flamegraph and folded output`, `report`.
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

/// Up to this many inputs (and [`BATCH_BYTES`]) are read, decoded and
/// aggregated as one batch, which keeps what needs every sample at once
/// (labels of hot paths, the largest `--group-by` groups).
const SINGLE_BATCH_INPUTS: usize = 32;

/// More inputs go in batches of this many. A batch's profiles are freed
/// once planned, and only the next batch is prepared while one is added,
/// so memory follows the distinct stacks of a fleet's profiles, not their
/// number (16 rather than 32 since two batches overlap: 45 MiB peak instead
/// of 95 MiB for 1,000 profiles of 100 KB).
const BATCH_INPUTS: usize = 16;

/// Most file bytes in one batch (a batch has at least one input).
const BATCH_BYTES: u64 = 512 << 20;

/// The analysis, up to the rendered report.
fn analyze(request: &Request) -> Result<(String, Summary)> {
    let profiles = expand_directories(&request.profiles)?;
    let base = expand_directories(&request.base)?;
    let sources: Vec<(&Source, bool)> = profiles
        .iter()
        .map(|s| (s, false))
        .chain(base.iter().map(|s| (s, true)))
        .collect();
    let batches = batches(&sources);
    let single = batches.len() == 1;

    // Markdown and JSON name the labels that dominate a hot path, from a
    // second pass over the samples: only when all of them fit one batch.
    let mut options = request.options.clone();
    options.label_hot_paths |= single
        && matches!(request.format, ReportFormat::Markdown | ReportFormat::Json)
        && request.limits.hot_paths > 0;
    let options = &options;
    let aggregator = Aggregator::new(options, !base.is_empty());
    let mut sums = aggregator.sums();
    let mut planner = Planner {
        request,
        sources: &sources,
        single,
        label_hot_paths: options.label_hot_paths,
        aggregator,
        meta: Metadata::default(),
        symbolizer: crate::symbols::Symbolizer::new(&request.symbols)?,
        timings: Timings::new(request.timings),
    };
    let mut kept_blocks = None;
    let mut done = 0;
    let (first, _) = &batches[0];
    let data = planner.read(first)?;
    planner.timings.mark("read and inflate");
    let mut next = match planner.plan(first, data)? {
        Planned::Batch(batch) => Some(batch),
        Planned::HeapSnapshot(report, summary) => return Ok((report, summary)),
    };
    for (k, (range, _)) in batches.iter().enumerate() {
        let (batch, samples) = next.take().expect("each batch is planned before its turn");
        let sample_sources: Vec<SampleSource> = samples.iter().map(InputSamples::source).collect();
        // The sample pass is one thread for a batch of small profiles:
        // meanwhile the next batch is read and, when small, decoded and
        // planned too (a large one is decoded after, so that two large
        // batches are never decoded at once).
        let following = batches.get(k + 1);
        let (added, prepared) = rayon::join(
            || sums.add(batch, &sample_sources),
            || -> Result<Option<Prepared>> {
                let Some((range, bytes)) = following else {
                    return Ok(None);
                };
                let data = planner.read(range)?;
                Ok(Some(if *bytes <= OVERLAP_BYTES {
                    Prepared::Planned(planner.plan(range, data)?)
                } else {
                    Prepared::Read(data)
                }))
            },
        );
        drop(sample_sources);
        added?;
        if options.label_hot_paths {
            kept_blocks = Some(samples);
        }
        planner.timings.mark("aggregate");
        done += range.len();
        if let Some(progress) = &request.progress {
            progress.report(done, sources.len());
        }
        let planned = match prepared? {
            None => continue,
            Some(Prepared::Planned(planned)) => planned,
            Some(Prepared::Read(data)) => planner.plan(&following.expect("read above").0, data)?,
        };
        match planned {
            Planned::Batch(batch) => next = Some(batch),
            Planned::HeapSnapshot(..) => {
                unreachable!("a heap snapshot among several batches is refused by `plan`")
            }
        }
    }
    let Planner {
        aggregator,
        mut meta,
        symbolizer,
        mut timings,
        ..
    } = planner;
    let agg = aggregator.finish(sums);
    let blocks = kept_blocks;
    let mut warnings = symbolizer.finish();
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
    if let Some(samples) = blocks {
        let refs: Vec<&[SampleBlock]> = samples
            .iter()
            .map(|s| match s {
                InputSamples::Decoded(blocks) => blocks.as_slice(),
                InputSamples::Deferred(..) => unreachable!("hot-path labels need decoded samples"),
            })
            .collect();
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

/// The sources with each directory replaced by the files in it (not
/// recursively; hidden files left out), by name.
fn expand_directories(sources: &[Source]) -> Result<Vec<Source>> {
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        if source.path.as_os_str() == "-" || !source.path.is_dir() {
            out.push(source.clone());
            continue;
        }
        let error = |error| Error::Directory {
            path: source.path.clone(),
            error,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&source.path).map_err(error)? {
            let entry = entry.map_err(error)?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.path().is_file() {
                files.push(entry.path());
            }
        }
        if files.is_empty() {
            return Err(Error::EmptyDirectory {
                path: source.path.clone(),
            });
        }
        files.sort();
        out.extend(files.into_iter().map(|path| Source {
            path,
            format: source.format,
        }));
    }
    Ok(out)
}

/// Splits the inputs into batches of at most [`BATCH_INPUTS`] (all of them
/// when there are no more than [`SINGLE_BATCH_INPUTS`]) and [`BATCH_BYTES`]
/// of files (at least one input each), with their sizes.
fn batches(sources: &[(&Source, bool)]) -> Vec<(Range<usize>, u64)> {
    let size = |s: &Source| std::fs::metadata(&s.path).map_or(0, |m| m.len());
    let most = if sources.len() <= SINGLE_BATCH_INPUTS {
        SINGLE_BATCH_INPUTS
    } else {
        BATCH_INPUTS
    };
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (source, _)) in sources.iter().enumerate() {
        let len = size(source);
        if i > start && (i - start == most || bytes.saturating_add(len) > BATCH_BYTES) {
            batches.push((start..i, bytes));
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(len);
    }
    batches.push((start..sources.len(), bytes));
    batches
}

/// Batches of at most this many file bytes are decoded and planned while
/// the batch before them is added; larger ones only read.
const OVERLAP_BYTES: u64 = 64 << 20;

/// A batch ready for its sample pass: planned, with its samples; the rest
/// of its profiles freed.
type PlannedBatch = (Batch, Vec<InputSamples>);

/// One input's samples, waiting for the sample pass.
enum InputSamples {
    /// Decoded, the input's bytes freed.
    Decoded(Vec<SampleBlock>),
    /// To decode a chunk at a time as they are added: the input's bytes
    /// are kept instead of its decoded samples, which for a large profile
    /// are larger, and take longer to write than to add.
    Deferred(ProfileData, SampleDecoder),
}

impl InputSamples {
    fn source(&self) -> SampleSource<'_> {
        match self {
            InputSamples::Decoded(blocks) => SampleSource::Blocks(blocks),
            InputSamples::Deferred(data, decoder) => SampleSource::Chunks { data, decoder },
        }
    }
}

enum Planned {
    Batch(PlannedBatch),
    /// A heap snapshot, analyzed on its own: the whole answer.
    HeapSnapshot(String, Summary),
}

/// The next batch, as far as it got while the one before was added.
enum Prepared {
    Read(Vec<ProfileData>),
    Planned(Planned),
}

/// Everything that reads, decodes and plans batches, apart from the running
/// sums, so that both can go on at once.
struct Planner<'r> {
    request: &'r Request,
    sources: &'r [(&'r Source, bool)],
    single: bool,
    /// The samples are kept for a second pass (labels of hot paths).
    label_hot_paths: bool,
    aggregator: Aggregator,
    meta: Metadata,
    symbolizer: crate::symbols::Symbolizer,
    timings: Timings,
}

impl Planner<'_> {
    /// Reads (and inflates) every input of a batch, in parallel.
    fn read(&self, range: &Range<usize>) -> Result<Vec<ProfileData>> {
        let request = self.request;
        Ok(self.sources[range.clone()]
            .par_iter()
            .map(|(s, _)| ProfileData::open_with(&s.path, request.max_decompressed, request.mmap))
            .collect::<Result<_, _>>()?)
    }

    /// Converts the inputs in another format to pprof, decodes them in
    /// parallel and plans their locations; keeps only their samples.
    fn plan(&mut self, range: &Range<usize>, data: Vec<ProfileData>) -> Result<Planned> {
        let batch = &self.sources[range.clone()];
        let formats: Vec<InputFormat> = batch
            .par_iter()
            .zip(&data)
            .map(|((s, _), d)| s.format_of(d))
            .collect();
        if let Some(i) = formats
            .iter()
            .position(|&f| f == InputFormat::NodeHeapSnapshot)
        {
            if !self.single {
                return Err(Error::UnknownFormat {
                    path: batch[i].0.path.clone(),
                    reason: "a heap snapshot is analyzed alone (or with its --base \
                             snapshots), not merged with many profiles"
                        .into(),
                });
            }
            let (report, summary) =
                crate::heapsnapshot::analyze(self.request, data, &formats, &mut self.timings)?;
            return Ok(Planned::HeapSnapshot(report, summary));
        }
        let data: Vec<ProfileData> = if formats.iter().all(|&f| f == InputFormat::Pprof) {
            data
        } else {
            let data = formats
                .into_par_iter()
                .zip(data)
                .map(|(format, data)| input::to_pprof(format, data))
                .collect::<Result<_>>()?;
            self.timings.mark("convert to pprof");
            data
        };
        let data = self.symbolizer.symbolize(data, &mut self.timings)?;
        // When every input is in this one batch, and no second pass needs
        // the samples, they are decoded as they are added.
        let defer = self.single && !self.label_hot_paths;
        let (views, decoders): (Vec<ProfileView>, Vec<Option<SampleDecoder>>) = data
            .par_iter()
            .map(|d| {
                if defer {
                    input::decode_without_samples(d).map(|(v, s)| (v, Some(s)))
                } else {
                    input::decode(d).map(|v| (v, None))
                }
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        self.timings.mark("decode");

        let names: Vec<String> = batch
            .iter()
            .map(|(s, _)| s.path.display().to_string())
            .collect();
        let inputs: Vec<Input> = batch
            .iter()
            .zip(&views)
            .map(|((s, base), view)| Input {
                path: s.path.clone(),
                view,
                base: *base,
            })
            .collect();
        self.meta.add_views(
            &names
                .iter()
                .zip(&inputs)
                .map(|(n, i)| (n.as_str(), i.view, i.base))
                .collect::<Vec<_>>(),
        );
        // Plan the locations, then keep only the samples: the rest of the
        // decoded profiles and the input bytes are freed before the sample
        // pass builds its tables.
        let planned = self.aggregator.plan(&inputs)?;
        drop(inputs);
        let blocks: Vec<Vec<SampleBlock>> = views
            .into_iter()
            .map(ProfileView::into_sample_blocks)
            .collect();
        let samples = blocks
            .into_iter()
            .zip(decoders)
            .zip(data)
            .map(|((blocks, decoder), data)| match decoder {
                Some(decoder) => InputSamples::Deferred(data, decoder),
                None => InputSamples::Decoded(blocks),
            })
            .collect();
        self.timings.mark("plan");
        Ok(Planned::Batch((planned, samples)))
    }
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
        let timing = PhaseTiming {
            phase,
            elapsed: now - last,
            rss_kib: kib("VmRSS:"),
            peak_kib: kib("VmHWM:"),
        };
        // Batches of inputs go through the same phases: one line each.
        match self.phases.iter_mut().find(|p| p.phase == phase) {
            Some(p) => {
                p.elapsed += timing.elapsed;
                (p.rss_kib, p.peak_kib) = (timing.rss_kib, timing.peak_kib);
            }
            None => self.phases.push(timing),
        }
        self.last = Some(now);
    }
}
