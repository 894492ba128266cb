// Serving a snapshot of a store in a bucket: its chain of manifests read from
// the bucket at start, laid out as a folder store's snapshot whose chunks are
// read from a local disk cache; a chunk the cache lacks is fetched when a
// fault needs it (the fault parked meanwhile), checked against its name, and
// cached. The snapshot is leased in the bucket while served, so a gc there
// keeps its chunks even if it is removed. The name is looked up again now and
// then (follow): put again, its new snapshot serves the VMs that come next,
// and the old one is kept, leased, until its last VM ends. Chunks that lie
// side by side in a pack and that the prefetch (or reading ahead) wants are fetched together
// (fetchRun), up to RUN_BYTES a GET.
import { StoreError } from '../errors.js';
import { S3Store } from './s3-store.js';
import { readChainOf, flattenChain } from './chain.js';
import { manifestIdentity } from './manifest.js';
import { openChainSnapshot } from './store-snapshot.js';
import { DiskCache } from './disk-cache.js';
import { ChunkFetcher, FetchError, type FetchStats, type HedgePolicy, type ChunkCheckFn } from './chunk-fetcher.js';
import { ChunkCheck } from './chunk-check.js';
import { CompressedSnapshot } from '../compressed/compressed-snapshot.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';
import { chunkAt, type Held, type ChunkAt } from './store.js';
import type { PinnedSnapshots, ServedSnapshot } from '../snapshot/cache.js';

export interface RemoteOptions {
  /** s3://bucket/prefix */
  location: string;
  endpoint?: string;
  cacheDir: string;
  cacheBytes: number;
  fetchTimeoutMs: number;
  /** Prefetch GETs in flight at most (--fetch-concurrency); faults' own GETs come on top. */
  fetchConcurrency: number;
  /** On demand (or a policy of its own): memory after a fault's chunk fetched ahead (--fetch-readahead); 0: none. */
  readaheadBytes: number;
  /** --fetch-hedge. */
  hedge: HedgePolicy;
  /** How often the served name is looked up again (--follow); 0: never. */
  followMs: number;
}

/** What serving from a bucket did: its fetches, the bytes its disk cache holds, and the disk cache's hits and misses (chunk files read, or found absent). */
export type RemoteStats = FetchStats & { cacheBytes: number; diskHits: number; diskMisses: number };

/** Requests kept free for faults' own GETs beside the prefetch ones. */
const DEMAND_REQUESTS = 16;
/**
 * At most this much in one ranged GET of chunks side by side. Each GET costs
 * the store a fixed share of CPU (Swift: ~3.8 ms, and ~8 ms a MiB: docs/
 * store-s3.md, Packs) and S3 a request's price; a longer one keeps its first
 * chunk from the guest until its last byte is in.
 */
const RUN_BYTES = 2 << 20;

/** One snapshot the name has held while this handler served it, with its lease and the VMs on it. */
interface HeldSnapshot {
  snap: CompressedSnapshot;
  identity: string;
  lease: Held;
  users: number;
  /** Where each of its chunks is in the bucket, by chunk number. */
  places: ChunkAt[];
  /** The chunk stored right after each in the same pack, or -1. */
  follower: Int32Array;
}

export class RemoteServing implements PinnedSnapshots {
  private closed = false;
  /** Disk cache reads of the snapshots closed so far (their descriptors' counts). */
  private readonly closedReads = { hits: 0, misses: 0 };
  /** What the name holds now: new VMs get it. */
  private current: HeldSnapshot;
  /** Snapshots the name held before it was put again, kept (and leased) until their last VM ends. */
  private readonly retired = new Set<HeldSnapshot>();

  private constructor(
    readonly name: string,
    first: HeldSnapshot,
    private readonly store: S3Store,
    private readonly fetcher: ChunkFetcher,
    private readonly cache: DiskCache,
    private readonly checker: ChunkCheck,
    private readonly core: Core,
    private readonly arena: Arena,
    private readonly decodedCacheBytes: number,
    private readonly timeoutMs: number,
  ) {
    this.current = first;
  }

  static async open(opts: RemoteOptions, name: string, core: Core, arena: Arena, decodedCacheBytes: number): Promise<RemoteServing> {
    const cache = DiskCache.open(opts.cacheDir, opts.cacheBytes);
    // One try a request: the fetcher retries with its own backoff and knows each failure as it happens.
    const store = await S3Store.open(opts.location, { endpoint: opts.endpoint, attempts: 1, maxRequests: opts.fetchConcurrency + DEMAND_REQUESTS, leanChunkGets: true });
    try {
      const first = await openHeld(store, cache, name, core, arena, decodedCacheBytes);
      const chunkBytes = first.snap.header.chunkBytes;
      const checker = new ChunkCheck(core, arena, core.fn.lz4Bound(chunkBytes), chunkBytes);
      return new RemoteServing(name, first, store, new ChunkFetcher(store, cache, opts.fetchTimeoutMs, opts.hedge), cache, checker, core, arena, decodedCacheBytes, opts.fetchTimeoutMs);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  /** The snapshot the name holds now (as last looked up): a new VM's; release it when the VM ends. */
  acquire(): CompressedSnapshot {
    this.current.users++;
    return this.current.snap;
  }

  /** Every snapshot open: the current one and those kept for their VMs. */
  all(): CompressedSnapshot[] {
    return [this.current, ...this.retired].map((h) => h.snap);
  }

  /** The snapshot is one of these (its VM's fetches go through this bucket). */
  serves(snap: ServedSnapshot): boolean {
    return snap instanceof CompressedSnapshot && this.held(snap.descriptor) !== null;
  }

  /** A VM on `snap` has ended: a snapshot the name no longer holds is closed with its last VM. True if it was one of these. */
  release(snap: CompressedSnapshot): boolean {
    const h = this.held(snap.descriptor);
    if (!h) return false;
    h.users--;
    if (this.retired.has(h) && h.users === 0) void this.closeHeld(h);
    return true;
  }

  /**
   * Looks the name up in the bucket again: when it holds another snapshot
   * (removed and put again), that one is opened and leased for the VMs that
   * come next, and the one before is kept until its last VM ends. Returns the
   * new snapshot and its identity, or null when the name holds the same one.
   */
  async follow(): Promise<{ identity: string; snap: CompressedSnapshot } | null> {
    if (this.closed) return null;
    const top = await this.store.readManifest(this.name);
    if (manifestIdentity(top) === this.current.identity || this.closed) return null;
    const next = await openHeld(this.store, this.cache, this.name, this.core, this.arena, this.decodedCacheBytes, top);
    if (this.closed) {
      await this.closeHeld(next);
      return null;
    }
    if (next.snap.header.chunkBytes !== this.current.snap.header.chunkBytes) {
      await this.closeHeld(next);
      throw new StoreError(this.store.root, `snapshot "${this.name}" was put again with other chunk sizes: restart the handler to serve it`);
    }
    const before = this.current;
    this.current = next;
    if (before.users === 0) await this.closeHeld(before);
    else this.retired.add(before);
    return { identity: next.identity, snap: next.snap };
  }

  /** VMs still on snapshots the name no longer holds. */
  get vmsOnRetired(): number {
    return [...this.retired].reduce((n, h) => n + h.users, 0);
  }

  /** What the fetcher did, and the bytes the disk cache holds (as this process counts them). */
  get stats(): RemoteStats {
    const disk = { ...this.closedReads };
    for (const h of [this.current, ...this.retired]) {
      const r = namedReads(this.core, h.snap.descriptor);
      disk.hits += r.hits;
      disk.misses += r.misses;
    }
    return { ...this.fetcher.stats, latency: [...this.fetcher.stats.latency], cacheBytes: this.cache.size, diskHits: disk.hits, diskMisses: disk.misses };
  }

  /** The name (SHA-256, hex) of chunk `chunk` of the snapshot with descriptor `snap`. */
  chunkName(snap: number, chunk: number): string {
    const L = this.core.layout;
    const names = new DataView(this.core.memory.buffer).getUint32(snap + L.SNAP_NAMES, true);
    return Buffer.from(this.core.memory.buffer, names + chunk * L.CHUNK_NAME_BYTES, L.CHUNK_NAME_BYTES).toString('hex');
  }

  /** Chunk `chunk` of snapshot `snap` is in the disk cache, or a GET of it is under way here. */
  isCachedOrComing(snap: number, chunk: number): boolean {
    const hex = this.closed ? null : this.held(snap)?.places[chunk]?.hex;
    return hex != null && (this.cache.has(hex) || this.fetcher.busy(hex));
  }

  /** Chunk `chunk` of snapshot `snap` is in the disk cache. */
  isCached(snap: number, chunk: number): boolean {
    const hex = this.closed ? null : this.held(snap)?.places[chunk]?.hex;
    return hex != null && this.cache.has(hex);
  }

  /**
   * Fetches chunk `chunk` of snapshot `snap` (a descriptor) into the disk
   * cache (first deleting a cached copy found damaged: `discard`). `error`:
   * null once there, else the one line a VM waiting for it is ended with;
   * `bytes`: what this call's own GET brought (0 when it joined another or
   * found it cached).
   */
  async fetch(snap: number, chunk: number, discard: boolean): Promise<{ error: string | null; bytes: number }> {
    // Closed (or the snapshot let go): the descriptor it reads names from is freed.
    if (this.closed) return { error: 'the handler is stopping', bytes: 0 };
    const h = this.held(snap);
    if (h === null) return { error: 'its snapshot is no longer served', bytes: 0 };
    const at = h.places[chunk];
    if (at === undefined) return { error: `the snapshot has no chunk ${chunk}`, bytes: 0 };
    if (discard) this.cache.discard(at.hex);
    return this.outcome(at, this.fetcher.fetch(at, this.checkIn(snap, h, [chunk])));
  }

  /**
   * The chunk that may join a ranged GET of `run` (chunks of snapshot `snap`
   * stored one after another): the one stored right after the last, in the
   * same pack, if the GET stays within RUN_BYTES and no fetch has it or
   * needs it; else -1.
   */
  extendRun(snap: number, run: number[]): number {
    const h = this.closed ? null : this.held(snap);
    if (!h) return -1;
    const next = h.follower[run[run.length - 1]];
    if (next < 0) return -1;
    const first = h.places[run[0]];
    const after = h.places[next];
    if (after.offset + after.length - first.offset > RUN_BYTES || this.cache.has(after.hex) || this.fetcher.busy(after.hex)) return -1;
    return next;
  }

  /** Fetches chunks of snapshot `snap` (one, or a run extendRun made) into the disk cache: as fetch, one answer a chunk. */
  fetchRun(snap: number, run: number[]): Array<Promise<{ error: string | null; bytes: number }>> {
    const h = this.closed ? null : this.held(snap);
    if (!h) return run.map((c) => this.fetch(snap, c, false));
    const places = run.map((c) => h.places[c]);
    return this.fetcher.fetchRun(places, this.checkIn(snap, h, run)).map((p, i) => this.outcome(places[i], p));
  }

  /** Checks a fetched chunk of `snap` (one of `chunks`) against its manifest record and its name. */
  private checkIn(snap: number, h: HeldSnapshot, chunks: number[]): ChunkCheckFn {
    const L = this.core.layout;
    const dv = new DataView(this.core.memory.buffer);
    const table = dv.getUint32(snap + L.SNAP_CHUNK_TABLE, true);
    const fields = new Map(chunks.map((c) => [h.places[c].hex, dv.getUint32(table + c * L.CHUNK_ENTRY + L.CHUNK_LENGTH, true)]));
    return (at, stored) => this.checker.check(at.hex, fields.get(at.hex)!, stored);
  }

  private async outcome(at: ChunkAt, fetched: Promise<number>): Promise<{ error: string | null; bytes: number }> {
    try {
      return { error: null, bytes: await fetched };
    } catch (e) {
      const why = e instanceof FetchError || e instanceof StoreError ? e.message : `unexpected error: ${(e as Error).message}`;
      // The server's line about the VM adds the snapshot's name.
      return { error: `chunk ${at.hex} could not be fetched within ${this.timeoutMs / 1000} s: ${why}; no byte of it was served`, bytes: 0 };
    }
  }

  private held(descriptor: number): HeldSnapshot | null {
    for (const h of [this.current, ...this.retired]) if (h.snap.descriptor === descriptor) return h;
    return null;
  }

  private async closeHeld(h: HeldSnapshot): Promise<void> {
    this.retired.delete(h);
    // Its reads stay counted (the metrics are counters) once its descriptor is freed.
    const r = namedReads(this.core, h.snap.descriptor);
    this.closedReads.hits += r.hits;
    this.closedReads.misses += r.misses;
    h.snap.close();
    await h.lease.release();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const h of [this.current, ...this.retired]) await this.closeHeld(h);
    await this.store.close();
  }
}

/** Reads the name's chain in the bucket, leases it, and lays it out with its chunks read from the disk cache. */
async function openHeld(
  store: S3Store, cache: DiskCache, name: string, core: Core, arena: Arena, decodedCacheBytes: number, topBytes: Buffer | null = null,
): Promise<HeldSnapshot> {
  const chain = await readChainOf(store, name, topBytes);
  const lease = await store.register('leases', { identities: chain.map((l) => l.identity) });
  try {
    const label = `${name} in store ${store.root}`;
    const view = flattenChain(chain);
    const snap = openChainSnapshot(chain, { root: store.root, chunksDir: cache.chunksDir, label }, core, arena, decodedCacheBytes, view);
    const places = view.chunks.map(chunkAt);
    return { snap, identity: chain[0].identity, lease, users: 0, places, follower: followers(places) };
  } catch (e) {
    await lease.release();
    throw e;
  }
}

/** The disk cache's hits and misses for a snapshot: the reads of its chunk files every thread's core counted (assembly/chunk_cache.ts). */
function namedReads(core: Core, descriptor: number): { hits: number; misses: number } {
  const L = core.layout;
  const words = new Uint32Array(core.memory.buffer);
  return { hits: Atomics.load(words, (descriptor + L.SNAP_NAMED_READS) >> 2), misses: Atomics.load(words, (descriptor + L.SNAP_NAMED_ABSENT) >> 2) };
}

/** For each chunk, the one stored right after it in the same pack (-1: none, or not packed). */
function followers(places: ChunkAt[]): Int32Array {
  const follower = new Int32Array(places.length).fill(-1);
  const packed = places.map((_, i) => i).filter((i) => places[i].pack !== null);
  packed.sort((a, b) => (places[a].pack as string).localeCompare(places[b].pack as string) || places[a].offset - places[b].offset);
  for (let k = 1; k < packed.length; k++) {
    const a = places[packed[k - 1]];
    const b = places[packed[k]];
    if (a.pack === b.pack && a.offset + a.length === b.offset) follower[packed[k - 1]] = packed[k];
  }
  return follower;
}
