// A VM's trace when it ends: the fault worker's records, the prefetch
// worker's, and the pages the guest had removed, read from the VM table.
import type { Core } from '../core/wasm-core.js';
import type { GuestRegion } from '../handshake/regions.js';
import { RECORD, RECORD_WORDS, TRACE_FLAG_PREFETCHED, recordsByTime, setRecord, type Trace } from './trace-file.js';
import { usSince } from './clock.js';

export function traceOfVm(
  core: Core, table: number, regions: readonly GuestRegion[], snapshotBytes: bigint, t0: number,
  faults: Uint32Array | null, prefetched: Uint32Array | null, prefetching: boolean, snapshotKey: Buffer | null = null,
): Trace {
  const endUs = usSince(t0);
  const removed = removedRuns(core, table, regions);
  const parts = [faults ?? new Uint32Array(0), prefetched ?? new Uint32Array(0)];
  const records = new Uint32Array(parts[0].length + parts[1].length + removed.length / 2 * RECORD_WORDS);
  records.set(parts[0]);
  records.set(parts[1], parts[0].length);
  let o = parts[0].length + parts[1].length;
  for (let i = 0; i < removed.length; i += 2, o += RECORD_WORDS) setRecord(records, o, removed[i], removed[i + 1], endUs, RECORD.REMOVED);
  return { snapshotBytes, startedMs: t0, flags: prefetching ? TRACE_FLAG_PREFETCHED : 0, snapshotKey, records: sortByTime(records) };
}

/** Runs of removed pages (first snapshot page, pages), from each region's removed bitmap. */
function removedRuns(core: Core, table: number, regions: readonly GuestRegion[]): number[] {
  const L = core.layout;
  const dv = new DataView(core.memory.buffer);
  const out: number[] = [];
  regions.forEach((r, i) => {
    const e = table + L.VM_REGIONS + i * L.REGION_STRIDE;
    const bitmap = dv.getUint32(e + L.REGION_REMOVED, true);
    const unit = r.pageSize / 4096;
    const units = Number(r.size / BigInt(r.pageSize));
    const firstPage = Number(r.offset / 4096n);
    let run = -1;
    for (let u = 0; u <= units; u++) {
      const set = u < units && (dv.getUint32(bitmap + (u >> 5) * 4, true) & (1 << (u & 31))) !== 0;
      if (set && run < 0) run = u;
      if (!set && run >= 0) {
        out.push(firstPage + run * unit, (u - run) * unit);
        run = -1;
      }
    }
  });
  return out;
}

function sortByTime(records: Uint32Array): Uint32Array {
  const out = new Uint32Array(records.length);
  recordsByTime(records).forEach((from, i) => out.set(records.subarray(from, from + RECORD_WORDS), i * RECORD_WORDS));
  return out;
}
