// Per-function self and total bytes, and sampled objects, of a
// .heapprofile, summed from its tree apart from firewatch's Rust reader
// (crates/analyzer/tests/node_profiles.rs compares the two). A function's
// self bytes are the selfSize of its nodes, its total the selfSize of
// every node with it on the path from the root, counted once per node.
// Objects are the samples naming a node of the tree.
//
// Output: {"functions": {"<name>": {"self": B, "total": B, "objects": n}}}
'use strict';

const fs = require('fs');

const profile = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function label(frame) {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  if (frame.lineNumber < 0) return `${name} (${frame.url})`;
  if (frame.columnNumber < 0) return `${name} (${frame.url}:${frame.lineNumber + 1})`;
  return `${name} (${frame.url}:${frame.lineNumber + 1}:${frame.columnNumber + 1})`;
}

const samplesPerNode = new Map();
for (const sample of profile.samples || []) {
  samplesPerNode.set(sample.nodeId, (samplesPerNode.get(sample.nodeId) || 0) + 1);
}

// A Map: function names such as `constructor` would clash with an
// object's own properties.
const functions = new Map();
function entry(name) {
  if (!functions.has(name)) functions.set(name, { self: 0, total: 0, objects: 0 });
  return functions.get(name);
}
// Depth first, with an explicit stack: each entry is a node and the names
// on its path (root excluded).
const pending = [[profile.head, []]];
while (pending.length) {
  const [node, above] = pending.pop();
  const isRoot = node === profile.head;
  const path = isRoot ? above : [label(node.callFrame), ...above];
  const own = path.length ? path : [label(node.callFrame)];
  const objects = samplesPerNode.get(node.id) || 0;
  if (node.selfSize || objects) {
    entry(own[0]).self += node.selfSize;
    entry(own[0]).objects += objects;
    for (const name of new Set(own)) entry(name).total += node.selfSize;
  }
  for (const child of node.children) pending.push([child, path]);
}
process.stdout.write(JSON.stringify({ functions: Object.fromEntries(functions) }));
