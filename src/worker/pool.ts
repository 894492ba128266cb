// The fault workers, seen from the main thread: start them, hand each new VM
// to the least busy one, hear when VMs end, stop them all.
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { EventFd } from '../../native/fd.js';
import type { FaultWorkerData } from './fault-thread.js';
import type { VmAssignment, ToWorker, FromWorker } from './messages.js';

interface PoolWorker {
  worker: Worker;
  port: MessagePort;
  control: EventFd;
  vms: Set<number>;
  /** Its loop has ended (every VM let go), or its thread has exited. */
  stopped: Promise<void>;
}

export type WorkerEvent = Exclude<FromWorker, { type: 'ready' } | { type: 'stopped' }>;

/** Shared-memory blocks of one worker (offsets). */
export interface WorkerBuffers {
  scratch: number;
  scratchBytes: number;
  staging: number;
  stats: number;
}

export class FaultWorkerPool {
  private readonly workers: PoolWorker[] = [];
  private readonly owner = new Map<number, PoolWorker>();
  private stopping = false;

  private constructor(private readonly onEvent: (e: WorkerEvent) => void, private readonly onCrash: (e: Error) => void) {}

  static async start(
    size: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    activity: number,
    buffers: () => WorkerBuffers,
    onEvent: (e: WorkerEvent) => void,
    onCrash: (e: Error) => void,
    /** The workers' entry module: fault-worker.js (tests pass one that injects faults). */
    entry: URL = new URL('./fault-worker.js', import.meta.url),
  ): Promise<FaultWorkerPool> {
    const pool = new FaultWorkerPool(onEvent, onCrash);
    await Promise.all(Array.from({ length: size }, () => pool.spawn(module, memory, activity, buffers(), entry)));
    return pool;
  }

  private spawn(module: WebAssembly.Module, memory: WebAssembly.Memory, activity: number, b: WorkerBuffers, entry: URL): Promise<void> {
    const control = new EventFd();
    const { port1, port2 } = new MessageChannel();
    // Its id as a chunk-cache lock owner (chunk_cache.ts): 1, 2, ...
    const data: FaultWorkerData = { module, memory, controlFd: control.fd, port: port2, activity, owner: this.workers.length + 1, ...b };
    const worker = new Worker(entry, { workerData: data, transferList: [port2] });
    let resolveStopped!: () => void;
    const pw: PoolWorker = { worker, port: port1, control, vms: new Set(), stopped: new Promise((r) => (resolveStopped = r)) };
    this.workers.push(pw);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') return resolve();
        if (m.type === 'stopped') return resolveStopped();
        if (m.type === 'ended') {
          pw.vms.delete(m.id);
          this.owner.delete(m.id);
        }
        this.onEvent(m);
      });
      let threw = false;
      worker.on('error', (e) => {
        threw = true;
        reject(e);
        this.onCrash(e);
      });
      worker.on('exit', (code) => {
        // Gone unasked without throwing (process.exit in the thread, a fatal error): a crash all the same.
        if (!this.stopping && !threw) {
          const e = new Error(`it exited with code ${code}`);
          reject(e);
          this.onCrash(e);
        }
        resolveStopped();
      });
    });
  }

  /** Hands a VM to the worker serving the fewest; its fds belong to that worker from now on. */
  assign(vm: VmAssignment): void {
    let best = this.workers[0];
    for (const w of this.workers) if (w.vms.size < best.vms.size) best = w;
    best.vms.add(vm.id);
    this.owner.set(vm.id, best);
    this.post(best, { type: 'add', vm });
  }

  /** Tells every worker that a file's zero-page scan is over (its VMs may have longer zero runs now). */
  zeroesKnown(bitmap: number): void {
    for (const w of this.workers) this.post(w, { type: 'zeroes', bitmap });
  }

  /** Tells every worker a chunk has landed in the disk cache, or could not be fetched: their faults parked on it go on. */
  chunkFetched(snap: number, chunk: number, error: string | null): void {
    // A fetch that ends after the stop has nobody to tell (and the workers' eventfds are closed).
    if (this.stopping) return;
    for (const w of this.workers) this.post(w, { type: 'fetched', snap, chunk, error });
  }

  get servedVms(): number {
    return this.owner.size;
  }

  /** Stops every worker; each ends its VMs ('shutdown') first. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const w of this.workers) this.post(w, { type: 'stop' });
    // Their loops' end, not their threads' teardown (a few ms each): from then on no worker touches a VM.
    await Promise.all(this.workers.map((w) => w.stopped));
    for (const w of this.workers) {
      w.control.close();
      w.port.close();
    }
  }

  private post(w: PoolWorker, m: ToWorker): void {
    w.port.postMessage(m);
    w.control.signal();
  }
}
