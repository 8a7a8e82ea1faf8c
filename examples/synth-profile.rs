//! Writes a large synthetic CPU profile (see `firewatch::synth`).
//!
//! ```text
//! cargo run --release --example synth-profile -- OUT.pb[.gz] [--samples N] [--seed S] [--stacks K]
//! ```
//!
//! With `--stacks K`, K samples are generated and the N samples of the file
//! are drawn from them at random (so about K·(1 − e^(−N/K)) distinct
//! stacks, each repeated: a long CPU profile of a steady service).
//!
//! The output is gzip-compressed when its name ends in `.gz`, raw protobuf
//! otherwise. The same arguments always produce the same bytes.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use firewatch::synth::{self, Config};
use firewatch_profile::Profile;
use flate2::write::GzEncoder;
use flate2::Compression;

const USAGE: &str = "usage: synth-profile OUT.pb[.gz] [--samples N] [--seed S] [--stacks K]";

fn main() -> ExitCode {
    let (out, config, stacks) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("synth-profile: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&out, &config, stacks) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synth-profile: {out}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<(String, Config, Option<usize>), String> {
    let mut config = Config::default();
    let mut stacks = None;
    let mut out = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            "--samples" => config.samples = value("--samples")? as usize,
            "--seed" => config.seed = value("--seed")?,
            "--stacks" => stacks = Some(value("--stacks")? as usize),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            a if a.starts_with('-') && a != "-" => return Err(format!("unknown option {a}")),
            a if out.is_none() => out = Some(a.to_string()),
            a => return Err(format!("unexpected argument {a}")),
        }
    }
    Ok((out.ok_or("missing OUT")?, config, stacks))
}

fn run(out: &str, config: &Config, stacks: Option<usize>) -> std::io::Result<()> {
    let started = Instant::now();
    let profile = match stacks {
        None => synth::generate(config),
        Some(k) => {
            let mut profile = synth::generate(&Config {
                samples: k.max(1),
                ..*config
            });
            let mut rng = synth::Rng::new(config.seed ^ 0x0057_acc5);
            let distinct = std::mem::take(&mut profile.sample);
            profile.sample = (0..config.samples)
                .map(|_| distinct[rng.below(distinct.len())].clone())
                .collect();
            profile
        }
    };
    let generated = started.elapsed();
    let raw = profile.encode();
    let encoded = started.elapsed();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&raw)?;
    let gz = gz.finish()?;
    let compressed = started.elapsed();
    let bytes = if out.ends_with(".gz") { &gz } else { &raw };
    std::fs::write(out, bytes)?;

    println!("wrote {out} ({} bytes)", bytes.len());
    println!(
        "raw size      {:>12} bytes ({:.1} MB)",
        raw.len(),
        raw.len() as f64 / 1e6
    );
    println!(
        "gzip size     {:>12} bytes ({:.1} MB, level 6)",
        gz.len(),
        gz.len() as f64 / 1e6
    );
    print_stats(&profile, config);
    println!(
        "time          generate {:.2} s, encode {:.2} s, gzip {:.2} s",
        generated.as_secs_f64(),
        (encoded - generated).as_secs_f64(),
        (compressed - encoded).as_secs_f64()
    );
    Ok(())
}

fn print_stats(p: &Profile, config: &Config) {
    let frames: usize = p.sample.iter().map(|s| s.location_id.len()).sum();
    let unique: HashSet<&[u64]> = p.sample.iter().map(|s| &s.location_id[..]).collect();
    let used: HashSet<u64> = p
        .sample
        .iter()
        .flat_map(|s| s.location_id.iter().copied())
        .collect();
    let inlined = p.location.iter().filter(|l| l.line.len() > 1).count();
    let cpu: i64 = p.sample.iter().map(|s| s.value[1]).sum();
    // Flat CPU by leaf function: the innermost line of the leaf location, as pprof counts it.
    let mut flat: HashMap<u64, i64> = HashMap::new();
    for s in &p.sample {
        let leaf = &p.location[s.location_id[0] as usize - 1];
        *flat.entry(leaf.line[0].function_id).or_default() += s.value[1];
    }
    let mut flat: Vec<_> = flat.into_iter().collect();
    flat.sort_by_key(|&(f, v)| (-v, f));

    println!("seed          {}", config.seed);
    println!(
        "samples       {} ({} unique stacks, {:.1}%)",
        p.sample.len(),
        unique.len(),
        100.0 * unique.len() as f64 / p.sample.len().max(1) as f64
    );
    println!(
        "frames        {frames} (mean depth {:.1})",
        frames as f64 / p.sample.len().max(1) as f64
    );
    println!(
        "locations     {} ({} used by samples, {} with inlined lines)",
        p.location.len(),
        used.len(),
        inlined
    );
    println!("functions     {}", p.function.len());
    println!("mappings      {}", p.mapping.len());
    println!("strings       {}", p.string_table.len());
    println!("cpu total     {:.1} s", cpu as f64 / 1e9);
    println!("hottest leaves (flat cpu):");
    for &(f, v) in flat.iter().take(5) {
        let name = p.string(p.function[f as usize - 1].name);
        println!("  {:5.2}%  {name}", 100.0 * v as f64 / cpu as f64);
    }
}
