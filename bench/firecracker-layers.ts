// The real Firecracker restoring a layered snapshot from a store against the
// same memory flattened (#12's target: at least 0.95x as fast). The kit's
// Full and Diff snapshots of one boot; the Diff's dirty pages split in two
// sparse layers, so `l2 <- l1 <- l0` is the Diff snapshot's memory in three
// layers; `store flatten` of it is the same pages with no parent. Each
// restore is a drop-in `snapfault --store S <socket> NAME`, rounds rotating,
// pinned (taskset -c 0) and unpinned, load -> guest verified, medians.
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SNAPFAULT } from '../test/helpers/paths.js';
import { q, sh, kitProblem, KitDiffSnapshots, type Restore } from '../test/helpers/firecracker.js';
import { dataExtents } from '../native/fd.js';
import { median, BENCH_DIR } from './harness.js';

const ROUNDS = Number(process.env.BENCH_FC_ROUNDS ?? 3);
const PAGE = 4096;

function cli(args: string[]): string {
  const r = spawnSync(SNAPFAULT, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`snapfault ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Writes the Diff file's dirty pages whose index has parity `half` into a sparse file of the same size. */
function splitLayer(diffPath: string, out: string, half: 0 | 1): number {
  const src = openSync(diffPath, 'r');
  const dst = openSync(out, 'w');
  const page = Buffer.alloc(PAGE);
  let n = 0;
  try {
    const size = fstatSync(src).size;
    ftruncateSync(dst, size);
    for (const [a, b] of dataExtents(src, size)) {
      for (let p = Math.floor(a / PAGE); p < Math.ceil(b / PAGE); p++) {
        if (p % 2 !== half) continue;
        readSync(src, page, 0, PAGE, p * PAGE);
        writeSync(dst, page, 0, PAGE, p * PAGE);
        n++;
      }
    }
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  return n;
}

export async function benchFirecrackerLayers(): Promise<void> {
  const problem = kitProblem();
  if (problem) {
    process.stdout.write(`## Real Firecracker: a layered snapshot\n\nskipped: ${problem}\n\n`);
    return;
  }
  const snaps = new KitDiffSnapshots(16, 128, 4);
  await snaps.ensure();
  const dir = join(BENCH_DIR, 'layers');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const store = join(dir, 'store');
  const l1 = join(dir, 'l1.mem');
  const l2 = join(dir, 'l2.mem');
  const pages = [splitLayer(snaps.diff.mem, l1, 0), splitLayer(snaps.diff.mem, l2, 1)];
  cli(['store', 'put', snaps.base.mem, 'l0', '--store', store]);
  cli(['store', 'put', l1, 'l1', '--parent', 'l0', '--store', store]);
  cli(['store', 'put', l2, 'l2', '--parent', 'l1', '--store', store]);
  cli(['store', 'flatten', 'l2', 'flat', '--store', store]);
  const modes = [
    { name: 'three layers (l2 <- l1 <- l0)', snapshot: 'l2' },
    { name: 'the same flattened (store flatten)', snapshot: 'flat' },
  ];
  process.stdout.write(`## Real Firecracker: a three-layer snapshot against it flattened (v1.14.1, 128 MiB VM, 16 MiB guest buffer; ` +
    `the Diff's ${pages[0] + pages[1]} dirty pages in two layers of ${pages[0]} and ${pages[1]}; ${ROUNDS} rounds, medians)\n\n`);
  process.stdout.write('| snapshot | pinned | PUT /snapshot/load | load -> guest verified | layered vs flattened (verified) |\n|---|---|---:|---:|---:|\n');
  for (const pinned of [true, false]) {
    const samples = modes.map(() => [] as Restore[]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < modes.length; k++) {
        const i = (k + round) % modes.length;
        const r = await snaps.diff.restore(sh(`exec ${q(SNAPFAULT)} --store ${q(store)} "$1" ${modes[i].snapshot}`), undefined, { cpu: pinned ? 0 : undefined });
        if (!r.pass) throw new Error(`${modes[i].name}: the restore failed:\n${r.output}`);
        samples[i].push(r);
      }
    }
    const verified = samples.map((s) => median(s.map((r) => r.verifiedMs)));
    modes.forEach((m, i) => {
      const load = median(samples[i].map((r) => r.loadMs));
      const ratio = i === 0 ? `${(verified[1] / verified[0]).toFixed(3)}x` : '';
      process.stdout.write(`| ${m.name} | ${pinned ? 'yes' : 'no'} | ${load.toFixed(1)} ms | ${verified[i]} ms | ${ratio} |\n`);
    });
  }
  process.stdout.write('\n');
  rmSync(dir, { recursive: true, force: true });
}
