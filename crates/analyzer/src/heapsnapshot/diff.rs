//! What is new in a snapshot compared with earlier ones of the same
//! process. V8 keeps an object's id for its whole life (ids are not
//! reused), so an object whose id the base lacks was allocated after the
//! base was written. With two bases, memlab's rule: allocated between the
//! first and the second (in the second, not in the first) and still alive
//! in the target.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::analysis::{Analyzed, PathStep};
use super::parse::Snapshot;

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Diff {
    /// `new-since-base` (one base) or `allocated-between-bases-still-alive`
    /// (two), or `constructor-counts` when the ids are not comparable.
    pub rule: &'static str,
    /// New objects, as [`is_candidate`] counts them.
    pub new_objects: u64,
    pub new_self_size: u64,
    /// By constructor, sorted by retained size.
    pub constructors: Vec<DiffClass>,
    /// By retaining path (element indexes folded to `[]`).
    pub paths: Vec<DiffPath>,
    /// When the ids are not comparable: count and size per constructor.
    pub counts: Vec<CountChange>,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct DiffClass {
    pub name: String,
    pub count: u64,
    pub self_size: u64,
    /// Retained size of the new objects not dominated by another new one.
    pub retained_size: u64,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct DiffPath {
    /// Constructor of the objects at the end of the path.
    pub class: String,
    pub count: u64,
    pub retained_size: u64,
    /// One of them, its path from the root.
    pub example_id: u32,
    pub path: Vec<PathStep>,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct CountChange {
    pub name: String,
    pub base_count: u64,
    pub count: u64,
    pub base_self_size: u64,
    pub self_size: u64,
}

/// What groups retaining paths: per step, the edge's name (`u32::MAX` for
/// an index, so that all entries of one array or table are one path) and
/// the node's class (its name for a synthetic node, flagged by the high
/// bit), as string and class indexes rather than text.
fn path_key(a: &Analyzed, node: usize) -> Vec<(u32, u32)> {
    let s = &a.snapshot;
    let mut key = Vec::new();
    let mut at = node;
    while a.path_edge[at] != super::analysis::NONE && key.len() < 64 {
        let e = a.path_edge[at] as usize;
        let t = s.edge_type[e];
        let name = s.edge_name[e];
        let indexed = s.edge_name_is_index(t) || {
            let text = s.strings.get(name);
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
        };
        let edge = if indexed { u32::MAX } else { name };
        let node = if s.node_type_name(at) == "synthetic" {
            s.node_name[at] | 1 << 31
        } else {
            a.class[at]
        };
        key.push((edge, node));
        at = a.edge_source(e);
    }
    key
}

/// Sorted ids of a snapshot's nodes.
pub(crate) fn ids(s: &Snapshot) -> Vec<u32> {
    let mut ids = s.node_id.clone();
    ids.sort_unstable();
    ids
}

fn contains(sorted: &[u32], id: u32) -> bool {
    sorted.binary_search(&id).is_ok()
}

/// Whether `base` looks like an earlier snapshot of the same process as
/// `target`: most objects with an id in both have the same type and name.
/// Different processes number their objects alike (1, 3, 5…), so sharing
/// ids proves nothing; sharing what the ids name does.
pub(crate) fn same_process(base: &Snapshot, target: &Snapshot) -> bool {
    let by_id: FxHashMap<u32, usize> = base
        .node_id
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let (mut common, mut same) = (0u64, 0u64);
    for i in 1..target.node_count() {
        if target.node_type_name(i) == "synthetic" {
            continue;
        }
        if let Some(&j) = by_id.get(&target.node_id[i]) {
            common += 1;
            if base.node_type_name(j) == target.node_type_name(i) && base.name(j) == target.name(i)
            {
                same += 1;
            }
        }
    }
    common > 0 && same * 10 >= common * 9
}

/// Whether a node is an object a program made (memlab's leak candidates):
/// an object, closure, regexp or native object, not one of V8's own
/// (`system / …`). Arrays, strings, code and hidden nodes are not listed
/// as new on their own; their size counts in the retained size of the
/// candidate that dominates them, which is how a leaked object's payload
/// is charged to it rather than to its backing store.
fn is_candidate(a: &Analyzed, i: usize) -> bool {
    a.is_object(i)
        && matches!(
            a.snapshot.node_type_name(i),
            "object" | "closure" | "regexp" | "native"
        )
        && !a.snapshot.name(i).starts_with("system /")
}

/// The new objects of `a` given the bases' sorted ids (`bases.len()` is 1
/// or 2).
pub(crate) fn diff(a: &Analyzed, bases: &[Vec<u32>], limit: usize) -> Diff {
    let s = &a.snapshot;
    let n = s.node_count();
    let is_new: Vec<bool> = (0..n)
        .map(|i| {
            let id = s.node_id[i];
            is_candidate(a, i)
                && match bases {
                    [one] => !contains(one, id),
                    [first, second, ..] => contains(second, id) && !contains(first, id),
                    [] => false,
                }
        })
        .collect();
    // Whether a strict dominator of each node is new: down the dominator
    // tree from the root, parents before children.
    let mut covered = vec![false; n];
    let (start, children) = super::dominators::children(&a.dominators.idom);
    let mut stack = vec![0u32];
    while let Some(v) = stack.pop() {
        let v = v as usize;
        for &c in &children[start[v] as usize..start[v + 1] as usize] {
            covered[c as usize] = covered[v] || is_new[v];
            stack.push(c);
        }
    }
    drop((start, children));
    let mut classes: FxHashMap<u32, DiffClass> = FxHashMap::default();
    let mut paths: FxHashMap<(u32, Vec<(u32, u32)>), DiffPath> = FxHashMap::default();
    let (mut new_objects, mut new_self_size) = (0u64, 0u64);
    for i in 0..n {
        if !is_new[i] {
            continue;
        }
        new_objects += 1;
        let size = u64::from(s.self_size[i]);
        new_self_size += size;
        let c = a.class[i];
        let row = classes.entry(c).or_insert_with(|| DiffClass {
            name: a.classes[c as usize].clone(),
            count: 0,
            self_size: 0,
            retained_size: 0,
        });
        row.count += 1;
        row.self_size += size;
        // Retained once: only where no new object dominates this one.
        if covered[i] {
            continue;
        }
        let retained = a.dominators.retained[i];
        row.retained_size += retained;
        let entry = paths
            .entry((c, path_key(a, i)))
            .or_insert_with(|| DiffPath {
                class: a.classes[c as usize].clone(),
                count: 0,
                retained_size: 0,
                example_id: s.node_id[i],
                path: a.path(i),
            });
        entry.count += 1;
        entry.retained_size += retained;
    }
    let mut constructors: Vec<DiffClass> = classes.into_values().collect();
    constructors.sort_by(|x, y| {
        y.retained_size
            .cmp(&x.retained_size)
            .then(y.count.cmp(&x.count))
            .then_with(|| x.name.cmp(&y.name))
    });
    constructors.truncate(limit);
    let mut paths: Vec<DiffPath> = paths.into_values().collect();
    paths.sort_by(|x, y| {
        y.retained_size
            .cmp(&x.retained_size)
            .then(y.count.cmp(&x.count))
            .then(x.example_id.cmp(&y.example_id))
    });
    paths.truncate(limit);
    Diff {
        rule: if bases.len() == 1 {
            "new-since-base"
        } else {
            "allocated-between-bases-still-alive"
        },
        new_objects,
        new_self_size,
        constructors,
        paths,
        counts: Vec::new(),
    }
}

/// Count and self size per constructor, target against base, for
/// snapshots whose ids are not comparable; sorted by growth in size.
pub(crate) fn constructor_counts(base: &Analyzed, target: &Analyzed, limit: usize) -> Diff {
    fn tally(a: &Analyzed) -> FxHashMap<&str, (u64, u64)> {
        let mut m: FxHashMap<&str, (u64, u64)> = FxHashMap::default();
        for i in 0..a.snapshot.node_count() {
            let e = m.entry(a.class_name(i)).or_default();
            e.0 += 1;
            e.1 += u64::from(a.snapshot.self_size[i]);
        }
        m
    }
    let (b, t) = (tally(base), tally(target));
    let names: FxHashSet<&str> = b.keys().chain(t.keys()).copied().collect();
    let mut counts: Vec<CountChange> = names
        .into_iter()
        .map(|name| {
            let (bc, bs) = b.get(name).copied().unwrap_or_default();
            let (tc, ts) = t.get(name).copied().unwrap_or_default();
            CountChange {
                name: name.to_string(),
                base_count: bc,
                count: tc,
                base_self_size: bs,
                self_size: ts,
            }
        })
        .filter(|c| c.base_count != c.count || c.base_self_size != c.self_size)
        .collect();
    counts.sort_by(|x, y| {
        let growth = |c: &CountChange| c.self_size as i128 - c.base_self_size as i128;
        growth(y).cmp(&growth(x)).then_with(|| x.name.cmp(&y.name))
    });
    counts.truncate(limit);
    Diff {
        rule: "constructor-counts",
        new_objects: 0,
        new_self_size: 0,
        constructors: Vec::new(),
        paths: Vec::new(),
        counts,
    }
}
