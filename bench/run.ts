// `npm run bench`: every benchmark, side by side in one run. BENCH_ONLY=core,
// compression, prefetch, zero-ranges, firecracker (the real one, from the kit), bucket (the kit's VM restored
// from a bucket on Swift), store, layers (a layered snapshot restored by the real one) or codec runs one part, BENCH_ONLY=load the 8-VM load test
// (not part of the default run: it restores 16 GiB); BENCH_ROUNDS sets the rounds (5).
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { benchCore } from './core.js';
import { benchCompression } from './compression.js';
import { benchCodec } from './codec.js';
import { benchLoad } from './load.js';
import { benchPrefetch } from './prefetch.js';
import { benchFirecracker } from './firecracker.js';
import { benchZeroRanges } from './zero-ranges.js';
import { benchFirecrackerAlloc } from './firecracker-alloc.js';
import { benchStore } from './store.js';
import { benchFirecrackerLayers } from './firecracker-layers.js';
import { benchBucket } from './bucket.js';
import { BENCH_DIR, cleanUp } from './harness.js';

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY;
  mkdirSync(BENCH_DIR, { recursive: true });
  process.stdout.write(`# snapfault benchmarks, ${new Date().toISOString()}\n\n`);
  if (!only || only === 'core') {
    const core = await benchCore();
    writeFileSync(join(BENCH_DIR, 'core.json'), JSON.stringify(core, null, 2));
  }
  if (!only || only === 'compression') await benchCompression();
  if (!only || only === 'prefetch') {
    const prefetch = await benchPrefetch();
    writeFileSync(join(BENCH_DIR, 'prefetch.json'), JSON.stringify(prefetch, null, 2));
  }
  if (!only || only === 'zero-ranges') await benchZeroRanges();
  if (!only || only === 'firecracker') {
    const fc = await benchFirecracker();
    if (fc) writeFileSync(join(BENCH_DIR, 'firecracker.json'), JSON.stringify(fc, null, 2));
    const alloc = await benchFirecrackerAlloc();
    if (alloc) writeFileSync(join(BENCH_DIR, 'firecracker-alloc.json'), JSON.stringify(alloc, null, 2));
  }
  if (!only || only === 'store') await benchStore();
  if (!only || only === 'layers') await benchFirecrackerLayers();
  if (!only || only === 'bucket') {
    const bucket = await benchBucket();
    if (bucket) writeFileSync(join(BENCH_DIR, 'bucket.json'), JSON.stringify(bucket, null, 2));
  }
  if (only === 'codec') await benchCodec();
  if (only === 'load') await benchLoad();
}

main().then(() => {
  process.stdout.write(`${cleanUp()}\n`);
  process.exit(0);
}, (e: Error) => {
  process.stderr.write(`bench failed: ${e.message}\n${cleanUp()}\n`);
  process.exit(1);
});
