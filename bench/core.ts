// The core handler against the C reference handler (docs/benchmarks.md).
import { benchImage, sideBySide, ROUNDS, type RunSpec, type Sample } from './harness.js';

interface Case {
  name: string;
  image: string;
  pattern: 'random' | 'seq';
  pinned: boolean;
  touches?: number;
  snapfaultArgs: string[];
  ready?: RegExp;
}

export async function benchCore(): Promise<Array<{ name: string; c: Sample; snapfault: Sample }>> {
  const random = benchImage('random');
  const realistic = benchImage('realistic');
  const cases: Case[] = [
    { name: 'random touches, same CPU', image: random, pattern: 'random', pinned: true, snapfaultArgs: ['--zero-scan', 'off'] },
    // As a platform starts it: default options, the client connecting the moment the socket exists.
    { name: 'random touches, same CPU, client at once, default options', image: random, pattern: 'random', pinned: true, snapfaultArgs: [] },
    { name: 'sequential touches, same CPU', image: random, pattern: 'seq', pinned: true, snapfaultArgs: ['--zero-scan', 'off'] },
    // As a long-running handler serves it: the zero-page scan has finished before the VM connects.
    { name: 'random touches, realistic image (scanned), same CPU', image: realistic, pattern: 'random', pinned: true, snapfaultArgs: [], ready: /zero-page scan of .* pages are zero/ },
    { name: 'random touches, unpinned (64K faults)', image: random, pattern: 'random', pinned: false, touches: 65536, snapfaultArgs: ['--zero-scan', 'off'] },
    { name: 'sequential touches, unpinned (64K faults)', image: random, pattern: 'seq', pinned: false, touches: 65536, snapfaultArgs: ['--zero-scan', 'off'] },
  ];
  process.stdout.write(`## Core handler: snapfault vs the C reference handler, 1 GiB memory file, ${ROUNDS} rounds, medians\n\n`);
  process.stdout.write('| case | C faults/s | snapfault faults/s | ratio | C p50 µs | snapfault p50 µs | p50 ratio | C p99 µs | snapfault p99 µs |\n');
  process.stdout.write('|---|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  const out = [];
  for (const c of cases) {
    const base: Omit<RunSpec, 'handler'> = { serve: c.image, image: c.image, pattern: c.pattern, pinned: c.pinned, touches: c.touches };
    const [cm, sm] = await sideBySide([{ ...base, handler: 'c' }, { ...base, handler: 'snapfault', snapfaultArgs: c.snapfaultArgs, ready: c.ready }]);
    out.push({ name: c.name, c: cm, snapfault: sm });
    process.stdout.write(`| ${c.name} | ${Math.round(cm.fps)} | ${Math.round(sm.fps)} | ${(sm.fps / cm.fps).toFixed(3)}x | ` +
      `${cm.p50.toFixed(1)} | ${sm.p50.toFixed(1)} | ${(sm.p50 / cm.p50).toFixed(3)}x | ${cm.p99.toFixed(1)} | ${sm.p99.toFixed(1)} |\n`);
  }
  process.stdout.write('\nTargets: faults/s >= 0.95x C, p50 <= 1.1x C (same CPU).\n\n');
  return out;
}
