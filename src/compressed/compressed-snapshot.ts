// A compressed snapshot opened for serving: its page index, chunk table and
// decoded-chunk cache live in shared memory, where the core's planner and
// cache find them. Everything read from the file is checked before use.
import { openSync, fstatSync, closeSync, readSync } from 'node:fs';
import { SnapshotError, SnapshotVersionError } from '../errors.js';
import { addressOf } from '../../native/libc.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';
import {
  HEADER_BYTES, HEADER_CHECKSUM_OFFSET, PAGE_BYTES, PAGE_ZERO, CHUNK_ENTRY_BYTES, storedLength, storedRaw, decodeHeader, type Header,
} from './format.js';

const CACHE_WAYS = 4;

/** Reads `len` bytes at `pos` into shared memory at `dst`; throws on a short read. */
function readInto(fd: number, memory: WebAssembly.Memory, dst: number, len: number, pos: number): void {
  let done = 0;
  while (done < len) {
    const n = readSync(fd, new Uint8Array(memory.buffer, dst + done, len - done), 0, len - done, pos + done);
    if (n <= 0) throw new Error(`ended early at byte ${pos + done}`);
    done += n;
  }
}

/** xxh32 of bytes already in shared memory. */
export function checksumAt(core: Core, at: number, len: number): number {
  return core.fn.xxh32(at, len, 0) >>> 0;
}

/** What a snapshot descriptor is made of: the page index and chunk table already in shared memory. */
export interface DescriptorParts {
  /** The compressed file, or a store's chunks folder (with names). */
  fd: number;
  pages: number;
  chunkBytes: number;
  chunks: number;
  storedPages: number;
  codec: number;
  /** Offsets in shared memory: pages x u32, chunks x CHUNK_ENTRY_BYTES, chunks x 32 bytes (0: not a store's). */
  index: number;
  table: number;
  names: number;
  cacheBytes: number;
  /** A compressed file stores no page that no page uses; a store's shared chunks hold pages other snapshots use. */
  everyStoredPageUsed: boolean;
}

/**
 * Builds the stored page -> page table and the decoded-chunk cache, then the
 * descriptor the core's planner and cache read. Every block comes from `alloc`.
 */
export function layOutDescriptor(core: Core, alloc: (n: number, align?: number) => number, p: DescriptorParts, fail: (why: string) => never): number {
  const L = core.layout;
  const toPage = alloc(Math.max(p.storedPages, 1) * 4);
  const u32 = new Uint32Array(core.memory.buffer);
  u32.fill(PAGE_ZERO, toPage >> 2, (toPage >> 2) + p.storedPages);
  let seen = 0;
  for (let page = 0; page < p.pages; page++) {
    const k = u32[(p.index >> 2) + page];
    if (k === PAGE_ZERO) continue;
    if (k >= p.storedPages) fail(`page ${page} refers to stored page ${k} of ${p.storedPages}`);
    if (u32[(toPage >> 2) + k] === PAGE_ZERO) {
      u32[(toPage >> 2) + k] = page;
      seen++;
    }
  }
  if (p.everyStoredPageUsed && seen !== p.storedPages) fail('some stored pages belong to no page');

  // The cache: at least one set, sized by --cache-mib.
  const slotBytes = p.chunkBytes + L.LZ4_DECODE_SLACK;
  const slots = Math.max(CACHE_WAYS, Math.floor(p.cacheBytes / slotBytes / CACHE_WAYS) * CACHE_WAYS);
  const cacheHead = alloc(L.CACHE_SLOTS + slots * L.SLOT_STRIDE);
  const cacheData = alloc(slots * slotBytes, 4096);
  core.fn.cacheInit(cacheHead, slots / CACHE_WAYS, CACHE_WAYS, slotBytes, cacheData);

  const d = alloc(L.SNAP_SIZE);
  const v = new DataView(core.memory.buffer);
  v.setInt32(d + L.SNAP_FD, p.fd, true);
  v.setUint32(d + L.SNAP_PAGES, p.pages, true);
  v.setUint32(d + L.SNAP_PAGES_PER_CHUNK, p.chunkBytes / PAGE_BYTES, true);
  v.setUint32(d + L.SNAP_CHUNKS, p.chunks, true);
  v.setUint32(d + L.SNAP_STORED, p.storedPages, true);
  v.setUint32(d + L.SNAP_INDEX, p.index, true);
  v.setUint32(d + L.SNAP_CHUNK_TABLE, p.table, true);
  v.setUint32(d + L.SNAP_STORED_TO_PAGE, toPage, true);
  v.setUint32(d + L.SNAP_CACHE, cacheHead, true);
  v.setUint32(d + L.SNAP_CODEC, p.codec, true);
  v.setBigUint64(d + L.SNAP_MEM_BASE, BigInt(addressOf(new Uint8Array(core.memory.buffer))), true);
  v.setUint32(d + L.SNAP_NAMES, p.names, true);
  return d;
}

export class CompressedSnapshot {
  readonly size: bigint;
  /** Offset of the snapshot descriptor in shared memory (VM tables point at it). */
  readonly descriptor: number;
  readonly zeroBitmap = 0;
  readonly srcBase = 0;
  readonly pages: number;
  private readonly blocks: number[];
  private closed = false;

  /** Closed: its descriptor is freed, nothing may read through it. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** A snapshot laid out by its opener (a store's, src/store/store-snapshot.ts): its blocks and fd are this object's to free. */
  static assembled(path: string, fd: number, header: Header, identity: string, arena: Arena, descriptor: number, blocks: number[]): CompressedSnapshot {
    const snap = new CompressedSnapshot(path, fd, header, identity, arena, descriptor, blocks);
    snap.contentIdentity = identity;
    return snap;
  }

  /** Its identity by content (a store's snapshot: the manifest's SHA-256, in hex), null for a file. */
  contentIdentity: string | null = null;

  private constructor(
    readonly path: string,
    readonly fd: number,
    readonly header: Header,
    readonly identity: string,
    private readonly arena: Arena,
    descriptor: number,
    blocks: number[],
  ) {
    this.size = BigInt(header.originalSize);
    this.pages = header.pages;
    this.descriptor = descriptor;
    this.blocks = blocks;
  }

  /** Opens and checks `path` (already known to start with the magic). `cacheBytes` bounds the decoded-chunk cache. */
  static open(path: string, identity: string, core: Core, arena: Arena, cacheBytes: number): CompressedSnapshot {
    const fd = openSync(path, 'r');
    const blocks: number[] = [];
    const fail = (why: string): never => {
      throw new SnapshotError(path, `${why}: the file is damaged; pack it again from the memory file`);
    };
    try {
      const size = fstatSync(fd).size;
      const hb = Buffer.alloc(HEADER_BYTES);
      readSync(fd, hb, 0, HEADER_BYTES, 0);
      let h: Header;
      try {
        h = decodeHeader(hb, size);
      } catch (e) {
        const msg = (e as Error).message;
        if (msg.startsWith('has format version')) throw new SnapshotVersionError(path, msg);
        if (msg.startsWith('is truncated')) throw new SnapshotError(path, `${msg}: was it copied completely?`);
        return fail(msg);
      }
      // Always below the memory limit (snapshot/limits.ts): decodeHeader refuses 2^32 - 1 pages or more,
      // and the page index, 4 bytes a page, must fit the 2 GiB shared memory besides.
      const alloc = (n: number, align?: number): number => {
        const b = arena.alloc(n, align);
        blocks.push(b);
        return b;
      };
      const headerAt = alloc(HEADER_BYTES);
      new Uint8Array(core.memory.buffer, headerAt, HEADER_BYTES).set(hb);
      if (checksumAt(core, headerAt, HEADER_CHECKSUM_OFFSET) !== hb.readUInt32LE(HEADER_CHECKSUM_OFFSET)) fail('header checksum mismatch');

      const index = alloc(h.pages * 4);
      readInto(fd, core.memory, index, h.pages * 4, h.indexOffset);
      if (checksumAt(core, index, h.pages * 4) !== h.indexChecksum) fail('page index checksum mismatch');
      const table = alloc(h.chunks * CHUNK_ENTRY_BYTES);
      readInto(fd, core.memory, table, h.chunks * CHUNK_ENTRY_BYTES, h.chunkTableOffset);
      if (checksumAt(core, table, h.chunks * CHUNK_ENTRY_BYTES) !== h.chunkTableChecksum) fail('chunk table checksum mismatch');

      // Belt and braces behind the checksums: every reference must be in range.
      const ppc = h.chunkBytes / PAGE_BYTES;
      const scratchMax = core.fn.lz4Bound(h.chunkBytes);
      const dv = new DataView(core.memory.buffer);
      for (let c = 0; c < h.chunks; c++) {
        const e = table + c * CHUNK_ENTRY_BYTES;
        const off = Number(dv.getBigUint64(e, true));
        const stored = dv.getUint32(e + 8, true);
        const len = storedLength(stored);
        const raw = storedRaw(stored);
        const want = Math.min(ppc, h.storedPages - c * ppc) * PAGE_BYTES;
        if (off < h.dataOffset || off + len > h.fileSize || len === 0 || (raw ? len !== want : len > scratchMax)) fail(`chunk ${c} has an invalid location`);
      }
      const d = layOutDescriptor(core, alloc, { fd, index, table, names: 0, cacheBytes, everyStoredPageUsed: true, ...h }, fail);
      return new CompressedSnapshot(path, fd, h, identity, arena, d, blocks);
    } catch (e) {
      for (const b of blocks) arena.freeBlock(b);
      closeSync(fd);
      if (e instanceof SnapshotError) throw e;
      throw new SnapshotError(path, `cannot be read: ${(e as Error).message}`);
    }
  }

  /** Bytes of scratch a worker needs to read one stored chunk. */
  static scratchBytes(core: Core, chunkBytes: number): number {
    return core.fn.lz4Bound(chunkBytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    for (const b of this.blocks) this.arena.freeBlock(b);
  }
}
