//! Fuzz target `heapsnapshot`: arbitrary bytes as a V8 heap snapshot
//! (`.heapsnapshot`), through the analyzer's public entry point, `run`, as
//! `firewatch analyze` runs it. The snapshot reader is crate-private; going
//! through `run` also checks what the user sees: the one-line error.
//!
//! 1. JSON report, the input as its own `--base` (the new-since-base diff
//!    when the ids match, else the per-constructor counts), and the
//!    dominator tree as a flamegraph SVG. A refused input must give a
//!    `.heapsnapshot` error (a gzip one may also fail to inflate) that is
//!    one line and names the file; an accepted one must give JSON that
//!    parses.
//! 2. Text report with the input as both bases (memlab's three-snapshot
//!    rule), and 3. Markdown with a base from another process (a fixed
//!    snapshot whose ids name other objects: the per-constructor counts):
//!    an input accepted once must be accepted again.
//!
//! The input is read from a scratch file (`run` reads files), forced to
//! the snapshot format so that detection does not hand it to another
//! reader. Limits are small (top 10) to keep each run cheap.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use firewatch_analyzer::report::Limits;
use firewatch_analyzer::{run, Error, InputFormat, ReportFormat, Request, Source};
use libfuzzer_sys::fuzz_target;

/// Decompression cap (as in the other targets).
const LIMIT: u64 = 64 << 20;

struct Scratch {
    input: PathBuf,
    svg: PathBuf,
    /// A snapshot of "another process": ids 1-7, a `Base` object and a
    /// `(GC roots)` node.
    other: PathBuf,
}

const OTHER: &str = r#"{"snapshot":{"meta":{"node_fields":["type","name","id","self_size","edge_count"],
"node_types":[["hidden","object","synthetic"],"string","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[["element","property","weak","shortcut"],"string_or_number","node"]}},
"nodes":[2,0,1,0,2, 2,1,3,0,1, 1,2,5,100,0, 1,2,7,40,0],
"edges":[0,0,5, 1,3,15, 1,3,10],
"strings":["(root)","(GC roots)","Base","next"]}"#;

/// One scratch directory per fuzzing process, reused by every run.
fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "firewatch-fuzz-heapsnapshot-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let other = dir.join("other.heapsnapshot");
        std::fs::write(&other, OTHER).expect("writing the other snapshot");
        Scratch {
            input: dir.join("in.heapsnapshot"),
            svg: dir.join("dominators.svg"),
            other,
        }
    })
}

fn snapshot(path: &std::path::Path) -> Source {
    Source {
        path: path.to_path_buf(),
        format: Some(InputFormat::NodeHeapSnapshot),
    }
}

fn request(source: &Source, base: Vec<Source>, format: ReportFormat, top: usize) -> Request {
    let mut request = Request::new([source.clone()]);
    request.base = base;
    request.format = format;
    request.limits = Limits { top, hot_paths: 0 };
    request.max_decompressed = LIMIT;
    request
}

fuzz_target!(|data: &[u8]| {
    let scratch = scratch();
    std::fs::write(&scratch.input, data).expect("writing the scratch input");
    let source = snapshot(&scratch.input);

    let mut first = request(&source, vec![source.clone()], ReportFormat::Json, 10);
    first.flamegraph = Some(scratch.svg.clone());
    let mut out = Vec::new();
    if let Err(e) = run(&first, &mut out) {
        check_error(&e, data, &scratch.input);
        return;
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out) {
        panic!(
            "the JSON report does not parse ({e}): {}",
            String::from_utf8_lossy(&out)
        );
    }

    let other = snapshot(&scratch.other);
    for (base, format, top) in [
        (vec![source.clone(), source.clone()], ReportFormat::Text, 10),
        (vec![other], ReportFormat::Markdown, 3),
    ] {
        let mut out = Vec::new();
        let bases = base.len();
        if let Err(e) = run(&request(&source, base, format, top), &mut out) {
            panic!("accepted as a JSON report, refused as {format:?} with {bases} bases: {e}");
        }
        assert!(!out.is_empty());
    }
});

/// A refused input: a `.heapsnapshot` error, one line, naming the file.
fn check_error(e: &Error, data: &[u8], path: &std::path::Path) {
    let message = e.to_string();
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "the error is not one line: {message:?}"
    );
    assert!(
        message.contains(&path.display().to_string()),
        "the error does not name the file: {message}"
    );
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    match e {
        Error::HeapSnapshot { .. } => {}
        // Inflating a gzip input can fail, or pass the cap.
        Error::Profile(_) if gzip => {}
        other => panic!("not a .heapsnapshot error: {other:?} ({message})"),
    }
}
