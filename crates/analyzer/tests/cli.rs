//! The `firewatch analyze` command as a user runs it: exit statuses, error
//! messages, the files it writes, merging and differences. Expected numbers
//! come from how the fixtures were built (examples/fixtures.rs), not from
//! firewatch's own output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
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

fn function<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("firewatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const MS: i64 = 10_000_000;

#[test]
fn cpu_values_are_what_the_fixture_holds() {
    let cpu = fixture("encoded-cpu.pb.gz");
    let report = json(&["--top", "0", cpu.to_str().unwrap()]);
    assert_eq!(report["schema"], 1);
    assert_eq!(report["sample_type"]["type"], "cpu");
    assert_eq!(report["sample_type"]["unit"], "nanoseconds");
    // 120+45+30+80+12+3+9+25+2 samples of 10ms each.
    assert_eq!(report["total"], 326 * MS);
    // round_cents is inlined into quote: its own frame, leaf of 120 samples.
    assert_eq!(
        function(&report, "orders_api::pricing::round_cents")["flat"],
        120 * MS
    );
    assert_eq!(
        function(&report, "orders_api::pricing::quote")["cum"],
        165 * MS
    );
    // 40-deep recursion counts once per sample.
    assert_eq!(function(&report, "orders_api::rules::walk")["cum"], 25 * MS);
    // drop_frames removed the agent's frames and what they called, but not a root frame.
    assert_eq!(
        function(&report, "firewatch_agent::sampler::record")["cum"],
        2 * MS
    );
    assert!(report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["name"] != "alloc::vec::Vec::push"));
    assert_eq!(
        function(&report, "orders_api::handlers::create_order")["flat"],
        9 * MS
    );
    // Unsymbolized frames: by binary, or unknown.
    assert_eq!(function(&report, "[libc.so.6]")["flat"], 42 * MS);
    assert_eq!(function(&report, "<unknown>")["flat"], 3 * MS);
    // Sorted by flat, then name.
    let flats: Vec<i64> = report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flat"].as_i64().unwrap())
        .collect();
    assert!(flats.windows(2).all(|w| w[0] >= w[1]));
    // The heaviest path, root first.
    let hot = &report["hot_paths"][0];
    assert_eq!(hot["value"], 120 * MS);
    assert_eq!(hot["frames"][0], "std::rt::lang_start");
    assert_eq!(
        hot["frames"].as_array().unwrap().last().unwrap(),
        "orders_api::pricing::round_cents"
    );
    // --all-frames keeps the agent's frames.
    let all = json(&["--top", "0", "--all-frames", cpu.to_str().unwrap()]);
    assert_eq!(function(&all, "alloc::vec::Vec::push")["flat"], 9 * MS);
}

#[test]
fn sample_index_by_name_number_and_default() {
    let heap = fixture("encoded-heap-1.pb.gz");
    let h = heap.to_str().unwrap();
    // default_sample_type is inuse_space.
    assert_eq!(json(&[h])["sample_type"]["type"], "inuse_space");
    assert_eq!(
        json(&["--sample-index", "0", h])["sample_type"]["type"],
        "alloc_objects"
    );
    assert_eq!(
        json(&["--sample-index", "alloc_space", h])["sample_type"]["type"],
        "alloc_space"
    );
    // 2000 live 4 KiB cache entries + 40*256 + 16*64 KiB + 12*1 KiB.
    assert_eq!(
        json(&[h])["total"],
        2000 * 4096 + 40 * 256 + 16 * 65536 + 12 * 1024
    );
    let out = firewatch(&["analyze", "--sample-index", "nonsense", h]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nonsense") && err.contains("inuse_space"),
        "{err}"
    );
    assert_eq!(
        firewatch(&["analyze", "--sample-index", "9", h])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        firewatch(&["analyze", "--format", "yaml", h]).status.code(),
        Some(2)
    );
}

#[test]
fn merging_adds_and_base_subtracts() {
    let cpu = fixture("encoded-cpu.pb.gz");
    let c = cpu.to_str().unwrap();
    let twice = json(&["--top", "0", c, c]);
    assert_eq!(twice["total"], 2 * 326 * MS);
    assert_eq!(function(&twice, "orders_api::rules::walk")["cum"], 50 * MS);
    let nothing = json(&["--top", "0", "--base", c, c]);
    assert_eq!(nothing["total"], 0);
    assert!(nothing["functions"].as_array().unwrap().is_empty());

    let (old, new) = (
        fixture("encoded-heap-1.pb.gz"),
        fixture("encoded-heap-2.pb.gz"),
    );
    let diff = json(&[
        "--top",
        "0",
        "--base",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert_eq!(diff["base"][0], old.to_str().unwrap());
    // The cache grew from 2000 to 9000 live 4 KiB entries; nothing else changed.
    assert_eq!(
        function(&diff, "orders_api::cache::Entry::new")["flat"],
        7000 * 4096
    );
    assert_eq!(diff["functions"].as_array().unwrap().len(), 4);
    let shrink = json(&[
        "--top",
        "0",
        "--base",
        new.to_str().unwrap(),
        old.to_str().unwrap(),
    ]);
    assert_eq!(
        function(&shrink, "orders_api::cache::Entry::new")["flat"],
        -7000 * 4096
    );
}

#[test]
fn markdown_diff_says_what_grew() {
    let (old, new) = (
        fixture("encoded-heap-1.pb.gz"),
        fixture("encoded-heap-2.pb.gz"),
    );
    let out = firewatch(&[
        "analyze",
        "--format",
        "markdown",
        "--base",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    // 7000 * 4096 B = 27.34 MiB, printed as pprof prints it.
    assert!(
        md.contains("grew by 27.34MB in `orders_api::cache::Entry::new` (call path `std::rt::lang_start` → `orders_api::main` → `orders_api::cache::Cache::insert` → `orders_api::cache::Entry::new`)"),
        "{md}"
    );
    assert!(md.contains("| flat | flat% | sum% | cum | cum% | function |"));
}

#[test]
fn mismatched_sample_types_are_refused_clearly() {
    let out = firewatch(&[
        "analyze",
        fixture("encoded-cpu.pb.gz").to_str().unwrap(),
        fixture("encoded-heap-1.pb.gz").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("encoded-heap-1.pb.gz")
            && err.contains("cpu/nanoseconds")
            && err.contains("cannot merge"),
        "{err}"
    );
}

#[test]
fn flamegraphs_and_folded_stacks_are_written() {
    let cpu = fixture("encoded-cpu.pb.gz");
    let (svg, svg2, folded) = (tmp("cpu.svg"), tmp("cpu2.svg"), tmp("cpu.folded"));
    for path in [&svg, &svg2] {
        let out = firewatch(&[
            "analyze",
            "--flamegraph",
            path.to_str().unwrap(),
            "--folded",
            folded.to_str().unwrap(),
            cpu.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<?xml") && svg_text.contains("</svg>"));
    assert!(
        svg_text.contains("cpu, total 3.26s: ")
            && svg_text.contains("orders_api::pricing::round_cents")
    );
    assert_eq!(
        svg_text,
        std::fs::read_to_string(&svg2).unwrap(),
        "colours and layout are deterministic"
    );
    // Folded lines sum to the total.
    let folded_text = std::fs::read_to_string(&folded).unwrap();
    let sum: i64 = folded_text
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(sum, 326 * MS);
    assert!(folded_text.lines().any(|l| l
        == format!("std::rt::lang_start;orders_api::main;tokio::runtime::Runtime::block_on;orders_api::handlers::create_order;orders_api::pricing::quote;orders_api::pricing::round_cents {}", 120 * MS)));

    // A difference: two columns, before and after, and a differential SVG.
    let (old, new) = (
        fixture("encoded-heap-1.pb.gz"),
        fixture("encoded-heap-2.pb.gz"),
    );
    let (dsvg, dfolded) = (tmp("diff.svg"), tmp("diff.folded"));
    let out = firewatch(&[
        "analyze",
        "--flamegraph",
        dsvg.to_str().unwrap(),
        "--folded",
        dfolded.to_str().unwrap(),
        "--base",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let line = std::fs::read_to_string(&dfolded)
        .unwrap()
        .lines()
        .find(|l| l.contains("Entry::new"))
        .unwrap()
        .to_string();
    assert!(
        line.ends_with(&format!(" {} {}", 2000 * 4096, 9000 * 4096)),
        "{line}"
    );
    assert!(std::fs::read_to_string(&dsvg).unwrap().contains("minus"));
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_exit_1() {
    let cpu = std::fs::read(fixture("encoded-cpu.pb.gz")).unwrap();
    let raw = firewatch_profile::decompress(&cpu, 1 << 20)
        .unwrap()
        .into_owned();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.pb.gz", cpu[..cpu.len() / 2].to_vec(), "gzip"),
        ("truncated.pb", raw[..raw.len() - 7].to_vec(), "byte"),
        ("empty.pb", Vec::new(), "empty"),
        (
            "garbage.pb",
            b"this is not a profile at all".to_vec(),
            "not a pprof, V8 or legacy profile",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        let out = firewatch(&["analyze", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert_eq!(
            err.matches(path.to_str().unwrap()).count(),
            1,
            "said once: {err}"
        );
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(expect),
            "{name}: {err}"
        );
    }
    let out = firewatch(&["analyze", "/nonexistent/profile.pb.gz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/profile.pb.gz"));
}

#[test]
fn decompression_is_capped() {
    // 8 MiB of zeros gzips to ~8 KiB: refused under a 1 MiB cap, and the
    // flag raises the cap (then it fails as a profile, not as a bomb).
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 8 << 20]).unwrap();
    let path = tmp("bomb.pb.gz");
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let out = firewatch(&[
        "analyze",
        "--max-decompressed-size",
        "1M",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeds the limit of 1048576 bytes")
            && err.contains("bomb.pb.gz")
            && err.contains("raise the limit with --max-decompressed-size"),
        "{err}"
    );
    let out = firewatch(&[
        "analyze",
        "--max-decompressed-size",
        "128M",
        path.to_str().unwrap(),
    ]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("exceeds the limit"));
}

#[test]
fn the_cap_bounds_inflation_and_stdin_not_a_plain_file() {
    // encoded-cpu.pb.gz (1,124 bytes) inflates to 1,742: under a cap
    // between the two, the raw profile on disk is read (mapped or not: its
    // size is the filesystem's to state), while the smaller gzip file and
    // the same raw bytes on standard input are refused.
    const CAP: usize = 1200;
    let gz = std::fs::read(fixture("encoded-cpu.pb.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    assert!(
        gz.len() < CAP && raw.len() > CAP,
        "{} {}",
        gz.len(),
        raw.len()
    );
    let path = tmp("over-cap.pb");
    std::fs::write(&path, &raw).unwrap();
    let cap = CAP.to_string();
    for mmap in [&[][..], &["--no-mmap"]] {
        let args = [
            &["--max-decompressed-size", &cap][..],
            mmap,
            &[path.to_str().unwrap()],
        ];
        // 326 samples of 10 ms (examples/fixtures.rs).
        assert_eq!(json(&args.concat())["total"], 326 * MS);
    }
    let refused = |out: Output, name: &str| {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err,
            format!(
                "firewatch: {name}: decompressed data exceeds the limit of {CAP} bytes\n\
                 firewatch: raise the limit with --max-decompressed-size\n"
            )
        );
    };
    let gz_path = fixture("encoded-cpu.pb.gz");
    let out = firewatch(&[
        "analyze",
        "--max-decompressed-size",
        &cap,
        gz_path.to_str().unwrap(),
    ]);
    refused(out, gz_path.to_str().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(["analyze", "--max-decompressed-size", &cap, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child may stop reading at the cap: a broken pipe here is fine.
    let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), &raw);
    refused(child.wait_with_output().unwrap(), "-");
}

#[test]
fn mapped_and_read_inputs_give_the_same_report() {
    // A raw (uncompressed) profile: the one case where mapping changes how
    // the bytes are held (gzip is inflated into memory either way).
    let gz = std::fs::read(fixture("go-cpu.pb.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let path = tmp("raw-cpu.pb");
    std::fs::write(&path, &raw).unwrap();
    let path = path.to_str().unwrap();
    let mapped = json(&[path]);
    let read = json(&["--no-mmap", path]);
    assert_eq!(mapped, read);
    let from_gzip = json(&[fixture("go-cpu.pb.gz").to_str().unwrap()]);
    assert_eq!(mapped["functions"], from_gzip["functions"]);
    assert!(!mapped["functions"].as_array().unwrap().is_empty());
}

/// Function names may hold any bytes (the outside corpus had C0 controls);
/// the SVG must still be well-formed XML 1.0, which cannot carry most
/// control characters even as character references. Checked with an
/// independent strict parser.
#[test]
fn flamegraph_of_names_with_control_characters_is_well_formed_xml() {
    use firewatch_profile::{Profile, Sample, StringInterner, ValueType};
    let mut strings = StringInterner::new();
    let mut p = Profile::new();
    p.sample_type = vec![ValueType {
        r#type: strings.intern("samples\u{1}"),
        unit: strings.intern("count\u{2}"),
    }];
    // One function per byte 0x00..=0x1F, each a leaf under a common root,
    // plus XML's own specials and U+FFFE.
    let mut names: Vec<String> = (0u8..0x20)
        .map(|b| format!("f{b:02x}<{}>&\"'", b as char))
        .collect();
    names.push("g\u{FFFE}\u{FFFF}".into());
    names.push("root".into());
    let root_id = names.len() as u64;
    one_location_per_function(&mut p, &mut strings, &names);
    p.sample = (1..root_id)
        .map(|id| Sample {
            location_id: vec![id, root_id],
            value: vec![id as i64],
            ..Default::default()
        })
        .collect();
    p.string_table = strings.into_table();
    let input = tmp("control\u{7}chars.pb");
    std::fs::write(&input, p.encode()).unwrap();
    let svg = tmp("control.svg");
    let out = firewatch(&[
        "analyze",
        "--flamegraph",
        svg.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    // inferno's SVG declares SVG 1.1's DTD.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, options)
        .unwrap_or_else(|e| panic!("the SVG is not well-formed XML: {e}"));
    // Every function is still drawn, its name legible: the control
    // character written as a visible escape.
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for b in 0u8..0x20 {
        let shown = match b {
            b'\t' => "\t".to_string(),
            // Line breaks end a folded line, so they become spaces.
            b'\n' | b'\r' => " ".to_string(),
            _ => format!("\\x{b:02x}"),
        };
        let expected = format!("f{b:02x}<{shown}>&\"'");
        assert!(
            titles.iter().any(|t| t.starts_with(&expected)),
            "no frame titled {expected:?} in {titles:?}"
        );
    }
    assert!(titles.iter().any(|t| t.starts_with("g\\u{fffe}\\u{ffff}")));
}

/// Markdown and JSON hot paths name a label value that carries most of the
/// path's value (here 90% of one path is `endpoint=/a`), and no label for
/// a path split evenly; `--group-by` totals follow the labels as built.
#[test]
fn hot_paths_name_dominant_labels_and_groups_follow_labels() {
    use firewatch_profile::{Label, Profile, Sample, StringInterner, ValueType};
    let mut s = StringInterner::new();
    let mut p = Profile::new();
    p.sample_type = vec![ValueType {
        r#type: s.intern("samples"),
        unit: s.intern("count"),
    }];
    one_location_per_function(&mut p, &mut s, &["main", "checkout", "search"]);
    let key = s.intern("endpoint");
    let (a, b) = (s.intern("/a"), s.intern("/b"));
    let sample = |leaf: u64, value: i64, endpoint: i64| Sample {
        location_id: vec![leaf, 1],
        value: vec![value],
        label: vec![Label {
            key,
            str: endpoint,
            ..Default::default()
        }],
    };
    // checkout: 900 under /a, 100 under /b; search: 300 and 300.
    p.sample = vec![
        sample(2, 900, a),
        sample(2, 100, b),
        sample(3, 300, a),
        sample(3, 300, b),
    ];
    p.string_table = s.into_table();
    let input = tmp("labelled.pb");
    std::fs::write(&input, p.encode()).unwrap();
    let path = input.to_str().unwrap();

    let out = firewatch(&["analyze", "--format", "markdown", path]);
    let md = String::from_utf8(out.stdout).unwrap();
    let line = |leaf: &str| {
        md.lines()
            .find(|l| l.ends_with(&format!("`{leaf}`")))
            .unwrap_or_else(|| panic!("no hot path ending in {leaf}:\n{md}"))
            .to_string()
    };
    assert!(
        line("checkout").contains("labelled `endpoint=/a` (90%)"),
        "{md}"
    );
    assert!(!line("search").contains("labelled"), "{md}");

    let report = json(&["--group-by", "endpoint", path]);
    let paths = report["hot_paths"].as_array().unwrap();
    assert_eq!(paths[0]["labels"][0]["value"], "/a");
    assert!(paths[1].get("labels").is_none());
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (g["value"].as_str().unwrap(), g["total"].as_i64().unwrap()))
            .collect::<Vec<_>>(),
        [("/a", 1200), ("/b", 400)]
    );
    assert_eq!(function(&groups[1], "checkout")["flat"], 100);
}

/// A directory stands for its files (hidden ones left out), as if each
/// were named; an empty one is an error naming it.
#[test]
fn a_directory_stands_for_the_profiles_in_it() {
    let dir = tmp("fleet-dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let empty = firewatch(&["analyze", dir.to_str().unwrap()]);
    assert_eq!(empty.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(
        stderr.contains(dir.to_str().unwrap()) && stderr.contains("holds no profiles"),
        "{stderr}"
    );

    for name in ["a.pb.gz", "b.pb.gz"] {
        std::fs::copy(fixture("encoded-cpu.pb.gz"), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join(".hidden"), b"not a profile").unwrap();
    let merged = json(&[dir.to_str().unwrap()]);
    let named = json(&[
        fixture("encoded-cpu.pb.gz").to_str().unwrap(),
        fixture("encoded-cpu.pb.gz").to_str().unwrap(),
    ]);
    assert_eq!(merged["total"], 2 * 326 * MS);
    assert_eq!(merged["functions"], named["functions"]);
    assert_eq!(merged["inputs"].as_array().unwrap().len(), 2);
}

/// Functions named `names` (ids 1..), each with one location of the same
/// id: a test profile whose stacks are lists of function ids.
fn one_location_per_function(
    p: &mut firewatch_profile::Profile,
    strings: &mut firewatch_profile::StringInterner,
    names: &[impl AsRef<str>],
) {
    use firewatch_profile::{Function, Line, Location};
    p.function = names
        .iter()
        .enumerate()
        .map(|(i, n)| Function {
            id: i as u64 + 1,
            name: strings.intern(n.as_ref()),
            ..Default::default()
        })
        .collect();
    p.location = (1..=names.len() as u64)
        .map(|id| Location {
            id,
            line: vec![Line {
                function_id: id,
                line: 0,
                column: 0,
            }],
            ..Default::default()
        })
        .collect();
}

/// A text report decodes a large profile's samples as it adds them (a
/// chunk at a time, on several workers); JSON keeps them decoded for a
/// second pass. A bad sample far into the file is the same one-line error
/// either way: the first bad sample in the file, whichever worker met which.
#[test]
fn a_bad_sample_deep_in_a_large_profile_is_the_same_error_however_it_is_read() {
    use firewatch_profile::{Profile, Sample, StringInterner, ValueType};
    let mut strings = StringInterner::new();
    let mut p = Profile::new();
    p.sample_type = vec![ValueType {
        r#type: strings.intern("samples"),
        unit: strings.intern("count"),
    }];
    let names: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
    one_location_per_function(&mut p, &mut strings, &names);
    let samples = 300_000u64;
    let (first_bad, second_bad) = (180_001usize, 250_003usize);
    p.sample = (0..samples)
        .map(|i| Sample {
            location_id: vec![1 + i % 200, 1 + i / 7 % 200, 1 + i / 49 % 200],
            value: vec![1],
            ..Default::default()
        })
        .collect();
    p.sample[first_bad].location_id[1] = 9_001;
    p.sample[second_bad].location_id[0] = 9_002;
    p.string_table = strings.into_table();
    let input = tmp("bad-sample-deep.pb");
    std::fs::write(&input, p.encode()).unwrap();
    let path = input.to_str().unwrap();
    let mut errors = Vec::new();
    for format in ["text", "json"] {
        for _ in 0..3 {
            let out = firewatch(&["analyze", "--format", format, path]);
            assert_eq!(out.status.code(), Some(1), "{format}");
            let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
            assert_eq!(err.lines().count(), 1, "{format}: {err}");
            assert!(
                err.contains(path)
                    && err.contains(&format!("sample {first_bad} "))
                    && err.contains("location id 9001"),
                "{format}: {err}"
            );
            errors.push(err);
        }
    }
    errors.dedup();
    assert_eq!(errors.len(), 1, "{errors:#?}");
}

/// A hot path worth seconds in a profile of hours: its value is labelled
/// in its own unit (as pprof's `-traces` labels each trace:
/// `measurement.ScaledLabel(v, unit, "minimum")`), not in the function
/// table's hours, where it read `0`.
#[test]
fn a_small_hot_path_is_labelled_in_its_own_unit() {
    use firewatch_profile::{Profile, Sample, StringInterner, ValueType};
    const HOUR: i64 = 3_600_000_000_000;
    let mut strings = StringInterner::new();
    let mut p = Profile::new();
    p.sample_type = vec![ValueType {
        r#type: strings.intern("cpu"),
        unit: strings.intern("nanoseconds"),
    }];
    one_location_per_function(&mut p, &mut strings, &["heavy", "other", "light"]);
    p.sample = [
        (vec![1], 10 * HOUR),
        (vec![2], 5 * HOUR),
        (vec![3, 1], 8_500_000_000),
    ]
    .into_iter()
    .map(|(location_id, v)| Sample {
        location_id,
        value: vec![v],
        ..Default::default()
    })
    .collect();
    p.string_table = strings.into_table();
    let input = tmp("small-hot-path.pb");
    std::fs::write(&input, p.encode()).unwrap();
    let path = input.to_str().unwrap();
    let text = firewatch(&["analyze", "--top", "2", path]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("10hrs"), "the table is in hours:\n{text}");
    assert!(text.contains("  3. 8.50s ("), "{text}");
    let md = firewatch(&["analyze", "--top", "2", "--format", "markdown", path]);
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.contains("3. **8.50s**"), "{md}");
}
