// Faults waiting for a chunk on its way from a bucket (a store served through
// a disk cache). A fault whose chunk is not cached is taken out of its batch
// and kept here, keyed by chunk, while the worker serves every other fault;
// the main thread fetches the chunk and says when it has landed, and the
// fault's message goes back into its VM's queue to be planned again. One
// fetch is asked for per chunk, however many faults wait for it.

export interface ParkedFault {
  /** The VM's slot in the fault loop and its id (a slot is reused once its VM ends). */
  slot: number;
  vmId: number;
  /** The uffd_msg as read, to be queued again. */
  msg: Uint8Array;
  /** The batch it was taken from and its place there: an EAGAIN later in that batch keeps it among the faults it keeps. */
  batch: number;
  index: number;
  /** When it was first parked (ms, the fault loop's clock): how long the VM waited on the bucket. */
  since: number;
  /** Its snapshot page: a trace records that this page came from the bucket, and the wait. */
  page: number;
}

export class ParkedFaults {
  private readonly byChunk = new Map<string, ParkedFault[]>();

  static key(snap: number, chunk: number): string {
    return `${snap}:${chunk}`;
  }

  get size(): number {
    return this.byChunk.size;
  }

  /** Keeps a fault until its chunk lands; true when it is the first for that chunk (ask for the fetch then). */
  park(key: string, f: ParkedFault): boolean {
    const list = this.byChunk.get(key);
    if (list) {
      list.push(f);
      return false;
    }
    this.byChunk.set(key, [f]);
    return true;
  }

  /** After EAGAIN at message `from` of `batch`: faults from there on stay in the VM's queue, so they are not kept here too. */
  dropKept(slot: number, batch: number, from: number): void {
    for (const [key, list] of this.byChunk) {
      const left = list.filter((f) => !(f.slot === slot && f.batch === batch && f.index >= from));
      if (left.length === list.length) continue;
      if (left.length > 0) this.byChunk.set(key, left);
      else this.byChunk.delete(key); // asked for already: what lands finds nobody waiting
    }
  }

  /** The faults waiting for this chunk, no longer kept. */
  take(key: string): ParkedFault[] {
    const list = this.byChunk.get(key) ?? [];
    this.byChunk.delete(key);
    return list;
  }
}
