// What a put knows of the store's pages: every page digest of every digest
// pack, mapped to its chunk and slot. A chunk found this way is confirmed to
// exist (and touched, so gc spares it) the first time the put uses it; one
// that is gone is forgotten and its pages are stored anew.
import { decodeDigestPack, PAGE_DIGEST_BYTES } from './digest-pack.js';
import { isZeroDigest } from './page-digest.js';
import { chunkAt, type Store } from './store.js';

export interface ChunkRef {
  /** Its number in the index. */
  id: number;
  /** SHA-256 of the decoded chunk; empty until a new chunk has been named. */
  name: Buffer;
  stored: number;
  checksum: number;
  /** The pack holding it (null: an object or file of its own) and where; a new chunk's, once written. */
  pack: string | null;
  offset: number;
  /** Its position in the snapshot's chunk list, -1 until the snapshot uses it. */
  ordinal: number;
  /** A chunk the store already held, confirmed by this put. */
  existing: boolean;
  /** Store chunks: not yet confirmed, confirmed, or found missing. New chunks: 'new'. */
  state: 'unconfirmed' | 'confirmed' | 'missing' | 'new';
}

export class DedupIndex {
  private readonly refs: ChunkRef[] = [];
  private readonly pages = new Map<string, number>(); // digest (latin1) -> ref * ppc + slot

  constructor(private readonly ppc: number) {}

  get size(): number {
    return this.pages.size;
  }

  add(ref: Omit<ChunkRef, 'id'>, digests: Buffer): void {
    const id = this.refs.push({ ...ref, id: this.refs.length }) - 1;
    for (let slot = 0; slot < this.ppc; slot++) {
      if (isZeroDigest(digests, slot)) continue; // padding
      const key = digests.toString('latin1', slot * PAGE_DIGEST_BYTES, (slot + 1) * PAGE_DIGEST_BYTES);
      if (!this.pages.has(key)) this.pages.set(key, id * this.ppc + slot);
    }
  }

  newRef(): ChunkRef {
    const ref: ChunkRef = { id: this.refs.length, name: Buffer.alloc(0), stored: 0, checksum: 0, pack: null, offset: 0, ordinal: -1, existing: false, state: 'new' };
    this.refs.push(ref);
    return ref;
  }

  set(key: string, ref: ChunkRef, slot: number): void {
    this.pages.set(key, ref.id * this.ppc + slot);
  }

  /**
   * Confirms (touching them) the store chunks holding these pages, all at
   * once: from a bucket each touch is a round trip, so they go concurrently
   * (the store bounds how many), before the pages are sorted in order.
   */
  async confirm(keys: string[], store: Store): Promise<void> {
    const todo = new Set<ChunkRef>();
    for (const key of keys) {
      const at = this.pages.get(key);
      const ref = at === undefined ? undefined : this.refs[Math.floor(at / this.ppc)];
      if (ref?.state === 'unconfirmed') todo.add(ref);
    }
    await Promise.all([...todo].map(async (ref) => {
      const there = await store.touchChunk(chunkAt(ref));
      ref.state = there ? 'confirmed' : 'missing';
      ref.existing = there;
    }));
  }

  /** The chunk and slot already holding the page with this digest (confirmed first), null for a new page. */
  find(key: string): { ref: ChunkRef; slot: number } | null {
    const at = this.pages.get(key);
    if (at === undefined) return null;
    const ref = this.refs[Math.floor(at / this.ppc)];
    if (ref.state === 'unconfirmed') throw new Error('internal: a store chunk used before it was confirmed');
    if (ref.state === 'missing') return null;
    return { ref, slot: at % this.ppc };
  }
}

/** The dedup index of everything in the store's digest packs (a damaged pack only costs dedup, and is skipped). */
export async function loadDedupIndex(store: Store): Promise<DedupIndex> {
  const ppc = store.info.chunkBytes / 4096;
  const index = new DedupIndex(ppc);
  // Read concurrently (the store bounds its requests), added in listing order.
  const ids = await store.listDigestPacks();
  const packs = await Promise.all(ids.map((id) => store.readDigestPack(id)));
  for (const bytes of packs) {
    const records = bytes ? decodeDigestPack(bytes, ppc) : null;
    for (const r of records ?? []) {
      index.add({ name: Buffer.from(r.name), stored: r.stored, checksum: r.checksum, pack: r.pack, offset: r.offset, ordinal: -1, existing: false, state: 'unconfirmed' }, r.digests);
    }
  }
  return index;
}
