// `snapfault unpack | inspect | verify` on a compressed snapshot.
import { openSync, closeSync, readSync, fstatSync, type Stats } from 'node:fs';
import { compileCore, createSharedMemory, instantiateCore, type Core } from '../core/wasm-core.js';
import { Arena } from '../core/arena.js';
import { hostPread } from '../core/host-pread.js';
import { namedChunkReads } from '../core/named-chunks.js';
import { SnapshotError } from '../errors.js';
import { fileIdentity } from '../snapshot/raw-file.js';
import { openSnapshotFile, firstBytes } from '../snapshot/open-file.js';
import { AtomicFile } from '../output-file.js';
import { CompressedSnapshot } from './compressed-snapshot.js';
import { chunkErrorText } from './chunk-error.js';
import { PAGE_BYTES, PAGE_ZERO, CHUNK_RAW_FLAG, CHUNK_ENTRY_BYTES, isCompressed } from './format.js';

interface Opened {
  core: Core;
  arena: Arena;
  snap: CompressedSnapshot;
  chunk: number;
  scratch: number;
  scratchBytes: number;
}

/** Throws a SnapshotError unless `path` is a file that starts as a compressed snapshot does; returns its stat. */
export function checkCompressed(path: string): Stats {
  const fd = openSnapshotFile(path);
  try {
    if (!isCompressed(firstBytes(fd))) throw new SnapshotError(path, 'is not a snapfault compressed snapshot (it may be a raw memory file)');
    return fstatSync(fd);
  } finally {
    closeSync(fd);
  }
}

function openCompressed(path: string): Opened {
  const st = checkCompressed(path);
  const memory = createSharedMemory();
  const core = instantiateCore(compileCore(), memory, hostPread(memory), namedChunkReads(memory));
  const arena = new Arena(core.memory);
  const snap = CompressedSnapshot.open(path, fileIdentity(st), core, arena, 0);
  const chunk = arena.alloc(snap.header.chunkBytes + core.layout.LZ4_DECODE_SLACK, 4096);
  const scratchBytes = core.fn.lz4Bound(snap.header.chunkBytes);
  const scratch = arena.alloc(scratchBytes, 4096);
  return { core, arena, snap, chunk, scratch, scratchBytes };
}

/** Decodes chunk c into o.chunk; throws a SnapshotError naming the chunk on any fault. */
function decodeChunk(o: Opened, c: number): void {
  const rc = o.core.fn.loadChunk(o.snap.descriptor, c, o.chunk, o.scratch, o.scratchBytes);
  if (rc !== 0) throw new SnapshotError(o.snap.path, `chunk ${c} ${chunkErrorText(o.core.layout, rc)}: the file is damaged; pack it again`);
}

function pageIndex(o: Opened): Uint32Array {
  const L = o.core.layout;
  const index = new DataView(o.core.memory.buffer).getUint32(o.snap.descriptor + L.SNAP_INDEX, true);
  return new Uint32Array(o.core.memory.buffer, index, o.snap.pages);
}

export interface Inspection {
  path: string;
  version: number;
  codec: string;
  originalSize: number;
  fileSize: number;
  ratio: number;
  pageBytes: number;
  chunkBytes: number;
  pages: number;
  zeroPages: number;
  duplicatePages: number;
  storedPages: number;
  chunks: number;
  compressedChunks: number;
  rawChunks: number;
}

export function inspect(path: string): Inspection {
  const o = openCompressed(path);
  try {
    const h = o.snap.header;
    const L = o.core.layout;
    const table = new DataView(o.core.memory.buffer).getUint32(o.snap.descriptor + L.SNAP_CHUNK_TABLE, true);
    const dv = new DataView(o.core.memory.buffer);
    let raw = 0;
    for (let c = 0; c < h.chunks; c++) if ((dv.getUint32(table + c * CHUNK_ENTRY_BYTES + 8, true) & CHUNK_RAW_FLAG) !== 0) raw++;
    return {
      path, version: h.version, codec: 'lz4-block', originalSize: h.originalSize, fileSize: h.fileSize,
      ratio: h.originalSize / h.fileSize, pageBytes: h.pageBytes, chunkBytes: h.chunkBytes, pages: h.pages,
      zeroPages: h.zeroPages, duplicatePages: h.duplicatePages, storedPages: h.storedPages, chunks: h.chunks,
      compressedChunks: h.chunks - raw, rawChunks: raw,
    };
  } finally {
    o.snap.close();
  }
}

/** Writes the original memory file back (sparse where it held zero pages). */
export function unpack(path: string, outPath: string, progress?: (done: number, total: number) => void): number {
  const o = openCompressed(path);
  let out: AtomicFile;
  try {
    out = AtomicFile.create(outPath);
  } catch (e) {
    o.snap.close();
    throw e;
  }
  try {
    const h = o.snap.header;
    const index = pageIndex(o);
    out.truncate(h.originalSize);
    const ppc = h.chunkBytes / PAGE_BYTES;
    let current = -1;
    const mem = (): Uint8Array => new Uint8Array(o.core.memory.buffer);
    for (let p = 0; p < h.pages; p++) {
      const k = index[p];
      if (k === PAGE_ZERO) continue;
      const c = Math.floor(k / ppc);
      if (c !== current) {
        decodeChunk(o, c);
        current = c;
      }
      const at = o.chunk + (k % ppc) * PAGE_BYTES;
      out.write(mem().subarray(at, at + PAGE_BYTES), p * PAGE_BYTES);
      if (progress && p % 4096 === 0) progress(p * PAGE_BYTES, h.originalSize);
    }
    out.commit();
    progress?.(h.originalSize, h.originalSize);
    return h.originalSize;
  } catch (e) {
    out.discard();
    throw e;
  } finally {
    o.snap.close();
  }
}

export interface Verification {
  chunks: number;
  pagesCompared: number;
}

/**
 * Checks every chunk's checksum and decoding; with `againstPath`, also every
 * page against the original memory file. Throws a SnapshotError on the first
 * fault, naming the chunk or page.
 */
export function verify(path: string, againstPath?: string): Verification {
  const o = openCompressed(path);
  let against = -1;
  try {
    const h = o.snap.header;
    for (let c = 0; c < h.chunks; c++) decodeChunk(o, c);
    if (againstPath === undefined) return { chunks: h.chunks, pagesCompared: 0 };
    try {
      against = openSync(againstPath, 'r');
    } catch {
      throw new SnapshotError(againstPath, 'cannot be opened: check the path of the original memory file');
    }
    const size = fstatSync(against).size;
    if (size !== h.originalSize) throw new SnapshotError(path, `holds ${h.originalSize} bytes but ${againstPath} has ${size}: not its original`);
    const index = pageIndex(o);
    const ppc = h.chunkBytes / PAGE_BYTES;
    const orig = Buffer.alloc(PAGE_BYTES);
    const zero = Buffer.alloc(PAGE_BYTES);
    let current = -1;
    for (let p = 0; p < h.pages; p++) {
      readSync(against, orig, 0, PAGE_BYTES, p * PAGE_BYTES);
      const k = index[p];
      let same: boolean;
      if (k === PAGE_ZERO) same = orig.equals(zero);
      else {
        const c = Math.floor(k / ppc);
        if (c !== current) {
          decodeChunk(o, c);
          current = c;
        }
        const at = o.chunk + (k % ppc) * PAGE_BYTES;
        same = Buffer.from(o.core.memory.buffer, at, PAGE_BYTES).equals(orig);
      }
      if (!same) throw new SnapshotError(path, `page ${p} (offset ${p * PAGE_BYTES}) differs from ${againstPath}`);
    }
    return { chunks: h.chunks, pagesCompared: h.pages };
  } finally {
    if (against >= 0) closeSync(against);
    o.snap.close();
  }
}
