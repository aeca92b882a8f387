// Preload for the broker process (`--node-arg --require=bench/gc-count.cjs` of metrics-overhead):
// counts garbage collections by kind (1 minor/scavenge, 4 major/mark-compact, 8 incremental) and
// their total duration, printed on stderr when the broker gets SIGTERM (the end of each run).
'use strict';
const { PerformanceObserver } = require('node:perf_hooks');
const counts = {};
let ms = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    counts[entry.detail.kind] = (counts[entry.detail.kind] || 0) + 1;
    ms += entry.duration;
  }
}).observe({ entryTypes: ['gc'] });
process.on('SIGTERM', () => process.stderr.write(`gc counts by kind ${JSON.stringify(counts)}, ${ms.toFixed(0)} ms\n`));
