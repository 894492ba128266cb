// `snapfault store put`: one pass over a memory file. Put workers digest its
// pages; the main thread, in page order, sorts each page into zero, its
// parent's (a hole in a Diff snapshot), one the store already holds (found by
// digest in the dedup index, the chunk confirmed to exist), or new. New pages
// are gathered into chunks, which the workers name, checksum and compress,
// and which are written unless a chunk of that name exists. The manifest is
// committed last, once every chunk it names is on disk.
import { closeSync, readSync, fstatSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { compileCore } from '../core/wasm-core.js';
import { SnapshotError, StoreError } from '../errors.js';
import { openSnapshotFile, firstBytes } from '../snapshot/open-file.js';
import { isCompressed } from '../compressed/format.js';
import { dataExtents } from '../../native/fd.js';
import { reachesMemoryLimit, MEMORY_LIMIT_TEXT } from '../snapshot/limits.js';
import { checkSnapshotName, type Store } from './store.js';
import { Limiter } from './limiter.js';
import { encodeManifest, decodeManifest, manifestIdentity, PAGE_IS_ZERO, PAGE_IN_PARENT, type ChunkRecord } from './manifest.js';
import { encodeDigestPack, PAGE_DIGEST_BYTES, type DigestRecord } from './digest-pack.js';
import { loadDedupIndex, type ChunkRef } from './dedup-index.js';
import type { PutJob, PutResult, PutWorkerData } from './put-worker.js';

export interface PutOptions {
  parent?: string;
  workers?: number;
  progress?: (done: number, total: number) => void;
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
  chunksReused: number;
  manifestBytes: number;
  seconds: number;
}

const PAGE = 4096;
const READ_BYTES = 4 << 20;
const WRITES_IN_FLIGHT = 16;

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
      const data: PutWorkerData = { module, chunkBytes };
      workers.push(new Worker(new URL('./put-worker.js', import.meta.url), { workerData: data }));
    }
    const jobs = new JobQueue(workers, count * 2);

    // New pages are gathered into the chunk being filled; a full chunk goes to a worker to be named.
    let filling: { ref: ChunkRef; data: Buffer; digests: Buffer; used: number } | null = null;
    const newRecords: DigestRecord[] = [];
    const chunkWrites: Array<Promise<void>> = [];
    // Chunks being written at once: a bucket takes them concurrently, and waiting here holds back reading (and memory).
    const writes = new Limiter(WRITES_IN_FLIGHT);
    let chunksAdded = 0;
    let bytesAdded = 0;
    const sendChunk = async (): Promise<void> => {
      if (!filling) return;
      const f = filling;
      filling = null;
      const free = await writes.acquire();
      const ab = f.data.buffer.slice(f.data.byteOffset, f.data.byteOffset + f.data.length) as ArrayBuffer;
      const { result } = await jobs.submit({ kind: 'chunk', id: 0, data: ab });
      const written = result.then(async (r) => {
        if (r.kind !== 'chunk') throw new Error('internal: a digest answered a chunk job');
        f.ref.name = Buffer.from(r.name);
        f.ref.stored = r.stored;
        f.ref.checksum = r.checksum;
        if (await store.writeChunk(f.ref.name.toString('hex'), new Uint8Array(r.out))) {
          chunksAdded++;
          bytesAdded += r.out.byteLength;
        }
        newRecords.push({ name: f.ref.name, stored: r.stored, checksum: r.checksum, digests: f.digests });
      }).finally(free);
      jobs.track(written); // a failed write (a full disk) stops the put at its next step, never as an unhandled rejection
      chunkWrites.push(written);
    };
    const addNewPage = async (page: Buffer, digest: Buffer, key: string, p: number): Promise<void> => {
      if (!filling) {
        const ref = index.newRef();
        filling = { ref, data: Buffer.alloc(chunkBytes), digests: Buffer.alloc(ppc * PAGE_DIGEST_BYTES), used: 0 };
      }
      const f = filling;
      const slot = f.used++;
      page.copy(f.data, slot * PAGE);
      digest.copy(f.digests, slot * PAGE_DIGEST_BYTES);
      index.set(key, f.ref, slot);
      table[p] = useRef(f.ref) * ppc + slot;
      s.newPages++;
      if (f.used === ppc) await sendChunk();
    };
    const sortPages = async (block: Buffer, digests: Buffer, firstPage: number): Promise<void> => {
      const keys: string[] = [];
      for (let i = 0; i < block.length / PAGE; i++) keys.push(digests.subarray(i * PAGE_DIGEST_BYTES, (i + 1) * PAGE_DIGEST_BYTES).toString('latin1'));
      await index.confirm(keys, store);
      for (let i = 0; i < block.length / PAGE; i++) {
        const p = firstPage + i;
        const digest = digests.subarray(i * PAGE_DIGEST_BYTES, (i + 1) * PAGE_DIGEST_BYTES);
        if (isZeroDigest(digest)) {
          table[p] = PAGE_IS_ZERO;
          s.zeroPages++;
          continue;
        }
        const key = keys[i];
        const hit = index.find(key);
        if (hit) {
          table[p] = useRef(hit.ref) * ppc + hit.slot;
          s.reusedPages++;
          continue;
        }
        await addNewPage(block.subarray(i * PAGE, (i + 1) * PAGE), digest, key, p);
      }
    };

    // Only the file's data is read: a hole is a zero page, or in a layer its parent's.
    const extents = dataExtents(fd, size).map(([a, b]): [number, number] => [Math.floor(a / PAGE) * PAGE, Math.ceil(b / PAGE) * PAGE]);
    if (!parent) s.zeroPages = pages - extents.reduce((n, [a, b]) => n + (b - a) / PAGE, 0);
    let done = 0;
    let order: Promise<void> = Promise.resolve();
    for (const [start, end] of extents) {
      for (let pos = start; pos < end; pos += READ_BYTES) {
        const want = Math.min(READ_BYTES, end - pos);
        const block = Buffer.alloc(want);
        let got = 0;
        while (got < want) {
          const n = readSync(fd, block, got, want - got, pos + got);
          if (n <= 0) throw new SnapshotError(memPath, `ended at byte ${pos + got} while being read: was it truncated?`);
          got += n;
        }
        const { result } = await jobs.submit({ kind: 'digest', id: 0, data: block.buffer as ArrayBuffer });
        // Pages are sorted strictly in file order, whatever order the workers answer in.
        const first = pos / PAGE;
        order = order.then(() => result).then(async (r) => {
          if (r.kind !== 'digest') throw new Error('internal: a chunk answered a digest job');
          await sortPages(Buffer.from(r.data), Buffer.from(r.digests), first);
          done += want;
          opts.progress?.(done, size);
        });
        jobs.track(order);
      }
    }
    await order;
    await sendChunk(); // the last chunk, padded with zero pages
    await Promise.all(chunkWrites);
    jobs.check();

    const chunks: ChunkRecord[] = used.map((r) => ({ name: r.name, stored: r.stored, checksum: r.checksum }));
    const manifest = encodeManifest({ originalSize: size, chunkBytes, pages, createdMs: Date.now(), parent, chunks, pageTable: table });
    if (newRecords.length > 0) await store.writeDigestPack(encodeDigestPack(ppc, newRecords));
    await store.commitManifest(name, manifest);
    await confirmAfterCommit(store, name, used, parent);
    const reused = used.filter((r) => r.existing).length;
    return {
      name, identity: manifestIdentity(manifest), pages, zeroPages: s.zeroPages, parentPages: pages - s.zeroPages - s.reusedPages - s.newPages,
      reusedPages: s.reusedPages, newPages: s.newPages, chunksAdded, bytesAdded, chunksReused: reused, manifestBytes: manifest.length,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await pending.release();
    closeSync(fd);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function isZeroDigest(d: Buffer): boolean {
  for (let i = 0; i < d.length; i++) if (d[i] !== 0) return false;
  return true;
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
  for (const r of used) {
    if (!r.existing) continue;
    const hex = r.name.toString('hex');
    if ((await store.chunkExists(hex)) || (await store.restoreFromTrash(hex))) continue;
    throw new StoreError(store.root, `snapshot "${name}" was committed, but chunk ${hex} it reuses was deleted by a concurrent gc: remove it (snapfault store rm) and put it again`);
  }
}

/** Jobs for the put workers, least busy first, with at most `limit` in flight. */
class JobQueue {
  private inFlight = 0;
  private next = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly replies = new Map<number, { resolve: (r: PutResult) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;

  constructor(private readonly workers: Worker[], private readonly limit: number) {
    for (const w of workers) {
      w.on('message', (r: PutResult) => {
        const reply = this.replies.get(r.id);
        this.replies.delete(r.id);
        this.inFlight--;
        this.waiting.shift()?.();
        reply?.resolve(r);
      });
      w.on('error', (e) => this.fail(e));
    }
  }

  /** Resolves once the job is sent (so reading can go on), with the promise of its result. */
  async submit(job: PutJob): Promise<{ result: Promise<PutResult> }> {
    while (this.inFlight >= this.limit && !this.failure) await new Promise<void>((r) => this.waiting.push(r));
    this.check();
    const id = this.next++;
    const result = new Promise<PutResult>((resolve, reject) => this.replies.set(id, { resolve, reject }));
    result.catch(() => undefined); // rejections surface through check() and the awaiting chain
    this.inFlight++;
    this.workers[id % this.workers.length].postMessage({ ...job, id }, [job.data]);
    return { result };
  }

  /** A chain of work that may fail: its failure stops the put at the next check. */
  track(p: Promise<void>): void {
    p.catch((e: Error) => this.fail(e));
  }

  check(): void {
    if (this.failure) throw this.failure;
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    for (const r of this.replies.values()) r.reject(e);
    this.replies.clear();
    this.waiting.splice(0).forEach((f) => f());
  }
}
