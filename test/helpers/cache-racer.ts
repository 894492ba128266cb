// A worker thread for the chunk-cache race test: on every round the test
// starts, it acquires the round's chunk at once with the other racer, then
// releases it. Control words (i32): 0 round, 1 racers done, 2 chunk, 3 racers ready.
import { workerData } from 'node:worker_threads';
import { instantiateCore } from '../../src/core/wasm-core.js';
import { hostPread } from '../../src/core/host-pread.js';

export interface RacerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: number;
  counters: number;
  snap: number;
  scratch: number;
  scratchLen: number;
  owner: number;
  racers: number;
  rounds: number;
}

const d = workerData as RacerData;
const core = instantiateCore(d.module, d.memory, hostPread(d.memory));
const ctl = new Int32Array(d.memory.buffer, d.control, 4);
for (let round = 1; round <= d.rounds; round++) {
  while (Atomics.load(ctl, 0) < round) Atomics.wait(ctl, 0, round - 1, 100);
  // Start together: spin until every racer is here, so both miss at once.
  Atomics.add(ctl, 3, 1);
  while (Atomics.load(ctl, 3) < d.racers * round) { /* spin */ }
  const slot = core.fn.chunkAcquire(d.counters, d.snap, Atomics.load(ctl, 2), d.scratch, d.scratchLen, d.owner);
  if (slot < 0) throw new Error(`chunkAcquire failed: ${slot}`);
  core.fn.chunkRelease(d.snap, slot);
  Atomics.add(ctl, 1, 1);
  Atomics.notify(ctl, 1);
}
