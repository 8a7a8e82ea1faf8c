// Per-function self and total CPU time of a .cpuprofile, computed the way
// Chrome DevTools attributes time (front_end/models/cpu_profile/
// CPUProfileDataModel.ts: sample times are startTime plus the running sum
// of timeDeltas; samples are sorted by time, stably; a sample lasts until
// the next one; the last one lasts the mean interval). Written apart from
// firewatch's Rust reader, which crates/analyzer/tests/node_profiles.rs
// compares with it.
//
// Output: {"total": µs, "functions": {"<name>": {"self": µs, "total": µs}}}
// where <name> is DevTools' "functionName (url:line:column)", 1-based.
// The root node is no frame; time is in whole microseconds, the last
// sample's mean rounded half up (Math.round).
'use strict';

const fs = require('fs');

const profile = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const nodeById = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map();
for (const node of profile.nodes) {
  for (const child of node.children || []) parentOf.set(child, node.id);
}
const rootId = profile.nodes[0].id;

function label(frame) {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  if (frame.lineNumber < 0) return `${name} (${frame.url})`;
  if (frame.columnNumber < 0) return `${name} (${frame.url}:${frame.lineNumber + 1})`;
  return `${name} (${frame.url}:${frame.lineNumber + 1}:${frame.columnNumber + 1})`;
}

// Leaf first, root left out (a sample on the root itself keeps it).
function stack(id) {
  const names = [];
  for (let at = id; at !== rootId; at = parentOf.get(at)) {
    names.push(label(nodeById.get(at).callFrame));
  }
  return names.length ? names : [label(nodeById.get(id).callFrame)];
}

let now = profile.startTime;
const times = profile.timeDeltas.map((delta) => (now += delta));
const order = times.map((_, i) => i).sort((a, b) => times[a] - times[b]);
const count = order.length;

// A Map: function names such as `constructor` would clash with an
// object's own properties.
const functions = new Map();
function entry(name) {
  if (!functions.has(name)) functions.set(name, { self: 0, total: 0 });
  return functions.get(name);
}
let total = 0;
for (let k = 0; k < count; k++) {
  const i = order[k];
  let duration;
  if (k + 1 < count) {
    duration = times[order[k + 1]] - times[i];
  } else if (count > 1) {
    duration = Math.round((times[order[count - 1]] - times[order[0]]) / (count - 1));
  } else {
    duration = Math.max(0, profile.endTime - times[i]);
  }
  total += duration;
  const names = stack(profile.samples[i]);
  entry(names[0]).self += duration;
  for (const name of new Set(names)) entry(name).total += duration;
}
process.stdout.write(JSON.stringify({ total, functions: Object.fromEntries(functions) }));
