// A pack worker: LZ4-compresses batches of chunks with the core's encoder and
// checksums each decoded chunk. One per core; the main thread reads and dedups.
import { workerData, parentPort } from 'node:worker_threads';
import { instantiateCore, createSharedMemory } from '../core/wasm-core.js';
import { Arena } from '../core/arena.js';
import { CHUNK_RAW_FLAG } from './format.js';

export interface PackWorkerData {
  module: WebAssembly.Module;
  chunkBytes: number;
  batchChunks: number;
}

export interface PackJob {
  id: number;
  data: ArrayBuffer;
  /** Decoded length of each chunk in `data`, back to back. */
  lengths: number[];
}

export interface PackResult {
  id: number;
  out: ArrayBuffer;
  /** Stored length (with CHUNK_RAW_FLAG when stored raw) and checksum of each chunk. */
  stored: number[];
  checksums: number[];
}

const d = workerData as PackWorkerData;
const memory = createSharedMemory();
const core = instantiateCore(d.module, memory);
const arena = new Arena(memory);
const bound = core.fn.lz4Bound(d.chunkBytes);
const input = arena.alloc(d.chunkBytes * d.batchChunks, 4096);
const output = arena.alloc(bound, 4096);
const table = arena.alloc(core.layout.LZ4_TABLE_BYTES, 4096);

parentPort?.on('message', (job: PackJob) => {
  const bytes = new Uint8Array(memory.buffer);
  bytes.set(new Uint8Array(job.data), input);
  const pieces: Uint8Array[] = [];
  const stored: number[] = [];
  const checksums: number[] = [];
  let at = input;
  for (const len of job.lengths) {
    checksums.push(core.fn.xxh32(at, len, 0) >>> 0);
    // Keep the compressed form only when it saves something: else store raw.
    const n = core.fn.lz4EncodeBlock(at, len, output, len - 1, table);
    if (n > 0) {
      pieces.push(new Uint8Array(memory.buffer, output, n).slice());
      stored.push(n);
    } else {
      pieces.push(new Uint8Array(memory.buffer, at, len).slice());
      stored.push((len | CHUNK_RAW_FLAG) >>> 0);
    }
    at += len;
  }
  const total = pieces.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of pieces) {
    out.set(p, o);
    o += p.length;
  }
  const result: PackResult = { id: job.id, out: out.buffer, stored, checksums };
  parentPort?.postMessage(result, [out.buffer]);
});
