//! jemalloc's `jeprof` (Debian's `libjemalloc-dev`), the independent
//! reference for jemalloc heap dumps: its `--text` tables parsed, and the
//! naming rules it applies to functions, so that firewatch's names can be
//! compared with its. For sharing through `#[path]`: integration tests of
//! different packages cannot import each other.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One row of a `--text` table. `name` is as jeprof prints it (after
/// [`short_function_names`], with ` (inline)` and `@<address>` markers);
/// `address` only with `--addresses`.
#[derive(Debug, Clone)]
pub struct Row {
    pub flat: i64,
    pub cum: i64,
    pub address: Option<u64>,
    pub name: String,
}

/// A `--text` table and its `Total:` line.
#[derive(Debug)]
pub struct Table {
    pub rows: Vec<Row>,
    pub total: i64,
}

/// Whether `jeprof` runs; without it, a notice (or a failure when
/// `FIREWATCH_REQUIRE_JEPROF` is set).
pub fn available() -> bool {
    let ok = Command::new("jeprof")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("FIREWATCH_REQUIRE_JEPROF").is_none(),
            "FIREWATCH_REQUIRE_JEPROF is set but `jeprof` does not run"
        );
        eprintln!("jeprof is not installed (Debian: libjemalloc-dev): skipping the comparison");
    }
    ok
}

/// `jeprof --text --show_bytes ARGS BINARY DUMP`, parsed: each line is
/// `flat flat% sum% cum cum% [address] function… [file:line]` (the
/// address and place with `--addresses`). Function names keep their
/// spaces (`<A as B>::f` shortened, ` (inline)`).
pub fn text(binary: &Path, dump: &Path, args: &[&str]) -> Table {
    let mut cmd = Command::new("jeprof");
    cmd.args(["--text", "--show_bytes"])
        .args(args)
        .arg(binary)
        .arg(dump);
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("jeprof prints UTF-8");
    let addresses = args.contains(&"--addresses");
    let mut total = None;
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("Total: ") {
            total = Some(t.split_whitespace().next().unwrap().parse().unwrap());
            continue;
        }
        let (fields, mut rest) = leading_fields(line, if addresses { 6 } else { 5 });
        let address = addresses.then(|| u64::from_str_radix(fields[5], 16).unwrap());
        if addresses {
            // The place (`file:line`, `??:?`) is the last word.
            rest = rest.rsplit_once(' ').map_or(rest, |(f, _)| f);
        }
        rows.push(Row {
            flat: fields[0].parse().unwrap_or_else(|_| panic!("{line}")),
            cum: fields[3].parse().unwrap_or_else(|_| panic!("{line}")),
            address,
            name: rest.trim_end().to_string(),
        });
    }
    Table {
        rows,
        total: total.unwrap_or_else(|| panic!("jeprof prints a total: {text}")),
    }
}

/// The first `n` whitespace-separated fields of `line` and the rest (its
/// inner spacing kept).
fn leading_fields(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut rest = line.trim_start();
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let end = rest
            .find(char::is_whitespace)
            .unwrap_or_else(|| panic!("{n} fields and a function: {line}"));
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (fields, rest)
}

/// jeprof's `ShortFunctionName`, which it applies to every name
/// `addr2line -C` gives, applied to each of `names`: the Perl function
/// itself, taken from the installed `jeprof` script, so that the naming
/// compared is jeprof's own. It removes argument lists `(…)` and template
/// arguments `<…>`, innermost first until none is left, then anything
/// before a last space followed by `word::`: for Rust,
/// `<alloc::raw_vec::RawVecInner>::try_allocate_in` becomes
/// `::try_allocate_in`, `RawVec<T,A>::with_capacity_in`
/// `RawVec::with_capacity_in`.
pub fn short_function_names(names: &[&str]) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let script = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("jeprof"))
        .find(|p| p.is_file())
        .expect("jeprof on PATH");
    let text = std::fs::read_to_string(&script).unwrap();
    let sub = text
        .find("\nsub ShortFunctionName {")
        .and_then(|start| {
            let end = start + text[start..].find("\n}\n")? + 3;
            Some(&text[start..end])
        })
        .unwrap_or_else(|| panic!("{} defines ShortFunctionName", script.display()));
    let program =
        format!("{sub}\nwhile (<STDIN>) {{ chomp; print ShortFunctionName($_), \"\\n\"; }}");
    let mut child = Command::new("perl")
        .args(["-e", &program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl (jeprof is a Perl script)");
    let mut input = names.join("\n");
    input.push('\n');
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "perl: jeprof's ShortFunctionName");
    let short: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(short.len(), names.len(), "one short name per name");
    short
}

/// A jeprof table name without the marks jeprof adds to it: ` (inline)`
/// (the frame was inlined at that address; the same function not inlined
/// elsewhere is another row) and `@<hex>` (two symbols with one short name,
/// such as one generic function's instances, told apart by address).
pub fn unmarked(name: &str) -> &str {
    let name = name.strip_suffix(" (inline)").unwrap_or(name);
    match name.rsplit_once('@') {
        Some((base, hex)) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => base,
        _ => name,
    }
}
