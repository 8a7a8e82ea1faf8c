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
    let samples = doc
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| n.self_size != 0 || count[*i] != 0)
        .map(|(i, n)| match doc.samples {
            Some(_) => (i, vec![count[i], n.self_size]),
            None => (i, vec![n.self_size]),
        })
        .collect();
    b.add_samples(&doc.tree, samples, frame_budget(bytes.len()))?;
    Ok(b.encode())
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
