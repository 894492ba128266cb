// What every benchmark shares: test images, running a handler against the C
// faulting client (build/fc-sim), alternating rounds, medians.
import { existsSync, mkdirSync, statSync, mkdtempSync, openSync, writeSync, closeSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT, SNAPFAULT, FC_SIM, REF_HANDLER } from '../test/helpers/paths.js';
import { prng, makeImage } from '../test/helpers/images.js';
import { Proc, type SimReport } from '../test/helpers/processes.js';

export const GiB = 1 << 30;
export const MiB = 1 << 20;
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
export const BENCH_DIR = join(ROOT, 'build', 'bench');
/** Sockets and packed copies, in a folder made on first use (importing the harness leaves nothing behind). */
let tmp: string | null = null;
export const tmpPath = (name: string): string => join((tmp ??= mkdtempSync(join(tmpdir(), 'snapfault-bench-'))), name);

/** Data files a run leaves: the images in build/bench and the bench snapshots in build/fc (not the tests'). */
function dataFiles(): string[] {
  const fc = join(ROOT, 'build', 'fc');
  const inDir = (dir: string, re: RegExp): string[] => (existsSync(dir) ? readdirSync(dir).filter((f) => re.test(f)).map((f) => join(dir, f)) : []);
  return [...inDir(BENCH_DIR, /\.(img|sfz|trace)$/), ...inDir(fc, /^bench-/), ...inDir(fc, /^snapshot-64-256$/)];
}

const bytesOf = (path: string): number => {
  const st = statSync(path);
  return st.isDirectory() ? readdirSync(path).reduce((n, f) => n + bytesOf(join(path, f)), 0) : st.size;
};

/** Says how much disk the run's data takes, and removes it unless BENCH_KEEP=1. */
export function cleanUp(): string {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = null;
  const files = dataFiles();
  const gib = (files.reduce((n, f) => n + bytesOf(f), 0) / 2 ** 30).toFixed(2);
  if (process.env.BENCH_KEEP === '1') return `kept ${gib} GiB of benchmark data in build/bench and build/fc (BENCH_KEEP=1)`;
  for (const f of files) rmSync(f, { recursive: true, force: true });
  return `removed ${gib} GiB of benchmark data from build/bench and build/fc (BENCH_KEEP=1 keeps it for the next run)`;
}

export interface Sample {
  fps: number;
  p50: number;
  p99: number;
  elapsedMs: number;
  /** From the handshake until the guest has touched all its pages. */
  restoreMs: number;
}

export interface RunSpec {
  handler: 'c' | 'snapfault';
  /** File the handler serves (raw or compressed). */
  serve: string;
  /** Raw memory file the client checks sizes against. */
  image: string;
  pattern: 'random' | 'seq' | 'hot';
  pinned: boolean;
  touches?: number;
  /** The guest checks every byte it touches (costs it a page compare). */
  verify?: boolean;
  /** The guest's first touch of a page is a write (fresh memory being allocated). */
  write?: boolean;
  seed?: number;
  snapfaultArgs?: string[];
  /** Wait for this in snapfault's log before the client starts. */
  ready?: RegExp;
}

function ensureDir(): void {
  mkdirSync(BENCH_DIR, { recursive: true });
  for (const f of [FC_SIM, REF_HANDLER]) if (!existsSync(f)) throw new Error(`${f} missing: run npm run build`);
}

function writeInPieces(path: string, size: number, piece: (i: number, bytes: number) => Buffer): void {
  const fd = openSync(path, 'w');
  const n = 16;
  for (let i = 0; i < n; i++) {
    const b = piece(i, size / n);
    writeSync(fd, b, 0, b.length, i * (size / n));
  }
  closeSync(fd);
}

/** A 1 GiB image in build/bench, generated once. */
export function benchImage(kind: 'random' | 'realistic' | 'few-zeros'): string {
  ensureDir();
  const path = join(BENCH_DIR, `${kind}-1g.img`);
  if (existsSync(path) && statSync(path).size === GiB) return path;
  process.stderr.write(`generating ${path} ...\n`);
  writeInPieces(path, GiB, (i, bytes) =>
    kind === 'random' ? prng(`bench-${i}`, bytes)
      : makeImage(bytes, { seed: `${kind}-${i}`, zeroFraction: kind === 'realistic' ? 0.5 : 0.05 }));
  return path;
}

async function waitFor(cond: () => boolean, what: string, p: Proc): Promise<void> {
  for (let i = 0; i < 4000; i++) {
    if (cond()) return;
    if (p.child.exitCode !== null) throw new Error(`${what} exited early: ${p.stderr}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`${what} did not start: ${p.stderr}`);
}

let n = 0;
/** One restore: the handler serves `spec.serve`, the client touches pages and reports. */
export async function runOnce(spec: RunSpec): Promise<Sample> {
  const sock = tmpPath(`b${n++}.sock`);
  const pin = (cmd: string, args: string[]): [string, string[]] => (spec.pinned ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]);
  const h = spec.handler === 'c'
    ? new Proc(...pin(REF_HANDLER, [sock, spec.serve]))
    : new Proc(...pin(SNAPFAULT, ['--log-level', spec.ready ? 'debug' : 'warn', ...(spec.snapfaultArgs ?? []), sock, spec.serve]));
  await waitFor(() => existsSync(sock), spec.handler, h);
  if (spec.handler === 'snapfault' && spec.ready) await h.waitForStderr(spec.ready, 120_000);
  const simArgs = ['--socket', sock, '--mem', spec.image, '--pattern', spec.pattern, '--threads', '1', '--timeout-ms', '300000'];
  if (spec.touches) simArgs.push('--touches', String(spec.touches));
  if (spec.verify) simArgs.push('--verify');
  if (spec.write) simArgs.push('--write');
  if (spec.seed !== undefined) simArgs.push('--seed', String(spec.seed));
  const sim = new Proc(...pin(FC_SIM, simArgs));
  const exit = await sim.waitExit(400_000);
  await h.waitExit(30_000);
  if (exit.code !== 0) throw new Error(`simulator failed with ${spec.handler}: ${sim.stderr} ${h.stderr}`);
  const r = JSON.parse(sim.stdout.trim()) as SimReport;
  if (r.mismatches !== 0) throw new Error(`the guest read ${r.mismatches} wrong pages with ${spec.handler} ${(spec.snapfaultArgs ?? []).join(' ')}`);
  return { fps: r.faults_per_sec, p50: r.p50_ns / 1000, p99: r.p99_ns / 1000, elapsedMs: r.elapsed_ns / 1e6, restoreMs: r.since_handshake_ns / 1e6 };
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export function medianSample(xs: Sample[]): Sample {
  return {
    fps: median(xs.map((s) => s.fps)), p50: median(xs.map((s) => s.p50)), p99: median(xs.map((s) => s.p99)),
    elapsedMs: median(xs.map((s) => s.elapsedMs)), restoreMs: median(xs.map((s) => s.restoreMs)),
  };
}

/** Runs each spec ROUNDS times, rotating which goes first, after one warm-up each; medians. */
export async function sideBySide(specs: RunSpec[]): Promise<Sample[]> {
  for (const s of specs) await runOnce({ ...s, touches: 4096 });
  const samples: Sample[][] = specs.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < specs.length; i++) {
      const j = (i + r) % specs.length;
      samples[j].push(await runOnce(specs[j]));
    }
  }
  return samples.map(medianSample);
}

