// Compressed snapshots (docs/benchmarks.md): size against whole-file lz4 and
// zstd -3, the chunk size trade-off, the codec against native liblz4, and
// restores served compressed against raw, side by side.
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { pack } from '../src/compressed/pack.js';
import { benchImage, sideBySide, tmpPath, ROUNDS, MiB, type RunSpec } from './harness.js';
import { benchCodec } from './codec.js';

function timed<T>(f: () => T): [T, number] {
  const t = process.hrtime.bigint();
  const r = f();
  return [r, Number(process.hrtime.bigint() - t) / 1e9];
}

function wholeFile(tool: 'lz4' | 'zstd', input: string): { bytes: number; seconds: number } {
  const out = tmpPath(`${tool}-${Date.now()}.out`);
  const args = tool === 'lz4' ? ['-q', '-f', input, out] : ['-q', '-3', '-f', '-T1', input, '-o', out];
  let seconds: number;
  try {
    [, seconds] = timed(() => execFileSync(tool, args));
  } catch (e) {
    throw new Error(`${tool} failed (${(e as Error).message.split('\n')[0]}): install it with apt-get install ${tool}`);
  }
  return { bytes: statSync(out).size, seconds };
}

async function packed(image: string, chunkKiB: number): Promise<{ path: string; bytes: number; seconds: number }> {
  const path = tmpPath(`${chunkKiB}k-${image.split('/').pop()}.sfz`);
  const t = process.hrtime.bigint();
  const s = await pack(image, path, { chunkBytes: chunkKiB * 1024 });
  return { path, bytes: s.fileSize, seconds: Number(process.hrtime.bigint() - t) / 1e9 };
}

export async function benchCompression(): Promise<void> {
  const realistic = benchImage('realistic');
  const few = benchImage('few-zeros');
  const out = (s: string): boolean => process.stdout.write(s);
  const mib = (b: number): string => (b / MiB).toFixed(1);

  out('## Compressed snapshots: size (1 GiB images)\n\n');
  out('| image | snapfault pack (32 KiB chunks) | whole-file lz4 | whole-file zstd -3 | pack time (2 workers) | lz4 time | zstd -3 time (1 thread) |\n|---|---:|---:|---:|---:|---:|---:|\n');
  const packs: Record<string, string> = {};
  for (const [name, img] of [['realistic (about half zero pages)', realistic], ['few zeros (5%)', few]] as const) {
    const p = await packed(img, 32);
    packs[img] = p.path;
    const l = wholeFile('lz4', img);
    const z = wholeFile('zstd', img);
    out(`| ${name} | ${mib(p.bytes)} MiB (${(1024 / (p.bytes / MiB)).toFixed(2)}:1) | ${mib(l.bytes)} MiB (${(1024 / (l.bytes / MiB)).toFixed(2)}:1) | ` +
      `${mib(z.bytes)} MiB (${(1024 / (z.bytes / MiB)).toFixed(2)}:1) | ${p.seconds.toFixed(1)} s | ${l.seconds.toFixed(1)} s | ${z.seconds.toFixed(1)} s |\n`);
  }

  out(`\n## Chunk size: file size against restore speed (realistic image, 131072 touches, same CPU, ${ROUNDS} rounds)\n\n`);
  out('| chunk | file | random: touches/s | random p99 µs | sequential: touches/s | sequential p99 µs |\n|---|---:|---:|---:|---:|---:|\n');
  const sizes = [16, 32, 64, 256];
  const files: Array<{ path: string; bytes: number }> = [];
  for (const k of sizes) files.push(k === 32 ? { path: packs[realistic], bytes: statSync(packs[realistic]).size } : await packed(realistic, k));
  const byPattern = async (pattern: 'random' | 'seq') => sideBySide(files.map((f) => ({
    handler: 'snapfault', serve: f.path, image: realistic, pattern, pinned: true, touches: 131072,
  } as RunSpec)));
  const rnd = await byPattern('random');
  const seq = await byPattern('seq');
  sizes.forEach((k, i) => {
    out(`| ${k} KiB | ${mib(files[i].bytes)} MiB | ${Math.round(rnd[i].fps)} | ${rnd[i].p99.toFixed(1)} | ${Math.round(seq[i].fps)} | ${seq[i].p99.toFixed(1)} |\n`);
  });
  const fewSizes: string[] = [];
  for (const k of [16, 64, 256]) fewSizes.push(`${k} KiB: ${mib((await packed(few, k)).bytes)} MiB`);
  out(`\nThe few-zeros image packs to ${fewSizes.join(', ')}.\n`);

  out('\n## LZ4 decode: the AssemblyScript core against native liblz4\n\n');
  await benchCodec();

  out(`\n## Restores served compressed against raw (realistic image, same CPU, ${ROUNDS} rounds, medians)\n\n`);
  out('| pattern | raw touches/s | compressed touches/s | ratio | compressed, no fill-around | ratio | raw p50 µs | compressed p50 µs |\n|---|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const pattern of ['random', 'seq'] as const) {
    const base = { handler: 'snapfault', image: realistic, pattern, pinned: true, touches: 131072 } as const;
    const [raw, comp, noFill] = await sideBySide([
      { ...base, serve: realistic, ready: /zero-page scan of .* pages are zero/ },
      { ...base, serve: packs[realistic] },
      { ...base, serve: packs[realistic], snapfaultArgs: ['--fill-around', 'off'] },
    ]);
    out(`| ${pattern} | ${Math.round(raw.fps)} | ${Math.round(comp.fps)} | ${(comp.fps / raw.fps).toFixed(2)}x | ${Math.round(noFill.fps)} | ` +
      `${(noFill.fps / raw.fps).toFixed(2)}x | ${raw.p50.toFixed(1)} | ${comp.p50.toFixed(1)} |\n`);
  }
  out('\nGoals: smaller than whole-file lz4; AS decode >= 0.7x liblz4; compressed >= 0.85x raw.\n\n');
}

