// mmap/munmap/madvise and raw memory copies.
import koffi from 'koffi';
import { libc, check, errno, addressOf, SyscallError } from './libc.js';

const mmapFn = libc.func('intptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)') as (
  addr: number, len: number, prot: number, flags: number, fd: number, off: number) => number;
const munmapFn = libc.func('int munmap(uintptr_t addr, size_t len)') as (addr: number, len: number) => number;
const madviseFn = libc.func('int madvise(uintptr_t addr, size_t len, int advice)') as (
  addr: number, len: number, advice: number) => number;
const memcpyFn = libc.func('uintptr_t memcpy(uintptr_t dst, uintptr_t src, size_t n)') as (
  dst: number, src: number, n: number) => number;

export const PROT = { NONE: 0, READ: 1, WRITE: 2 } as const;
export const MAP = {
  SHARED: 0x1,
  PRIVATE: 0x2,
  ANONYMOUS: 0x20,
  NORESERVE: 0x4000,
  POPULATE: 0x8000,
  HUGETLB: 0x40000,
} as const;
export const MADV = { DONTNEED: 4, SEQUENTIAL: 2, RANDOM: 1, WILLNEED: 3, POPULATE_READ: 22 } as const;

/** A live mapping. `addr` is a plain number: user-space addresses fit in 47 bits. */
export interface Mapping {
  readonly addr: number;
  readonly length: number;
}

export function mmapFile(fd: number, length: number, what: string): Mapping {
  const addr = mmapFn(0, length, PROT.READ, MAP.PRIVATE | MAP.NORESERVE, fd, 0);
  if (addr === -1) throw new SyscallError('mmap', errno(), what);
  return { addr, length };
}

/** A writable MAP_SHARED mapping of [offset, offset + length) of a file: what is written lands in the page cache, which outlives this process. */
export function mmapSharedFile(fd: number, length: number, offset: number, what: string): Mapping {
  const addr = mmapFn(0, length, PROT.READ | PROT.WRITE, MAP.SHARED, fd, offset);
  if (addr === -1) throw new SyscallError('mmap', errno(), what);
  return { addr, length };
}

/** The bytes of a live mapping as an ArrayBuffer (no copy): valid until it is unmapped. */
export function viewOf(m: Mapping): ArrayBuffer {
  return koffi.view(m.addr, m.length);
}

export function mmapAnonymous(length: number, flags = 0): Mapping {
  const addr = mmapFn(0, length, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE | flags, -1, 0);
  if (addr === -1) throw new SyscallError('mmap', errno(), `anonymous ${length} bytes`);
  return { addr, length };
}

export function munmap(m: Mapping): void {
  check(munmapFn(m.addr, m.length), 'munmap');
}

export function madvise(addr: number, length: number, advice: number): void {
  check(madviseFn(addr, length, advice), 'madvise');
}

/** madvise that reports failure as -errno instead of throwing (for best-effort advice). */
export function tryMadvise(addr: number, length: number, advice: number): number {
  return madviseFn(addr, length, advice) < 0 ? -errno() : 0;
}

/** Copies raw memory into a Buffer (tests and diagnostics, never the fault path). */
export function readMemory(addr: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  memcpyFn(addressOf(out), addr, length);
  return out;
}

/** Copies a Buffer to raw memory. */
export function writeMemory(addr: number, data: Uint8Array): void {
  memcpyFn(addr, addressOf(data), data.length);
}
