// Cuts a V8 heap snapshot down to its first NODES nodes, for a fuzz seed
// under libFuzzer's -max_len: edges to the nodes cut are dropped (the
// nodes' edge_count follows), the string table keeps only the strings still
// named (cut to 32 characters: source code would fill the seed), and the sections the analyzer skips (samples, locations, traces)
// are emptied. The meta and the kept records are V8's own, so the seed has
// a live process's node types, names and detachedness.
//
// Usage: node fuzz/shrink-snapshot.js IN.heapsnapshot OUT.heapsnapshot NODES
'use strict';
const fs = require('fs');

const [input, output, nodesArg] = process.argv.slice(2);
if (!output) {
  console.error('usage: node shrink-snapshot.js IN.heapsnapshot OUT.heapsnapshot NODES');
  process.exit(2);
}
const s = JSON.parse(fs.readFileSync(input, 'utf8'));
const meta = s.snapshot.meta;
const F = meta.node_fields.length;
const E = meta.edge_fields.length;
const at = (fields, name) => {
  const i = fields.indexOf(name);
  if (i < 0) throw new Error(`no ${name} field`);
  return i;
};
const [nType, nName, nEdges] = ['type', 'name', 'edge_count'].map((f) => at(meta.node_fields, f));
const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => at(meta.edge_fields, f));
const nodeTypes = meta.node_types[nType];
const edgeTypes = meta.edge_types[eType];
const total = s.nodes.length / F;
const keep = Math.min(total, Number(nodesArg));

const strings = new Map(); // old index -> new index
const table = [];
const str = (i) => {
  if (!strings.has(i)) {
    strings.set(i, table.length);
    table.push(s.strings[i].slice(0, 32));
  }
  return strings.get(i);
};
const nodes = [];
const edges = [];
let edge = 0;
for (let n = 0; n < total; n++) {
  const count = s.nodes[n * F + nEdges];
  if (n < keep) {
    const record = s.nodes.slice(n * F, n * F + F);
    // V8 writes strings' values and names in `name` for every node type.
    record[nName] = str(record[nName]);
    let kept = 0;
    for (let e = edge; e < edge + count; e++) {
      const r = s.edges.slice(e * E, e * E + E);
      if (r[eTo] / F >= keep) continue;
      const type = edgeTypes[r[eType]];
      if (type !== 'element' && type !== 'hidden') r[eName] = str(r[eName]);
      edges.push(...r);
      kept++;
    }
    record[nEdges] = kept;
    nodes.push(...record);
  }
  edge += count;
}
if (nodeTypes.length === 0) throw new Error('no node types');
const out = {
  snapshot: { meta, node_count: keep, edge_count: edges.length / E, trace_function_count: 0 },
  nodes,
  edges,
  trace_function_infos: [],
  trace_tree: [],
  samples: [],
  locations: [],
  strings: table,
};
fs.writeFileSync(output, JSON.stringify(out));
console.error(`${output}: ${keep} of ${total} nodes, ${edges.length / E} edges, ${table.length} strings`);
