// The core's imports for a snapshot in a store (src/store/): a chunk is its
// own file, found by its name (the SHA-256 of its decoded bytes) under the
// store's chunks folder, and checked against that name once decoded.
import { createHash } from 'node:crypto';
import { openAtReadOnly, preadInto, closeFd, markAccessed } from '../../native/fd.js';
import { addressOf, E } from '../../native/libc.js';
import type { NamedChunkReads } from './wasm-core.js';

export const NAME_BYTES = 32;

/** Where the chunk named `hex` lives under a store's chunks folder: 256 subfolders keep folders small. */
export function chunkFileName(hex: string): string {
  return `${hex.slice(0, 2)}/${hex}`;
}

export function namedChunkReads(memory: WebAssembly.Memory): NamedChunkReads {
  const base = addressOf(new Uint8Array(memory.buffer));
  const nameAt = (at: number): string => Buffer.from(memory.buffer, at, NAME_BYTES).toString('hex');
  return {
    readNamed(dirfd, name, dst, len) {
      const fd = openAtReadOnly(dirfd, chunkFileName(nameAt(name)));
      if (fd < 0) return fd;
      // A disk cache of a bucket evicts the least recently read chunks (disk-cache.ts); only the access time moves, which gc does not look at.
      markAccessed(fd);
      try {
        let done = 0;
        while (done < len) {
          const n = preadInto(fd, base + dst + done, len - done, done);
          if (n === -E.EINTR) continue;
          if (n < 0) return n;
          if (n === 0) break; // shorter than the manifest says: the core takes it for damage
          done += n;
        }
        return done;
      } finally {
        closeFd(fd);
      }
    },
    checkNamed(name, at, len) {
      const digest = createHash('sha256').update(new Uint8Array(memory.buffer, at, len)).digest();
      return digest.equals(new Uint8Array(memory.buffer, name, NAME_BYTES)) ? 1 : 0;
    },
  };
}
