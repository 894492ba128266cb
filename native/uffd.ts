// userfaultfd: creation (tests), registration, and the resolving ioctls.
// The fault loop calls `ioctlRaw` with structs the WASM core wrote; the
// Buffer-based helpers here serve set-up, slow paths and tests.
import { openSync, closeSync, readlinkSync, constants as fsc } from 'node:fs';
import { libc, check, errno, addressOf, SyscallError } from './libc.js';
import { UFFDIO, USERFAULTFD_IOC_NEW, UFFD_API, LAYOUT, UFFDIO_REGISTER_MODE_MISSING } from './uffd_abi.js';

export * from './uffd_abi.js';

export const O_CLOEXEC = 0o2000000;

const ioctlFn = libc.func('int ioctl(int fd, unsigned long req, uintptr_t arg)') as (
  fd: number, req: number, arg: number) => number;

/** ioctl(2) with a raw struct address; returns rc, or -errno on failure. */
/** An ioctl on a uffd with its argument at a raw address: the result, or a negative errno. */
export type IoctlFn = (fd: number, req: number, arg: number) => number;

export function ioctlRaw(fd: number, req: number, arg: number): number {
  const rc = ioctlFn(fd, req, arg);
  return rc < 0 ? -errno() : rc;
}

/** True when fd is a userfaultfd (an anon inode named [userfaultfd]). */
export function isUserfaultfd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[userfaultfd]';
  } catch {
    return false;
  }
}

/**
 * Creates a userfaultfd the way Firecracker does (tests and tools only: the
 * handler always receives Firecracker's): /dev/userfaultfd, non-blocking,
 * close-on-exec, then UFFDIO_API with the requested features.
 */
export function createUserfaultfd(features: number): number {
  const dev = openSync('/dev/userfaultfd', fsc.O_RDWR | O_CLOEXEC);
  let fd: number;
  try {
    fd = check(ioctlFn(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | fsc.O_NONBLOCK), 'ioctl(USERFAULTFD_IOC_NEW)');
  } finally {
    closeSync(dev);
  }
  const api = Buffer.alloc(LAYOUT.uffdio_api.size);
  api.writeBigUInt64LE(BigInt(UFFD_API), LAYOUT.uffdio_api.api);
  api.writeBigUInt64LE(BigInt(features), LAYOUT.uffdio_api.features);
  if (ioctlFn(fd, UFFDIO.API, addressOf(api)) < 0) {
    const e = errno();
    closeSync(fd);
    throw new SyscallError('ioctl(UFFDIO_API)', e);
  }
  return fd;
}

export function registerMissing(fd: number, start: number, len: number): void {
  const reg = Buffer.alloc(LAYOUT.uffdio_register.size);
  reg.writeBigUInt64LE(BigInt(start), LAYOUT.uffdio_register.range);
  reg.writeBigUInt64LE(BigInt(len), LAYOUT.uffdio_register.range + 8);
  reg.writeBigUInt64LE(BigInt(UFFDIO_REGISTER_MODE_MISSING), LAYOUT.uffdio_register.mode);
  check(ioctlFn(fd, UFFDIO.REGISTER, addressOf(reg)), 'ioctl(UFFDIO_REGISTER)');
}

/**
 * UFFDIO_UNREGISTER of [start, start + len), then UFFDIO_WAKE of it: 0, or
 * -errno. From then on the range is the kernel's alone: a missing page of
 * anonymous memory faults in as zeros without a message, and a madvise there
 * sends no REMOVE. It may split the VMA (ENOMEM at vm.max_map_count);
 * hugetlbfs needs the range aligned to its page size (EINVAL).
 *
 * Why the wake: the kernel wakes the faults waiting in the range before it
 * takes the range out, and a fault that entered under the VMA lock just then
 * queues itself after that wake-up and sleeps on, with a message for a page
 * nobody can fill (a copy there is ENOENT). The vCPU would hang for good.
 * Once the unregister returns, such a fault is queued: this wake reaches it,
 * takes its message off the queue, and it retries as an ordinary fault.
 * (test/unit/native-uffd.test.ts races it: ~1 in 100 unregisters without.)
 */
export function unregister(fd: number, start: number, len: number): number {
  const s = rangeArg(start, len);
  if (ioctlFn(fd, UFFDIO.UNREGISTER, addressOf(s)) < 0) return -errno();
  return ioctlFn(fd, UFFDIO.WAKE, addressOf(s)) < 0 ? -errno() : 0;
}

/** A struct uffdio_range, for UNREGISTER and WAKE. */
export function rangeArg(start: number, len: number): Buffer {
  const s = Buffer.alloc(LAYOUT.uffdio_range.size);
  s.writeBigUInt64LE(BigInt(start), LAYOUT.uffdio_range.start);
  s.writeBigUInt64LE(BigInt(len), LAYOUT.uffdio_range.len);
  return s;
}

/** UFFDIO_COPY; returns bytes copied, or -errno. */
export function copy(fd: number, dst: number, src: number, len: number, mode = 0): number {
  const s = Buffer.alloc(LAYOUT.uffdio_copy.size);
  s.writeBigUInt64LE(BigInt(dst), LAYOUT.uffdio_copy.dst);
  s.writeBigUInt64LE(BigInt(src), LAYOUT.uffdio_copy.src);
  s.writeBigUInt64LE(BigInt(len), LAYOUT.uffdio_copy.len);
  s.writeBigUInt64LE(BigInt(mode), LAYOUT.uffdio_copy.mode);
  const rc = ioctlFn(fd, UFFDIO.COPY, addressOf(s));
  const copied = Number(s.readBigInt64LE(LAYOUT.uffdio_copy.copy));
  return rc < 0 ? (copied > 0 ? copied : -errno()) : copied;
}

/** UFFDIO_ZEROPAGE; returns bytes mapped, or -errno. */
export function zeropage(fd: number, start: number, len: number, mode = 0): number {
  const s = Buffer.alloc(LAYOUT.uffdio_zeropage.size);
  s.writeBigUInt64LE(BigInt(start), LAYOUT.uffdio_zeropage.range);
  s.writeBigUInt64LE(BigInt(len), LAYOUT.uffdio_zeropage.range + 8);
  s.writeBigUInt64LE(BigInt(mode), LAYOUT.uffdio_zeropage.mode);
  const rc = ioctlFn(fd, UFFDIO.ZEROPAGE, addressOf(s));
  const mapped = Number(s.readBigInt64LE(LAYOUT.uffdio_zeropage.zeropage));
  return rc < 0 ? (mapped > 0 ? mapped : -errno()) : mapped;
}

/** UFFDIO_WAKE; returns 0 or -errno. */
export function wake(fd: number, start: number, len: number): number {
  const s = rangeArg(start, len);
  return ioctlFn(fd, UFFDIO.WAKE, addressOf(s)) < 0 ? -errno() : 0;
}
