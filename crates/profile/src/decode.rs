//! The parallel decoder.
//!
//! Decoding happens in two passes over the raw protobuf bytes:
//!
//! 1. **Index** (sequential, cheap): walk the top-level fields of `Profile`,
//!    decode the scalars, and record where each repeated message (sample,
//!    mapping, location, function, string) lies. Nothing inside those
//!    messages is read yet.
//! 2. **Decode** (parallel, rayon): strings, functions and locations are
//!    decoded in chunks, then samples, whose location ids are resolved to
//!    dense indexes on the fly. Strings borrow from the input.
//!
//! Validation follows pprof's `CheckValid`: `string_table[0]` is empty,
//! every string index is in range, ids are non-zero and unique, every sample
//! has one value per sample type, and sample locations and line functions
//! resolve. As in pprof, a location whose `mapping_id` names no mapping is
//! kept, without a mapping.

use std::borrow::Cow;
use std::ops::Range;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::parallel;
use crate::view::*;
use crate::wire::{Reader, LEN};

/// Where a length-delimited payload lies in the input.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

#[derive(Default)]
struct Index {
    samples: Vec<Span>,
    mappings: Vec<Span>,
    locations: Vec<Span>,
    functions: Vec<Span>,
    strings: Vec<Span>,
    sample_types: Vec<(i64, i64, usize)>,
    period_type: Option<(i64, i64, usize)>,
    scalars: Scalars,
}

#[derive(Default)]
struct Scalars {
    drop_frames: u64,
    keep_frames: u64,
    time_nanos: Option<u64>,
    duration_nanos: u64,
    period: u64,
    comments: Vec<u64>,
    default_sample_type: u64,
    doc_url: u64,
}

/// Messages per parallel task: large enough to amortise scheduling, small
/// enough that two threads share the work evenly.
fn chunk_size(items: usize) -> usize {
    let threads = crate::parallel::threads();
    (items / (threads * 16)).clamp(256, 16 * 1024)
}

impl<'a> ProfileView<'a> {
    /// Decodes raw (already decompressed) `profile.proto` bytes, in parallel on
    /// the current rayon pool.
    pub fn decode(data: &'a [u8]) -> Result<ProfileView<'a>> {
        let (mut view, samples) = ProfileView::decode_without_samples(data)?;
        view.sample_blocks = samples.decode_all(data)?;
        Ok(view)
    }

    /// Decodes everything but the samples, which are checked for their
    /// framing only and left to the returned [`SampleDecoder`]; the view has
    /// no sample blocks.
    pub fn decode_without_samples(data: &'a [u8]) -> Result<(ProfileView<'a>, SampleDecoder)> {
        if data.is_empty() {
            return Err(Error::Empty);
        }
        let index = index(data)?;
        let strings = decode_strings(data, &index.strings);
        if !strings.first().is_some_and(|s| s.is_empty()) {
            return Err(Error::Invalid(
                "string_table[0] must be the empty string".into(),
            ));
        }
        let string_count = strings.len();
        let check_string = |value: u64, what: &dyn Fn() -> String| -> Result<u32> {
            if value < string_count as u64 {
                Ok(value as u32)
            } else {
                Err(Error::Invalid(format!(
                    "{} is string index {value}, but the string table has {string_count} entries",
                    what()
                )))
            }
        };
        let value_type = |(t, u, at): (i64, i64, usize), what: &str| -> Result<ValueType> {
            check_string(t as u64, &|| format!("{what} type at byte {at}"))?;
            check_string(u as u64, &|| format!("{what} unit at byte {at}"))?;
            Ok(ValueType { r#type: t, unit: u })
        };
        let sample_types = index
            .sample_types
            .iter()
            .map(|&vt| value_type(vt, "sample_type"))
            .collect::<Result<Vec<_>>>()?;
        let period_type = index
            .period_type
            .map(|vt| value_type(vt, "period_type"))
            .transpose()?
            .unwrap_or_default();
        let s = &index.scalars;
        let scalar = |v: u64, name: &'static str| check_string(v, &|| name.to_string());

        let functions = decode_all(data, &index.functions, "function", |r| {
            decode_function(r, string_count)
        })?;
        let function_index = IdIndex::build(functions.iter().map(|f| f.id), "function")?;
        let mappings = decode_all(data, &index.mappings, "mapping", |r| {
            decode_mapping(r, string_count)
        })?;
        let mapping_index = IdIndex::build(mappings.iter().map(|m| m.id), "mapping")?;
        let (locations, lines) =
            decode_locations(data, &index.locations, &function_index, &mapping_index)?;
        let location_index = IdIndex::build(locations.iter().map(|l| l.id), "location")?;

        if !index.samples.is_empty() && sample_types.is_empty() {
            return Err(Error::Invalid(
                "the profile has samples but no sample types".into(),
            ));
        }
        let samples = SampleDecoder {
            chunk: chunk_size(index.samples.len()),
            spans: index.samples,
            values_per_sample: sample_types.len(),
            string_count,
            location_index,
        };

        let view = ProfileView {
            sample_types,
            sample_blocks: Vec::new(),
            mappings,
            locations,
            lines,
            functions,
            strings,
            drop_frames: scalar(s.drop_frames, "drop_frames")?,
            keep_frames: scalar(s.keep_frames, "keep_frames")?,
            time_nanos: s.time_nanos.unwrap_or(0) as i64,
            duration_nanos: s.duration_nanos as i64,
            period_type,
            period: s.period as i64,
            comments: s
                .comments
                .iter()
                .map(|&c| scalar(c, "comment"))
                .collect::<Result<_>>()?,
            default_sample_type: scalar(s.default_sample_type, "default_sample_type")?,
            doc_url: scalar(s.doc_url, "doc_url")?,
        };
        Ok((view, samples))
    }
}

/// The samples of a profile decoded by [`ProfileView::decode_without_samples`],
/// decoded on demand a chunk at a time into a block the caller reuses: a
/// reader that folds samples into sums as it goes never holds them all
/// decoded at once (for a million samples, 150 MB it neither writes nor
/// faults in). Errors are those [`ProfileView::decode`] gives for samples.
#[derive(Debug)]
pub struct SampleDecoder {
    spans: Vec<Span>,
    /// Samples per chunk.
    chunk: usize,
    values_per_sample: usize,
    string_count: usize,
    location_index: IdIndex,
}

impl SampleDecoder {
    /// Number of samples.
    pub fn sample_count(&self) -> usize {
        self.spans.len()
    }

    /// Number of chunks (of the size [`ProfileView::decode`] decodes in
    /// parallel).
    pub fn chunk_count(&self) -> usize {
        self.spans.len().div_ceil(self.chunk)
    }

    /// Samples in chunk `k`.
    pub fn chunk_len(&self, k: usize) -> usize {
        self.chunk_range(k).len()
    }

    fn chunk_range(&self, k: usize) -> Range<usize> {
        let start = k.saturating_mul(self.chunk).min(self.spans.len());
        start..start.saturating_add(self.chunk).min(self.spans.len())
    }

    fn context(&self) -> SampleContext<'_> {
        SampleContext {
            values_per_sample: self.values_per_sample,
            string_count: self.string_count,
            location_index: &self.location_index,
        }
    }

    /// Decodes chunk `k` (the `k`th run of samples, [`chunk_len`] of them)
    /// of `data`, the bytes this decoder was made from, into `block`,
    /// replacing what it held but keeping its memory.
    ///
    /// [`chunk_len`]: SampleDecoder::chunk_len
    pub fn decode_chunk(&self, data: &[u8], k: usize, block: &mut SampleBlock) -> Result<()> {
        let range = self.chunk_range(k);
        let first = range.start;
        block.reset(self.values_per_sample);
        decode_samples_into(
            data,
            self.spans[range]
                .iter()
                .enumerate()
                .map(|(i, s)| (first + i, *s)),
            &self.context(),
            block,
        )
    }

    /// Decodes the samples at `indexes` (in that order; out-of-range ones
    /// skipped) into `block`, replacing what it held: a few samples drawn
    /// from the whole profile, without decoding the rest.
    pub fn decode_some(
        &self,
        data: &[u8],
        indexes: impl IntoIterator<Item = usize>,
        block: &mut SampleBlock,
    ) -> Result<()> {
        block.reset(self.values_per_sample);
        let spans: Vec<(usize, Span)> = indexes
            .into_iter()
            .filter_map(|i| self.spans.get(i).map(|s| (i, *s)))
            .collect();
        decode_samples_into(data, spans.into_iter(), &self.context(), block)
    }

    /// Every sample, in parallel, in blocks of a chunk each.
    pub fn decode_all(&self, data: &[u8]) -> Result<Vec<SampleBlock>> {
        let blocks = parallel::map_chunks(&self.spans, self.chunk, |first, spans| {
            let mut block = SampleBlock::new(self.values_per_sample);
            decode_samples_into(
                data,
                spans.iter().enumerate().map(|(i, s)| (first + i, *s)),
                &self.context(),
                &mut block,
            )
            .map(|()| block)
        });
        first_error_in_order(blocks)
    }
}

/// Pass 1: the top-level fields.
fn index(data: &[u8]) -> Result<Index> {
    let mut index = Index::default();
    // Messages take at least two bytes; a bounded guess saves regrowing the
    // span lists for typical profiles (untouched capacity costs no memory).
    let guess = (data.len() / 64).min(1 << 20);
    index.samples.reserve(guess);
    index.locations.reserve(guess / 4);
    index.functions.reserve(guess / 4);
    index.strings.reserve(guess / 4);
    let mut r = Reader::new(data, 0, "profile");
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        let span = |r: &mut Reader, name: &'static str| -> Result<Span> {
            if wire != LEN {
                return Err(r.error(name, format!("expected a message, found wire type {wire}")));
            }
            let (payload, start) = r.bytes(name)?;
            Ok(Span {
                start,
                len: payload.len(),
            })
        };
        match field {
            1 => {
                let at = r.offset();
                let vt = value_type(r.message(wire, "sample_type", "sample_type")?)?;
                index.sample_types.push((vt.0, vt.1, at));
            }
            2 => index.samples.push(span(&mut r, "sample")?),
            3 => index.mappings.push(span(&mut r, "mapping")?),
            4 => index.locations.push(span(&mut r, "location")?),
            5 => index.functions.push(span(&mut r, "function")?),
            6 => index.strings.push(span(&mut r, "string_table")?),
            7 => index.scalars.drop_frames = r.expect_varint(wire, "drop_frames")?,
            8 => index.scalars.keep_frames = r.expect_varint(wire, "keep_frames")?,
            9 => {
                let at = r.offset();
                let t = r.expect_varint(wire, "time_nanos")?;
                if index.scalars.time_nanos.replace(t).is_some() {
                    return Err(Error::Malformed {
                        offset: at,
                        field: "profile.time_nanos".into(),
                        detail: "a second time_nanos: concatenated profiles".into(),
                    });
                }
            }
            10 => index.scalars.duration_nanos = r.expect_varint(wire, "duration_nanos")?,
            11 => {
                let at = r.offset();
                let vt = value_type(r.message(wire, "period_type", "period_type")?)?;
                index.period_type = Some((vt.0, vt.1, at));
            }
            12 => index.scalars.period = r.expect_varint(wire, "period")?,
            13 => {
                let comments = &mut index.scalars.comments;
                r.repeated_varint(wire, "comment", |c| {
                    comments.push(c);
                    Ok(())
                })?
            }
            14 => {
                index.scalars.default_sample_type = r.expect_varint(wire, "default_sample_type")?
            }
            15 => index.scalars.doc_url = r.expect_varint(wire, "doc_url")?,
            _ => r.skip(wire)?,
        }
    }
    Ok(index)
}

fn value_type(mut r: Reader) -> Result<(i64, i64)> {
    let (mut t, mut u) = (0, 0);
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => t = r.expect_varint(wire, "type")? as i64,
            2 => u = r.expect_varint(wire, "unit")? as i64,
            _ => r.skip(wire)?,
        }
    }
    Ok((t, u))
}

fn decode_strings<'a>(data: &'a [u8], spans: &[Span]) -> Vec<Cow<'a, str>> {
    // Go's pprof accepts any bytes as a string; invalid UTF-8 is replaced
    // (copying only those strings) rather than rejected.
    // An indexed collect writes each string straight into its slot.
    parallel::map_items(spans, 4096, |span| {
        let bytes = &data[span.range()];
        // `from_utf8` checks ASCII a word at a time; the lossy reader goes
        // byte by byte, so it only sees the strings that need it.
        match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        }
    })
}

/// The chunks' results, or the error of the first failing chunk in input
/// order. (Collecting a parallel iterator straight into a `Result` keeps
/// whichever error a thread hit first, so the message for an input with
/// several faults would change from run to run.)
fn first_error_in_order<T>(chunks: Vec<Result<T>>) -> Result<Vec<T>> {
    chunks.into_iter().collect()
}

/// Decodes every message of one kind in parallel chunks.
fn decode_all<T: Send + Default>(
    data: &[u8],
    spans: &[Span],
    message: &'static str,
    decode: impl Fn(Reader) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let chunk = chunk_size(spans.len());
    // Decoded in place, chunk by chunk: no per-chunk vectors to copy.
    let mut out: Vec<T> = Vec::with_capacity(spans.len());
    out.resize_with(spans.len(), T::default);
    let results: Vec<Result<()>> =
        parallel::zip_chunks_mut(&mut out, spans, chunk, |slots, spans| {
            for (slot, span) in slots.iter_mut().zip(spans) {
                *slot = decode(Reader::new(&data[span.range()], span.start, message))?;
            }
            Ok(())
        });
    first_error_in_order(results)?;
    Ok(out)
}

fn string_field(r: &Reader, value: u64, field: &'static str, string_count: usize) -> Result<u32> {
    if value < string_count as u64 {
        Ok(value as u32)
    } else {
        Err(r.error(field, format!("string index {value} is out of range (the string table has {string_count} entries)")))
    }
}

fn decode_function(mut r: Reader, string_count: usize) -> Result<FunctionView> {
    let mut f = FunctionView::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => f.id = r.expect_varint(wire, "id")?,
            2 => {
                let v = r.expect_varint(wire, "name")?;
                f.name = string_field(&r, v, "name", string_count)?
            }
            3 => {
                let v = r.expect_varint(wire, "system_name")?;
                f.system_name = string_field(&r, v, "system_name", string_count)?
            }
            4 => {
                let v = r.expect_varint(wire, "filename")?;
                f.filename = string_field(&r, v, "filename", string_count)?
            }
            5 => f.start_line = r.expect_varint(wire, "start_line")? as i64,
            _ => r.skip(wire)?,
        }
    }
    Ok(f)
}

fn decode_mapping(mut r: Reader, string_count: usize) -> Result<MappingView> {
    let mut m = MappingView::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => m.id = r.expect_varint(wire, "id")?,
            2 => m.memory_start = r.expect_varint(wire, "memory_start")?,
            3 => m.memory_limit = r.expect_varint(wire, "memory_limit")?,
            4 => m.file_offset = r.expect_varint(wire, "file_offset")?,
            5 => {
                let v = r.expect_varint(wire, "filename")?;
                m.filename = string_field(&r, v, "filename", string_count)?
            }
            6 => {
                let v = r.expect_varint(wire, "build_id")?;
                m.build_id = string_field(&r, v, "build_id", string_count)?
            }
            7 => m.has_functions = r.expect_varint(wire, "has_functions")? != 0,
            8 => m.has_filenames = r.expect_varint(wire, "has_filenames")? != 0,
            9 => m.has_line_numbers = r.expect_varint(wire, "has_line_numbers")? != 0,
            10 => m.has_inline_frames = r.expect_varint(wire, "has_inline_frames")? != 0,
            _ => r.skip(wire)?,
        }
    }
    Ok(m)
}

fn decode_locations(
    data: &[u8],
    spans: &[Span],
    functions: &IdIndex,
    mappings: &IdIndex,
) -> Result<(Vec<LocationView>, Vec<LineView>)> {
    let chunk = chunk_size(spans.len());
    let parts: Vec<Result<(Vec<LocationView>, Vec<LineView>)>> =
        parallel::map_chunks(spans, chunk, |_, spans| {
            let mut locations = Vec::with_capacity(spans.len());
            let mut lines = Vec::with_capacity(spans.len());
            for span in spans {
                let mut r = Reader::new(&data[span.range()], span.start, "location");
                let mut loc = LocationView::default();
                let first_line = lines.len();
                while !r.is_empty() {
                    let (field, wire) = r.key()?;
                    match field {
                        1 => loc.id = r.expect_varint(wire, "id")?,
                        2 => loc.mapping_id = r.expect_varint(wire, "mapping_id")?,
                        3 => loc.address = r.expect_varint(wire, "address")?,
                        4 => {
                            let mut lr = r.message(wire, "line", "line")?;
                            let mut line = LineView::default();
                            let mut function_id = 0;
                            while !lr.is_empty() {
                                let (field, wire) = lr.key()?;
                                match field {
                                    1 => function_id = lr.expect_varint(wire, "function_id")?,
                                    2 => line.line = lr.expect_varint(wire, "line")? as i64,
                                    3 => line.column = lr.expect_varint(wire, "column")? as i64,
                                    _ => lr.skip(wire)?,
                                }
                            }
                            line.function = functions.get(function_id).ok_or_else(|| {
                                r.error("line", format!("function id {function_id} does not exist"))
                            })?;
                            lines.push(line);
                        }
                        5 => loc.is_folded = r.expect_varint(wire, "is_folded")? != 0,
                        _ => r.skip(wire)?,
                    }
                }
                // Local line indexes for now; made global when the chunks are joined.
                loc.lines = (first_line as u32, lines.len() as u32);
                loc.mapping = mappings.get(loc.mapping_id);
                locations.push(loc);
            }
            Ok((locations, lines))
        });
    let parts = first_error_in_order(parts)?;

    let mut locations = Vec::with_capacity(spans.len());
    let mut lines = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
    for (locs, part_lines) in parts {
        let base = u32::try_from(lines.len())
            .map_err(|_| Error::Invalid("more than 2^32 location lines".into()))?;
        locations.extend(locs.into_iter().map(|mut l| {
            l.lines = (l.lines.0 + base, l.lines.1 + base);
            l
        }));
        lines.extend(part_lines);
    }
    Ok((locations, lines))
}

struct SampleContext<'i> {
    values_per_sample: usize,
    string_count: usize,
    location_index: &'i IdIndex,
}

/// Appends one sample's packed location ids to `out` as location indexes;
/// returns the first id that names no location (skipped). This loop holds
/// most of a large profile's decoding: an id of up to three bytes (below
/// 2,097,152: the locations of all but the largest profiles) is read from a
/// 4-byte word with no branch on its length, whose outcome a mix of two-
/// and three-byte ids would make unpredictable; longer ones, and the last
/// bytes of the field, go through [`Reader::varint`]. Indexes gather in a
/// small buffer copied out 64 at a time.
fn push_location_ids(
    payload: &[u8],
    at: usize,
    index: &IdIndex,
    out: &mut Vec<u32>,
) -> Result<Option<u64>> {
    // Every id takes at least a byte.
    out.reserve(payload.len());
    let spare = &mut out.spare_capacity_mut()[..payload.len()];
    let mut written = 0;
    let mut pos = 0;
    let mut missing = None;
    while pos < payload.len() {
        let word = payload
            .get(pos..pos + 4)
            .map_or(u32::MAX, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        let id = if word & 0x80 == 0 {
            pos += 1;
            u64::from(word & 0x7f)
        } else if word & 0x8000 == 0 {
            pos += 2;
            u64::from(word & 0x7f | word >> 1 & 0x3f80)
        } else if word & 0x80_0000 == 0 {
            pos += 3;
            u64::from(word & 0x7f | word >> 1 & 0x3f80 | word >> 2 & 0x1f_c000)
        } else {
            // Four bytes or more, or the field's last three.
            let mut r = Reader::new(&payload[pos..], at + pos, "sample");
            let id = r.varint("location_id")?;
            pos = r.offset() - at;
            id
        };
        match index.get(id) {
            Some(l) => {
                // Fewer ids than bytes: `written < pos <= payload.len()`.
                spare[written].write(l);
                written += 1;
            }
            None => missing = missing.or(Some(id)),
        }
    }
    let len = out.len() + written;
    // SAFETY: the first `written` elements of the spare capacity were
    // initialized above, and `reserve` made room for them.
    unsafe { out.set_len(len) };
    Ok(missing)
}

fn decode_samples_into(
    data: &[u8],
    spans: impl ExactSizeIterator<Item = (usize, Span)> + Clone,
    cx: &SampleContext,
    block: &mut SampleBlock,
) -> Result<()> {
    block.location_offsets.reserve(spans.len());
    // Every value takes at least one byte of input, so never reserve more than
    // the chunk's bytes could hold: the sample-type count comes from elsewhere
    // in the input, and a few KB of gzip could otherwise ask for terabytes.
    let payload: usize = spans.clone().map(|(_, s)| s.len).sum();
    let values = spans.len().saturating_mul(cx.values_per_sample);
    block.values.reserve(values.min(payload));
    // Each location id takes at least one byte too. Reserving the bound up
    // front avoids copying as the vector grows; pages never written are
    // never touched, so the unused part costs address space, not memory.
    block
        .locations
        .reserve(payload.saturating_sub(values.min(payload)));
    block.label_offsets.reserve(spans.len());
    for (sample, span) in spans {
        let bytes = data.get(span.range()).ok_or_else(|| {
            Error::Invalid(format!(
                "sample {sample} lies past the end of the input (not the bytes it was indexed in)"
            ))
        })?;
        let mut r = Reader::new(bytes, span.start, "sample");
        let values_before = block.values.len();
        while !r.is_empty() {
            let (field, wire) = r.key()?;
            match field {
                1 => {
                    let (index, locations) = (cx.location_index, &mut block.locations);
                    let missing = if wire == LEN {
                        let (payload, at) = r.bytes("location_id")?;
                        push_location_ids(payload, at, index, locations)?
                    } else {
                        let mut missing = None;
                        r.repeated_varint(wire, "location_id", |id| {
                            match index.get(id) {
                                Some(l) => locations.push(l),
                                None => missing = missing.or(Some(id)),
                            }
                            Ok(())
                        })?;
                        missing
                    };
                    if let Some(id) = missing {
                        return Err(Error::Invalid(format!(
                            "sample {sample} (at byte {}) references location id {id}, which does not exist",
                            span.start
                        )));
                    }
                }
                2 => {
                    let values = &mut block.values;
                    r.repeated_varint(wire, "value", |v| {
                        values.push(v as i64);
                        Ok(())
                    })?
                }
                3 => {
                    let mut lr = r.message(wire, "label", "label")?;
                    let mut label = LabelView::default();
                    while !lr.is_empty() {
                        let (field, wire) = lr.key()?;
                        match field {
                            1 => {
                                let v = lr.expect_varint(wire, "key")?;
                                label.key = string_field(&lr, v, "key", cx.string_count)?
                            }
                            2 => {
                                let v = lr.expect_varint(wire, "str")?;
                                label.str = string_field(&lr, v, "str", cx.string_count)?
                            }
                            3 => label.num = lr.expect_varint(wire, "num")? as i64,
                            4 => {
                                let v = lr.expect_varint(wire, "num_unit")?;
                                label.num_unit = string_field(&lr, v, "num_unit", cx.string_count)?
                            }
                            _ => lr.skip(wire)?,
                        }
                    }
                    block.labels.push(label);
                }
                _ => r.skip(wire)?,
            }
        }
        let found = block.values.len() - values_before;
        if found != cx.values_per_sample {
            return Err(Error::Invalid(format!(
                "sample {sample} (at byte {}) has {found} values, but the profile has {} sample types",
                span.start,
                cx.values_per_sample
            )));
        }
        let too_many = || Error::Invalid("more than 2^32 sample locations in one block".into());
        block
            .location_offsets
            .push(u32::try_from(block.locations.len()).map_err(|_| too_many())?);
        block
            .label_offsets
            .push(u32::try_from(block.labels.len()).map_err(|_| too_many())?);
    }
    Ok(())
}

/// Maps proto ids to dense indexes. Producers almost always number ids
/// 1..=n in order, which makes the lookup a subtraction.
#[derive(Debug)]
pub(crate) enum IdIndex {
    Sequential(usize),
    Map(FxHashMap<u64, u32>),
}

impl IdIndex {
    fn build(ids: impl ExactSizeIterator<Item = u64> + Clone, what: &str) -> Result<IdIndex> {
        let n = ids.len();
        if u32::try_from(n).is_err() {
            return Err(Error::Invalid(format!("more than 2^32 {what}s")));
        }
        if ids.clone().enumerate().all(|(i, id)| id == i as u64 + 1) {
            return Ok(IdIndex::Sequential(n));
        }
        let mut map = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (i, id) in ids.enumerate() {
            if id == 0 {
                return Err(Error::Invalid(format!("{what} {i} has the reserved id 0")));
            }
            if map.insert(id, i as u32).is_some() {
                return Err(Error::Invalid(format!("more than one {what} has id {id}")));
            }
        }
        Ok(IdIndex::Map(map))
    }

    #[inline]
    fn get(&self, id: u64) -> Option<u32> {
        match self {
            IdIndex::Sequential(n) => (id.wrapping_sub(1) < *n as u64).then(|| (id - 1) as u32),
            IdIndex::Map(map) => map.get(&id).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Writer;

    /// Ids of every varint length from one to ten bytes, in every position
    /// (the word-at-a-time path needs four bytes left; the last ones of a
    /// field take the general one), read as the general packed reader
    /// reads them.
    #[test]
    fn packed_location_ids_of_every_length_read_as_the_general_reader_does() {
        let lengths: Vec<u64> = (0..10).map(|k| 1u64 << (7 * k)).collect();
        let mut ids: Vec<u64> = Vec::new();
        for (i, &a) in lengths.iter().enumerate() {
            for &b in &lengths[i..] {
                ids.extend([a, b, a + 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152]);
            }
        }
        let ids: Vec<u64> = ids.into_iter().map(|id| id.max(1)).collect();
        let map = IdIndex::Map(
            ids.iter()
                .enumerate()
                .map(|(i, &id)| (id, i as u32 % 7))
                .collect(),
        );
        let sequential = IdIndex::Sequential(2_097_152);
        for cut in [ids.len(), 1, 2, 3, 4, 5, 17] {
            for index in [&map, &sequential] {
                let mut w = Writer::default();
                for &id in &ids[..cut] {
                    w.raw_varint(id);
                }
                let mut got = vec![99];
                let missing = push_location_ids(&w.buf, 1000, index, &mut got).unwrap();
                let (mut want, mut want_missing) = (vec![99], None);
                let mut r = Reader::new(&w.buf, 1000, "sample");
                while !r.is_empty() {
                    let id = r.varint("location_id").unwrap();
                    match index.get(id) {
                        Some(l) => want.push(l),
                        None => want_missing = want_missing.or(Some(id)),
                    }
                }
                assert_eq!(got, want, "first {cut} ids");
                assert_eq!(missing, want_missing, "first {cut} ids");
            }
        }
    }

    #[test]
    fn a_truncated_packed_location_id_is_the_general_readers_error() {
        let mut w = Writer::default();
        for id in [3, 200, 70_000] {
            w.raw_varint(id);
        }
        let cut = &w.buf[..w.buf.len() - 1];
        let err = push_location_ids(cut, 1000, &IdIndex::Sequential(100_000), &mut Vec::new())
            .unwrap_err()
            .to_string();
        let mut r = Reader::new(cut, 1000, "sample");
        let want = loop {
            if let Err(e) = r.varint("location_id") {
                break e.to_string();
            }
        };
        assert_eq!(err, want);
        assert!(err.contains("truncated varint"), "{err}");
    }
}
