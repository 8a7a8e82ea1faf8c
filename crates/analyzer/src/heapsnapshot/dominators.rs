//! The dominator tree and retained sizes, by memlab's rules.
//!
//! memlab (`packages/core/src/paths/TraceFinder.ts`,
//! `computeDominatorsAndRetainedSizes`) is the reference; each rule is
//! listed in `docs/node.md`. In short:
//!
//! 1. **Page-owned nodes.** Nodes reachable from the root (node 0) through
//!    its edges other than `shortcut` ones and `element` edges to the
//!    `(Document DOM trees)` synthetic node, then through any non-`weak`
//!    edge, are flagged.
//! 2. **Essential edges.** An edge counts for domination unless it is a
//!    self edge, `weak`, a `shortcut` from any node but the root, or goes
//!    from an unflagged node into a flagged one (other than from the root).
//! 3. **Lengauer–Tarjan** from the root over essential edges, in the
//!    file's edge order (iterative DFS, path compression without
//!    recursion). Nodes the DFS misses are then attached under the root:
//!    first, in node order, those with only `weak`/`shortcut` retainers
//!    (each starting a DFS of its own), then every node still unnumbered.
//!    A node with no essential retainer has the root as semidominator.
//! 4. **Retained size** is the self size plus the retained sizes of the
//!    nodes it immediately dominates, added in reverse DFS order.
//!
//! The steps and their order are memlab's so that the numbers match it
//! exactly, including for nodes unreachable from the root. The
//! computation differs in form only: the arrays are indexed by search
//! (preorder) number, so that the main loops read them in order, and the
//! immediate dominators come from the semidominators by the semi-NCA rule
//! (Georgiadis, Tarjan and Werneck's; the same tree as Lengauer and
//! Tarjan's steps 3 and 4, with fewer passes over memory). The test
//! `random_graphs_with_unreachable_parts_equal_memlab`
//! (`tests/node_heapsnapshot.rs`) holds the result to memlab itself on
//! random graphs with unreachable parts.

use super::parse::Snapshot;

pub(crate) struct Dominators {
    /// Immediate dominator of each node (ordinal); the root's is itself.
    pub idom: Vec<u32>,
    pub retained: Vec<u64>,
}

/// The dominator tree by search (preorder) number, where the class
/// summary walks it.
pub(crate) struct Tree {
    /// The node of each number.
    pub order: Vec<u32>,
    /// Each number's immediate dominator's number (the root's is 0).
    pub idom: Vec<u32>,
    /// Each number's retained size.
    pub retained: Vec<u64>,
    /// A buffer of a number per node, free for the walk's use.
    pub spare: Vec<u32>,
}

const ROOT: usize = 0;
const NONE: u32 = u32::MAX;

/// What the edge rules need to know about a snapshot's types.
struct Kinds {
    weak: u32,
    shortcut: u32,
    element: u32,
    synthetic: u32,
}

impl Kinds {
    fn of(s: &Snapshot) -> Kinds {
        let none = u32::MAX;
        Kinds {
            weak: s.edge_type_index("weak").unwrap_or(none),
            shortcut: s.edge_type_index("shortcut").unwrap_or(none),
            element: s.edge_type_index("element").unwrap_or(none),
            synthetic: s.node_type_index("synthetic").unwrap_or(none),
        }
    }
}

/// A set of node ordinals, a bit each: the searches test a node or two
/// per edge, and at a bit a node the set stays in the cache.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    #[inline(always)]
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
}

/// Rules 1 and 2: the page-owned flags, and whether an edge is essential
/// (decided where an edge is read rather than stored for each edge).
struct Rules<'a> {
    s: &'a Snapshot,
    k: Kinds,
    page_owned: Bits,
}

/// What rule 2 needs to know about an edge's source.
#[derive(Clone, Copy)]
struct Source {
    from: usize,
    root: bool,
    /// Not page-owned (and not the root): its edges into page-owned
    /// nodes do not count.
    foreign: bool,
}

impl<'a> Rules<'a> {
    fn new(s: &'a Snapshot) -> Rules<'a> {
        let k = Kinds::of(s);
        let mut flag = Bits::new(s.node_count());
        let mut stack: Vec<u32> = Vec::new();
        for e in s.edges(ROOT) {
            let (t, to) = (s.edge_type[e], s.edge_to[e]);
            if t == k.shortcut
                || (t == k.element
                    && s.node_type[to as usize] == k.synthetic
                    && s.name(to as usize) == "(Document DOM trees)")
            {
                continue;
            }
            stack.push(to);
            flag.set(to as usize);
        }
        while let Some(v) = stack.pop() {
            for e in s.edges(v as usize) {
                let to = s.edge_to[e];
                if flag.get(to as usize) || s.edge_type[e] == k.weak {
                    continue;
                }
                stack.push(to);
                flag.set(to as usize);
            }
        }
        Rules {
            s,
            k,
            page_owned: flag,
        }
    }

    #[inline(always)]
    fn source(&self, from: usize) -> Source {
        let root = from == ROOT;
        Source {
            from,
            root,
            foreign: !root && !self.page_owned.get(from),
        }
    }

    /// Rule 2 for edge `e` of `src`, which goes to `to`.
    #[inline(always)]
    fn essential(&self, src: Source, e: usize, to: usize) -> bool {
        let t = self.s.edge_type[e];
        src.from != to
            && t != self.k.weak
            && (t != self.k.shortcut || src.root)
            && !(src.foreign && self.page_owned.get(to))
    }
}

/// Rule 3's search, in memlab's order: `order` lists the nodes by search
/// (preorder) number, `pre` is each node's number and `parent` each
/// number's parent's number.
struct Search {
    order: Vec<u32>,
    pre: Vec<u32>,
    parent: Vec<u32>,
    seen: Bits,
}

impl Search {
    fn number(&mut self, v: usize, parent: u32) -> u32 {
        let n = self.order.len() as u32;
        self.seen.set(v);
        self.pre[v] = n;
        self.order.push(v as u32);
        self.parent.push(parent);
        n
    }

    /// Depth-first from `start` (numbered here, under `parent`) over
    /// essential edges to nodes not yet numbered, each node's edges in the
    /// file's order; iterative, with a stack of (node, its number, next
    /// edge).
    fn dfs(&mut self, rules: &Rules, start: usize, parent: u32) {
        let s = rules.s;
        let n = self.number(start, parent);
        let mut stack: Vec<(u32, u32, u32)> = vec![(start as u32, n, s.first_edge[start])];
        while let Some(top) = stack.last_mut() {
            let (v, pv, mut e) = *top;
            let src = rules.source(v as usize);
            let end = s.first_edge[v as usize + 1];
            let mut next = NONE;
            while e < end {
                let to = s.edge_to[e as usize];
                e += 1;
                if !self.seen.get(to as usize) && rules.essential(src, e as usize - 1, to as usize)
                {
                    next = to;
                    break;
                }
            }
            top.2 = e;
            if next == NONE {
                stack.pop();
            } else {
                let n = self.number(next as usize, pv);
                stack.push((next, n, s.first_edge[next as usize]));
            }
        }
    }
}

/// The retainers of each node by the edges that may be essential,
/// `preds[start[v]..start[v + 1]]` (node ordinals): rule 2 but for the
/// page-owned part, which needs rule 1's flags and is checked where the
/// lists are read, so that the lists are built while the flags are.
/// Also which nodes have a retainer other than weak and shortcut edges.
fn retainers(s: &Snapshot) -> (Vec<u32>, Vec<u32>, Bits) {
    let k = Kinds::of(s);
    let n = s.node_count();
    let may_count = |from: usize, e: usize, to: usize| {
        let t = s.edge_type[e];
        from != to && t != k.weak && (t != k.shortcut || from == ROOT)
    };
    let mut start = vec![0u32; n + 1];
    let mut strong = Bits::new(n);
    for from in 0..n {
        for e in s.edges(from) {
            let (t, to) = (s.edge_type[e], s.edge_to[e] as usize);
            if t != k.weak && t != k.shortcut {
                strong.set(to);
            }
            start[to] += u32::from(may_count(from, e, to));
        }
    }
    // Each list's end; filling moves it back to the list's start.
    let mut sum = 0u32;
    for c in start.iter_mut() {
        sum += *c;
        *c = sum;
    }
    let mut preds = vec![0u32; sum as usize];
    for from in (0..n).rev() {
        for e in s.edges(from) {
            let to = s.edge_to[e] as usize;
            if may_count(from, e, to) {
                start[to] -= 1;
                preds[start[to] as usize] = from as u32;
            }
        }
    }
    (start, preds, strong)
}

/// The dominators, and on the side `first` and `last` (given `first`'s
/// result): the search and the semidominator pass are serial, and the
/// work that does not depend on them fills the other threads. The
/// retainer lists are built while the page-owned nodes are flagged and
/// the search runs, then `first`; `last` runs while the dominators are
/// worked out from the search.
pub(crate) fn compute<A, B>(
    s: &Snapshot,
    first: impl FnOnce() -> A + Send,
    last: impl FnOnce(&A) -> B + Send,
) -> (Dominators, Tree, A, B)
where
    A: Send + Sync,
    B: Send,
{
    let n_nodes = s.node_count();
    let (((rules, mut search), a), (start, preds, strong)) = rayon::join(
        || {
            rayon::join(
                || {
                    let rules = Rules::new(s);
                    let mut search = Search {
                        order: Vec::with_capacity(n_nodes),
                        pre: vec![0; n_nodes],
                        parent: Vec::with_capacity(n_nodes),
                        seen: Bits::new(n_nodes),
                    };
                    search.dfs(&rules, ROOT, 0);
                    (rules, search)
                },
                first,
            )
        },
        || retainers(s),
    );
    // Nodes the search missed: first those with only weak or shortcut
    // retainers, each searched from, then the rest, numbered alone; all
    // under the root.
    if search.order.len() < n_nodes {
        for v in 0..n_nodes {
            if !search.seen.get(v) && !strong.get(v) {
                search.dfs(&rules, v, 0);
            }
        }
        for v in 0..n_nodes {
            if !search.seen.get(v) {
                search.number(v, 0);
            }
        }
    }
    drop(strong);
    let Search {
        order, pre, parent, ..
    } = search;
    let page_owned = rules.page_owned;
    let ((dominators, tree), b) = rayon::join(
        || from_search(s, &page_owned, order, pre, parent, start, preds),
        || last(&a),
    );
    (dominators, tree, a, b)
}

/// The dominators from the search and the retainers. Buffers whose
/// contents are no longer needed are reused rather than freed and
/// allocated again: new memory costs a page fault per page, a large part
/// of this pass otherwise.
fn from_search(
    s: &Snapshot,
    page_owned: &Bits,
    order: Vec<u32>,
    pre: Vec<u32>,
    parent: Vec<u32>,
    start: Vec<u32>,
    preds: Vec<u32>,
) -> (Dominators, Tree) {
    use rayon::prelude::*;
    let n = order.len();
    // Whether rule 2's page-owned part can apply at all: some node other
    // than the root is not page-owned.
    let owned_count: u32 = page_owned.0.iter().map(|w| w.count_ones()).sum();
    let any_foreign = (owned_count as usize) < n - usize::from(!page_owned.get(ROOT));
    // Semidominators, by decreasing number (Lengauer and Tarjan's step 2,
    // path compression without balancing). A retainer numbered before `w`
    // is its own candidate; one numbered after is already linked, and
    // `eval` gives the least semidominator on its path in the forest (see
    // `link` for `links`).
    let mut semi = vec![0u32; n];
    let mut links = vec![0u64; n];
    let mut path: Vec<u32> = Vec::new();
    for w in (1..n).rev() {
        let v = order[w] as usize;
        // Edges from nodes not page-owned into page-owned ones do not count
        // (rule 2, the part left out of the lists).
        let owned = any_foreign && page_owned.get(v);
        let mut sd = w as u32;
        let mut retained = false;
        for &p in &preds[start[v] as usize..start[v + 1] as usize] {
            if owned && p as usize != ROOT && !page_owned.get(p as usize) {
                continue;
            }
            retained = true;
            let p = pre[p as usize];
            let candidate = if (p as usize) < w {
                p
            } else {
                eval(&mut links, &mut path, p)
            };
            sd = sd.min(candidate);
        }
        // No essential retainer: retained by the root.
        if !retained {
            sd = 0;
        }
        semi[w] = sd;
        links[w] = link::new(parent[w], sd);
    }
    drop((preds, path));
    // Immediate dominators (semi-NCA): the nearest common ancestor, in
    // the dominator tree so far, of the parent and the semidominator:
    // climbing from the parent, the first node numbered at most the
    // semidominator.
    let mut idom_pre = start;
    idom_pre.truncate(n);
    idom_pre[0] = 0;
    for w in 1..n {
        let mut x = parent[w];
        while x > semi[w] {
            x = idom_pre[x as usize];
        }
        idom_pre[w] = x;
    }
    drop(semi);

    // Retained sizes, each node's added to its dominator's after its own
    // is complete: by decreasing number.
    let mut retained_pre = links;
    retained_pre
        .par_iter_mut()
        .zip(order.par_iter())
        .for_each(|(r, &v)| *r = u64::from(s.self_size[v as usize]));
    for w in (1..n).rev() {
        retained_pre[idom_pre[w] as usize] += retained_pre[w];
    }
    let mut idom = parent;
    let (_, retained) = rayon::join(
        || {
            idom.par_iter_mut()
                .zip(pre.par_iter())
                .for_each(|(d, &w)| *d = order[idom_pre[w as usize] as usize])
        },
        || pre.par_iter().map(|&w| retained_pre[w as usize]).collect(),
    );
    (
        Dominators { idom, retained },
        Tree {
            order,
            idom: idom_pre,
            retained: retained_pre,
            spare: pre,
        },
    )
}

/// A node's link in the forest of Lengauer and Tarjan's step 2, one
/// word so that a step up a path reads one place: its ancestor plus one
/// (0 while unlinked) in the low half, the least semidominator on the
/// path up to that ancestor in the high half.
mod link {
    #[inline(always)]
    pub fn new(ancestor: u32, best: u32) -> u64 {
        (u64::from(ancestor) + 1) | (u64::from(best) << 32)
    }

    /// The ancestor, if linked.
    #[inline(always)]
    pub fn ancestor(link: u64) -> Option<u32> {
        (link as u32).checked_sub(1)
    }

    #[inline(always)]
    pub fn best(link: u64) -> u32 {
        (link >> 32) as u32
    }

    /// The same ancestor, another least semidominator.
    #[inline(always)]
    pub fn with_best(link: u64, best: u32) -> u64 {
        (link & 0xffff_ffff) | (u64::from(best) << 32)
    }
}

/// The least semidominator on `v`'s path in the forest (`v` linked),
/// compressing the path on the way: each node on it then links to the
/// last node before the tree's root, with the least semidominator of the
/// part it skips.
#[inline]
fn eval(links: &mut [u64], path: &mut Vec<u32>, v: u32) -> u32 {
    let mut x = v;
    while let Some(a) = link::ancestor(links[x as usize]) {
        if link::ancestor(links[a as usize]).is_none() {
            break;
        }
        path.push(x);
        x = a;
    }
    while let Some(w) = path.pop() {
        let own = links[w as usize];
        let Some(a) = link::ancestor(own) else {
            continue;
        };
        let above = links[a as usize];
        // w now skips a: a's ancestor, and the least of both parts.
        let best = link::best(own).min(link::best(above));
        links[w as usize] = link::with_best(above, best);
    }
    link::best(links[v as usize])
}

/// The dominator tree as lists of children: node `v`'s are
/// `children[start[v]..start[v + 1]]`. Every node but the root has its
/// immediate dominator earlier in the search order, so the tree has no
/// cycle and a walk from the root reaches each node once.
pub(crate) fn children(idom: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let n = idom.len();
    let mut start = vec![0u32; n + 1];
    for &d in idom.iter().skip(1) {
        start[d as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut children = vec![0u32; n.saturating_sub(1)];
    for (i, &d) in idom.iter().enumerate().skip(1) {
        children[fill[d as usize] as usize] = i as u32;
        fill[d as usize] += 1;
    }
    (start, children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heapsnapshot::parse::parse;

    /// A small xorshift generator: deterministic graphs without a
    /// dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A snapshot of `n` nodes (node 0 the root) with these `(from, type,
    /// to)` edges; edge types 0 property, 1 weak, 2 shortcut, 3 element.
    fn snapshot(n: usize, edges: &[(usize, u32, usize)]) -> String {
        let mut by_from = vec![Vec::new(); n];
        for &(f, t, to) in edges {
            by_from[f].push((t, to));
        }
        let nodes: Vec<String> = (0..n)
            .map(|i| format!("1,0,{},{},{}", 2 * i + 1, 10 + i, by_from[i].len()))
            .collect();
        let edges: Vec<String> = by_from
            .iter()
            .flatten()
            .map(|&(t, to)| format!("{t},0,{}", to * 5))
            .collect();
        format!(
            r#"{{"snapshot":{{"meta":{{"node_fields":["type","name","id","self_size","edge_count"],
"node_types":[["hidden","object","synthetic"],"string","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[["property","weak","shortcut","element"],"string_or_number","node"]}}}},
"nodes":[{}],"edges":[{}],"strings":["x"]}}"#,
            nodes.join(","),
            edges.join(",")
        )
    }

    /// Dominators by the textbook fixed point over sets, on the edges that
    /// count (not weak, shortcut only from the root, no self edges), for
    /// graphs where every node is reachable that way.
    fn naive_idom(n: usize, edges: &[(usize, u32, usize)]) -> Vec<usize> {
        let counts = |&(f, t, to): &(usize, u32, usize)| f != to && t != 1 && (t != 2 || f == 0);
        let all: u64 = (1u64 << n) - 1;
        let mut dom = vec![all; n];
        dom[0] = 1;
        let mut changed = true;
        while changed {
            changed = false;
            for v in 1..n {
                let mut d = all;
                for e in edges.iter().filter(|e| e.2 == v && counts(e)) {
                    d &= dom[e.0];
                }
                d |= 1 << v;
                if d != dom[v] {
                    dom[v] = d;
                    changed = true;
                }
            }
        }
        (0..n)
            .map(|v| {
                if v == 0 {
                    return 0;
                }
                // The strict dominator dominated by all the others.
                let strict = dom[v] & !(1 << v);
                (0..n)
                    .filter(|&d| strict & (1 << d) != 0)
                    .max_by_key(|&d| dom[d].count_ones())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn lengauer_tarjan_equals_the_textbook_fixed_point() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..400 {
            let n = 2 + rng.next(30) as usize;
            // A random tree from the root makes every node reachable; then
            // random extra edges of every type, cycles and self edges.
            let mut edges: Vec<(usize, u32, usize)> = (1..n)
                .map(|v| (rng.next(v as u64) as usize, 0, v))
                .collect();
            for _ in 0..rng.next(3 * n as u64) {
                let t = [0, 0, 1, 2, 3][rng.next(5) as usize];
                edges.push((rng.next(n as u64) as usize, t, rng.next(n as u64) as usize));
            }
            // Shuffle so that tree edges are not always first.
            for i in (1..edges.len()).rev() {
                edges.swap(i, rng.next(i as u64 + 1) as usize);
            }
            let s = parse(snapshot(n, &edges).as_bytes()).unwrap();
            let d = compute(&s, || (), |_| ()).0;
            let expected = naive_idom(n, &edges);
            let got: Vec<usize> = d.idom.iter().map(|&v| v as usize).collect();
            assert_eq!(got, expected, "round {round}: {n} nodes, edges {edges:?}");
            // Retained sizes: self size plus the dominated subtrees.
            for v in 0..n {
                let below: u64 = (0..n)
                    .filter(|&w| {
                        let mut x = w;
                        while x != 0 && x != v {
                            x = expected[x];
                        }
                        x == v
                    })
                    .map(|w| 10 + w as u64)
                    .sum();
                assert_eq!(d.retained[v], below, "round {round}: node {v}");
            }
        }
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        // 300,000 nodes in one chain, closed into a cycle: a recursive
        // search would overflow the stack.
        let n = 300_000;
        let mut edges: Vec<(usize, u32, usize)> = (1..n).map(|v| (v - 1, 0, v)).collect();
        edges.push((n - 1, 0, 1));
        let s = parse(snapshot(n, &edges).as_bytes()).unwrap();
        let d = compute(&s, || (), |_| ()).0;
        assert_eq!(d.idom[n - 1] as usize, n - 2);
        let total: u64 = (0..n as u64).map(|i| 10 + i).sum();
        assert_eq!(d.retained[0], total);
        assert_eq!(d.retained[1], total - 10);
    }

    #[test]
    fn mutated_snapshots_never_panic() {
        use crate::heapsnapshot::analysis::Analyzed;
        use crate::heapsnapshot::report::{render_json, render_markdown, render_text, HeapReport};
        let base = snapshot(
            6,
            &[
                (0, 0, 1),
                (1, 3, 2),
                (2, 0, 3),
                (3, 0, 1),
                (0, 2, 4),
                (4, 1, 5),
                (5, 0, 5),
            ],
        );
        let mut rng = Rng(42);
        let alphabet = b"0123456789,[]{}\" -:";
        for _ in 0..3000 {
            let mut bytes = base.clone().into_bytes();
            for _ in 0..1 + rng.next(4) {
                let at = rng.next(bytes.len() as u64) as usize;
                match rng.next(3) {
                    0 => bytes[at] = alphabet[rng.next(alphabet.len() as u64) as usize],
                    1 => drop(bytes.remove(at)),
                    _ => bytes.insert(at, alphabet[rng.next(alphabet.len() as u64) as usize]),
                }
            }
            if let Ok(s) = parse(&bytes) {
                let a = Analyzed::new(s);
                assert_eq!(a.dominators.retained[0], a.total_size());
                let r = HeapReport::new(&a, "x".into(), Vec::new(), 5, None);
                let json = render_json(&r);
                serde_json::from_str::<serde_json::Value>(&json).unwrap();
                let _ = (render_text(&r), render_markdown(&r));
                let _ = crate::heapsnapshot::report::folded_dominators(&a);
            }
        }
    }
}
