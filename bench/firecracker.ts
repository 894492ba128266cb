// The real Firecracker (the kit in ../shared/firecracker): PUT /snapshot/load
// and load -> guest verified, for snapfault's serving modes beside the kit's
// minimal C handler, rounds rotating through the handlers, medians, ratios.
// Pinned (handler, Firecracker and guest on CPU 0) and unpinned. Beside them,
// Firecracker's File backend with no handler: the floor.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SNAPFAULT } from '../test/helpers/paths.js';
import { sh, kitProblem, kitCHandler, KitSnapshot, restoreFromFile, type Restore } from '../test/helpers/firecracker.js';
import { pack } from '../src/compressed/pack.js';
import { median } from './harness.js';

const ROUNDS = Number(process.env.BENCH_FC_ROUNDS ?? 3);

interface Mode {
  name: string;
  handler: string[];
  env?: NodeJS.ProcessEnv;
  /** No handler: Firecracker's File backend (the floor). */
  file?: true;
}

export interface FirecrackerRow {
  mode: string;
  pinned: boolean;
  loadMs: number;
  verifiedMs: number;
  loadVsC: number;
  speedupVsC: number;
}

export async function benchFirecracker(): Promise<FirecrackerRow[] | null> {
  const problem = kitProblem();
  if (problem) {
    process.stdout.write(`## Real Firecracker\n\nskipped: ${problem}\n\n`);
    return null;
  }
  const snap = new KitSnapshot(64, 256);
  await snap.ensure();
  const c = kitCHandler();
  const packed = join(snap.dir, '..', 'bench-mem-64-256.sfz');
  if (!existsSync(packed)) await pack(snap.mem, packed);
  // The working set to replay: recorded from one on-demand restore.
  const trace = join(snap.dir, '..', 'bench-64-256.trace');
  const recorded = await snap.restore([SNAPFAULT, '--record', trace]);
  if (!recorded.pass) throw new Error(`recording the working set failed:\n${recorded.output}`);
  const modes: Mode[] = [
    { name: 'C handler, on demand', handler: [c] },
    { name: 'C handler, copies every page after the handshake', handler: [c], env: { UFFD_PREFAULT: '1' } },
    { name: 'snapfault, on demand', handler: [SNAPFAULT] },
    { name: 'snapfault, --prefetch replay:', handler: [SNAPFAULT, '--prefetch', `replay:${trace}`] },
    { name: 'snapfault, --prefetch all', handler: [SNAPFAULT, '--prefetch', 'all'] },
    { name: 'snapfault, compressed, on demand', handler: sh(`exec '${SNAPFAULT}' "$1" '${packed}'`) },
    { name: 'snapfault, compressed, --prefetch replay:', handler: sh(`exec '${SNAPFAULT}' --prefetch 'replay:${trace}' "$1" '${packed}'`) },
    { name: 'snapfault, compressed, --prefetch all', handler: sh(`exec '${SNAPFAULT}' --prefetch all "$1" '${packed}'`) },
    { name: 'no handler: File backend, memory file in the page cache (the floor)', handler: [], file: true },
  ];
  const rows: FirecrackerRow[] = [];
  for (const pinned of [true, false]) {
    const samples = modes.map(() => [] as Restore[]);
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round: no mode always runs first on a cold cache.
      for (let k = 0; k < modes.length; k++) {
        const i = (k + round) % modes.length;
        const m = modes[i];
        // Pinned: the whole kit run (Firecracker and its vCPU thread included) on CPU 0.
        const r = m.file ? await restoreFromFile(snap, { cpu: pinned ? 0 : undefined }) : await snap.restore(m.handler, m.env, { cpu: pinned ? 0 : undefined });
        if (!r.pass) throw new Error(`${m.name}: the restore failed:\n${r.output}`);
        samples[i].push(r);
      }
    }
    const cLoad = median(samples[0].map((r) => r.loadMs));
    const cVerified = median(samples[0].map((r) => r.verifiedMs));
    modes.forEach((m, i) => {
      const loadMs = median(samples[i].map((r) => r.loadMs));
      const verifiedMs = median(samples[i].map((r) => r.verifiedMs));
      rows.push({ mode: m.name, pinned, loadMs, verifiedMs, loadVsC: loadMs / cLoad, speedupVsC: cVerified / verifiedMs });
    });
  }
  process.stdout.write(`## Real Firecracker (v1.14.1, 256 MiB VM, 64 MiB guest buffer checked; ${ROUNDS} rounds, medians)\n\n`);
  process.stdout.write('| handler | pinned | PUT /snapshot/load | vs C on demand | load -> guest verified | speed-up vs C on demand |\n|---|---|---:|---:|---:|---:|\n');
  for (const r of rows) {
    process.stdout.write(`| ${r.mode} | ${r.pinned ? 'yes' : 'no'} | ${r.loadMs.toFixed(1)} ms | ${r.loadVsC.toFixed(2)}x | ${r.verifiedMs} ms | ${r.speedupVsC.toFixed(1)}x |\n`);
  }
  process.stdout.write('\n');
  return rows;
}
