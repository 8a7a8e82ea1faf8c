//! What the report shows, computed from a snapshot and its dominators:
//! the summary by constructor, the largest objects with their retaining
//! paths, duplicated strings and the largest collections.

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::dominators::Dominators;
use super::parse::Snapshot;

pub(crate) const NONE: u32 = u32::MAX;

/// A snapshot with everything the reports derive from it.
pub(crate) struct Analyzed {
    pub snapshot: Snapshot,
    pub dominators: Dominators,
    /// Class index per node, into `classes`.
    pub class: Vec<u32>,
    pub classes: Vec<String>,
    /// The edge by which the breadth-first walk from the root first reached
    /// each node (`NONE` for the root and unreachable nodes).
    pub path_edge: Vec<u32>,
    /// Objects, self size and retained size per class (DevTools' rule,
    /// see [`class_summary`]).
    class_totals: Vec<[u64; 3]>,
    /// The index of the `synthetic` node type, or `NONE`.
    synthetic: u32,
    /// Every duplicated string, in the report's order.
    duplicates: Vec<DuplicateString>,
    /// Every collection and its number of entries, in node order.
    collections: Vec<(u32, u64)>,
}

impl Analyzed {
    /// Works out everything but the rows' order in one go: the dominators
    /// (a chain of serial steps) on one thread, while the rest, which does
    /// not depend on them, runs beside it.
    pub fn new(snapshot: Snapshot) -> Analyzed {
        let s = &snapshot;
        let (dominators, tree, (class, classes), (path_edge, (counts, duplicates))) =
            super::dominators::compute(
                s,
                || classes(s),
                |(class, classes)| {
                    rayon::join(
                        || shortest_paths(s),
                        || {
                            rayon::join(
                                || class_counts(s, class, classes),
                                || duplicated_strings_of(s),
                            )
                        },
                    )
                },
            );
        let retained = class_retained(tree, &class, classes.len());
        let (counts, collections) = counts;
        let class_totals = counts
            .into_iter()
            .zip(retained)
            .map(|((count, size), retained)| [count, size, retained])
            .collect();
        Analyzed {
            synthetic: snapshot.node_type_index("synthetic").unwrap_or(NONE),
            snapshot,
            dominators,
            class,
            classes,
            path_edge,
            class_totals,
            duplicates,
            collections,
        }
    }

    pub fn total_size(&self) -> u64 {
        self.snapshot.self_size.iter().map(|&v| u64::from(v)).sum()
    }

    pub fn class_name(&self, node: usize) -> &str {
        &self.classes[self.class[node] as usize]
    }

    /// How a path names a node: its class, or its own name for a
    /// synthetic node (`(GC roots)`, `(Global handles)`).
    pub fn label(&self, node: usize) -> &str {
        if self.snapshot.node_type[node] == self.synthetic {
            self.snapshot.name(node)
        } else {
            self.class_name(node)
        }
    }

    /// The node an edge leaves from.
    pub fn edge_source(&self, edge: usize) -> usize {
        self.snapshot
            .first_edge
            .partition_point(|&f| f as usize <= edge)
            - 1
    }

    /// The retaining path of `node`, root side first (the root excluded).
    pub fn path(&self, node: usize) -> Vec<PathStep> {
        let s = &self.snapshot;
        let mut steps = Vec::new();
        let mut at = node;
        while self.path_edge[at] != NONE && steps.len() < MAX_PATH {
            let e = self.path_edge[at] as usize;
            steps.push(PathStep {
                edge: s.edge_label(e),
                edge_type: s.edge_type_names[s.edge_type[e] as usize].clone(),
                node: self.label(at).to_string(),
                name: s.name(at).to_string(),
                id: s.node_id[at],
            });
            at = self.edge_source(e);
        }
        steps.reverse();
        steps
    }
}

/// Steps of a retaining path shown at most (a path longer than that is cut
/// at the root's side).
const MAX_PATH: usize = 64;

/// DevTools' class name (`HeapSnapshotNode.className`): an object's or
/// native object's constructor name, `(system)` for hidden nodes,
/// `(compiled code)` for code, `(type)` for the rest; `Detached ` before
/// the name of a detached embedder node, as memlab and DevTools name it.
fn class_of(type_name: &str, name: &str, detached: bool) -> String {
    if detached {
        return class_of(type_name, &format!("Detached {name}"), false);
    }
    match type_name {
        "object" | "native" => name.to_string(),
        "hidden" => "(system)".to_string(),
        "code" => "(compiled code)".to_string(),
        other => format!("({other})"),
    }
}

fn classes(s: &Snapshot) -> (Vec<u32>, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    // (type, name string) → class; names repeat far more than they differ.
    let mut by_key: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    let mut by_name: FxHashMap<String, u32> = FxHashMap::default();
    let named_type: Vec<bool> = s
        .node_type_names
        .iter()
        .map(|t| matches!(t.as_str(), "object" | "native"))
        .collect();
    let class = (0..s.node_count())
        .map(|i| {
            // The name matters only for objects and native objects: one
            // key for all strings, say, rather than one per value.
            let t = s.node_type[i];
            let named = named_type[t as usize];
            let key = (
                t | u32::from(s.is_detached(i)) << 16,
                if named { s.node_name[i] } else { u32::MAX },
            );
            if let Some(&c) = by_key.get(&key) {
                return c;
            }
            let name = class_of(s.node_type_name(i), s.name(i), s.is_detached(i));
            let c = *by_name.entry(name).or_insert_with_key(|n| {
                names.push(n.clone());
                names.len() as u32 - 1
            });
            by_key.insert(key, c);
            c
        })
        .collect();
    (class, names)
}

/// Breadth-first from the root, skipping weak edges, shortcut edges other
/// than the root's, and self edges: the first edge to reach each node.
fn shortest_paths(s: &Snapshot) -> Vec<u32> {
    let weak = s.edge_type_index("weak").unwrap_or(NONE);
    let shortcut = s.edge_type_index("shortcut").unwrap_or(NONE);
    let mut parent = vec![NONE; s.node_count()];
    let mut seen = vec![false; s.node_count()];
    // Each node enters the queue once: a vector read from the front,
    // allocated once.
    let mut queue: Vec<u32> = Vec::with_capacity(s.node_count());
    seen[0] = true;
    queue.push(0);
    let mut next = 0;
    while let Some(&v) = queue.get(next) {
        next += 1;
        for e in s.edges(v as usize) {
            let t = s.edge_type[e];
            let to = s.edge_to[e] as usize;
            if seen[to] || t == weak || (t == shortcut && v != 0) {
                continue;
            }
            seen[to] = true;
            parent[to] = e as u32;
            queue.push(to as u32);
        }
    }
    parent
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct PathStep {
    /// The edge's name: a property or variable name, `[index]` for an
    /// element.
    pub edge: String,
    pub edge_type: String,
    /// The class of the node it leads to.
    pub node: String,
    /// That node's own name (a string's value, a closure's function name).
    pub name: String,
    pub id: u32,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct ClassRow {
    pub name: String,
    pub count: u64,
    pub self_size: u64,
    pub retained_size: u64,
    pub retained_percent: f64,
}

/// Objects and their self size per class; and, since the class tells
/// whether a node is a collection, every collection and its entries.
#[allow(clippy::type_complexity)]
fn class_counts(
    s: &Snapshot,
    class: &[u32],
    classes: &[String],
) -> (Vec<(u64, u64)>, Vec<(u32, u64)>) {
    let mut counts = vec![(0u64, 0u64); classes.len()];
    for (i, &c) in class.iter().enumerate() {
        let e = &mut counts[c as usize];
        e.0 += 1;
        e.1 += u64::from(s.self_size[i]);
    }
    (counts, collection_sizes(s, class, classes))
}

/// Each class's retained size: the retained sizes of its objects not
/// dominated by another object of the class, found by a depth-first walk
/// of the dominator tree that keeps, per class, how many nodes of it are
/// open on the current branch. The tree is walked by search number, where
/// a node's children are mostly near it, in the tree's own buffers.
fn class_retained(tree: super::dominators::Tree, class: &[u32], k: usize) -> Vec<u64> {
    use rayon::prelude::*;
    let super::dominators::Tree {
        order: mut cls,
        idom: mut next,
        retained: tree_retained,
        spare: mut first,
    } = tree;
    let n = cls.len();
    let mut retained = vec![0u64; k];
    if n == 0 {
        return retained;
    }
    // The class of each number, where its node was.
    cls.par_iter_mut().for_each(|v| *v = class[*v as usize]);
    // Children as linked lists: the first child of each number, the next
    // sibling of each (where its dominator was, read just before).
    first.fill(NONE);
    for w in (1..n).rev() {
        let d = next[w] as usize;
        next[w] = first[d];
        first[d] = w as u32;
    }
    let mut open = vec![0u32; k];
    // (node, next child); entering counts the node, leaving uncounts.
    let mut stack: Vec<(u32, u32)> = vec![(0, first[0])];
    open[cls[0] as usize] += 1;
    while let Some(top) = stack.last_mut() {
        let (v, child) = *top;
        if child != NONE {
            top.1 = next[child as usize];
            let c = cls[child as usize] as usize;
            if open[c] == 0 {
                retained[c] += tree_retained[child as usize];
            }
            open[c] += 1;
            stack.push((child, first[child as usize]));
        } else {
            open[cls[v as usize] as usize] -= 1;
            stack.pop();
        }
    }
    retained
}

/// The summary by constructor, sorted by retained size. A class's retained
/// size counts its objects not dominated by another object of the same
/// class (DevTools' rule, so that a linked list is not counted once per
/// link).
pub(crate) fn class_summary(a: &Analyzed) -> Vec<ClassRow> {
    let total = a.total_size().max(1) as f64;
    let mut rows: Vec<ClassRow> = a
        .class_totals
        .iter()
        .enumerate()
        .filter(|(_, t)| t[0] > 0)
        .map(|(c, &[count, self_size, retained])| ClassRow {
            name: a.classes[c].clone(),
            count,
            self_size,
            retained_size: retained,
            retained_percent: retained as f64 * 100.0 / total,
        })
        .collect();
    rows.sort_by(|x, y| {
        y.retained_size
            .cmp(&x.retained_size)
            .then(y.self_size.cmp(&x.self_size))
            .then_with(|| x.name.cmp(&y.name))
    });
    rows
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct ObjectRow {
    pub id: u32,
    pub class: String,
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub self_size: u64,
    pub retained_size: u64,
    pub path: Vec<PathStep>,
}

impl Analyzed {
    pub fn object_row(&self, node: usize, with_path: bool) -> ObjectRow {
        let s = &self.snapshot;
        ObjectRow {
            id: s.node_id[node],
            class: self.class_name(node).to_string(),
            name: truncate(s.name(node), 120),
            node_type: s.node_type_name(node).to_string(),
            self_size: u64::from(s.self_size[node]),
            retained_size: self.dominators.retained[node],
            path: if with_path {
                self.path(node)
            } else {
                Vec::new()
            },
        }
    }

    /// Whether an object is one a reader cares about: not the root or a
    /// synthetic node (`(GC roots)` and its groups), which retain
    /// everything by construction.
    pub fn is_object(&self, node: usize) -> bool {
        node != 0 && self.snapshot.node_type[node] != self.synthetic
    }
}

/// Rows of the largest objects that carry their retaining path: `--top 0`
/// lists every object, and millions of paths would make a report of
/// gigabytes.
pub(crate) const MAX_PATHS: usize = 1000;

/// The `limit` largest objects by retained size (ties by id), the first
/// [`MAX_PATHS`] with their retaining path.
pub(crate) fn top_objects(a: &Analyzed, limit: usize) -> Vec<ObjectRow> {
    // Largest first, then by id; the node breaks ties between equal ids.
    let key = |i: u32| {
        (
            std::cmp::Reverse(a.dominators.retained[i as usize]),
            a.snapshot.node_id[i as usize],
            i,
        )
    };
    let objects = (0..a.snapshot.node_count() as u32).filter(|&i| a.is_object(i as usize));
    let mut nodes: Vec<u32> = if limit <= a.snapshot.node_count() / 64 {
        // A few rows: the best `limit` so far in a heap whose top is the
        // worst of them, most nodes rejected by one comparison.
        let mut heap = std::collections::BinaryHeap::with_capacity(limit + 1);
        for i in objects {
            if heap.len() < limit {
                heap.push(key(i));
            } else if heap.peek().is_some_and(|worst| key(i) < *worst) {
                heap.pop();
                heap.push(key(i));
            }
        }
        heap.into_iter().map(|(_, _, i)| i).collect()
    } else {
        let mut nodes: Vec<u32> = objects.collect();
        if limit < nodes.len() {
            nodes.select_nth_unstable_by_key(limit, |&i| key(i));
            nodes.truncate(limit);
        }
        nodes
    };
    nodes.sort_unstable_by_key(|&i| key(i));
    nodes
        .into_iter()
        .enumerate()
        .map(|(k, i)| a.object_row(i as usize, k < MAX_PATHS))
        .collect()
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct DuplicateString {
    /// The value, cut at 120 characters.
    pub value: String,
    pub count: u64,
    pub self_size: u64,
    /// Bytes beyond one copy.
    pub wasted: u64,
}

/// Strings (flat `string` nodes) with the same value more than once; V8's
/// snapshot writer stores each distinct value once in `strings`, so equal
/// names are equal values.
fn duplicated_strings_of(s: &Snapshot) -> Vec<DuplicateString> {
    let Some(string) = s.node_type_index("string") else {
        return Vec::new();
    };
    // (copies, bytes, largest copy) per string index: a table, since
    // names are dense indexes.
    let mut by_name: Vec<(u32, u64, u32)> = vec![(0, 0, 0); s.strings.len()];
    for i in 0..s.node_count() {
        if s.node_type[i] == string {
            let size = s.self_size[i];
            let e = &mut by_name[s.node_name[i] as usize];
            e.0 += 1;
            e.1 += u64::from(size);
            e.2 = e.2.max(size);
        }
    }
    let mut rows: Vec<DuplicateString> = by_name
        .into_iter()
        .enumerate()
        .filter(|(_, (count, _, _))| *count > 1)
        .map(|(name, (count, total, max))| DuplicateString {
            value: truncate(s.strings.get(name as u32), 120),
            count: u64::from(count),
            self_size: total,
            wasted: total - u64::from(max),
        })
        .collect();
    rows.sort_by(|x, y| y.wasted.cmp(&x.wasted).then_with(|| x.value.cmp(&y.value)));
    rows
}

/// The `limit` strings that waste the most.
pub(crate) fn duplicated_strings(a: &Analyzed, limit: usize) -> Vec<DuplicateString> {
    a.duplicates.iter().take(limit).cloned().collect()
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct CollectionRow {
    pub id: u32,
    pub class: String,
    /// Entries: element edges of the collection or of its backing store
    /// (`elements` of an array, `table` of a Map or Set, whose slots are
    /// index-named internal edges), whichever lists more, halved for Maps
    /// (a key and a value each).
    pub elements: u64,
    pub self_size: u64,
    pub retained_size: u64,
}

const COLLECTIONS: [&str; 5] = ["Array", "Map", "Set", "WeakMap", "WeakSet"];

/// Every Array, Map, Set, WeakMap and WeakSet object and its entries, in
/// node order: an object's class is its name unless it is detached.
fn collection_sizes(s: &Snapshot, class: &[u32], classes: &[String]) -> Vec<(u32, u64)> {
    let Some(object) = s.node_type_index("object") else {
        return Vec::new();
    };
    let collection: Vec<bool> = classes
        .iter()
        .map(|c| COLLECTIONS.contains(&c.as_str()))
        .collect();
    let element = s.edge_type_index("element").unwrap_or(NONE);
    let internal = s.edge_type_index("internal").unwrap_or(NONE);
    // Slots of a backing store: element edges, or internal edges named by
    // an index (V8's hash tables write their entries that way).
    let elements_of = |v: usize| {
        s.edges(v)
            .filter(|&e| {
                let t = s.edge_type[e];
                t == element
                    || (t == internal && {
                        let name = s.strings.get(s.edge_name[e]);
                        !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .count() as u64
    };
    (0..s.node_count())
        .filter(|&i| {
            s.node_type[i] == object
                && if s.is_detached(i) {
                    COLLECTIONS.contains(&s.name(i))
                } else {
                    collection[class[i] as usize]
                }
        })
        .map(|i| {
            let mut elements = elements_of(i);
            for e in s.edges(i) {
                if s.edge_type[e] == internal
                    && matches!(s.strings.get(s.edge_name[e]), "elements" | "table")
                {
                    // V8 may list an array's elements on the array and on
                    // its store: the larger count, not the sum.
                    elements = elements.max(elements_of(s.edge_to[e] as usize));
                }
            }
            // A Map's (or WeakMap's) table holds a key and a value per entry.
            if matches!(s.name(i), "Map" | "WeakMap") {
                elements /= 2;
            }
            (i as u32, elements)
        })
        .collect()
}

/// The largest arrays, Maps and Sets by retained size.
pub(crate) fn largest_collections(a: &Analyzed, limit: usize) -> Vec<CollectionRow> {
    let s = &a.snapshot;
    let mut rows: Vec<CollectionRow> = a
        .collections
        .iter()
        .map(|&(i, elements)| {
            let i = i as usize;
            CollectionRow {
                id: s.node_id[i],
                class: s.name(i).to_string(),
                elements,
                self_size: u64::from(s.self_size[i]),
                retained_size: a.dominators.retained[i],
            }
        })
        .collect();
    rows.sort_by(|x, y| y.retained_size.cmp(&x.retained_size).then(x.id.cmp(&y.id)));
    rows.truncate(limit);
    rows
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}
