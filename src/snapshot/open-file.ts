// The one way snapshot files are opened and their first bytes read: a
// failure becomes a SnapshotError that names the file and what to do.
import { openSync, readSync, statSync } from 'node:fs';
import { SnapshotError } from '../errors.js';

export function snapshotFileError(path: string, e: unknown): SnapshotError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new SnapshotError(path, 'no such file: check the memory file path');
  if (code === 'EACCES' || code === 'EPERM') return new SnapshotError(path, 'permission denied: the handler needs read access');
  if (code === 'EISDIR') return new SnapshotError(path, FOLDER);
  return new SnapshotError(path, `cannot be opened (${code ?? String(e)})`);
}

const FOLDER = 'is a folder, not a file: give the path of the snapshot file';

/** Opens a snapshot file read-only; a folder or a device is refused, not read from (or, a fifo, waited on). */
export function openSnapshotFile(path: string): number {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw snapshotFileError(path, e);
  }
  if (st.isDirectory()) throw new SnapshotError(path, FOLDER);
  if (!st.isFile()) throw new SnapshotError(path, 'is not a regular file: give the path of the snapshot file');
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw snapshotFileError(path, e);
  }
}

/** The file's first 8 bytes (fewer for a shorter file); empty when unreadable (a directory, say). */
export function firstBytes(fd: number): Buffer {
  const head = Buffer.alloc(8);
  try {
    return head.subarray(0, readSync(fd, head, 0, 8, 0));
  } catch {
    return head.subarray(0, 0);
  }
}

/** Reads exactly `length` bytes at `pos` into `buf`: null, or the byte the file ended at (truncated while being read). */
export function readExactlyAt(fd: number, buf: Uint8Array, length: number, pos: number): number | null {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, pos + got);
    if (n <= 0) return pos + got;
    got += n;
  }
  return null;
}

/** The file ended at byte `at` while being read. */
export function endedEarly(path: string, at: number): SnapshotError {
  return new SnapshotError(path, `ended at byte ${at} while being read: was it truncated?`);
}
