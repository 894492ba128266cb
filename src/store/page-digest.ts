// A page's digest, by which a store finds the pages it already holds: the
// first 16 bytes of its SHA-256 (digest-pack.ts keeps them per chunk).
import { hash } from 'node:crypto';
import { PAGE_DIGEST_BYTES } from './digest-pack.js';

const PAGE = 4096;

/** The digest of one 4 KiB page (one-shot hash(): about 2 µs a page less than a Hash object here). */
export function pageDigest(page: Uint8Array): Buffer {
  return hash('sha256', page, 'buffer').subarray(0, PAGE_DIGEST_BYTES);
}

/** Digest `slot` of a run of digests is all zero: a zero page, or a chunk's padding. */
export function isZeroDigest(digests: Buffer, slot: number): boolean {
  for (let b = slot * PAGE_DIGEST_BYTES; b < (slot + 1) * PAGE_DIGEST_BYTES; b++) if (digests[b] !== 0) return false;
  return true;
}

/**
 * The pages were digested from the workers' read and copied into the chunk
 * from the main thread's: a page that changed in between would leave the
 * store's dedup index naming it by bytes it does not hold, and a later
 * snapshot's page would be served from it. So each one is digested again.
 */
export function firstChangedSlot(data: Buffer, digests: Buffer): number {
  for (let slot = 0; slot < digests.length / PAGE_DIGEST_BYTES; slot++) {
    if (isZeroDigest(digests, slot)) continue; // padding
    const want = digests.subarray(slot * PAGE_DIGEST_BYTES, (slot + 1) * PAGE_DIGEST_BYTES);
    if (!pageDigest(data.subarray(slot * PAGE, (slot + 1) * PAGE)).equals(want)) return slot;
  }
  return -1;
}
