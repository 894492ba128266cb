// `npm run demo`: restores a generated snapshot through snapfault with the
// Firecracker simulator (2 vCPUs, random touches, a balloon), checks every
// byte, and prints what happened; then packs it and restores the compressed
// snapshot the same way; then records a restore of a 10% working set, replays
// it with --prefetch, and draws the replayed restore (snapfault report).
import { existsSync, mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT } from '../test/helpers/paths.js';
import { makeImage } from '../test/helpers/images.js';
import { startSnapfault, runSim } from '../test/helpers/processes.js';
import { pack } from '../src/compressed/pack.js';
import { readTrace } from '../src/trace/trace-file.js';
import { summarize } from '../src/trace/summary.js';
import { renderReport } from '../src/trace/report.js';

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
    const packed = join(dir, 'mem.sfz');
    process.stdout.write(`\n$ snapfault pack ${mem} -o ${packed}\n`);
    const s = await pack(mem, packed);
    process.stdout.write(`  ${(s.originalSize / 1048576).toFixed(0)} MiB -> ${(s.fileSize / 1048576).toFixed(1)} MiB: ${s.zeroPages} zero, ` +
      `${s.duplicatePages} duplicate and ${s.storedPages} stored pages in ${s.chunks} LZ4 chunks\n`);
    const compressed = await restore(packed, mem, join(tmp, 'packed.sock'), 'the compressed snapshot');
    if (compressed !== 0) return compressed;
    const rc = await recordAndReplay(mem, tmp, dir);
    if (rc === 0) {
      process.stdout.write(`\nEverything the demo made is in ${dir}: mem.img (the snapshot), mem.sfz (packed: try \`snapfault inspect\`),\n` +
        'working-set.trace and replayed.trace (try `snapfault trace show`), replayed.svg.\n');
    }
    return rc;
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

/** One hot-set restore recorded, the same guest again with the working set replayed, and a picture of it. */
async function recordAndReplay(mem: string, tmp: string, dir: string): Promise<number> {
  const truth = join(dir, 'working-set.trace');
  const replayed = join(dir, 'replayed.trace');
  const guest = ['--mem', mem, '--pattern', 'hot', '--hot-fraction', '0.1', '--seed', '5', '--verify'];
  const once = async (args: string[], sock: string): Promise<number | null> => {
    process.stdout.write(`$ snapfault ${args.join(' ')} ${sock} ${mem}
`);
    const h = await startSnapfault(['--log-level', 'debug', '--log-format', 'text', ...args, sock, mem]);
    await h.waitForStderr(/zero-page scan/);
    const sim = await runSim(['--socket', sock, ...guest]);
    const exit = await h.waitExit();
    if (sim.code !== 0 || !sim.json || exit.code !== 0 || sim.json.mismatches !== 0) {
      process.stdout.write(`demo FAILED: ${sim.stderr}${h.stderr}\n`);
      return null;
    }
    return sim.json.since_handshake_ns / 1e6;
  };
  process.stdout.write('\nThe guest now touches a 10% working set in random order, twice: first recorded, then replayed ahead of it.\n');
  const slow = await once(['--record', truth], join(tmp, 'rec.sock'));
  const fast = slow === null ? null : await once(['--prefetch', `replay:${truth}`, '--record', replayed], join(tmp, 'replay.sock'));
  if (slow === null || fast === null) return 1;
  const s = summarize(readTrace(replayed), readTrace(truth));
  const svg = join(dir, 'replayed.svg');
  writeFileSync(svg, renderReport(readTrace(replayed), { title: 'replayed.trace (npm run demo)' }));
  process.stdout.write(
    `\non demand: ${slow.toFixed(1)} ms from the handshake until the guest had touched its ${s.against!.needed} pages\n` +
    `replayed:  ${fast.toFixed(1)} ms (${(slow / fast).toFixed(1)}x), ${s.faults.copy + s.faults.zero} demand faults left, ` +
    `${s.prefetchedPages + s.prefetchedZeroPages} pages prefetched, hit rate ${(100 * s.against!.hitRate).toFixed(0)}%\n` +
    `the replayed restore, drawn by \`snapfault report ${replayed} -o ${svg}\`: open ${svg} in a browser\n`);
  return 0;
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`demo failed: ${e.message}\n`);
  process.exit(1);
});
