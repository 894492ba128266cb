// The fault worker's side of a VM record (vm-record.ts): every REMOVE it
// reads is copied into the record's removed bitmaps right after plan() has
// applied it to the core's, before any ioctl of the batch is issued. The
// only removes a successor can miss are those read in the microseconds
// between read(2) and this copy, by a handler that died right then.
import type { Core } from '../core/wasm-core.js';

/** Where a VM record's bitmaps are mapped: the worker makes its own view of them. */
export interface MirrorTarget {
  addr: number;
  length: number;
  /** Byte offset of each region's bitmap. */
  at: number[];
}

export class RemovedMirror {
  private readonly file: Uint32Array;
  /** Each region's bitmap in `file`, in words. */
  private readonly at: number[];

  constructor(private readonly core: Core, private readonly table: number, target: MirrorTarget, view: (addr: number, length: number) => ArrayBuffer) {
    this.file = new Uint32Array(view(target.addr, target.length));
    this.at = target.at.map((b) => b >> 2);
  }

  /**
   * Copies the removes among messages [first, end) at `msgs`: for each, the
   * core's bitmap words covering its pages are ORed into the record's (bits
   * are only ever set, in both).
   */
  record(i32: Int32Array, dv: DataView, msgs: number, first: number, end: number): void {
    const L = this.core.layout;
    for (let i = first; i < end; i++) {
      const m = msgs + i * L.MSG_SIZE;
      if (dv.getUint8(m + L.MSG_EVENT) !== L.EVENT_REMOVE) continue;
      this.copyRange(i32, dv, dv.getBigUint64(m + L.MSG_RM_START, true), dv.getBigUint64(m + L.MSG_RM_END, true));
    }
  }

  private copyRange(i32: Int32Array, dv: DataView, start: bigint, end: bigint): void {
    const L = this.core.layout;
    const n = dv.getUint32(this.table + L.VM_NREGIONS, true);
    for (let i = 0; i < n; i++) {
      const e = this.table + L.VM_REGIONS + i * L.REGION_STRIDE;
      const base = dv.getBigUint64(e + L.REGION_BASE, true);
      const rend = dv.getBigUint64(e + L.REGION_END, true);
      const s = start > base ? start : base;
      const t = end < rend ? end : rend;
      if (s >= t) continue;
      const shift = BigInt(dv.getUint32(e + L.REGION_PAGE_SHIFT, true));
      // Pages as page_state.ts markRemoved rounds them (outwards), then their words.
      const firstWord = Number(((s - base) >> shift) >> 5n);
      const lastWord = Number((((t - base) + (1n << shift) - 1n) >> shift) - 1n) >> 5;
      const core = dv.getUint32(e + L.REGION_REMOVED, true) >> 2;
      const file = this.at[i];
      for (let w = firstWord; w <= lastWord; w++) this.file[file + w] |= i32[core + w];
    }
  }
}
