// The put workers' job queue: jobs go out round robin with a bound on how many
// are in flight (reading waits instead of holding the whole file in memory),
// and the first failure, of a worker or of a chain of work on its results,
// stops the put at its next step.
import type { Worker } from 'node:worker_threads';
import type { PutJob, PutResult } from './put-worker.js';

/** Jobs for the put workers, round robin, with at most `limit` in flight. */
export class JobQueue {
  private inFlight = 0;
  private next = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly replies = new Map<number, { resolve: (r: PutResult) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;

  constructor(private readonly workers: Worker[], private readonly limit: number) {
    for (const w of workers) {
      w.on('message', (r: PutResult) => {
        const reply = this.replies.get(r.id);
        this.replies.delete(r.id);
        this.inFlight--;
        this.waiting.shift()?.();
        reply?.resolve(r);
      });
      w.on('error', (e) => this.fail(e));
    }
  }

  /** Resolves once the job is sent (so reading can go on), with the promise of its result. */
  async submit(job: PutJob): Promise<{ result: Promise<PutResult> }> {
    while (this.inFlight >= this.limit && !this.failure) await new Promise<void>((r) => this.waiting.push(r));
    this.check();
    const id = this.next++;
    const result = new Promise<PutResult>((resolve, reject) => this.replies.set(id, { resolve, reject }));
    result.catch(() => undefined); // rejections surface through check() and the awaiting chain
    this.inFlight++;
    this.workers[id % this.workers.length].postMessage({ ...job, id }, job.kind === 'chunk' ? [job.data, job.digests] : []);
    return { result };
  }

  /** A chain of work that may fail: its failure stops the put at the next check. */
  track(p: Promise<void>): void {
    p.catch((e: Error) => this.fail(e));
  }

  check(): void {
    if (this.failure) throw this.failure;
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    for (const r of this.replies.values()) r.reject(e);
    this.replies.clear();
    this.waiting.splice(0).forEach((f) => f());
  }
}
