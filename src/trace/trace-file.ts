// The trace file (`--record`): what a restore faulted on, what was prefetched
// and what the guest removed, in snapshot pages so it means the same on every
// restore of the snapshot. Layout in docs/prefetch.md.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { TraceError } from '../errors.js';

export const TRACE_MAGIC = 'SFTRACE1';
export const TRACE_VERSION = 1;
export const HEADER_BYTES = 64;
export const RECORD_WORDS = 4;
const RECORD_BYTES = RECORD_WORDS * 4;

/** What a record says happened to its pages. */
export const RECORD = {
  /** The guest faulted; the page was copied from the snapshot. */
  FAULT_COPY: 1,
  /** The guest faulted; a zero page was mapped (zero in the snapshot, or removed). */
  FAULT_ZERO: 2,
  /** The guest faulted on a page installed meanwhile (prefetch, fill-around): woken only. */
  FAULT_LATE: 3,
  /** Copied from the snapshot by the prefetch worker, ahead of the guest. */
  PREFETCH_COPY: 4,
  /** A zero page mapped by the prefetch worker. */
  PREFETCH_ZERO: 5,
  /** Removed by the guest (balloon, hot-unplug) when the VM ended. */
  REMOVED: 6,
} as const;
export type RecordKind = (typeof RECORD)[keyof typeof RECORD];

/** The guest touched these pages: the kinds a working set is made of. */
export const TOUCH_KINDS: ReadonlySet<number> = new Set([RECORD.FAULT_COPY, RECORD.FAULT_ZERO, RECORD.FAULT_LATE]);
export const PREFETCH_KINDS: ReadonlySet<number> = new Set([RECORD.PREFETCH_COPY, RECORD.PREFETCH_ZERO]);

export const TRACE_FLAG_PREFETCHED = 1; // a prefetch policy ran: pages it installed in time never faulted
// (Recording turns compressed fill-around off, so no flag is needed for it.)

/** True when pages were installed ahead of the guest: then the trace's faults are not its whole working set. */
export function recordedWhilePrefetching(t: { flags: number }): boolean {
  return (t.flags & TRACE_FLAG_PREFETCHED) !== 0;
}

export interface Trace {
  /** Bytes of the snapshot's memory (the original file size for a compressed snapshot). */
  snapshotBytes: bigint;
  /** Unix time of the handshake, ms. */
  startedMs: number;
  flags: number;
  /** RECORD_WORDS u32 per record: page, pages, µs since the handshake, kind. */
  records: Uint32Array;
}

export function recordCount(t: Trace): number {
  return t.records.length / RECORD_WORDS;
}

/** Offsets of the records in time order (records of different threads interleave; ties keep file order). */
export function recordsByTime(records: Uint32Array): number[] {
  const idx = Array.from({ length: records.length / RECORD_WORDS }, (_, i) => i * RECORD_WORDS);
  return idx.sort((a, b) => records[a + 2] - records[b + 2] || a - b);
}

export function encodeTrace(t: Trace): Buffer {
  const n = recordCount(t);
  const b = Buffer.alloc(HEADER_BYTES + n * RECORD_BYTES);
  b.write(TRACE_MAGIC, 0, 'latin1');
  b.writeUInt32LE(TRACE_VERSION, 8);
  b.writeUInt32LE(RECORD_BYTES, 12);
  b.writeBigUInt64LE(t.snapshotBytes, 16);
  b.writeBigUInt64LE(BigInt(n), 24);
  b.writeBigUInt64LE(BigInt(Math.round(t.startedMs)), 32);
  b.writeUInt32LE(t.flags, 40);
  const view = new Uint32Array(b.buffer, b.byteOffset + HEADER_BYTES, n * RECORD_WORDS);
  view.set(t.records);
  // Little-endian hosts only (x86_64, aarch64): the records are written as they lie in memory.
  return b;
}

/** Writes atomically: a reader never sees half a trace. */
export function writeTrace(path: string, t: Trace): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, encodeTrace(t));
    renameSync(tmp, path);
  } catch (e) {
    throw new TraceError(`cannot write the trace ${path}: ${(e as Error).message}`);
  }
}

export function decodeTrace(b: Buffer, name: string): Trace {
  if (b.length < HEADER_BYTES || b.toString('latin1', 0, 8) !== TRACE_MAGIC) {
    throw new TraceError(`${name} is not a snapfault trace (no ${TRACE_MAGIC} header); record one with --record`);
  }
  const version = b.readUInt32LE(8);
  if (version !== TRACE_VERSION) throw new TraceError(`${name} is a version ${version} trace; this snapfault reads version ${TRACE_VERSION}`);
  if (b.readUInt32LE(12) !== RECORD_BYTES) throw new TraceError(`${name}: unexpected record size ${b.readUInt32LE(12)}`);
  const n = b.readBigUInt64LE(24);
  if (BigInt(b.length - HEADER_BYTES) !== n * BigInt(RECORD_BYTES)) {
    throw new TraceError(`${name} is truncated or has trailing bytes: the header says ${n} records, the file holds ${b.length - HEADER_BYTES} bytes of them`);
  }
  const snapshotBytes = b.readBigUInt64LE(16);
  const records = new Uint32Array(Number(n) * RECORD_WORDS);
  new Uint8Array(records.buffer).set(b.subarray(HEADER_BYTES));
  const pages = snapshotBytes / 4096n;
  for (let o = 0; o < records.length; o += RECORD_WORDS) {
    const kind = records[o + 3];
    if (kind < RECORD.FAULT_COPY || kind > RECORD.REMOVED || records[o + 1] === 0 || BigInt(records[o]) + BigInt(records[o + 1]) > pages) {
      throw new TraceError(`${name}: record ${o / RECORD_WORDS} is corrupt (page ${records[o]}, ${records[o + 1]} pages, kind ${kind}); record the trace again`);
    }
  }
  return { snapshotBytes, startedMs: Number(b.readBigUInt64LE(32)), flags: b.readUInt32LE(40), records };
}

export function readTrace(path: string): Trace {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TraceError(code === 'ENOENT' ? `trace ${path} does not exist; record one with --record ${path}` : `cannot read the trace ${path}: ${(e as Error).message}`);
  }
  return decodeTrace(b, path);
}
