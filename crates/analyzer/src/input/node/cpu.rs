//! `.cpuprofile`: the Chrome DevTools Protocol's `Profiler.Profile`, as
//! `node --cpu-prof` writes it.
//!
//! Sample types `samples/count` and `cpu/microseconds` (the default). Times
//! come from `timeDeltas` by DevTools' rule (`CPUProfileDataModel`, see
//! `docs/node.md`): sample `i` happens at `startTime + timeDeltas[0..=i]`;
//! samples are put in time order (stably: V8 writes a few negative deltas);
//! each sample lasts until the next one, and the last one the mean
//! interval, `(last − first) / (samples − 1)`, rounded half up to a whole
//! microsecond (with a single sample, until `endTime`). The time before the
//! first sample is nobody's. `hitCount` is not used: `samples` says the
//! same, in order.
//!
//! The flat `nodes` array nests only four levels, so serde_json reads it
//! directly into these structs, strings borrowed from the input.

use serde::Deserialize;

use super::{div_round, frame_budget, CallFrame, IdIndex, NodeError, ProfileBuilder, Tree, NONE};
use crate::input::node::json::strip_bom;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpuProfileJson<'a> {
    #[serde(borrow)]
    nodes: Vec<NodeJson<'a>>,
    start_time: i64,
    end_time: i64,
    samples: Vec<i64>,
    time_deltas: Vec<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeJson<'a> {
    id: i64,
    #[serde(borrow)]
    call_frame: CallFrame<'a>,
    #[serde(default)]
    children: Vec<i64>,
}

/// Start times at or above this many microseconds are taken as Unix time
/// (2001-09-09 onwards). V8 and Chrome write their monotonic clock, time
/// since boot, which would need 31 years of uptime to get there, so a Node
/// profile has no `Time:` rather than a date in 1970.
const UNIX_TIME_FROM_MICROS: i64 = 1_000_000_000_000_000;

/// Converts a `.cpuprofile` to pprof bytes.
pub(crate) fn convert(bytes: &[u8]) -> Result<Vec<u8>, NodeError> {
    let doc: CpuProfileJson =
        serde_json::from_slice(strip_bom(bytes)).map_err(|e| NodeError::Json(e.to_string()))?;
    let (tree, index) = tree(&doc.nodes)?;
    let n = doc.samples.len();
    if doc.time_deltas.len() != n {
        return Err(NodeError::SampleCount {
            samples: n,
            time_deltas: doc.time_deltas.len(),
        });
    }
    // In place: samples become node indexes, time deltas sample times.
    let (mut nodes, mut times) = (doc.samples, doc.time_deltas);
    let mut at = doc.start_time;
    for (i, (node, time)) in nodes.iter_mut().zip(&mut times).enumerate() {
        let id = *node;
        *node = index
            .get(id)
            .ok_or(NodeError::UnknownSampleNode { index: i, id })? as i64;
        at = at
            .checked_add(*time)
            .ok_or(NodeError::TimeOverflow { index: i })?;
        *time = at;
    }
    sort_by_time(&mut times, &mut nodes);
    let mut count = vec![0i64; doc.nodes.len()];
    let mut micros = vec![0i64; doc.nodes.len()];
    let mean = match times.as_slice() {
        [first, .., last] => Some(
            last.checked_sub(*first)
                .map(|span| div_round(span, n as i64 - 1))
                .ok_or(NodeError::TimeSpan)?,
        ),
        _ => None,
    };
    for (k, (&time, &node)) in times.iter().zip(&nodes).enumerate() {
        let duration = match (times.get(k + 1), mean) {
            (Some(&next), _) => next.checked_sub(time),
            (None, Some(mean)) => Some(mean),
            // One sample: DevTools closes it at the profile's end.
            (None, None) => doc.end_time.checked_sub(time).map(|d| d.max(0)),
        };
        let node = node as usize;
        count[node] += 1;
        micros[node] = duration
            .and_then(|d| micros[node].checked_add(d))
            .ok_or(NodeError::TimeSpan)?;
    }
    drop((nodes, times));
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "microseconds")],
        doc.nodes.iter().map(|n| &n.call_frame),
    );
    let cpu = b.intern("cpu");
    let us = b.intern("microseconds");
    let p = b.profile();
    p.period_type = firewatch_profile::ValueType {
        r#type: cpu,
        unit: us,
    };
    p.period = mean.unwrap_or(0);
    p.duration_nanos = doc
        .end_time
        .checked_sub(doc.start_time)
        .and_then(|d| d.checked_mul(1000))
        .unwrap_or(0)
        .max(0);
    if doc.start_time >= UNIX_TIME_FROM_MICROS {
        p.time_nanos = doc.start_time.saturating_mul(1000);
    }
    let samples = (0..doc.nodes.len())
        .filter(|&i| count[i] != 0)
        .map(|i| (i, vec![count[i], micros[i]]))
        .collect();
    b.add_samples(&tree, samples, frame_budget(bytes.len()))?;
    Ok(b.encode())
}

/// Sorts the samples (`times`, and `nodes` alongside) by time, stably, as
/// DevTools does. V8's rare negative deltas move a sample back by a place
/// or two, so an insertion pass costs about one look per sample and no
/// memory; past eight moves per sample (a file in no order at all) a full
/// stable sort takes over.
fn sort_by_time(times: &mut [i64], nodes: &mut [i64]) {
    let budget = times.len().saturating_mul(8);
    let mut moves = 0;
    for i in 1..times.len() {
        let mut j = i;
        while j > 0 && times[j - 1] > times[j] {
            times.swap(j - 1, j);
            nodes.swap(j - 1, j);
            j -= 1;
            moves += 1;
            if moves > budget {
                let mut pairs: Vec<(i64, i64)> =
                    times.iter().copied().zip(nodes.iter().copied()).collect();
                pairs.sort_by_key(|&(t, _)| t);
                for (k, (t, n)) in pairs.into_iter().enumerate() {
                    (times[k], nodes[k]) = (t, n);
                }
                return;
            }
        }
    }
}

/// The tree `children` describes, rooted at the first node (as DevTools
/// roots it): every other node must have exactly one parent and be
/// reachable from the root. Also gives each id's node index.
fn tree(nodes: &[NodeJson]) -> Result<(Tree, IdIndex), NodeError> {
    if nodes.is_empty() {
        return Err(NodeError::NoNodes);
    }
    if nodes.len() >= NONE as usize {
        return Err(NodeError::Json(format!(
            "{} nodes, more than firewatch reads",
            nodes.len()
        )));
    }
    let index = IdIndex::new(nodes.iter().map(|n| n.id))?;
    let mut parent = vec![NONE; nodes.len()];
    for (p, node) in nodes.iter().enumerate() {
        for &child in &node.children {
            let c = index.get(child).ok_or(NodeError::UnknownChild {
                parent: node.id,
                child,
            })? as usize;
            if c == 0 {
                return Err(NodeError::RootIsChild {
                    root: child,
                    parent: node.id,
                });
            }
            if parent[c] != NONE {
                return Err(NodeError::TwoParents {
                    id: child,
                    first: nodes[parent[c] as usize].id,
                    second: node.id,
                });
            }
            parent[c] = p as u32;
        }
    }
    // Depths, by a walk from the root; with one parent each, it cannot loop.
    let mut depth = vec![u32::MAX; nodes.len()];
    depth[0] = 0;
    let mut stack = vec![0usize];
    let mut reached = 1;
    while let Some(p) = stack.pop() {
        for &child in &nodes[p].children {
            // Every child id was found above.
            let c = index.get(child).expect("a known child") as usize;
            depth[c] = depth[p] + 1;
            reached += 1;
            stack.push(c);
        }
    }
    if reached < nodes.len() {
        let orphan = depth.iter().position(|&d| d == u32::MAX).unwrap_or(0);
        return Err(NodeError::Unreachable {
            id: nodes[orphan].id,
            root: nodes[0].id,
        });
    }
    Ok((Tree { parent, depth }, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firewatch_profile::Profile;

    fn profile(json: &str) -> Result<Profile, NodeError> {
        convert(json.as_bytes()).map(|bytes| Profile::decode(&bytes).unwrap())
    }

    /// root(1) → main(2) → hot(3); root → (program)(4).
    fn doc(samples: &str, deltas: &str, start: i64, end: i64) -> String {
        format!(
            r#"{{"nodes":[
            {{"id":1,"callFrame":{{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1}},"hitCount":0,"children":[2,4]}},
            {{"id":2,"callFrame":{{"functionName":"main","scriptId":"1","url":"file:///a.js","lineNumber":0,"columnNumber":0}},"children":[3]}},
            {{"id":3,"callFrame":{{"functionName":"","scriptId":"1","url":"file:///a.js","lineNumber":4,"columnNumber":10}}}},
            {{"id":4,"callFrame":{{"functionName":"(program)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1}}}}
            ],"startTime":{start},"endTime":{end},"samples":{samples},"timeDeltas":{deltas}}}"#
        )
    }

    /// (stack names leaf first, [count, µs]) per sample, sorted.
    fn stacks(p: &Profile) -> Vec<(Vec<String>, Vec<i64>)> {
        let name = |loc: u64| {
            let l = p.location.iter().find(|l| l.id == loc).unwrap();
            let f = p
                .function
                .iter()
                .find(|f| f.id == l.line[0].function_id)
                .unwrap();
            p.string(f.name).to_string()
        };
        let mut out: Vec<_> = p
            .sample
            .iter()
            .map(|s| {
                (
                    s.location_id.iter().map(|&l| name(l)).collect(),
                    s.value.clone(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn each_sample_gets_the_next_delta_and_the_last_the_mean() {
        // Samples at 100+10=110, 130, 170, 180: durations 20, 40, 10, and
        // the last (180-110)/3 = 23.33 → 23.
        let p = profile(&doc("[3,3,2,4]", "[10,20,40,10]", 100, 200)).unwrap();
        let main = "main (file:///a.js:1:1)".to_string();
        let anon = "(anonymous) (file:///a.js:5:11)".to_string();
        assert_eq!(
            stacks(&p),
            vec![
                (vec![anon, main.clone()], vec![2, 60]),
                (vec!["(program)".to_string()], vec![1, 23]),
                (vec![main], vec![1, 10]),
            ]
        );
        assert_eq!(p.duration_nanos, 100_000);
        assert_eq!(p.time_nanos, 0, "a monotonic start is no date");
        assert_eq!(p.period, 23);
        assert_eq!(p.string(p.default_sample_type), "cpu");
    }

    #[test]
    fn negative_deltas_are_put_in_time_order_as_devtools_does() {
        // Times 110, 105, 125: in order 105 (node 2), 110 (3), 125 (4).
        // Durations: node 2 (main) gets 5, node 3 (anonymous) 15, node 4
        // ((program)) the mean (125-105)/2 = 10.
        let p = profile(&doc("[3,2,4]", "[10,-5,20]", 100, 200)).unwrap();
        let values: Vec<(String, i64)> = stacks(&p)
            .into_iter()
            .map(|(names, v)| (names[0].clone(), v[1]))
            .collect();
        assert_eq!(
            values,
            vec![
                ("(anonymous) (file:///a.js:5:11)".to_string(), 15),
                ("(program)".to_string(), 10),
                ("main (file:///a.js:1:1)".to_string(), 5),
            ]
        );
    }

    #[test]
    fn sorting_is_stable_with_or_without_the_fallback() {
        // Descending times defeat the insertion pass; equal times keep
        // their file order either way.
        for len in [3usize, 40] {
            let mut times: Vec<i64> = (0..len as i64).rev().map(|t| t / 2).collect();
            let mut nodes: Vec<i64> = (0..len as i64).collect();
            let mut expected: Vec<(i64, i64)> =
                times.iter().copied().zip(nodes.iter().copied()).collect();
            expected.sort_by_key(|&(t, _)| t);
            sort_by_time(&mut times, &mut nodes);
            let got: Vec<(i64, i64)> = times.into_iter().zip(nodes).collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn one_sample_lasts_until_the_end_and_unix_times_are_kept() {
        let start = 1_700_000_000_000_000;
        let p = profile(&doc("[3]", "[40]", start, start + 100)).unwrap();
        assert_eq!(stacks(&p)[0].1, vec![1, 60]);
        assert_eq!(p.time_nanos, start * 1000);
        let p = profile(&doc("[]", "[]", 5, 5)).unwrap();
        assert!(p.sample.is_empty());
    }

    #[test]
    fn malformed_profiles_are_errors() {
        let err = |json: &str| profile(json).unwrap_err().to_string();
        assert!(err(&doc("[3,9]", "[1,1]", 0, 9)).contains("samples[1] is node 9"));
        assert!(err(&doc("[3,3]", "[1]", 0, 9)).contains("2 samples but 1 timeDeltas"));
        assert!(err(&doc("[3,3]", &format!("[1,{}]", i64::MAX), 0, 9)).contains("overflow"));
        let cycle = doc("[3]", "[1]", 0, 9).replace(
            r#""lineNumber":4,"columnNumber":10}"#,
            r#""lineNumber":4,"columnNumber":10},"children":[2]"#,
        );
        assert!(
            err(&cycle).contains("node 2 is a child of both node 1 and node 3"),
            "{}",
            err(&cycle)
        );
        let to_root = doc("[3]", "[1]", 0, 9).replace(
            r#""columnNumber":10}"#,
            r#""columnNumber":10},"children":[1]"#,
        );
        assert!(
            err(&to_root).contains("root node 1 is listed as a child of node 3"),
            "{}",
            err(&to_root)
        );
        let ring = doc("[3]", "[1]", 0, 9).replace("[2,4]", "[2]").replace(
            r#""columnNumber":-1}}"#,
            r#""columnNumber":-1},"children":[4]}"#,
        );
        assert!(
            err(&ring).contains("node 4 is not reachable"),
            "{}",
            err(&ring)
        );
        let orphan = doc("[3]", "[1]", 0, 9).replace("[2,4]", "[4]");
        assert!(
            err(&orphan).contains("node 2 is not reachable"),
            "{}",
            err(&orphan)
        );
        let unknown = doc("[3]", "[1]", 0, 9).replace("[2,4]", "[2,4,7]");
        assert!(err(&unknown).contains("lists child 7"));
        let dup = doc("[3]", "[1]", 0, 9).replace(r#""id":4"#, r#""id":3"#);
        assert!(err(&dup).contains("two nodes have id 3"));
        assert!(
            err(r#"{"nodes":[],"startTime":0,"endTime":0,"samples":[],"timeDeltas":[]}"#)
                .contains("no nodes")
        );
        assert!(err(
            r#"{"nodes":[{"id":1}],"startTime":0,"endTime":0,"samples":[],"timeDeltas":[]}"#
        )
        .contains("missing field `callFrame`"));
    }
}
