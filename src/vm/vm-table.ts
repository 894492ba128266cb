// Writes a VM's page table into shared memory for the core: its regions,
// where their bytes are, and a removed-pages bitmap per region.
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';
import type { GuestRegion } from '../handshake/regions.js';

export interface SnapshotSource {
  readonly size: bigint;
  readonly srcBase: number;
  readonly zeroBitmap: number;
}

export interface VmTable {
  /** Offset of the table in shared memory. */
  readonly table: number;
  /** Every block the table owns (the table itself included), to free when the VM ends. */
  readonly blocks: readonly number[];
}

export interface CompressedSource {
  /** Offset of the compressed snapshot's descriptor in shared memory. */
  descriptor: number;
  /** Install a decoded chunk's other missing pages with the faulting one. */
  fillAround: boolean;
}

export interface VmTableOptions {
  compressed: CompressedSource | null;
  /** A prefetch worker copies into this VM too (the fault worker reads through the fence). */
  prefetch: boolean;
}

export function writeVmTable(
  core: Core, arena: Arena, regions: readonly GuestRegion[], src: SnapshotSource, zeroHugePage: number,
  { compressed, prefetch }: VmTableOptions = { compressed: null, prefetch: false },
): VmTable {
  const L = core.layout;
  const blocks: number[] = [];
  try {
    const table = arena.alloc(L.VM_TABLE_SIZE);
    blocks.push(table);
    const dv = new DataView(core.memory.buffer);
    dv.setUint32(table + L.VM_NREGIONS, regions.length, true);
    dv.setBigUint64(table + L.VM_SRC_BASE, BigInt(src.srcBase), true);
    dv.setBigUint64(table + L.VM_SRC_SIZE, src.size, true);
    dv.setBigUint64(table + L.VM_ZERO_SRC, BigInt(zeroHugePage), true);
    dv.setUint32(table + L.VM_ZERO_BITMAP, src.zeroBitmap, true);
    if (compressed) dv.setUint32(table + L.VM_SNAP, compressed.descriptor, true);
    const flags = (compressed?.fillAround ? L.FLAG_FILL_AROUND : 0) | (prefetch ? L.FLAG_PREFETCH : 0);
    dv.setUint32(table + L.VM_FLAGS, flags, true);
    regions.forEach((r, i) => {
      const e = table + L.VM_REGIONS + i * L.REGION_STRIDE;
      const shift = Math.log2(r.pageSize);
      const pages = Number(r.size >> BigInt(shift));
      const removed = arena.alloc(Math.ceil(pages / 32) * 4);
      blocks.push(removed);
      // Pages installed (by a fault, fill-around or prefetch), so that none is copied twice.
      const present = arena.alloc(Math.ceil(pages / 32) * 4);
      blocks.push(present);
      const view = new DataView(core.memory.buffer); // alloc may have grown the memory
      view.setBigUint64(e + L.REGION_BASE, r.base, true);
      view.setBigUint64(e + L.REGION_SIZE, r.size, true);
      view.setBigUint64(e + L.REGION_END, r.base + r.size, true);
      view.setBigUint64(e + L.REGION_FILE_OFFSET, r.offset, true);
      view.setUint32(e + L.REGION_PAGE_SHIFT, shift, true);
      view.setUint32(e + L.REGION_REMOVED, removed, true);
      view.setUint32(e + L.REGION_PRESENT, present, true);
    });
    return { table, blocks };
  } catch (e) {
    for (const b of blocks) arena.freeBlock(b);
    throw e;
  }
}

/** The fault counters the core keeps in a VM table (one writer: the VM's fault worker). */
export interface FaultCounts {
  copies: number;
  zeropages: number;
  removedZero: number;
  bytes: number;
  removeEvents: number;
  otherEvents: number;
  chunkHits: number;
  chunkMisses: number;
  filledAround: number;
  /** Faults on a page installed meanwhile (by prefetch or fill-around): only woken. */
  late: number;
  /** Pages the prefetch worker copied, and zero pages it mapped, ahead of the guest. */
  prefetched: number;
  prefetchedZero: number;
  prefetchBytes: number;
}

export function readFaultCounts(core: Core, table: number): FaultCounts {
  const L = core.layout;
  const dv = new DataView(core.memory.buffer);
  const u64 = (off: number): number => Number(dv.getBigUint64(table + off, true));
  return {
    copies: u64(L.VM_STAT_COPY),
    zeropages: u64(L.VM_STAT_ZERO),
    removedZero: u64(L.VM_STAT_REMOVED_ZERO),
    bytes: u64(L.VM_STAT_BYTES),
    removeEvents: u64(L.VM_STAT_REMOVE_EVENTS),
    otherEvents: u64(L.VM_STAT_OTHER_EVENTS),
    chunkHits: u64(L.VM_STAT_CHUNK_HITS),
    chunkMisses: u64(L.VM_STAT_CHUNK_MISSES),
    filledAround: u64(L.VM_STAT_FILLED_AROUND),
    late: u64(L.VM_STAT_LATE),
    prefetched: u64(L.VM_STAT_PREFETCHED),
    prefetchedZero: u64(L.VM_STAT_PREFETCH_ZERO),
    prefetchBytes: u64(L.VM_STAT_PREFETCH_BYTES),
  };
}
