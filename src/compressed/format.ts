// The compressed snapshot format, version 1 (docs/format.md): the header's
// layout, and its encoding and checking. Everything is little-endian.
export const MAGIC = Buffer.from([0x89, 0x53, 0x46, 0x5a, 0x0d, 0x0a, 0x1a, 0x0a]); // \x89 S F Z \r \n \x1a \n
export const FORMAT_VERSION = 1;
export const HEADER_BYTES = 128;
export const PAGE_BYTES = 4096;
export const CODEC_LZ4 = 1;
export const PAGE_ZERO = 0xffffffff;
export const CHUNK_ENTRY_BYTES = 16;
export const CHUNK_RAW_FLAG = 0x80000000;

/** A chunk's stored length, from its stored field (CHUNK_RAW_FLAG set: stored raw). */
export function storedLength(field: number): number {
  return (field & ~CHUNK_RAW_FLAG) >>> 0;
}

/** The chunk was stored raw (incompressible), not LZ4. */
export function storedRaw(field: number): boolean {
  return (field & CHUNK_RAW_FLAG) !== 0;
}
export const MAX_CHUNK_BYTES = 1 << 20;
/** Chunk size chosen by measurement: see docs/format.md. */
export const DEFAULT_CHUNK_BYTES = 32 << 10;

const H = {
  magic: 0, version: 8, headerBytes: 12, originalSize: 16, pageBytes: 24, chunkBytes: 28, codec: 32, flags: 36,
  pages: 40, chunks: 48, storedPages: 52, zeroPages: 56, duplicatePages: 64, indexOffset: 72, chunkTableOffset: 80,
  dataOffset: 88, fileSize: 96, indexChecksum: 104, chunkTableChecksum: 108, headerChecksum: 124,
} as const;

export interface Header {
  version: number;
  originalSize: number;
  pageBytes: number;
  chunkBytes: number;
  codec: number;
  pages: number;
  chunks: number;
  storedPages: number;
  zeroPages: number;
  duplicatePages: number;
  indexOffset: number;
  chunkTableOffset: number;
  dataOffset: number;
  fileSize: number;
  indexChecksum: number;
  chunkTableChecksum: number;
}

export function isCompressed(first8: Buffer): boolean {
  return first8.length >= 8 && first8.subarray(0, 8).equals(MAGIC);
}

/** Header bytes without the trailing checksum, which the caller appends (xxh32 of bytes 0..124). */
export function encodeHeader(h: Header): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b, H.magic);
  b.writeUInt32LE(h.version, H.version);
  b.writeUInt32LE(HEADER_BYTES, H.headerBytes);
  b.writeBigUInt64LE(BigInt(h.originalSize), H.originalSize);
  b.writeUInt32LE(h.pageBytes, H.pageBytes);
  b.writeUInt32LE(h.chunkBytes, H.chunkBytes);
  b.writeUInt32LE(h.codec, H.codec);
  b.writeUInt32LE(0, H.flags);
  b.writeBigUInt64LE(BigInt(h.pages), H.pages);
  b.writeUInt32LE(h.chunks, H.chunks);
  b.writeUInt32LE(h.storedPages, H.storedPages);
  b.writeBigUInt64LE(BigInt(h.zeroPages), H.zeroPages);
  b.writeBigUInt64LE(BigInt(h.duplicatePages), H.duplicatePages);
  b.writeBigUInt64LE(BigInt(h.indexOffset), H.indexOffset);
  b.writeBigUInt64LE(BigInt(h.chunkTableOffset), H.chunkTableOffset);
  b.writeBigUInt64LE(BigInt(h.dataOffset), H.dataOffset);
  b.writeBigUInt64LE(BigInt(h.fileSize), H.fileSize);
  b.writeUInt32LE(h.indexChecksum >>> 0, H.indexChecksum);
  b.writeUInt32LE(h.chunkTableChecksum >>> 0, H.chunkTableChecksum);
  return b;
}

export const HEADER_CHECKSUM_OFFSET = H.headerChecksum;

/** Decodes a header; throws a plain Error naming what is wrong (the caller adds the file name). */
export function decodeHeader(b: Buffer, actualFileSize: number): Header {
  if (b.length < HEADER_BYTES) throw new Error(`is truncated: ${actualFileSize} bytes cannot hold the ${HEADER_BYTES}-byte header`);
  if (!isCompressed(b)) throw new Error('is not a snapfault compressed snapshot (bad magic)');
  const version = b.readUInt32LE(H.version);
  if (version !== FORMAT_VERSION) {
    throw new Error(`has format version ${version}, this snapfault reads version ${FORMAT_VERSION}: ${version > FORMAT_VERSION ? 'upgrade snapfault' : 'repack it'}`);
  }
  const num = (off: number): number => {
    const v = b.readBigUInt64LE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`header field at byte ${off} is out of range`);
    return Number(v);
  };
  const h: Header = {
    version,
    originalSize: num(H.originalSize),
    pageBytes: b.readUInt32LE(H.pageBytes),
    chunkBytes: b.readUInt32LE(H.chunkBytes),
    codec: b.readUInt32LE(H.codec),
    pages: num(H.pages),
    chunks: b.readUInt32LE(H.chunks),
    storedPages: b.readUInt32LE(H.storedPages),
    zeroPages: num(H.zeroPages),
    duplicatePages: num(H.duplicatePages),
    indexOffset: num(H.indexOffset),
    chunkTableOffset: num(H.chunkTableOffset),
    dataOffset: num(H.dataOffset),
    fileSize: num(H.fileSize),
    indexChecksum: b.readUInt32LE(H.indexChecksum),
    chunkTableChecksum: b.readUInt32LE(H.chunkTableChecksum),
  };
  const bad = (why: string): never => {
    throw new Error(`has a corrupt header: ${why}`);
  };
  if (b.readUInt32LE(H.headerBytes) !== HEADER_BYTES) bad('header size');
  if (h.pageBytes !== PAGE_BYTES) bad(`page size ${h.pageBytes}`);
  if (h.chunkBytes === 0 || h.chunkBytes % PAGE_BYTES !== 0 || h.chunkBytes > MAX_CHUNK_BYTES) bad(`chunk size ${h.chunkBytes}`);
  if (h.codec !== CODEC_LZ4) bad(`unknown codec ${h.codec}`);
  if (h.pages * PAGE_BYTES !== h.originalSize) bad('page count and original size disagree');
  if (h.pages >= PAGE_ZERO) bad('too many pages');
  if (h.storedPages > h.pages || h.zeroPages + h.duplicatePages + h.storedPages !== h.pages) bad('page counts do not add up');
  const ppc = h.chunkBytes / PAGE_BYTES;
  if (h.chunks !== Math.ceil(h.storedPages / ppc)) bad('chunk count');
  // Layout: header | page index | chunk data | chunk table (the table is written last, once known).
  if (h.indexOffset !== HEADER_BYTES) bad('index offset');
  if (h.dataOffset !== h.indexOffset + h.pages * 4) bad('data offset');
  if (h.chunkTableOffset < h.dataOffset) bad('chunk table offset');
  if (h.fileSize !== h.chunkTableOffset + h.chunks * CHUNK_ENTRY_BYTES) bad('file size');
  if (actualFileSize < h.fileSize) throw new Error(`is truncated: ${actualFileSize} bytes, its header says ${h.fileSize}`);
  if (actualFileSize > h.fileSize) throw new Error(`has ${actualFileSize - h.fileSize} unexpected bytes after its end (${h.fileSize})`);
  return h;
}
