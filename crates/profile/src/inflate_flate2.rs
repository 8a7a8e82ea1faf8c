//! Gzip inflation with flate2 (pure Rust, zlib-rs), for builds without the
//! `libdeflate` feature (no C compiler needed for the target): the same
//! contract as the libdeflate version, 1.4–1.6× slower.
//!
//! Every member of a multi-member file is inflated (as Go's reader does);
//! anything after the last member is an error, as are bad CRCs and sizes
//! (flate2 checks both). The output never grows past `limit` (plus the last
//! read's overshoot, at most one byte past it before the error).

use std::io::{self, Read};

use flate2::bufread::GzDecoder;

use crate::error::{Error, Result};

fn corrupt(what: &str) -> Error {
    Error::Gzip(io::Error::new(io::ErrorKind::InvalidData, what.to_string()))
}

/// Inflates every gzip member of `input` into one buffer of at most `limit`
/// bytes. `capacity` is the first guess for the output size.
pub fn gunzip(input: &[u8], capacity: usize, limit: u64) -> Result<Vec<u8>> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::with_capacity(capacity.clamp(64, cap.max(64)));
    let mut rest = input;
    loop {
        if !rest.starts_with(&[0x1f, 0x8b]) {
            return Err(corrupt(if rest.len() < 2 {
                "truncated gzip member"
            } else {
                "data after the last gzip member"
            }));
        }
        // A `bufread` decoder over the slice consumes exactly one member,
        // so what it leaves is the next member (or trailing junk).
        let mut member = GzDecoder::new(rest);
        let room = limit.saturating_sub(out.len() as u64).saturating_add(1);
        (&mut member)
            .take(room)
            .read_to_end(&mut out)
            .map_err(Error::Gzip)?;
        if out.len() as u64 > limit {
            return Err(Error::TooLarge { limit });
        }
        rest = member.into_inner();
        if rest.is_empty() {
            return Ok(out);
        }
    }
}
