// The real Firecracker (the kit) restoring from a bucket (Swift, started by
// scripts/object-store.sh) through a cold disk cache: on demand, --prefetch
// replay: and all, beside the raw memory file, rounds side by side, medians,
// ratios to the raw file. The store's default chunks and 256 KiB ones; the
// 256 KiB store also through a proxy adding 20 ms before each request (a
// first byte of S3's order).
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from '../test/helpers/paths.js';
import { kitProblem, KitSnapshot } from '../test/helpers/firecracker.js';
import { ensureObjectStore } from '../test/helpers/object-store.js';
import { CountingProxy } from '../test/helpers/counting-proxy.js';
import { median, tmpPath } from './harness.js';

const ROUNDS = Number(process.env.BENCH_FC_ROUNDS ?? 3);
const DELAY_MS = 20;

export interface BucketRow {
  mode: string;
  verifiedMs: number;
  vsFile: number;
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export async function benchBucket(): Promise<BucketRow[] | null> {
  const problem = kitProblem();
  if (problem) {
    process.stdout.write(`## Real Firecracker from a bucket\n\nskipped: ${problem}\n\n`);
    return null;
  }
  const snap = new KitSnapshot(16, 128);
  await snap.ensure();
  const os = await ensureObjectStore();
  const proxy = await CountingProxy.start(os.endpoint);
  proxy.gate = async () => {
    await new Promise((r) => setTimeout(r, DELAY_MS));
    return 'pass';
  };
  try {
    const bucket = await os.newBucket('bench');
    const put = (prefix: string, kib: string[]): string => {
      const store = `s3://${bucket}/${prefix}`;
      const r = spawnSync(SNAPFAULT, ['store', 'put', snap.mem, 'snap', ...kib, '--store', store, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env: { ...process.env, ...os.env } });
      if (r.status !== 0) throw new Error(`store put failed: ${r.stderr}`);
      return store;
    };
    const small = put('default', []);
    const big = put('256k', ['--chunk-kib', '256']);
    let n = 0;
    const via = (store: string, endpoint: string, extra: string): string[] =>
      ['sh', '-c', `exec ${q(SNAPFAULT)} --store ${q(store)} --s3-endpoint ${q(endpoint)} --cache-dir ${q(tmpPath(`cache-${n++}`))} ${extra} "$1" snap`, 'sh'];
    // The working set, recorded through the bucket over a warm cache.
    const trace = tmpPath('bucket.trace');
    const warm = tmpPath('cache-warm');
    for (const extra of ['', `--record ${q(trace)}`]) {
      const r = await snap.restore(['sh', '-c', `exec ${q(SNAPFAULT)} --store ${q(small)} --s3-endpoint ${q(os.endpoint)} --cache-dir ${q(warm)} ${extra} "$1" snap`, 'sh'], os.env);
      if (!r.pass) throw new Error(`recording the working set failed:\n${r.output}`);
    }
    const policies = [['on demand', ''], ['--prefetch replay:', `--prefetch replay:${q(trace)}`], ['--prefetch all', '--prefetch all']] as const;
    const modes: Array<{ name: string; handler: () => string[] }> = [{ name: 'raw memory file', handler: () => [SNAPFAULT] }];
    for (const [label, store, endpoint] of [['32 KiB chunks', small, os.endpoint], ['256 KiB chunks', big, os.endpoint], [`256 KiB chunks, +${DELAY_MS} ms a request`, big, proxy.endpoint]] as const) {
      for (const [name, extra] of policies) modes.push({ name: `bucket, ${label}, ${name}`, handler: () => via(store, endpoint, extra) });
    }
    const samples = modes.map(() => [] as number[]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < modes.length; k++) {
        const i = (k + round) % modes.length;
        const r = await snap.restore(modes[i].handler(), os.env);
        if (!r.pass) throw new Error(`${modes[i].name}: the restore failed:\n${r.output}`);
        samples[i].push(r.verifiedMs);
      }
    }
    const file = median(samples[0]);
    const rows = modes.map((m, i) => ({ mode: m.name, verifiedMs: median(samples[i]), vsFile: median(samples[i]) / file }));
    process.stdout.write(`## Real Firecracker from a bucket, cold disk cache (128 MiB VM, 16 MiB guest buffer checked; ${ROUNDS} rounds, medians)\n\n`);
    process.stdout.write('| from | load -> guest verified | vs raw file |\n|---|---:|---:|\n');
    for (const r of rows) process.stdout.write(`| ${r.mode} | ${r.verifiedMs} ms | ${r.vsFile.toFixed(2)}x |\n`);
    process.stdout.write('\n');
    return rows;
  } finally {
    await proxy.stop();
    os.release();
  }
}
