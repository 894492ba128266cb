// Firecracker is still inside `PUT /snapshot/load`: work that can wait, waits.
// Firecracker faults guest memory itself during the load (a handful of
// pages), and every millisecond the load takes is on the restore's critical
// path. Measured on the kit (docs/benchmarks.md): prefetch copying from the
// handshake on took CPU and memory bandwidth from the load, and on a busy CPU
// a fault worker woken by Firecracker's fault waited behind the prefetch
// thread's time slice (Firecracker's thread sat ~4 ms in handle_userfault,
// against ~1 ms on demand). (Holding the zero ranges' unregistering back
// the same way was measured too, and gained nothing: it is not held.)
// Firecracker spawns its vCPU threads (`fc_vcpu N`) at the end of the load,
// right before it resumes the guest: their appearance is the signal that the
// guest, for whom that work is, is about to run. A peer that is not
// Firecracker (a simulator, a test) is never waited for; nor is one whose vCPU
// threads do not appear within HOLD_MAX_MS.
import { readFileSync, readdirSync } from 'node:fs';

export const HOLD_MAX_MS = 1000;

/** True while process `pid` is a Firecracker that has not spawned a vCPU thread yet. */
export function firecrackerLoading(pid: number): boolean {
  try {
    if (readFileSync(`/proc/${pid}/comm`, 'latin1') !== 'firecracker\n') return false;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'latin1').startsWith('fc_vcpu')) return false;
      } catch {
        /* the thread ended */
      }
    }
    return true;
  } catch {
    return false; // gone: nothing to wait for
  }
}

/** Asks firecrackerLoading at most once a millisecond, and stops asking once it said no or HOLD_MAX_MS passed. */
export class LoadWatch {
  private until: number;
  private checkedAt = 0;
  private loading = true;

  constructor(private readonly pid: number, now: number) {
    this.until = firecrackerLoading(pid) ? now + HOLD_MAX_MS : 0;
    this.loading = this.until > 0;
  }

  /** True while Firecracker is still loading, as of `now` (ms). */
  holding(now: number): boolean {
    if (!this.loading) return false;
    if (now >= this.until) return (this.loading = false);
    if (now - this.checkedAt < 1) return true;
    this.checkedAt = now;
    this.loading = firecrackerLoading(this.pid);
    return this.loading;
  }
}
