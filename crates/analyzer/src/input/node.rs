//! Node.js (V8) profiles, read by converting them to pprof.
//!
//! A `.cpuprofile` ([`cpu`]) or `.heapprofile` ([`heap`]) is a call tree
//! whose nodes carry a V8 call frame; samples point at nodes. Each becomes
//! a [`Profile`] (one pprof sample per node that carries a value, its
//! stack the node's path to the root, root excluded) that is encoded and
//! handed to the analyzer's pprof pipeline, so every report, flamegraph,
//! `--base`, `--focus`/`--ignore` and merge works on it unchanged.
//!
//! **Frames.** A function is a distinct (name, url, line, column), named as
//! DevTools shows it: `hotLoop (file:///app/workload.js:6:17)`, line and
//! column 1-based (V8 writes them 0-based), `(anonymous)` for an empty
//! name, the bare name when there is no url (`(program)`, `(idle)`,
//! `(garbage collector)`, builtins). There is one location per function:
//! pprof's function view, which is what the analyzer reports, then equals
//! DevTools' per-function self and total times (DevTools groups by name,
//! script and position), and the profile stays as small as the
//! number of functions rather than of tree nodes. V8 gives a frame's
//! function start, not the line executing, so a location per node would
//! carry no extra line information. The root node, `(root)`, is no frame
//! (DevTools leaves it out of bottom-up views, and pprof stacks have no
//! synthetic root); a sample on the root itself, which V8 does not write,
//! keeps `(root)` as its only frame so its value is not lost.
//!
//! **Cost.** Converting, rather than feeding the pipeline from the JSON
//! directly, costs one pprof encoding and decoding, small next to the
//! JSON parse: on a generated `.cpuprofile` of 10 million samples over
//! 20,000 nodes (103 MB, `fixtures/node/large-cpuprofile.js`; release
//! build, 2 cores), detection takes 0.08 s, conversion 0.48 s (of which
//! serde_json's parse 0.29 s), peak RSS 264 MB (the mapped file plus 16
//! bytes per sample); the 2 MB pprof it becomes is decoded and aggregated
//! in 13 ms. Figures for heap profiles are in `docs/node.md`.
//!
//! **Bounds.** The input is capped like any other (`--max-decompressed-size`).
//! Stacks are materialized only for nodes that carry a value, and only
//! after checking that they hold at most [`frame_budget`] frames in all, so
//! a crafted chain of nodes cannot turn a small file into a huge profile.

pub(crate) mod cpu;
pub(crate) mod heap;
pub(crate) mod json;

use std::borrow::Cow;
use std::fmt;

use firewatch_profile::{Function, Line, Location, Profile, StringInterner, ValueType};
use rustc_hash::FxHashMap;

/// Why a Node.js profile could not be read. Node ids are the file's own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeError {
    /// Not JSON, or JSON without the fields the format has.
    Json(String),
    /// The profile has no nodes (a `.cpuprofile`'s `nodes` is empty).
    NoNodes,
    /// Two nodes have the same id.
    DuplicateId {
        /// The id.
        id: i64,
    },
    /// A node lists a child id that no node has.
    UnknownChild {
        /// The parent's id.
        parent: i64,
        /// The missing child's id.
        child: i64,
    },
    /// A node is listed as the child of two nodes (or twice).
    TwoParents {
        /// The node.
        id: i64,
        /// The first parent.
        first: i64,
        /// The second.
        second: i64,
    },
    /// The root (the first node) is listed as a child: `children` has a cycle.
    RootIsChild {
        /// The root's id.
        root: i64,
        /// The node that lists it.
        parent: i64,
    },
    /// A node cannot be reached from the root: `children` has a cycle, or
    /// the node is an orphan.
    Unreachable {
        /// The node.
        id: i64,
        /// The root (the first node).
        root: i64,
    },
    /// A sample names a node id that no node has.
    UnknownSampleNode {
        /// Position in `samples`.
        index: usize,
        /// The id.
        id: i64,
    },
    /// `samples` and `timeDeltas` differ in length.
    SampleCount {
        /// Length of `samples`.
        samples: usize,
        /// Length of `timeDeltas`.
        time_deltas: usize,
    },
    /// Adding up `timeDeltas` overflows.
    TimeOverflow {
        /// Position in `timeDeltas` where it overflows.
        index: usize,
    },
    /// The sample times span more than an `i64` of microseconds.
    TimeSpan,
    /// The sampled stacks would hold more frames than the file's size
    /// allows (see the module documentation).
    TooManyFrames {
        /// Frames the stacks would hold.
        frames: u64,
        /// The budget for a file this size.
        limit: u64,
    },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Json(detail) => write!(f, "{detail}"),
            NodeError::NoNodes => write!(f, "no nodes"),
            NodeError::DuplicateId { id } => write!(f, "two nodes have id {id}"),
            NodeError::UnknownChild { parent, child } => {
                write!(f, "node {parent} lists child {child}, which no node has")
            }
            NodeError::TwoParents { id, first, second } => write!(
                f,
                "node {id} is a child of both node {first} and node {second}"
            ),
            NodeError::RootIsChild { root, parent } => write!(
                f,
                "the root node {root} is listed as a child of node {parent} (a cycle in `children`)"
            ),
            NodeError::Unreachable { id, root } => write!(
                f,
                "node {id} is not reachable from the root node {root} (a cycle in `children`, or an orphan)"
            ),
            NodeError::UnknownSampleNode { index, id } => {
                write!(f, "samples[{index}] is node {id}, which no node has")
            }
            NodeError::SampleCount {
                samples,
                time_deltas,
            } => write!(
                f,
                "{samples} samples but {time_deltas} timeDeltas (there must be one per sample)"
            ),
            NodeError::TimeOverflow { index } => {
                write!(f, "the sample times overflow at timeDeltas[{index}]")
            }
            NodeError::TimeSpan => write!(f, "the sample times span more than 2^63 microseconds"),
            NodeError::TooManyFrames { frames, limit } => write!(
                f,
                "the sampled stacks hold {frames} frames in all, more than the {limit} (two per input byte) a file this size may"
            ),
        }
    }
}

/// A V8 call frame (`Runtime.CallFrame`), line and column 0-based as in the
/// file; `scriptId` is not needed.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallFrame<'a> {
    #[serde(borrow)]
    pub function_name: Cow<'a, str>,
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    pub line_number: i64,
    pub column_number: i64,
}

/// An unknown frame: no name, no url, no position (as V8 writes `(root)`).
impl Default for CallFrame<'_> {
    fn default() -> Self {
        CallFrame {
            function_name: Cow::Borrowed(""),
            url: Cow::Borrowed(""),
            line_number: -1,
            column_number: -1,
        }
    }
}

impl CallFrame<'_> {
    /// The 1-based line, 0 when unknown.
    pub fn line(&self) -> i64 {
        self.line_number.max(-1).saturating_add(1)
    }

    /// The 1-based column, 0 when unknown.
    pub fn column(&self) -> i64 {
        self.column_number.max(-1).saturating_add(1)
    }

    /// The name DevTools shows: `name (url:line:column)`, 1-based.
    pub fn display_name(&self) -> String {
        let name: &str = if self.function_name.is_empty() {
            "(anonymous)"
        } else {
            &self.function_name
        };
        let (line, column) = (self.line(), self.column());
        if self.url.is_empty() {
            name.to_string()
        } else if line == 0 {
            format!("{name} ({})", self.url)
        } else if column == 0 {
            format!("{name} ({}:{line})", self.url)
        } else {
            format!("{name} ({}:{line}:{column})", self.url)
        }
    }
}

/// The most frames the stacks of a profile read from `input_len` bytes may
/// hold: two per input byte, at least 16 Mi. A real profile stays far
/// below: V8 records at most 255 frames per CPU sample and 128 per heap
/// sample, and a node takes 100 bytes or more of JSON, so even a profile of
/// deep recursion sampled at every node holds about one frame per byte
/// (8 bytes of memory each while converted).
pub(crate) fn frame_budget(input_len: usize) -> u64 {
    (input_len as u64).saturating_mul(2).max(1 << 24)
}

/// Node index by the file's node id: a table when the ids are small (V8
/// numbers nodes 1, 2, 3…), a hash map otherwise.
pub(crate) enum IdIndex {
    Dense(Vec<u32>),
    Sparse(FxHashMap<i64, u32>),
}

impl IdIndex {
    /// Indexes `ids` (node `i` has `ids[i]`); two equal ids are an error.
    pub fn new(ids: impl Iterator<Item = i64> + Clone) -> Result<IdIndex, NodeError> {
        let (mut count, mut max, mut min) = (0usize, i64::MIN, i64::MAX);
        for id in ids.clone() {
            count += 1;
            (max, min) = (max.max(id), min.min(id));
        }
        let duplicate = |id| NodeError::DuplicateId { id };
        if count > 0 && min >= 0 && (max as u64) < 2 * count as u64 + 16 {
            let mut table = vec![NONE; max as usize + 1];
            for (i, id) in ids.enumerate() {
                let slot = &mut table[id as usize];
                if *slot != NONE {
                    return Err(duplicate(id));
                }
                *slot = i as u32;
            }
            return Ok(IdIndex::Dense(table));
        }
        let mut map = FxHashMap::default();
        map.reserve(count);
        for (i, id) in ids.enumerate() {
            if map.insert(id, i as u32).is_some() {
                return Err(duplicate(id));
            }
        }
        Ok(IdIndex::Sparse(map))
    }

    pub fn get(&self, id: i64) -> Option<u32> {
        match self {
            IdIndex::Dense(table) => usize::try_from(id)
                .ok()
                .and_then(|i| table.get(i))
                .copied()
                .filter(|&i| i != NONE),
            IdIndex::Sparse(map) => map.get(&id).copied(),
        }
    }
}

/// A validated call tree: each node's parent (the root's is `NONE`) and its
/// depth (the root's is 0), in the file's node order.
pub(crate) struct Tree {
    pub parent: Vec<u32>,
    pub depth: Vec<u32>,
}

pub(crate) const NONE: u32 = u32::MAX;

impl Tree {
    /// Frames of the stack of node `i`: its path to the root, root
    /// excluded, or 1 for the root itself.
    fn frames(&self, i: usize) -> u64 {
        u64::from(self.depth[i].max(1))
    }
}

/// Builds a pprof profile from a validated tree: interns one function and
/// location per distinct frame, and adds one sample per node with values.
pub(crate) struct ProfileBuilder {
    strings: StringInterner,
    profile: Profile,
    /// Location id per distinct display name.
    by_name: FxHashMap<String, u64>,
    /// Location id per node.
    node_location: Vec<u64>,
}

impl ProfileBuilder {
    /// A profile with these `(type, unit)` sample types, the last one the
    /// default, and a location for each of `frames` (one per tree node).
    pub fn new<'f, 'c: 'f>(
        sample_types: &[(&str, &str)],
        frames: impl ExactSizeIterator<Item = &'f CallFrame<'c>>,
    ) -> ProfileBuilder {
        let mut b = ProfileBuilder {
            strings: StringInterner::new(),
            profile: Profile::new(),
            by_name: FxHashMap::default(),
            node_location: Vec::with_capacity(frames.len()),
        };
        for &(t, u) in sample_types {
            let vt = ValueType {
                r#type: b.strings.intern(t),
                unit: b.strings.intern(u),
            };
            b.profile.sample_type.push(vt);
        }
        if let Some(&(t, _)) = sample_types.last() {
            b.profile.default_sample_type = b.strings.intern(t);
        }
        for frame in frames {
            let name = frame.display_name();
            let id = match b.by_name.get(&name) {
                Some(&id) => id,
                None => {
                    let id = b.profile.function.len() as u64 + 1;
                    let (line, column) = (frame.line(), frame.column());
                    b.profile.function.push(Function {
                        id,
                        name: b.strings.intern(&name),
                        system_name: 0,
                        filename: b.strings.intern(&frame.url),
                        start_line: line,
                    });
                    b.profile.location.push(Location {
                        id,
                        line: vec![Line {
                            function_id: id,
                            line,
                            column,
                        }],
                        ..Location::default()
                    });
                    b.by_name.insert(name, id);
                    id
                }
            };
            b.node_location.push(id);
        }
        b
    }

    /// Access to the profile's header fields (times, period, comments).
    pub fn profile(&mut self) -> &mut Profile {
        &mut self.profile
    }

    pub fn intern(&mut self, s: &str) -> i64 {
        self.strings.intern(s)
    }

    /// Adds a sample for each `(node, values)`, after checking the frame
    /// budget for all of them.
    pub fn add_samples(
        &mut self,
        tree: &Tree,
        samples: Vec<(usize, Vec<i64>)>,
        budget: u64,
    ) -> Result<(), NodeError> {
        let frames: u64 = samples.iter().map(|(i, _)| tree.frames(*i)).sum();
        if frames > budget {
            return Err(NodeError::TooManyFrames {
                frames,
                limit: budget,
            });
        }
        self.profile.sample.reserve(samples.len());
        for (node, value) in samples {
            let mut stack = Vec::with_capacity(tree.frames(node) as usize);
            let mut at = node;
            while tree.parent[at] != NONE {
                stack.push(self.node_location[at]);
                at = tree.parent[at] as usize;
            }
            if stack.is_empty() {
                stack.push(self.node_location[node]);
            }
            self.profile.sample.push(firewatch_profile::Sample {
                location_id: stack,
                value,
                label: Vec::new(),
            });
        }
        Ok(())
    }

    /// The finished profile's pprof encoding.
    pub fn encode(mut self) -> Vec<u8> {
        self.profile.string_table = self.strings.into_table();
        self.profile.encode()
    }
}

/// Why bytes that failed to decode as pprof are not a profile, when they
/// are (or start like) JSON: invalid JSON, or JSON of another shape.
pub(crate) fn not_a_node_profile(bytes: &[u8]) -> Option<String> {
    let text = json::strip_bom(bytes);
    let first = *text.iter().find(|b| !b.is_ascii_whitespace())?;
    if first != b'{' && first != b'[' {
        return None;
    }
    const EXPECTED: &str = "pprof, a .cpuprofile (a JSON object with nodes, samples and timeDeltas) or a .heapprofile (one with head)";
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        return Some(format!(
            "not a profile: invalid JSON ({e}); expected {EXPECTED}"
        ));
    }
    let keys = json::top_level_keys(text).map_or(Vec::new(), |k| k.keys);
    let mut names: Vec<String> = keys
        .iter()
        .take(8)
        .map(|k| String::from_utf8_lossy(&k[..k.len().min(40)]).into_owned())
        .collect();
    if keys.len() > 8 {
        names.push("…".into());
    }
    Some(if first == b'[' {
        format!("not a profile: a JSON array; expected {EXPECTED}")
    } else {
        format!(
            "not a profile: a JSON object with keys [{}]; expected {EXPECTED}",
            names.join(", ")
        )
    })
}

/// Rounds `num / den` half up, for positive `den` (JavaScript's
/// `Math.round` on the quotient, as DevTools' millisecond floats would
/// give before firewatch keeps whole microseconds).
pub(crate) fn div_round(num: i64, den: i64) -> i64 {
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    if 2 * r >= den {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(name: &'a str, url: &'a str, line: i64, column: i64) -> CallFrame<'a> {
        CallFrame {
            function_name: name.into(),
            url: url.into(),
            line_number: line,
            column_number: column,
        }
    }

    #[test]
    fn frames_are_named_as_devtools_shows_them() {
        assert_eq!(
            frame("hotLoop", "file:///app/w.js", 3, 16).display_name(),
            "hotLoop (file:///app/w.js:4:17)"
        );
        assert_eq!(
            frame("", "node:internal/timers", 0, 0).display_name(),
            "(anonymous) (node:internal/timers:1:1)"
        );
        assert_eq!(frame("(program)", "", -1, -1).display_name(), "(program)");
        assert_eq!(frame("f", "u.js", -1, -1).display_name(), "f (u.js)");
        assert_eq!(frame("f", "u.js", 9, -1).display_name(), "f (u.js:10)");
        let far = frame("f", "u.js", i64::MAX, i64::MIN);
        assert_eq!(far.display_name(), format!("f (u.js:{})", i64::MAX));
    }

    #[test]
    fn rounding_is_half_up() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(5, 3), 2);
        assert_eq!(div_round(0, 7), 0);
    }
}
