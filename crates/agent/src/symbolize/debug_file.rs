//! Where an object's **separate debug file** is, found the way `backtrace`
//! (and gdb) find it, so what [`super::cost`] estimates and [`super::symtab`]
//! reads is the file `backtrace` would parse: by GNU build ID under
//! `/usr/lib/debug/.build-id/ab/cdef….debug` (Debian's `libc6-dbg` installs
//! libc's there), else by the `.gnu_debuglink` name, next to the object, in
//! its `.debug/` directory, or under `/usr/lib/debug/<the object's
//! directory>/`.

use std::path::{Path, PathBuf};

use crate::elf::ElfFile;

/// Where distributions install separate debug files.
const DEBUG_DIR: &str = "/usr/lib/debug";

/// The separate debug file of the object at `path` (whose GNU build ID is
/// `build_id`, lowercase hex, when known), found as `backtrace` finds it:
/// by build ID, then by `.gnu_debuglink`. `None` when it has none.
pub(super) fn separate_debug_file(
    path: &Path,
    object: &ElfFile,
    build_id: Option<&str>,
) -> Option<PathBuf> {
    let by_id = build_id
        .filter(|id| id.len() > 2 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| {
            PathBuf::from(format!(
                "{DEBUG_DIR}/.build-id/{}/{}.debug",
                &id[..2],
                &id[2..]
            ))
        })
        .filter(|p| p.is_file());
    by_id.or_else(|| {
        let name = object.debuglink()?;
        let path = std::fs::canonicalize(path).ok()?;
        let dir = path.parent()?;
        let candidates = [
            dir.join(&name),
            dir.join(".debug").join(&name),
            Path::new(DEBUG_DIR)
                .join(dir.strip_prefix("/").unwrap_or(dir))
                .join(&name),
        ];
        candidates
            .into_iter()
            .find(|candidate| *candidate != path && candidate.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debuglink_is_followed_next_to_the_object() {
        use std::io::Write;
        // An object whose only section names `x.debug` in .gnu_debuglink.
        let dir = tempfile::tempdir().unwrap();
        let names = b"\0.gnu_debuglink\0.shstrtab\0";
        let link = b"x.debug\0\0\0\0\0\0\0\0\0";
        let (link_at, names_at, headers_at) = (64u64, 80u64, 112u64);
        let mut f = vec![0u8; headers_at as usize];
        f[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        f[0x28..0x30].copy_from_slice(&headers_at.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f[link_at as usize..link_at as usize + link.len()].copy_from_slice(link);
        f[names_at as usize..names_at as usize + names.len()].copy_from_slice(names);
        let header = |name: u32, kind: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        f.extend(header(0, 0, 0, 0));
        f.extend(header(1, 1, link_at, link.len() as u64));
        f.extend(header(16, 3, names_at, names.len() as u64));
        let object = dir.path().join("x");
        std::fs::File::create(&object)
            .unwrap()
            .write_all(&f)
            .unwrap();
        let elf = ElfFile::open(&object).unwrap();
        assert_eq!(elf.debuglink().as_deref(), Some("x.debug"));
        assert_eq!(separate_debug_file(&object, &elf, None), None);
        std::fs::create_dir(dir.path().join(".debug")).unwrap();
        let debug = dir.path().join(".debug/x.debug");
        std::fs::write(&debug, b"").unwrap();
        let found = separate_debug_file(&object, &elf, None).unwrap();
        assert_eq!(found, std::fs::canonicalize(&debug).unwrap());
        // An unknown build ID is no file.
        assert_eq!(
            separate_debug_file(&object, &elf, Some("00112233")),
            Some(found)
        );
    }
}
