// Two threads missing the same chunk at the same moment decode it once: the
// second waits for the first's slot instead of decoding it again.
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { compileCore, createSharedMemory, instantiateCore } from '../../src/core/wasm-core.js';
import { Arena } from '../../src/core/arena.js';
import { hostPread } from '../../src/core/host-pread.js';
import { CompressedSnapshot } from '../../src/compressed/compressed-snapshot.js';
import { pack } from '../../src/compressed/pack.js';
import { fileIdentity } from '../../src/snapshot/raw-file.js';
import { makeImage, TempDir } from '../helpers/images.js';
import type { RacerData } from '../helpers/cache-racer.js';

const CHUNK = 32 << 10;

describe('decoded-chunk cache under concurrent misses', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('two threads missing one chunk at once decode it once (one miss, one hit), round after round', async () => {
    const packed = tmp.file('race.sfz');
    await pack(tmp.file('race.img', makeImage(4 << 20, { seed: 'race', zeroFraction: 0 })), packed, { chunkBytes: CHUNK, workers: 1 });
    const module = compileCore();
    const memory = createSharedMemory();
    const core = instantiateCore(module, memory, hostPread(memory));
    const arena = new Arena(memory);
    // Four slots for 100+ chunks: every round's chunk is a miss.
    const snap = CompressedSnapshot.open(packed, fileIdentity(statSync(packed)), core, arena, 4 * CHUNK);
    try {
      const L = core.layout;
      const chunks = snap.header.chunks;
      expect(chunks).to.be.above(16);
      const control = arena.alloc(16);
      const counters = arena.alloc(L.VM_TABLE_SIZE);
      const scratchLen = core.fn.lz4Bound(CHUNK);
      const rounds = 300;
      const racers = [1, 2].map((owner) => {
        const data: RacerData = {
          module, memory, control, counters, snap: snap.descriptor, scratch: arena.alloc(scratchLen, 4096), scratchLen, owner, racers: 2, rounds,
        };
        return new Worker(new URL('../helpers/cache-racer.js', import.meta.url), { workerData: data });
      });
      let failure: Error | null = null;
      const exits = racers.map((w) => new Promise<void>((resolve) => {
        w.on('error', (e) => (failure = e));
        w.on('exit', () => resolve());
      }));
      const ctl = new Int32Array(memory.buffer, control, 4);
      const dv = new DataView(memory.buffer);
      const misses = (): bigint => dv.getBigUint64(counters + L.VM_STAT_CHUNK_MISSES, true);
      const hits = (): bigint => dv.getBigUint64(counters + L.VM_STAT_CHUNK_HITS, true);
      let doubled = 0;
      for (let round = 1; round <= rounds; round++) {
        const before = misses();
        Atomics.store(ctl, 2, (round * 7) % chunks);
        Atomics.store(ctl, 0, round);
        Atomics.notify(ctl, 0);
        while (Atomics.load(ctl, 1) < 2 * round) {
          if (failure) throw failure;
          await new Promise((r) => setTimeout(r, 0));
        }
        if (misses() - before !== 1n) doubled++;
      }
      await Promise.all(exits);
      expect(doubled, 'rounds in which the chunk was decoded twice').to.equal(0);
      expect(misses()).to.equal(BigInt(rounds));
      expect(hits()).to.equal(BigInt(rounds));
    } finally {
      snap.close();
    }
  });
});
