// Load: 8 simulated VMs restoring the same 1 GiB snapshot at once through one
// `snapfault serve`, every byte checked by each VM; raw and compressed.
//   BENCH_ONLY=load npm run bench
import { benchImage, tmpPath } from './harness.js';
import { Proc, startSim, type SimResult } from '../test/helpers/processes.js';
import { SNAPFAULT } from '../test/helpers/paths.js';
import { pack } from '../src/compressed/pack.js';
import { existsSync } from 'node:fs';

const VMS = Number(process.env.LOAD_VMS ?? 8);

async function oneRun(serve: string, image: string, label: string): Promise<string> {
  const sock = tmpPath(`load-${label}.sock`);
  const h = new Proc(SNAPFAULT, ['serve', '--socket', sock, '--mem', serve, '--workers', '2', '--log-level', 'warn']);
  for (let i = 0; i < 2000 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 5));
  const t = process.hrtime.bigint();
  const sims = Array.from({ length: VMS }, (_, i) =>
    startSim(['--socket', sock, '--mem', image, '--verify', '--pattern', 'random', '--seed', String(i + 1), '--timeout-ms', '600000']).result);
  const results: SimResult[] = await Promise.all(sims);
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  h.kill('SIGTERM');
  await h.waitExit(30_000);
  const failed = results.filter((r) => r.code !== 0 || !r.json || r.json.mismatches !== 0);
  if (failed.length > 0) throw new Error(`${failed.length} VM(s) failed under load: ${failed.map((f) => f.stderr).join(' | ')}`);
  const faults = results.reduce((s, r) => s + (r.json?.touches ?? 0), 0);
  const p99 = Math.max(...results.map((r) => r.json?.p99_ns ?? 0)) / 1000;
  const p50 = results.map((r) => r.json?.p50_ns ?? 0).sort((a, b) => a - b)[VMS >> 1] / 1000;
  return `| ${label} | ${VMS} x ${(faults / VMS / 262144).toFixed(0)} GiB | ${seconds.toFixed(1)} s | ${Math.round(faults / seconds)} | ${p50.toFixed(0)} | ${p99.toFixed(0)} | 0 |\n`;
}

export async function benchLoad(): Promise<void> {
  const image = benchImage('realistic');
  const packed = tmpPath('load.sfz');
  await pack(image, packed);
  process.stdout.write(`## Load: ${VMS} VMs restoring one 1 GiB snapshot at once (serve, 2 workers, unpinned, every byte verified by each VM)\n\n`);
  process.stdout.write('| snapshot | restored | total time | faults/s (all VMs) | median VM p50 µs | worst VM p99 µs | mismatches |\n|---|---:|---:|---:|---:|---:|---:|\n');
  process.stdout.write(await oneRun(image, image, 'raw'));
  process.stdout.write(await oneRun(packed, image, 'compressed'));
  process.stdout.write(`\n(${VMS} GiB of guest memory in all; the client's --verify preads and compares every page, which is part of the time.)\n\n`);
}
