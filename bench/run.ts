// `npm run bench`: snapfault against a minimal C reference handler
// (bench/ref_handler.c: poll, read, UFFDIO_COPY from an mmapped file), side by
// side in one run, with the same C faulting client (the Firecracker
// simulator), over a 1 GiB memory file. Rounds alternate between the two
// handlers so machine noise hits both alike; medians are reported.
import { existsSync, mkdirSync, writeFileSync, statSync, mkdtempSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT, SNAPFAULT, FC_SIM, REF_HANDLER } from '../test/helpers/paths.js';
import { prng, makeImage } from '../test/helpers/images.js';
import { Proc, type SimReport } from '../test/helpers/processes.js';

const GiB = 1 << 30;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const dir = join(ROOT, 'build', 'bench');
const tmp = mkdtempSync(join(tmpdir(), 'snapfault-bench-'));

interface Case {
  name: string;
  image: string;
  pattern: 'random' | 'seq';
  pinned: boolean;
  touches?: number;
  snapfaultArgs: string[];
  /** Wait for this in snapfault's log before the client starts. */
  ready?: RegExp;
}

interface Sample {
  fps: number;
  p50: number;
  p99: number;
}

function ensureImage(name: string, make: (path: string) => void): string {
  const path = join(dir, name);
  if (!existsSync(path) || statSync(path).size !== GiB) {
    process.stderr.write(`generating ${path} ...\n`);
    make(path);
  }
  return path;
}

function writeInPieces(path: string, piece: (i: number) => Buffer): void {
  const fd = openSync(path, 'w');
  for (let i = 0; i < 16; i++) {
    const b = piece(i);
    writeSync(fd, b, 0, b.length, i * (GiB / 16));
  }
  closeSync(fd);
}

async function waitFor(cond: () => boolean, what: string, p: Proc): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    if (p.child.exitCode !== null) throw new Error(`${what} exited early: ${p.stderr}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`${what} did not start: ${p.stderr}`);
}

let n = 0;
async function runOnce(handler: 'c' | 'snapfault', c: Case): Promise<Sample> {
  const sock = join(tmp, `b${n++}.sock`);
  const pin = (cmd: string, args: string[]): [string, string[]] => (c.pinned ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]);
  const h = handler === 'c'
    ? new Proc(...pin(REF_HANDLER, [sock, c.image]))
    : new Proc(...pin(SNAPFAULT, ['--log-level', c.ready ? 'debug' : 'warn', ...c.snapfaultArgs, sock, c.image]));
  await waitFor(() => existsSync(sock), handler, h);
  if (handler === 'snapfault' && c.ready) await h.waitForStderr(c.ready, 60_000);
  const simArgs = ['--socket', sock, '--mem', c.image, '--pattern', c.pattern, '--threads', '1', '--timeout-ms', '120000'];
  if (c.touches) simArgs.push('--touches', String(c.touches));
  const sim = new Proc(...pin(FC_SIM, simArgs));
  const exit = await sim.waitExit(180_000);
  await h.waitExit(30_000);
  if (exit.code !== 0) throw new Error(`simulator failed with ${handler}: ${sim.stderr} ${h.stderr}`);
  const r = JSON.parse(sim.stdout.trim()) as SimReport;
  return { fps: r.faults_per_sec, p50: r.p50_ns / 1000, p99: r.p99_ns / 1000 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const f of [FC_SIM, REF_HANDLER]) if (!existsSync(f)) throw new Error(`${f} missing: run npm run build`);
  // Random data: every page is copied by both handlers, so they do the same work.
  const random = ensureImage('random-1g.img', (p) => writeInPieces(p, (i) => prng(`bench-${i}`, GiB / 16)));
  // Realistic: about half zero pages, duplicates, text; snapfault maps zero pages with UFFDIO_ZEROPAGE.
  const realistic = ensureImage('realistic-1g.img', (p) => writeInPieces(p, (i) => makeImage(GiB / 16, { seed: `real-${i}` })));
  const cases: Case[] = [
    { name: 'random touches, same CPU', image: random, pattern: 'random', pinned: true, snapfaultArgs: ['--zero-scan', 'off'] },
    { name: 'sequential touches, same CPU', image: random, pattern: 'seq', pinned: true, snapfaultArgs: ['--zero-scan', 'off'] },
    // As a long-running handler serves it: the zero-page scan has finished before the VM connects.
    { name: 'random touches, realistic image (scanned), same CPU', image: realistic, pattern: 'random', pinned: true, snapfaultArgs: [], ready: /zero-page scan of .* pages are zero/ },
    { name: 'random touches, unpinned (64K faults)', image: random, pattern: 'random', pinned: false, touches: 65536, snapfaultArgs: ['--zero-scan', 'off'] },
    { name: 'sequential touches, unpinned (64K faults)', image: random, pattern: 'seq', pinned: false, touches: 65536, snapfaultArgs: ['--zero-scan', 'off'] },
  ];
  const results: Array<{ case: Case; c: Sample; snapfault: Sample }> = [];
  process.stdout.write(`snapfault vs C reference handler, 1 GiB memory file, ${ROUNDS} alternating rounds each, medians\n\n`);
  process.stdout.write('| case | C faults/s | snapfault faults/s | ratio | C p50 µs | snapfault p50 µs | p50 ratio | C p99 µs | snapfault p99 µs |\n');
  process.stdout.write('|---|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const c of cases) {
    await runOnce('c', { ...c, touches: 4096 }); // warm the page cache and the binaries
    const cs: Sample[] = [];
    const ss: Sample[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate who goes first, so a drift in machine load favours neither.
      if (r % 2 === 0) {
        cs.push(await runOnce('c', c));
        ss.push(await runOnce('snapfault', c));
      } else {
        ss.push(await runOnce('snapfault', c));
        cs.push(await runOnce('c', c));
      }
    }
    const cm = { fps: median(cs.map((s) => s.fps)), p50: median(cs.map((s) => s.p50)), p99: median(cs.map((s) => s.p99)) };
    const sm = { fps: median(ss.map((s) => s.fps)), p50: median(ss.map((s) => s.p50)), p99: median(ss.map((s) => s.p99)) };
    results.push({ case: c, c: cm, snapfault: sm });
    process.stdout.write(`| ${c.name} | ${Math.round(cm.fps)} | ${Math.round(sm.fps)} | ${(sm.fps / cm.fps).toFixed(3)}x | ` +
      `${cm.p50.toFixed(1)} | ${sm.p50.toFixed(1)} | ${(sm.p50 / cm.p50).toFixed(3)}x | ${cm.p99.toFixed(1)} | ${sm.p99.toFixed(1)} |\n`);
  }
  writeFileSync(join(dir, 'results.json'), JSON.stringify({ date: new Date().toISOString(), rounds: ROUNDS, results }, null, 2));
  process.stdout.write(`\nTargets: faults/s >= 0.95x C, p50 <= 1.1x C (same CPU). Raw results: build/bench/results.json\n`);
}

main().then(() => rmSync(tmp, { recursive: true, force: true }), (e: Error) => {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write(`bench failed: ${e.message}\n`);
  process.exit(1);
});
