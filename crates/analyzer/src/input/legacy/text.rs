//! Lines and numbers of the text formats.

use std::borrow::Cow;

use super::LegacyError;

/// The lines of a text profile, numbered from 1, without their `\n` or a
/// trailing `\r` (as Go's `bufio.Scanner` gives them). Bytes that are not
/// UTF-8 are replaced, so a line is always text.
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Lines<'a> {
    pub fn new(bytes: &'a [u8]) -> Lines<'a> {
        Lines {
            rest: bytes,
            number: 0,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        self.number += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Some((self.number, String::from_utf8_lossy(line)))
    }
}

/// The start of `line` for an error message: at most 60 characters.
pub(crate) fn excerpt(line: &str) -> String {
    let mut out: String = line.chars().take(60).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// A `Line` error for `line`.
pub(crate) fn bad_line(number: usize, expected: &'static str, line: &str) -> LegacyError {
    LegacyError::Line {
        line: number,
        expected,
        found: excerpt(line.trim()),
    }
}

/// `0x`-prefixed hexadecimal, at most 64 bits.
pub(crate) fn hex_address(token: &str) -> Option<u64> {
    let digits = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The addresses of a stack written as `0x… 0x… …`.
pub(crate) fn addresses(number: usize, list: &str) -> Result<Vec<u64>, LegacyError> {
    list.split_ascii_whitespace()
        .map(|token| {
            hex_address(token).ok_or_else(|| LegacyError::Value {
                line: number,
                reason: format!(
                    "`{}` is not an address (0x and at most 16 hex digits)",
                    excerpt(token)
                ),
            })
        })
        .collect()
}

/// A decimal integer (optionally negative when `signed`).
pub(crate) fn integer(number: usize, token: &str, signed: bool) -> Result<i64, LegacyError> {
    let digits = if signed {
        token.strip_prefix('-').unwrap_or(token)
    } else {
        token
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LegacyError::Value {
            line: number,
            reason: format!("`{}` is not a count", excerpt(token)),
        });
    }
    token.parse().map_err(|_| LegacyError::Value {
        line: number,
        reason: format!("{} does not fit in 64 bits", excerpt(token)),
    })
}

/// Parses `<count>: <bytes> [<count>: <bytes>]` (spaces optional around
/// the separators) into the four numbers. The first pair may be negative
/// (pprof allows it), the bracketed one not.
pub(crate) fn count_pairs(
    number: usize,
    text: &str,
    expected: &'static str,
) -> Result<[i64; 4], LegacyError> {
    let bad = || bad_line(number, expected, text);
    let (first, rest) = text.split_once('[').ok_or_else(bad)?;
    let (second, tail) = rest.split_once(']').ok_or_else(bad)?;
    if !tail.trim().is_empty() {
        return Err(bad());
    }
    let pair = |s: &str, signed: bool| -> Result<(i64, i64), LegacyError> {
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        Ok((
            integer(number, a.trim(), signed)?,
            integer(number, b.trim(), signed)?,
        ))
    };
    let (n1, s1) = pair(first, true)?;
    let (n2, s2) = pair(second, false)?;
    Ok([n1, s1, n2, s2])
}

/// An integer as Go's `ParseInt(v, 0, 64)` reads it: decimal, `0x` hex,
/// `0` octal.
pub(crate) fn go_int(v: &str) -> Option<i64> {
    let (negative, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_without_line_ends() {
        let lines: Vec<_> = Lines::new(b"a\r\nb\n\nc").collect();
        let lines: Vec<_> = lines.iter().map(|(n, l)| (*n, l.as_ref())).collect();
        assert_eq!(lines, [(1, "a"), (2, "b"), (3, ""), (4, "c")]);
    }

    #[test]
    fn numbers_and_addresses() {
        assert_eq!(hex_address("0x1f"), Some(31));
        assert_eq!(hex_address("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(hex_address("0x1ffffffffffffffff"), None);
        assert_eq!(hex_address("1f"), None);
        assert_eq!(hex_address("0x"), None);
        assert_eq!(
            count_pairs(1, "  1:  9216 [   2:  18432]", "x").unwrap(),
            [1, 9216, 2, 18432]
        );
        assert_eq!(
            count_pairs(1, "-1: -5 [0: 0]", "x").unwrap(),
            [-1, -5, 0, 0]
        );
        assert!(count_pairs(1, "1: 2 [-3: 4]", "x").is_err());
        assert!(count_pairs(1, "1: 2 [3: 4", "x").is_err());
        assert!(count_pairs(1, "1: 99999999999999999999 [3: 4]", "x").is_err());
    }
}
