// epoll: one wait for every fd a fault worker serves. Unlike poll(2), the
// interest list stays registered in the kernel, so a wait costs the same with
// one VM or a hundred and registers no wait-queue entries per call.
import { libc, check, errno, addressOf } from './libc.js';

const createFn = libc.func('int epoll_create1(int flags)') as (flags: number) => number;
const ctlFn = libc.func('int epoll_ctl(int epfd, int op, int fd, uintptr_t event)') as (
  epfd: number, op: number, fd: number, ev: number) => number;
const waitFn = libc.func('int epoll_wait(int epfd, uintptr_t events, int maxevents, int timeout)') as (
  epfd: number, ev: number, max: number, timeout: number) => number;

export const EPOLL = {
  IN: 0x1,
  ERR: 0x8,
  HUP: 0x10,
  RDHUP: 0x2000,
  CTL_ADD: 1,
  CTL_DEL: 2,
  CLOEXEC: 0o2000000,
} as const;

/** struct epoll_event is packed on x86_64: { u32 events; u64 data; } = 12 bytes. */
export const EPOLL_EVENT = { size: 12, events: 0, data: 4 } as const;

export class Epoll {
  readonly fd: number;
  private readonly ctl = Buffer.alloc(EPOLL_EVENT.size);
  private readonly ctlAddr = addressOf(this.ctl);
  private readonly events: Buffer;
  private readonly eventsAddr: number;
  private readonly u32: Uint32Array;

  constructor(readonly capacity = 64) {
    this.fd = check(createFn(EPOLL.CLOEXEC), 'epoll_create1');
    // Room for one more u32 so the last event's 64-bit data can be read as two u32.
    this.events = Buffer.alloc(capacity * EPOLL_EVENT.size + 4);
    this.eventsAddr = addressOf(this.events);
    this.u32 = new Uint32Array(this.events.buffer, this.events.byteOffset, (this.events.length >> 2));
  }

  /** Watches fd for `events`; `tag` (a non-negative 32-bit integer) comes back with each event. */
  add(fd: number, events: number, tag: number): void {
    this.ctl.writeUInt32LE(events >>> 0, EPOLL_EVENT.events);
    this.ctl.writeBigUInt64LE(BigInt(tag), EPOLL_EVENT.data);
    check(ctlFn(this.fd, EPOLL.CTL_ADD, fd, this.ctlAddr), 'epoll_ctl(ADD)', `fd ${fd}`);
  }

  /** Stops watching fd (closing an fd also does, once no other copy of it is open). */
  remove(fd: number): void {
    ctlFn(this.fd, EPOLL.CTL_DEL, fd, this.ctlAddr);
  }

  /** Waits; returns how many events are ready (0 on timeout), or -errno. */
  wait(timeoutMs: number): number {
    const n = waitFn(this.fd, this.eventsAddr, this.capacity, timeoutMs);
    return n < 0 ? -errno() : n;
  }

  /** Event mask of ready event i. Events are 12 bytes apart: every third u32 starts one. */
  eventsOf(i: number): number {
    return this.u32[i * 3];
  }

  /** Tag of ready event i (the low 32 bits of its data). */
  tagOf(i: number): number {
    return this.u32[i * 3 + 1];
  }
}
