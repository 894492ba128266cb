// The chunks prefetching needs from a bucket (--prefetch with a store in a
// bucket), fetched ahead of the guest into the disk cache: in the order they
// were asked for (the order the guest will need them), at most `concurrency`
// at once. A fault's own chunk is fetched at once, outside this queue, and
// taken out of it (demand first); a chunk asked for twice is fetched once.
export interface PrefetchFetchSeams {
  /** Fetches the chunk into the disk cache: null once there, else one line why not. */
  fetch(chunk: number): Promise<string | null>;
  /** The chunk is in the disk cache already. */
  cached(chunk: number): boolean;
  /** The chunk landed (error null) or could not be fetched: tell the prefetch worker. */
  landed(chunk: number, error: string | null): void;
}

export class PrefetchFetches {
  private readonly queue: number[] = [];
  private head = 0;
  private readonly queued = new Set<number>();
  private readonly running = new Set<number>();
  private closed = false;
  /** GETs started by prefetching (a chunk found cached by then is not counted). */
  started = 0;

  constructor(private readonly concurrency: number, private readonly seams: PrefetchFetchSeams) {}

  /** Fetch `chunk` when its turn comes (after the chunks asked for before it). */
  want(chunk: number): void {
    if (this.closed || this.queued.has(chunk) || this.running.has(chunk)) return;
    this.queued.add(chunk);
    this.queue.push(chunk);
    this.pump();
  }

  /** A fault needs `chunk` and fetches it itself, now: it leaves the queue. */
  demand(chunk: number): void {
    this.queued.delete(chunk);
  }

  close(): void {
    this.closed = true;
  }

  private pump(): void {
    while (!this.closed && this.running.size < this.concurrency && this.head < this.queue.length) {
      const chunk = this.queue[this.head++];
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      // Taken out by a fault's fetch meanwhile: that one tells the prefetch worker.
      if (!this.queued.delete(chunk)) continue;
      if (this.seams.cached(chunk)) {
        this.seams.landed(chunk, null);
        continue;
      }
      this.running.add(chunk);
      this.started++;
      void this.seams.fetch(chunk).then((error) => {
        this.running.delete(chunk);
        if (!this.closed) this.seams.landed(chunk, error);
        this.pump();
      });
    }
  }
}
