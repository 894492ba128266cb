// The fence between a VM's fault worker reading its uffd and the prefetch
// worker copying into it (the words live in the VM table). A REMOVE read from
// the uffd lets the guest's madvise go on and zap the page at once; a prefetch
// copy planned before the fault worker marked the page removed, and issued
// after the zap, would put snapshot bytes where the guest expects zeros. So a
// read (with the marking of its removes) and a prefetch copy (with its check
// of the bitmaps) never overlap.
// Demand goes first (the role QEMU's postcopy preempt channel plays for its
// urgent pages): while the fault worker serves a batch, from its wake-up to
// its last ioctl, the `demand` word is set; the prefetch worker starts no
// batch then and stops the batch in hand before its next ioctl. So a waiting
// fault waits for at most one prefetch ioctl, never for a whole batch, and
// on a shared CPU the prefetch worker gives the CPU back instead of copying.
import { availableParallelism } from 'node:os';
import type { CoreLayout } from '../core/wasm-core.js';

/**
 * How long to spin before sleeping on the other side's word. A sleep and
 * wake-up across CPUs costs ~30-50 µs here, more than the other side holds
 * the fence; on one CPU (taskset) spinning only delays the holder: sleep at once.
 */
const SPIN_MS = availableParallelism() > 1 ? 0.05 : 0;

export interface FenceWords {
  read: number;
  copy: number;
  readWaiters: number;
  copyWaiters: number;
  demand: number;
  demandWaiters: number;
}

/** Int32Array indices of a VM's fence words. */
export function fenceWords(L: CoreLayout, table: number): FenceWords {
  return {
    read: (table + L.VM_FENCE_READ) >> 2,
    copy: (table + L.VM_FENCE_COPY) >> 2,
    readWaiters: (table + L.VM_FENCE_READ_WAITERS) >> 2,
    copyWaiters: (table + L.VM_FENCE_COPY_WAITERS) >> 2,
    demand: (table + L.VM_FENCE_DEMAND) >> 2,
    demandWaiters: (table + L.VM_FENCE_DEMAND_WAITERS) >> 2,
  };
}

/** Fault worker, before read(): announces the read, then waits out a prefetch copy in flight. */
export function enterRead(m: Int32Array, f: FenceWords): void {
  Atomics.store(m, f.read, 1);
  if (Atomics.load(m, f.copy) === 1) waitWhileSet(m, f.copy, f.copyWaiters, 5);
}

/** Spins briefly, then sleeps, while word `at` is 1. */
function waitWhileSet(m: Int32Array, at: number, waiters: number, sleepMs: number): void {
  if (SPIN_MS > 0) {
    const until = performance.now() + SPIN_MS;
    while (Atomics.load(m, at) === 1) if (performance.now() > until) break;
  }
  while (Atomics.load(m, at) === 1) {
    Atomics.add(m, waiters, 1);
    Atomics.wait(m, at, 1, sleepMs);
    Atomics.sub(m, waiters, 1);
  }
}

/** Fault worker, once the batch's removes are marked. */
export function leaveRead(m: Int32Array, f: FenceWords): void {
  Atomics.store(m, f.read, 0);
  if (Atomics.load(m, f.readWaiters) > 0) Atomics.notify(m, f.read);
}

/** Fault worker, woken with faults to serve: prefetch holds back until endDemand. */
export function beginDemand(m: Int32Array, f: FenceWords): void {
  Atomics.store(m, f.demand, 1);
}

/** Fault worker, once the batch's last ioctl is issued (or the batch is deferred). */
export function endDemand(m: Int32Array, f: FenceWords): void {
  Atomics.store(m, f.demand, 0);
  if (Atomics.load(m, f.demandWaiters) > 0) Atomics.notify(m, f.demand);
}

/** Prefetch worker, between two ioctls of a batch: true when faults are being served (stop, and call waitForRead). */
export function demandWaiting(m: Int32Array, f: FenceWords): boolean {
  return Atomics.load(m, f.demand) === 1 || Atomics.load(m, f.read) === 1;
}

/** Prefetch worker: true when it may plan and copy; false while faults are being served (call waitForRead). */
export function tryEnterCopy(m: Int32Array, f: FenceWords): boolean {
  // The demand word is only a priority: checked first, it costs no fence round trip.
  if (Atomics.load(m, f.demand) === 1) return false;
  Atomics.store(m, f.copy, 1);
  if (Atomics.load(m, f.read) === 0) return true;
  leaveCopy(m, f);
  return false;
}

export function leaveCopy(m: Int32Array, f: FenceWords): void {
  Atomics.store(m, f.copy, 0);
  if (Atomics.load(m, f.copyWaiters) > 0) Atomics.notify(m, f.copy);
}

/** Prefetch worker: waits until the read, and the serving of the faults it read, are over. */
export function waitForRead(m: Int32Array, f: FenceWords): void {
  waitWhileSet(m, f.read, f.readWaiters, 1);
  waitWhileSet(m, f.demand, f.demandWaiters, 1);
}
