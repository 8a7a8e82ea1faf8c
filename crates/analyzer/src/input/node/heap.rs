//! `.heapprofile`: V8's `HeapProfiler.SamplingHeapProfile`, as
//! `node --heap-prof` writes it: a `head` call tree whose nodes carry
//! `selfSize`, and `samples` (`size`, `nodeId`, `ordinal`), one per sampled
//! allocation still live when the profile was taken.
//!
//! Sample types `objects/count` (how many `samples` name the node) and
//! `space/bytes` (the node's `selfSize`, what DevTools shows as self size;
//! the default). `objects` counts V8's *sampled* allocations, not an
//! estimate of all of them: the file does not say the sampling interval
//! needed to scale them. A profile without `samples` (V8 before 7.7) has
//! no object counts at all: it gets `space/bytes` only, and a comment in
//! the report says why.
//!
//! V8 lists in `samples` allocations it made while writing the profile,
//! under nodes the tree does not have (Node 20 does). DevTools ignores
//! them (it looks samples up by the tree's ids, in `HeapProfileView.ts`);
//! so does this reader, counting them in a comment.
//!
//! The tree is read with [`Reader`], without
//! recursion, because V8 nests it deeper than serde_json reads.
//!
//! **Memory.** The samples are encoded straight into the pprof bytes, each
//! stack written by walking its node's parents: no stack is held as a list
//! (8 bytes a frame, 800 MB for the 99 M frames of a generated 191 MB
//! profile). The output is sized exactly beforehand from each node's stack
//! length in bytes, which a node inherits from its parent; the frame
//! budget is checked before any of it is built.

use super::json::{JsonError, Reader, MAX_DEPTH};
use super::{frame_budget, CallFrame, IdIndex, NodeError, ProfileBuilder, Tree, NONE};

struct HeapNode<'a> {
    id: i64,
    frame: CallFrame<'a>,
    self_size: i64,
}

/// What the file holds: nodes in the order they appear (a parent before
/// its children), and the node id of each sample, if there are samples.
struct HeapDoc<'a> {
    nodes: Vec<HeapNode<'a>>,
    tree: Tree,
    samples: Option<Vec<i64>>,
}

/// The comment a profile without `samples` carries.
pub(crate) const NO_SAMPLES: &str =
    "this .heapprofile has no samples: object counts are unknown, space only";

/// Converts a `.heapprofile` to pprof bytes.
pub(crate) fn convert(bytes: &[u8]) -> Result<Vec<u8>, NodeError> {
    let doc = read(bytes).map_err(|e| NodeError::Json(e.to_string()))?;
    let index = IdIndex::new(doc.nodes.iter().map(|n| n.id))?;
    let mut count = vec![0i64; doc.nodes.len()];
    let mut outside = 0usize;
    for id in doc.samples.iter().flatten() {
        match index.get(*id) {
            Some(node) => count[node as usize] += 1,
            None => outside += 1,
        }
    }
    drop(index);
    let types: &[(&str, &str)] = if doc.samples.is_some() {
        &[("objects", "count"), ("space", "bytes")]
    } else {
        &[("space", "bytes")]
    };
    let mut b = ProfileBuilder::new(types, doc.nodes.iter().map(|n| &n.frame));
    if doc.samples.is_none() {
        let comment = b.intern(NO_SAMPLES);
        b.profile().comment.push(comment);
    }
    if outside > 0 {
        let comment = b.intern(&format!(
            "{outside} of the .heapprofile's samples name nodes outside its tree (allocations V8 made while writing it): not counted"
        ));
        b.profile().comment.push(comment);
    }
    let with_counts = doc.samples.is_some();
    drop(doc.samples);
    let carries = |i: usize| doc.nodes[i].self_size != 0 || count[i] != 0;
    let values = |i: usize| {
        let size = doc.nodes[i].self_size;
        with_counts.then_some(count[i]).into_iter().chain([size])
    };
    let values_len = |i: usize| values(i).map(|v| varint_len(v as u64)).sum::<u64>();
    let tree = &doc.tree;
    let budget = frame_budget(bytes.len());
    let frames: u64 = (0..doc.nodes.len())
        .filter(|&i| carries(i))
        .map(|i| tree.frames(i))
        .sum();
    if frames > budget {
        return Err(NodeError::TooManyFrames {
            frames,
            limit: budget,
        });
    }
    let location = std::mem::take(&mut b.node_location);
    let header = b.encode();
    // Bytes of each node's stack (its location ids, packed), the root
    // excluded: a node's is its parent's plus its own id. Parents come
    // before their children in `nodes`, and the root is node 0.
    let is_root = |i: usize| tree.parent[i] == NONE;
    let mut stack_len = vec![0u64; doc.nodes.len()];
    for i in 1..doc.nodes.len() {
        let parent = tree.parent[i] as usize;
        stack_len[i] = stack_len[parent] + varint_len(location[i]);
    }
    // A sample on the root itself keeps the root as its only frame.
    let stack_bytes = |i: usize| {
        if is_root(i) {
            varint_len(location[i])
        } else {
            stack_len[i]
        }
    };
    // Two fields: a key byte, the length, the packed varints.
    let body_len = |i: usize| {
        let (stack, values) = (stack_bytes(i), values_len(i));
        1 + varint_len(stack) + stack + 1 + varint_len(values) + values
    };
    let total = (0..doc.nodes.len())
        .filter(|&i| carries(i))
        .map(|i| {
            let body = body_len(i);
            1 + varint_len(body) + body
        })
        .sum::<u64>();
    let expected = header.len() + total as usize;
    let mut out = Vec::with_capacity(expected);
    out.extend_from_slice(&header);
    drop(header);
    // Field 2 of `Profile`, a `Sample`: field 1 its location ids (leaf
    // first), field 2 its values, both packed. Top-level fields may come
    // in any order, so the samples follow the rest.
    for i in (0..doc.nodes.len()).filter(|&i| carries(i)) {
        out.push(0x12);
        put_varint(&mut out, body_len(i));
        out.push(0x0a);
        put_varint(&mut out, stack_bytes(i));
        if is_root(i) {
            put_varint(&mut out, location[i]);
        }
        let mut at = i;
        while tree.parent[at] != NONE {
            put_varint(&mut out, location[at]);
            at = tree.parent[at] as usize;
        }
        out.push(0x12);
        put_varint(&mut out, values_len(i));
        for v in values(i) {
            put_varint(&mut out, v as u64);
        }
    }
    debug_assert_eq!(out.len(), expected, "the output was sized exactly");
    Ok(out)
}

/// Bytes of `v` as a protobuf varint.
fn varint_len(v: u64) -> u64 {
    u64::from((64 - (v | 1).leading_zeros()).div_ceil(7))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An open container while reading the tree.
enum Open {
    /// A node object, by index; which of its required fields were seen.
    Node {
        index: usize,
        first: bool,
        start: usize,
        seen: [bool; 3],
    },
    /// A node's `children` array.
    Children { parent: usize, first: bool },
}

fn read(bytes: &[u8]) -> Result<HeapDoc<'_>, JsonError> {
    let mut r = Reader::new(bytes);
    let mut doc = HeapDoc {
        nodes: Vec::new(),
        tree: Tree {
            parent: Vec::new(),
            depth: Vec::new(),
        },
        samples: None,
    };
    let mut head = false;
    r.begin_object()?;
    let mut first = true;
    while let Some(key) = r.next_key(&mut first)? {
        match &*key {
            "head" if !head => {
                head = true;
                read_tree(&mut r, &mut doc)?;
            }
            "samples" if doc.samples.is_none() => doc.samples = Some(read_samples(&mut r)?),
            "head" | "samples" => return Err(r.error(format!("duplicate field `{key}`"))),
            _ => r.skip_value()?,
        }
    }
    r.end()?;
    if !head {
        return Err(r.error_at(0, "missing field `head`"));
    }
    Ok(doc)
}

fn read_tree<'a>(r: &mut Reader<'a>, doc: &mut HeapDoc<'a>) -> Result<(), JsonError> {
    let mut open: Vec<Open> = Vec::new();
    start_node(r, doc, &mut open, NONE)?;
    while let Some(top) = open.last_mut() {
        match top {
            Open::Children { parent, first } => {
                let parent = *parent;
                if r.next_element(first)? {
                    start_node(r, doc, &mut open, parent as u32)?;
                } else {
                    open.pop();
                }
            }
            Open::Node {
                index,
                first,
                start,
                seen,
            } => {
                let (index, start) = (*index, *start);
                let Some(key) = r.next_key(first)? else {
                    let missing = ["callFrame", "selfSize", "id"]
                        .iter()
                        .zip(*seen)
                        .find(|(_, seen)| !seen);
                    if let Some((field, _)) = missing {
                        return Err(r.error_at(start, format!("node without `{field}`")));
                    }
                    open.pop();
                    continue;
                };
                let node = &mut doc.nodes[index];
                match &*key {
                    "callFrame" => {
                        node.frame = read_call_frame(r)?;
                        seen[0] = true;
                    }
                    "selfSize" => {
                        node.self_size = r.integer()?;
                        seen[1] = true;
                    }
                    "id" => {
                        node.id = r.integer()?;
                        seen[2] = true;
                    }
                    "children" => {
                        r.begin_array()?;
                        open.push(Open::Children {
                            parent: index,
                            first: true,
                        });
                    }
                    _ => r.skip_value()?,
                }
            }
        }
    }
    Ok(())
}

/// Reads a node's opening brace and starts it under `parent`.
fn start_node<'a>(
    r: &mut Reader<'a>,
    doc: &mut HeapDoc<'a>,
    open: &mut Vec<Open>,
    parent: u32,
) -> Result<(), JsonError> {
    if open.len() > 2 * MAX_DEPTH {
        return Err(r.error(format!(
            "the call tree is more than {MAX_DEPTH} levels deep"
        )));
    }
    let start = r.position();
    r.begin_object()?;
    let index = doc.nodes.len();
    if index >= NONE as usize {
        return Err(r.error("too many nodes"));
    }
    doc.nodes.push(HeapNode {
        id: 0,
        frame: CallFrame::default(),
        self_size: 0,
    });
    doc.tree.parent.push(parent);
    let depth = match parent {
        NONE => 0,
        p => doc.tree.depth[p as usize] + 1,
    };
    doc.tree.depth.push(depth);
    open.push(Open::Node {
        index,
        first: true,
        start,
        seen: [false; 3],
    });
    Ok(())
}

fn read_call_frame<'a>(r: &mut Reader<'a>) -> Result<CallFrame<'a>, JsonError> {
    let start = r.position();
    r.begin_object()?;
    let mut frame = CallFrame::default();
    let mut seen = [false; 4];
    let mut first = true;
    while let Some(key) = r.next_key(&mut first)? {
        match &*key {
            "functionName" => (frame.function_name, seen[0]) = (r.string()?, true),
            "url" => (frame.url, seen[1]) = (r.string()?, true),
            "lineNumber" => (frame.line_number, seen[2]) = (r.integer()?, true),
            "columnNumber" => (frame.column_number, seen[3]) = (r.integer()?, true),
            _ => r.skip_value()?,
        }
    }
    let fields = ["functionName", "url", "lineNumber", "columnNumber"];
    if let Some((field, _)) = fields.iter().zip(seen).find(|(_, seen)| !seen) {
        return Err(r.error_at(start, format!("callFrame without `{field}`")));
    }
    Ok(frame)
}

/// The `nodeId` of each sample.
fn read_samples(r: &mut Reader<'_>) -> Result<Vec<i64>, JsonError> {
    let mut ids = Vec::new();
    r.begin_array()?;
    let mut first = true;
    while r.next_element(&mut first)? {
        let start = r.position();
        r.begin_object()?;
        let mut id = None;
        let mut first = true;
        while let Some(key) = r.next_key(&mut first)? {
            match &*key {
                "nodeId" => id = Some(r.integer()?),
                _ => r.skip_value()?,
            }
        }
        ids.push(id.ok_or_else(|| r.error_at(start, "sample without `nodeId`"))?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use firewatch_profile::Profile;

    fn node(id: i64, name: &str, size: i64, children: &str) -> String {
        format!(
            r#"{{"callFrame":{{"functionName":"{name}","scriptId":"1","url":"file:///h.js","lineNumber":{id},"columnNumber":2}},"selfSize":{size},"id":{id},"children":[{children}]}}"#
        )
    }

    fn decoded(json: &str) -> Result<Profile, NodeError> {
        convert(json.as_bytes()).map(|b| Profile::decode(&b).unwrap())
    }

    #[test]
    fn self_size_and_sample_counts_per_node() {
        let head = format!(
            r#"{{"callFrame":{{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1}},"selfSize":0,"id":1,"children":[{}]}}"#,
            node(2, "main", 100, &node(3, "alloc", 4096, ""))
        );
        let json = format!(
            r#"{{"head":{head},"samples":[{{"size":4096,"nodeId":3,"ordinal":7}},{{"size":50,"nodeId":2,"ordinal":8}},{{"size":50,"nodeId":2,"ordinal":9}}]}}"#
        );
        let p = decoded(&json).unwrap();
        let mut values: Vec<(usize, Vec<i64>)> = p
            .sample
            .iter()
            .map(|s| (s.location_id.len(), s.value.clone()))
            .collect();
        values.sort();
        assert_eq!(values, vec![(1, vec![2, 100]), (2, vec![1, 4096])]);
        assert_eq!(p.string(p.default_sample_type), "space");
        let names: Vec<&str> = p.function.iter().map(|f| p.string(f.name)).collect();
        assert!(names.contains(&"alloc (file:///h.js:4:3)"), "{names:?}");

        let without = format!(r#"{{"head":{head}}}"#);
        let p = decoded(&without).unwrap();
        assert_eq!(p.sample_type.len(), 1);
        assert_eq!(p.string(p.comment[0]), NO_SAMPLES);
        assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 4196);
    }

    #[test]
    fn samples_outside_the_tree_are_left_out_and_counted() {
        let one = node(1, "(root)", 0, &node(2, "a", 5, ""));
        let json =
            format!(r#"{{"head":{one},"samples":[{{"nodeId":9}},{{"nodeId":2}},{{"nodeId":9}}]}}"#);
        let p = decoded(&json).unwrap();
        assert_eq!(p.sample.len(), 1);
        assert_eq!(p.sample[0].value, vec![1, 5]);
        assert!(p
            .string(p.comment[0])
            .starts_with("2 of the .heapprofile's samples"));
    }

    #[test]
    fn deep_trees_are_read_without_recursion() {
        // 10,000 nested frames: far deeper than V8 writes and than
        // serde_json reads (128 levels).
        let depth = 10_000;
        let mut json = String::from(r#"{"head":"#);
        for i in 0..depth {
            json.push_str(&node(i + 1, "f", 0, "").replace("[]}", "["));
        }
        json.push_str(&node(depth + 1, "leaf", 8, ""));
        for _ in 0..depth {
            json.push_str("]}");
        }
        json.push('}');
        let p = decoded(&json).unwrap();
        assert_eq!(p.sample.len(), 1);
        assert_eq!(p.sample[0].location_id.len(), depth as usize);
    }

    /// The samples written straight into the pprof bytes are the ones
    /// the general builder makes from whole stacks (`add_samples`, which
    /// `.cpuprofile`s use): on a random tree with 300 functions (location
    /// ids of one and two bytes), a value on the root, zero, negative and
    /// extreme sizes, nodes with counts only, and samples outside the tree.
    #[test]
    fn streamed_samples_equal_the_builders() {
        let mut seed = 12345u64;
        let mut random = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) % n
        };
        let n = 400usize;
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 1..n {
            children[random(i as u64) as usize].push(i);
        }
        let sizes = [0, 1, 7, -5, 300, i64::MAX, i64::MIN];
        let mut size: Vec<i64> = (0..n).map(|_| sizes[random(7) as usize]).collect();
        size[0] = 7;
        // Children before parents (a parent's index is lower): each node's
        // JSON once its children's is written.
        let mut json: Vec<String> = vec![String::new(); n];
        for i in (0..n).rev() {
            let kids: Vec<&str> = children[i].iter().map(|&c| json[c].as_str()).collect();
            // 300 functions: a function's frame is the same at every node.
            let f = i % 300;
            json[i] = format!(
                r#"{{"callFrame":{{"functionName":"f{f}","scriptId":"1","url":"file:///h.js","lineNumber":{f},"columnNumber":2}},"selfSize":{},"id":{},"children":[{}]}}"#,
                size[i],
                i + 1,
                kids.join(",")
            );
        }
        let samples: Vec<String> = (0..200)
            .map(|_| format!(r#"{{"nodeId":{}}}"#, random(n as u64 + 20) + 1))
            .collect();
        let text = format!(
            r#"{{"head":{},"samples":[{}]}}"#,
            json[0],
            samples.join(",")
        );

        let streamed = decoded(&text).unwrap();
        // The reference: the whole stacks, built and encoded by `Profile`.
        let doc = read(text.as_bytes()).unwrap();
        let index = IdIndex::new(doc.nodes.iter().map(|n| n.id)).unwrap();
        let mut count = vec![0i64; doc.nodes.len()];
        let mut outside = 0;
        for id in doc.samples.iter().flatten() {
            match index.get(*id) {
                Some(i) => count[i as usize] += 1,
                None => outside += 1,
            }
        }
        assert!(outside > 0);
        let types = [("objects", "count"), ("space", "bytes")];
        let mut b = ProfileBuilder::new(&types, doc.nodes.iter().map(|n| &n.frame));
        let comment = b.intern(&format!(
            "{outside} of the .heapprofile's samples name nodes outside its tree (allocations V8 made while writing it): not counted"
        ));
        b.profile().comment.push(comment);
        let values = (0..doc.nodes.len())
            .filter(|&i| doc.nodes[i].self_size != 0 || count[i] != 0)
            .map(|i| (i, vec![count[i], doc.nodes[i].self_size]))
            .collect();
        b.add_samples(&doc.tree, values, u64::MAX).unwrap();
        let reference = Profile::decode(&b.encode()).unwrap();
        assert!(reference.location.len() > 127, "two-byte location ids");
        assert!(reference.sample.len() > 100);
        assert_eq!(streamed, reference);
    }

    /// A chain of 6,000 nodes, each with a size: the root's stack is one
    /// frame, the others 1 to 5,999, 18.0 M frames from a 1.2 MB file, over
    /// the 16 Mi-frame floor: refused before any stack is written.
    #[test]
    fn stacks_over_the_frame_budget_are_refused() {
        let depth = 6000;
        let mut json = String::from(r#"{"head":"#);
        for i in 0..depth - 1 {
            json.push_str(&node(i + 1, "f", 8, "").replace("[]}", "["));
        }
        json.push_str(&node(depth, "leaf", 8, ""));
        for _ in 0..depth - 1 {
            json.push_str("]}");
        }
        json.push('}');
        let err = decoded(&json).unwrap_err();
        assert_eq!(
            err,
            NodeError::TooManyFrames {
                frames: 1 + 5999 * 6000 / 2,
                limit: 1 << 24
            }
        );
    }

    #[test]
    fn malformed_profiles_are_errors() {
        let err = |json: &str| decoded(json).unwrap_err().to_string();
        let one = node(1, "(root)", 0, &node(2, "a", 5, ""));
        let dup = node(1, "(root)", 0, &node(1, "a", 5, ""));
        assert!(err(&format!(r#"{{"head":{dup}}}"#)).contains("two nodes have id 1"));
        assert!(err(r#"{"samples":[]}"#).contains("missing field `head`"));
        let no_id = one.replace(r#""id":2,"#, "");
        assert!(err(&format!(r#"{{"head":{no_id}}}"#)).contains("node without `id`"));
        let cut = format!(r#"{{"head":{one}"#);
        assert!(err(&cut[..cut.len() - 20]).contains("line 1 column"));
    }
}
