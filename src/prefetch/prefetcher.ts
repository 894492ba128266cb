// The prefetch worker, seen from the main thread: start it, hand it VMs,
// take them back (with their prefetch records) when they end, stop it.
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { ring, policyCalls } from './fault-feed.js';
import { closeFd } from '../../native/fd.js';
import type { PrefetchWorkerData } from './prefetch-thread.js';
import type { PreparedPolicy } from './policy-spec.js';
import type { PrefetchBuffers } from './prefetch-loop.js';
import type { PrefetchAssignment, ToPrefetcher, FromPrefetcher } from './messages.js';

/** A policy call running this long (to twice as long) is taken for hung. */
export const WATCHDOG_MS = 1000;

export class Prefetcher {
  private readonly releases = new Map<number, (records: Uint32Array | null) => void>();
  /** The uffd duplicates the worker holds (it closes them itself, unless it dies). */
  private readonly uffds = new Map<number, number>();
  private exited!: Promise<void>;
  private readonly i32: () => Int32Array;
  private stopping = false;
  private dead = false;

  private constructor(
    worker: Worker,
    private readonly port: MessagePort,
    private readonly memory: WebAssembly.Memory,
    private readonly doorbell: number,
  ) {
    this.i32 = () => new Int32Array(this.memory.buffer);
    this.exited = new Promise((r) => worker.on('exit', () => {
      this.dead = true;
      // A worker that died unasked left its descriptors open and its VMs unreleased.
      if (!this.stopping) for (const fd of this.uffds.values()) closeFd(fd);
      this.uffds.clear();
      for (const resolve of this.releases.values()) resolve(null);
      this.releases.clear();
      r();
    }));
  }

  /**
   * Starts the worker. `onCrash` hears when it is gone unasked: it threw, or
   * the watchdog stopped it because one policy call ran for WATCHDOG_MS.
   */
  static async start(
    module: WebAssembly.Module, memory: WebAssembly.Memory, policy: PreparedPolicy, buffers: PrefetchBuffers,
    onWarning: (id: number, message: string) => void, onCrash: (e: Error) => void,
    /** A range waits for a chunk the disk cache lacks (a snapshot served from a bucket): fetch it. */
    onNeed: (snap: number, chunk: number) => void,
    /** The worker's entry module: prefetch-worker.js (tests pass one that injects faults). */
    entry: URL = new URL('./prefetch-worker.js', import.meta.url),
  ): Promise<Prefetcher> {
    const { port1, port2 } = new MessageChannel();
    const data: PrefetchWorkerData = { module, memory, port: port2, policy, ...buffers };
    const worker = new Worker(entry, { workerData: data, transferList: [port2] });
    const p = new Prefetcher(worker, port1, memory, buffers.doorbell);
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromPrefetcher) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'warning') onWarning(m.id, m.message);
        else if (m.type === 'need') onNeed(m.snap, m.chunk);
        else {
          p.uffds.delete(m.id);
          p.releases.get(m.id)?.(m.records);
          p.releases.delete(m.id);
        }
      });
      let failure: Error | null = null;
      worker.on('error', (e) => {
        failure = e;
        reject(e);
      });
      // Any exit not asked for is a crash ('error' comes first when it threw).
      worker.on('exit', (code) => {
        clearInterval(watchdog);
        if (!p.stopping) onCrash(failure ?? new Error(`it exited with code ${code}`));
      });
      // A policy call cannot be interrupted from inside the worker: one that
      // runs on (a loop in a custom module) is ended by terminating the worker.
      let last = -1;
      const watchdog = setInterval(() => {
        const calls = policyCalls(p.i32(), buffers.doorbell);
        if (calls % 2 === 1 && calls === last) {
          failure = new Error(`prefetch policy ${policy.name} did not return within ${WATCHDOG_MS / 1000} s`);
          void worker.terminate();
        }
        last = calls;
      }, WATCHDOG_MS);
      watchdog.unref();
    });
    return p;
  }

  /** False once the worker is gone: VMs are then served without prefetch. */
  get alive(): boolean {
    return !this.dead;
  }

  add(vm: PrefetchAssignment): void {
    if (this.dead) {
      closeFd(vm.uffd);
      return;
    }
    this.uffds.set(vm.id, vm.uffd);
    this.post({ type: 'add', vm });
  }

  /** A chunk of a snapshot served from a bucket is in the disk cache now (`ok`), or could not be fetched: ranges waiting for it go on, or are dropped. */
  chunkLanded(snap: number, chunk: number, ok: boolean): void {
    if (!this.dead && !this.stopping) this.post({ type: 'landed', snap, chunk, ok });
  }

  /** Stops prefetching into a VM; resolves with its records (if recorded) once the worker let go of it. */
  release(id: number): Promise<Uint32Array | null> {
    if (this.dead) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.releases.set(id, resolve);
      this.post({ type: 'release', id });
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (!this.dead) this.post({ type: 'stop' });
    await this.exited;
    this.port.close();
    for (const r of this.releases.values()) r(null);
    this.releases.clear();
  }

  private post(m: ToPrefetcher): void {
    this.port.postMessage(m);
    ring(this.i32(), this.doorbell, true);
  }
}
