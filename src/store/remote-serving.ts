// Serving a snapshot of a store in a bucket: its chain of manifests read from
// the bucket at start, laid out as a folder store's snapshot whose chunks are
// read from a local disk cache; a chunk the cache lacks is fetched when a
// fault needs it (the fault parked meanwhile), checked against its name, and
// cached. The snapshot is leased in the bucket while served, so a gc there
// keeps its chunks even if it is removed.
import { StoreError } from '../errors.js';
import { S3Store } from './s3-store.js';
import { readChainOf } from './chain.js';
import { openChainSnapshot } from './store-snapshot.js';
import { DiskCache } from './disk-cache.js';
import { ChunkFetcher, FetchError, type FetchStats, type HedgePolicy } from './chunk-fetcher.js';
import { ChunkCheck } from './chunk-check.js';
import type { CompressedSnapshot } from '../compressed/compressed-snapshot.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';
import type { Held } from './store.js';

export interface RemoteOptions {
  /** s3://bucket/prefix */
  location: string;
  endpoint?: string;
  cacheDir: string;
  cacheBytes: number;
  fetchTimeoutMs: number;
  /** Prefetch GETs in flight at most (--fetch-concurrency); faults' own GETs come on top. */
  fetchConcurrency: number;
  /** --fetch-hedge. */
  hedge: HedgePolicy;
}

/** Requests kept free for faults' own GETs beside the prefetch ones. */
const DEMAND_REQUESTS = 16;

export class RemoteServing {
  private closed = false;

  private constructor(
    readonly snap: CompressedSnapshot,
    private readonly store: S3Store,
    private readonly lease: Held,
    private readonly fetcher: ChunkFetcher,
    private readonly cache: DiskCache,
    private readonly checker: ChunkCheck,
    private readonly core: Core,
    private readonly timeoutMs: number,
  ) {}

  static async open(opts: RemoteOptions, name: string, core: Core, arena: Arena, decodedCacheBytes: number): Promise<RemoteServing> {
    const cache = DiskCache.open(opts.cacheDir, opts.cacheBytes);
    // One try a request: the fetcher retries with its own backoff and knows each failure as it happens.
    const store = await S3Store.open(opts.location, { endpoint: opts.endpoint, attempts: 1, maxRequests: opts.fetchConcurrency + DEMAND_REQUESTS, leanChunkGets: true });
    try {
      const chain = await readChainOf(store, name);
      const lease = await store.register('leases', { identities: chain.map((l) => l.identity) });
      try {
        const label = `${name} in store ${store.root}`;
        const snap = openChainSnapshot(chain, { root: store.root, chunksDir: cache.chunksDir, label }, core, arena, decodedCacheBytes);
        const chunkBytes = snap.header.chunkBytes;
        const checker = new ChunkCheck(core, arena, core.fn.lz4Bound(chunkBytes), chunkBytes);
        return new RemoteServing(snap, store, lease, new ChunkFetcher(store, cache, opts.fetchTimeoutMs, opts.hedge), cache, checker, core, opts.fetchTimeoutMs);
      } catch (e) {
        await lease.release();
        throw e;
      }
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  /** What the fetcher did, and the bytes the disk cache holds (as this process counts them). */
  get stats(): FetchStats & { cacheBytes: number } {
    return { ...this.fetcher.stats, latency: [...this.fetcher.stats.latency], cacheBytes: this.cache.size };
  }

  /** The name (SHA-256, hex) of chunk `chunk` of the served snapshot. */
  chunkName(chunk: number): string {
    const L = this.core.layout;
    const names = new DataView(this.core.memory.buffer).getUint32(this.snap.descriptor + L.SNAP_NAMES, true);
    return Buffer.from(this.core.memory.buffer, names + chunk * L.CHUNK_NAME_BYTES, L.CHUNK_NAME_BYTES).toString('hex');
  }

  /** Chunk `chunk` is in the disk cache. */
  isCached(chunk: number): boolean {
    return !this.closed && this.cache.has(this.chunkName(chunk));
  }

  /**
   * Fetches chunk `chunk` of the served snapshot into the disk cache (first
   * deleting a cached copy found damaged: `discard`). `error`: null once
   * there, else the one line a VM waiting for it is ended with; `bytes`: what
   * this call's own GET brought (0 when it joined another or found it cached).
   */
  async fetch(chunk: number, discard: boolean): Promise<{ error: string | null; bytes: number }> {
    // Closed: the descriptor it reads names from is freed.
    if (this.closed) return { error: 'the handler is stopping', bytes: 0 };
    const L = this.core.layout;
    const dv = new DataView(this.core.memory.buffer);
    const d = this.snap.descriptor;
    if (chunk >= dv.getUint32(d + L.SNAP_CHUNKS, true)) return { error: `the snapshot has no chunk ${chunk}`, bytes: 0 };
    const hex = this.chunkName(chunk);
    if (discard) this.cache.discard(hex);
    const storedField = dv.getUint32(dv.getUint32(d + L.SNAP_CHUNK_TABLE, true) + chunk * L.CHUNK_ENTRY + L.CHUNK_LENGTH, true);
    try {
      return { error: null, bytes: await this.fetcher.fetch(hex, (stored) => this.checker.check(hex, storedField, stored)) };
    } catch (e) {
      const why = e instanceof FetchError || e instanceof StoreError ? e.message : `unexpected error: ${(e as Error).message}`;
      // The server's line about the VM adds the snapshot's name.
      return { error: `chunk ${hex} could not be fetched within ${this.timeoutMs / 1000} s: ${why}; no byte of it was served`, bytes: 0 };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.snap.close();
    await this.lease.release();
    await this.store.close();
  }
}
