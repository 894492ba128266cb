// `snapfault store verify`: a snapshot's chain of manifests, and every chunk
// it uses read back, decoded and checked against its checksum and its name;
// with --against, every page against the original memory file.
import { createHash } from 'node:crypto';
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { compileCore, createSharedMemory, instantiateCore } from '../core/wasm-core.js';
import { Arena } from '../core/arena.js';
import { StoreError, SnapshotError } from '../errors.js';
import { readChainOf, flattenChain } from './chain.js';
import { PAGE_IS_ZERO } from './manifest.js';
import { storedLength, storedRaw } from '../compressed/format.js';
import { chunkAt, type Store } from './store.js';

export interface VerifyStats {
  layers: number;
  chunks: number;
  bytesRead: number;
  pagesCompared: number;
}

/** A fault found: verify exits 1 with this one line. */
export class StoreFaultError extends StoreError {}

export async function verifySnapshot(store: Store, name: string, against: string | null, progress?: (done: number, total: number) => void): Promise<VerifyStats> {
  let chain;
  try {
    chain = await readChainOf(store, name);
  } catch (e) {
    if (e instanceof StoreError && !e.message.includes('has no snapshot')) throw new StoreFaultError(store.root, e.message.replace(/^store [^:]*: /, ''));
    throw e;
  }
  const view = flattenChain(chain);
  const ppc = view.chunkBytes / 4096;
  const core = instantiateCore(compileCore(), createSharedMemory());
  const arena = new Arena(core.memory);
  const scratchBytes = core.fn.lz4Bound(view.chunkBytes);
  const scratch = arena.alloc(scratchBytes, 4096);
  const decoded = arena.alloc(view.chunkBytes + core.layout.LZ4_DECODE_SLACK, 4096);
  // Which pages each chunk holds, to compare them while it is decoded.
  let pagesOf: number[][] | null = null;
  let original = -1;
  if (against !== null) {
    try {
      original = openSync(against, 'r');
    } catch (e) {
      throw new SnapshotError(against, `cannot be opened (${(e as NodeJS.ErrnoException).code}): give the original memory file`);
    }
    // Its size is taken before the descriptor is closed: the message needs it after.
    const size = fstatSync(original).size;
    if (size !== view.originalSize) {
      closeSync(original);
      throw new StoreFaultError(store.root, `snapshot "${name}" is ${view.originalSize} bytes, ${against} is ${size}`);
    }
    pagesOf = view.chunks.map(() => []);
    for (let p = 0; p < view.pages; p++) if (view.index[p] !== PAGE_IS_ZERO) pagesOf[Math.floor(view.index[p] / ppc)].push(p);
  }
  const fault = (why: string): never => {
    throw new StoreFaultError(store.root, `snapshot "${name}": ${why}`);
  };
  let bytesRead = 0;
  let pagesCompared = 0;
  const page = Buffer.alloc(4096);
  try {
    // Chunks are read READ_AHEAD ahead of the one being checked: from a bucket each read is a round trip.
    const reads: Array<Promise<Buffer | Error>> = [];
    const startRead = (i: number): void => {
      if (i < view.chunks.length) reads[i] = store.readChunk(chunkAt(view.chunks[i])).catch((e: Error) => e);
    };
    for (let i = 0; i < READ_AHEAD; i++) startRead(i);
    for (let i = 0; i < view.chunks.length; i++) {
      const c = view.chunks[i];
      const hex = c.name.toString('hex');
      const got = await reads[i];
      delete reads[i];
      startRead(i + READ_AHEAD);
      if (got instanceof Error) {
        // A store that cannot be reached, or refuses us, is an error like any other (exit 2), not damage.
        if (/cannot be reached|refused the credentials|no credentials/.test(got.message)) throw got;
        const packed = c.pack === null ? '' : ` (pack ${c.pack})`;
        return fault(`chunk ${hex}${packed} ${got.message.includes('is missing') ? 'is missing' : got.message.includes('is damaged') ? 'is damaged: its pack is shorter than the manifest says' : 'cannot be read'}`);
      }
      const stored = got;
      bytesRead += stored.length;
      const len = storedLength(c.stored);
      const raw = storedRaw(c.stored);
      if (stored.length !== len) fault(`chunk ${hex} is ${stored.length} bytes, its manifest says ${len}: it is damaged`);
      const mem = new Uint8Array(core.memory.buffer);
      if (raw) {
        if (len !== view.chunkBytes) fault(`chunk ${hex} is stored raw with the wrong length`);
        mem.set(stored, decoded);
      } else {
        if (len > scratchBytes) fault(`chunk ${hex} is longer than any compressed chunk can be`);
        mem.set(stored, scratch);
        if (core.fn.lz4DecodeBlock(scratch, len, decoded, view.chunkBytes) !== view.chunkBytes) fault(`chunk ${hex} does not decode`);
      }
      if (core.fn.xxh32(decoded, view.chunkBytes, 0) >>> 0 !== c.checksum >>> 0) fault(`chunk ${hex} fails its checksum`);
      const bytes = new Uint8Array(core.memory.buffer, decoded, view.chunkBytes);
      if (createHash('sha256').update(bytes).digest('hex') !== hex) fault(`chunk ${hex} is not what its name says`);
      for (const p of pagesOf?.[i] ?? []) {
        readSync(original, page, 0, 4096, p * 4096);
        const slot = view.index[p] % ppc;
        if (!page.equals(bytes.subarray(slot * 4096, (slot + 1) * 4096))) fault(`page ${p} (chunk ${hex}) differs from ${against}`);
        pagesCompared++;
      }
      progress?.(i + 1, view.chunks.length);
    }
    if (original >= 0) {
      for (let p = 0; p < view.pages; p++) {
        if (view.index[p] !== PAGE_IS_ZERO) continue;
        readSync(original, page, 0, 4096, p * 4096);
        if (!page.equals(ZERO)) fault(`page ${p} is zero in the store but not in ${against}`);
        pagesCompared++;
      }
    }
  } finally {
    if (original >= 0) closeSync(original);
  }
  return { layers: chain.length, chunks: view.chunks.length, bytesRead, pagesCompared };
}

const ZERO = Buffer.alloc(4096);
const READ_AHEAD = 16;
