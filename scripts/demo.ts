// `npm run demo`: restores a generated snapshot through snapfault with the
// Firecracker simulator (2 vCPUs, random touches, a balloon), checks every
// byte, and prints what happened; then packs it and restores the compressed
// snapshot the same way.
import { existsSync, mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT } from '../test/helpers/paths.js';
import { makeImage } from '../test/helpers/images.js';
import { startSnapfault, runSim } from '../test/helpers/processes.js';
import { pack } from '../src/compressed/pack.js';

const MiB = 1 << 20;

async function main(): Promise<number> {
  const dir = join(ROOT, 'build', 'example');
  const mem = join(dir, 'mem.img');
  if (!existsSync(mem)) {
    mkdirSync(dir, { recursive: true });
    process.stdout.write('generating build/example/mem.img: a 64 MiB guest memory image (half zero pages, some duplicates, text and random data)\n');
    writeFileSync(mem, makeImage(64 * MiB, { seed: 'demo' }));
  }
  const tmp = mkdtempSync(join(tmpdir(), 'snapfault-demo-'));
  try {
    const raw = await restore(mem, mem, join(tmp, 'raw.sock'), 'the raw memory file');
    if (raw !== 0) return raw;
    const packed = join(tmp, 'mem.sfz');
    process.stdout.write(`\n$ snapfault pack ${mem} -o ${packed}\n`);
    const s = await pack(mem, packed);
    process.stdout.write(`  ${(s.originalSize / 1048576).toFixed(0)} MiB -> ${(s.fileSize / 1048576).toFixed(1)} MiB: ${s.zeroPages} zero, ` +
      `${s.duplicatePages} duplicate and ${s.storedPages} stored pages in ${s.chunks} LZ4 chunks\n`);
    return await restore(packed, mem, join(tmp, 'packed.sock'), 'the compressed snapshot');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Restores `served` through snapfault with the simulator, which checks every byte against `mem`. */
async function restore(served: string, mem: string, sock: string, what: string): Promise<number> {
  process.stdout.write(`\n$ snapfault ${sock} ${served}\n`);
  const handler = await startSnapfault(['--log-level', 'debug', '--log-format', 'text', sock, served]);
  if (served === mem) await handler.waitForStderr(/zero-page scan/);
  process.stdout.write('$ fc-sim (a Firecracker simulator: 2 regions, 2 vCPUs touching every page in random order, then a 2 MiB balloon)\n\n');
  const sim = await runSim(['--socket', sock, '--mem', mem, '--regions', '48M,16M', '--threads', '2', '--pattern', 'random', '--verify',
    '--balloon', '8M:2M', '--balloon-mode', 'after']);
  const exit = await handler.waitExit();
  process.stdout.write(handler.stderr.trimEnd().replace(/^/gm, '  handler | ') + '\n\n');
  const r = sim.json;
  if (sim.code !== 0 || !r || exit.code !== 0) {
    process.stdout.write(`demo FAILED: simulator exit ${sim.code ?? sim.signal}, handler exit ${exit.code ?? exit.signal}\n${sim.stderr}`);
    return 1;
  }
  process.stdout.write(
    `restored 64 MiB from ${what}: ${r.touches} pages touched by 2 vCPUs, every byte checked against the memory file: ${r.mismatches} mismatches;\n` +
    `${r.zero_checked} ballooned pages read back as zeros; ${Math.round(r.faults_per_sec)} pages/s, p50 ${(r.p50_ns / 1000).toFixed(1)} µs, p99 ${(r.p99_ns / 1000).toFixed(1)} µs\n` +
    '(unpinned: a wake-up across this machine\'s two CPUs costs ~30 µs; `npm run bench` measures pinned and unpinned)\n');
  return 0;
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`demo failed: ${e.message}\n`);
  process.exit(1);
});
