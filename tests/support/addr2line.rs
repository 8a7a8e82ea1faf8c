//! binutils' `addr2line -a -f -i -C`, the independent reference for the
//! frames `--symbols` finds (an address's function, file and line, with
//! the functions inlined there). Shared by `tests/offline_symbols.rs` and
//! `crates/analyzer/tests/symbols.rs` through `#[path]`: integration tests
//! of different packages cannot import each other.

use std::path::Path;
use std::process::Command;

/// One frame: function, file, line (0 unknown).
pub type Frame = (String, String, i64);

/// `addr2line -a -f -i -C -e binary` on `addresses` (the file's own
/// addresses): the frames of each address, innermost first.
pub fn addr2line(binary: &Path, addresses: &[u64]) -> Vec<Vec<Frame>> {
    let mut cmd = Command::new("addr2line");
    cmd.args(["-a", "-f", "-i", "-C", "-e"])
        .arg(binary)
        .args(addresses.iter().map(|a| format!("{a:#x}")));
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut all: Vec<Vec<Frame>> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        // `-a`: each address's frames start with the address.
        if line.starts_with("0x") {
            all.push(Vec::new());
            continue;
        }
        let place = lines.next().expect("function and place lines");
        let place = place.split(" (discriminator").next().unwrap();
        let (file, number) = place.rsplit_once(':').unwrap();
        let file = if file == "??" { "" } else { file };
        all.last_mut().unwrap().push((
            line.to_string(),
            file.to_string(),
            number.parse().unwrap_or(0),
        ));
    }
    assert_eq!(all.len(), addresses.len());
    all
}
