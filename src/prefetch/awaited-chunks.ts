// A VM's prefetch ranges put aside because their chunk is not in the disk
// cache yet (a snapshot served from a bucket): kept by chunk, and given back,
// oldest first, once the main thread says the chunk has landed. Prefetching
// goes on with the ranges after them meanwhile, so one slow chunk holds back
// only its own pages.

export class AwaitedChunks {
  private readonly byChunk = new Map<number, number[]>();
  /** Ranges (first, count pairs) whose chunk has landed, to be installed before anything newer. */
  private readonly landed: number[] = [];
  private head = 0;

  /** Puts [first, first + count) aside until `chunk` lands; true when it is the first range waiting for it (ask for it then). */
  defer(chunk: number, first: number, count: number): boolean {
    const list = this.byChunk.get(chunk);
    if (list) {
      list.push(first, count);
      return false;
    }
    this.byChunk.set(chunk, [first, count]);
    return true;
  }

  /** The chunk is in the disk cache (`ok`), or could not be fetched: its ranges come back, or are dropped (its faults end the VM). */
  settle(chunk: number, ok: boolean): void {
    const list = this.byChunk.get(chunk);
    if (!list) return;
    this.byChunk.delete(chunk);
    if (ok) this.landed.push(...list);
  }

  /** Takes the oldest landed range into `into`; false when there is none. */
  pop(into: { first: number; count: number }): boolean {
    if (this.head >= this.landed.length) return false;
    into.first = this.landed[this.head++];
    into.count = this.landed[this.head++];
    if (this.head === this.landed.length) {
      this.landed.length = 0;
      this.head = 0;
    }
    return true;
  }

  get ready(): boolean {
    return this.head < this.landed.length;
  }

  /** Chunks some range waits for. */
  get waiting(): number {
    return this.byChunk.size;
  }
}
