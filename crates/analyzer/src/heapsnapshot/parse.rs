//! Reading a `.heapsnapshot` into columns.
//!
//! The file is one JSON object; almost all of it is two flat integer
//! arrays (`nodes`, `edges`) and the string table. The top level is walked
//! once without building a document: `snapshot` (small) goes to serde_json,
//! `strings` to the pull reader of `input/node/json.rs`, other keys are
//! skipped, and the two integer arrays are only located (they hold no
//! strings or brackets, so the first `]` ends them). Each array is then
//! tokenized in parallel: a first pass counts commas per chunk, chunk
//! boundaries are moved to record boundaries (a multiple of the field
//! count), the columns are allocated once at their final size, and each
//! chunk writes its own rows. The arrays are parsed while the string table
//! is read on the calling thread.

use std::ops::Range;
use std::sync::Mutex;

use rayon::prelude::*;

use super::HeapSnapshotError as E;
use crate::input::node::json::{strip_bom, Reader};

/// A heap snapshot, column by column. Node `i` is the file's `i`-th node
/// (`to_node / node_fields`); edges are in the file's order, node `i`'s
/// being `first_edge[i]..first_edge[i + 1]`.
pub(crate) struct Snapshot {
    pub node_type_names: Vec<String>,
    pub edge_type_names: Vec<String>,
    pub node_type: Vec<u32>,
    pub node_name: Vec<u32>,
    pub node_id: Vec<u32>,
    pub self_size: Vec<u32>,
    /// `node_count + 1` entries.
    pub first_edge: Vec<u32>,
    pub edge_type: Vec<u32>,
    /// A string index, or the element/hidden edge's index.
    pub edge_name: Vec<u32>,
    /// The target node's ordinal (not the file's offset).
    pub edge_to: Vec<u32>,
    pub strings: Strings,
    /// Whether a node is a detached embedder (DOM) object, after memlab's
    /// propagation (see [`propagate_detachedness`]); empty when the file
    /// has no `detachedness` field.
    pub detached: Vec<bool>,
}

/// The string table: one buffer and the end of each string in it.
#[derive(Default)]
pub(crate) struct Strings {
    text: String,
    ends: Vec<usize>,
}

impl Strings {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl Snapshot {
    pub fn node_count(&self) -> usize {
        self.node_id.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edge_to.len()
    }

    pub fn edges(&self, node: usize) -> Range<usize> {
        self.first_edge[node] as usize..self.first_edge[node + 1] as usize
    }

    pub fn node_type_name(&self, node: usize) -> &str {
        &self.node_type_names[self.node_type[node] as usize]
    }

    pub fn name(&self, node: usize) -> &str {
        self.strings.get(self.node_name[node])
    }

    pub fn is_detached(&self, node: usize) -> bool {
        self.detached.get(node).copied().unwrap_or(false)
    }

    /// The index of a node or edge type by name, if the file has it.
    pub fn node_type_index(&self, name: &str) -> Option<u32> {
        position(&self.node_type_names, name)
    }

    pub fn edge_type_index(&self, name: &str) -> Option<u32> {
        position(&self.edge_type_names, name)
    }

    /// Whether an edge's `name_or_index` is an index rather than a string
    /// (element and hidden edges).
    pub fn edge_name_is_index(&self, edge_type: u32) -> bool {
        matches!(
            self.edge_type_names[edge_type as usize].as_str(),
            "element" | "hidden"
        )
    }

    /// The edge's name as DevTools writes it in a retaining path:
    /// `[3]` for an element, the property or variable name otherwise.
    pub fn edge_label(&self, edge: usize) -> String {
        let t = self.edge_type[edge];
        let n = self.edge_name[edge];
        if self.edge_name_is_index(t) {
            format!("[{n}]")
        } else {
            self.strings.get(n).to_string()
        }
    }
}

fn position(names: &[String], name: &str) -> Option<u32> {
    names.iter().position(|n| n == name).map(|i| i as u32)
}

/// `snapshot.meta`, as V8 writes it.
#[derive(serde::Deserialize)]
struct Header {
    meta: Meta,
}

#[derive(serde::Deserialize)]
struct Meta {
    node_fields: Vec<String>,
    node_types: Vec<serde_json::Value>,
    edge_fields: Vec<String>,
    edge_types: Vec<serde_json::Value>,
}

/// Where each field the analysis needs sits in a record.
struct Layout {
    fields: usize,
    /// Offsets of the wanted fields, in the order the columns are returned.
    wanted: Vec<usize>,
    types: Vec<String>,
}

impl Meta {
    fn layout(
        fields: &[String],
        types: &[serde_json::Value],
        what: &'static str,
        wanted: &[&str],
    ) -> Result<Layout, E> {
        let offset = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                .ok_or_else(|| E::Meta(format!("{what}_fields has no `{name}`")))
        };
        let wanted = wanted
            .iter()
            .map(|w| offset(w))
            .collect::<Result<Vec<_>, _>>()?;
        let type_names = types
            .get(wanted[0])
            .and_then(|t| t.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                E::Meta(format!(
                    "{what}_types[{}] is not the list of {what} type names",
                    wanted[0]
                ))
            })?;
        if type_names.is_empty() || type_names.len() > 256 {
            return Err(E::Meta(format!(
                "{what}_types lists {} type names",
                type_names.len()
            )));
        }
        Ok(Layout {
            fields: fields.len(),
            wanted,
            types: type_names,
        })
    }
}

/// Reads and validates a snapshot.
pub(crate) fn parse(bytes: &[u8]) -> Result<Snapshot, E> {
    let bytes = strip_bom(bytes);
    let mut pos = skip_space(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return Err(E::Json("not a JSON object".into()));
    }
    pos += 1;
    let mut layouts: Option<(Layout, Layout)> = None;
    let (mut nodes_span, mut edges_span, mut strings) = (None, None, None);
    let nodes_out: Mutex<Option<Result<Vec<Vec<u32>>, E>>> = Mutex::new(None);
    let edges_out: Mutex<Option<Result<Vec<Vec<u32>>, E>>> = Mutex::new(None);
    let walked: Result<(), E> = rayon::scope(|scope| {
        let mut first = true;
        loop {
            pos = skip_space(bytes, pos);
            match bytes.get(pos) {
                None => return Err(truncated(pos)),
                Some(b'}') => break,
                Some(b',') if !first => pos = skip_space(bytes, pos + 1),
                Some(_) if first => {}
                Some(_) => return Err(at(pos, "expected `,` or `}` after a top-level value")),
            }
            first = false;
            match bytes.get(pos) {
                Some(b'"') => {}
                Some(_) => return Err(at(pos, "expected a key")),
                None => return Err(truncated(pos)),
            }
            let mut reader = Reader::new(&bytes[pos..]);
            let key = reader
                .string()
                .map_err(|e| at(pos, &format!("bad key: {}", e.what)))?
                .into_owned();
            pos = skip_space(bytes, pos + reader.position());
            match bytes.get(pos) {
                Some(b':') => pos = skip_space(bytes, pos + 1),
                Some(_) => return Err(at(pos, "expected `:`")),
                None => return Err(truncated(pos)),
            }
            match key.as_str() {
                "snapshot" => {
                    let len = skip(bytes, pos, "snapshot")?;
                    let header: Header = serde_json::from_slice(&bytes[pos..pos + len])
                        .map_err(|e| E::Meta(format!("in `snapshot`: {e}")))?;
                    let m = header.meta;
                    let mut nodes = Meta::layout(
                        &m.node_fields,
                        &m.node_types,
                        "node",
                        &["type", "name", "id", "self_size", "edge_count"],
                    )?;
                    // Newer V8 (Node 16+) writes each embedder node's state.
                    if let Some(d) = m.node_fields.iter().position(|f| f == "detachedness") {
                        nodes.wanted.push(d);
                    }
                    let edges = Meta::layout(
                        &m.edge_fields,
                        &m.edge_types,
                        "edge",
                        &["type", "name_or_index", "to_node"],
                    )?;
                    layouts = Some((nodes, edges));
                    pos += len;
                }
                "nodes" | "edges" => {
                    let span =
                        integer_array(bytes, pos, if key == "nodes" { "nodes" } else { "edges" })?;
                    pos = span.end + 1;
                    let is_nodes = key == "nodes";
                    if let Some((n, e)) = &layouts {
                        let (layout, out) = if is_nodes {
                            (n, &nodes_out)
                        } else {
                            (e, &edges_out)
                        };
                        let (fields, wanted) = (layout.fields, layout.wanted.clone());
                        let section = if is_nodes { "nodes" } else { "edges" };
                        scope.spawn(move |_| {
                            let r = parse_records(bytes, span, fields, &wanted, section);
                            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                        });
                    } else if is_nodes {
                        nodes_span = Some(span);
                    } else {
                        edges_span = Some(span);
                    }
                }
                "strings" => {
                    let (table, len) = read_strings(&bytes[pos..], pos)?;
                    strings = Some(table);
                    pos += len;
                }
                _ => pos += skip(bytes, pos, "a top-level value")?,
            }
        }
        Ok(())
    });
    walked?;
    let (node_layout, edge_layout) =
        layouts.ok_or_else(|| E::Meta("no `snapshot` with `meta`".into()))?;
    let take = |out: Mutex<Option<Result<Vec<Vec<u32>>, E>>>,
                span: Option<Range<usize>>,
                layout: &Layout,
                section: &'static str| {
        match out.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(r) => r,
            None => match span {
                Some(span) => parse_records(bytes, span, layout.fields, &layout.wanted, section),
                None => Err(E::Missing(section)),
            },
        }
    };
    let mut node_cols = take(nodes_out, nodes_span, &node_layout, "nodes")?;
    let mut edge_cols = take(edges_out, edges_span, &edge_layout, "edges")?;
    let strings = strings.ok_or(E::Missing("strings"))?;

    let edge_to = edge_cols.pop().unwrap_or_default();
    let edge_name = edge_cols.pop().unwrap_or_default();
    let edge_type = edge_cols.pop().unwrap_or_default();
    let detachedness = if node_cols.len() > 5 {
        node_cols.pop()
    } else {
        None
    };
    let edge_count = node_cols.pop().unwrap_or_default();
    let self_size = node_cols.pop().unwrap_or_default();
    let node_id = node_cols.pop().unwrap_or_default();
    let node_name = node_cols.pop().unwrap_or_default();
    let node_type = node_cols.pop().unwrap_or_default();
    let mut snapshot = Snapshot {
        node_type_names: node_layout.types,
        edge_type_names: edge_layout.types,
        node_type,
        node_name,
        node_id,
        self_size,
        first_edge: Vec::new(),
        edge_type,
        edge_name,
        edge_to,
        strings,
        detached: Vec::new(),
    };
    validate(&mut snapshot, edge_count, node_layout.fields)?;
    if let Some(states) = detachedness {
        snapshot.detached = propagate_detachedness(&snapshot, states, edge_layout.fields);
    }
    Ok(snapshot)
}

/// Which nodes memlab calls detached (and names `Detached …`). V8 writes a
/// state for each entry point into embedder objects (0 unknown, 1
/// attached, 2 detached); memlab (`HeapSnapshot._propagateDetachednessState`)
/// spreads it to the native nodes they reach: first the attached ones'
/// state, then the detached ones' to nodes still unknown, never through
/// non-native nodes. It means to skip hidden, invisible and weak edges but
/// looks their types up in `edge_fields` rather than in the edge type
/// names, so what it skips is the edge type whose index is the number of
/// edge fields (3 with V8's layout: `internal`); firewatch does the same,
/// to name nodes as memlab does (DevTools skips hidden and weak edges).
fn propagate_detachedness(s: &Snapshot, mut state: Vec<u32>, edge_fields: usize) -> Vec<bool> {
    const ATTACHED: u32 = 1;
    const DETACHED: u32 = 2;
    let native = s.node_type_index("native");
    let skipped = edge_fields as u32;
    let n = s.node_count();
    let mut visited = vec![false; n];
    let (mut attached, mut detached) = (Vec::new(), Vec::new());
    let mut set = |node: usize,
                   value: u32,
                   state: &mut [u32],
                   attached: &mut Vec<usize>,
                   detached: &mut Vec<usize>| {
        if visited[node] {
            return;
        }
        visited[node] = true;
        if Some(s.node_type[node]) != native {
            return;
        }
        state[node] = value;
        match value {
            ATTACHED => attached.push(node),
            DETACHED => detached.push(node),
            _ => {}
        }
    };
    for i in 0..n {
        if state[i] != 0 {
            let v = state[i];
            set(i, v, &mut state, &mut attached, &mut detached);
        }
    }
    while let Some(v) = attached.pop() {
        for e in s.edges(v) {
            if s.edge_type[e] != skipped {
                set(
                    s.edge_to[e] as usize,
                    ATTACHED,
                    &mut state,
                    &mut attached,
                    &mut detached,
                );
            }
        }
    }
    while let Some(v) = detached.pop() {
        if state[v] == ATTACHED {
            continue;
        }
        for e in s.edges(v) {
            if s.edge_type[e] != skipped {
                set(
                    s.edge_to[e] as usize,
                    DETACHED,
                    &mut state,
                    &mut attached,
                    &mut detached,
                );
            }
        }
    }
    state.into_iter().map(|d| d == DETACHED).collect()
}

fn skip_space(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

fn at(pos: usize, what: &str) -> E {
    E::Json(format!("{what} at byte {pos}"))
}

fn truncated(pos: usize) -> E {
    E::Json(format!(
        "unexpected end of the file at byte {pos} (truncated?)"
    ))
}

/// A reader's error, saying so when the file ends too soon.
fn hint(e: crate::input::node::json::JsonError) -> String {
    if e.what.contains("end of the file") || e.what.contains("unterminated") {
        format!("{e} (the file is truncated)")
    } else {
        e.to_string()
    }
}

/// Length of the JSON value at `pos`.
fn skip(bytes: &[u8], pos: usize, what: &str) -> Result<usize, E> {
    let mut reader = Reader::new(&bytes[pos..]);
    reader
        .skip_value()
        .map_err(|e| E::Json(format!("in {what} starting at byte {pos}: {}", hint(e))))?;
    Ok(reader.position())
}

/// The bytes between the brackets of the integer array at `pos`.
fn integer_array(bytes: &[u8], pos: usize, section: &'static str) -> Result<Range<usize>, E> {
    if bytes.get(pos) != Some(&b'[') {
        return Err(E::Json(format!("`{section}` is not an array (byte {pos})")));
    }
    let start = pos + 1;
    match memchr::memchr(b']', &bytes[start..]) {
        Some(len) => Ok(start..start + len),
        None => Err(E::Json(format!(
            "`{section}` has no closing `]`: the file is truncated"
        ))),
    }
}

/// The string table at the start of `bytes` (which is at `base` in the
/// file), and its length in bytes. A string without escapes is copied as
/// it is, the text checked to be UTF-8 once at the end; the others go to
/// the JSON reader.
fn read_strings(bytes: &[u8], base: usize) -> Result<(Strings, usize), E> {
    let err =
        |at: usize, what: &str| E::Json(format!("in `strings` at byte {}: {what}", base + at));
    let end_of_file = |at: usize| err(at, "unexpected end of the file (the file is truncated)");
    let mut pos = skip_space(bytes, 0);
    match bytes.get(pos) {
        Some(b'[') => pos = skip_space(bytes, pos + 1),
        Some(_) => return Err(err(pos, "expected an array")),
        None => return Err(end_of_file(pos)),
    }
    // V8 writes `strings` last: the rest of the file is about its size.
    let mut text: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut ends: Vec<usize> = Vec::with_capacity(bytes.len() / 16);
    let done = |text: Vec<u8>, ends: Vec<usize>, len: usize| match String::from_utf8(text) {
        Ok(text) => Ok((Strings { text, ends }, len)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            Err(err(
                len,
                &format!(
                    "string {} is not valid UTF-8",
                    ends.partition_point(|&end| end <= at)
                ),
            ))
        }
    };
    if bytes.get(pos) == Some(&b']') {
        return done(text, ends, pos + 1);
    }
    loop {
        match bytes.get(pos) {
            Some(b'"') => {}
            Some(_) => return Err(err(pos, "expected a string")),
            None => return Err(end_of_file(pos)),
        }
        let body = pos + 1;
        // The first quote, backslash or control character.
        let end = bytes[body..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .map(|i| body + i);
        match end {
            Some(end) if bytes[end] == b'"' => {
                text.extend_from_slice(&bytes[body..end]);
                pos = end + 1;
            }
            _ => {
                let mut reader = Reader::new(&bytes[pos..]);
                let s = reader.string().map_err(|e| err(pos, &hint(e)))?;
                text.extend_from_slice(s.as_bytes());
                pos += reader.position();
            }
        }
        ends.push(text.len());
        pos = skip_space(bytes, pos);
        match bytes.get(pos) {
            Some(b',') => pos = skip_space(bytes, pos + 1),
            Some(b']') => return done(text, ends, pos + 1),
            Some(_) => return Err(err(pos, "expected `,` or `]`")),
            None => return Err(end_of_file(pos)),
        }
    }
}

/// Chunks of at least this many bytes are tokenized in parallel.
const MIN_CHUNK: usize = 256 * 1024;

const NO_COLUMN: usize = usize::MAX;

/// Tokenizes the unsigned integers of `bytes[span]` (records of `fields`
/// values) into one column per `wanted` field.
fn parse_records(
    bytes: &[u8],
    span: Range<usize>,
    fields: usize,
    wanted: &[usize],
    section: &'static str,
) -> Result<Vec<Vec<u32>>, E> {
    let text = &bytes[span.clone()];
    let base = span.start;
    if text.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(vec![Vec::new(); wanted.len()]);
    }
    // Pass 1: commas per rough chunk.
    let pieces = (rayon::current_num_threads() * 4)
        .min(text.len() / MIN_CHUNK)
        .max(1);
    let rough: Vec<usize> = (0..=pieces).map(|i| text.len() * i / pieces).collect();
    let commas: Vec<usize> = rough
        .par_windows(2)
        .map(|w| count_commas(&text[w[0]..w[1]]))
        .collect();
    let values = commas.iter().sum::<usize>() + 1;
    if values % fields != 0 {
        return Err(E::Shape(format!(
            "`{section}` holds {values} values, not a multiple of its {fields} fields"
        )));
    }
    let records = values / fields;
    if records > u32::MAX as usize {
        return Err(E::Shape(format!(
            "`{section}` holds more than 2^32 records"
        )));
    }
    // Move each boundary forward to just after the comma that ends a record.
    let mut bounds = vec![(0usize, 0usize)]; // (byte, first record)
    let mut before = 0usize;
    for (i, &c) in commas.iter().enumerate().take(pieces - 1) {
        before += c;
        let target = (before / fields + 1) * fields; // comma number to stop after
        let (mut at, mut seen) = (rough[i + 1], before);
        while seen < target && at < text.len() {
            if text[at] == b',' {
                seen += 1;
            }
            at += 1;
        }
        if seen == target && at > bounds.last().map_or(0, |b| b.0) {
            bounds.push((at, target / fields));
        }
    }
    bounds.push((text.len(), records));
    bounds.dedup_by_key(|b| b.1);
    // Columns at their final size, split per chunk.
    // One spare element each: `edge_count` becomes `first_edge` in place,
    // one longer.
    let mut columns: Vec<Vec<u32>> = wanted
        .iter()
        .map(|_| {
            let mut column = vec![0u32; records + 1];
            column.truncate(records);
            column
        })
        .collect();
    let mut slices: Vec<Vec<&mut [u32]>> = (0..bounds.len() - 1).map(|_| Vec::new()).collect();
    for column in columns.iter_mut() {
        let mut rest: &mut [u32] = column;
        for (k, w) in bounds.windows(2).enumerate() {
            let (head, tail) = rest.split_at_mut(w[1].1 - w[0].1);
            slices[k].push(head);
            rest = tail;
        }
    }
    // Which column each field goes to.
    let mut slot = vec![NO_COLUMN; fields];
    for (c, &f) in wanted.iter().enumerate() {
        slot[f] = c;
    }
    let mut chunks: Vec<Chunk> = bounds
        .windows(2)
        .zip(slices)
        .map(|(w, out)| {
            let records = w[1].1 - w[0].1;
            Chunk {
                text: &text[w[0].0..w[1].0],
                base: base + w[0].0,
                // The last chunk's last value has no comma after it.
                full: if w[1].0 == text.len() {
                    records.saturating_sub(1)
                } else {
                    records
                },
                records,
                out,
            }
        })
        .collect();
    chunks
        .par_iter_mut()
        .try_for_each(|chunk| tokenize(chunk, &slot, section))?;
    Ok(columns)
}

/// Commas in `bytes`, 64 bytes at a time: a block's count fits in a `u8`,
/// which lets the compiler compare and add 32 bytes per instruction.
fn count_commas(bytes: &[u8]) -> usize {
    let mut blocks = bytes.chunks_exact(64);
    let mut count = 0usize;
    for block in &mut blocks {
        let in_block: u8 = block.iter().map(|&b| u8::from(b == b',')).sum();
        count += usize::from(in_block);
    }
    count + blocks.remainder().iter().filter(|&&b| b == b',').count()
}

/// A chunk of whole records and the rows it fills.
struct Chunk<'t, 'o> {
    text: &'t [u8],
    /// Where `text` starts in the file, for messages.
    base: usize,
    /// Records whose every value has a comma after it: all but the last
    /// chunk's last.
    full: usize,
    records: usize,
    out: Vec<&'o mut [u32]>,
}

impl Chunk<'_, '_> {
    fn error(&self, (at, what): (usize, &str), section: &str) -> E {
        E::Json(format!("in `{section}` at byte {}: {what}", self.base + at))
    }
}

/// Values read before they are copied to their columns: a few kilobytes,
/// so the rows stay in the L1 cache between the two.
const BATCH_VALUES: usize = 2048;

/// Parses a chunk into its rows: `slot[f]` is the column of field `f`, or
/// [`NO_COLUMN`]. Values are read in file order into a small row buffer,
/// then each wanted field is copied to its column: the reading loop has no
/// per-field work, and where a value ends comes from [`Commas`], not from
/// the previous value's digits, so consecutive values are decoded
/// independently (the processor overlaps them) instead of as one chain of
/// dependent loads.
fn tokenize(chunk: &mut Chunk, slot: &[usize], section: &str) -> Result<(), E> {
    let text = chunk.text;
    let fields = slot.len();
    let per_batch = (BATCH_VALUES / fields).max(1);
    let mut rows = vec![0u32; per_batch.min(chunk.records) * fields];
    let mut commas = Commas::new(text);
    let mut at = 0usize;
    let mut record = 0usize;
    while record < chunk.records {
        let n = (chunk.records - record).min(per_batch);
        let values = &mut rows[..n * fields];
        // The last chunk's last value has no comma after it.
        let ends_array = record + n > chunk.full;
        let (before_comma, last) = values.split_at_mut(values.len() - usize::from(ends_array));
        at = read_values(text, at, &mut commas, before_comma)
            .map_err(|e| chunk.error(e, section))?;
        if let Some(v) = last.first_mut() {
            let (x, next) = value(text, at, true).map_err(|e| chunk.error(e, section))?;
            *v = x;
            at = next;
        }
        for (f, &c) in slot.iter().enumerate() {
            if c != NO_COLUMN {
                let column = &mut chunk.out[c][record..record + n];
                for (to, row) in column.iter_mut().zip(values.chunks_exact(fields)) {
                    *to = row[f];
                }
            }
        }
        record += n;
    }
    if at != text.len() {
        return Err(chunk.error((at, "more values than counted"), section));
    }
    Ok(())
}

/// Reads `out.len()` values, each followed by a comma, from `text[at..]`:
/// the position after the last comma. Kept out of line, with the comma
/// mask in locals, so that its few live values stay in registers.
#[inline(never)]
fn read_values(
    text: &[u8],
    mut at: usize,
    commas: &mut Commas,
    out: &mut [u32],
) -> Result<usize, (usize, &'static str)> {
    let Commas {
        mut block,
        mut mask,
    } = *commas;
    for v in out {
        if mask == 0 {
            (block, mask) = next_commas(text, block);
        }
        // No comma left (which the count rules out) fails `digits`.
        let end = if mask == 0 {
            usize::MAX
        } else {
            block + mask.trailing_zeros() as usize
        };
        mask &= mask.wrapping_sub(1);
        match digits(text, at, end) {
            Some(x) => {
                *v = x;
                at = end + 1;
            }
            None => {
                let (x, next) = value(text, at, false)?;
                *v = x;
                at = next;
            }
        }
    }
    *commas = Commas { block, mask };
    Ok(at)
}

/// Where the commas of a text are, found 64 bytes at a time as a bit mask.
#[derive(Clone, Copy)]
struct Commas {
    /// Where the block of `mask` starts.
    block: usize,
    /// The commas of the block not yet read, one bit per byte.
    mask: u64,
}

impl Commas {
    fn new(text: &[u8]) -> Self {
        Commas {
            block: 0,
            mask: comma_mask(text),
        }
    }
}

/// The next block after `block` with a comma, and its mask (0 when there
/// is none).
#[inline(never)]
fn next_commas(text: &[u8], mut block: usize) -> (usize, u64) {
    while block < text.len() {
        block += 64;
        let mask = comma_mask(text.get(block..).unwrap_or_default());
        if mask != 0 {
            return (block, mask);
        }
    }
    (block, 0)
}

/// A bit for each comma among the first 64 bytes of `bytes`.
#[inline(always)]
fn comma_mask(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<64>() {
        Some(block) => block_commas(block),
        None => tail_commas(bytes),
    }
}

/// The same for fewer than 64 bytes, at the end of a text.
#[cold]
fn tail_commas(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(64)
        .enumerate()
        .fold(0, |m, (i, &b)| m | u64::from(b == b',') << i)
}

/// The commas of a block, eight bytes per word operation: a byte is a
/// comma when its XOR with `,` is zero, which sets its high bit in `zero`
/// (exactly: `& 0x7f` then `+ 0x7f` cannot carry into the next byte), and
/// a multiplication gathers the eight high bits into the top byte.
#[inline(always)]
fn block_commas(block: &[u8; 64]) -> u64 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut mask = 0u64;
    for (k, word) in block.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let y = u64::from_le_bytes(w) ^ 0x2c2c_2c2c_2c2c_2c2c;
        let zero = !(((y & LOW) + LOW) | y) & !LOW;
        let bits = (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= bits << (8 * k);
    }
    mask
}

/// The value of the 1 to 8 digits at `text[start..end]`, `end` being the
/// comma after them (a newline may come between, as V8 writes the end of
/// a record), from one 8-byte load and a few word operations: where the
/// first non-digit is, and what the digits before it are worth. `None`
/// for anything else (white space first, 9 digits or more, fewer than 8
/// bytes left, an error), which [`value`] then reads byte by byte.
#[inline(always)]
fn digits(text: &[u8], start: usize, end: usize) -> Option<u32> {
    let word: [u8; 8] = text.get(start..start.wrapping_add(8))?.try_into().ok()?;
    let x = u64::from_le_bytes(word);
    // Digits become 0..=9; a byte is not a digit when it is above 9 after
    // the XOR. Adding 0x76 sets bit 7 of bytes 10..=0x89 and the OR
    // catches those above; a carry only reaches bytes after a non-digit.
    let t = x ^ 0x3030_3030_3030_3030;
    let non_digit = (t.wrapping_add(0x7676_7676_7676_7676) | t) & 0x8080_8080_8080_8080;
    let n = (non_digit.trailing_zeros() / 8) as usize; // 8 when all are digits
    let len = end.wrapping_sub(start);
    // The byte after the digits, if within the word: the comma, or a
    // newline right before it.
    let newline = (x >> ((8 * n) & 63)) as u8 == b'\n';
    if (n == 0) | (len.wrapping_sub(n) > usize::from(newline)) {
        return None;
    }
    // The n digits at the top of the word, zeros before them: an 8-digit
    // number, combined by pairs, quads, then halves. (No mask is needed
    // first: the shift drops every byte but the digits' 0..=9.)
    let v = t << (64 - 8 * n);
    let v = v.wrapping_mul(10 * 256 + 1) >> 8;
    let v = (v & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 * 65536 + 1) >> 16;
    let v = (v & 0x0000_ffff_0000_ffff).wrapping_mul(10000 * (1 << 32) + 1) >> 32;
    Some(v as u32)
}

/// Reads the value at `chunk[i..]`, white space around it allowed, and
/// the comma after it (none after the `last` one, which must end the
/// chunk): the value and the position after them. An error is the byte
/// it is at and what was wrong.
#[cold]
#[inline(never)]
fn value(chunk: &[u8], i: usize, last: bool) -> Result<(u32, usize), (usize, &'static str)> {
    const LARGE: &str = "a number larger than 4294967295";
    let space = |at: &mut usize| {
        while matches!(chunk.get(*at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            *at += 1;
        }
    };
    let mut at = i;
    space(&mut at);
    let start = at;
    let mut value = 0u64;
    while let Some(d) = chunk
        .get(at)
        .map(|b| b.wrapping_sub(b'0'))
        .filter(|&d| d < 10)
    {
        if at - start == 10 {
            return Err((at, LARGE));
        }
        value = value * 10 + u64::from(d);
        at += 1;
    }
    if at == start {
        return Err(match chunk.get(at) {
            None => (at, "expected a number"),
            Some(_) => (at, "expected a non-negative integer"),
        });
    }
    if value > u64::from(u32::MAX) {
        return Err((at, LARGE));
    }
    space(&mut at);
    match chunk.get(at) {
        None if last => {}
        None => return Err((at, "expected `,`")),
        Some(b',') if !last => at += 1,
        Some(b',') => return Err((at, "more values than counted")),
        Some(b'0'..=b'9') => return Err((at, "expected `,` between integers")),
        Some(_) => return Err((at, "expected a non-negative integer")),
    }
    Ok((value as u32, at))
}

/// `x / d` for any 32-bit `x` (`d` ≥ 1), as a multiplication by
/// ⌈2^64 / d⌉ (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): a division per edge would cost more than the rest
/// of the edge's check.
fn divider(d: u32) -> impl Fn(u32) -> u32 {
    let inverse = if d > 1 {
        u64::MAX / u64::from(d) + 1
    } else {
        0
    };
    move |x| {
        if d > 1 {
            ((u128::from(x) * u128::from(inverse)) >> 64) as u32
        } else {
            x
        }
    }
}

/// Checks types, names and edges, and turns edge counts into `first_edge`
/// and `to_node` offsets into node ordinals.
fn validate(s: &mut Snapshot, edge_count: Vec<u32>, node_fields: usize) -> Result<(), E> {
    let nodes = s.node_count();
    if nodes == 0 {
        return Err(E::Shape(
            "no nodes (a snapshot has at least its root)".into(),
        ));
    }
    let strings = s.strings.len() as u64;
    let node_types = s.node_type_names.len() as u32;
    // One pass per array; the message is worked out for the node or edge
    // found.
    if let Some(i) = s
        .node_type
        .par_iter()
        .zip(s.node_name.par_iter())
        .position_any(|(&t, &n)| t >= node_types || u64::from(n) >= strings)
    {
        return Err(E::Shape(if s.node_type[i] >= node_types {
            format!(
                "node {i} has type {}, but meta lists {node_types} node types",
                s.node_type[i]
            )
        } else {
            format!(
                "node {i} has name {}, but there are {strings} strings",
                s.node_name[i]
            )
        }));
    }
    // Each node's count becomes its first edge, in place.
    let mut first_edge = edge_count;
    let mut sum = 0u64;
    for c in first_edge.iter_mut() {
        let count = *c;
        *c = sum as u32;
        sum += u64::from(count);
        if sum > u64::from(u32::MAX) {
            break;
        }
    }
    if sum != s.edge_count() as u64 {
        return Err(E::Shape(format!(
            "the nodes' edge_count add up to {sum}, but `edges` holds {} edges",
            s.edge_count()
        )));
    }
    first_edge.push(sum as u32);
    s.first_edge = first_edge;
    let edge_types = s.edge_type_names.len() as u32;
    let is_index: Vec<bool> = (0..edge_types).map(|t| s.edge_name_is_index(t)).collect();
    let limit = (nodes * node_fields) as u64;
    let fields = node_fields as u32;
    let divide = divider(fields);
    // Checks each edge and turns its target offset into an ordinal.
    let bad = s
        .edge_to
        .par_iter_mut()
        .zip(s.edge_type.par_iter().zip(s.edge_name.par_iter()))
        .enumerate()
        .find_map_any(|(i, (to, (&t, &n)))| {
            let q = divide(*to);
            let ok = t < edge_types
                && (is_index[t as usize] || u64::from(n) < strings)
                && u64::from(*to) < limit
                && q * fields == *to;
            if !ok {
                return Some(i);
            }
            *to = q;
            None
        });
    let Some(i) = bad else {
        return Ok(());
    };
    let (t, n, to) = (s.edge_type[i], s.edge_name[i], s.edge_to[i]);
    Err(E::Shape(if t >= edge_types {
        format!("edge {i} has type {t}, but meta lists {edge_types} edge types")
    } else if !is_index[t as usize] && u64::from(n) >= strings {
        format!("edge {i} is named by string {n}, but there are {strings} strings")
    } else {
        format!(
            "edge {i} points to node offset {to}, which is {} ({nodes} nodes of {node_fields} fields)",
            if u64::from(to) >= limit {
                "past the last node"
            } else {
                "not a multiple of the node field count"
            }
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"{"meta":{"node_fields":["type","name","id","self_size","edge_count","trace_node_id"],
"node_types":[["hidden","object","synthetic"],"string","number","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[["context","element","property","internal","hidden","shortcut","weak"],"string_or_number","node"]},
"node_count":3,"edge_count":3}"#;

    fn doc(nodes: &str, edges: &str) -> String {
        format!(
            r#"{{"snapshot":{META},"nodes":[{nodes}],"edges":[{edges}],"samples":[],"strings":["","root","A","x\n"]}}"#
        )
    }

    #[test]
    fn reads_columns_and_edges() {
        let text = doc(
            "2,1,1,0,2,0, 1,2,3,10,1,0,\n1,3,5,20,0,0",
            "1,0,6, 2,3,12, 6,2,12",
        );
        let s = parse(text.as_bytes()).unwrap();
        assert_eq!(s.node_count(), 3);
        assert_eq!(s.node_id, [1, 3, 5]);
        assert_eq!(s.self_size, [0, 10, 20]);
        assert_eq!(s.first_edge, [0, 2, 3, 3]);
        assert_eq!(s.edge_to, [1, 2, 2]);
        assert_eq!(s.name(2), "x\n");
        assert_eq!(s.node_type_name(0), "synthetic");
        assert_eq!(s.edge_label(0), "[0]");
        assert_eq!(s.edge_label(2), "A");
    }

    #[test]
    fn bad_input_is_an_error() {
        for (text, what) in [
            (doc("2,1,1,0,1,0", "1,0,6"), "past the last node"),
            (doc("2,1,1,0,1,0, 1,2,3,10,0,0", "1,0,7"), "not a multiple"),
            (doc("2,1,1,0,2,0, 1,2,3,10,0,0", "1,0,6"), "add up to 2"),
            (doc("2,1,1,0,0,0,1", ""), "not a multiple of its 6"),
            (doc("9,1,1,0,0,0", ""), "type 9"),
            (doc("2,99,1,0,0,0", ""), "name 99"),
            (doc("2,1,1,0,0,-1", ""), "non-negative"),
            (doc("2,1,1,0,0,99999999999", ""), "larger than"),
            (doc("2,1,1,0,0,\"a\"", ""), "expected"),
            (doc("", ""), "no nodes"),
            (doc("2,1,1,0,1,0", "2,9,0"), "string 9"),
        ] {
            let err = parse(text.as_bytes()).err().unwrap().to_string();
            assert!(err.contains(what), "{err} (wanted {what})");
        }
        let text = doc("2,1,1,0,1,0, 1,2,3,4,0,0", "2,3,6");
        assert!(parse(text.as_bytes()).is_ok());
        for cut in 0..text.len() - 1 {
            let err = parse(&text.as_bytes()[..cut]).err();
            assert!(err.is_some(), "cut at {cut}");
        }
        let no_meta = text.replace("\"edge_count\",", "");
        let err = parse(no_meta.as_bytes()).err().unwrap().to_string();
        assert!(err.contains("`edge_count`"), "{err}");
    }

    #[test]
    fn commas_are_counted_in_words_and_tails() {
        for text in [
            "",
            ",",
            "1,2,3",
            ",,,,,,,,,",
            "12345678,",
            "a,b,c,d,e,f,g,h,i,j,k",
            "\u{ac},,\u{2c}",
        ] {
            let expected = text.bytes().filter(|&b| b == b',').count();
            assert_eq!(count_commas(text.as_bytes()), expected, "{text:?}");
        }
        let all: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        assert_eq!(count_commas(&all), 16);
    }

    #[test]
    fn comma_masks_match_a_byte_scan() {
        // Random bytes, a third of them commas, cut at every length
        // around a few blocks (for the tails); the bytes that differ from
        // a comma only in bit 7 or bit 0 are among them.
        let mut x = 0x2545_f491u32;
        let text: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                match x % 6 {
                    0 | 1 => b',',
                    2 => b',' ^ 0x80,
                    3 => b',' ^ 1,
                    _ => (x >> 8) as u8,
                }
            })
            .collect();
        for len in 0..text.len() {
            let text = &text[..len];
            let expected: Vec<usize> = (0..len).filter(|&i| text[i] == b',').collect();
            let mut found = Vec::new();
            let Commas {
                mut block,
                mut mask,
            } = Commas::new(text);
            loop {
                if mask == 0 {
                    (block, mask) = next_commas(text, block);
                    if mask == 0 {
                        break;
                    }
                }
                found.push(block + mask.trailing_zeros() as usize);
                mask &= mask - 1;
            }
            assert_eq!(found, expected, "{len} bytes");
        }
    }

    #[test]
    fn strings_with_and_without_escapes() {
        let text = doc("2,1,1,0,0,0, 1,2,3,10,0,0, 1,3,5,20,0,0", "");
        let with = |strings: &str| text.replace(r#"["","root","A","x\n"]"#, strings);
        let s = parse(with(r#"[ "", "r\u00f6ot" ,"\"A\"",  "é\\"]"#).as_bytes()).unwrap();
        assert_eq!((s.name(0), s.name(1), s.name(2)), ("röot", "\"A\"", "é\\"));
        for (bad, what) in [
            ("[\"\",\"r\noot\",\"A\",\"x\"]", "control character"),
            (r#"["","root" "A","x"]"#, "expected `,` or `]`"),
            (r#"["","root",7,"x"]"#, "expected a string"),
        ] {
            let err = parse(with(bad).as_bytes()).err().unwrap().to_string();
            assert!(err.contains(what), "{err} (wanted {what})");
        }
        let mut bytes = with(r#"["","ro?t","A","x"]"#).into_bytes();
        let at = bytes.windows(4).position(|w| w == b"ro?t").unwrap() + 2;
        bytes[at] = 0xff;
        let err = parse(&bytes).err().unwrap().to_string();
        assert!(err.contains("string 1 is not valid UTF-8"), "{err}");
    }

    #[test]
    fn division_by_multiplication_is_exact() {
        let mut x = 0x2545_f491u32;
        for d in 1..=64u32 {
            let divide = divider(d);
            let edges = [
                0,
                1,
                d - 1,
                d,
                d + 1,
                u32::MAX - 1,
                u32::MAX,
                u32::MAX / d * d,
            ];
            for v in edges.into_iter().chain((0..20_000).map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            })) {
                assert_eq!(divide(v), v / d, "{v} / {d}");
            }
        }
    }

    #[test]
    fn numbers_of_every_width_and_separator() {
        // Values of 1 to 10 digits, within the fast reader's word and
        // beyond it, after commas as V8 writes them (`\n,` ending a record)
        // and with other white space, which the byte-by-byte reader takes.
        let mut x = 0x9e37_79b9u32;
        let (mut ids, mut sizes) = (Vec::new(), Vec::new());
        let mut nodes = String::new();
        let separators = [",", ",", ",", "\n,", " , ", ",\n", "\t,\r\n"];
        for i in 0..6000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (id, size) = if i % 1000 == 999 {
                (u32::MAX, 0)
            } else {
                (x >> (x % 32), u32::MAX - (x >> (x % 29)))
            };
            let sep = if i == 5999 {
                ""
            } else {
                separators[(x as usize / 7) % separators.len()]
            };
            nodes.push_str(&format!("1,2,{id},{size},0,{i}{sep}"));
            ids.push(id);
            sizes.push(size);
        }
        let s = parse(doc(&nodes, "").as_bytes()).unwrap();
        assert_eq!(s.node_id, ids);
        assert_eq!(s.self_size, sizes);
        for bad in [
            "1,2,3,4,0,0,\n1 2,3,4,0,0",
            "1,2,3,4,0,4294967296",
            "1,2,3,4,0,12345678901",
        ] {
            assert!(parse(doc(bad, "").as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunked_tokenizing_equals_serial() {
        // Enough records to be split into several chunks.
        let n = 200_000usize;
        let mut nodes = String::new();
        for i in 0..n {
            nodes.push_str(&format!("1,2,{},{},0,0,\n", 2 * i + 1, i % 1000));
        }
        nodes.pop();
        nodes.pop();
        let text = doc(&nodes, "");
        let s = parse(text.as_bytes()).unwrap();
        assert_eq!(s.node_count(), n);
        assert!(s
            .node_id
            .iter()
            .enumerate()
            .all(|(i, &id)| id == 2 * i as u32 + 1));
        assert!(s
            .self_size
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i % 1000) as u32));
    }
}
