// The prefetch worker thread's body: instantiate the core on the shared
// memory, then run the prefetch loop until told to stop. prefetch-worker.ts
// runs it with the real ioctl; tests run it with one that injects faults.
import { workerData, parentPort, type MessagePort } from 'node:worker_threads';
import { instantiateCore } from '../core/wasm-core.js';
import { hostPread } from '../core/host-pread.js';
import { namedChunkReads } from '../core/named-chunks.js';
import { PrefetchLoop, type PrefetchBuffers } from './prefetch-loop.js';
import type { PreparedPolicy } from './policy-spec.js';
import type { FromPrefetcher } from './messages.js';
import { setBatchPolicy } from '../../native/sched.js';
import type { IoctlFn } from '../../native/uffd.js';

export interface PrefetchWorkerData extends PrefetchBuffers {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  port: MessagePort;
  policy: PreparedPolicy;
}

export function runPrefetchThread(ioctl: IoctlFn): void {
  const data = workerData as PrefetchWorkerData;
  // Demand first: prefetching never preempts a fault worker or a vCPU when it wakes.
  setBatchPolicy();
  const parent = parentPort;
  if (!parent) throw new Error('prefetch-worker must run as a worker thread');
  const send = (m: FromPrefetcher): void => parent.postMessage(m);
  const core = instantiateCore(data.module, data.memory, hostPread(data.memory), namedChunkReads(data.memory));
  const loop = new PrefetchLoop(core, data.port, send, data.policy, data, ioctl);
  send({ type: 'ready' });
  loop.run();
  data.port.close();
}
