// A bounded FIFO of page ranges (first page, page count) in a thread's own
// memory: what a policy asked for and the prefetch worker has not done yet.

export interface RangeSink {
  /** Queues [first, first + count); false when full (the range is dropped). */
  push(first: number, count: number): boolean;
}

export class RangeQueue implements RangeSink {
  private readonly buf: Uint32Array;
  private head = 0;
  private tail = 0;

  constructor(private readonly capacity: number) {
    this.buf = new Uint32Array(capacity * 2);
  }

  push(first: number, count: number): boolean {
    if (count <= 0) return true;
    if (this.head - this.tail >= this.capacity) return false;
    const o = (this.head++ % this.capacity) * 2;
    this.buf[o] = first;
    this.buf[o + 1] = count;
    return true;
  }

  /** Takes the oldest range into `into` ([first, count]); false when empty. */
  pop(into: { first: number; count: number }): boolean {
    if (this.tail === this.head) return false;
    const o = (this.tail++ % this.capacity) * 2;
    into.first = this.buf[o];
    into.count = this.buf[o + 1];
    return true;
  }

  get length(): number {
    return this.head - this.tail;
  }
}
