// A put worker: the CPU work of `snapfault store put`, one per core. Page
// digests (SHA-256, first 16 bytes, of each non-zero page) for dedup, and for
// each new chunk its name (SHA-256 of its decoded bytes), xxh32 and LZ4 form.
import { workerData, parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { instantiateCore, createSharedMemory } from '../core/wasm-core.js';
import { Arena } from '../core/arena.js';
import { CHUNK_RAW_FLAG } from '../compressed/format.js';
import { PAGE_DIGEST_BYTES } from './digest-pack.js';

export interface PutWorkerData {
  module: WebAssembly.Module;
  chunkBytes: number;
}

export type PutJob =
  | { kind: 'digest'; id: number; data: ArrayBuffer }
  | { kind: 'chunk'; id: number; data: ArrayBuffer };

export type PutResult =
  /** digests: 16 bytes a page, all zero for a zero page. */
  | { kind: 'digest'; id: number; data: ArrayBuffer; digests: ArrayBuffer }
  /** out: the stored bytes; stored: their length, with CHUNK_RAW_FLAG when stored raw. */
  | { kind: 'chunk'; id: number; name: ArrayBuffer; out: ArrayBuffer; stored: number; checksum: number };

const PAGE = 4096;
const d = workerData as PutWorkerData;
const memory = createSharedMemory();
const core = instantiateCore(d.module, memory);
const arena = new Arena(memory);
const input = arena.alloc(d.chunkBytes, 4096);
const output = arena.alloc(core.fn.lz4Bound(d.chunkBytes), 4096);
const table = arena.alloc(core.layout.LZ4_TABLE_BYTES, 4096);
const ZERO = Buffer.alloc(PAGE);

parentPort?.on('message', (job: PutJob) => {
  const data = Buffer.from(job.data);
  if (job.kind === 'digest') {
    const pages = data.length / PAGE;
    const digests = Buffer.alloc(pages * PAGE_DIGEST_BYTES);
    for (let i = 0; i < pages; i++) {
      const page = data.subarray(i * PAGE, (i + 1) * PAGE);
      if (page.equals(ZERO)) continue;
      createHash('sha256').update(page).digest().copy(digests, i * PAGE_DIGEST_BYTES, 0, PAGE_DIGEST_BYTES);
    }
    const r: PutResult = { kind: 'digest', id: job.id, data: job.data, digests: digests.buffer.slice(digests.byteOffset, digests.byteOffset + digests.length) as ArrayBuffer };
    parentPort?.postMessage(r, [r.data, r.digests]);
    return;
  }
  const name = createHash('sha256').update(data).digest();
  new Uint8Array(memory.buffer, input, data.length).set(data);
  const checksum = core.fn.xxh32(input, data.length, 0) >>> 0;
  // Keep the compressed form only when it saves something: else store raw.
  const n = core.fn.lz4EncodeBlock(input, data.length, output, data.length - 1, table);
  const out = n > 0 ? new Uint8Array(memory.buffer, output, n).slice() : new Uint8Array(data);
  const r: PutResult = {
    kind: 'chunk', id: job.id, name: name.buffer.slice(name.byteOffset, name.byteOffset + 32) as ArrayBuffer, out: out.buffer as ArrayBuffer,
    stored: n > 0 ? n : (data.length | CHUNK_RAW_FLAG) >>> 0, checksum,
  };
  parentPort?.postMessage(r, [r.out]);
});
