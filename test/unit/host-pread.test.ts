// The core's pread import against short reads and EINTR, on a real packed file.
import { expect } from 'chai';
import { readFileSync, statSync, truncateSync } from 'node:fs';
import { compileCore, createSharedMemory, instantiateCore, type Core } from '../../src/core/wasm-core.js';
import { Arena } from '../../src/core/arena.js';
import { hostPread, type PreadFn } from '../../src/core/host-pread.js';
import { CompressedSnapshot } from '../../src/compressed/compressed-snapshot.js';
import { pack } from '../../src/compressed/pack.js';
import { CHUNK_ENTRY_BYTES, CHUNK_RAW_FLAG } from '../../src/compressed/format.js';
import { fileIdentity } from '../../src/snapshot/raw-file.js';
import { preadInto } from '../../native/fd.js';
import { E } from '../../native/libc.js';
import { makeImage, prng, TempDir } from '../helpers/images.js';

const PAGE = 4096;
const CHUNK = 32 << 10;

/** At most 1000 bytes a call, and every other call interrupted: what NFS, FUSE or a signal can do. */
function flakyPread(): { read: PreadFn; calls: () => number } {
  let calls = 0;
  const read: PreadFn = (fd, addr, len, offset) => {
    calls++;
    if (calls % 2 === 1) return -E.EINTR;
    return preadInto(fd, addr, Math.min(len, 1000), offset);
  };
  return { read, calls: () => calls };
}

describe('host pread', () => {
  let dir: TempDir;
  let image: Buffer;
  let packed: string;

  before(async () => {
    dir = new TempDir();
    // Compressible pages, then incompressible ones: chunks stored both compressed and raw.
    image = Buffer.concat([makeImage(64 * PAGE, { seed: 'host-pread', zeroFraction: 0.3 }), prng('host-pread:raw', 32 * PAGE)]);
    packed = dir.file('mem.snapfault');
    await pack(dir.file('mem', image), packed, { chunkBytes: CHUNK, workers: 1 });
  });
  after(() => dir.remove());

  interface Opened {
    core: Core;
    snap: CompressedSnapshot;
    scratch: number;
    scratchLen: number;
    dst: number;
    table: number;
  }

  function open(path: string, read: PreadFn): Opened {
    const memory = createSharedMemory();
    const core = instantiateCore(compileCore(), memory, hostPread(memory, read));
    const arena = new Arena(memory);
    const snap = CompressedSnapshot.open(path, fileIdentity(statSync(path)), core, arena, 4 * CHUNK);
    const scratchLen = core.fn.lz4Bound(CHUNK);
    const table = new DataView(memory.buffer).getUint32(snap.descriptor + core.layout.SNAP_CHUNK_TABLE, true);
    return {
      core, snap, scratchLen, table,
      scratch: arena.alloc(scratchLen, 4096),
      dst: arena.alloc(CHUNK + core.layout.LZ4_DECODE_SLACK, 4096),
    };
  }

  /** The original bytes chunk c decodes to: its stored pages, each where it first appears in the image. */
  function expected(o: Opened, c: number): Buffer {
    const L = o.core.layout;
    const dv = new DataView(o.core.memory.buffer);
    const toPage = dv.getUint32(o.snap.descriptor + L.SNAP_STORED_TO_PAGE, true);
    const ppc = CHUNK / PAGE;
    const pages: Buffer[] = [];
    for (let k = c * ppc; k < Math.min((c + 1) * ppc, o.snap.header.storedPages); k++) {
      const p = dv.getUint32(toPage + k * 4, true);
      pages.push(image.subarray(p * PAGE, (p + 1) * PAGE));
    }
    return Buffer.concat(pages);
  }

  const bytesAt = (o: Opened, at: number, len: number): Buffer => Buffer.from(new Uint8Array(o.core.memory.buffer, at, len));
  const storedLength = (o: Opened, c: number): number => new DataView(o.core.memory.buffer).getUint32(o.table + c * CHUNK_ENTRY_BYTES + 8, true);

  it('reads a whole chunk through short reads and EINTR: every chunk decodes and checks out', () => {
    const flaky = flakyPread();
    const o = open(packed, flaky.read);
    try {
      const chunks = o.snap.header.chunks;
      const kinds = new Set<string>();
      for (let c = 0; c < chunks; c++) {
        const stored = storedLength(o, c);
        kinds.add((stored & CHUNK_RAW_FLAG) !== 0 ? 'raw' : 'compressed');
        expect((stored & ~CHUNK_RAW_FLAG) >>> 0, `chunk ${c} needs more than one read`).to.be.above(1000);

        expect(o.core.fn.loadChunk(o.snap.descriptor, c, o.dst, o.scratch, o.scratchLen), `loadChunk(${c})`).to.equal(0);
        const want = expected(o, c);
        expect(bytesAt(o, o.dst, want.length).equals(want), `chunk ${c} bytes`).to.equal(true);

        const slot = o.core.fn.chunkAcquire(0, o.snap.descriptor, c, o.scratch, o.scratchLen, 1);
        expect(slot, `chunkAcquire(${c})`).to.be.at.least(0);
        const cache = new DataView(o.core.memory.buffer).getUint32(o.snap.descriptor + o.core.layout.SNAP_CACHE, true);
        expect(bytesAt(o, o.core.fn.slotData(cache, slot), want.length).equals(want), `cached chunk ${c} bytes`).to.equal(true);
        o.core.fn.chunkRelease(o.snap.descriptor, slot);
      }
      expect([...kinds].sort()).to.deep.equal(['compressed', 'raw']);
      expect(flaky.calls()).to.be.above(4 * chunks);
    } finally {
      o.snap.close();
    }
  });

  it('a file that really ends early is still an IO error, with or without short reads', () => {
    const copy = dir.file('truncated.snapfault', readFileSync(packed));
    for (const read of [preadInto, flakyPread().read]) {
      const o = open(copy, read);
      try {
        // The chunk table (at the end of the file) is read by now: cut into the last chunk's data.
        const last = o.snap.header.chunks - 1;
        const off = Number(new DataView(o.core.memory.buffer).getBigUint64(o.table + last * CHUNK_ENTRY_BYTES, true));
        truncateSync(copy, off + 100);
        expect(o.core.fn.loadChunk(o.snap.descriptor, last, o.dst, o.scratch, o.scratchLen)).to.equal(o.core.layout.CHUNK_ERR_IO);
        expect(o.core.fn.chunkAcquire(0, o.snap.descriptor, last, o.scratch, o.scratchLen, 1)).to.equal(o.core.layout.CHUNK_ERR_IO);
        expect(o.core.fn.loadChunk(o.snap.descriptor, 0, o.dst, o.scratch, o.scratchLen), 'chunk 0 is whole').to.equal(0);
      } finally {
        o.snap.close();
      }
      // Whole again for the next reader.
      dir.file('truncated.snapfault', readFileSync(packed));
    }
  });

  it('the locks of a thread that died holding them are opened: a slot it used stays, a slot it was loading is emptied', () => {
    const o = open(packed, preadInto);
    try {
      const L = o.core.layout;
      const fn = o.core.fn;
      const dv = new DataView(o.core.memory.buffer);
      const cache = dv.getUint32(o.snap.descriptor + L.SNAP_CACHE, true);
      const header = (slot: number): number => cache + L.CACHE_SLOTS + slot * L.SLOT_STRIDE;
      // The prefetch worker holds chunk 0 (copying from it) and dies.
      const used = fn.chunkAcquire(0, o.snap.descriptor, 0, o.scratch, o.scratchLen, L.OWNER_PREFETCH);
      expect(used).to.be.at.least(0);
      expect(dv.getUint32(header(used) + L.SLOT_LOCK, true)).to.equal(L.OWNER_PREFETCH);
      // ... and had claimed a slot for chunk 1 and was decoding into it.
      const loading = used === 0 ? 1 : 0;
      dv.setUint32(header(loading) + L.SLOT_LOCK, L.OWNER_PREFETCH, true);
      dv.setUint32(header(loading) + L.SLOT_TAG, (2 | L.TAG_LOADING) >>> 0, true);
      expect(fn.cacheReleaseOwner(cache, L.OWNER_PREFETCH)).to.equal(2);
      expect(dv.getUint32(header(used) + L.SLOT_LOCK, true)).to.equal(0);
      expect(dv.getUint32(header(used) + L.SLOT_TAG, true)).to.equal(1); // whole: still a hit
      expect(dv.getUint32(header(loading) + L.SLOT_LOCK, true)).to.equal(0);
      expect(dv.getUint32(header(loading) + L.SLOT_TAG, true)).to.equal(0); // half decoded: never served
      // A fault worker now gets both without waiting, chunk 1 decoded anew and checked
      // (this thread's load count, which traces read for a page's source, counts the load, not the hit).
      const loads = fn.chunkLoadsHere();
      const again = fn.chunkAcquire(0, o.snap.descriptor, 0, o.scratch, o.scratchLen, 1);
      expect(again).to.equal(used);
      fn.chunkRelease(o.snap.descriptor, again);
      expect(fn.chunkLoadsHere()).to.equal(loads);
      const reloaded = fn.chunkAcquire(0, o.snap.descriptor, 1, o.scratch, o.scratchLen, 1);
      expect(reloaded).to.be.at.least(0);
      expect(fn.chunkLoadsHere()).to.equal(loads + 1);
      expect(bytesAt(o, fn.slotData(cache, reloaded), expected(o, 1).length).equals(expected(o, 1))).to.equal(true);
      fn.chunkRelease(o.snap.descriptor, reloaded);
      expect(fn.cacheReleaseOwner(cache, L.OWNER_PREFETCH)).to.equal(0);
    } finally {
      o.snap.close();
    }
  });
});
