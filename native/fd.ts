// File descriptors: read/write/close, poll sets and eventfds. The hot-path
// signatures take raw addresses (numbers) so koffi marshals nothing.
import koffi, { type KoffiFunc } from 'koffi';
import { libc, check, errno, E, addressOf, SyscallError } from './libc.js';

const readFn = libc.func('long read(int fd, uintptr_t buf, size_t count)') as (fd: number, buf: number, n: number) => number;
const writeFn = libc.func('long write(int fd, uintptr_t buf, size_t count)') as (fd: number, buf: number, n: number) => number;
const preadFn = libc.func('long pread(int fd, uintptr_t buf, size_t count, int64_t offset)') as (
  fd: number, buf: number, n: number, off: number) => number;
const openatFn = libc.func('int openat(int dirfd, const char *path, int flags)') as (dirfd: number, path: string, flags: number) => number;
const syncfsFn = libc.func('int syncfs(int fd)') as (fd: number) => number;
const closeFn = libc.func('int close(int fd)') as (fd: number) => number;
const pollFn = libc.func('int poll(uintptr_t fds, unsigned long nfds, int timeout)') as KoffiFunc<(
  fds: number, n: number, timeout: number) => number>;
const eventfdFn = libc.func('int eventfd(unsigned int initval, int flags)') as (v: number, f: number) => number;
const lseekFn = libc.func('int64_t lseek(int fd, int64_t off, int whence)') as (fd: number, off: number, whence: number) => number;
const fcntlFn = libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number;
const flockFn = libc.func('int flock(int fd, int operation)') as (fd: number, op: number) => number;
const futimensFn = libc.func('int futimens(int fd, uintptr_t times)') as (fd: number, times: number) => number;

export const POLL = {
  IN: 0x1,
  PRI: 0x2,
  OUT: 0x4,
  ERR: 0x8,
  HUP: 0x10,
  NVAL: 0x20,
  RDHUP: 0x2000,
} as const;

export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_DUPFD_CLOEXEC = 1030;
export const O_NONBLOCK = 0o4000;
export const POLLFD_SIZE = 8;

export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;

/** openat(2) of `path` under the folder `dirfd`, read-only and close-on-exec; returns the fd or -errno. */
export function openAtReadOnly(dirfd: number, path: string): number {
  const fd = openatFn(dirfd, path, O_RDONLY | O_CLOEXEC);
  return fd < 0 ? -errno() : fd;
}

// futimens(2) times: atime now, mtime left as it is (UTIME_NOW, UTIME_OMIT in tv_nsec).
// The array and its address are kept together and used together: an address
// alone does not keep the array alive, and once collected its memory was
// read as a garbage mtime (chunks dated 2446, spared by every gc).
const accessedNow = (() => {
  const times = new BigInt64Array([0n, BigInt((1 << 30) - 1), 0n, BigInt((1 << 30) - 2)]);
  return { times, addr: addressOf(times) };
})();

/** Sets the file's access time to now, its modification time untouched: 0 or -errno. */
export function markAccessed(fd: number): number {
  return futimensFn(fd, accessedNow.addr) < 0 ? -errno() : 0;
}

/** syncfs(2): everything written to the file system holding `fd` reaches the disk (one call, not an fsync per file). */
export function syncFileSystem(fd: number): void {
  check(syncfsFn(fd), 'syncfs', `fd ${fd}`);
}

/** read(2) into a raw address; returns bytes or -errno. */
export function readInto(fd: number, addr: number, len: number): number {
  const n = readFn(fd, addr, len);
  return n < 0 ? -errno() : n;
}

/** pread(2) into a raw address; returns bytes or -errno. */
export function preadInto(fd: number, addr: number, len: number, offset: number): number {
  const n = preadFn(fd, addr, len, offset);
  return n < 0 ? -errno() : n;
}

export function writeFrom(fd: number, addr: number, len: number): number {
  const n = writeFn(fd, addr, len);
  return n < 0 ? -errno() : n;
}

/** close(2); EBADF is a bug in the caller and is thrown, other errors are not interesting after close. */
export function closeFd(fd: number): void {
  if (fd < 0) return;
  if (closeFn(fd) < 0 && errno() === E.EBADF) throw new SyscallError('close', E.EBADF, `fd ${fd}`);
}

/** A second descriptor of the same open file (close-on-exec): two threads can each close their own. */
export function dupFd(fd: number): number {
  return check(fcntlFn(fd, F_DUPFD_CLOEXEC, 0), 'fcntl(F_DUPFD_CLOEXEC)', `fd ${fd}`);
}

const LOCK_EX = 2;
const LOCK_NB = 4;

/**
 * Takes an exclusive flock(2) on fd without waiting: true when taken, false
 * when another open file holds it. The kernel lets go when the holder's last
 * descriptor closes, however its process ended.
 */
export function tryLockExclusive(fd: number): boolean {
  if (flockFn(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = errno();
  if (e === E.EAGAIN) return false; // EWOULDBLOCK
  throw new SyscallError('flock', e, `fd ${fd}`);
}

/**
 * Waits, off the event loop (on libuv's thread pool), until fd is readable or
 * `timeoutMs` has passed: true when readable (a pidfd: its process exited).
 * The wait is bounded so a thread-pool thread is never held for long: callers
 * loop. The pollfd lives in the closure until the call returns.
 */
export function waitReadable(fd: number, timeoutMs: number): Promise<boolean> {
  const pollfd = Buffer.alloc(POLLFD_SIZE);
  pollfd.writeInt32LE(fd, 0);
  pollfd.writeInt16LE(POLL.IN, 4);
  const addr = addressOf(pollfd);
  return new Promise((resolve, reject) => {
    pollFn.async(addr, 1, timeoutMs, (err: unknown, n: number) => {
      void pollfd.length; // kept alive until the kernel is done with it
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      // -1 is EINTR at worst (errno is the pool thread's): the caller's loop asks again.
      else resolve(n > 0 && (pollfd.readInt16LE(6) & (POLL.IN | POLL.HUP | POLL.ERR)) !== 0);
    });
  });
}

export function fileStatusFlags(fd: number): number {
  return check(fcntlFn(fd, F_GETFL, 0), 'fcntl(F_GETFL)', `fd ${fd}`);
}

/**
 * A fixed array of struct pollfd in a Buffer, reused for every poll(2) call.
 * Layout: { int fd; short events; short revents; } = 8 bytes.
 */
export class PollSet {
  private buf: Buffer;
  private view: Int32Array;
  private half: Int16Array;
  private addr: number;
  length = 0;

  constructor(capacity = 16) {
    this.buf = Buffer.alloc(capacity * 8);
    this.view = new Int32Array(this.buf.buffer, this.buf.byteOffset, capacity * 2);
    this.half = new Int16Array(this.buf.buffer, this.buf.byteOffset, capacity * 4);
    this.addr = addressOf(this.buf);
  }

  /** Empties the set, keeping its memory. */
  clear(): void {
    this.length = 0;
  }

  /** Adds an fd; returns its slot. */
  add(fd: number, events: number): number {
    if (this.length * 8 === this.buf.length) this.grow();
    const i = this.length++;
    this.view[i * 2] = fd;
    this.half[i * 4 + 2] = events;
    this.half[i * 4 + 3] = 0;
    return i;
  }

  revents(slot: number): number {
    return this.half[slot * 4 + 3] & 0xffff;
  }

  /** poll(2): returns the number of ready fds, 0 on timeout, -errno on failure. */
  wait(timeoutMs: number): number {
    const n = pollFn(this.addr, this.length, timeoutMs);
    return n < 0 ? -errno() : n;
  }

  private grow(): void {
    const old = this.buf;
    this.buf = Buffer.alloc(old.length * 2);
    old.copy(this.buf);
    const cap = this.buf.length / 8;
    this.view = new Int32Array(this.buf.buffer, this.buf.byteOffset, cap * 2);
    this.half = new Int16Array(this.buf.buffer, this.buf.byteOffset, cap * 4);
    this.addr = addressOf(this.buf);
  }
}

/** A non-blocking eventfd: how the main thread wakes a worker blocked in poll(2). */
export class EventFd {
  readonly fd: number;
  private readonly buf = Buffer.alloc(8);
  private readonly addr = addressOf(this.buf);

  constructor(fd?: number) {
    this.fd = fd ?? check(eventfdFn(0, EFD_NONBLOCK | EFD_CLOEXEC), 'eventfd');
  }

  signal(): void {
    this.buf.writeBigUInt64LE(1n);
    writeFn(this.fd, this.addr, 8);
  }

  /** Resets the counter; returns true if it had been signalled. */
  drain(): boolean {
    return readFn(this.fd, this.addr, 8) === 8;
  }

  close(): void {
    closeFd(this.fd);
  }
}

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/**
 * The data extents of a file as [start, end) pairs, found with SEEK_DATA and
 * SEEK_HOLE: everything outside them reads as zeros without being stored.
 * Filesystems without hole support report the whole file as data.
 */
export function dataExtents(fd: number, size: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let pos = 0;
  while (pos < size) {
    const start = lseekFn(fd, pos, SEEK_DATA);
    if (start < 0) {
      if (errno() === E.ENXIO) break; // no data after pos
      return [[0, size]];
    }
    const end = lseekFn(fd, start, SEEK_HOLE);
    if (end < 0) return [[0, size]];
    out.push([start, Math.min(end, size)]);
    pos = end;
  }
  return out;
}

export interface FdWatch {
  close(): void;
}

/**
 * Calls `onReadable` on the main event loop whenever fd is readable or hung
 * up. The returned handle must stay referenced: koffi garbage-collects an
 * unreferenced poll handle and its callback then silently never fires.
 */
export function watchReadable(fd: number, onReadable: () => void): FdWatch {
  const handle = koffi.node.poll(fd, { readable: true, writable: false, disconnect: true }, () => onReadable());
  return { close: () => handle.close() };
}
