// Background thread that reads a snapshot and marks its all-zero pages, at
// idle priority so it only uses CPU time no fault wants. On the way it maps
// the file's pages into the handler's mapping of it (MADV_POPULATE_READ):
// a UFFDIO_COPY from a page not yet mapped takes a minor fault in the
// kernel, which measured ~2 µs of a ~5 µs 4 KiB copy here.
import { workerData, parentPort } from 'node:worker_threads';
import { instantiateCore } from '../core/wasm-core.js';
import { preadInto } from '../../native/fd.js';
import { setIdlePriority } from '../../native/sched.js';
import { addressOf } from '../../native/libc.js';
import { tryMadvise, MADV } from '../../native/mmap.js';

export interface ZeroScanData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /**
   * The snapshot's own descriptor (threads share the fd table). Not its path:
   * a file renamed over the path since would be scanned in its place. The
   * snapshot stops the scan before it closes the fd.
   */
  fd: number;
  extents: Array<[number, number]>;
  bitmap: number;
  scratch: number;
  scratchSize: number;
  /** Offset of the fault workers' activity counter. */
  activity: number;
  /** Address of the handler's mapping of the file (to populate), 0 for none. */
  mapping: number;
}

export interface ZeroScanResult {
  zeroPages: number;
  scannedBytes: number;
  error?: string;
}

const d = workerData as ZeroScanData;
setIdlePriority();
const core = instantiateCore(d.module, d.memory);
const base = addressOf(new Uint8Array(d.memory.buffer));
const result: ZeroScanResult = { zeroPages: 0, scannedBytes: 0 };
const activity = new Int32Array(d.memory.buffer, d.activity, 1);
const pause = new Int32Array(new SharedArrayBuffer(4));
const QUIET_MS = 20;

/**
 * Waits until no fault has been served for QUIET_MS. Even at idle priority
 * the scan would slow a restore: it streams the file through the CPU caches
 * the fault path needs, and this kernel does not preempt a pread midway.
 */
let lastSeen = Atomics.load(activity, 0);
function waitForQuiet(): void {
  let seen = Atomics.load(activity, 0);
  if (seen === lastSeen) return; // no fault since the previous piece
  for (;;) {
    Atomics.wait(pause, 0, 0, QUIET_MS);
    const now = Atomics.load(activity, 0);
    if (now === seen) break;
    seen = now;
  }
  lastSeen = seen;
}

let populate = d.mapping !== 0;
try {
  for (const [start, end] of d.extents) {
    for (let pos = start - (start % 4096); pos < end; ) {
      waitForQuiet();
      const want = Math.min(d.scratchSize, end - pos);
      const n = preadInto(d.fd, base + d.scratch, want, pos);
      if (n <= 0) throw new Error(n === 0 ? 'the file ended early' : `pread failed (errno ${-n})`);
      const whole = n - (n % 4096);
      if (whole === 0) break;
      result.zeroPages += core.fn.scanZeroPages(d.scratch, whole, d.bitmap, BigInt(pos / 4096));
      // Best effort: kernels before 5.14 refuse the advice (EINVAL); copies then fault the source in themselves.
      if (populate && tryMadvise(d.mapping + pos, whole, MADV.POPULATE_READ) < 0) populate = false;
      result.scannedBytes += whole;
      pos += whole;
    }
  }
} catch (e) {
  result.error = (e as Error).message;
}
parentPort?.postMessage(result);
