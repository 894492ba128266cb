// Before a put commits its manifest, the chunks it reuses are looked up once
// more: a gc that read a chunk's time before the put touched it may have
// deleted it since. In a bucket nothing makes gc's check and its delete one
// step (no rename, no conditional delete on Swift), and a put reusing many
// chunks beside a gc deleting them met that window in most runs. The pages
// the snapshot took from a chunk that is gone are read again from the memory
// file and stored anew, so the put goes on instead of failing; the check
// after the commit (put.ts) stays for a delete that lands later still.
import { readExactlyAt, endedEarly } from '../snapshot/open-file.js';
import { pageDigest } from './page-digest.js';
import { PAGE_IS_ZERO, PAGE_IN_PARENT } from './manifest.js';
import type { ChunkRef } from './dedup-index.js';
import type { ChunkGatherer } from './chunk-gatherer.js';
import { chunkAt, type Store } from './store.js';

const PAGE = 4096;

export interface Placement {
  store: Store;
  /** The memory file, open, and its path for messages. */
  fd: number;
  path: string;
  /** Page number to `ordinal * ppc + slot` (or a zero or parent marker). */
  table: Uint32Array;
  /** The snapshot's chunks by ordinal. */
  used: ChunkRef[];
  useRef: (ref: ChunkRef) => number;
  gatherer: ChunkGatherer;
  ppc: number;
}

/** Stores anew the pages of reused chunks that are gone; returns how many pages moved. `used` and `table` are renumbered without them. */
export async function replaceGoneChunks(at: Placement): Promise<number> {
  const there = await Promise.all(at.used.map((r) => (r.existing ? at.store.chunkExists(chunkAt(r)) : true)));
  const gone = new Set(at.used.filter((_, i) => !there[i]));
  if (gone.size === 0) return 0;
  const moved = await storeAgain(at, gone);
  renumber(at, gone);
  return moved;
}

async function storeAgain(at: Placement, gone: Set<ChunkRef>): Promise<number> {
  const page = Buffer.alloc(PAGE);
  // A page that comes twice goes into one slot, as in the put's own pass.
  const placed = new Map<string, number>();
  let moved = 0;
  for (let p = 0; p < at.table.length; p++) {
    const v = at.table[p];
    if (v === PAGE_IS_ZERO || v === PAGE_IN_PARENT || !gone.has(at.used[Math.floor(v / at.ppc)])) continue;
    readPage(at, p, page);
    const digest = pageDigest(page);
    const key = digest.toString('latin1');
    let entry = placed.get(key);
    if (entry === undefined) {
      const { ref, slot } = await at.gatherer.add(page, digest, key);
      entry = at.useRef(ref) * at.ppc + slot;
      placed.set(key, entry);
    }
    at.table[p] = entry;
    moved++;
  }
  await at.gatherer.finish();
  return moved;
}

/** Drops the gone chunks from the snapshot's list; page table entries follow their chunk's new ordinal. */
function renumber(at: Placement, gone: Set<ChunkRef>): void {
  const ordinals = new Int32Array(at.used.length).fill(-1);
  const kept: ChunkRef[] = [];
  at.used.forEach((r, i) => {
    if (gone.has(r)) {
      r.ordinal = -1;
      r.existing = false;
      r.state = 'missing';
      return;
    }
    ordinals[i] = kept.length;
    r.ordinal = kept.length;
    kept.push(r);
  });
  for (let p = 0; p < at.table.length; p++) {
    const v = at.table[p];
    if (v === PAGE_IS_ZERO || v === PAGE_IN_PARENT) continue;
    at.table[p] = ordinals[Math.floor(v / at.ppc)] * at.ppc + (v % at.ppc);
  }
  at.used.splice(0, at.used.length, ...kept);
}

function readPage(at: Placement, p: number, into: Buffer): void {
  const ended = readExactlyAt(at.fd, into, PAGE, p * PAGE);
  if (ended !== null) throw endedEarly(at.path, ended);
}
