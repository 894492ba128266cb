// The fault feed: a single-producer, single-consumer ring in shared memory
// per VM, through which the fault worker tells the prefetch worker which
// snapshot pages the guest faulted on (reactive policies learn from them),
// plus the doorbell the prefetch worker sleeps on when it has nothing to do.
// A full ring drops entries: a policy missing a hint costs speed, never bytes.

export const FEED_CAPACITY = 4096; // entries, a power of two
const HEAD = 0; // i32 index: written by the producer
const TAIL = 1; // i32 index: written by the consumer
const RING_AFTER = 2; // i32 index: faults to feed before ringing; written by the consumer, 0 = RING_DEFAULT
const ENTRIES = 16; // i32 index of entry 0
export const FEED_BYTES = (ENTRIES + FEED_CAPACITY) * 4;

/** Doorbell block: a counter bumped to wake the prefetch worker, and whether it sleeps. */
export const DOORBELL_BYTES = 64;
const RING = 0;
const SLEEPING = 1;
/** Bumped on entering and on leaving a policy call: odd while one runs (the watchdog reads it). */
const IN_POLICY = 2;

/** Prefetch worker: around every call into a policy. */
export function policyCall(m: Int32Array, doorbell: number): void {
  Atomics.add(m, (doorbell >> 2) + IN_POLICY, 1);
}

/** Main thread: the policy-call counter (odd: a call is running). */
export function policyCalls(m: Int32Array, doorbell: number): number {
  return Atomics.load(m, (doorbell >> 2) + IN_POLICY);
}

/**
 * How many faults a fault worker feeds before it rings the prefetch worker.
 * Waking the prefetch worker costs ~50 µs of a busy CPU here, so the policy's
 * answers set it: a policy that asked for pages on the last faults it saw
 * (a stream under way) is rung soon; one that asked for nothing, seldom.
 */
export const RING_DEFAULT = 16;
export const RING_SOON = 2;
export const RING_SELDOM = 256;

export function ringAfter(m: Int32Array, feed: number): number {
  return Atomics.load(m, (feed >> 2) + RING_AFTER) || RING_DEFAULT;
}

/** Prefetch worker, after a drain: `asked` whether the policy wanted pages for those faults. */
export function adaptRing(m: Int32Array, feed: number, asked: boolean): void {
  const at = (feed >> 2) + RING_AFTER;
  const now = Atomics.load(m, at) || RING_DEFAULT;
  Atomics.store(m, at, asked ? RING_SOON : Math.min(RING_SELDOM, now * 2));
}

/** Fault worker: appends a snapshot page (a u32: snapshot/limits.ts keeps them below 2^32); false when the ring is full. */
export function feedPush(m: Int32Array, feed: number, page: number): boolean {
  const base = feed >> 2;
  const head = Atomics.load(m, base + HEAD);
  if (((head - Atomics.load(m, base + TAIL)) | 0) >= FEED_CAPACITY) return false;
  m[base + ENTRIES + (head & (FEED_CAPACITY - 1))] = page;
  Atomics.store(m, base + HEAD, (head + 1) | 0);
  return true;
}

/** Prefetch worker: takes every queued page, oldest first. */
export function feedDrain(m: Int32Array, feed: number, take: (page: number) => void): number {
  const base = feed >> 2;
  const head = Atomics.load(m, base + HEAD);
  let tail = Atomics.load(m, base + TAIL);
  const n = (head - tail) | 0;
  for (; tail !== head; tail = (tail + 1) | 0) take(m[base + ENTRIES + (tail & (FEED_CAPACITY - 1))] >>> 0);
  Atomics.store(m, base + TAIL, tail);
  return n;
}

/** Wakes the prefetch worker if it sleeps (fault workers, and the main thread on control messages). */
export function ring(m: Int32Array, doorbell: number, force = false): void {
  const base = doorbell >> 2;
  if (!force && Atomics.load(m, base + SLEEPING) === 0) return;
  Atomics.add(m, base + RING, 1);
  Atomics.notify(m, base + RING);
}

/** True when the ring holds entries not taken yet. */
export function feedPending(m: Int32Array, feed: number): boolean {
  const base = feed >> 2;
  return Atomics.load(m, base + HEAD) !== Atomics.load(m, base + TAIL);
}

/** The doorbell's count, read before looking for work. */
export function doorbellCount(m: Int32Array, doorbell: number): number {
  return Atomics.load(m, (doorbell >> 2) + RING);
}

/**
 * Prefetch worker: sleeps until rung after `seen` was read, or `ms` passed.
 * `stillIdle` re-checks for work once the sleeping flag is up, so a fault
 * fed in between is not missed.
 */
export function sleepUntilRung(m: Int32Array, doorbell: number, seen: number, ms: number, stillIdle: () => boolean): void {
  const base = doorbell >> 2;
  Atomics.store(m, base + SLEEPING, 1);
  if (stillIdle()) Atomics.wait(m, base + RING, seen, ms);
  Atomics.store(m, base + SLEEPING, 0);
}
