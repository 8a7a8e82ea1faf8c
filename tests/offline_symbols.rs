//! A stripped service, symbolized later: the example service with its
//! debug info split into a `.debug` file (`objcopy --only-keep-debug`) and
//! the binary stripped, run with `FIREWATCH_SYMBOLIZE=off`, writes a CPU
//! profile of addresses, mappings and build IDs; `firewatch analyze
//! --symbols` names them from the debug file, found by build ID (directly
//! or in a `.build-id` directory), and finds the service's hot function as
//! the agent's in-process symbolization does (tests/service.rs).
//!
//! Needs binutils (`objcopy`, `strip`); without them the test says so and
//! passes unless `FIREWATCH_REQUIRE_BINUTILS` is set (CI sets it).

mod common;

use std::path::Path;
use std::process::Command;

use common::{captures_of, tempdir, wait_for, Service};

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
    let built = common::service_binary();
    let (stripped, debug) = (dir.path().join("service"), dir.path().join("service.debug"));
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
    let id = build_id(&built);
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
