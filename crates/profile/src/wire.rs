//! Protocol-buffer wire format: the handful of primitives `profile.proto` needs.
//!
//! pprof's own Go package hand-writes its codec because the schema is small and
//! fixed; so do we. The reader never trusts a length: every read is bounds
//! checked and reports the byte offset where the input went wrong.

use crate::error::{Error, Result};

/// Wire types used by `profile.proto` (groups are rejected).
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// A cursor over one protobuf message. `base` is the offset of `buf[0]` in the
/// whole (decompressed) input, so errors can name an absolute byte offset.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    /// The message being read, for error messages (`"sample"`, `"location"`).
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], base: usize, message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            message,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Absolute offset of the next byte.
    #[inline]
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn error(&self, field: &'static str, detail: impl Into<String>) -> Error {
        Error::Malformed {
            offset: self.offset(),
            field: if field.is_empty() {
                self.message.to_string()
            } else {
                format!("{}.{}", self.message, field)
            },
            detail: detail.into(),
        }
    }

    #[inline(always)]
    pub fn varint(&mut self, field: &'static str) -> Result<u64> {
        // Fast paths: one byte (most indexes and small values), two (ids
        // below 16,384) and three (ids below 2,097,152: the location ids
        // of large profiles).
        match *self.buf.get(self.pos..).unwrap_or_default() {
            [b, ..] if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            [b, c, ..] if c < 0x80 => {
                self.pos += 2;
                Ok(u64::from(b & 0x7f) | u64::from(c) << 7)
            }
            [b, c, d, ..] if d < 0x80 => {
                self.pos += 3;
                Ok(u64::from(b & 0x7f) | u64::from(c & 0x7f) << 7 | u64::from(d) << 14)
            }
            _ => self.long_varint(field),
        }
    }

    /// A varint of any length, checked: the rest of [`Reader::varint`].
    #[inline(never)]
    fn long_varint(&mut self, field: &'static str) -> Result<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.error(field, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.error(field, "varint overflows 64 bits"));
            }
            value |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error(field, "varint longer than 10 bytes"))
    }

    /// Reads a field key; returns (field number, wire type).
    #[inline(always)]
    pub fn key(&mut self) -> Result<(u64, u8)> {
        let key = self.varint("")?;
        let field = key >> 3;
        let wire = (key & 7) as u8;
        if field == 0 {
            return Err(self.error("", "field number 0"));
        }
        Ok((field, wire))
    }

    /// Reads a length-delimited payload; returns it and its absolute offset.
    #[inline(always)]
    pub fn bytes(&mut self, field: &'static str) -> Result<(&'a [u8], usize)> {
        let len = self.varint(field)?;
        let start = self.pos;
        let remaining = self.buf.len() - start;
        if len > remaining as u64 {
            return Err(self.error(
                field,
                format!("length {len} runs past the end of the data ({remaining} bytes left)"),
            ));
        }
        self.pos += len as usize;
        Ok((&self.buf[start..self.pos], self.base + start))
    }

    /// Skips a field of an unknown number.
    pub fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint("").map(drop),
            LEN => self.bytes("").map(drop),
            FIXED64 => self.advance(8),
            FIXED32 => self.advance(4),
            other => Err(self.error("", format!("unsupported wire type {other}"))),
        }
    }

    fn advance(&mut self, n: usize) -> Result<()> {
        if self.buf.len() - self.pos < n {
            return Err(self.error("", "truncated fixed-width field"));
        }
        self.pos += n;
        Ok(())
    }

    /// Reads one integer field that must be a varint.
    #[inline(always)]
    pub fn expect_varint(&mut self, wire: u8, field: &'static str) -> Result<u64> {
        if wire != VARINT {
            return Err(self.error(field, format!("expected a varint, found wire type {wire}")));
        }
        self.varint(field)
    }

    /// Reads a repeated integer field, packed or not, calling `each` per value.
    #[inline]
    pub fn repeated_varint(
        &mut self,
        wire: u8,
        field: &'static str,
        mut each: impl FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        match wire {
            VARINT => each(self.varint(field)?),
            LEN => {
                let (payload, at) = self.bytes(field)?;
                let mut packed = Reader::new(payload, at, self.message);
                while !packed.is_empty() {
                    each(packed.varint(field)?)?;
                }
                Ok(())
            }
            other => Err(self.error(
                field,
                format!("expected a varint or packed varints, found wire type {other}"),
            )),
        }
    }

    /// Reads a nested message field.
    #[inline]
    pub fn message(
        &mut self,
        wire: u8,
        field: &'static str,
        message: &'static str,
    ) -> Result<Reader<'a>> {
        if wire != LEN {
            return Err(self.error(field, format!("expected a message, found wire type {wire}")));
        }
        let (payload, at) = self.bytes(field)?;
        Ok(Reader::new(payload, at, message))
    }
}

/// Appends protobuf fields to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    #[inline]
    pub fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    #[inline]
    fn key(&mut self, field: u32, wire: u8) {
        self.raw_varint(((field as u64) << 3) | wire as u64);
    }

    /// An integer field; proto3 omits zero values.
    #[inline]
    pub fn varint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.raw_varint(v);
        }
    }

    #[inline]
    pub fn int64(&mut self, field: u32, v: i64) {
        self.varint(field, v as u64);
    }

    pub fn bool(&mut self, field: u32, v: bool) {
        self.varint(field, v as u64);
    }

    pub fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.raw_varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    /// A packed repeated integer field (omitted when empty).
    pub fn packed(&mut self, field: u32, values: impl Iterator<Item = u64> + Clone) {
        let mut len = 0usize;
        for v in values.clone() {
            len += varint_len(v);
        }
        if len == 0 {
            return;
        }
        self.key(field, LEN);
        self.raw_varint(len as u64);
        for v in values {
            self.raw_varint(v);
        }
    }

    /// A nested message written by `body` into a scratch writer.
    pub fn message(&mut self, field: u32, scratch: &mut Writer, body: impl FnOnce(&mut Writer)) {
        scratch.buf.clear();
        body(scratch);
        self.bytes(field, &scratch.buf);
    }
}

pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift] {
                let mut w = Writer::default();
                w.raw_varint(v);
                assert_eq!(w.buf.len(), varint_len(v), "{v}");
                let mut r = Reader::new(&w.buf, 0, "test");
                assert_eq!(r.varint("v").unwrap(), v);
                assert!(r.is_empty());
            }
        }
    }

    /// Back to back, so that the fast paths see the next varint's bytes
    /// after each one (continuation bits set or not).
    #[test]
    fn varints_back_to_back_read_as_written() {
        let mut values = Vec::new();
        for shift in 0..64 {
            values.extend([1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift]);
        }
        for filler in [0x00u8, 0x7f, 0x80, 0xff] {
            let mut w = Writer::default();
            for &v in &values {
                w.raw_varint(v);
                w.buf.push(filler & 0x7f);
            }
            w.buf.extend([filler; 8]);
            let mut r = Reader::new(&w.buf, 0, "test");
            for &v in &values {
                assert_eq!(r.varint("v").unwrap(), v, "filler {filler:#x}");
                assert_eq!(r.varint("v").unwrap(), u64::from(filler & 0x7f));
            }
        }
    }

    #[test]
    fn hostile_varints_are_rejected_with_offsets() {
        let mut r = Reader::new(&[0x80, 0x80], 100, "sample");
        let err = r.varint("value").unwrap_err().to_string();
        assert!(
            err.contains("truncated varint")
                && err.contains("byte 102")
                && err.contains("sample.value"),
            "{err}"
        );
        let eleven = [0xffu8; 11];
        assert!(Reader::new(&eleven, 0, "m").varint("f").is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&overflow, 0, "m").varint("f").is_err());
    }

    #[test]
    fn lengths_past_the_end_are_rejected() {
        let mut r = Reader::new(&[0x05, 1, 2], 0, "m");
        assert!(r
            .bytes("f")
            .unwrap_err()
            .to_string()
            .contains("runs past the end"));
    }
}
