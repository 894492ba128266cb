// Prefetch policies side by side (issue: restore what the guest will need):
// a 1 GiB image, a guest touching a 10% hot set in random order, and the
// time from the handshake until it has touched all of it, for none,
// readahead, replay (of a recorded run of the same guest) and all, with the
// C reference handler as the on-demand floor; then sequential touches for
// readahead. Hit rate and waste come from a recorded run of each policy,
// scored against the recorded working set.
import { benchImage, runOnce, sideBySide, tmpPath, ROUNDS, type RunSpec, type Sample } from './harness.js';
import { readTrace } from '../src/trace/trace-file.js';
import { summarize, type PrefetchScore } from '../src/trace/summary.js';

const SCANNED = /zero-page scan of .* pages are zero/;
const HOT_SEED = 7;
const SEQ_TOUCHES = 26214; // the first 10% of memory

interface Policy {
  name: string;
  args: string[];
}

export interface PrefetchResult {
  case: string;
  pinned: boolean;
  rows: Array<{ name: string; sample: Sample; speedup: number; score?: PrefetchScore & { demandFaults: number } }>;
}

export async function benchPrefetch(): Promise<PrefetchResult[]> {
  const image = benchImage('realistic');
  const base = { serve: image, image, verify: true, seed: HOT_SEED } as const;
  const snap = (args: string[], rest: Omit<RunSpec, 'handler'>): RunSpec => ({ ...rest, handler: 'snapfault', snapfaultArgs: args, ready: SCANNED });
  // The working sets: one recorded run of each guest, with no prefetch.
  const hotTruth = tmpPath('hot-truth.trace');
  const seqTruth = tmpPath('seq-truth.trace');
  await runOnce(snap(['--record', hotTruth], { ...base, pattern: 'hot', pinned: true }));
  await runOnce(snap(['--record', seqTruth], { ...base, pattern: 'seq', pinned: true, touches: SEQ_TOUCHES }));
  const hotPolicies: Policy[] = [
    { name: 'none', args: [] },
    { name: 'readahead', args: ['--prefetch', 'readahead'] },
    { name: `replay`, args: ['--prefetch', `replay:${hotTruth}`] },
    { name: 'all', args: ['--prefetch', 'all'] },
  ];
  const seqPolicies: Policy[] = [hotPolicies[0], hotPolicies[1]];
  const cases: Array<{ name: string; pattern: 'hot' | 'seq'; touches?: number; policies: Policy[]; truth: string }> = [
    { name: '10% hot set, random order', pattern: 'hot', policies: hotPolicies, truth: hotTruth },
    { name: 'sequential, first 10% of memory', pattern: 'seq', touches: SEQ_TOUCHES, policies: seqPolicies, truth: seqTruth },
  ];
  process.stdout.write(`## Prefetch policies: time from the handshake until the guest has touched its pages, 1 GiB realistic image, ${ROUNDS} rounds, medians\n\n`);
  const out: PrefetchResult[] = [];
  for (const c of cases) {
    for (const pinned of [true, false]) {
      const rest: Omit<RunSpec, 'handler'> = { ...base, pattern: c.pattern, pinned, touches: c.touches };
      const specs: RunSpec[] = [{ ...rest, handler: 'c' }, ...c.policies.map((p) => snap(p.args, rest))];
      const samples = await sideBySide(specs);
      const none = samples[1].restoreMs;
      const rows: PrefetchResult['rows'] = samples.map((s, i) => ({ name: i === 0 ? 'C reference (on demand)' : c.policies[i - 1].name, sample: s, speedup: none / s.restoreMs }));
      if (pinned) {
        // Hit rate and waste: one more recorded run per policy, scored against the working set.
        for (let i = 0; i < c.policies.length; i++) {
          const trace = tmpPath(`${c.pattern}-${c.policies[i].name}.trace`);
          await runOnce(snap([...c.policies[i].args, '--record', trace], rest));
          const s = summarize(readTrace(trace), readTrace(c.truth));
          rows[i + 1].score = { ...s.against!, demandFaults: s.faults.copy + s.faults.zero };
        }
      }
      out.push({ case: c.name, pinned, rows });
      printTable(c.name, pinned, rows);
    }
  }
  process.stdout.write('Goals: replay >= 4x faster than none and faster than all (hot set); readahead >= 3x faster than none (sequential).\n\n');
  return out;
}

function printTable(name: string, pinned: boolean, rows: PrefetchResult['rows']): void {
  process.stdout.write(`### ${name}, ${pinned ? 'handler and guest on one CPU (taskset -c 0)' : 'unpinned'}\n\n`);
  process.stdout.write('| policy | restore ms | speed-up vs none | touches/s | p50 µs | p99 µs | demand faults | prefetched pages | hit rate | waste (pages) | coverage |\n');
  process.stdout.write('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows) {
    const sc = r.score;
    const prefetched = sc ? sc.hits + sc.wasted : undefined;
    process.stdout.write(`| ${r.name} | ${r.sample.restoreMs.toFixed(1)} | ${r.speedup.toFixed(2)}x | ${Math.round(r.sample.fps)} | ${r.sample.p50.toFixed(1)} | ${r.sample.p99.toFixed(1)} | ` +
      `${sc ? sc.demandFaults : ''} | ${prefetched ?? ''} | ${sc && prefetched ? `${(100 * sc.hitRate).toFixed(1)}%` : ''} | ${sc && prefetched ? sc.wasted : ''} | ${sc && prefetched !== undefined ? `${(100 * sc.coverage).toFixed(1)}%` : ''} |\n`);
  }
  process.stdout.write('\n');
}
