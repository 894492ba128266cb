// A put worker: the CPU work of `snapfault store put`, one per core. Page
// digests (SHA-256, first 16 bytes, of each non-zero page) for dedup, of a
// range it reads from the memory file itself (only the digests go back: the
// main thread reads just the pages that turn out new), and for each new chunk
// its name (SHA-256 of its decoded bytes), xxh32 and LZ4 form.
import { workerData, parentPort } from 'node:worker_threads';
import { readExactlyAt } from '../snapshot/open-file.js';
import { createHash } from 'node:crypto';
import { instantiateCore, createSharedMemory } from '../core/wasm-core.js';
import { Arena } from '../core/arena.js';
import { CHUNK_RAW_FLAG } from '../compressed/format.js';
import { PAGE_DIGEST_BYTES } from './digest-pack.js';
import { pageDigest, firstChangedSlot } from './page-digest.js';

export interface PutWorkerData {
  module: WebAssembly.Module;
  chunkBytes: number;
  /** The memory file, open in this process (descriptors are shared by its threads). */
  fd: number;
  /** The largest digest range asked for. */
  rangeBytes: number;
}

export type PutJob =
  /** [offset, offset + length) of the memory file. */
  | { kind: 'digest'; id: number; offset: number; length: number }
  /** digests: the page digests the chunk's pages were sorted by (16 bytes a slot, zero for padding). */
  | { kind: 'chunk'; id: number; data: ArrayBuffer; digests: ArrayBuffer };

export type PutResult =
  /** digests: 16 bytes a page, all zero for a zero page; endedAt: the byte the file ended at, when it ended early. */
  | { kind: 'digest'; id: number; digests: ArrayBuffer; endedAt: number | null }
  /**
   * out: the stored bytes; stored: their length, with CHUNK_RAW_FLAG when stored raw;
   * changedSlot: a page whose bytes no longer match its digest (the file changed between two reads), else -1.
   */
  | { kind: 'chunk'; id: number; name: ArrayBuffer; out: ArrayBuffer; stored: number; checksum: number; changedSlot: number };

const PAGE = 4096;
const d = workerData as PutWorkerData;
const memory = createSharedMemory();
const core = instantiateCore(d.module, memory);
const arena = new Arena(memory);
const input = arena.alloc(d.chunkBytes, 4096);
const output = arena.alloc(core.fn.lz4Bound(d.chunkBytes), 4096);
const table = arena.alloc(core.layout.LZ4_TABLE_BYTES, 4096);
const ZERO = Buffer.alloc(PAGE);
// Read into again and again: no 4 MiB buffer per range for the garbage collector.
const range = Buffer.allocUnsafeSlow(d.rangeBytes);

parentPort?.on('message', (job: PutJob) => {
  if (job.kind === 'digest') {
    const pages = job.length / PAGE;
    const digests = Buffer.alloc(pages * PAGE_DIGEST_BYTES);
    const endedAt = readExactlyAt(d.fd, range, job.length, job.offset);
    for (let i = 0; i < pages && endedAt === null; i++) {
      const page = range.subarray(i * PAGE, (i + 1) * PAGE);
      if (page.equals(ZERO)) continue;
      pageDigest(page).copy(digests, i * PAGE_DIGEST_BYTES);
    }
    const r: PutResult = { kind: 'digest', id: job.id, digests: digests.buffer as ArrayBuffer, endedAt };
    parentPort?.postMessage(r, [r.digests]);
    return;
  }
  const data = Buffer.from(job.data);
  const changedSlot = firstChangedSlot(data, Buffer.from(job.digests));
  const name = createHash('sha256').update(data).digest();
  new Uint8Array(memory.buffer, input, data.length).set(data);
  const checksum = core.fn.xxh32(input, data.length, 0) >>> 0;
  // Keep the compressed form only when it saves something: else store raw.
  const n = core.fn.lz4EncodeBlock(input, data.length, output, data.length - 1, table);
  const out = n > 0 ? new Uint8Array(memory.buffer, output, n).slice() : new Uint8Array(data);
  const r: PutResult = {
    kind: 'chunk', id: job.id, name: name.buffer.slice(name.byteOffset, name.byteOffset + 32) as ArrayBuffer, out: out.buffer as ArrayBuffer,
    stored: n > 0 ? n : (data.length | CHUNK_RAW_FLAG) >>> 0, checksum, changedSlot,
  };
  parentPort?.postMessage(r, [r.out]);
});

