//! A stripped service, symbolized later: the example service with its
//! debug info split into a `.debug` file (`objcopy --only-keep-debug`) and
//! the binary stripped, run with `FIREWATCH_SYMBOLIZE=off`, writes a CPU
//! profile of addresses, mappings and build IDs; `firewatch analyze
//! --symbols` names them from the debug file, found by build ID (directly
//! or in a `.build-id` directory), and finds the service's hot function as
//! the agent's in-process symbolization does (tests/service.rs).
//!
//! The same for a release build (issue 16): the service built optimized
//! with full debug info (inlining everywhere), split and stripped. The
//! stripped build's CPU profiles named offline have the function table
//! that the unstripped build's agent writes with its own names (another
//! run: each function's share agrees within the sampling error); the
//! frames named at every address the profiles hold in the service, and at
//! addresses across the rest of the binary (200 in all), are binutils'
//! `addr2line -f -i -C`'s on the unstripped build (function, file and
//! line, inlined frames included); a `.build-id` directory gives the same
//! table; and the test profile's ordinary build of the service (the debug
//! build under `cargo test`), whose name matches but whose build ID does
//! not, is refused with an error naming both build IDs.
//!
//! Needs binutils (`objcopy`, `strip`, `readelf`, `nm`, `addr2line`);
//! without them the tests say so and pass unless
//! `FIREWATCH_REQUIRE_BINUTILS` is set (CI sets it).

mod common;
#[path = "support/addr2line.rs"]
mod gnu_addr2line;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::{captures_of, tempdir, wait_for, Service};
use firewatch_analyzer::{symbolize_to_pprof, Source};
use firewatch_profile::{Location, Mapping, Profile, Sample, DEFAULT_MAX_DECOMPRESSED};
use gnu_addr2line::{addr2line, Frame};

/// Builds of the example service with other settings link their binary at
/// `target/<profile>/examples/service` too, where
/// [`common::service_binary`] is: a test holds this while it uses that
/// path.
fn examples_dir() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tool(name: &str, args: &[&std::ffi::OsStr]) -> bool {
    match Command::new(name).args(args).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => panic!("{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            assert!(
                std::env::var_os("FIREWATCH_REQUIRE_BINUTILS").is_none(),
                "FIREWATCH_REQUIRE_BINUTILS is set but {name} does not run: {e}"
            );
            eprintln!("{name} is not installed: skipping the offline symbolization test");
            false
        }
    }
}

/// `firewatch analyze --format json` with `args`; its JSON and stderr.
fn analyze(args: &[&std::ffi::OsStr]) -> (serde_json::Value, String) {
    let out = Command::new(common::firewatch_binary())
        .args(["analyze", "--format", "json", "--top", "0"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// The `cum` of the function whose name contains `part`, and the total.
fn cum_of(report: &serde_json::Value, part: &str) -> (i64, i64) {
    let cum = report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"].as_str().unwrap().contains(part))
        .map(|f| f["cum"].as_i64().unwrap())
        .max()
        .unwrap_or(0);
    (cum, report["total"].as_i64().unwrap())
}

#[test]
fn a_stripped_service_profiled_without_symbols_is_named_offline_by_build_id() {
    let dir = tempdir();
    let (stripped, debug) = (dir.path().join("service"), dir.path().join("service.debug"));
    {
        let _examples = examples_dir();
        let built = common::service_binary();
        if !tool(
            "objcopy",
            &[
                "--only-keep-debug".as_ref(),
                built.as_os_str(),
                debug.as_os_str(),
            ],
        ) || !tool(
            "strip",
            &["-o".as_ref(), stripped.as_os_str(), built.as_os_str()],
        ) {
            return;
        }
    }

    let out = dir.path().join("profiles");
    let mut service =
        Service::start_binary(&stripped, &out, &[], &[("FIREWATCH_SYMBOLIZE", "off")]);
    service.signal();
    assert!(
        wait_for(|| !captures_of(&out, "cpu").is_empty()),
        "no capture written"
    );
    service.shut_down();
    let profile = &captures_of(&out, "cpu")[0];

    // As written: addresses only, and the file says how to name them.
    let (unnamed, _) = analyze(&[profile.as_os_str()]);
    assert_eq!(cum_of(&unnamed, "checksum_orders").0, 0);
    let bytes = std::fs::read(profile).unwrap();
    let text = String::from_utf8_lossy(&flate2_decode(&bytes)).into_owned();
    assert!(text.contains("symbolize off"), "no symbolize-off comment");

    // Named from the debug file (matched by the build ID the stripped
    // binary kept): the hot function carries most of the CPU time, as the
    // in-process names show it (tests/service.rs).
    let (named, stderr) = analyze(&["--symbols".as_ref(), debug.as_os_str(), profile.as_os_str()]);
    let (hot, total) = cum_of(&named, "checksum_orders");
    assert!(
        hot as f64 > 0.5 * total as f64,
        "checksum_orders has {hot} of {total} ns; warnings: {stderr}"
    );
    // Every address in the service's own binary got a name.
    assert!(cum_of(&unnamed, "[service]").0 > 0);
    assert_eq!(
        cum_of(&named, "[service]").0,
        0,
        "unnamed service frames left"
    );

    // The same through a `.build-id` directory.
    let id = build_id(&stripped);
    let tree = dir.path().join("debug-root");
    let file = tree.join(format!(".build-id/{}/{}.debug", &id[..2], &id[2..]));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::copy(&debug, &file).unwrap();
    let (by_dir, _) = analyze(&["--symbols".as_ref(), tree.as_os_str(), profile.as_os_str()]);
    assert_eq!(by_dir["functions"], named["functions"]);
}

/// The GNU build ID of `binary`, from `readelf -n`.
fn build_id(binary: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(binary)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("the service has a GNU build ID")
        .trim()
        .to_string()
}

fn flate2_decode(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `target/<profile>`, from this test's own path.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The example service as a release build with full debug info, and this
/// profile's own build of it (the mismatched binary: same name, another
/// build ID), hard-linked under `target/<profile>/offline-symbols/`.
///
/// The release build is tests/debug_info.rs's `debug = true` build (keep
/// the settings in step): the `firewatch-agent` package built as
/// `[profile.release]` builds it, with `debug = true`, in this test's own
/// profile and target directory, so only that package is compiled, once
/// for both test files, and the dependencies the other tests built are
/// reused.
fn release_and_default_builds() -> (PathBuf, PathBuf) {
    let _examples = examples_dir();
    let release = profile_dir().ends_with("release");
    let profile = if release { "release" } else { "dev" };
    let cargo = |overrides: &[&str]| {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args([
            "build",
            "-q",
            "-p",
            "firewatch-agent",
            "--example",
            "service",
        ]);
        if release {
            build.arg("--release");
        }
        for value in overrides {
            build.args([
                "--config",
                &format!("profile.{profile}.package.firewatch-agent.{value}"),
            ]);
        }
        assert!(build.status().unwrap().success(), "{build:?}");
    };
    cargo(&[
        "opt-level=3",
        "debug-assertions=false",
        "overflow-checks=false",
        "codegen-units=16",
        "incremental=false",
        "debug=true",
    ]);
    let dir = profile_dir().join("offline-symbols");
    let full = link_built_service(&dir.join("service-release"));
    // This profile's build goes back where the other tests expect it.
    cargo(&[]);
    let other = link_built_service(&dir.join("other").join("service"));
    (full, other)
}

/// Links `target/<profile>/examples/service` at `to`. A hard link rather
/// than a copy: a copy is open for writing a moment, and a child forked
/// meanwhile would hold it open ("text file busy" when it is run).
fn link_built_service(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(to);
    let built = profile_dir().join("examples").join("service");
    if std::fs::hard_link(&built, to).is_err() {
        std::fs::copy(&built, to).unwrap();
    }
    to.to_path_buf()
}

/// Whether binutils run; without them, a notice (or a failure when
/// `FIREWATCH_REQUIRE_BINUTILS` is set).
fn binutils_available() -> bool {
    let missing: Vec<&str> = ["objcopy", "strip", "readelf", "nm", "addr2line"]
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
    eprintln!("{missing:?} not installed: skipping the release-build comparison");
    false
}

/// CPU profiles taken from each run, one after the other: a second of
/// sampling each, which gives a few hundred samples in all even on a busy
/// 2-core machine (the kernel's timer gives about 250 per CPU-second).
const CAPTURES: usize = 3;

/// The example service `binary` writing to `dir` with `env`, four busy
/// worker threads, and `--usr1 cpu`: `SIGUSR1` asks for a CPU profile
/// alone (no heap snapshot, whose in-process symbolization would run, and
/// be sampled, in one of the two runs only).
fn start_service(binary: &Path, dir: &Path, env: &[(&str, &str)]) -> Service {
    // As many samples as the kernel's timer gives (the agent says what it
    // got), in as few seconds as possible.
    let env: Vec<(&str, &str)> = [("FIREWATCH_CPU_HZ", "1000")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    Service::start_binary(binary, dir, &["--threads", "4", "--usr1", "cpu"], &env)
}

/// Asks `service` (writing to `dir`) for [`CAPTURES`] CPU profiles, one
/// at a time, stops it, and returns the profiles.
fn cpu_profiles(mut service: Service, dir: &Path) -> Vec<PathBuf> {
    for n in 1..=CAPTURES {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(service.pid, libc::SIGUSR1) }, 0);
        service.wait_for_lines(&["service: usr1 capture wrote "], n);
    }
    service.shut_down();
    let files = captures_of(dir, "cpu");
    assert_eq!(files.len(), CAPTURES, "{files:?}");
    files
}

/// The `cum` of each function in a JSON report.
fn cums(report: &serde_json::Value) -> BTreeMap<String, i64> {
    report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["cum"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The mappings of `profile` with build ID `id`.
fn mappings_of(profile: &Profile, id: &str) -> BTreeSet<u64> {
    profile
        .mapping
        .iter()
        .filter(|m| profile.string(m.build_id) == id)
        .map(|m| m.id)
        .collect()
}

/// The frames of location `l`: function, file, line, innermost first.
fn frames_of(profile: &Profile, l: &Location) -> Vec<Frame> {
    l.line
        .iter()
        .map(|line| {
            let f = profile
                .function
                .iter()
                .find(|f| f.id == line.function_id)
                .unwrap();
            (
                profile.string(f.name).to_string(),
                profile.string(f.filename).to_string(),
                line.line,
            )
        })
        .collect()
}

/// The functions named at addresses in the binary with build ID `id`.
fn functions_in(profile: &Profile, id: &str) -> BTreeSet<String> {
    let mappings = mappings_of(profile, id);
    profile
        .location
        .iter()
        .filter(|l| mappings.contains(&l.mapping_id))
        .flat_map(|l| frames_of(profile, l))
        .map(|(name, _, _)| name)
        .collect()
}

/// The `PT_LOAD` segments of `binary` (file offset, address, file size),
/// from `readelf -lW`.
fn load_segments(binary: &Path) -> Vec<(u64, u64, u64)> {
    let out = Command::new("readelf")
        .arg("-lW")
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -lW {}", binary.display());
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (hex(t[1]), hex(t[2]), hex(t[4]))
        })
        .collect()
}

/// The file address of runtime `address` in mapping `m`: its file
/// offset, then the `PT_LOAD` segment (of `loads`) that holds it.
fn file_address(m: &Mapping, address: u64, loads: &[(u64, u64, u64)]) -> u64 {
    let offset = address - m.memory_start + m.file_offset;
    let (start, vaddr, _) = loads
        .iter()
        .find(|(o, _, size)| (*o..o + size).contains(&offset))
        .unwrap_or_else(|| panic!("file offset {offset:#x} is in no segment"));
    offset - start + vaddr
}

/// The mapping (of `mappings`) that maps file address `svma`, and the
/// runtime address there (the inverse of [`file_address`]).
fn runtime_address(
    mappings: &[Mapping],
    svma: u64,
    loads: &[(u64, u64, u64)],
) -> Option<(u64, u64)> {
    let (start, vaddr, _) = loads
        .iter()
        .find(|(_, v, size)| (*v..v + size).contains(&svma))?;
    let offset = svma - vaddr + start;
    mappings
        .iter()
        .find(|m| {
            (m.file_offset..m.file_offset + (m.memory_limit - m.memory_start)).contains(&offset)
        })
        .map(|m| (m.id, offset - m.file_offset + m.memory_start))
}

/// The names of `binary`'s `STT_FILE` symbols (`readelf -s`).
fn file_symbols(binary: &Path) -> BTreeSet<String> {
    let out = Command::new("readelf")
        .arg("-sW")
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -sW {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, _, _, "FILE", _, _, _, name] => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

/// `n` file addresses spread over `binary`'s functions (`nm -S`): the
/// middle of every k-th one.
fn addresses_across(binary: &Path, n: usize) -> Vec<u64> {
    let out = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success(), "nm -S {}", binary.display());
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    let mut functions: Vec<(u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [start, size, "t" | "T", _] => Some((hex(start), hex(size))),
            _ => None,
        })
        .filter(|&(_, size)| size > 0)
        .collect();
    functions.sort_unstable();
    functions.dedup_by_key(|f| f.0);
    let step = (functions.len() / n.max(1)).max(1);
    functions
        .iter()
        .step_by(step)
        .take(n)
        .map(|(start, size)| start + size / 2)
        .collect()
}

#[test]
fn a_stripped_release_build_named_offline_matches_in_process_names_and_addr2line() {
    if !binutils_available() {
        return;
    }
    let dir = tempdir();
    let (full, other) = release_and_default_builds();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (stripped, debug) = (bin.join("service"), dir.path().join("service.debug"));
    assert!(tool(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            full.as_os_str(),
            debug.as_os_str()
        ]
    ));
    assert!(tool(
        "strip",
        &["-o".as_ref(), stripped.as_os_str(), full.as_os_str()]
    ));
    let id = build_id(&full);
    assert_eq!(build_id(&stripped), id);

    // The two runs at once: the stripped build without names; the
    // unstripped one naming its frames in process, from its debug info
    // (which the default capture memory limit would refuse for a binary
    // this size: names from the symbol table only).
    let (off_dir, on_dir) = (dir.path().join("off"), dir.path().join("on"));
    let off = start_service(&stripped, &off_dir, &[("FIREWATCH_SYMBOLIZE", "off")]);
    let on = start_service(&full, &on_dir, &[("FIREWATCH_CAPTURE_MEMORY_LIMIT", "off")]);
    let (off_profiles, in_process) = std::thread::scope(|s| {
        let off = s.spawn(|| cpu_profiles(off, &off_dir));
        let on = cpu_profiles(on, &on_dir);
        (off.join().expect("the stripped build's profiles"), on)
    });

    // The function tables, in samples, of the profiles merged.
    let table = |symbols: Option<&Path>, profiles: &[PathBuf]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--sample-index".as_ref(), "samples".as_ref()];
        if let Some(symbols) = symbols {
            args.extend(["--symbols".as_ref(), symbols.as_os_str()]);
        }
        args.extend(profiles.iter().map(|p| p.as_os_str()));
        analyze(&args)
    };
    let (want, _) = table(None, &in_process);
    let (named, stderr) = table(Some(&debug), &off_profiles);
    let (n_want, n_named) = (
        want["total"].as_i64().unwrap(),
        named["total"].as_i64().unwrap(),
    );
    assert!(
        n_want >= 100 && n_named >= 100,
        "too few samples to compare: {n_want} in process, {n_named} offline"
    );
    let (want_cum, named_cum) = (cums(&want), cums(&named));
    assert_eq!(
        named_cum.get("[service]"),
        None,
        "unnamed service frames left; {stderr}"
    );
    assert!(
        !stderr.contains(&id),
        "a warning about the service: {stderr}"
    );

    // The offline profiles' addresses in the service (as file addresses),
    // and addresses across the whole binary, 200 in all: named by the
    // library call `--symbols` makes, in one copy of the first profile
    // (its mappings, a location more per address).
    let loads = load_segments(&full);
    let decode = |path: &PathBuf| Profile::decode(&std::fs::read(path).unwrap()).unwrap();
    let mut sampled = BTreeSet::new();
    for p in off_profiles.iter().map(decode) {
        let mappings = mappings_of(&p, &id);
        for l in p
            .location
            .iter()
            .filter(|l| mappings.contains(&l.mapping_id))
        {
            let m = p.mapping.iter().find(|m| m.id == l.mapping_id).unwrap();
            sampled.insert(file_address(m, l.address, &loads));
        }
    }
    let mut copy = decode(&off_profiles[0]);
    let ids = mappings_of(&copy, &id);
    let mappings: Vec<Mapping> = copy
        .mapping
        .iter()
        .filter(|m| ids.contains(&m.id))
        .cloned()
        .collect();
    let mut added = Vec::new();
    let mut location = copy.location.iter().map(|l| l.id).max().unwrap_or(0);
    let across = addresses_across(&full, 200 - sampled.len().min(200));
    for &svma in sampled
        .iter()
        .chain(across.iter().filter(|a| !sampled.contains(a)))
    {
        let Some((mapping_id, address)) = runtime_address(&mappings, svma, &loads) else {
            assert!(!sampled.contains(&svma), "{svma:#x} is mapped");
            continue;
        };
        location += 1;
        copy.location.push(Location {
            id: location,
            mapping_id,
            address,
            ..Location::default()
        });
        copy.sample.push(Sample {
            location_id: vec![location],
            value: vec![1; copy.sample_type.len()],
            label: vec![],
        });
        added.push((svma, location));
    }
    let copy_path = dir.path().join("addresses.pb");
    std::fs::write(&copy_path, copy.encode()).unwrap();
    let (bytes, _) = symbolize_to_pprof(
        &Source::new(&copy_path),
        std::slice::from_ref(&debug),
        DEFAULT_MAX_DECOMPRESSED,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let named_copy = Profile::decode(&bytes).unwrap();
    let frames: BTreeMap<u64, Vec<Frame>> = added
        .iter()
        .map(|&(svma, location)| {
            let l = named_copy.location.iter().find(|l| l.id == location);
            (svma, frames_of(&named_copy, l.unwrap()))
        })
        .collect();

    // The service's functions: those named at its binary's addresses in
    // either run (libc and the vDSO stay unnamed offline).
    let in_process: Vec<Profile> = in_process.iter().map(decode).collect();
    let functions: BTreeSet<String> = in_process
        .iter()
        .flat_map(|p| functions_in(p, &id))
        .chain(
            sampled
                .iter()
                .flat_map(|a| frames[a].iter().map(|f| f.0.clone())),
        )
        .collect();
    assert!(
        in_process.iter().all(|p| p
            .mapping
            .iter()
            .any(|m| p.string(m.build_id) == id && m.has_inline_frames)),
        "the agent named the service's frames from its debug info"
    );

    // Each function's share of the samples: the same in both runs within
    // five standard deviations of the difference of two binomial shares
    // (a function in k of n samples). A function that one run shows 20
    // times or more, and that the other run would show 20 times or more at
    // that share, must be in both tables (absent: less than e^-20 likely).
    let mut differences = Vec::new();
    for f in &functions {
        let (a, b) = (
            *want_cum.get(f).unwrap_or(&0),
            *named_cum.get(f).unwrap_or(&0),
        );
        let (pa, pb) = (a as f64 / n_want as f64, b as f64 / n_named as f64);
        let p = (a + b) as f64 / (n_want + n_named) as f64;
        let sd = (p * (1.0 - p) * (1.0 / n_want as f64 + 1.0 / n_named as f64)).sqrt();
        let missing = (a >= 20 && b == 0 && pa * n_named as f64 >= 20.0)
            || (b >= 20 && a == 0 && pb * n_want as f64 >= 20.0);
        if (pa - pb).abs() > 5.0 * sd || missing {
            differences.push(format!(
                "{f}: in process {a} of {n_want} ({:.1}%), offline {b} of {n_named} ({:.1}%)",
                100.0 * pa,
                100.0 * pb
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "function tables differ:\n{}",
        differences.join("\n")
    );
    // Not a comparison of two empty tables: the hot function and its
    // caller carry most samples in both.
    for f in ["service::checksum_orders", "service::handle_request"] {
        let (a, b) = (want_cum.get(f), named_cum.get(f));
        assert!(
            a.is_some_and(|&a| a * 2 > n_want) && b.is_some_and(|&b| b * 2 > n_named),
            "{f}: {a:?} of {n_want} in process, {b:?} of {n_named} offline"
        );
    }

    // Address by address, against addr2line on the unstripped build.
    let addresses: Vec<u64> = frames.keys().copied().collect();
    let expected = addr2line(&full, &addresses);
    let object_files = file_symbols(&full);
    let mut wrong = Vec::new();
    for ((address, got), want) in frames.iter().zip(&expected) {
        // Code without debug info (such as std's own rustc-demangle):
        // addr2line takes the function from the symbol table, and as its
        // file the `STT_FILE` symbol before it there, an object file
        // (`rustc_demangle.<hash>-cgu.0`) rather than a source file;
        // firewatch names no file. The names must still agree.
        let no_debug_info = |(got, want): (&Frame, &Frame)| {
            got.0 == want.0
                && (got.1.as_str(), got.2, want.2) == ("", 0, 0)
                && object_files.contains(&want.1)
        };
        let same =
            got == want || (got.len() == want.len() && got.iter().zip(want).all(no_debug_info));
        if !same {
            wrong.push(format!(
                "{address:#x}:\n  offline   {got:?}\n  addr2line {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} addresses ({} from the profiles) differ from addr2line; the first:\n{}",
        wrong.len(),
        addresses.len(),
        sampled.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert!(
        sampled.len() >= 10
            && addresses.len() >= 150
            && expected.iter().any(|frames| frames.len() > 2),
        "{} addresses, {} from the profiles, some in inlined code: {expected:?}",
        addresses.len(),
        sampled.len()
    );

    eprintln!(
        "compared {n_want} samples in process with {n_named} offline, {} functions; \
         {} addresses ({} from the profiles) with addr2line",
        functions.len(),
        addresses.len(),
        sampled.len()
    );

    // The same table through a `.build-id` directory.
    let tree = dir.path().join("debug-root");
    let file = tree.join(format!(".build-id/{}/{}.debug", &id[..2], &id[2..]));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::copy(&debug, &file).unwrap();
    let (by_dir, _) = table(Some(&tree), &off_profiles);
    assert_eq!(by_dir["functions"], named["functions"]);

    // This profile's build of the service, named as the binary that ran:
    // refused, naming both build IDs.
    let other_id = build_id(&other);
    assert_ne!(other_id, id);
    let out = Command::new(common::firewatch_binary())
        .args(["analyze", "--format", "json", "--symbols"])
        .arg(&other)
        .arg(&off_profiles[0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("firewatch: ")
            && stderr.lines().count() == 1
            && stderr.contains(&format!("build ID {other_id}"))
            && stderr.contains(&format!("build ID {id}")),
        "{stderr}"
    );
}
