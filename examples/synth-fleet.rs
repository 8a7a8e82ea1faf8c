//! Writes the profiles of a synthetic fleet: `--files N` replicas of one
//! service (see `firewatch::synth::fleet`), gzip-compressed, into a
//! directory, for `benches/fleet.sh`.
//!
//! ```text
//! cargo run --release --example synth-fleet -- DIR [--files N] [--keep P]
//! ```
//!
//! The base profile has 20,000 samples over 1,200 functions and 3,500
//! locations; each replica keeps a share `P` of its samples (default 0.05,
//! about 100 KB per file). The same arguments always produce the same files.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use firewatch::synth::{self, fleet, Config};
use flate2::write::GzEncoder;
use flate2::Compression;
use rayon::prelude::*;

const USAGE: &str = "usage: synth-fleet DIR [--files N] [--keep P]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut files, mut keep) = (None, 100u64, 0.05f64);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--files" => files = value().parse().unwrap_or(0),
            "--keep" => keep = value().parse().unwrap_or(-1.0),
            a if !a.starts_with('-') && dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir.filter(|_| files > 0 && (0.0..=1.0).contains(&keep)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let base = synth::generate(&Config {
        samples: 20_000,
        locations: 3_500,
        functions: 1_200,
        seed: 11,
        ..Config::default()
    });
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        (0..files).into_par_iter().try_for_each(|i| {
            let bytes = fleet::replica(&base, i, keep).encode();
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(&bytes)?;
            std::fs::write(dir.join(format!("replica-{i:05}.pb.gz")), gz.finish()?)
        })
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synth-fleet: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
