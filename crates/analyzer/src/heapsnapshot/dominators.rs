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
//! exactly, including for nodes unreachable from the root.

use super::parse::Snapshot;

pub(crate) struct Dominators {
    /// Immediate dominator of each node (ordinal); the root's is itself.
    pub idom: Vec<u32>,
    pub retained: Vec<u64>,
}

const ROOT: usize = 0;

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

/// Rule 1: the page-owned flag per node.
fn page_owned(s: &Snapshot, k: &Kinds) -> Vec<bool> {
    let mut flag = vec![false; s.node_count()];
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
        flag[to as usize] = true;
    }
    while let Some(v) = stack.pop() {
        for e in s.edges(v as usize) {
            let to = s.edge_to[e];
            if flag[to as usize] || s.edge_type[e] == k.weak {
                continue;
            }
            stack.push(to);
            flag[to as usize] = true;
        }
    }
    flag
}

/// Rule 2 for every edge: whether it counts for domination.
fn essential_edges(s: &Snapshot, k: &Kinds, flag: &[bool]) -> Vec<bool> {
    use rayon::prelude::*;
    let mut out = vec![false; s.edge_count()];
    // Ranges of nodes with about the same number of edges each.
    let pieces = rayon::current_num_threads() * 8;
    let per = s.edge_count() / pieces + 1;
    let mut bounds = vec![0usize];
    for (i, &f) in s.first_edge.iter().enumerate() {
        if f as usize >= bounds.len() * per && i > *bounds.last().unwrap_or(&0) {
            bounds.push(i);
        }
    }
    if *bounds.last().unwrap_or(&0) != s.node_count() {
        bounds.push(s.node_count());
    }
    let mut slices = Vec::with_capacity(bounds.len());
    let mut rest: &mut [bool] = &mut out;
    for w in bounds.windows(2) {
        let (head, tail) = rest.split_at_mut((s.first_edge[w[1]] - s.first_edge[w[0]]) as usize);
        slices.push((w[0]..w[1], head));
        rest = tail;
    }
    slices.into_par_iter().for_each(|(nodes, out)| {
        let base = s.first_edge[nodes.start] as usize;
        for from in nodes {
            for e in s.edges(from) {
                let (t, to) = (s.edge_type[e], s.edge_to[e] as usize);
                out[e - base] = from != to
                    && t != k.weak
                    && (t != k.shortcut || from == ROOT)
                    && !(from != ROOT && flag[to] && !flag[from]);
            }
        }
    });
    out
}

pub(crate) fn compute(s: &Snapshot) -> Dominators {
    let k = Kinds::of(s);
    let n_nodes = s.node_count();
    let flag = page_owned(s, &k);
    // Rule 2 decided once per edge, in parallel over ranges of nodes.
    let is_essential = essential_edges(s, &k, &flag);
    drop(flag);
    let essential = |_from: usize, e: usize| is_essential[e];

    // Essential predecessors (reverse CSR), and whether a node has any
    // retainer other than weak and shortcut edges: built while the first
    // search runs, which needs neither.
    let build_preds = || {
        let mut pred_start = vec![0u32; n_nodes + 1];
        let mut strong = vec![false; n_nodes];
        for (e, (&t, &to)) in s.edge_type.iter().zip(&s.edge_to).enumerate() {
            let to = to as usize;
            if t != k.weak && t != k.shortcut {
                strong[to] = true;
            }
            if is_essential[e] {
                pred_start[to + 1] += 1;
            }
        }
        for i in 0..n_nodes {
            pred_start[i + 1] += pred_start[i];
        }
        let mut fill = pred_start.clone();
        let mut preds = vec![0u32; pred_start[n_nodes] as usize];
        for from in 0..n_nodes {
            for e in s.edges(from) {
                if is_essential[e] {
                    let to = s.edge_to[e] as usize;
                    preds[fill[to] as usize] = from as u32;
                    fill[to] += 1;
                }
            }
        }
        drop(fill);
        (pred_start, preds, strong)
    };

    // Vertices are ordinals + 1; 0 is "none".
    let len = n_nodes + 1;
    let mut parent = vec![0u32; len];
    let mut semi = vec![0u32; len];
    let mut vertex = vec![0u32; len];
    let mut label = vec![0u32; len];
    let mut next_edge: Vec<u32> = s.first_edge[..n_nodes].to_vec();
    let mut n = 0u32;
    let r = ROOT as u32 + 1;

    let mut dfs = |start: u32,
                   parent: &mut [u32],
                   semi: &mut [u32],
                   vertex: &mut [u32],
                   label: &mut [u32],
                   n: &mut u32| {
        let mut v = start;
        while v != 0 {
            if semi[v as usize] == 0 {
                *n += 1;
                semi[v as usize] = *n;
                vertex[*n as usize] = v;
                label[v as usize] = v;
            }
            let mut v_next = parent[v as usize];
            let from = v as usize - 1;
            let end = s.first_edge[from + 1];
            while next_edge[from] < end {
                let e = next_edge[from] as usize;
                let to = s.edge_to[e] as usize;
                if essential(from, e) && semi[to + 1] == 0 {
                    parent[to + 1] = v;
                    v_next = to as u32 + 1;
                    break;
                }
                next_edge[from] += 1;
            }
            v = v_next;
        }
    };
    let ((pred_start, preds, strong), ()) = rayon::join(build_preds, || {
        dfs(r, &mut parent, &mut semi, &mut vertex, &mut label, &mut n)
    });
    if (n as usize) < n_nodes {
        for v in 1..=n_nodes as u32 {
            if semi[v as usize] == 0 && !strong[v as usize - 1] {
                parent[v as usize] = r;
                dfs(v, &mut parent, &mut semi, &mut vertex, &mut label, &mut n);
            }
        }
    }
    drop(next_edge);
    drop(strong);
    if (n as usize) < n_nodes {
        for v in 1..=n_nodes as u32 {
            if semi[v as usize] == 0 {
                parent[v as usize] = r;
                n += 1;
                semi[v as usize] = n;
                vertex[n as usize] = v;
                label[v as usize] = v;
            }
        }
    }

    let mut ancestor = vec![0u32; len];
    let mut dom = vec![0u32; len];
    let mut bucket_head = vec![0u32; len];
    let mut bucket_next = vec![0u32; len];
    let mut path: Vec<u32> = Vec::new();
    let mut evaluate = |v: u32, ancestor: &mut [u32], label: &mut [u32], semi: &[u32]| -> u32 {
        if ancestor[v as usize] == 0 {
            return v;
        }
        // Compress the path to v, iteratively.
        let mut x = v;
        while ancestor[ancestor[x as usize] as usize] != 0 {
            path.push(x);
            x = ancestor[x as usize];
        }
        while let Some(w) = path.pop() {
            let a = ancestor[w as usize] as usize;
            if semi[label[a] as usize] < semi[label[w as usize] as usize] {
                label[w as usize] = label[a];
            }
            ancestor[w as usize] = ancestor[a];
        }
        label[v as usize]
    };
    for i in (2..=n as usize).rev() {
        let w = vertex[i];
        let w_ord = w as usize - 1;
        let ps = &preds[pred_start[w_ord] as usize..pred_start[w_ord + 1] as usize];
        if ps.is_empty() {
            semi[w as usize] = semi[r as usize];
        }
        for &p in ps {
            let u = evaluate(p + 1, &mut ancestor, &mut label, &semi);
            if semi[u as usize] < semi[w as usize] {
                semi[w as usize] = semi[u as usize];
            }
        }
        let sd = vertex[semi[w as usize] as usize] as usize;
        bucket_next[w as usize] = bucket_head[sd];
        bucket_head[sd] = w;
        let pw = parent[w as usize];
        ancestor[w as usize] = pw;
        let mut v = std::mem::take(&mut bucket_head[pw as usize]);
        while v != 0 {
            let u = evaluate(v, &mut ancestor, &mut label, &semi);
            dom[v as usize] = if semi[u as usize] < semi[v as usize] {
                u
            } else {
                pw
            };
            v = bucket_next[v as usize];
        }
    }
    drop((
        preds,
        pred_start,
        ancestor,
        label,
        bucket_head,
        bucket_next,
        parent,
    ));
    dom[0] = r;
    dom[r as usize] = r;
    for i in 2..=n as usize {
        let w = vertex[i] as usize;
        if dom[w] != vertex[semi[w] as usize] {
            dom[w] = dom[dom[w] as usize];
        }
    }
    drop(semi);

    let idom: Vec<u32> = (0..n_nodes).map(|o| dom[o + 1] - 1).collect();
    drop(dom);
    let mut retained: Vec<u64> = s.self_size.iter().map(|&v| u64::from(v)).collect();
    for i in (2..=n as usize).rev() {
        let o = vertex[i] as usize - 1;
        retained[idom[o] as usize] += retained[o];
    }
    Dominators { idom, retained }
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
            let d = compute(&s);
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
        let d = compute(&s);
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
