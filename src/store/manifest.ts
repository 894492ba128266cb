// A snapshot in a store is a manifest: which chunk and slot holds each page
// (or that it is zero, or, in a layer, its parent's), and the chunks it uses,
// named by the SHA-256 of their decoded bytes. It ends with the SHA-256 of all
// that precedes it: the snapshot's identity, and its check. Version 2 adds
// where each chunk lies when a bucket keeps it in a pack object (s3-packs.ts);
// a manifest whose chunks are all objects of their own stays version 1.
// Layout in docs/store.md.
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

export const MANIFEST_MAGIC = Buffer.from([0x89, 0x53, 0x46, 0x4d, 0x0d, 0x0a, 0x1a, 0x0a]); // \x89 S F M \r \n \x1a \n
/** The version a manifest with packed chunks is written in; one without is written as version 1. */
export const MANIFEST_VERSION = 2;
const HEADER_BYTES = 128;
const CHUNK_RECORD_BYTES = { 1: 40, 2: 48 } as const;
/** A pack's id: 16 random bytes (32 hex digits). */
export const PACK_ID_BYTES = 16;
/** The pack ordinal of a chunk kept as an object of its own. */
const NOT_PACKED = 0xffffffff;
const TRAILER_BYTES = 32;
export const NAME_BYTES = 32;
/** Page table values besides chunk * pagesPerChunk + slot. */
export const PAGE_IS_ZERO = 0xffffffff;
export const PAGE_IN_PARENT = 0xfffffffe;

export interface ChunkRecord {
  /** SHA-256 of the decoded chunk (always chunkBytes long: the last chunk of a put is padded with zero pages). */
  name: Buffer;
  /** Stored length; bit 31 set: stored raw. */
  stored: number;
  /** xxh32 of the decoded chunk: the core checks it before the name. */
  checksum: number;
  /** The pack object holding it (hex id) and where it starts there; null: an object (or file) of its own. */
  pack: string | null;
  offset: number;
}

export interface Manifest {
  originalSize: number;
  chunkBytes: number;
  pages: number;
  createdMs: number;
  /** The parent's name and identity: a layer's holes are its parent's pages. */
  parent: { name: string; identity: string } | null;
  chunks: ChunkRecord[];
  /** pages x u32: PAGE_IS_ZERO, PAGE_IN_PARENT, or chunk * (chunkBytes / 4096) + slot. */
  pageTable: Uint32Array;
}

const H = {
  magic: 0, version: 8, headerBytes: 12, originalSize: 16, pageBytes: 24, chunkBytes: 28, pages: 32, chunks: 36, createdMs: 40, parentLength: 48, parentIdentity: 56,
  pageTableBytes: 88, packs: 92,
} as const;

/**
 * The page table as stored: each entry minus the one before (mod 2^32), then
 * deflated. A snapshot's own pages run through consecutive slots (delta 1) and
 * a layer's parent pages are one repeated value (delta 0): a 4 KiB-a-page
 * table of 1 MiB per GiB shrinks to a few KiB, so a small Diff layer costs
 * about its pages, not the size of the whole memory.
 */
function packPageTable(t: Uint32Array): Buffer {
  const d = new Uint32Array(t.length);
  let prev = 0;
  for (let i = 0; i < t.length; i++) {
    d[i] = (t[i] - prev) >>> 0;
    prev = t[i];
  }
  return deflateRawSync(new Uint8Array(d.buffer), { level: 6 });
}

function unpackPageTable(b: Buffer, pages: number): Uint32Array {
  const raw = inflateRawSync(b, { maxOutputLength: pages * 4 });
  if (raw.length !== pages * 4) throw new Error('has a page table of the wrong length');
  const t = new Uint32Array(pages);
  Buffer.from(t.buffer).set(raw);
  let prev = 0;
  for (let i = 0; i < pages; i++) {
    t[i] = (t[i] + prev) >>> 0;
    prev = t[i];
  }
  return t;
}

export function encodeManifest(m: Manifest): Buffer {
  const parentName = Buffer.from(m.parent?.name ?? '', 'utf8');
  const nameArea = (parentName.length + 7) & ~7;
  const table = packPageTable(m.pageTable.subarray(0, m.pages));
  const packs = new Map<string, number>();
  for (const c of m.chunks) if (c.pack !== null && !packs.has(c.pack)) packs.set(c.pack, packs.size);
  const version = packs.size > 0 ? 2 : 1;
  const recordBytes = CHUNK_RECORD_BYTES[version];
  const size = HEADER_BYTES + nameArea + m.chunks.length * recordBytes + packs.size * PACK_ID_BYTES + table.length + TRAILER_BYTES;
  const b = Buffer.alloc(size);
  MANIFEST_MAGIC.copy(b, H.magic);
  b.writeUInt32LE(version, H.version);
  b.writeUInt32LE(HEADER_BYTES, H.headerBytes);
  b.writeBigUInt64LE(BigInt(m.originalSize), H.originalSize);
  b.writeUInt32LE(4096, H.pageBytes);
  b.writeUInt32LE(m.chunkBytes, H.chunkBytes);
  b.writeUInt32LE(m.pages, H.pages);
  b.writeUInt32LE(m.chunks.length, H.chunks);
  b.writeBigUInt64LE(BigInt(m.createdMs), H.createdMs);
  b.writeUInt32LE(parentName.length, H.parentLength);
  b.writeUInt32LE(table.length, H.pageTableBytes);
  if (version === 2) b.writeUInt32LE(packs.size, H.packs);
  if (m.parent) Buffer.from(m.parent.identity, 'hex').copy(b, H.parentIdentity);
  let o = HEADER_BYTES;
  parentName.copy(b, o);
  o += nameArea;
  for (const c of m.chunks) {
    c.name.copy(b, o);
    b.writeUInt32LE(c.stored >>> 0, o + 32);
    b.writeUInt32LE(c.checksum >>> 0, o + 36);
    if (version === 2) {
      b.writeUInt32LE(c.pack === null ? NOT_PACKED : packs.get(c.pack)!, o + 40);
      b.writeUInt32LE(c.offset >>> 0, o + 44);
    }
    o += recordBytes;
  }
  for (const id of packs.keys()) {
    Buffer.from(id, 'hex').copy(b, o);
    o += PACK_ID_BYTES;
  }
  table.copy(b, o);
  o += table.length;
  createHash('sha256').update(b.subarray(0, o)).digest().copy(b, o);
  return b;
}

/** The identity of an encoded manifest: its trailing SHA-256, in hex. */
export function manifestIdentity(b: Buffer): string {
  return b.subarray(b.length - TRAILER_BYTES).toString('hex');
}

/** Decodes and checks a manifest; throws an Error whose message says what is wrong (the caller names the snapshot). */
export function decodeManifest(b: Buffer): Manifest {
  if (b.length < HEADER_BYTES + TRAILER_BYTES || !b.subarray(0, 8).equals(MANIFEST_MAGIC)) throw new Error('is not a snapfault manifest');
  const version = b.readUInt32LE(H.version);
  if (version !== 1 && version !== 2) throw new Error(`has manifest version ${version}; this snapfault reads versions 1 and ${MANIFEST_VERSION}: upgrade snapfault`);
  const body = b.subarray(0, b.length - TRAILER_BYTES);
  if (!createHash('sha256').update(body).digest().equals(b.subarray(b.length - TRAILER_BYTES))) throw new Error('fails its checksum: the manifest is damaged');
  const chunkBytes = b.readUInt32LE(H.chunkBytes);
  const pages = b.readUInt32LE(H.pages);
  const chunkCount = b.readUInt32LE(H.chunks);
  const parentLength = b.readUInt32LE(H.parentLength);
  const nameArea = (parentLength + 7) & ~7;
  const originalSize = Number(b.readBigUInt64LE(H.originalSize));
  if (b.readUInt32LE(H.pageBytes) !== 4096 || chunkBytes % 4096 !== 0 || chunkBytes === 0 || originalSize !== pages * 4096) throw new Error('has impossible sizes');
  const tableBytes = b.readUInt32LE(H.pageTableBytes);
  const recordBytes = CHUNK_RECORD_BYTES[version];
  const packCount = version === 2 ? b.readUInt32LE(H.packs) : 0;
  if (b.length !== HEADER_BYTES + nameArea + chunkCount * recordBytes + packCount * PACK_ID_BYTES + tableBytes + TRAILER_BYTES) throw new Error('has the wrong length');
  const parent = parentLength === 0 ? null : {
    name: b.toString('utf8', HEADER_BYTES, HEADER_BYTES + parentLength),
    identity: b.subarray(H.parentIdentity, H.parentIdentity + 32).toString('hex'),
  };
  let o = HEADER_BYTES + nameArea;
  const packIds: string[] = [];
  const idsAt = o + chunkCount * recordBytes;
  for (let i = 0; i < packCount; i++) packIds.push(b.toString('hex', idsAt + i * PACK_ID_BYTES, idsAt + (i + 1) * PACK_ID_BYTES));
  const chunks: ChunkRecord[] = [];
  for (let c = 0; c < chunkCount; c++, o += recordBytes) {
    let pack: string | null = null;
    let offset = 0;
    if (version === 2) {
      const ordinal = b.readUInt32LE(o + 40);
      offset = b.readUInt32LE(o + 44);
      if (ordinal !== NOT_PACKED) {
        if (ordinal >= packCount) throw new Error(`chunk ${c} lies in pack ${ordinal} of ${packCount}`);
        pack = packIds[ordinal];
      }
    }
    chunks.push({ name: Buffer.from(b.subarray(o, o + 32)), stored: b.readUInt32LE(o + 32), checksum: b.readUInt32LE(o + 36), pack, offset });
  }
  o += packCount * PACK_ID_BYTES;
  let pageTable: Uint32Array;
  try {
    pageTable = unpackPageTable(b.subarray(o, o + tableBytes), pages);
  } catch {
    throw new Error('has a page table that does not decode: the manifest is damaged');
  }
  const ppc = chunkBytes / 4096;
  for (let p = 0; p < pages; p++) {
    const v = pageTable[p];
    if (v === PAGE_IS_ZERO) continue;
    if (v === PAGE_IN_PARENT) {
      if (!parent) throw new Error(`page ${p} is its parent's, but it has no parent`);
      continue;
    }
    if (Math.floor(v / ppc) >= chunkCount) throw new Error(`page ${p} refers to chunk ${Math.floor(v / ppc)} of ${chunkCount}`);
  }
  return { originalSize, chunkBytes, pages, createdMs: Number(b.readBigUInt64LE(H.createdMs)), parent, chunks, pageTable };
}
