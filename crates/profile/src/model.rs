//! The owned pprof model: one struct per `profile.proto` message, fields named
//! as in the proto. Strings are indexes into `string_table`, ids are the
//! proto's ids, so a decoded profile re-encodes to the same message.

/// `perftools.profiles.Profile`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// What each value of a sample measures, in order (`cpu/nanoseconds`).
    pub sample_type: Vec<ValueType>,
    /// The recorded samples.
    pub sample: Vec<Sample>,
    /// `mapping[0]` is the main binary, by convention.
    pub mapping: Vec<Mapping>,
    /// Locations referenced by samples, by id.
    pub location: Vec<Location>,
    /// Functions referenced by locations' lines, by id.
    pub function: Vec<Function>,
    /// `string_table[0]` is always `""`.
    pub string_table: Vec<String>,
    /// Regex (string index) of frames to drop, with everything they call.
    pub drop_frames: i64,
    /// Regex (string index) of frames exempt from `drop_frames`.
    pub keep_frames: i64,
    /// Time of collection, in nanoseconds since the Unix epoch (UTC).
    pub time_nanos: i64,
    /// Duration of the profile, in nanoseconds.
    pub duration_nanos: i64,
    /// The kind of events between sampled occurrences (`cpu/nanoseconds`).
    pub period_type: ValueType,
    /// Number of events between sampled occurrences, in `period_type` units.
    pub period: i64,
    /// Free-form comments (string indexes).
    pub comment: Vec<i64>,
    /// Name (string index) of the sample type to show by default.
    pub default_sample_type: i64,
    /// Documentation link (string index) for this profile type; 0 when unset.
    pub doc_url: i64,
}

/// A (type, unit) pair such as `cpu/nanoseconds`, both string indexes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// Type name (string index), such as `cpu`.
    pub r#type: i64,
    /// Unit name (string index), such as `nanoseconds`.
    pub unit: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// One observation: a call stack with a value per sample type, and labels.
pub struct Sample {
    /// Leaf first.
    pub location_id: Vec<u64>,
    /// One value per sample type.
    pub value: Vec<i64>,
    /// Extra information about the sample, such as a thread id or allocation size.
    pub label: Vec<Label>,
}

/// A string label (`str` set) or a numeric one (`num`, optional `num_unit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Label {
    /// Label name (string index).
    pub key: i64,
    /// String value (string index); 0 for a numeric label.
    pub str: i64,
    /// Numeric value, for a numeric label.
    pub num: i64,
    /// Unit of `num` (string index), such as `bytes`; 0 when unspecified.
    pub num_unit: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// A binary or shared library mapped into the profiled process.
pub struct Mapping {
    /// Unique nonzero id, referenced by [`Location::mapping_id`].
    pub id: u64,
    /// Address at which the binary's text is loaded.
    pub memory_start: u64,
    /// Limit of the address range occupied by the mapping.
    pub memory_limit: u64,
    /// Offset in the binary that corresponds to `memory_start`.
    pub file_offset: u64,
    /// Object file (string index): a path, or a virtual name such as `[vdso]`.
    pub filename: i64,
    /// Unique identifier of the binary (string index), such as a GNU build id.
    pub build_id: i64,
    /// Whether the mapping's locations have function names.
    pub has_functions: bool,
    /// Whether the mapping's locations have source file names.
    pub has_filenames: bool,
    /// Whether the mapping's locations have line numbers.
    pub has_line_numbers: bool,
    /// Whether the mapping's locations have inline frames.
    pub has_inline_frames: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// A program location (usually an instruction address) and its source lines.
pub struct Location {
    /// Unique nonzero id, referenced by [`Sample::location_id`].
    pub id: u64,
    /// 0 when unknown.
    pub mapping_id: u64,
    /// Instruction address, if available; it should lie in the mapping's address range.
    pub address: u64,
    /// Inlined callees first; the last line is the out-of-line caller.
    pub line: Vec<Line>,
    /// Several symbols map to this address (identical code folding by the linker);
    /// `line` describes one of them.
    pub is_folded: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// One source line of a location, and the function it is in.
pub struct Line {
    /// Id of the function ([`Function::id`]) this line is in.
    pub function_id: u64,
    /// Line number in the source file; 0 when unknown.
    pub line: i64,
    /// Column number in the source file; 0 when unknown.
    pub column: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// A function referenced by locations' lines.
pub struct Function {
    /// Unique nonzero id, referenced by [`Line::function_id`].
    pub id: u64,
    /// Human-readable (demangled) name.
    pub name: i64,
    /// Name as the linker knows it (mangled).
    pub system_name: i64,
    /// Source file (string index) that holds the function.
    pub filename: i64,
    /// Line number in `filename` where the function starts; 0 when unknown.
    pub start_line: i64,
}

impl Profile {
    /// A profile whose string table holds just the mandatory `""`.
    pub fn new() -> Profile {
        Profile {
            string_table: vec![String::new()],
            ..Profile::default()
        }
    }

    /// The string at `index`, or `""` when out of range.
    pub fn string(&self, index: i64) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// Adds `s` to the string table (reusing an equal existing entry at the end
    /// is the caller's business: see [`crate::StringInterner`]) and returns its index.
    pub fn push_string(&mut self, s: impl Into<String>) -> i64 {
        let s = s.into();
        if s.is_empty() {
            return 0;
        }
        self.string_table.push(s);
        (self.string_table.len() - 1) as i64
    }
}

/// Builds a string table without duplicates, for producers (the agent, fixture generators).
#[derive(Default)]
pub struct StringInterner {
    index: std::collections::HashMap<String, i64>,
    table: Vec<String>,
}

impl StringInterner {
    /// An interner whose table holds just `""`, at index 0.
    pub fn new() -> Self {
        let mut interner = StringInterner::default();
        interner.intern("");
        interner
    }

    /// The index of `s`, adding it to the table when it is new.
    pub fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    /// The finished table, for [`Profile::string_table`].
    pub fn into_table(self) -> Vec<String> {
        self.table
    }
}
