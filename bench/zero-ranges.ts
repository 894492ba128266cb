// Zero ranges, measured with the simulator: a guest writing fresh memory
// after its restore (fc-sim --write), over a snapshot that is zero but for
// its first 16 MiB (written zeros, found by the background scan: the bench
// waits for it, as a long-running serve would have finished it). Side by
// side: the C reference handler (copies every page), snapfault serving the
// zero pages on demand (UFFDIO_ZEROPAGE per fault), mapping the zero ranges
// with UFFDIO_ZEROPAGE after the handshake, and taking them out of the
// userfaultfd (UFFDIO_UNREGISTER). Pinned to one CPU and unpinned.
import { existsSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, MiB, ROUNDS, sideBySide, type RunSpec } from './harness.js';
import { prng } from '../test/helpers/images.js';

const SIZE = 1024 * MiB;
const HEAD = 16 * MiB;
/** 256 MiB touched in order: 4096 pages of data, then 61440 zero pages. */
const TOUCHES = 65536;

export interface ZeroRangeRow {
  mode: string;
  pinned: boolean;
  touchesPerS: number;
  gibPerS: number;
  vsC: number;
  restoreMs: number;
}

function zeroImage(): string {
  const path = join(BENCH_DIR, 'zero-tail-1g.img');
  if (existsSync(path) && statSync(path).size === SIZE) return path;
  const fd = openSync(path, 'w');
  writeSync(fd, prng('zero-tail', HEAD), 0, HEAD, 0);
  const zeros = Buffer.alloc(64 * MiB);
  for (let at = HEAD; at < SIZE; at += zeros.length) writeSync(fd, zeros, 0, Math.min(zeros.length, SIZE - at), at);
  closeSync(fd);
  return path;
}

export async function benchZeroRanges(): Promise<ZeroRangeRow[]> {
  const image = zeroImage();
  const scanned = /zero-page scan of .* pages are zero/;
  const modes: Array<[string, Partial<RunSpec>]> = [
    ['C reference handler (copies every page)', { handler: 'c' }],
    ['snapfault, zero pages on demand (--zero-ranges off)', { handler: 'snapfault', snapfaultArgs: ['--zero-ranges', 'off'], ready: scanned }],
    ['snapfault, zero ranges mapped after the handshake (zeropage)', { handler: 'snapfault', snapfaultArgs: ['--zero-ranges', 'zeropage'], ready: scanned }],
    ['snapfault, zero ranges unregistered (unregister)', { handler: 'snapfault', snapfaultArgs: ['--zero-ranges', 'unregister'], ready: scanned }],
  ];
  const rows: ZeroRangeRow[] = [];
  for (const pinned of [true, false]) {
    const specs = modes.map(([, m]): RunSpec => ({
      handler: 'snapfault', serve: image, image, pattern: 'seq', pinned, touches: TOUCHES, write: true, ...m,
    }));
    const samples = await sideBySide(specs);
    modes.forEach(([mode], i) => {
      const s = samples[i];
      rows.push({ mode, pinned, touchesPerS: s.fps, gibPerS: (s.fps * 4096) / 2 ** 30, vsC: s.fps / samples[0].fps, restoreMs: s.restoreMs });
    });
  }
  process.stdout.write(`## Zero ranges: a guest writing fresh memory (simulator, 1 GiB snapshot zero past 16 MiB, ${TOUCHES} pages written in order; ${ROUNDS} rounds, medians)\n\n`);
  process.stdout.write('| handler | pinned | touches/s | GiB/s | vs C | handshake -> last touch |\n|---|---|---:|---:|---:|---:|\n');
  for (const r of rows) {
    process.stdout.write(`| ${r.mode} | ${r.pinned ? 'yes' : 'no'} | ${Math.round(r.touchesPerS)} | ${r.gibPerS.toFixed(2)} | ${r.vsC.toFixed(2)}x | ${r.restoreMs.toFixed(0)} ms |\n`);
  }
  process.stdout.write('\n');
  writeFileSync(join(BENCH_DIR, 'zero-ranges.json'), JSON.stringify(rows, null, 2));
  return rows;
}
