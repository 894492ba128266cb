// UFFDIO_UNREGISTER alone, without the UFFDIO_WAKE that native/uffd.ts
// `unregister` adds: what tests use to make a range leave the uffd the way a
// race (or a handler before a takeover) leaves it.
import { ioctlRaw, rangeArg, UFFDIO, LAYOUT } from '../../native/uffd.js';
import { addressOf } from '../../native/libc.js';
import { readMemory } from '../../native/mmap.js';

/** A bare UFFDIO_UNREGISTER of [start, start + len): 0, or -errno. */
export function bareUnregister(fd: number, start: number, len: number): number {
  const rc = ioctlRaw(fd, UFFDIO.UNREGISTER, addressOf(rangeArg(start, len)));
  return rc < 0 ? rc : 0;
}

/** A bare UFFDIO_UNREGISTER of the range a struct uffdio_zeropage at `arg` is about to map. */
export function unregisterZeropageRange(fd: number, arg: number): number {
  const range = readMemory(arg + LAYOUT.uffdio_zeropage.range, LAYOUT.uffdio_range.size);
  return bareUnregister(fd, Number(range.readBigUInt64LE(LAYOUT.uffdio_range.start)), Number(range.readBigUInt64LE(LAYOUT.uffdio_range.len)));
}
