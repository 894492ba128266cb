// The core's pread import: reads a compressed chunk from the snapshot file
// straight into shared memory.
import { preadInto } from '../../native/fd.js';
import { addressOf, E } from '../../native/libc.js';
import type { HostPread } from './wasm-core.js';

/** pread(2) into a raw address: bytes read, or a negative errno. */
export type PreadFn = (fd: number, addr: number, len: number, offset: number) => number;

/**
 * The import reads all `len` bytes: the core takes any shorter count for a
 * damaged chunk (and kills the VM), but pread may stop short on a signal
 * (EINTR) or on NFS/FUSE. Only end of file or a real error ends it early.
 * `read` is the underlying pread: tests pass one that reads short.
 */
export function hostPread(memory: WebAssembly.Memory, read: PreadFn = preadInto): HostPread {
  // Shared memory never moves (V8 reserves its maximum up front), so the base is fixed.
  const base = addressOf(new Uint8Array(memory.buffer));
  return (fd, dst, len, offset) => {
    const at = Number(offset);
    let done = 0;
    while (done < len) {
      const n = read(fd, base + dst + done, len - done, at + done);
      if (n === -E.EINTR) continue;
      if (n < 0) return n;
      if (n === 0) break; // end of file: the short count tells the core
      done += n;
    }
    return done;
  };
}
