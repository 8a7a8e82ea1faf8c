//! Sizes as people type them in settings and flags.

/// Parses a byte count: digits with an optional `K`, `M` or `G` suffix
/// (either case; powers of 1024, as pprof's `kB`/`MB`/`GB`), e.g. `4096`,
/// `512K`, `64 M`, `4G`. `None` for anything else or an overflow.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, factor) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::parse_byte_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("4096"), Some(4096));
        assert_eq!(parse_byte_size("512K"), Some(512 << 10));
        assert_eq!(parse_byte_size(" 64 m "), Some(64 << 20));
        assert_eq!(parse_byte_size("4G"), Some(4 << 30));
        for bad in ["", "K", "x", "-1", "1.5G", "12T", "99999999999999999999"] {
            assert_eq!(parse_byte_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_byte_size("18446744073709551615K"), None);
    }
}
