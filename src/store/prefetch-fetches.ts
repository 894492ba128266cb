// The chunks prefetching needs from a bucket (--prefetch with a store in a
// bucket), fetched ahead of the guest into the disk cache: in the order they
// were asked for (the order the guest will need them), at most `concurrency`
// at once. A fault's own chunk is fetched at once, outside this queue, and
// taken out of it (demand first); a chunk asked for twice is fetched once.
// Queued chunks stored right after the one whose turn it is (in one pack)
// come with it in one GET, whatever their place in the queue; but the first
// `alone` GETs (the prefetch's: `concurrency`) go alone: what the guest needs
// first comes soonest (a 2 MiB GET lands later than a chunk's), measured in
// docs/benchmarks.md ("the first GETs alone"). Reading ahead on demand uses
// one too (SnapfaultServer.readAhead), runs from its first GET on.
// A chunk is named by its snapshot's descriptor and its number there (a name
// put again while served has a second snapshot).
export interface PrefetchFetchSeams {
  /** Fetches the chunks (one, or a run `extend` made) into the disk cache: per chunk, null once there, else one line why not. */
  fetch(snap: number, run: number[]): Array<Promise<string | null>>;
  /** The chunk that may be fetched in one GET with `run`, or -1. */
  extend(snap: number, run: number[]): number;
  /** The chunk is in the disk cache already. */
  cached(snap: number, chunk: number): boolean;
  /** The chunk landed (error null) or could not be fetched: tell the prefetch worker. */
  landed(snap: number, chunk: number, error: string | null): void;
}

/** One key for a snapshot's chunk: descriptors lie below 2^31 (shared memory), chunk numbers below 2^22. */
const keyOf = (snap: number, chunk: number): number => snap * 2 ** 22 + chunk;

export class PrefetchFetches {
  private readonly queue: Array<{ snap: number; chunk: number }> = [];
  private head = 0;
  private readonly queued = new Set<number>();
  private readonly running = new Set<number>();
  /** GETs in flight (a run of chunks is one). */
  private gets = 0;
  private closed = false;
  /** GETs started by prefetching (a chunk found cached by then is not counted). */
  started = 0;

  /** `alone`: how many GETs go alone before runs are made (the first ones carry what is needed first). */
  constructor(private readonly concurrency: number, private readonly seams: PrefetchFetchSeams, private readonly alone = concurrency) {}

  /** Fetch chunk `chunk` of snapshot `snap` when its turn comes (after the chunks asked for before it). */
  want(snap: number, chunk: number): void {
    this.enqueue(snap, chunk);
    this.pump();
  }

  /** Fetch these, in this order: all queued before the first GET starts, so that even the first GETs take their queued neighbours. */
  wantAll(snap: number, chunks: number[]): void {
    for (const chunk of chunks) this.enqueue(snap, chunk);
    this.pump();
  }

  private enqueue(snap: number, chunk: number): void {
    const key = keyOf(snap, chunk);
    if (this.closed || this.queued.has(key) || this.running.has(key)) return;
    this.queued.add(key);
    this.queue.push({ snap, chunk });
  }

  /** A fault needs the chunk and fetches it itself, now: it leaves the queue. */
  demand(snap: number, chunk: number): void {
    this.queued.delete(keyOf(snap, chunk));
  }

  close(): void {
    this.closed = true;
  }

  private pump(): void {
    while (!this.closed && this.gets < this.concurrency && this.head < this.queue.length) {
      const { snap, chunk } = this.queue[this.head++];
      const key = keyOf(snap, chunk);
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      // Taken out by a fault's fetch meanwhile: that one tells the prefetch worker.
      if (!this.queued.delete(key)) continue;
      if (this.seams.cached(snap, chunk)) {
        this.seams.landed(snap, chunk, null);
        continue;
      }
      const run = [chunk];
      for (let next = this.started < this.alone ? -1 : this.seams.extend(snap, run); next >= 0; next = this.seams.extend(snap, run)) {
        if (!this.queued.delete(keyOf(snap, next))) break; // not wanted, or a fault's now
        run.push(next);
      }
      for (const c of run) this.running.add(keyOf(snap, c));
      this.gets++;
      this.started++;
      let left = run.length;
      this.seams.fetch(snap, run).forEach((p, i) => void p.then((error) => {
        this.running.delete(keyOf(snap, run[i]));
        if (!this.closed) this.seams.landed(snap, run[i], error);
        if (--left > 0) return;
        this.gets--;
        this.pump();
      }));
    }
  }
}
