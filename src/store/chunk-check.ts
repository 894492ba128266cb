// Whether bytes from a bucket are the chunk a manifest names: decoded (LZ4,
// by the core) to the chunk size, then their SHA-256 compared with the name.
// Run on every response before it is cached: a truncated or wrong object is
// refused here, and the core checks the chunk again each time it reads it back.
import { createHash } from 'node:crypto';
import { storedLength, storedRaw } from '../compressed/format.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';

export class ChunkCheck {
  private readonly src: number;
  private readonly dst: number;

  constructor(private readonly core: Core, arena: Arena, private readonly maxStored: number, private readonly chunkBytes: number) {
    this.src = arena.alloc(maxStored, 64);
    this.dst = arena.alloc(chunkBytes + core.layout.LZ4_DECODE_SLACK, 64);
  }

  /** null when `stored` is the chunk named `hex`, stored as the manifest says (`storedField`: length, bit 31 raw); else why not. */
  check(hex: string, storedField: number, stored: Buffer): string | null {
    const len = storedLength(storedField);
    const raw = storedRaw(storedField);
    if (stored.length !== len) return `the bucket returned ${stored.length} bytes for chunk ${hex}, its manifest says ${len}`;
    let decoded: Uint8Array = stored;
    if (!raw) {
      if (len > this.maxStored) return `chunk ${hex} is larger than a chunk can be`;
      const mem = new Uint8Array(this.core.memory.buffer);
      mem.set(stored, this.src);
      if (this.core.fn.lz4DecodeBlock(this.src, len, this.dst, this.chunkBytes) !== this.chunkBytes) return `the bucket's object for chunk ${hex} does not decode`;
      decoded = new Uint8Array(this.core.memory.buffer, this.dst, this.chunkBytes);
    }
    const name = createHash('sha256').update(decoded).digest('hex');
    return name === hex ? null : `the bucket's object for chunk ${hex} is not what its name says`;
  }
}
