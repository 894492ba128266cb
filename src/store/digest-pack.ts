// The store's dedup index: a put writes one digest pack listing the chunks it
// added, each with the SHA-256 (first 16 bytes) of every page in it. A later
// put loads them all to find the pages the store already holds, whatever
// snapshot they came from. Its size grows with the store's unique pages, not
// with the number of snapshots. A pack is only ever a hint for dedup: a put
// confirms a chunk exists before it refers to it. Version 2 (written when some
// chunk lies in a pack object) adds each chunk's pack and offset.
import { createHash } from 'node:crypto';
import { NAME_BYTES, PACK_ID_BYTES, type ChunkRecord } from './manifest.js';

export const DIGEST_PACK_MAGIC = Buffer.from([0x89, 0x53, 0x46, 0x44, 0x0d, 0x0a, 0x1a, 0x0a]); // \x89 S F D \r \n \x1a \n
export const PAGE_DIGEST_BYTES = 16;
const HEADER_BYTES = 32;
const TRAILER_BYTES = 32;

export interface DigestRecord extends ChunkRecord {
  /** pagesPerChunk x 16 bytes; all zero for a slot that is padding (a zero page). */
  digests: Buffer;
}

/** Name, stored length and checksum; in version 2 then pack id, offset and 4 bytes of padding; then the page digests. */
const LOCATION_BYTES = PACK_ID_BYTES + 8;
const recordBytesOf = (version: number, pagesPerChunk: number): number => NAME_BYTES + 8 + (version === 2 ? LOCATION_BYTES : 0) + pagesPerChunk * PAGE_DIGEST_BYTES;

export function encodeDigestPack(pagesPerChunk: number, records: DigestRecord[]): Buffer {
  const version = records.some((r) => r.pack !== null) ? 2 : 1;
  const recordBytes = recordBytesOf(version, pagesPerChunk);
  const digestsAt = recordBytes - pagesPerChunk * PAGE_DIGEST_BYTES;
  const b = Buffer.alloc(HEADER_BYTES + records.length * recordBytes + TRAILER_BYTES);
  DIGEST_PACK_MAGIC.copy(b, 0);
  b.writeUInt32LE(version, 8);
  b.writeUInt32LE(pagesPerChunk, 12);
  b.writeUInt32LE(records.length, 16);
  let o = HEADER_BYTES;
  for (const r of records) {
    r.name.copy(b, o);
    b.writeUInt32LE(r.stored >>> 0, o + 32);
    b.writeUInt32LE(r.checksum >>> 0, o + 36);
    if (version === 2 && r.pack !== null) {
      Buffer.from(r.pack, 'hex').copy(b, o + 40);
      b.writeUInt32LE(r.offset >>> 0, o + 40 + PACK_ID_BYTES);
      b.writeUInt32LE(1, o + 44 + PACK_ID_BYTES); // packed (a zero pack id is a valid random one)
    }
    r.digests.copy(b, o + digestsAt);
    o += recordBytes;
  }
  createHash('sha256').update(b.subarray(0, o)).digest().copy(b, o);
  return b;
}

/** Decodes a pack; null when it is damaged or not one (it is a hint: a damaged pack only costs dedup). */
export function decodeDigestPack(b: Buffer, pagesPerChunk: number): DigestRecord[] | null {
  if (b.length < HEADER_BYTES + TRAILER_BYTES || !b.subarray(0, 8).equals(DIGEST_PACK_MAGIC)) return null;
  const version = b.readUInt32LE(8);
  if ((version !== 1 && version !== 2) || b.readUInt32LE(12) !== pagesPerChunk) return null;
  const n = b.readUInt32LE(16);
  const recordBytes = recordBytesOf(version, pagesPerChunk);
  const digestsAt = recordBytes - pagesPerChunk * PAGE_DIGEST_BYTES;
  if (b.length !== HEADER_BYTES + n * recordBytes + TRAILER_BYTES) return null;
  const end = b.length - TRAILER_BYTES;
  if (!createHash('sha256').update(b.subarray(0, end)).digest().equals(b.subarray(end))) return null;
  const out: DigestRecord[] = [];
  for (let i = 0, o = HEADER_BYTES; i < n; i++, o += recordBytes) {
    const packed = version === 2 && b.readUInt32LE(o + 44 + PACK_ID_BYTES) === 1;
    out.push({
      name: b.subarray(o, o + 32), stored: b.readUInt32LE(o + 32), checksum: b.readUInt32LE(o + 36),
      pack: packed ? b.toString('hex', o + 40, o + 40 + PACK_ID_BYTES) : null, offset: packed ? b.readUInt32LE(o + 40 + PACK_ID_BYTES) : 0,
      digests: b.subarray(o + digestsAt, o + recordBytes),
    });
  }
  return out;
}
