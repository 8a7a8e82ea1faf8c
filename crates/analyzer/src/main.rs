//! The `firewatch` command line. It parses flags and calls the library.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use firewatch_analyzer::report::{self, Limits, Metadata, Report};
use firewatch_analyzer::{aggregate_samples, flamegraph, prepare, Input, Options};
use firewatch_profile::{ProfileData, SampleBlock, DEFAULT_MAX_DECOMPRESSED};
use rayon::prelude::*;
use regex::Regex;

#[derive(Parser)]
#[command(
    name = "firewatch",
    version,
    about = "Profiling toolchain for Rust services: analyze pprof profiles"
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
    /// Profiles to analyze (gzip or raw pprof; `-` reads standard input); several are merged.
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
    sample_index: Option<String>,
    /// Also write a flamegraph SVG.
    #[arg(long, value_name = "FILE.svg")]
    flamegraph: Option<PathBuf>,
    /// Also write folded stacks (`root;…;leaf value`).
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// Report the difference PROFILE… minus this base (values may be negative).
    #[arg(long, value_name = "PROFILE")]
    base: Vec<PathBuf>,
    /// Keep only samples with a frame whose function name, source file or binary matches.
    #[arg(long, value_name = "REGEX")]
    focus: Option<Regex>,
    /// Drop samples with a frame whose function name, source file or binary matches.
    #[arg(long, value_name = "REGEX")]
    ignore: Option<Regex>,
    /// Ignore the profile's drop_frames/keep_frames.
    #[arg(long)]
    all_frames: bool,
    /// Worker threads (default, or 0: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Refuse inputs that decompress to more than this (suffixes K, M, G accepted).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DECOMPRESSED.to_string(), value_parser = parse_size)]
    max_decompressed_size: String,
}

fn parse_size(s: &str) -> Result<String, String> {
    size_in_bytes(s).map(|_| s.to_string())
}

fn size_in_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, factor) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{s:?} is not a size (examples: 1073741824, 512M, 4G)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Analyze(args) = cli.command;
    match analyze(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err
                .downcast_ref::<firewatch_analyzer::Error>()
                .map_or(1, |e| e.exit_code());
            eprintln!("firewatch: {err:#}");
            ExitCode::from(code as u8)
        }
    }
}

fn analyze(args: &AnalyzeArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads.filter(|&n| n > 0) {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("starting worker threads")?;
    }
    let timings = Timings::from_env();
    let limit = size_in_bytes(&args.max_decompressed_size).map_err(anyhow::Error::msg)?;
    let paths: Vec<(&PathBuf, bool)> = args
        .profiles
        .iter()
        .map(|p| (p, false))
        .chain(args.base.iter().map(|p| (p, true)))
        .collect();

    // Read and decode every input in parallel; each decode is parallel too.
    let data: Vec<ProfileData> = paths
        .par_iter()
        .map(|(p, _)| ProfileData::open(p, limit))
        .collect::<Result<_, _>>()?;
    timings.mark("read and inflate");
    let mut views = data
        .par_iter()
        .map(ProfileData::view)
        .collect::<Result<Vec<_>, _>>()?;
    timings.mark("decode");

    let names: Vec<String> = paths.iter().map(|(p, _)| p.display().to_string()).collect();
    let inputs: Vec<Input> = paths
        .iter()
        .zip(&views)
        .map(|((p, base), view)| Input {
            path: p.to_path_buf(),
            view,
            base: *base,
        })
        .collect();
    let options = Options {
        sample_index: args.sample_index.clone(),
        focus: args.focus.clone(),
        ignore: args.ignore.clone(),
        all_frames: args.all_frames,
    };
    let mut meta = Metadata::from_views(
        &names
            .iter()
            .zip(&inputs)
            .map(|(n, i)| (n.as_str(), i.view, i.base))
            .collect::<Vec<_>>(),
    );
    // Plan the locations, then keep only the samples: the rest of the
    // decoded profiles and the input bytes are freed before the sample pass
    // builds its tables (this bounds peak memory).
    let prepared = prepare(&inputs, &options)?;
    drop(inputs);
    let blocks: Vec<Vec<SampleBlock>> = views
        .iter_mut()
        .map(|v| std::mem::take(&mut v.sample_blocks))
        .collect();
    drop(views);
    drop(data);
    let block_refs: Vec<&[SampleBlock]> = blocks.iter().map(Vec::as_slice).collect();
    let agg = aggregate_samples(prepared, &block_refs);
    drop(block_refs);
    drop(blocks);
    if (args.focus.is_some() || args.ignore.is_some()) && agg.samples > 0 && agg.samples_kept == 0 {
        eprintln!(
            "firewatch: warning: --focus/--ignore left none of the profile's {} samples",
            agg.samples
        );
    }
    timings.mark("aggregate");

    if let Some(re) = &args.focus {
        meta.filters.push(format!("focus={re}"));
    }
    if let Some(re) = &args.ignore {
        meta.filters.push(format!("ignore={re}"));
    }

    if let Some(path) = &args.flamegraph {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        flamegraph::write_flamegraph(&agg, &meta.inputs, &meta.base, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        meta.flamegraph = Some(path.display().to_string());
    }
    if let Some(path) = &args.folded {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        flamegraph::write_folded(&agg, BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    timings.mark("flamegraph and folded output");
    let report = Report::new(
        &meta,
        &agg,
        Limits {
            top: args.top,
            hot_paths: args.hot_paths,
        },
    );
    let rendered = match args.format {
        Format::Text => report::render_text(&report),
        Format::Json => report::render_json(&report),
        Format::Markdown => report::render_markdown(&report),
    };
    timings.mark("report");
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match lock
        .write_all(rendered.as_bytes())
        .and_then(|()| lock.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the report"),
    }
}

/// Phase timings on standard error when `FIREWATCH_TIMINGS` is set.
struct Timings {
    last: Option<std::cell::Cell<std::time::Instant>>,
}

impl Timings {
    fn from_env() -> Timings {
        Timings {
            last: std::env::var_os("FIREWATCH_TIMINGS")
                .map(|_| std::cell::Cell::new(std::time::Instant::now())),
        }
    }

    fn mark(&self, phase: &str) {
        if let Some(last) = &self.last {
            let now = std::time::Instant::now();
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let field = |name: &str| {
                let line = status.lines().find(|l| l.starts_with(name));
                line.map_or("?", |l| l[name.len()..].trim())
            };
            eprintln!(
                "firewatch: {phase}: {:.3} s (RSS {}, peak {})",
                (now - last.get()).as_secs_f64(),
                field("VmRSS:"),
                field("VmHWM:")
            );
            last.set(now);
        }
    }
}
