//! The decoded, borrowed form of a profile that analysis works on.
//!
//! Unlike [`crate::Profile`], references are resolved to dense indexes
//! (`u32` into the view's own vectors), strings borrow from the input, and
//! samples are stored column-wise in blocks (one block per decoding task), so
//! a million samples are a few large allocations instead of three million
//! small ones and can be aggregated block by block in parallel.

use std::borrow::Cow;

use crate::model::{self, Profile};

/// A (type, unit) pair of string indexes.
pub type ValueType = model::ValueType;

/// A whole profile, decoded and validated, borrowing its strings from the input.
///
/// Only [`ProfileView::decode`] makes one, so every index it holds is valid:
/// a string index is within [`strings`](Self::strings), a location's lines and
/// mapping, a line's function and a sample's locations point inside this view.
/// Indexes are `u32` positions, meaningful for the view they came from.
#[derive(Debug)]
pub struct ProfileView<'a> {
    pub(crate) sample_types: Vec<ValueType>,
    pub(crate) sample_blocks: Vec<SampleBlock>,
    pub(crate) mappings: Vec<MappingView>,
    pub(crate) locations: Vec<LocationView>,
    pub(crate) lines: Vec<LineView>,
    pub(crate) functions: Vec<FunctionView>,
    pub(crate) strings: Vec<Cow<'a, str>>,
    pub(crate) drop_frames: u32,
    pub(crate) keep_frames: u32,
    pub(crate) time_nanos: i64,
    pub(crate) duration_nanos: i64,
    pub(crate) period_type: ValueType,
    pub(crate) period: i64,
    pub(crate) comments: Vec<u32>,
    pub(crate) default_sample_type: u32,
    pub(crate) doc_url: u32,
}

impl<'a> ProfileView<'a> {
    /// What each value of a sample measures, in order (the proto's `sample_type`).
    #[inline]
    pub fn sample_types(&self) -> &[ValueType] {
        &self.sample_types
    }

    /// The samples, in column-wise blocks; iterate with [`ProfileView::samples`].
    #[inline]
    pub fn sample_blocks(&self) -> &[SampleBlock] {
        &self.sample_blocks
    }

    /// The mappings; [`LocationView::mapping`] indexes this.
    #[inline]
    pub fn mappings(&self) -> &[MappingView] {
        &self.mappings
    }

    /// The locations; samples refer to them by index.
    #[inline]
    pub fn locations(&self) -> &[LocationView] {
        &self.locations
    }

    /// All locations' lines; a location owns `lines[loc.lines.0..loc.lines.1]`.
    #[inline]
    pub fn lines(&self) -> &[LineView] {
        &self.lines
    }

    /// The functions; [`LineView::function`] indexes this.
    #[inline]
    pub fn functions(&self) -> &[FunctionView] {
        &self.functions
    }

    /// The string table, borrowed from the input (copied only where invalid UTF-8 was replaced).
    #[inline]
    pub fn strings(&self) -> &[Cow<'a, str>] {
        &self.strings
    }

    /// Regex (string index) of frames to drop, with everything they call.
    #[inline]
    pub fn drop_frames(&self) -> u32 {
        self.drop_frames
    }

    /// Regex (string index) of frames exempt from `drop_frames`.
    #[inline]
    pub fn keep_frames(&self) -> u32 {
        self.keep_frames
    }

    /// Time of collection, in nanoseconds since the Unix epoch (UTC).
    #[inline]
    pub fn time_nanos(&self) -> i64 {
        self.time_nanos
    }

    /// Duration of the profile, in nanoseconds.
    #[inline]
    pub fn duration_nanos(&self) -> i64 {
        self.duration_nanos
    }

    /// The kind of events between sampled occurrences (`cpu/nanoseconds`).
    #[inline]
    pub fn period_type(&self) -> ValueType {
        self.period_type
    }

    /// Number of events between sampled occurrences, in `period_type` units.
    #[inline]
    pub fn period(&self) -> i64 {
        self.period
    }

    /// Free-form comments (string indexes).
    #[inline]
    pub fn comments(&self) -> &[u32] {
        &self.comments
    }

    /// Name (string index) of the sample type to show by default; 0 when unset.
    #[inline]
    pub fn default_sample_type(&self) -> u32 {
        self.default_sample_type
    }

    /// Documentation link (string index) for this profile type; 0 when unset.
    #[inline]
    pub fn doc_url(&self) -> u32 {
        self.doc_url
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// A decoded `Mapping`; string fields index [`ProfileView::strings`].
pub struct MappingView {
    /// The proto's mapping id.
    pub id: u64,
    /// Address at which the binary's text is loaded.
    pub memory_start: u64,
    /// Limit of the address range occupied by the mapping.
    pub memory_limit: u64,
    /// Offset in the binary that corresponds to `memory_start`.
    pub file_offset: u64,
    /// Object file (string index): a path, or a virtual name such as `[vdso]`.
    pub filename: u32,
    /// Unique identifier of the binary (string index), such as a GNU build id.
    pub build_id: u32,
    /// Whether the mapping's locations have function names.
    pub has_functions: bool,
    /// Whether the mapping's locations have source file names.
    pub has_filenames: bool,
    /// Whether the mapping's locations have line numbers.
    pub has_line_numbers: bool,
    /// Whether the mapping's locations have inline frames.
    pub has_inline_frames: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// A decoded `Location`, its mapping and lines resolved to indexes.
pub struct LocationView {
    /// The proto's location id.
    pub id: u64,
    /// The proto's `mapping_id`, kept as written (it may name no mapping).
    pub mapping_id: u64,
    /// Index into [`ProfileView::mappings`], when `mapping_id` resolves (as pprof, a
    /// dangling mapping id leaves the location without a mapping rather than failing).
    pub mapping: Option<u32>,
    /// Instruction address, if available.
    pub address: u64,
    /// `start..end` into [`ProfileView::lines`]; read through
    /// [`ProfileView::location_lines`].
    pub(crate) lines: (u32, u32),
    /// Several symbols map to this address (identical code folding by the linker);
    /// the lines describe one of them.
    pub is_folded: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// One source line of a location, and the function it is in.
pub struct LineView {
    /// Index into [`ProfileView::functions`].
    pub function: u32,
    /// Line number in the source file; 0 when unknown.
    pub line: i64,
    /// Column number in the source file; 0 when unknown.
    pub column: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// A decoded `Function`; string fields index [`ProfileView::strings`].
pub struct FunctionView {
    /// The proto's function id.
    pub id: u64,
    /// Human-readable (demangled) name (string index).
    pub name: u32,
    /// Name as the linker knows it (mangled), as a string index.
    pub system_name: u32,
    /// Source file (string index) that holds the function.
    pub filename: u32,
    /// Line number in `filename` where the function starts; 0 when unknown.
    pub start_line: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// A decoded sample label; string fields index [`ProfileView::strings`].
pub struct LabelView {
    /// Label name (string index).
    pub key: u32,
    /// String value (string index); 0 for a numeric label.
    pub str: u32,
    /// Numeric value, for a numeric label.
    pub num: i64,
    /// Unit of `num` (string index), such as `bytes`; 0 when unspecified.
    pub num_unit: u32,
}

/// Samples stored column-wise.
#[derive(Debug, Default)]
pub struct SampleBlock {
    pub(crate) location_offsets: Vec<u32>,
    /// Dense location indexes, leaf first.
    pub(crate) locations: Vec<u32>,
    pub(crate) values: Vec<i64>,
    pub(crate) label_offsets: Vec<u32>,
    pub(crate) labels: Vec<LabelView>,
    pub(crate) values_per_sample: usize,
}

/// One sample of a [`SampleBlock`].
#[derive(Clone, Copy, Debug)]
pub struct SampleRef<'v> {
    /// Indexes into [`ProfileView::locations`], leaf first.
    pub locations: &'v [u32],
    /// One value per sample type, in [`ProfileView::sample_types`] order.
    pub values: &'v [i64],
    /// The sample's labels.
    pub labels: &'v [LabelView],
}

impl SampleBlock {
    pub(crate) fn new(values_per_sample: usize) -> Self {
        SampleBlock {
            location_offsets: vec![0],
            label_offsets: vec![0],
            values_per_sample,
            ..Default::default()
        }
    }

    /// Empties the block for samples of `values_per_sample` values,
    /// keeping its memory.
    pub(crate) fn reset(&mut self, values_per_sample: usize) {
        self.location_offsets.clear();
        self.location_offsets.push(0);
        self.label_offsets.clear();
        self.label_offsets.push(0);
        self.locations.clear();
        self.values.clear();
        self.labels.clear();
        self.values_per_sample = values_per_sample;
    }

    /// Number of samples in the block.
    pub fn len(&self) -> usize {
        // A default block, never filled, has no offsets at all.
        self.location_offsets.len().saturating_sub(1)
    }

    /// Whether the block holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Location references over all the block's samples.
    pub fn location_count(&self) -> usize {
        self.locations.len()
    }

    #[inline]
    /// The `i`-th sample of the block. Panics when `i` is out of range.
    pub fn get(&self, i: usize) -> SampleRef<'_> {
        let locs = self.location_offsets[i] as usize..self.location_offsets[i + 1] as usize;
        let labels = self.label_offsets[i] as usize..self.label_offsets[i + 1] as usize;
        let k = self.values_per_sample;
        SampleRef {
            locations: &self.locations[locs],
            values: &self.values[i * k..(i + 1) * k],
            labels: &self.labels[labels],
        }
    }

    /// The block's samples, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SampleRef<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

impl<'a> ProfileView<'a> {
    /// The string at a (validated) index.
    #[inline]
    pub fn string(&self, index: u32) -> &str {
        &self.strings[index as usize]
    }

    /// The samples alone, freeing the rest of the view (for a reader that
    /// has planned its locations and now only streams samples).
    pub fn into_sample_blocks(self) -> Vec<SampleBlock> {
        self.sample_blocks
    }

    /// Number of samples, over all blocks.
    pub fn sample_count(&self) -> usize {
        self.sample_blocks.iter().map(SampleBlock::len).sum()
    }

    /// All samples, block by block.
    pub fn samples(&self) -> impl Iterator<Item = SampleRef<'_>> + '_ {
        self.sample_blocks.iter().flat_map(SampleBlock::iter)
    }

    /// The lines of a location, inlined callees first.
    #[inline]
    pub fn location_lines(&self, location: &LocationView) -> &[LineView] {
        &self.lines[location.lines.0 as usize..location.lines.1 as usize]
    }

    /// `type/unit` names of the sample types.
    pub fn sample_type_names(&self) -> Vec<(&str, &str)> {
        self.sample_types
            .iter()
            .map(|t| (self.string(t.r#type as u32), self.string(t.unit as u32)))
            .collect()
    }

    /// The index pprof reports by default: `default_sample_type` when it names a
    /// sample type, else the last one.
    pub fn default_sample_index(&self) -> usize {
        if self.default_sample_type != 0 {
            let wanted = self.string(self.default_sample_type);
            if let Some(i) = self
                .sample_types
                .iter()
                .position(|t| self.string(t.r#type as u32) == wanted)
            {
                return i;
            }
        }
        self.sample_types.len().saturating_sub(1)
    }

    /// Copies the view into the owned model, restoring proto ids.
    pub fn to_profile(&self) -> Profile {
        let location_id = |index: &u32| self.locations[*index as usize].id;
        Profile {
            sample_type: self.sample_types.clone(),
            sample: self
                .samples()
                .map(|s| model::Sample {
                    location_id: s.locations.iter().map(location_id).collect(),
                    value: s.values.to_vec(),
                    label: s
                        .labels
                        .iter()
                        .map(|l| model::Label {
                            key: l.key as i64,
                            str: l.str as i64,
                            num: l.num,
                            num_unit: l.num_unit as i64,
                        })
                        .collect(),
                })
                .collect(),
            mapping: self
                .mappings
                .iter()
                .map(|m| model::Mapping {
                    id: m.id,
                    memory_start: m.memory_start,
                    memory_limit: m.memory_limit,
                    file_offset: m.file_offset,
                    filename: m.filename as i64,
                    build_id: m.build_id as i64,
                    has_functions: m.has_functions,
                    has_filenames: m.has_filenames,
                    has_line_numbers: m.has_line_numbers,
                    has_inline_frames: m.has_inline_frames,
                })
                .collect(),
            location: self
                .locations
                .iter()
                .map(|l| model::Location {
                    id: l.id,
                    mapping_id: l.mapping_id,
                    address: l.address,
                    line: self
                        .location_lines(l)
                        .iter()
                        .map(|line| model::Line {
                            function_id: self.functions[line.function as usize].id,
                            line: line.line,
                            column: line.column,
                        })
                        .collect(),
                    is_folded: l.is_folded,
                })
                .collect(),
            function: self
                .functions
                .iter()
                .map(|f| model::Function {
                    id: f.id,
                    name: f.name as i64,
                    system_name: f.system_name as i64,
                    filename: f.filename as i64,
                    start_line: f.start_line,
                })
                .collect(),
            string_table: self.strings.iter().map(|s| s.to_string()).collect(),
            drop_frames: self.drop_frames as i64,
            keep_frames: self.keep_frames as i64,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type: self.period_type,
            period: self.period,
            comment: self.comments.iter().map(|&c| c as i64).collect(),
            default_sample_type: self.default_sample_type as i64,
            doc_url: self.doc_url as i64,
        }
    }
}
