// A fault worker thread's body: instantiate the core on the shared memory,
// then run the fault loop until told to stop. fault-worker.ts runs it with
// the real ioctl; tests run it with one that injects faults.
import { workerData, parentPort, type MessagePort } from 'node:worker_threads';
import { instantiateCore } from '../core/wasm-core.js';
import { hostPread } from '../core/host-pread.js';
import { namedChunkReads } from '../core/named-chunks.js';
import { EventFd } from '../../native/fd.js';
import { FaultLoop } from './fault-loop.js';
import type { FromWorker } from './messages.js';
import type { IoctlFn } from '../../native/uffd.js';

export interface FaultWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  controlFd: number;
  port: MessagePort;
  /** Offset of the activity counter the loop bumps on every batch. */
  activity: number;
  /** This worker's own buffers: reading a stored chunk, assembling a 2 MiB page. */
  scratch: number;
  scratchBytes: number;
  staging: number;
  /** This worker's WORKER_STAT block. */
  stats: number;
  /** Who holds a chunk-cache lock (chunk_cache.ts): this worker's number, from 1. */
  owner: number;
}

export function runFaultThread(ioctl: IoctlFn): void {
  const data = workerData as FaultWorkerData;
  const parent = parentPort;
  if (!parent) throw new Error('fault-worker must run as a worker thread');
  const send = (m: FromWorker): void => parent.postMessage(m);
  const core = instantiateCore(data.module, data.memory, hostPread(data.memory), namedChunkReads(data.memory));
  const loop = new FaultLoop(core, new EventFd(data.controlFd), data.port, send, data.activity, data.scratch, data.scratchBytes, data.staging, data.stats, data.owner, ioctl);
  send({ type: 'ready' });
  loop.run();
  // Every VM ended and its descriptors closed: the handler may let go of the state directory before this thread is torn down.
  send({ type: 'stopped' });
  data.port.close();
}
