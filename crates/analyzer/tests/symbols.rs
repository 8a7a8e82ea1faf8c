//! `--symbols`: profiles of stripped binaries named from their binary,
//! debug file or a build-ID directory, checked against binutils'
//! `addr2line -f -i -C` on the unstripped build (an independent DWARF
//! reader) for every address.
//!
//! Each test compiles a small C program with `gcc -g -O2` (one function
//! always inlined into another), makes the stripped copy and the debug
//! files the way a release pipeline does (`strip`, `objcopy
//! --only-keep-debug`, `--compress-debug-sections`), and writes a pprof
//! profile as a stripped service's agent would: one mapping naming the
//! binary with its GNU build ID, placed where a loader would put its text
//! segment (read with `readelf -l`), and locations with addresses only.
//! Without gcc or binutils the tests say so and pass, unless
//! `FIREWATCH_REQUIRE_BINUTILS` is set (CI sets it).

#[path = "../../../tests/support/addr2line.rs"]
mod gnu_addr2line;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use firewatch_analyzer::{symbolize_to_pprof, Source};
use firewatch_profile::{
    Function, Location, Mapping, Profile, Sample, StringInterner, ValueType,
    DEFAULT_MAX_DECOMPRESSED,
};
use gnu_addr2line::{addr2line, Frame};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) long fw_leaf(long x) {
    long s = 0;
    for (long i = 0; i < x; i++)
        s += (i * i) ^ x;
    return s;
}

__attribute__((noinline)) long fw_middle(long x) {
    return fw_leaf(x) * 3 + fw_leaf(x + 7);
}

__attribute__((noinline)) long fw_outer(long x) {
    return fw_middle(x) + fw_middle(x * 2) + BUILD;
}

int main(int argc, char **argv) {
    printf("%ld\n", fw_outer(argc + (argc > 1 ? atol(argv[1]) : 0)));
    return 0;
}
"#;

/// The functions whose addresses are profiled.
const FUNCTIONS: [&str; 3] = ["fw_middle", "fw_outer", "main"];

/// The same in Rust: a generic function, a method, one always inlined.
const RUST_PROGRAM: &str = r#"
pub struct Acc { v: Vec<u64> }
impl Acc {
    #[inline(always)]
    fn leaf(&self, x: u64) -> u64 { self.v.iter().fold(x, |a, b| a.wrapping_mul(31) ^ b) }
    #[inline(never)]
    pub fn middle(&self, x: u64) -> u64 { self.leaf(x) + self.leaf(x + 1) }
}
#[inline(never)]
fn outer<T: Into<u64>>(a: &Acc, x: T) -> u64 { a.middle(x.into()) * 2 }
fn main() {
    let a = Acc { v: std::env::args().map(|s| s.len() as u64).collect() };
    println!("{}", outer(&a, 3u32));
}
"#;

/// Whether `nm` names one of the profiled functions (C, or Rust mangled).
fn profiled(name: &str) -> bool {
    FUNCTIONS.contains(&name) || name.contains("3Acc6middle17h") || name.contains("5outer17h")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether gcc and binutils run; without them, a notice (or a failure
/// when `FIREWATCH_REQUIRE_BINUTILS` is set).
fn tools_available() -> bool {
    let missing: Vec<&str> = ["gcc", "addr2line", "objcopy", "strip", "readelf", "nm"]
        .into_iter()
        .filter(|tool| {
            !Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("FIREWATCH_REQUIRE_BINUTILS").is_none(),
        "FIREWATCH_REQUIRE_BINUTILS is set but {missing:?} do not run"
    );
    eprintln!("{missing:?} not installed: skipping the --symbols comparison with addr2line");
    false
}

/// A compiled program and what the tests need to know about it.
struct Program {
    /// The unstripped build (the reference for addr2line).
    full: PathBuf,
    /// `strip`ped copy, named as the profile names the binary.
    stripped: PathBuf,
    /// `objcopy --only-keep-debug`.
    debug: PathBuf,
    build_id: String,
    /// The executable `PT_LOAD`: file offset, address, size in memory.
    text: (u64, u64, u64),
    pie: bool,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn build(dir: &Path, flags: &[&str], build: u32) -> Program {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("fwsym.c");
    std::fs::write(&source, PROGRAM).unwrap();
    let full = dir.join("fwsym.full");
    run(Command::new("gcc")
        .args(["-O2", "-Wl,--build-id"])
        .arg(format!("-DBUILD={build}"))
        .args(flags)
        .arg("-o")
        .arg(&full)
        .arg(&source));
    finish(dir, full)
}

/// The Rust program, built as a release build with debug info.
fn build_rust(dir: &Path) -> Program {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("fwsym.rs");
    std::fs::write(&source, RUST_PROGRAM).unwrap();
    let full = dir.join("fwsym.full");
    run(Command::new("rustc")
        .args(["-g", "-O", "-C", "link-arg=-Wl,--build-id", "-o"])
        .arg(&full)
        .arg(&source));
    finish(dir, full)
}

/// An ELF file's build ID, executable `PT_LOAD` (file offset, address,
/// size in memory) and whether it is position-independent, from readelf.
fn elf_layout(path: &Path) -> (String, (u64, u64, u64), bool) {
    let notes = String::from_utf8(run(Command::new("readelf").arg("-n").arg(path)).stdout).unwrap();
    let build_id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build ID")
        .trim()
        .to_string();
    let header =
        String::from_utf8(run(Command::new("readelf").arg("-hlW").arg(path)).stdout).unwrap();
    let pie = header
        .lines()
        .any(|l| l.contains("Type:") && l.contains("DYN"));
    let text = header
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .find_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let flags = t[6..t.len() - 1].concat();
            flags
                .contains('E')
                .then(|| (hex(t[1]), hex(t[2]), hex(t[5])))
        })
        .expect("an executable segment");
    (build_id, text, pie)
}

/// Strips `full`, splits its debug file and reads its build ID and code
/// segment.
fn finish(dir: &Path, full: PathBuf) -> Program {
    let stripped_dir = dir.join("bin");
    std::fs::create_dir_all(&stripped_dir).unwrap();
    let stripped = stripped_dir.join("fwsym");
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&full));
    let debug = dir.join("fwsym.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&debug));
    let (build_id, text, pie) = elf_layout(&full);
    Program {
        full,
        stripped,
        debug,
        build_id,
        text,
        pie,
    }
}

const PAGE: u64 = 4096;

/// Where the "loader" put the binary: PIE at a typical address, a fixed
/// executable where it says.
fn load_bias(p: &Program) -> u64 {
    if p.pie {
        0x5555_5555_4000
    } else {
        0
    }
}

/// Addresses (in the file's terms) inside the profiled functions, from
/// `nm -S` of the unstripped build: every 4th byte of each.
fn file_addresses(p: &Program) -> Vec<u64> {
    let nm = String::from_utf8(run(Command::new("nm").arg("-S").arg(&p.full)).stdout).unwrap();
    let mut out = Vec::new();
    for line in nm.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() == 4 && profiled(t[3]) {
            let (start, size) = (hex(t[0]), hex(t[1]));
            out.extend((start..start + size).step_by(4));
        }
    }
    assert!(out.len() > 10, "nm found the functions: {nm}");
    out
}

/// A pprof profile as the agent writes it without symbols: one mapping
/// (`mapping_file`, `build_id`) over the text segment, one sample per
/// address, locations with addresses only.
fn write_profile(p: &Program, path: &Path, mapping_file: &str, build_id: &str) -> Vec<u64> {
    let addresses = file_addresses(p);
    write_profile_at(p, path, mapping_file, build_id, &addresses);
    addresses
}

/// [`write_profile`] with a sample at each of `addresses` (file addresses).
fn write_profile_at(
    p: &Program,
    path: &Path,
    mapping_file: &str,
    build_id: &str,
    addresses: &[u64],
) {
    let bias = load_bias(p);
    let (offset, vaddr, memsz) = p.text;
    let start = bias + (vaddr & !(PAGE - 1));
    let limit = (bias + vaddr + memsz).div_ceil(PAGE) * PAGE;
    let mut strings = StringInterner::new();
    let mut profile = Profile::new();
    profile.sample_type = vec![ValueType {
        r#type: strings.intern("samples"),
        unit: strings.intern("count"),
    }];
    profile.mapping.push(Mapping {
        id: 1,
        memory_start: start,
        memory_limit: limit,
        file_offset: offset & !(PAGE - 1),
        filename: strings.intern(mapping_file),
        build_id: strings.intern(build_id),
        ..Mapping::default()
    });
    for (i, svma) in addresses.iter().enumerate() {
        let id = i as u64 + 1;
        profile.location.push(Location {
            id,
            mapping_id: 1,
            address: bias + svma,
            ..Location::default()
        });
        profile.sample.push(Sample {
            location_id: vec![id],
            value: vec![1],
            label: vec![],
        });
    }
    profile.string_table = strings.into_table();
    std::fs::write(path, profile.encode()).unwrap();
}

/// The frames of each location of a symbolized profile.
fn frames(profile: &Profile) -> Vec<Vec<Frame>> {
    let function = |id: u64| -> &Function { profile.function.iter().find(|f| f.id == id).unwrap() };
    profile
        .location
        .iter()
        .map(|l| {
            l.line
                .iter()
                .map(|line| {
                    let f = function(line.function_id);
                    (
                        profile.string(f.name).to_string(),
                        profile.string(f.filename).to_string(),
                        line.line,
                    )
                })
                .collect()
        })
        .collect()
}

fn symbolize(profile: &Path, symbols: &[&Path]) -> (Profile, Vec<String>) {
    let symbols: Vec<PathBuf> = symbols.iter().map(|p| p.to_path_buf()).collect();
    let (bytes, warnings) =
        symbolize_to_pprof(&Source::new(profile), &symbols, DEFAULT_MAX_DECOMPRESSED)
            .unwrap_or_else(|e| panic!("{e}"));
    (
        Profile::decode(&bytes).unwrap(),
        warnings.iter().map(ToString::to_string).collect(),
    )
}

/// Symbolizes `p`'s profile with `symbols` and checks every address
/// against addr2line on the unstripped build.
fn check_against_addr2line(p: &Program, dir: &Path, symbols: &[&Path]) {
    let profile_path = dir.join("stripped.pb");
    let addresses = write_profile(p, &profile_path, "/srv/app/fwsym", &p.build_id);
    let (profile, warnings) = symbolize(&profile_path, symbols);
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = addr2line(&p.full, &addresses);
    let got = frames(&profile);
    for ((address, want), got) in addresses.iter().zip(&expected).zip(&got) {
        assert_eq!(got, want, "frames at {address:#x}");
    }
    assert!(
        expected.iter().any(|f| f.len() > 1),
        "some address is in inlined code: {expected:?}"
    );
    let mapping = &profile.mapping[0];
    assert!(mapping.has_functions && mapping.has_line_numbers && mapping.has_inline_frames);
}

/// A scratch directory, removed when the test ends.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("firewatch-symbols-{name}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn debug_file_alone_and_with_the_stripped_binary_match_addr2line() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("debug-file");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g"], 1);
    assert!(p.pie, "gcc builds PIE by default");
    check_against_addr2line(&p, &dir, &[&p.debug]);
    check_against_addr2line(&p, &dir, &[&p.stripped, &p.debug]);
    // The unstripped binary itself.
    check_against_addr2line(&p, &dir, &[&p.full]);
    // A stripped binary alone, whose .gnu_debuglink names the debug file
    // kept in `.debug/` beside it, as GDB looks for it.
    let linked = dir.join("linked");
    std::fs::create_dir_all(linked.join(".debug")).unwrap();
    std::fs::copy(&p.debug, linked.join(".debug").join("fwsym.debug")).unwrap();
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", p.debug.display()))
        .arg(&p.stripped)
        .arg(linked.join("fwsym")));
    check_against_addr2line(&p, &dir, &[&linked.join("fwsym")]);
}

#[test]
fn rust_program_matches_addr2line() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("rust");
    let dir = tmp.path().to_path_buf();
    let p = build_rust(&dir);
    check_against_addr2line(&p, &dir, &[&p.stripped, &p.debug]);
}

#[test]
fn non_pie_executable_matches_addr2line() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("no-pie");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g", "-no-pie", "-fno-pie"], 1);
    assert!(!p.pie);
    check_against_addr2line(&p, &dir, &[&p.stripped, &p.debug]);
    check_against_addr2line(&p, &dir, &[&p.debug]);
}

#[test]
fn build_id_directory_and_debuginfod_cache_are_searched() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("build-id-dir");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g"], 1);
    let (head, tail) = p.build_id.split_at(2);
    let debug_root = dir.join("usr-lib-debug");
    let link = debug_root.join(".build-id").join(head);
    std::fs::create_dir_all(&link).unwrap();
    std::fs::copy(&p.debug, link.join(format!("{tail}.debug"))).unwrap();
    check_against_addr2line(&p, &dir, &[&debug_root]);
    // The `.build-id` directory itself.
    check_against_addr2line(&p, &dir, &[&debug_root.join(".build-id")]);

    let cache = dir.join("debuginfod_client");
    std::fs::create_dir_all(cache.join(&p.build_id)).unwrap();
    std::fs::copy(&p.debug, cache.join(&p.build_id).join("debuginfo")).unwrap();
    check_against_addr2line(&p, &dir, &[&cache]);
}

#[test]
fn compressed_debug_sections_are_read() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("compressed");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g"], 1);
    for kind in ["zlib", "zlib-gnu", "zstd"] {
        let compressed = dir.join(format!("fwsym.{kind}.debug"));
        let ok = Command::new("objcopy")
            .arg(format!("--compress-debug-sections={kind}"))
            .arg(&p.debug)
            .arg(&compressed)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("objcopy cannot compress with {kind}: skipped");
            continue;
        }
        let sections =
            String::from_utf8(run(Command::new("readelf").arg("-SW").arg(&compressed)).stdout)
                .unwrap();
        assert!(
            sections.contains(".zdebug_info")
                || sections
                    .lines()
                    .any(|l| l.contains(".debug_info") && l.contains(" C ")),
            "{kind}: compressed: {sections}"
        );
        check_against_addr2line(&p, &dir, &[&p.stripped, &compressed]);
    }
}

#[test]
fn symbol_table_alone_gives_function_names() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("symtab");
    let dir = tmp.path().to_path_buf();
    // No -g: names from .symtab only.
    let p = build(&dir, &[], 1);
    let profile_path = dir.join("stripped.pb");
    let addresses = write_profile(&p, &profile_path, "/srv/app/fwsym", &p.build_id);
    let (profile, warnings) = symbolize(&profile_path, &[&p.full]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = addr2line(&p.full, &addresses);
    for ((address, want), got) in addresses.iter().zip(&expected).zip(frames(&profile)) {
        let want: Vec<&str> = want.iter().map(|f| f.0.as_str()).collect();
        let got: Vec<&str> = got.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(got, want, "names at {address:#x}");
    }
}

#[test]
fn mismatched_binary_is_refused_naming_both_build_ids() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("mismatch");
    let dir = tmp.path().to_path_buf();
    let ran = build(&dir.join("ran"), &["-g"], 1);
    let other = build(&dir.join("other"), &["-g"], 2);
    assert_ne!(ran.build_id, other.build_id);
    let profile_path = dir.join("stripped.pb");
    write_profile(&ran, &profile_path, "/srv/app/fwsym", &ran.build_id);
    let out = Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(["analyze", "--format", "json", "--symbols"])
        .arg(&other.stripped)
        .arg(&profile_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&ran.build_id) && stderr.contains(&other.build_id),
        "{stderr}"
    );
    assert!(
        stderr.contains(&other.stripped.display().to_string()),
        "{stderr}"
    );
}

#[test]
fn cli_names_functions_and_warns_about_what_matched_nothing() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("cli");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g"], 1);
    let profile_path = dir.join("stripped.pb");
    write_profile(&p, &profile_path, "/srv/app/fwsym", &p.build_id);
    let firewatch = |symbols: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_firewatch"));
        cmd.args(["analyze", "--format", "json", "--top", "0"]);
        for s in symbols {
            cmd.arg("--symbols").arg(s);
        }
        let out = cmd.arg(&profile_path).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<String> = report["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        (names, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (names, stderr) = firewatch(&[&p.debug, &empty]);
    for f in ["fw_leaf", "fw_middle", "fw_outer", "main"] {
        assert!(names.iter().any(|n| n == f), "{f} in {names:?}");
    }
    assert!(
        stderr.contains(&format!(
            "--symbols {}: matched no mapping",
            empty.display()
        )),
        "{stderr}"
    );
    // Nothing with the build ID: a warning naming it, addresses stay.
    let (names, stderr) = firewatch(&[&empty]);
    assert!(!names.iter().any(|n| n == "fw_middle"), "{names:?}");
    assert!(
        stderr.contains(&format!("no --symbols file has build ID {}", p.build_id)),
        "{stderr}"
    );
}

#[test]
fn mapping_without_build_id_is_matched_by_file_name() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("by-name");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g"], 1);
    // As a legacy dump names the binary: its path, no build ID. The file
    // is here: a sure match, no warning.
    let profile_path = dir.join("legacy.pb");
    let here = p.full.display().to_string();
    let addresses = write_profile(&p, &profile_path, &here, "");
    let (profile, warnings) = symbolize(&profile_path, &[&p.full]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(frames(&profile), addr2line(&p.full, &addresses));
    // The path is not on this machine: used, with a warning.
    write_profile(&p, &profile_path, "/nonexistent/fwsym.full", "");
    let (profile, warnings) = symbolize(&profile_path, &[&p.full]);
    assert_eq!(frames(&profile), addr2line(&p.full, &addresses));
    assert!(
        warnings.len() == 1 && warnings[0].contains("by file name only"),
        "{warnings:?}"
    );
}

/// Debian's `-dbgsym` packages are `dwz`-compressed: types and functions
/// shared between binaries move to a supplementary file named by
/// `.gnu_debugaltlink` (path and build ID).
#[test]
fn dwz_supplementary_file_is_read() {
    if !tools_available() {
        return;
    }
    if !Command::new("dwz")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_BINUTILS").is_none(),
            "FIREWATCH_REQUIRE_BINUTILS is set but dwz does not run"
        );
        eprintln!("dwz not installed: skipping the .gnu_debugaltlink test");
        return;
    }
    let tmp = scratch("dwz");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir.join("one"), &["-g"], 1);
    let q = build(&dir.join("two"), &["-g"], 2);
    // dwz rewrites in place: the unstripped builds stay the reference.
    let (a, b) = (dir.join("one.dwz"), dir.join("two.dwz"));
    std::fs::copy(&p.full, &a).unwrap();
    std::fs::copy(&q.full, &b).unwrap();
    let common = dir.join("common.debug");
    run(Command::new("dwz")
        .arg("-m")
        .arg(&common)
        .args(["-M", "/nonexistent/.dwz/common.debug"])
        .arg(&a)
        .arg(&b));
    let sections =
        String::from_utf8(run(Command::new("readelf").arg("-SW").arg(&a)).stdout).unwrap();
    assert!(sections.contains(".gnu_debugaltlink"), "{sections}");
    check_against_addr2line(&p, &dir, &[&p.stripped, &a, &common]);
    // Found by build ID in a directory too.
    let notes =
        String::from_utf8(run(Command::new("readelf").arg("-n").arg(&common)).stdout).unwrap();
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap()
        .trim()
        .to_string();
    let links = dir.join("debug").join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&links).unwrap();
    std::fs::copy(&common, links.join(format!("{}.debug", &id[2..]))).unwrap();
    check_against_addr2line(&p, &dir, &[&p.stripped, &a, &dir.join("debug")]);

    // Without it: a warning that names the supplementary file.
    let profile_path = dir.join("stripped.pb");
    write_profile(&p, &profile_path, "/srv/app/fwsym", &p.build_id);
    let symbols = vec![p.stripped.clone(), a.clone()];
    let (_, warnings) = symbolize_to_pprof(
        &Source::new(&profile_path),
        &symbols,
        DEFAULT_MAX_DECOMPRESSED,
    )
    .unwrap();
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("/nonexistent/.dwz/common.debug") && w.contains(&id)),
        "{warnings:?}"
    );
}

/// Not a test: the cost of `--symbols` on a large binary, next to
/// binutils' `addr2line` on the same addresses in the same run. The
/// binary is `FIREWATCH_SYMBOLS_BENCH_BINARY` (default: the `firewatch`
/// binary under test), with `FIREWATCH_SYMBOLS_BENCH_N` addresses (default
/// 100000) spread over its functions. Figures in docs/performance.md.
#[test]
#[ignore]
fn bench_symbolize_large_binary() {
    if !tools_available() {
        return;
    }
    let binary = std::env::var_os("FIREWATCH_SYMBOLS_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_firewatch")));
    let n: usize = std::env::var("FIREWATCH_SYMBOLS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let tmp = scratch("bench");
    let dir = tmp.path().to_path_buf();
    // Describe the binary as `build` would, without compiling anything.
    let notes =
        String::from_utf8(run(Command::new("readelf").arg("-n").arg(&binary)).stdout).unwrap();
    let build_id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("the binary has a build ID")
        .trim()
        .to_string();
    let header =
        String::from_utf8(run(Command::new("readelf").arg("-hlW").arg(&binary)).stdout).unwrap();
    let text = header
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .find_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t[6..t.len() - 1]
                .concat()
                .contains('E')
                .then(|| (hex(t[1]), hex(t[2]), hex(t[5])))
        })
        .unwrap();
    let p = Program {
        full: binary.clone(),
        stripped: binary.clone(),
        debug: binary.clone(),
        build_id,
        text,
        pie: header
            .lines()
            .any(|l| l.contains("Type:") && l.contains("DYN")),
    };
    // N addresses: the functions' starts, then further into each, in turn.
    let nm = String::from_utf8(run(Command::new("nm").arg("-S").arg(&binary)).stdout).unwrap();
    let functions: Vec<(u64, u64)> = nm
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t.len() == 4 && matches!(t[2], "T" | "t")).then(|| (hex(t[0]), hex(t[1])))
        })
        .filter(|&(_, size)| size > 0)
        .collect();
    let mut addresses = Vec::with_capacity(n);
    let mut step = 0;
    while addresses.len() < n && step < 1 << 16 {
        addresses.extend(
            functions
                .iter()
                .filter(|(_, size)| step * 3 < *size)
                .map(|(start, _)| start + step * 3)
                .take(n - addresses.len()),
        );
        step += 1;
    }
    // The profile, through the same writer as the tests (its addresses
    // come from `file_addresses`, so write this one by hand).
    let bias = load_bias(&p);
    let (offset, vaddr, memsz) = p.text;
    let mut strings = StringInterner::new();
    let mut profile = Profile::new();
    profile.sample_type = vec![ValueType {
        r#type: strings.intern("samples"),
        unit: strings.intern("count"),
    }];
    profile.mapping.push(Mapping {
        id: 1,
        memory_start: bias + (vaddr & !(PAGE - 1)),
        memory_limit: (bias + vaddr + memsz).div_ceil(PAGE) * PAGE,
        file_offset: offset & !(PAGE - 1),
        filename: strings.intern("/srv/app/big"),
        build_id: strings.intern(&p.build_id),
        ..Mapping::default()
    });
    for (i, a) in addresses.iter().enumerate() {
        profile.location.push(Location {
            id: i as u64 + 1,
            mapping_id: 1,
            address: bias + a,
            ..Location::default()
        });
        profile.sample.push(Sample {
            location_id: vec![i as u64 + 1],
            value: vec![1],
            label: vec![],
        });
    }
    profile.string_table = strings.into_table();
    let profile_path = dir.join("big.pb");
    std::fs::write(&profile_path, profile.encode()).unwrap();

    let size = std::fs::metadata(&binary).unwrap().len();
    let firewatch = |threads: &str| {
        let started = std::time::Instant::now();
        let out = run(Command::new(env!("CARGO_BIN_EXE_firewatch"))
            .env("FIREWATCH_TIMINGS", "1")
            .args([
                "analyze",
                "--top",
                "3",
                "--hot-paths",
                "0",
                "--threads",
                threads,
            ])
            .arg("--symbols")
            .arg(&binary)
            .arg(&profile_path));
        let phase = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("symbolize:"))
            .unwrap_or_default()
            .to_string();
        (started.elapsed(), phase)
    };
    let (one, one_phase) = firewatch("1");
    let (all, all_phase) = firewatch("0");
    let input: String = addresses.iter().map(|a| format!("{a:#x}\n")).collect();
    let started = std::time::Instant::now();
    let mut child = Command::new("addr2line")
        .args(["-f", "-i", "-C", "-e"])
        .arg(&binary)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let addr2line = started.elapsed();
    println!(
        "{} ({} MB), {} addresses: firewatch analyze --symbols {:.2} s on 1 thread, \
         {:.2} s on all; addr2line -f -i -C {:.2} s\n  1 thread: {one_phase}\n  all: {all_phase}",
        binary.display(),
        size >> 20,
        addresses.len(),
        one.as_secs_f64(),
        all.as_secs_f64(),
        addr2line.as_secs_f64(),
    );
}

/// A jemalloc dump (no build IDs: its mappings come from
/// `/proc/self/maps` text) named with `--symbols BINARY`: the cumulative
/// `inuse_space` of the program's functions is jeprof's (jeprof keeps the
/// unsampled fractions, firewatch truncates each stack's value as pprof
/// does: less than one byte per stack apart).
#[test]
fn jemalloc_dump_with_symbols_gives_jeprofs_functions() {
    if !tools_available() {
        return;
    }
    let jeprof = Command::new("jeprof")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !jeprof || !Path::new("/usr/include/jemalloc/jemalloc.h").exists() {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_JEPROF").is_none(),
            "FIREWATCH_REQUIRE_JEPROF is set but jeprof or jemalloc.h is missing"
        );
        eprintln!("jeprof or libjemalloc-dev not installed: skipping");
        return;
    }
    let tmp = scratch("jemalloc");
    let generate =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/jemalloc/generate.sh");
    run(Command::new("bash").arg(&generate).arg(tmp.path()));
    let (binary, dump) = (tmp.path().join("alloc"), tmp.path().join("alloc.heap"));
    let stripped = tmp.path().join("stripped").join("alloc");
    std::fs::create_dir_all(stripped.parent().unwrap()).unwrap();
    let debug = tmp.path().join("alloc.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&binary)
        .arg(&debug));

    let out = run(Command::new("jeprof")
        .args(["--text", "--show_bytes", "--cum", "--inuse_space"])
        .arg(&binary)
        .arg(&dump));
    let text = String::from_utf8_lossy(&out.stdout);
    // flat flat% sum% cum cum% function
    let expected: Vec<(String, i64)> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<&str>>())
        .filter(|f| f.len() == 6)
        .map(|f| (f[5].to_string(), f[3].parse().unwrap()))
        .collect();
    let stacks = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('@'))
        .count() as i64;
    let ours = [
        "main",
        "build_cache",
        "hold_large",
        "hold_medium",
        "hold_small",
        "worker_hold",
    ];
    assert!(
        ours.iter().all(|f| expected.iter().any(|(n, _)| n == f)),
        "jeprof names the program's functions: {text}"
    );

    let analyze = |symbols: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_firewatch"));
        cmd.args([
            "analyze",
            "--format",
            "json",
            "--top",
            "0",
            "--sample-index",
            "inuse_space",
        ]);
        for s in symbols {
            cmd.arg("--symbols").arg(s);
        }
        let out = run(cmd.arg(&dump));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The binary itself (a sure match: the file the dump names), then a
    // stripped copy and its debug file (sure too: the binary the dump
    // names is here, with their build ID).
    std::fs::copy(&binary, &stripped).unwrap();
    run(Command::new("strip").arg(&stripped));
    for symbols in [
        vec![binary.as_path()],
        vec![stripped.as_path(), debug.as_path()],
    ] {
        let (report, stderr) = analyze(&symbols);
        for f in ours {
            let want = expected.iter().find(|(n, _)| n == f).unwrap().1;
            let have = report["functions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == f)
                .unwrap_or_else(|| panic!("{f} missing: {report}"))["cum"]
                .as_i64()
                .unwrap();
            assert!(
                (0..stacks).contains(&(want - have)),
                "{f}: jeprof {want}, firewatch {have}"
            );
        }
        assert!(
            !stderr.contains("by file name only"),
            "{symbols:?}: {stderr}"
        );
    }
}

/// A `--symbols` path that is missing, not ELF or cut short is a one-line
/// error naming it (no compiler needed).
#[test]
fn unusable_symbols_paths_are_one_line_errors() {
    let tmp = scratch("bad");
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/go-cpu.pb.gz");
    let not_elf = tmp.path().join("notes.txt");
    std::fs::write(&not_elf, "hello\n").unwrap();
    let cut = tmp.path().join("cut");
    let firewatch = std::fs::read(env!("CARGO_BIN_EXE_firewatch")).unwrap();
    std::fs::write(&cut, &firewatch[..3000]).unwrap();
    let missing = tmp.path().join("missing");
    for (path, reason) in [
        (&not_elf, "not a usable ELF file"),
        (&cut, "not a usable ELF file"),
        (&missing, "cannot read"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_firewatch"))
            .args(["analyze", "--symbols"])
            .arg(path)
            .arg(&profile)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("firewatch: {}: {reason}", path.display())),
            "{stderr}"
        );
    }
}

/// A stripped binary named by `--symbols` and matched by name (a mapping
/// without build ID, as jemalloc dumps have) gets its DWARF from the
/// separate debug file that its build ID names in a `--symbols` directory,
/// as GDB finds it, not just its symbol table.
#[test]
fn a_stripped_binary_matched_by_name_finds_its_debug_file_by_build_id() {
    if !tools_available() {
        return;
    }
    let tmp = scratch("stripped-by-name");
    let dir = tmp.path().to_path_buf();
    let p = build(&dir, &["-g"], 1);
    let (head, tail) = p.build_id.split_at(2);
    let debug_root = dir.join("debug-root");
    std::fs::create_dir_all(debug_root.join(".build-id").join(head)).unwrap();
    std::fs::copy(
        &p.debug,
        debug_root
            .join(".build-id")
            .join(head)
            .join(format!("{tail}.debug")),
    )
    .unwrap();
    let profile_path = dir.join("by-name.pb");
    let here = p.stripped.display().to_string();
    let addresses = write_profile(&p, &profile_path, &here, "");
    let (profile, warnings) = symbolize(&profile_path, &[&p.stripped, &debug_root]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = addr2line(&p.full, &addresses);
    assert!(
        expected.iter().any(|f| f.len() > 1),
        "inlined frames expected"
    );
    assert_eq!(frames(&profile), expected);
}

/// Debian's `libc6-dbg` puts libc's debug file under
/// `/usr/lib/debug/.build-id/`: `--symbols /lib/…/libc.so.6` (stripped)
/// finds it there, as GDB does, and names functions, files and lines as
/// addr2line does on that debug file. Skipped where libc6-dbg is not
/// installed, unless `FIREWATCH_REQUIRE_LIBC_DBG` is set (CI sets it).
#[test]
fn a_stripped_system_library_finds_its_debug_file_under_usr_lib_debug() {
    if !tools_available() {
        return;
    }
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let layout = libc.is_file().then(|| elf_layout(libc));
    let debug_file = |id: &str| {
        let (head, tail) = id.split_at(2);
        PathBuf::from(format!("/usr/lib/debug/.build-id/{head}/{tail}.debug"))
    };
    let Some((build_id, text, pie)) = layout.filter(|(id, ..)| debug_file(id).is_file()) else {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_LIBC_DBG").is_none(),
            "FIREWATCH_REQUIRE_LIBC_DBG is set but libc's debug file is not installed"
        );
        eprintln!("libc6-dbg not installed (or not x86_64 Debian): skipped");
        return;
    };
    let debug = debug_file(&build_id);
    let p = Program {
        full: debug.clone(),
        stripped: libc.to_path_buf(),
        debug: debug.clone(),
        build_id,
        text,
        pie,
    };
    // Inside a spread of libc's functions (from the debug file's symbols).
    let nm = String::from_utf8(run(Command::new("nm").arg("-S").arg(&debug)).stdout).unwrap();
    let mut functions: Vec<(u64, u64)> = nm
        .lines()
        .filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            (t.len() == 4 && matches!(t[2], "T" | "t") && hex(t[1]) >= 16)
                .then(|| (hex(t[0]), hex(t[1])))
        })
        .collect();
    functions.sort();
    functions.dedup_by_key(|f| f.0);
    assert!(
        functions.len() > 1000,
        "libc's functions: {}",
        functions.len()
    );
    let addresses: Vec<u64> = functions
        .iter()
        .step_by(functions.len() / 60)
        .map(|&(start, size)| start + size / 2)
        .collect();
    let tmp = scratch("libc");
    let profile_path = tmp.path().join("libc.pb");
    write_profile_at(
        &p,
        &profile_path,
        &libc.display().to_string(),
        "",
        &addresses,
    );
    let (profile, warnings) = symbolize(&profile_path, &[libc]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let got = frames(&profile);
    // Functions and lines as addr2line gives them. Its file names are not
    // the reference here: binutils 2.40 reads this DWARF 5 line table's
    // file entries off by one in places (`regex.c` for code in
    // `regex_internal.c`), and it and llvm-symbolizer both prefix the
    // compilation directory twice (`./posix/./posix/…`); files are checked
    // against llvm-symbolizer, undoubled, where it is installed.
    let expected = addr2line(&debug, &addresses);
    let names_and_lines = |frames: &[Vec<Frame>]| -> Vec<Vec<(String, u64)>> {
        frames
            .iter()
            .map(|f| {
                f.iter()
                    .map(|(name, _, line)| (name.clone(), *line as u64))
                    .collect()
            })
            .collect()
    };
    assert_eq!(names_and_lines(&got), names_and_lines(&expected));
    assert!(
        got.iter().all(|f| f
            .iter()
            .all(|(_, file, line)| !file.is_empty() && *line > 0)),
        "files and lines: {got:?}"
    );
    let Ok(out) = Command::new("llvm-symbolizer")
        .arg(format!("--obj={}", debug.display()))
        .args(["--inlining", "--functions=none"])
        .args(addresses.iter().map(|a| format!("{a:#x}")))
        .output()
    else {
        eprintln!("llvm-symbolizer not installed: file names not compared");
        return;
    };
    let undouble = |path: &str| -> String {
        if let Some((dir, rest)) = path.split_once("/./") {
            let name = dir.trim_start_matches("./");
            if let Some(rest) = rest.strip_prefix(&format!("{name}/")) {
                return format!("{dir}/{rest}");
            }
        }
        path.to_string()
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let llvm: Vec<Vec<String>> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .map(|l| undouble(l.rsplitn(3, ':').nth(2).unwrap_or(l)))
                .collect()
        })
        .collect();
    let files: Vec<Vec<String>> = got
        .iter()
        .map(|f| f.iter().map(|(_, file, _)| file.clone()).collect())
        .collect();
    assert_eq!(files, llvm);
}
