//! Node.js profiles (`.cpuprofile`, `.heapprofile`) through `firewatch
//! analyze`, as a user runs it.
//!
//! Expected numbers come from elsewhere than firewatch: from JavaScript run
//! by `node` on the same files (`tests/node/*.js`, which share no code with
//! the Rust reader), or derived by hand below from the lines of
//! `fixtures/node/generate.sh` that write the synthetic profiles. Without
//! `node` the JavaScript comparisons say so and pass, unless
//! `FIREWATCH_REQUIRE_NODE` is set (CI sets it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/node")
        .join(name)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/node")
        .join(name)
}

fn firewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = firewatch(&[&["analyze", "--format", "json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(args: &[&str]) -> String {
    let out = firewatch(&[&["analyze"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// name → (flat, cum) of every function in a JSON report.
fn rows(report: &serde_json::Value) -> BTreeMap<String, (i64, i64)> {
    report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                (f["flat"].as_i64().unwrap(), f["cum"].as_i64().unwrap()),
            )
        })
        .collect()
}

/// Whether `node` runs; without it, a notice (or a failure when
/// `FIREWATCH_REQUIRE_NODE` is set).
fn node_available() -> bool {
    let ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_NODE").is_none(),
            "FIREWATCH_REQUIRE_NODE is set but `node` does not run"
        );
        eprintln!("node is not installed: skipping the comparison with JavaScript");
    }
    ok
}

fn run_node(script_name: &str, file: &Path) -> serde_json::Value {
    let out = Command::new("node")
        .arg(script(script_name))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script_name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cpu_times_equal_an_independent_devtools_computation() {
    if !node_available() {
        return;
    }
    for name in [
        "workload.cpuprofile",
        "synthetic.cpuprofile",
        "synthetic-base.cpuprofile",
    ] {
        let file = fixture(name);
        let js = run_node("devtools_cpu_times.js", &file);
        let expected: BTreeMap<String, (i64, i64)> = js["functions"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let (s, t) = (v["self"].as_i64().unwrap(), v["total"].as_i64().unwrap());
                (k.clone(), (s, t))
            })
            .filter(|(_, v)| *v != (0, 0))
            .collect();
        let report = json(&["--top", "0", path(&file)]);
        assert_eq!(report["sample_type"]["type"], "cpu");
        assert_eq!(report["sample_type"]["unit"], "microseconds");
        assert_eq!(report["total"], js["total"], "{name}");
        assert_eq!(rows(&report), expected, "{name}");
        assert!(expected.len() >= 5, "{name}: {expected:?}");
    }
}

#[test]
fn heap_bytes_equal_an_independent_sum_of_self_sizes() {
    if !node_available() {
        return;
    }
    let file = fixture("workload.heapprofile");
    let js = run_node("heap_self_sizes.js", &file);
    let functions = js["functions"].as_object().unwrap();
    let pick = |key: &str| -> BTreeMap<String, i64> {
        functions
            .iter()
            .map(|(k, v)| (k.clone(), v[key].as_i64().unwrap()))
            .collect()
    };
    let space = json(&["--top", "0", path(&file)]);
    assert_eq!(space["sample_type"]["type"], "space");
    assert_eq!(space["sample_type"]["unit"], "bytes");
    let nonzero = |m: BTreeMap<String, i64>| -> BTreeMap<String, i64> {
        m.into_iter().filter(|(_, v)| *v != 0).collect()
    };
    let flat =
        |r: &serde_json::Value| nonzero(rows(r).into_iter().map(|(k, v)| (k, v.0)).collect());
    let cum = |r: &serde_json::Value| nonzero(rows(r).into_iter().map(|(k, v)| (k, v.1)).collect());
    assert_eq!(flat(&space), nonzero(pick("self")));
    assert_eq!(cum(&space), nonzero(pick("total")));
    let objects = json(&["--top", "0", "--sample-index", "objects", path(&file)]);
    assert_eq!(flat(&objects), nonzero(pick("objects")));
    assert!(space["total"].as_i64().unwrap() > 1 << 20);
}

/// The hand-derived numbers for `synthetic.cpuprofile`. From generate.sh:
/// startTime 1000, samples [6,6,7,9,10,2,4,8,3,5], timeDeltas
/// [100,1000,1000,1000,500,1500,-200,1200,1000,1000] give times 1100,
/// 2100, 3100, 4100, 4600, 6100, 5900, 7100, 8100, 9100. In time order the
/// GC sample (node 4, 5900) comes before (program) (node 2, 6100). Each
/// lasts until the next: node 6 1000 + 1000, node 7 1000, node 9 500,
/// node 10 5900 − 4600 = 1300, node 4 200, node 2 1000, node 8 1000,
/// node 3 1000; the last (node 5) the mean (9100 − 1100) / 9 = 888.9 → 889.
fn synthetic_expected() -> BTreeMap<String, (i64, i64)> {
    let main = "main (file:///app/main.js:1:1)";
    let hot = "hotLoop (file:///app/main.js:10:17)";
    let anon = "(anonymous) (file:///app/main.js:13:21)";
    let walk = "walk (file:///app/main.js:21:14)";
    [
        // hotLoop: self in nodes 6 (2000) and 10 (1300); total adds node 7
        // (1000), called from node 6.
        (hot, (3300, 4300)),
        // walk: self in nodes 8 (1000) and 9 (500); total adds node 10
        // (1300) under it, once although walk is twice on that stack.
        (walk, (1500, 2800)),
        (anon, (1000, 1000)),
        // main: self 889 (the last sample); total every sample under it:
        // 2000 + 1000 + 500 + 1300 + 1000 + 889.
        (main, (889, 6689)),
        ("(program)", (1000, 1000)),
        ("(idle)", (1000, 1000)),
        ("(garbage collector)", (200, 200)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn synthetic_profile_gives_the_hand_derived_times() {
    let file = fixture("synthetic.cpuprofile");
    let report = json(&["--top", "0", path(&file)]);
    assert_eq!(rows(&report), synthetic_expected());
    assert_eq!(report["total"], 8000 + 889);
    // The samples: hotLoop is the leaf of 3 (nodes 6, 6, 10).
    let counts = json(&["--top", "0", "--sample-index", "samples", path(&file)]);
    assert_eq!(counts["total"], 10);
    assert_eq!(rows(&counts)["hotLoop (file:///app/main.js:10:17)"], (3, 4));
    // Duration is endTime − startTime (9 ms); startTime is V8's monotonic
    // clock, so no Time: line.
    let t = text(&["--hot-paths", "1", path(&file)]);
    assert!(
        t.contains("Duration: 9ms, Total samples = 8889us (98.77%)"),
        "{t}"
    );
    assert!(!t.contains("Time:"), "{t}");
    // The heaviest path: main → hotLoop (node 6, 2000 µs), root first.
    assert_eq!(
        report["hot_paths"][0]["frames"],
        serde_json::json!([
            "main (file:///app/main.js:1:1)",
            "hotLoop (file:///app/main.js:10:17)"
        ])
    );
    assert_eq!(report["hot_paths"][0]["value"], 2000);
}

#[test]
fn base_subtracts_one_cpuprofile_from_another() {
    // synthetic-base.cpuprofile: samples [6,7,8,2] at 1100, 2100, 3100,
    // 4100: nodes 6, 7 and 8 get 1000 each, node 2 (the last) the mean
    // (4100 − 1100) / 3 = 1000. So hotLoop (1000, 2000), (anonymous)
    // (1000, 1000), walk (1000, 1000), main (0, 3000), (program) (1000,
    // 1000), and the difference is synthetic minus that.
    let report = json(&[
        "--top",
        "0",
        "--base",
        path(&fixture("synthetic-base.cpuprofile")),
        path(&fixture("synthetic.cpuprofile")),
    ]);
    let base: BTreeMap<&str, (i64, i64)> = [
        ("hotLoop (file:///app/main.js:10:17)", (1000, 2000)),
        ("(anonymous) (file:///app/main.js:13:21)", (1000, 1000)),
        ("walk (file:///app/main.js:21:14)", (1000, 1000)),
        ("main (file:///app/main.js:1:1)", (0, 3000)),
        ("(program)", (1000, 1000)),
    ]
    .into_iter()
    .collect();
    let expected: BTreeMap<String, (i64, i64)> = synthetic_expected()
        .into_iter()
        .map(|(k, (f, c))| {
            let (bf, bc) = base.get(k.as_str()).copied().unwrap_or((0, 0));
            (k, (f - bf, c - bc))
        })
        .filter(|(_, v)| *v != (0, 0))
        .collect();
    assert_eq!(rows(&report), expected);
    assert_eq!(
        rows(&report)["hotLoop (file:///app/main.js:10:17)"],
        (2300, 2300)
    );
}

#[test]
fn live_node_profiles_show_the_hot_and_the_allocating_function_first() {
    // workload.js: hotLoop does most of the work, allocateOrders keeps
    // most of the heap.
    let t = text(&["--top", "3", path(&fixture("workload.cpuprofile"))]);
    let first = t
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap();
    assert!(
        first.ends_with("hotLoop (file:///app/workload.js:6:17)"),
        "{t}"
    );
    let h = text(&["--top", "3", path(&fixture("workload.heapprofile"))]);
    let first = h
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap();
    // V8 leaves the main script's url out of heap profiles: the bare name.
    assert!(first.ends_with("  allocateOrders"), "{h}");
    assert!(h.contains("Type: space"), "{h}");
}

#[test]
fn flamegraph_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("cpu.svg");
    text(&[
        "--flamegraph",
        path(&svg),
        path(&fixture("workload.cpuprofile")),
    ]);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100.min(svg.len())]);
    assert!(svg.contains("hotLoop (file:///app/workload.js:6:17)"));
}

#[test]
fn gzip_and_content_detection_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["synthetic.cpuprofile", "workload.heapprofile"] {
        let original = fixture(name);
        let bytes = std::fs::read(&original).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).unwrap();
        let gzipped = dir.path().join(format!("{name}.gz"));
        std::fs::write(&gzipped, gz.finish().unwrap()).unwrap();
        let as_json = dir.path().join("profile.json");
        std::fs::write(&as_json, &bytes).unwrap();
        let bare = dir.path().join("profile");
        std::fs::write(&bare, &bytes).unwrap();

        let expected = json(&["--top", "0", path(&original)]);
        for other in [&gzipped, &as_json, &bare] {
            let report = json(&["--top", "0", path(other)]);
            assert_eq!(report["functions"], expected["functions"], "{other:?}");
            assert_eq!(report["sample_type"], expected["sample_type"]);
        }
        // Standard input, gzip.
        let mut child = Command::new(env!("CARGO_BIN_EXE_firewatch"))
            .args(["analyze", "--format", "json", "--top", "0", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let gz = std::fs::read(&gzipped).unwrap();
        child.stdin.take().unwrap().write_all(&gz).unwrap();
        let out = child.wait_with_output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["functions"], expected["functions"], "stdin");
    }
}

#[test]
fn cpu_and_heap_profiles_do_not_merge() {
    let out = firewatch(&[
        "analyze",
        path(&fixture("synthetic.cpuprofile")),
        path(&fixture("workload.heapprofile")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot merge") && err.contains("cpu/microseconds"),
        "{err}"
    );
}

/// A cpuprofile with these nodes, samples and deltas.
fn cpuprofile(nodes: &str, samples: &str, deltas: &str) -> String {
    format!(
        r#"{{"nodes":{nodes},"startTime":0,"endTime":100,"samples":{samples},"timeDeltas":{deltas}}}"#
    )
}

const NODES: &str = r#"[{"id":1,"callFrame":{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},"children":[2]},{"id":2,"callFrame":{"functionName":"f","scriptId":"1","url":"a.js","lineNumber":0,"columnNumber":0}}]"#;

#[test]
fn hostile_input_is_one_line_naming_the_file_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let synthetic = std::fs::read_to_string(fixture("synthetic.cpuprofile")).unwrap();
    let heap = std::fs::read_to_string(fixture("workload.heapprofile")).unwrap();
    // Cut inside the tree, right after a `"selfSize":`, where a number must
    // follow.
    let key = r#""selfSize":"#;
    let cut = heap.match_indices(key).nth(10).unwrap().0 + key.len();
    let cycle = NODES.replace(
        r#""columnNumber":0}}"#,
        r#""columnNumber":0},"children":[2]}"#,
    );
    let ring = format!(
        r#"[{}{}]"#,
        &NODES[1..NODES.len() - 1],
        r#",{"id":3,"callFrame":{"functionName":"g","scriptId":"1","url":"a.js","lineNumber":1,"columnNumber":0},"children":[4]},{"id":4,"callFrame":{"functionName":"h","scriptId":"1","url":"a.js","lineNumber":2,"columnNumber":0},"children":[3]}"#
    );
    let garbage_nodes = format!(
        r#"{{"nodes":[{}{{"id":1}}],"samples":[],"timeDeltas":[]}}"#,
        r#"{"garbage":[1,2,3]},"#.repeat(500_000)
    );
    // A chain of 6,000 nodes, each sampled: 6000 × 6001 / 2 = 18 M frames
    // of stacks from a 700 KB file, over the 16 Mi-frame floor.
    let chain_len = 6000;
    let chain_nodes: Vec<String> = (1..=chain_len)
        .map(|i| {
            let children = if i < chain_len { format!("[{}]", i + 1) } else { "[]".into() };
            format!(r#"{{"id":{i},"callFrame":{{"functionName":"f{i}","scriptId":"1","url":"a.js","lineNumber":{i},"columnNumber":0}},"children":{children}}}"#)
        })
        .collect();
    let chain_samples: Vec<String> = (2..=chain_len).map(|i| i.to_string()).collect();
    let chain = cpuprofile(
        &format!("[{}]", chain_nodes.join(",")),
        &format!("[{}]", chain_samples.join(",")),
        &format!("[{}]", vec!["1"; chain_samples.len()].join(",")),
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated.cpuprofile",
            synthetic[..synthetic.len() / 2].to_string(),
            "invalid .cpuprofile: EOF while parsing",
        ),
        (
            "truncated.json",
            synthetic[..synthetic.len() / 2].to_string(),
            "not a profile: invalid JSON (EOF while parsing",
        ),
        (
            "truncated.heapprofile",
            heap[..cut].to_string(),
            "invalid .heapprofile: unexpected end of the file at line 1 column",
        ),
        (
            "unknown-node.cpuprofile",
            cpuprofile(NODES, "[2,9]", "[1,1]"),
            "samples[1] is node 9, which no node has",
        ),
        (
            "deltas.cpuprofile",
            cpuprofile(NODES, "[2,2,2]", "[1,1]"),
            "3 samples but 2 timeDeltas",
        ),
        (
            "overflow.cpuprofile",
            cpuprofile(NODES, "[2,2]", &format!("[{},{}]", i64::MAX, i64::MAX)),
            "overflow at timeDeltas[1]",
        ),
        (
            "negative-span.cpuprofile",
            cpuprofile(NODES, "[2,2]", &format!("[{},{}]", i64::MIN + 1, i64::MAX)),
            "span more than 2^63",
        ),
        (
            "cycle.cpuprofile",
            cpuprofile(&cycle, "[2]", "[1]"),
            "node 2 is a child of both node 1 and node 2",
        ),
        (
            "ring.cpuprofile",
            cpuprofile(&ring, "[2]", "[1]"),
            "is not reachable from the root node 1 (a cycle in `children`, or an orphan)",
        ),
        (
            "garbage-nodes.cpuprofile",
            garbage_nodes,
            "missing field `id` at line 1",
        ),
        (
            "deep.json",
            format!("{{\"nodes\":{}", "[".repeat(1 << 20)),
            "not a profile: invalid JSON (EOF while parsing a list",
        ),
        (
            "deep.heapprofile",
            format!("{{\"head\":{}", "{\"children\":[".repeat(100_000)),
            "the call tree is more than 65536 levels deep",
        ),
        (
            "chain.cpuprofile",
            chain,
            "the sampled stacks hold 17997000 frames in all, more than the 16777216",
        ),
        (
            "other.json",
            r#"{"traceEvents":[],"metadata":{}}"#.to_string(),
            "not a profile: a JSON object with keys [traceEvents, metadata]",
        ),
    ];
    for (name, content, expect) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let out = firewatch(&["analyze", path(&file)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert_eq!(err.matches(path(&file)).count(), 1, "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn negative_deltas_are_not_an_error() {
    // V8 writes them (a Node 20 run here had one of −4 µs); DevTools
    // sorts the samples by time. Times 10, 5, 30: in order node 3 (5, lasts
    // 5), node 2 (10, lasts 20), node 3 again (30, the mean (30 − 5) / 2 =
    // 12.5 → 13).
    let nodes = NODES.replace(
        r#""columnNumber":0}}"#,
        r#""columnNumber":0},"children":[3]},{"id":3,"callFrame":{"functionName":"g","scriptId":"1","url":"a.js","lineNumber":4,"columnNumber":2}}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("negative.cpuprofile");
    std::fs::write(&file, cpuprofile(&nodes, "[2,3,3]", "[10,-5,25]")).unwrap();
    let report = json(&["--top", "0", path(&file)]);
    let expected: BTreeMap<String, (i64, i64)> = [
        ("f (a.js:1:1)".to_string(), (20, 38)),
        ("g (a.js:5:3)".to_string(), (18, 18)),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows(&report), expected);
}
