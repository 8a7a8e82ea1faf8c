//! The `firewatch` command line. It parses flags into a [`Request`], runs
//! it with the library, and turns the outcome into messages and an exit
//! status.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use firewatch_analyzer::report::Limits;
use firewatch_analyzer::{
    Error, MmapChoice, Options, Progress, ReportFormat, Request, SampleIndex, Source, TagFilter,
    Warning,
};
use firewatch_profile::units::parse_byte_size;
use firewatch_profile::DEFAULT_MAX_DECOMPRESSED;
use indicatif::{ProgressBar, ProgressStyle};
use regex::Regex;

#[cfg(target_os = "linux")]
#[path = "cli/huge_pages.rs"]
mod huge_pages;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: huge_pages::HugePageAllocator = huge_pages::HugePageAllocator;

#[derive(Parser)]
#[command(
    name = "firewatch",
    version,
    about = "Profiling toolchain for Rust services: analyze pprof and Node.js profiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report where a profile's time or memory goes (several profiles are merged).
    Analyze(AnalyzeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// Profiles to analyze: pprof, Node.js .cpuprofile or .heapprofile, gperftools
    /// CPU/heap/contention files or a jemalloc heap dump (prof.dump), gzip or raw
    /// (`-` reads standard input); several are merged, and a directory stands for the
    /// files in it. A V8 .heapsnapshot is analyzed alone (its own report; --base
    /// takes one or two earlier snapshots of the same process).
    #[arg(required = true, value_name = "PROFILE")]
    profiles: Vec<PathBuf>,
    /// Report format on standard output.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Rows in the function table (0 = all).
    #[arg(long, default_value_t = 20, value_name = "N")]
    top: usize,
    /// Hot paths (heaviest call stacks) to list (0 = none).
    #[arg(long, default_value_t = 10, value_name = "N")]
    hot_paths: usize,
    /// Which value to report: a sample type name or a 0-based index
    /// (default: the profile's default_sample_type, else the last).
    #[arg(long, value_name = "NAME|N")]
    sample_index: Option<SampleIndex>,
    /// Also write a flamegraph SVG.
    #[arg(long, value_name = "FILE.svg")]
    flamegraph: Option<PathBuf>,
    /// Also write folded stacks (`root;…;leaf value`).
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// Report the difference PROFILE… minus this base (values may be negative).
    #[arg(long, value_name = "PROFILE")]
    base: Vec<PathBuf>,
    /// Name the addresses of profiles written without symbols: a binary, a
    /// debug file, or a directory searched by build ID (.build-id/ab/cdef….debug,
    /// or a debuginfod cache). Repeatable.
    #[arg(long, value_name = "PATH")]
    symbols: Vec<PathBuf>,
    /// Keep only samples with a frame whose function name, source file or binary matches.
    #[arg(long, value_name = "REGEX")]
    focus: Option<Regex>,
    /// Drop samples with a frame whose function name, source file or binary matches.
    #[arg(long, value_name = "REGEX")]
    ignore: Option<Regex>,
    /// Ignore the profile's drop_frames/keep_frames.
    #[arg(long)]
    all_frames: bool,
    /// Keep only samples with a label matching: KEY=REGEX[,REGEX…], REGEX (against
    /// `key:value`), or a numeric range such as bytes=1mb: (pprof's -tagfocus).
    #[arg(long, value_name = "[KEY=]VALUE")]
    tag_focus: Option<TagFilter>,
    /// Drop samples with a label matching, as --tag-focus (pprof's -tagignore).
    #[arg(long, value_name = "[KEY=]VALUE")]
    tag_ignore: Option<TagFilter>,
    /// Also report totals and top functions per value of this label key.
    #[arg(long, value_name = "KEY")]
    group_by: Option<String>,
    /// Worker threads (default, or 0: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Refuse gzip inputs that inflate to more than this, and standard input
    /// or pipes longer than this; a plain file on disk is read whatever its
    /// size (suffixes K, M, G accepted).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DECOMPRESSED, value_parser = size_in_bytes)]
    max_decompressed_size: u64,
    /// Read input files instead of memory-mapping them (for files that may
    /// change while they are read, e.g. on a network filesystem).
    #[arg(long)]
    no_mmap: bool,
}

fn size_in_bytes(s: &str) -> Result<u64, String> {
    parse_byte_size(s)
        .ok_or_else(|| format!("{s:?} is not a size (examples: 1073741824, 512M, 4G)"))
}

/// Whether `err` is an input over the decompression cap (the library's
/// message names no flag; the binary says which one raises it).
fn is_too_large(err: &Error) -> bool {
    fn profile(e: &firewatch_profile::Error) -> bool {
        match e {
            firewatch_profile::Error::TooLarge { .. } => true,
            firewatch_profile::Error::File { error, .. } => profile(error),
            _ => false,
        }
    }
    matches!(err, Error::Profile(e) if profile(e))
}

/// A progress bar on standard error for runs over many inputs, shown only
/// once the run has taken a moment (short runs print nothing), cleared at
/// the end.
fn progress_bar() -> Progress {
    let started = Instant::now();
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    Progress::new(move |done, all| {
        let Ok(mut bar) = bar.lock() else {
            return;
        };
        if bar.is_none() && done < all && started.elapsed() >= Duration::from_millis(500) {
            let b = ProgressBar::new(all as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} profiles, {elapsed} (eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix("firewatch");
            *bar = Some(b);
        }
        if let Some(b) = bar.as_ref() {
            b.set_position(done as u64);
            if done >= all {
                b.finish_and_clear();
            }
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Analyze(args) = cli.command;
    let request = args.into_request();
    let result = firewatch_analyzer::run(&request, std::io::stdout());
    let summary = match result {
        Ok(summary) => summary,
        // A closed stdout (`firewatch analyze … | head`) is not an error.
        Err(Error::Report(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("firewatch: {err}");
            if is_too_large(&err) {
                eprintln!("firewatch: raise the limit with --max-decompressed-size");
            }
            return ExitCode::from(err.exit_code() as u8);
        }
    };
    for warning in &summary.warnings {
        match warning {
            Warning::NothingKept { samples } => eprintln!(
                "firewatch: warning: the filters (--focus, --ignore, --tag-focus, --tag-ignore) left none of the profile's {samples} samples"
            ),
            other => eprintln!("firewatch: warning: {other}"),
        }
    }
    for phase in &summary.timings {
        eprintln!("firewatch: {phase}");
    }
    ExitCode::SUCCESS
}

impl AnalyzeArgs {
    fn into_request(self) -> Request {
        let mut request = Request::new(self.profiles);
        request.base = self.base.into_iter().map(Source::from).collect();
        let mut options = Options::default();
        options.sample_index = self.sample_index.unwrap_or_default();
        options.focus = self.focus;
        options.ignore = self.ignore;
        options.all_frames = self.all_frames;
        options.tag_focus = self.tag_focus;
        options.tag_ignore = self.tag_ignore;
        options.group_by = self.group_by;
        request.options = options;
        request.format = match self.format {
            Format::Text => ReportFormat::Text,
            Format::Json => ReportFormat::Json,
            Format::Markdown => ReportFormat::Markdown,
        };
        request.limits = Limits {
            top: self.top,
            hot_paths: self.hot_paths,
        };
        request.flamegraph = self.flamegraph;
        request.folded = self.folded;
        request.symbols = self.symbols;
        request.max_decompressed = self.max_decompressed_size;
        request.threads = self.threads.and_then(NonZeroUsize::new);
        if !self.no_mmap {
            // SAFETY: profiles are written once and renamed into place, so
            // a file does not change while it is analyzed; whoever analyzes
            // a file still being written passes --no-mmap.
            request.mmap = unsafe { MmapChoice::auto() };
        }
        // Phase timings on standard error when FIREWATCH_TIMINGS is set.
        request.timings = std::env::var_os("FIREWATCH_TIMINGS").is_some();
        if std::io::stderr().is_terminal() {
            request.progress = Some(progress_bar());
        }
        request
    }
}
