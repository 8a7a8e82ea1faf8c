//! Fuzz target `analyze`: arbitrary bytes → `ProfileData` → view → the whole
//! analyzer pipeline, as the `firewatch` binary runs it:
//!
//! 1. the profile alone, default options (pprof's default sample type, the
//!    profile's own `drop_frames`/`keep_frames` regexes);
//! 2. the profile minus itself as a base (a difference);
//! 3. the profile merged with itself minus itself, by sample index `0`, with
//!    `--focus`/`--ignore` filters and all frames kept (the filtered
//!    difference tracks unfiltered stacks for pprof's total).
//!
//! Each aggregate is rendered by all three report renderers (the JSON one
//! must parse), as folded stacks and as a flamegraph SVG. Limits are small
//! (top 10, 5 hot paths) to keep each run cheap.

#![no_main]

use std::hint::black_box;
use std::sync::OnceLock;

use firewatch_analyzer::report::{self, Limits, Metadata, Report};
use firewatch_analyzer::{aggregate, flamegraph, Input, Options, SampleIndex};
use firewatch_profile::{ProfileData, ProfileView};
use libfuzzer_sys::fuzz_target;
use regex::Regex;

/// Decompression cap (see the `decode` target).
const LIMIT: u64 = 64 << 20;

const LIMITS: Limits = Limits {
    top: 10,
    hot_paths: 5,
};

fn filtered_options() -> &'static Options {
    static OPTIONS: OnceLock<Options> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut options = Options::default();
        options.sample_index = SampleIndex::Index(0);
        options.focus = Some(Regex::new("a").unwrap());
        options.ignore = Some(Regex::new("^z").unwrap());
        options.all_frames = true;
        options
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = ProfileData::from_bytes("fuzz", data.to_vec(), LIMIT) else {
        return;
    };
    let Ok(view) = bytes.view() else {
        return;
    };
    let input = |path: &str, base: bool| Input {
        path: path.into(),
        view: &view,
        base,
    };

    analyze(&view, &[input("in.pb", false)], &Options::default(), true);
    analyze(
        &view,
        &[input("in.pb", false), input("base.pb", true)],
        &Options::default(),
        true,
    );
    analyze(
        &view,
        &[
            input("in.pb", false),
            input("again.pb", false),
            input("base.pb", true),
        ],
        filtered_options(),
        false,
    );
});

fn analyze(view: &ProfileView, inputs: &[Input], options: &Options, svg: bool) {
    let agg = match aggregate(inputs, options) {
        Ok(agg) => agg,
        // No sample types, a bad drop_frames regex, ...: refused, fine.
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };
    assert!(agg.samples_kept <= agg.samples);
    for s in agg.stacks() {
        for &f in s.frames {
            assert!(
                (f as usize) < agg.functions.len(),
                "stack frame out of range"
            );
        }
    }
    let names: Vec<(&str, &ProfileView, bool)> = inputs
        .iter()
        .map(|i| (i.path.to_str().unwrap(), view, i.base))
        .collect();
    let meta = Metadata::from_views(&names);
    let report = Report::new(&meta, &agg, LIMITS);
    assert!(report.functions.len() <= LIMITS.top);
    assert!(report.hot_paths.len() <= LIMITS.hot_paths);
    black_box(report::render_text(&report));
    black_box(report::render_markdown(&report));
    let json = report::render_json(&report);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
        panic!("render_json wrote invalid JSON ({e}): {json}");
    }
    let mut folded = Vec::new();
    flamegraph::write_folded(&agg, &mut folded).expect("writing to a Vec");
    black_box(folded);
    if svg {
        // inferno may refuse odd input with an error; it must not panic.
        let _ = flamegraph::write_flamegraph(&agg, &meta.inputs, &meta.base, std::io::sink());
    }
}
