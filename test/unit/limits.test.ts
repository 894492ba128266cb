// The memory limit (src/snapshot/limits.ts) where a memory file comes in: a
// sparse file of 16 TiB is refused before it is mapped. (Handshake regions:
// handshake.test.ts.)
import { expect } from 'chai';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileCore, createSharedMemory, instantiateCore } from '../../src/core/wasm-core.js';
import { Arena } from '../../src/core/arena.js';
import { RawSnapshot } from '../../src/snapshot/raw-file.js';
import { MEMORY_LIMIT_BYTES } from '../../src/snapshot/limits.js';
import { SnapshotError } from '../../src/errors.js';

/** A sparse file of `bytes` in the first directory whose file system allows it (ext4 stops just short of 16 TiB; tmpfs does not). */
function sparseFile(bytes: bigint): { path: string; cleanup: () => void } | null {
  for (const parent of [tmpdir(), '/dev/shm']) {
    let dir: string;
    try {
      dir = mkdtempSync(join(parent, 'snapfault-limits-'));
    } catch {
      continue;
    }
    const path = join(dir, 'mem');
    try {
      writeFileSync(path, '');
      truncateSync(path, Number(bytes));
      return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    } catch {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return null;
}

describe('memory limit', () => {
  it('a memory file of 16 TiB (2^32 pages of 4 KiB) is refused when opened, in one line that names the limit', function () {
    const f = sparseFile(MEMORY_LIMIT_BYTES);
    if (!f) this.skip(); // no file system here takes a 16 TiB file: handshake.test.ts checks the limit on regions
    try {
      const core = instantiateCore(compileCore(), createSharedMemory());
      const arena = new Arena(core.memory);
      const before = arena.inUse;
      expect(() => RawSnapshot.open(f.path, core, arena)).to.throw(SnapshotError,
        /^snapshot .*mem: is 17592186044416 bytes, 16 TiB or more: snapfault numbers 4 KiB pages in 32 bits .*; give the VM less memory, or serve it with another handler$/);
      expect(arena.inUse).to.equal(before); // refused before any zero bitmap was allocated
    } finally {
      f.cleanup();
    }
  });
});
