//! V8 heap snapshots (`.heapsnapshot`) through `firewatch analyze`, held
//! to memlab, the reference for retained sizes.
//!
//! Snapshots are written here by Node: live ones by
//! `fixtures/node/snapshot-workload.js` (LeakedThing objects in a Map and
//! an array, closures, cycles, WeakMap and WeakRef targets; and a server
//! that leaks one `LeakedRequest` per request between its first and second
//! snapshots), a synthetic graph by `snapshot-large.js`, small random
//! graphs by this file; each is then read by memlab
//! (`tests/node/memlab/memlab_heap.js`, `@memlab/core` as pinned in its
//! `package-lock.json`) and by firewatch.
//! Without `node` or the installed memlab
//! (`PUPPETEER_SKIP_DOWNLOAD=true npm ci --ignore-scripts` in
//! `tests/node/memlab`) those tests say so and pass, unless
//! `FIREWATCH_REQUIRE_NODE` is set (CI sets it). Hostile and hand-made
//! snapshots need neither.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn firewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = firewatch(&[&["analyze", "--format", "json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether `node` runs and memlab is installed; without them, a notice (or
/// a failure when `FIREWATCH_REQUIRE_NODE` is set).
fn tools(need_memlab: bool) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let memlab = manifest("tests/node/memlab/node_modules/@memlab/core/package.json").exists();
    let ok = node && (memlab || !need_memlab);
    if !ok {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_NODE").is_none(),
            "FIREWATCH_REQUIRE_NODE is set but node or memlab is missing (node: {node}, memlab: {memlab}; \
             run `PUPPETEER_SKIP_DOWNLOAD=true npm ci --ignore-scripts` in crates/analyzer/tests/node/memlab)"
        );
        eprintln!("node or memlab is not installed: skipping the comparison with memlab");
    }
    ok
}

/// The live snapshots, written once per test run.
fn snapshots() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for mode in ["workload", "leak"] {
            let out = Command::new("node")
                .arg(manifest("../../fixtures/node/snapshot-workload.js"))
                .arg(dir.path())
                .arg(mode)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
    .path()
}

fn memlab(file: &Path) -> Value {
    let out = Command::new("node")
        .arg(manifest("tests/node/memlab/memlab_heap.js"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "memlab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Node count, total size, the 200 largest objects' retained sizes and
/// the constructor counts and self sizes equal memlab's.
fn assert_equals_memlab(file: &Path) {
    let ml = memlab(file);
    let fw = json(&["--top", "200", s(file)]);
    let name = file.display();
    assert_eq!(fw["node_count"], ml["node_count"], "{name}: node count");
    assert_eq!(fw["total_size"], ml["total_size"], "{name}: total size");
    assert_eq!(
        fw["total_size"], ml["root_retained_size"],
        "{name}: the root retains everything"
    );
    let retained = ml["retained"].as_object().unwrap();
    let top = fw["top_objects"].as_array().unwrap();
    assert_eq!(top.len(), 200.min(ml["top"].as_array().unwrap().len()));
    for o in top {
        let id = o["id"].as_u64().unwrap().to_string();
        assert_eq!(
            o["retained_size"], retained[&id],
            "{name}: retained size of @{id} ({})",
            o["class"]
        );
    }
    // The same ranking: memlab's 200 largest have the same sizes, in order.
    let ours: Vec<&Value> = top.iter().map(|o| &o["retained_size"]).collect();
    let theirs: Vec<&Value> = ml["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p[1])
        .collect();
    assert_eq!(ours, theirs, "{name}: the 200 largest retained sizes");
    let classes: BTreeMap<String, (u64, u64)> = fw["constructors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                (
                    c["count"].as_u64().unwrap(),
                    c["self_size"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (u64, u64)> = ml["constructors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    v["count"].as_u64().unwrap(),
                    v["self_size"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        fw["constructor_count"].as_u64().unwrap() as usize,
        expected.len(),
        "{name}: constructors"
    );
    if expected.len() <= 200 {
        assert_eq!(classes, expected, "{name}: constructor counts and sizes");
    }
}

#[test]
fn retained_sizes_equal_memlab_on_live_snapshots() {
    if !tools(true) {
        return;
    }
    let dir = snapshots();
    for name in [
        "workload.heapsnapshot",
        "leak-1.heapsnapshot",
        "leak-2.heapsnapshot",
        "leak-3.heapsnapshot",
    ] {
        assert_equals_memlab(&dir.join(name));
    }
}

/// The benchmark's synthetic generator (a tree with random cross links and
/// weak edges), small: memlab agrees on it too.
#[test]
fn generated_random_graph_equals_memlab() {
    if !tools(true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large.heapsnapshot");
    let out = Command::new("node")
        .arg(manifest("../../fixtures/node/snapshot-large.js"))
        .arg(&file)
        .arg("20000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_equals_memlab(&file);
}

#[test]
fn gzip_snapshot_reads_as_the_plain_one() {
    if !tools(false) {
        return;
    }
    let plain = snapshots().join("workload.heapsnapshot");
    let dir = tempfile::tempdir().unwrap();
    // No telling extension: detected by content.
    let gz = dir.path().join("snapshot.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let mut a = json(&[s(&plain)]);
    let mut b = json(&[s(&gz)]);
    a["input"] = Value::Null;
    b["input"] = Value::Null;
    assert_eq!(a, b);
}

/// snapshot-workload.js keeps 300 LeakedThing in `thingsByKey` (a Map)
/// and 200 in `thingList` (an array), 50 copies of one string built at run
/// time, and the LeakedThing class's instances each retain a 16-element
/// array.
#[test]
fn workload_tables_show_what_the_generator_built() {
    if !tools(false) {
        return;
    }
    let r = json(&["--top", "0", s(&snapshots().join("workload.heapsnapshot"))]);
    let collections = r["largest_collections"].as_array().unwrap();
    let has = |class: &str, n: u64| {
        collections
            .iter()
            .any(|c| c["class"] == class && c["elements"] == n)
    };
    assert!(has("Map", 300) && has("Array", 200), "{collections:?}");
    let things = r["constructors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "LeakedThing")
        .unwrap();
    assert_eq!(things["count"], 500);
    let dupes = r["duplicated_strings"].as_array().unwrap();
    let dup = dupes
        .iter()
        .find(|d| d["value"] == "duplicated-string")
        .unwrap();
    assert_eq!(dup["count"], 50);
    assert_eq!(
        dup["wasted"].as_u64().unwrap() * 50,
        dup["self_size"].as_u64().unwrap() * 49
    );
    // The Map's path names the global variable.
    let map_row = r["top_objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["class"] == "Map"
                && o["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["edge"] == "thingsByKey")
        })
        .expect("thingsByKey among the objects");
    assert!(map_row["retained_size"].as_u64().unwrap() > 300 * 48);
}

#[test]
fn three_snapshots_name_the_leaked_constructor_and_its_path() {
    if !tools(false) {
        return;
    }
    let dir = snapshots();
    let [one, two, three] =
        ["leak-1", "leak-2", "leak-3"].map(|n| dir.join(format!("{n}.heapsnapshot")));
    let r = json(&["--base", s(&one), "--base", s(&two), s(&three)]);
    let diff = &r["diff"];
    assert_eq!(diff["rule"], "allocated-between-bases-still-alive");
    // snapshot-workload.js leaks requests 200..1200 into `requestCache`.
    let first = &diff["constructors"][0];
    assert_eq!(first["name"], "LeakedRequest", "{diff:#}");
    assert_eq!(first["count"], 1000);
    let path = &diff["paths"][0];
    assert_eq!(path["class"], "LeakedRequest");
    assert_eq!(path["count"], 1000);
    let steps: Vec<(&str, &str)> = path["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["edge"].as_str().unwrap(), p["node"].as_str().unwrap()))
        .collect();
    assert!(
        steps.contains(&("server", "Object")) && steps.contains(&("requestCache", "Map")),
        "{steps:?}"
    );
    let md = firewatch(&[
        "analyze",
        "--format",
        "markdown",
        "--base",
        s(&one),
        "--base",
        s(&two),
        s(&three),
    ]);
    let md = String::from_utf8(md.stdout).unwrap();
    let line = md
        .lines()
        .find(|l| l.starts_with("**Leak suspect:**"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(
        line.contains("1000 new `LeakedRequest`") && line.contains(".requestCache → Map"),
        "{line}"
    );
    // With one base, the first snapshot: the leaked requests are new too.
    let r = json(&["--base", s(&one), s(&three)]);
    assert_eq!(r["diff"]["rule"], "new-since-base");
    assert_eq!(r["diff"]["constructors"][0]["name"], "LeakedRequest");
    // A snapshot of another process: a warning, counts per constructor.
    let out = firewatch(&[
        "analyze",
        "--base",
        s(&dir.join("workload.heapsnapshot")),
        s(&three),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a snapshot of the same process"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("counts per constructor"));
}

/// A hand-made snapshot: node fields type, name, id, self_size,
/// edge_count; edges type, name_or_index, to_node (offsets of 5).
fn handmade(nodes: &str, edges: &str, strings: &str) -> String {
    format!(
        r#"{{"snapshot":{{"meta":{{"node_fields":["type","name","id","self_size","edge_count"],
"node_types":[["hidden","object","synthetic"],"string","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[["element","property","weak","shortcut"],"string_or_number","node"]}}}},
"nodes":[{nodes}],"edges":[{edges}],"strings":[{strings}]}}"#
    )
}

/// Retained sizes derived by hand from memlab's rules, on a graph with a
/// cycle, a weak edge, a shortcut, an orphan and an unreachable cycle.
#[test]
fn handmade_graph_gives_the_hand_derived_retained_sizes() {
    // Node (offset): 0 root (0), 1 A (5), 2 B (10), 3 C (15), 4 D (20),
    // 5 E (25, no retainer), 6 W (30, only a weak retainer), 7 F (35),
    // 8 G (40): F ⇄ G retained by nothing else.
    // Edges: root→A; A→B, A→C, A⇢W (weak); B→D; C→D; D→A (cycle);
    // root⇒B (shortcut: counts, it is the root's); F→G; G→F.
    let nodes = "2,0,1,0,2, 1,1,3,10,3, 1,2,5,20,1, 1,3,7,30,1, 1,4,9,40,1, \
                 1,5,11,50,0, 1,6,13,60,0, 1,7,15,70,1, 1,8,17,80,1";
    let edges = "0,0,5, 3,9,10, 1,9,10, 1,9,15, 2,9,30, 1,9,20, 1,9,20, 1,9,5, 1,9,40, 1,9,35";
    let strings = r#""(root)","A","B","C","D","E","W","F","G","x""#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hand.heapsnapshot");
    std::fs::write(&file, handmade(nodes, edges, strings)).unwrap();
    let r = json(&["--top", "0", s(&file)]);
    let retained: BTreeMap<u64, u64> = r["top_objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_u64().unwrap(),
                o["retained_size"].as_u64().unwrap(),
            )
        })
        .collect();
    // root → B directly (shortcut), so A dominates only C; D is reached
    // from B and C, so the root dominates it.
    // A = 10 + C 30 = 40; B = 20; C = 30; D = 40; E = 50 (orphan, under
    // the root); W = 60 (only weak retainers: under the root).
    assert_eq!(retained[&3], 40);
    assert_eq!(retained[&5], 20);
    assert_eq!(retained[&7], 30);
    assert_eq!(retained[&9], 40);
    assert_eq!(retained[&11], 50);
    assert_eq!(retained[&13], 60);
    assert_eq!(r["total_size"], 360);
    // F and G retain each other; whatever the split, memlab's says it.
    if tools(true) {
        let ml = memlab(&file);
        for id in [15u64, 17] {
            assert_eq!(
                retained[&id],
                ml["retained"][id.to_string()].as_u64().unwrap(),
                "@{id}"
            );
        }
        assert_equals_memlab(&file);
    }
}

/// A small xorshift generator: the same random graphs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A small random graph: node 0 is the root; `dom`, if any, is the
/// synthetic `(Document DOM trees)` node. Node `i > 0` weighs `2^(shift +
/// i)` bytes, so that a retained size names the nodes it sums (the
/// dominator subtree).
#[derive(Debug)]
struct Graph {
    n: usize,
    dom: Option<usize>,
    /// `(from, type, to)`, in the file's order for each `from`.
    edges: Vec<(usize, &'static str, usize)>,
    shift: u32,
}

impl Graph {
    /// `n` nodes and fewer than `3n` edges, so that parts are unreachable
    /// from the root: nodes with only weak or shortcut retainers, cycles
    /// retained by nothing else, edges from them into page-owned nodes.
    /// With `dom`, one node is `(Document DOM trees)`, mostly held by an
    /// `element` edge from the root (which does not make it page-owned).
    /// Without `into_root`, no edge goes to the root: one from a page-owned
    /// node makes the root's shortcut and DOM trees targets page-owned too,
    /// and in a snapshot of many graphs one of them would do it for all.
    fn random(rng: &mut Rng, n: usize, dom: bool, into_root: bool, shift: u32) -> Graph {
        const TYPES: [&str; 6] = [
            "property", "element", "internal", "hidden", "weak", "shortcut",
        ];
        let first = usize::from(!into_root);
        let mut edges: Vec<(usize, &'static str, usize)> = (0..rng.next(3 * n as u64))
            .map(|_| {
                let from = rng.next(n as u64) as usize;
                let t = TYPES[rng.next(TYPES.len() as u64) as usize];
                (from, t, first + rng.next((n - first) as u64) as usize)
            })
            .collect();
        let dom = dom.then(|| 1 + rng.next(n as u64 - 1) as usize);
        if let Some(d) = dom {
            // Mostly `element`, as in V8's snapshots; sometimes another
            // type, which the rule does not cover.
            let t = ["element", "element", "element", "property"][rng.next(4) as usize];
            edges.insert(rng.next(edges.len() as u64 + 1) as usize, (0, t, d));
        }
        Graph {
            n,
            dom,
            edges,
            shift,
        }
    }

    fn weight(&self, i: usize) -> u64 {
        if i == 0 {
            1
        } else {
            1 << (self.shift + i as u32)
        }
    }

    /// The nodes a retained size sums.
    fn nodes_in(&self, size: u64) -> Vec<usize> {
        (1..self.n)
            .filter(|&i| size & self.weight(i) != 0)
            .collect()
    }
}

/// Graphs sharing their root, in one V8 heap snapshot: graph `k`'s node
/// `i > 0` is node `offsets[k] + i` (id twice that plus one); the root's
/// edges are each graph's in turn. The root is `hidden`, the other nodes
/// objects, but for the `(Document DOM trees)` ones.
fn heap_snapshot(graphs: &[Graph]) -> String {
    const EDGE_TYPES: [&str; 7] = [
        "context", "element", "property", "internal", "hidden", "shortcut", "weak",
    ];
    let offsets = node_offsets(graphs);
    let at = |k: usize, i: usize| if i == 0 { 0 } else { offsets[k] + i };
    // Per node: its type, its name (a string's index), self size, edges.
    let mut nodes = vec![(0, 0, 1, Vec::new())];
    for (k, g) in graphs.iter().enumerate() {
        for i in 1..g.n {
            let (ty, name) = if Some(i) == g.dom { (2, 1) } else { (1, 3 + i) };
            nodes.push((ty, name, g.weight(i), Vec::new()));
        }
        for &(from, t, to) in &g.edges {
            nodes[at(k, from)].3.push((t, at(k, to)));
        }
    }
    // "", "(Document DOM trees)", "e" (the edges' name), then "N<i>", the
    // name of node i of each graph, at 3 + i.
    let mut strings: Vec<String> = vec!["".into(), "(Document DOM trees)".into(), "e".into()];
    strings.extend((0..32).map(|i| format!("N{i}")));
    let mut node_text = Vec::new();
    let mut edge_text = Vec::new();
    for (v, (ty, name, size, edges)) in nodes.iter().enumerate() {
        node_text.push(format!("{ty},{name},{},{size},{}", 2 * v + 1, edges.len()));
        for (index, &(t, to)) in edges.iter().enumerate() {
            let ty = EDGE_TYPES.iter().position(|&x| x == t).unwrap();
            // `element` and `hidden` edges carry an index, the others a
            // name.
            let name = if matches!(t, "element" | "hidden") {
                index
            } else {
                2
            };
            edge_text.push(format!("{ty},{name},{}", to * 5));
        }
    }
    format!(
        r#"{{"snapshot":{{"meta":{{"node_fields":["type","name","id","self_size","edge_count"],
"node_types":[["hidden","object","synthetic"],"string","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[{},"string_or_number","node"]}},"node_count":{},"edge_count":{}}},
"nodes":[{}],"edges":[{}],"strings":{}}}"#,
        serde_json::to_string(&EDGE_TYPES).unwrap(),
        node_text.len(),
        edge_text.len(),
        node_text.join(","),
        edge_text.join(","),
        serde_json::to_string(&strings).unwrap()
    )
}

/// Where each graph's nodes start, less one (its node 1 is `offsets[k] +
/// 1`).
fn node_offsets(graphs: &[Graph]) -> Vec<usize> {
    let mut offsets = vec![0];
    for g in graphs {
        offsets.push(offsets.last().unwrap() + g.n - 1);
    }
    offsets
}

/// Each node's retained size by firewatch and by memlab, by node id: the
/// objects' from `top_objects`, the root's from the total, the
/// `(Document DOM trees)` nodes' from the `(synthetic)` class, which sums
/// them: their graphs weigh in bits of their own (`Graph::shift`).
fn retained_sizes(
    file: &Path,
    graphs: &[Graph],
    fw: &Value,
    ml: &Value,
) -> (BTreeMap<u64, u64>, BTreeMap<u64, u64>) {
    let name = file.display();
    assert_eq!(fw["node_count"], ml["node_count"], "{name}: node count");
    assert_eq!(fw["total_size"], ml["total_size"], "{name}: total size");
    let mut ours: BTreeMap<u64, u64> = fw["top_objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_u64().unwrap(),
                o["retained_size"].as_u64().unwrap(),
            )
        })
        .collect();
    ours.insert(1, fw["total_size"].as_u64().unwrap());
    let synthetic = fw["constructors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "(synthetic)");
    let mut doms = 0u64;
    let mut sum = 0;
    let offsets = node_offsets(graphs);
    for (k, g) in graphs.iter().enumerate() {
        if let (Some(d), Some(row)) = (g.dom, synthetic) {
            let bits = (1..g.n).fold(0, |m, i| m | g.weight(i));
            let size = row["retained_size"].as_u64().unwrap() & bits;
            ours.insert(2 * (offsets[k] + d) as u64 + 1, size);
            doms += 1;
            sum += size;
        }
    }
    if let Some(row) = synthetic {
        assert_eq!(row["count"], doms, "{name}: DOM trees nodes");
        assert_eq!(row["retained_size"], sum, "{name}: DOM trees nodes");
    }
    let theirs: BTreeMap<u64, u64> = ml["retained"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, v)| (id.parse().unwrap(), v.as_u64().unwrap()))
        .collect();
    (ours, theirs)
}

/// On graphs with parts unreachable from the root, the dominators depend
/// on how memlab numbers the nodes its search misses; firewatch follows
/// its rules (`src/heapsnapshot/dominators.rs`). 960 random graphs, 40
/// to a snapshot (sharing the root: memlab's loader costs some 50 ms a
/// file, whatever its size), all read by one memlab process: every node's
/// retained size equals memlab's, so (by the weights `2^i`) every
/// dominator subtree does.
#[test]
fn random_graphs_with_unreachable_parts_equal_memlab() {
    if !tools(true) {
        return;
    }
    const FILES: usize = 24;
    const PER_FILE: usize = 40;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    // In every other file, edges may go to the root. Every tenth graph
    // has a DOM trees node and 3 to 8 nodes, weighing in 8 bits of its
    // own (below 2^32); the others 2 to 27 nodes.
    let files: Vec<Vec<Graph>> = (0..FILES)
        .map(|f| {
            (0..PER_FILE)
                .map(|k| {
                    let into_root = f % 2 == 1;
                    if k % 10 == 0 {
                        let n = 3 + rng.next(6) as usize;
                        Graph::random(&mut rng, n, true, into_root, 8 * (k / 10) as u32)
                    } else {
                        let n = 2 + rng.next(26) as usize;
                        Graph::random(&mut rng, n, false, into_root, 0)
                    }
                })
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .map(|(f, graphs)| {
            let path = dir.path().join(format!("graphs-{f}.heapsnapshot"));
            std::fs::write(&path, heap_snapshot(graphs)).unwrap();
            path
        })
        .collect();
    let out = Command::new("node")
        .arg(manifest("tests/node/memlab/memlab_heap.js"))
        .arg("--each")
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "memlab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), FILES, "memlab: a line per snapshot");
    for ((graphs, path), ml) in files.iter().zip(&paths).zip(&lines) {
        assert_eq!(ml["file"].as_str(), Some(s(path)));
        let fw = json(&["--top", "0", s(path)]);
        let (ours, theirs) = retained_sizes(path, graphs, &fw, ml);
        if ours == theirs {
            continue;
        }
        // The first graph that differs, then alone in a snapshot.
        let offsets = node_offsets(graphs);
        let id = |k: usize, i: usize| 2 * (offsets[k] + i) as u64 + 1;
        let (k, g) = graphs
            .iter()
            .enumerate()
            .find(|&(k, g)| (1..g.n).any(|i| ours.get(&id(k, i)) != theirs.get(&id(k, i))))
            .unwrap_or_else(|| panic!("{}: {ours:?} != {theirs:?}", path.display()));
        let differ: Vec<String> = (1..g.n)
            .filter(|&i| ours.get(&id(k, i)) != theirs.get(&id(k, i)))
            .map(|i| {
                let nodes = |v: Option<&u64>| v.map(|&v| g.nodes_in(v));
                format!(
                    "node {i} retains {:?} by memlab, {:?} by firewatch",
                    nodes(theirs.get(&id(k, i))),
                    nodes(ours.get(&id(k, i)))
                )
            })
            .collect();
        let alone = dir.path().join("alone.heapsnapshot");
        let one = std::slice::from_ref(g);
        std::fs::write(&alone, heap_snapshot(one)).unwrap();
        let fw = json(&["--top", "0", s(&alone)]);
        let (a, b) = retained_sizes(&alone, one, &fw, &memlab(&alone));
        let others = if a == b {
            // The graphs meet at the root: all of them are needed.
            format!("Alone, it agrees with memlab; with the others:\n{graphs:?}")
        } else {
            "Alone, it differs too.".to_string()
        };
        panic!(
            "{}: graph {k} differs from memlab:\n{}\n{g:?}\n{others}",
            path.display(),
            differ.join("\n"),
        );
    }
}

#[test]
fn hostile_input_is_one_line_naming_the_file_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let good_nodes = "2,0,1,0,1, 1,1,3,10,0";
    let strings = r#""(root)","A""#;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated",
            handmade(good_nodes, "0,0,5", strings)[..300].to_string(),
            "truncated",
        ),
        (
            "to-past-end",
            handmade(good_nodes, "0,0,10", strings),
            "past the last node",
        ),
        (
            "to-not-multiple",
            handmade(good_nodes, "0,0,4", strings),
            "not a multiple of the node field count",
        ),
        (
            "edge-counts",
            handmade("2,0,1,0,2, 1,1,3,10,0", "0,0,5", strings),
            "add up to 2",
        ),
        (
            "fields",
            handmade("2,0,1,0,1, 1,1,3,10", "0,0,5", strings),
            "not a multiple of its 5 fields",
        ),
        (
            "name",
            handmade("2,0,1,0,1, 1,7,3,10,0", "0,0,5", strings),
            "name 7",
        ),
        (
            "type",
            handmade("2,0,1,0,1, 9,1,3,10,0", "0,0,5", strings),
            "type 9",
        ),
        (
            "negative",
            handmade("2,0,1,0,1, 1,1,3,-10,0", "0,0,5", strings),
            "non-negative",
        ),
        (
            "no-edge-count",
            handmade(good_nodes, "0,0,5", strings).replace(",\"edge_count\"", ""),
            "node_fields has no `edge_count`",
        ),
        (
            "type-list",
            handmade(good_nodes, "0,0,5", strings)
                .replace("[\"hidden\",\"object\",\"synthetic\"]", "\"x\""),
            "node_types[0]",
        ),
        (
            "no-strings",
            handmade(good_nodes, "0,0,5", strings).replace("\"strings\"", "\"strangs\""),
            "no `strings`",
        ),
    ];
    // 10 M elements of garbage: counted, refused, no panic.
    let mut garbage = String::with_capacity(30_000_000);
    for _ in 0..9_999_999u32 {
        garbage.push_str("1,");
    }
    garbage.push('1');
    let mut cases = cases;
    cases.push((
        "garbage",
        handmade(&garbage, "", strings),
        "add up to 2000000",
    ));
    for (name, text, what) in cases {
        let file = dir.path().join(format!("{name}.heapsnapshot"));
        std::fs::write(&file, text).unwrap();
        let out = firewatch(&["analyze", s(&file)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}.heapsnapshot: invalid .heapsnapshot: "))
                && stderr.contains(what),
            "{name}: {stderr} (expected {what:?})"
        );
    }
}

#[test]
fn flamegraph_draws_the_dominator_tree() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hand.heapsnapshot");
    let nodes = "2,0,1,0,1, 1,1,3,1000,1, 1,2,5,3000,0";
    std::fs::write(
        &file,
        handmade(nodes, "1,2,5, 1,2,10", r#""(root)","Holder","Payload""#),
    )
    .unwrap();
    let svg = dir.path().join("dom.svg");
    let out = firewatch(&["analyze", "--flamegraph", s(&svg), s(&file)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    // Holder retains Payload: 4000 bytes under Holder, 3000 in Payload.
    assert!(svg.contains("Holder (4,000 bytes, 100.00%)"), "{svg}");
    assert!(svg.contains("Payload (3,000 bytes, 75.00%)"), "{svg}");
}

#[test]
fn snapshots_are_analyzed_alone_and_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.heapsnapshot");
    std::fs::write(&file, handmade("2,0,1,0,0", "", r#""(root)""#)).unwrap();
    let cpu = manifest("../../fixtures/node/workload.cpuprofile");
    for (args, what) in [
        (
            vec!["analyze", "--base", s(&cpu), s(&file)],
            "a .cpuprofile cannot be analyzed with a heap snapshot",
        ),
        (
            vec!["analyze", s(&file), s(&file)],
            "analyzed one at a time",
        ),
        (
            vec![
                "analyze",
                "--base",
                s(&file),
                "--base",
                s(&file),
                "--base",
                s(&file),
                s(&file),
            ],
            "at most two --base",
        ),
    ] {
        let out = firewatch(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(what) && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}
