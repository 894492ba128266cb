// The core's pread import: reads a compressed chunk from the snapshot file
// straight into shared memory.
import { preadInto } from '../../native/fd.js';
import { addressOf } from '../../native/libc.js';
import type { HostPread } from './wasm-core.js';

export function hostPread(memory: WebAssembly.Memory): HostPread {
  // Shared memory never moves (V8 reserves its maximum up front), so the base is fixed.
  const base = addressOf(new Uint8Array(memory.buffer));
  return (fd, dst, len, offset) => preadInto(fd, base + dst, len, Number(offset));
}
