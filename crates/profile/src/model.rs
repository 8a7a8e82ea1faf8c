//! The owned pprof model: one struct per `profile.proto` message, fields named
//! as in the proto. Strings are indexes into `string_table`, ids are the
//! proto's ids, so a decoded profile re-encodes to the same message.

/// `perftools.profiles.Profile`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub sample_type: Vec<ValueType>,
    pub sample: Vec<Sample>,
    /// `mapping[0]` is the main binary, by convention.
    pub mapping: Vec<Mapping>,
    pub location: Vec<Location>,
    pub function: Vec<Function>,
    /// `string_table[0]` is always `""`.
    pub string_table: Vec<String>,
    /// Regex (string index) of frames to drop, with everything they call.
    pub drop_frames: i64,
    /// Regex (string index) of frames exempt from `drop_frames`.
    pub keep_frames: i64,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    pub period_type: ValueType,
    pub period: i64,
    /// Free-form comments (string indexes).
    pub comment: Vec<i64>,
    /// Name (string index) of the sample type to show by default.
    pub default_sample_type: i64,
    pub doc_url: i64,
}

/// A (type, unit) pair such as `cpu/nanoseconds`, both string indexes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub r#type: i64,
    pub unit: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Leaf first.
    pub location_id: Vec<u64>,
    /// One value per sample type.
    pub value: Vec<i64>,
    pub label: Vec<Label>,
}

/// A string label (`str` set) or a numeric one (`num`, optional `num_unit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Label {
    pub key: i64,
    pub str: i64,
    pub num: i64,
    pub num_unit: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    pub id: u64,
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: i64,
    pub build_id: i64,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub id: u64,
    /// 0 when unknown.
    pub mapping_id: u64,
    pub address: u64,
    /// Inlined callees first; the last line is the out-of-line caller.
    pub line: Vec<Line>,
    pub is_folded: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub function_id: u64,
    pub line: i64,
    pub column: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Function {
    pub id: u64,
    /// Human-readable (demangled) name.
    pub name: i64,
    /// Name as the linker knows it (mangled).
    pub system_name: i64,
    pub filename: i64,
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
    pub fn new() -> Self {
        let mut interner = StringInterner::default();
        interner.intern("");
        interner
    }

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
