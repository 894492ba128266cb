// `snapfault store put`: one pass over a memory file. Put workers read and
// digest its pages; the main thread, in page order, sorts each page into
// zero, its parent's (a hole in a Diff snapshot), one the store already holds
// (found by digest in the dedup index, the chunk confirmed to exist), or new.
// Only the new pages are read again, by the main thread (new-page-reader.ts),
// and gathered into chunks, which the workers name, checksum and compress,
// and which are written unless a chunk of that name exists. The manifest is
// committed last, once every chunk it names is on disk (the reused ones
// looked up again first: gone-chunks.ts).
import { closeSync, fstatSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { compileCore } from '../core/wasm-core.js';
import { SnapshotError, StoreError } from '../errors.js';
import { openSnapshotFile, firstBytes, endedEarly } from '../snapshot/open-file.js';
import { isCompressed } from '../compressed/format.js';
import { dataExtents } from '../../native/fd.js';
import { reachesMemoryLimit, MEMORY_LIMIT_TEXT } from '../snapshot/limits.js';
import { checkSnapshotName, chunkAt, type Store } from './store.js';
import { encodeManifest, decodeManifest, manifestIdentity, PAGE_IS_ZERO, PAGE_IN_PARENT, type ChunkRecord } from './manifest.js';
import { encodeDigestPack, PAGE_DIGEST_BYTES } from './digest-pack.js';
import { JobQueue } from './put-jobs.js';
import { ChunkGatherer, ChangedWhileReadError } from './chunk-gatherer.js';
import { replaceGoneChunks } from './gone-chunks.js';
import { NewPageReader } from './new-page-reader.js';
import { isZeroDigest } from './page-digest.js';
import { loadDedupIndex, type ChunkRef } from './dedup-index.js';
import type { PutWorkerData } from './put-worker.js';

export interface PutOptions {
  parent?: string;
  workers?: number;
  progress?: (done: number, total: number) => void;
  /** Where a warning goes (one line). */
  warn?: (line: string) => void;
}

export interface PutStats {
  name: string;
  identity: string;
  pages: number;
  zeroPages: number;
  parentPages: number;
  /** Pages the store already held (from any snapshot, or earlier in this one). */
  reusedPages: number;
  /** Pages stored in new chunks. */
  newPages: number;
  chunksAdded: number;
  bytesAdded: number;
  /** Pack objects the new chunks went into (a bucket's; 0: each an object or file of its own). */
  packsAdded: number;
  chunksReused: number;
  manifestBytes: number;
  seconds: number;
}

const PAGE = 4096;
const READ_BYTES = 4 << 20;

export async function put(store: Store, memPath: string, name: string, opts: PutOptions = {}): Promise<PutStats> {
  const started = Date.now();
  checkSnapshotName(name);
  if (await store.hasSnapshot(name)) throw new StoreError(store.root, `already has a snapshot "${name}": choose another name, or remove it first (snapfault store rm)`);
  const fd = openSnapshotFile(memPath);
  const pending = await store.register('pending', { name, startedMs: started });
  const workers: Worker[] = [];
  try {
    const size = fstatSync(fd).size;
    if (isCompressed(firstBytes(fd))) throw new SnapshotError(memPath, 'is a compressed snapshot: put the memory file itself (snapfault unpack gives it back)');
    if (size === 0 || size % PAGE !== 0) throw new SnapshotError(memPath, `its size ${size} is not a non-zero multiple of 4096: not a Firecracker memory file`);
    const pages = size / PAGE;
    if (reachesMemoryLimit(BigInt(size))) throw new SnapshotError(memPath, `is too large: ${MEMORY_LIMIT_TEXT}`);
    let parent: { name: string; identity: string } | null = null;
    if (opts.parent !== undefined) {
      const bytes = await store.readManifest(opts.parent);
      const m = decodeManifest(bytes);
      if (m.originalSize !== size) {
        throw new SnapshotError(memPath, `is ${size} bytes but its parent "${opts.parent}" is ${m.originalSize}: a Diff snapshot has the size of the snapshot it follows`);
      }
      parent = { name: opts.parent, identity: manifestIdentity(bytes) };
    }
    const chunkBytes = store.info.chunkBytes;
    const ppc = chunkBytes / PAGE;
    const index = await loadDedupIndex(store);
    const table = new Uint32Array(pages).fill(parent ? PAGE_IN_PARENT : PAGE_IS_ZERO);
    const s = { zeroPages: 0, reusedPages: 0, newPages: 0 };
    const used: ChunkRef[] = []; // chunks this snapshot refers to, by ordinal
    const useRef = (ref: ChunkRef): number => {
      if (ref.ordinal < 0) {
        ref.ordinal = used.length;
        used.push(ref);
      }
      return ref.ordinal;
    };

    const module = compileCore();
    const count = Math.max(1, opts.workers ?? Math.min(availableParallelism(), 4));
    for (let i = 0; i < count; i++) {
      const data: PutWorkerData = { module, chunkBytes, fd, rangeBytes: READ_BYTES };
      workers.push(new Worker(new URL('./put-worker.js', import.meta.url), { workerData: data }));
    }
    const jobs = new JobQueue(workers, count * 2);

    const gatherer = new ChunkGatherer(store, jobs, index, chunkBytes);
    const newPageReader = new NewPageReader(fd, memPath);
    const sortPages = async (digests: Buffer, firstPage: number, pageCount: number): Promise<void> => {
      const keys: string[] = [];
      for (let i = 0; i < pageCount; i++) keys.push(digests.subarray(i * PAGE_DIGEST_BYTES, (i + 1) * PAGE_DIGEST_BYTES).toString('latin1'));
      await index.confirm(keys, store);
      // A page is new if it is not zero and the index (which grows as new pages are added) lacks it.
      const isNew = (i: number): boolean => !isZeroDigest(digests, i) && index.find(keys[i]) === null;
      for (let i = 0; i < pageCount; i++) {
        const p = firstPage + i;
        if (isZeroDigest(digests, i)) {
          table[p] = PAGE_IS_ZERO;
          s.zeroPages++;
          continue;
        }
        const hit = index.find(keys[i]);
        if (hit) {
          table[p] = useRef(hit.ref) * ppc + hit.slot;
          s.reusedPages++;
          continue;
        }
        const page = newPageReader.page(p, (q) => q < firstPage + pageCount && isNew(q - firstPage));
        const { ref, slot } = await gatherer.add(page, digests.subarray(i * PAGE_DIGEST_BYTES, (i + 1) * PAGE_DIGEST_BYTES), keys[i]);
        table[p] = useRef(ref) * ppc + slot;
        s.newPages++;
      }
    };

    // Only the file's data is read: a hole is a zero page, or in a layer its parent's.
    const extents = dataExtents(fd, size).map(([a, b]): [number, number] => [Math.floor(a / PAGE) * PAGE, Math.ceil(b / PAGE) * PAGE]);
    if (parent) checkDiffHoles(memPath, fd, extents, opts.warn);
    if (!parent) s.zeroPages = pages - extents.reduce((n, [a, b]) => n + (b - a) / PAGE, 0);
    let done = 0;
    let order: Promise<void> = Promise.resolve();
    for (const [start, end] of extents) {
      for (let pos = start; pos < end; pos += READ_BYTES) {
        const want = Math.min(READ_BYTES, end - pos);
        // The workers read and digest; the main thread reads only the pages that are new.
        const { result } = await jobs.submit({ kind: 'digest', id: 0, offset: pos, length: want });
        // Pages are sorted strictly in file order, whatever order the workers answer in.
        const first = pos / PAGE;
        order = order.then(() => result).then(async (r) => {
          if (r.kind !== 'digest') throw new Error('internal: a chunk answered a digest job');
          if (r.endedAt !== null) throw endedEarly(memPath, r.endedAt);
          await sortPages(Buffer.from(r.digests), first, want / PAGE);
          done += want;
          opts.progress?.(done, size);
        });
        jobs.track(order);
      }
    }
    await order;
    await gatherer.finish();
    jobs.check();
    const moved = await replaceGoneChunks({ store, fd, path: memPath, table, used, useRef, gatherer, ppc });
    s.reusedPages -= moved;
    s.newPages += moved;
    jobs.check();

    const chunks: ChunkRecord[] = used.map((r) => ({ name: r.name, stored: r.stored, checksum: r.checksum, pack: r.pack, offset: r.offset }));
    const manifest = encodeManifest({ originalSize: size, chunkBytes, pages, createdMs: Date.now(), parent, chunks, pageTable: table });
    if (gatherer.records.length > 0) await store.writeDigestPack(encodeDigestPack(ppc, gatherer.records));
    await store.commitManifest(name, manifest);
    await confirmAfterCommit(store, name, used, parent);
    const reused = used.filter((r) => r.existing).length;
    return {
      name, identity: manifestIdentity(manifest), pages, zeroPages: s.zeroPages, parentPages: pages - s.zeroPages - s.reusedPages - s.newPages,
      reusedPages: s.reusedPages, newPages: s.newPages, chunksAdded: gatherer.chunksAdded, bytesAdded: gatherer.bytesAdded,
      packsAdded: new Set(gatherer.records.filter((r) => r.pack !== null).map((r) => r.pack)).size, chunksReused: reused, manifestBytes: manifest.length,
      seconds: (Date.now() - started) / 1000,
    };
  } catch (e) {
    if (e instanceof ChangedWhileReadError) {
      throw new SnapshotError(memPath, 'changed while being put (a page read twice differed): put it again once nothing writes to it; nothing was committed');
    }
    throw e;
  } finally {
    await pending.release();
    closeSync(fd);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * In a Diff a hole is the parent's page, so the holes must be the file's
 * real ones: a file system that hides them (reporting everything as data),
 * or whose blocks hold more than one page (a dirty page's neighbours would
 * read as zeros), would have parent pages served as zeros. Refused. A Diff
 * with no hole at all is only suspicious (copied without its holes?): warned.
 */
function checkDiffHoles(path: string, fd: number, extents: Array<[number, number]>, warn?: (line: string) => void): void {
  const st = fstatSync(fd);
  if (st.blksize > PAGE) {
    throw new SnapshotError(path, `lies on a file system with ${st.blksize}-byte blocks: a Diff snapshot's holes are found by block, and a block holds more than one 4 KiB page; put it from a file system with 4 KiB blocks (ext4, xfs, tmpfs)`);
  }
  const data = extents.reduce((n, [a, b]) => n + (b - a), 0);
  const allocated = st.blocks * 512;
  if (data > allocated + (1 << 20)) {
    throw new SnapshotError(path, `its file system reports ${data} bytes of data but holds ${allocated}: it does not report the Diff snapshot's holes (SEEK_DATA); put it from a file system that does (ext4, xfs, tmpfs)`);
  }
  if (data === st.size && warn) {
    warn(`${path} has no holes: every page is taken from it and none from its parent; if it is a Diff snapshot, was it copied without its holes (cp --sparse=always keeps them)?`);
  }
}

/**
 * A gc that listed a chunk before this put touched it may have moved it aside
 * after: the chunks the committed manifest reuses are checked once more, and
 * one caught aside is put back.
 */
async function confirmAfterCommit(store: Store, name: string, used: ChunkRef[], parent: { name: string; identity: string } | null): Promise<void> {
  // rm checks for children when it runs: one removing the parent while this put ran saw none.
  if (parent) {
    let same = false;
    try {
      same = manifestIdentity(await store.readManifest(parent.name)) === parent.identity;
    } catch { /* removed */ }
    if (!same) {
      await store.retireManifest(name, manifestIdentity(await store.readManifest(name)));
      throw new StoreError(store.root, `parent "${parent.name}" was removed or replaced while "${name}" was being put: put both again`);
    }
  }
  // Looked up all at once: from a bucket each is a round trip.
  const reused = used.filter((r) => r.existing).map(chunkAt);
  const there = await Promise.all(reused.map(async (at) => (await store.chunkExists(at)) || (at.pack === null && await store.restoreFromTrash(at.hex))));
  const gone = reused.find((_, i) => !there[i]);
  if (gone !== undefined) {
    throw new StoreError(store.root, `snapshot "${name}" was committed, but chunk ${gone.hex} it reuses was deleted by a concurrent gc: remove it (snapfault store rm) and put it again`);
  }
}
