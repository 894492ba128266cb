// A put's new chunks, written to a bucket in pack objects of a few MiB
// rather than one object each: serving then fetches chunks that lie side by
// side in one ranged GET (chunk-fetcher.ts), and a put makes one PUT per
// pack. A store (S3) request costs the server a fixed share of CPU whatever
// its size (docs/store-s3.md, Packs), and S3 bills by the request. Each chunk
// is placed (pack id and offset) as it comes, so the put goes on while packs
// are uploaded; the manifest that refers to them is committed only after
// flush. A pack is kept by gc while any snapshot uses any chunk in it.
import { randomBytes } from 'node:crypto';
import { PACK_ID_BYTES } from './manifest.js';
import type { ChunkPlace } from './store.js';

/** New chunks go into packs of this size by default (--pack-mib). */
export const DEFAULT_PACK_BYTES = 4 << 20;
/** Packs being uploaded at once: with 4 MiB packs, 16 MiB held back at most, and a round trip hidden behind the others. */
const UPLOADS_IN_FLIGHT = 4;

export class PackWriter {
  private filling: { id: string; parts: Uint8Array[]; bytes: number } | null = null;
  private readonly uploads = new Set<Promise<void>>();
  private failed: unknown = null;
  /** Packs and bytes written. */
  packs = 0;
  bytes = 0;

  constructor(private readonly packBytes: number, private readonly upload: (id: string, bytes: Buffer) => Promise<void>) {}

  /** Places a chunk in the pack being filled; waits only while too many packs are on their way. */
  async add(stored: Uint8Array): Promise<ChunkPlace> {
    if (this.failed !== null) throw this.failed;
    if (!this.filling) this.filling = { id: randomBytes(PACK_ID_BYTES).toString('hex'), parts: [], bytes: 0 };
    const f = this.filling;
    const place = { pack: f.id, offset: f.bytes };
    f.parts.push(stored);
    f.bytes += stored.length;
    if (f.bytes >= this.packBytes) {
      this.seal();
      while (this.uploads.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.uploads);
      if (this.failed !== null) throw this.failed;
    }
    return place;
  }

  /** Uploads the pack being filled, and waits for every upload: rejects with the first that failed. */
  async flush(): Promise<void> {
    this.seal();
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    if (this.failed !== null) throw this.failed;
  }

  private seal(): void {
    const f = this.filling;
    if (!f) return;
    this.filling = null;
    const body = Buffer.concat(f.parts, f.bytes);
    const up: Promise<void> = this.upload(f.id, body).then(() => {
      this.packs++;
      this.bytes += body.length;
    }, (e: unknown) => {
      this.failed ??= e;
    }).finally(() => this.uploads.delete(up));
    this.uploads.add(up);
  }
}
