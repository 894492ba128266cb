// Starts and stops the background zero-page scan of a raw snapshot.
import { Worker } from 'node:worker_threads';
import type { RawSnapshot } from './raw-file.js';
import type { Arena } from '../core/arena.js';
import type { ZeroScanData, ZeroScanResult } from './zero-scan-worker.js';

// Small reads: this kernel does not preempt a pread in progress, and a fault must not wait behind a long one.
const SCRATCH = 64 << 10;

export interface ZeroScan {
  readonly done: Promise<ZeroScanResult>;
  stop(): Promise<void>;
}

/** Scans snap through its own fd: stop the scan (and wait) before closing snap. */
export function startZeroScan(snap: RawSnapshot, module: WebAssembly.Module, memory: WebAssembly.Memory, arena: Arena, activity: number): ZeroScan {
  const scratch = arena.alloc(SCRATCH, 4096);
  const data: ZeroScanData = {
    module, memory, fd: snap.fd, extents: snap.dataExtents(), bitmap: snap.zeroBitmap, scratch, scratchSize: SCRATCH, activity,
    mapping: snap.srcBase,
  };
  const worker = new Worker(new URL('./zero-scan-worker.js', import.meta.url), { workerData: data });
  worker.unref();
  let released = false;
  const release = (): void => {
    if (!released) arena.freeBlock(scratch);
    released = true;
  };
  const done = new Promise<ZeroScanResult>((resolve) => {
    let result: ZeroScanResult = { zeroPages: 0, scannedBytes: 0, error: 'stopped' };
    worker.on('message', (r: ZeroScanResult) => (result = r));
    worker.on('error', (e) => (result = { zeroPages: 0, scannedBytes: 0, error: e.message }));
    worker.on('exit', () => {
      release();
      resolve(result);
    });
  });
  return {
    done,
    async stop() {
      await worker.terminate();
      await done;
    },
  };
}
