// What the server does with VM records: write one at the handshake, and for a
// VM taken over, load its removed pages into the core and wake every thread
// the dead handler left waiting.
import { fstatSync } from 'node:fs';
import { wake } from '../../native/uffd.js';
import { processStartTime } from './firecracker-process.js';
import { VmRecord } from './vm-record.js';
import type { StateDir } from './state-dir.js';
import type { MirrorTarget } from './removed-mirror.js';
import type { Core } from '../core/wasm-core.js';
import type { GuestRegion } from '../handshake/regions.js';
import { HandshakeError } from '../errors.js';

/** Records a VM whose handshake was just accepted, before any of its faults is served. */
export function recordVm(state: StateDir, pid: number, uffd: number, regions: readonly GuestRegion[], snapshotPath: string, snapshotIdentity: string, handshakeMs: number): VmRecord {
  const startTime = processStartTime(pid);
  if (startTime === null) throw new HandshakeError('peer', `peer pid ${pid} has already exited`);
  const st = fstatSync(uffd, { bigint: true });
  return VmRecord.create(state.path, {
    pid, startTime, uffdDev: Number(st.dev), uffdIno: st.ino, handshakeMs, snapshotPath, snapshotIdentity, regions,
  });
}

/** Where the fault worker mirrors the VM's removes. */
export function mirrorTarget(record: VmRecord): MirrorTarget {
  return { addr: record.bitmaps.addr, length: record.bitmaps.length, at: [...record.bitmapAt] };
}

/** Copies the record's removed pages into the VM table's removed bitmaps; returns how many pages. */
export function loadRemoved(core: Core, table: number, record: VmRecord): number {
  const L = core.layout;
  const dv = new DataView(core.memory.buffer);
  let pages = 0;
  record.identity.regions.forEach((_, i) => {
    const words = record.words(i);
    const at = dv.getUint32(table + L.VM_REGIONS + i * L.REGION_STRIDE + L.REGION_REMOVED, true);
    new Uint32Array(core.memory.buffer, at, words.length).set(words);
    for (const w of words) pages += popcount(w);
  });
  return pages;
}

function popcount(w: number): number {
  let v = w - ((w >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/**
 * One UFFDIO_WAKE over each whole region: the faults whose messages the dead
 * handler had read are waiting with nothing queued; woken, each thread
 * retries its access and faults again, and this handler reads it. Pages
 * already present are not touched. Returns the first error (-errno), or 0.
 */
export function wakeAll(uffd: number, regions: readonly GuestRegion[]): number {
  let first = 0;
  for (const r of regions) {
    const rc = wake(uffd, Number(r.base), Number(r.size));
    if (rc < 0 && first === 0) first = rc;
  }
  return first;
}
