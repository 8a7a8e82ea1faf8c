//! Two small JSON readers serde_json cannot replace here.
//!
//! - [`top_level_keys`] lists the keys of a top-level object without
//!   building anything, so that detection costs one pass of byte scanning
//!   and no allocation (the real reader validates everything afterwards).
//! - [`Reader`] is a pull reader without recursion, for `.heapprofile`
//!   trees: V8 nests a call tree as objects in `children` arrays, up to 128
//!   frames deep (about 260 levels of JSON), while serde_json stops at 128
//!   levels unless built with `unbounded_depth`, which would then recurse
//!   on the machine stack as deep as a hostile file asks. Strings with
//!   escapes are still decoded by serde_json.

use std::borrow::Cow;
use std::fmt;

/// Nesting a reader accepts, far above what V8 writes (about 260 levels).
pub(crate) const MAX_DEPTH: usize = 1 << 16;

/// A byte offset and what was wrong there; printed with its line and column.
#[derive(Debug)]
pub(crate) struct JsonError {
    pub line: usize,
    pub column: usize,
    pub what: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

/// `bytes` without a leading UTF-8 byte order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The top-level keys of a JSON object, and whether the scan reached its
/// closing brace.
#[derive(Debug, Default)]
pub(crate) struct TopLevelKeys<'a> {
    pub keys: Vec<&'a [u8]>,
    pub complete: bool,
}

impl TopLevelKeys<'_> {
    pub fn has(&self, key: &str) -> bool {
        self.keys.contains(&key.as_bytes())
    }
}

/// Bytes [`top_level_keys`] stops at: quotes and brackets.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'"' as usize] = true;
    table[b'{' as usize] = true;
    table[b'[' as usize] = true;
    table[b'}' as usize] = true;
    table[b']' as usize] = true;
    table
};

/// Scans `bytes` for the keys of its top-level object (at most 64 are
/// kept); `None` unless it starts, after white space, with `{`. Values are
/// skipped by matching brackets outside strings, not validated: a string
/// at the top level is a key when `{` or `,` comes before it.
pub(crate) fn top_level_keys(bytes: &[u8]) -> Option<TopLevelKeys<'_>> {
    let bytes = strip_bom(bytes);
    let start = bytes.iter().position(|&b| !is_space(b))?;
    if bytes[start] != b'{' {
        return None;
    }
    let mut out = TopLevelKeys::default();
    let mut depth = 1usize;
    let mut i = start + 1;
    while let Some(skip) = bytes[i..].iter().position(|&b| STRUCTURAL[b as usize]) {
        i += skip;
        match bytes[i] {
            b'"' => {
                let begin = i + 1;
                i = begin;
                loop {
                    match bytes[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                        None => return Some(out),
                        Some(at) if bytes[i + at] == b'\\' => i += at + 2,
                        Some(at) => {
                            i += at;
                            break;
                        }
                    }
                    if i >= bytes.len() {
                        return Some(out);
                    }
                }
                if depth == 1 && out.keys.len() < 64 {
                    let before = bytes[..begin - 1].iter().rev().find(|&&b| !is_space(b));
                    if matches!(before, Some(b'{' | b',')) {
                        out.keys.push(&bytes[begin..i]);
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    out.complete = true;
                    return Some(out);
                }
            }
        }
        i += 1;
    }
    Some(out)
}

/// A pull reader over one JSON document. Each container is read with a
/// `first` flag the caller keeps (true before the first member).
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

pub(crate) type Result<T> = std::result::Result<T, JsonError>;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes: strip_bom(bytes),
            pos: 0,
        }
    }

    /// An error at the current position.
    pub fn error(&self, what: impl Into<String>) -> JsonError {
        self.error_at(self.pos, what)
    }

    /// An error at byte `pos`, with its line and column (1-based, columns
    /// in bytes, as serde_json counts them).
    pub fn error_at(&self, pos: usize, what: impl Into<String>) -> JsonError {
        let before = &self.bytes[..pos.min(self.bytes.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
        JsonError {
            line,
            column: column + 1,
            what: what.into(),
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn peek(&mut self) -> Result<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !is_space(b) {
                return Ok(b);
            }
            self.pos += 1;
        }
        Err(self.error("unexpected end of the file"))
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek()? != byte {
            return Err(self.error(format!("expected {what}")));
        }
        self.pos += 1;
        Ok(())
    }

    /// Checks that nothing but white space follows the document.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            Err(_) => Ok(()),
            Ok(_) => Err(self.error("trailing characters after the JSON value")),
        }
    }

    pub fn begin_object(&mut self) -> Result<()> {
        self.expect(b'{', "an object")
    }

    pub fn begin_array(&mut self) -> Result<()> {
        self.expect(b'[', "an array")
    }

    /// The next key of the object being read, or `None` at its end.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(None);
        }
        if !std::mem::take(first) {
            self.expect(b',', "`,` or `}`")?;
        }
        if self.peek()? != b'"' {
            return Err(self.error("expected a key"));
        }
        let key = self.string()?;
        self.expect(b':', "`:`")?;
        Ok(Some(key))
    }

    /// Whether the array being read has another element (positioned at it).
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(false);
        }
        if !std::mem::take(first) {
            self.expect(b',', "`,` or `]`")?;
        }
        Ok(true)
    }

    /// A string; borrowed from the input unless it has escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        self.expect(b'"', "a string")?;
        let start = self.pos - 1;
        let mut escaped = false;
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(&b) if b < 0x20 => {
                    return Err(self.error("control character in a string"));
                }
                Some(_) => self.pos += 1,
            }
        }
        self.pos += 1;
        let token = &self.bytes[start..self.pos];
        if escaped {
            return serde_json::from_slice::<String>(token)
                .map(Cow::Owned)
                .map_err(|e| self.error_at(start, format!("bad string: {e}")));
        }
        std::str::from_utf8(&token[1..token.len() - 1])
            .map(Cow::Borrowed)
            .map_err(|_| self.error_at(start, "invalid UTF-8 in a string"))
    }

    /// An integer that fits in an `i64` (no fraction, no exponent).
    pub fn integer(&mut self) -> Result<i64> {
        let start = self.pos;
        let token = self.number_token()?;
        std::str::from_utf8(token)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| self.error_at(start, "expected an integer"))
    }

    /// The bytes of a number, checked against JSON's grammar.
    fn number_token(&mut self) -> Result<&'a [u8]> {
        self.peek()?;
        let start = self.pos;
        let b = self.bytes;
        let digits = |mut i: usize| {
            let from = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            (i, i > from)
        };
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let (after, any) = digits(i);
        if !any || (b[i] == b'0' && after > i + 1) {
            return Err(self.error("expected a number"));
        }
        i = after;
        if b.get(i) == Some(&b'.') {
            let (after, any) = digits(i + 1);
            if !any {
                return Err(self.error_at(i, "expected a digit"));
            }
            i = after;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let (after, any) = digits(i);
            if !any {
                return Err(self.error_at(i, "expected a digit"));
            }
            i = after;
        }
        self.pos = i;
        Ok(&b[start..i])
    }

    /// Skips one value of any kind, checking its syntax, without recursion.
    pub fn skip_value(&mut self) -> Result<()> {
        // Open containers: (is an object, before its first member).
        let mut open: Vec<(bool, bool)> = Vec::new();
        loop {
            match self.peek()? {
                b'{' => {
                    self.pos += 1;
                    open.push((true, true));
                }
                b'[' => {
                    self.pos += 1;
                    open.push((false, true));
                }
                b'"' => drop(self.string()?),
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => drop(self.number_token()?),
            }
            if open.len() > MAX_DEPTH {
                return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
            }
            // Close what ends here, up to the next value to read.
            loop {
                let Some((object, first)) = open.last_mut() else {
                    return Ok(());
                };
                let more = if *object {
                    self.next_key(first)?.is_some()
                } else {
                    self.next_element(first)?
                };
                if more {
                    break;
                }
                open.pop();
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if !self.bytes[self.pos..].starts_with(word) {
            return Err(self.error("expected a value"));
        }
        self.pos += word.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_skip_nested_keys_and_strings() {
        let doc = br#" {"nodes":[{"id":1,"samples":"}{\"x"}],"samples":[1],"timeDeltas":[2]} "#;
        let keys = top_level_keys(doc).unwrap();
        assert!(keys.complete);
        let names: Vec<&[u8]> = keys.keys.clone();
        assert_eq!(
            names,
            vec![&b"nodes"[..], &b"samples"[..], &b"timeDeltas"[..]]
        );
        assert!(top_level_keys(b"\n\x0a{").unwrap().keys.is_empty());
        assert!(top_level_keys(b"\x0a\x02\x08\x01").is_none());
        let cut = top_level_keys(br#"{"head":{"children":[{"#).unwrap();
        assert!(!cut.complete && cut.has("head"));
    }

    #[test]
    fn reader_walks_objects_arrays_and_scalars() {
        let mut r = Reader::new(
            br#"{"a": [1, -2, 3e2], "b": "x\u00e9\n", "c": {"d": [true, null]}, "e": 7}"#,
        );
        r.begin_object().unwrap();
        let mut first = true;
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "a");
        r.begin_array().unwrap();
        let mut f = true;
        assert!(r.next_element(&mut f).unwrap());
        assert_eq!(r.integer().unwrap(), 1);
        assert!(r.next_element(&mut f).unwrap());
        assert_eq!(r.integer().unwrap(), -2);
        assert!(r.next_element(&mut f).unwrap());
        assert!(r.integer().unwrap_err().what.contains("integer"));
        assert!(!r.next_element(&mut f).unwrap());
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "b");
        assert_eq!(r.string().unwrap(), "x\u{e9}\n");
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "c");
        r.skip_value().unwrap();
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "e");
        assert_eq!(r.integer().unwrap(), 7);
        assert!(r.next_key(&mut first).unwrap().is_none());
        r.end().unwrap();
    }

    #[test]
    fn bad_syntax_is_an_error_with_a_position() {
        for (doc, what) in [
            (&b"[1,]"[..], "expected a number"),
            (b"[1 2]", "`,` or `]`"),
            (b"{\"a\" 1}", "`:`"),
            (b"[\"abc", "unterminated"),
            (b"[01]", "expected a number"),
            (b"[tru]", "expected a value"),
            (b"[\"\xff\"]", "UTF-8"),
            (b"{\"a\":[1,\n {\"b\":}]}", "line 2 column"),
        ] {
            let err = Reader::new(doc).skip_value().unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
        let deep = vec![b'['; MAX_DEPTH + 2];
        let err = Reader::new(&deep).skip_value().unwrap_err();
        assert!(err.what.contains("nested"), "{err}");
    }
}
