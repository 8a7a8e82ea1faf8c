// Loads a .heapsnapshot with memlab (@memlab/core, the version pinned in
// package-lock.json) as its full heap analysis does (parse, shortest
// paths, dominators and retained sizes) and prints what
// crates/analyzer/tests/node_heapsnapshot.rs compares with firewatch:
//
//   {"node_count", "total_size" (sum of self sizes), "root_retained_size",
//    "retained": {id: retained size} for every node,
//    "top": [[id, retained]…] the 200 largest non-synthetic nodes (root excluded),
//    "constructors": {class: {count, self_size}}}
//
// Class names follow DevTools' HeapSnapshotNode.className rule, computed
// here from memlab's node type and name.
//
// Usage: node memlab_heap.js FILE.heapsnapshot
//        node memlab_heap.js --load-only FILE.heapsnapshot   (load and analyze, print the
//        node count only: what benches/heapsnapshot_vs_memlab.sh times)
//        node memlab_heap.js --each FILE.heapsnapshot...   (one line per file, in order:
//        the object above plus "file"; one process for many small snapshots)
'use strict';
const path = require('path');
const core = require(path.join(__dirname, 'node_modules', '@memlab', 'core'));

function className(node) {
  switch (node.type) {
    case 'object':
    case 'native':
      return node.name;
    case 'hidden':
      return '(system)';
    case 'code':
      return '(compiled code)';
    default:
      return `(${node.type})`;
  }
}

async function load(file) {
  const heap = await core.utils.getSnapshotFromFile(file, { buildNodeIdIndex: true });
  core.analysis.preparePathFinder(heap);
  return heap;
}

function summary(heap) {
  let total = 0;
  const retained = {};
  const objects = [];
  const constructors = {};
  heap.nodes.forEach((node) => {
    total += node.self_size;
    retained[node.id] = node.retainedSize;
    if (node.nodeIndex !== 0 && node.type !== 'synthetic') {
      objects.push([node.id, node.retainedSize]);
    }
    const c = className(node);
    const row = constructors[c] || (constructors[c] = { count: 0, self_size: 0 });
    row.count += 1;
    row.self_size += node.self_size;
  });
  objects.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  return {
    node_count: heap.nodes.length,
    total_size: total,
    root_retained_size: heap.nodes.get(0).retainedSize,
    retained,
    top: objects.slice(0, 200),
    constructors,
  };
}

(async function main() {
  core.config.muteConsole = true;
  const mode = process.argv[2];
  if (mode === '--load-only') {
    const heap = await load(process.argv[3]);
    process.stdout.write(JSON.stringify({ node_count: heap.nodes.length }));
  } else if (mode === '--each') {
    for (const file of process.argv.slice(3)) {
      const heap = await load(file);
      process.stdout.write(JSON.stringify({ file, ...summary(heap) }) + '\n');
    }
  } else {
    process.stdout.write(JSON.stringify(summary(await load(mode))));
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
