//! Fuzz target `node`: arbitrary bytes as a Node.js `.cpuprofile` and as a
//! `.heapprofile`, through the analyzer's public entry points as
//! `firewatch` runs them: `convert_to_pprof` (the pprof it writes must
//! decode and validate), then `run` with the input as its own `--base`,
//! JSON report (which must parse). A refused input must give an error of
//! the format read (a gzip one may also fail to inflate) that is one line
//! and names the file.
//!
//! The input is read from a scratch file (both entry points read files),
//! forced to each format in turn so that detection does not hand it to
//! another reader.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use firewatch_analyzer::report::Limits;
use firewatch_analyzer::{
    convert_to_pprof, run, Error, InputFormat, ReportFormat, Request, Source,
};
use firewatch_profile::Profile;
use libfuzzer_sys::fuzz_target;

/// Decompression cap (as in the other targets).
const LIMIT: u64 = 64 << 20;

fn scratch() -> &'static PathBuf {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("firewatch-fuzz-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir.join("in.json")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("writing the scratch input");
    for format in [InputFormat::NodeCpuProfile, InputFormat::NodeHeapProfile] {
        let source = Source {
            path: path.clone(),
            format: Some(format),
        };
        let pprof = match convert_to_pprof(&source, LIMIT) {
            Ok(pprof) => pprof,
            Err(e) => {
                check_error(&e, data, path, format);
                continue;
            }
        };
        let profile = match Profile::decode(&pprof) {
            Ok(p) => p,
            Err(e) => panic!("{format}: the converted profile does not decode: {e}"),
        };
        if let Err(e) = profile.validate() {
            panic!("{format}: the converted profile is invalid: {e}");
        }

        let mut request = Request::new([source.clone()]);
        request.base = vec![source];
        request.format = ReportFormat::Json;
        request.limits = Limits {
            top: 10,
            hot_paths: 5,
        };
        request.max_decompressed = LIMIT;
        let mut out = Vec::new();
        if let Err(e) = run(&request, &mut out) {
            panic!("{format}: converted, then refused by the analysis: {e}");
        }
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out) {
            panic!(
                "{format}: the JSON report does not parse ({e}): {}",
                String::from_utf8_lossy(&out)
            );
        }
    }
});

/// A refused input: an error of the format read, one line, naming the file.
fn check_error(e: &Error, data: &[u8], path: &Path, format: InputFormat) {
    let message = e.to_string();
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "{format}: the error is not one line: {message:?}"
    );
    assert!(
        message.contains(&path.display().to_string()),
        "{format}: the error does not name the file: {message}"
    );
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    match e {
        Error::NodeProfile { format: f, .. } if *f == format => {}
        // Inflating a gzip input can fail, or pass the cap.
        Error::Profile(_) if gzip => {}
        other => panic!("{format}: not a {format} error: {other:?} ({message})"),
    }
}
