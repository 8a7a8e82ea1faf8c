//! The encoder: [`Profile`] to `profile.proto` bytes, raw or gzip.
//!
//! Fields are written in field-number order, repeated integers packed, zero
//! scalars omitted (proto3), as Go's pprof writes them.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::model::{Profile, ValueType};
use crate::wire::Writer;

impl Profile {
    /// The raw (uncompressed) protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let mut m = Writer::default();
        let mut inner = Writer::default();
        for vt in &self.sample_type {
            w.message(1, &mut m, |m| value_type(m, vt));
        }
        for s in &self.sample {
            w.message(2, &mut m, |m| {
                m.packed(1, s.location_id.iter().copied());
                m.packed(2, s.value.iter().map(|&v| v as u64));
                for l in &s.label {
                    m.message(3, &mut inner, |lw| {
                        lw.int64(1, l.key);
                        lw.int64(2, l.str);
                        lw.int64(3, l.num);
                        lw.int64(4, l.num_unit);
                    });
                }
            });
        }
        for mp in &self.mapping {
            w.message(3, &mut m, |m| {
                m.varint(1, mp.id);
                m.varint(2, mp.memory_start);
                m.varint(3, mp.memory_limit);
                m.varint(4, mp.file_offset);
                m.int64(5, mp.filename);
                m.int64(6, mp.build_id);
                m.bool(7, mp.has_functions);
                m.bool(8, mp.has_filenames);
                m.bool(9, mp.has_line_numbers);
                m.bool(10, mp.has_inline_frames);
            });
        }
        for loc in &self.location {
            w.message(4, &mut m, |m| {
                m.varint(1, loc.id);
                m.varint(2, loc.mapping_id);
                m.varint(3, loc.address);
                for line in &loc.line {
                    m.message(4, &mut inner, |lw| {
                        lw.varint(1, line.function_id);
                        lw.int64(2, line.line);
                        lw.int64(3, line.column);
                    });
                }
                m.bool(5, loc.is_folded);
            });
        }
        for f in &self.function {
            w.message(5, &mut m, |m| {
                m.varint(1, f.id);
                m.int64(2, f.name);
                m.int64(3, f.system_name);
                m.int64(4, f.filename);
                m.int64(5, f.start_line);
            });
        }
        for s in &self.string_table {
            w.bytes(6, s.as_bytes());
        }
        w.int64(7, self.drop_frames);
        w.int64(8, self.keep_frames);
        w.int64(9, self.time_nanos);
        w.int64(10, self.duration_nanos);
        if self.period_type != ValueType::default() {
            w.message(11, &mut m, |m| value_type(m, &self.period_type));
        }
        w.int64(12, self.period);
        w.packed(13, self.comment.iter().map(|&c| c as u64));
        w.int64(14, self.default_sample_type);
        w.int64(15, self.doc_url);
        w.buf
    }

    /// Writes the gzip-compressed encoding, the form pprof files take on disk.
    pub fn write_gzip(&self, out: impl Write) -> std::io::Result<()> {
        let mut gz = GzEncoder::new(out, Compression::default());
        gz.write_all(&self.encode())?;
        gz.finish()?.flush()
    }

    /// The gzip-compressed encoding in memory.
    pub fn encode_gzip(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_gzip(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }
}

fn value_type(m: &mut Writer, vt: &ValueType) {
    m.int64(1, vt.r#type);
    m.int64(2, vt.unit);
}
