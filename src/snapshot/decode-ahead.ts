// Decoding ahead: between a handler's start and its first VM (a drop-in
// handler is started just before its Firecracker, which then starts and
// loads), the main thread decodes the chunks its prefetch policy will read
// first into the snapshot's decoded-chunk cache: each read, decoded and
// checked (its xxh32, and a store's chunk its SHA-256 name) as a fault would,
// so the VM's prefetch and faults find them decoded rather than paying for
// that after the handshake. One chunk a turn of the event loop, so nothing
// the main thread does waits more than one chunk's decode. It stops at the
// first VM (from then on the workers decode what they need, and a decode here
// would compete with them for the CPU), and never takes more than half the
// cache. A chunk of a bucket not in the disk cache yet is decoded when its
// fetch lands (`landed`); one that fails its checks is left to the fault
// path, which reports it.
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';
import type { CompressedSnapshot } from '../compressed/compressed-snapshot.js';

export class DecodeAhead {
  private readonly queue: number[] = [];
  private readonly queued = new Set<number>();
  private scratch = 0;
  private readonly scratchBytes: number;
  private stopped = false;
  private scheduled = false;
  /** Chunks decoded here, and the first and last decode's times (ms, performance.now()). */
  decoded = 0;
  firstAt = 0;
  lastAt = 0;
  /** Chunks at most: half of what the cache holds. */
  private readonly room: number;
  /** The snapshot's decoded-chunk cache (its address in shared memory). */
  private readonly cache: number;

  constructor(private readonly core: Core, private readonly arena: Arena, private readonly snap: CompressedSnapshot, chunks: number[]) {
    const L = core.layout;
    const dv = new DataView(core.memory.buffer);
    this.cache = dv.getUint32(snap.descriptor + L.SNAP_CACHE, true);
    this.room = Math.floor((dv.getUint32(this.cache + L.CACHE_SETS, true) * dv.getUint32(this.cache + L.CACHE_WAYS, true)) / 2);
    this.scratchBytes = core.fn.lz4Bound(snap.header.chunkBytes);
    this.scratch = arena.alloc(this.scratchBytes, 4096);
    for (const c of chunks) this.want(c);
  }

  get active(): boolean {
    return !this.stopped;
  }

  /** Chunk `chunk` of snapshot `snap` (a descriptor) has landed in the disk cache: decoded when its turn comes, if it is this snapshot's. */
  landed(snap: number, chunk: number): void {
    if (snap === this.snap.descriptor) this.want(chunk);
  }

  private want(chunk: number): void {
    if (this.stopped || this.queued.has(chunk) || this.queued.size >= this.room) return;
    this.queued.add(chunk);
    this.queue.push(chunk);
    this.schedule();
  }

  /** Nothing more is decoded; the scratch buffer goes back to the arena. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.arena.freeBlock(this.scratch);
    this.scratch = 0;
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.step();
    });
  }

  private step(): void {
    if (this.stopped) return;
    if (this.snap.isClosed) return this.stop();
    const chunk = this.queue.shift();
    if (chunk === undefined) return;
    const fn = this.core.fn;
    const owner = this.core.layout.OWNER_DECODE_AHEAD;
    let slot: number;
    try {
      slot = fn.chunkAcquire(0, this.snap.descriptor, chunk, this.scratch, this.scratchBytes, owner);
    } catch {
      // A trap in the core (it should not happen): whatever lock it left is opened, and decoding ahead ends; the workers decode as ever.
      fn.cacheReleaseOwner(this.cache, owner);
      return this.stop();
    }
    if (slot >= 0) {
      fn.chunkRelease(this.snap.descriptor, slot);
      this.lastAt = performance.now();
      if (this.decoded++ === 0) this.firstAt = this.lastAt;
    } else {
      // Not in the disk cache yet (it is decoded when it lands), or damaged (the fault path reports it): queued again only by `want`.
      this.queued.delete(chunk);
    }
    if (this.queue.length > 0) this.schedule();
  }
}
