// A put's new pages, gathered into chunks in the order they come: a full
// chunk goes to a put worker to be named, checksummed and compressed, then is
// written unless the store holds a chunk of that name. The last chunk is
// padded with zero pages, so every chunk decodes to the store's chunk size.
import { PAGE_DIGEST_BYTES, type DigestRecord } from './digest-pack.js';
import { Limiter } from './limiter.js';
import type { Store } from './store.js';
import type { ChunkRef, DedupIndex } from './dedup-index.js';
import type { JobQueue } from './put-jobs.js';

const PAGE = 4096;

/** A new page's bytes no longer matched the digest it was sorted by: the memory file changed while being put. */
export class ChangedWhileReadError extends Error {
  constructor(readonly slot: number) {
    super('a page changed while being put');
    this.name = 'ChangedWhileReadError';
  }
}
/** Chunks being written at once: a bucket takes them concurrently, and waiting here holds back reading (and memory). */
const WRITES_IN_FLIGHT = 16;

export class ChunkGatherer {
  /** The chunks written, with their page digests: the put's digest pack. */
  readonly records: DigestRecord[] = [];
  chunksAdded = 0;
  bytesAdded = 0;
  private filling: { ref: ChunkRef; data: Buffer; digests: Buffer; used: number } | null = null;
  private readonly writes: Array<Promise<void>> = [];
  private readonly writing = new Limiter(WRITES_IN_FLIGHT);
  private readonly ppc: number;

  constructor(private readonly store: Store, private readonly jobs: JobQueue, private readonly index: DedupIndex, private readonly chunkBytes: number) {
    this.ppc = chunkBytes / PAGE;
  }

  /** Takes a new page; returns its chunk and slot (the chunk is named later). */
  async add(page: Buffer, digest: Buffer, key: string): Promise<{ ref: ChunkRef; slot: number }> {
    if (!this.filling) {
      this.filling = { ref: this.index.newRef(), data: Buffer.alloc(this.chunkBytes), digests: Buffer.alloc(this.ppc * PAGE_DIGEST_BYTES), used: 0 };
    }
    const f = this.filling;
    const slot = f.used++;
    page.copy(f.data, slot * PAGE);
    digest.copy(f.digests, slot * PAGE_DIGEST_BYTES);
    // Later copies of this page in the same put find it here.
    this.index.set(key, f.ref, slot);
    if (f.used === this.ppc) await this.send();
    return { ref: f.ref, slot };
  }

  /** Sends the last chunk and waits until every chunk is written (and every pack holding them stored). */
  async finish(): Promise<void> {
    await this.send();
    await Promise.all(this.writes);
    await this.store.flushChunks();
  }

  private async send(): Promise<void> {
    const f = this.filling;
    if (!f) return;
    this.filling = null;
    const free = await this.writing.acquire();
    const data = f.data.buffer.slice(f.data.byteOffset, f.data.byteOffset + f.data.length) as ArrayBuffer;
    const digests = f.digests.buffer.slice(f.digests.byteOffset, f.digests.byteOffset + f.digests.length) as ArrayBuffer;
    let result;
    try {
      ({ result } = await this.jobs.submit({ kind: 'chunk', id: 0, data, digests }));
    } catch (e) {
      free();
      throw e;
    }
    const written = result.then(async (r) => {
      if (r.kind !== 'chunk') throw new Error('internal: a digest answered a chunk job');
      if (r.changedSlot >= 0) throw new ChangedWhileReadError(r.changedSlot);
      f.ref.name = Buffer.from(r.name);
      f.ref.stored = r.stored;
      f.ref.checksum = r.checksum;
      // A chunk of that name was there already: its pages are in some digest pack already too.
      const place = await this.store.writeChunk(f.ref.name.toString('hex'), new Uint8Array(r.out));
      if (place) {
        f.ref.pack = place.pack;
        f.ref.offset = place.offset;
        this.chunksAdded++;
        this.bytesAdded += r.out.byteLength;
        this.records.push({ name: f.ref.name, stored: r.stored, checksum: r.checksum, pack: place.pack, offset: place.offset, digests: f.digests });
      } else {
        // Reused as much as a chunk found by digest: checked again before and after the commit, as a gc may be deleting it.
        f.ref.existing = true;
      }
    }).finally(free);
    this.jobs.track(written); // a failed write (a full disk) stops the put at its next step, never as an unhandled rejection
    this.writes.push(written);
  }
}
