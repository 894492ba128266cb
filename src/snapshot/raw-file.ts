// A plain Firecracker memory file, served straight from a read-only mapping:
// UFFDIO_COPY reads the page cache, nothing is copied in user space.
import { fstatSync, closeSync } from 'node:fs';
import { openSnapshotFile } from './open-file.js';
import { mmapFile, munmap, type Mapping } from '../../native/mmap.js';
import { dataExtents } from '../../native/fd.js';
import { SnapshotError } from '../errors.js';
import { reachesMemoryLimit, MEMORY_LIMIT_TEXT } from './limits.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';

export const SCAN_PAGE = 4096;

/** Who a file is: a replaced or rewritten file gets a new identity. */
export function fileIdentity(st: { dev: number; ino: number; size: number; mtimeMs: number }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

export class RawSnapshot {
  readonly size: bigint;
  readonly identity: string;
  /** Bitmap of all-zero 4 KiB pages in shared memory (filled in as they are found). */
  readonly zeroBitmap: number;
  readonly pages: number;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly fd: number,
    private readonly mapping: Mapping,
    size: number,
    identity: string,
    private readonly arena: Arena,
  ) {
    this.size = BigInt(size);
    this.identity = identity;
    this.pages = Math.ceil(size / SCAN_PAGE);
    this.zeroBitmap = arena.alloc(Math.ceil(this.pages / 32) * 4);
  }

  static open(path: string, core: Core, arena: Arena): RawSnapshot {
    const fd = openSnapshotFile(path);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new SnapshotError(path, 'is not a regular file');
      if (st.size === 0) throw new SnapshotError(path, 'is empty: pass the memory file of a snapshot');
      if (st.size % SCAN_PAGE !== 0) {
        throw new SnapshotError(path, `its size ${st.size} is not a multiple of 4096: not a Firecracker memory file, or truncated`);
      }
      // Before mapping it and sizing its zero bitmap: past the limit, page numbers would wrap (limits.ts).
      if (reachesMemoryLimit(BigInt(st.size))) throw new SnapshotError(path, `is ${st.size} bytes, 16 TiB or more: ${MEMORY_LIMIT_TEXT}`);
      // No MADV_RANDOM: it would turn off fault-around, and every copied page would cost the handler a minor fault.
      const mapping = mmapFile(fd, st.size, path);
      const snap = new RawSnapshot(path, fd, mapping, st.size, fileIdentity(st), arena);
      snap.markHoles(core);
      return snap;
    } catch (e) {
      closeSync(fd);
      throw e instanceof SnapshotError ? e : new SnapshotError(path, (e as Error).message);
    }
  }

  /** Address of the snapshot's first byte in this process: the UFFDIO_COPY source base. */
  get srcBase(): number {
    return this.mapping.addr;
  }

  /** Holes in a sparse file (diff snapshots) are zero pages, known at once. */
  private markHoles(core: Core): void {
    const size = Number(this.size);
    let pos = 0;
    const mark = (from: number, to: number): void => {
      const first = Math.ceil(from / SCAN_PAGE);
      const last = Math.floor(to / SCAN_PAGE);
      if (last > first) core.fn.markZeroPages(this.zeroBitmap, BigInt(first), BigInt(last));
    };
    for (const [start, end] of dataExtents(this.fd, size)) {
      mark(pos, start);
      pos = end;
    }
    mark(pos, size);
  }

  /** Data extents still worth scanning for zero pages. */
  dataExtents(): Array<[number, number]> {
    return dataExtents(this.fd, Number(this.size));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    munmap(this.mapping);
    closeSync(this.fd);
    this.arena.freeBlock(this.zeroBitmap);
  }
}
