// Thread scheduling: yielding the CPU, idle priority for background work,
// and the batch policy for work that must not preempt the fault path.
import { libc, addressOf } from './libc.js';

const schedYieldFn = libc.func('int sched_yield()') as () => number;
const schedSetschedulerFn = libc.func('int sched_setscheduler(int pid, int policy, uintptr_t param)') as (
  pid: number, policy: number, param: number) => number;
export const SCHED_IDLE = 5;
export const SCHED_BATCH = 3;

/** Gives the CPU to another runnable thread (the madvise caller, while EAGAIN lasts). */
export function schedYield(): void {
  schedYieldFn();
}

/**
 * Puts the calling thread (pid 0 = this thread) in SCHED_IDLE: it runs only
 * when the CPU has nothing else to do, so background scans never delay a
 * fault. Returns false if the kernel refused.
 */
export function setIdlePriority(): boolean {
  const param = Buffer.alloc(4); // struct sched_param { int sched_priority = 0 }
  return schedSetschedulerFn(0, SCHED_IDLE, addressOf(param)) === 0;
}

/**
 * Puts the calling thread in SCHED_BATCH: it keeps its fair share of the CPU
 * but never preempts a running thread when it wakes up, so the prefetch
 * worker does not push a fault worker or a vCPU off a busy CPU.
 */
export function setBatchPolicy(): boolean {
  const param = Buffer.alloc(4);
  return schedSetschedulerFn(0, SCHED_BATCH, addressOf(param)) === 0;
}
