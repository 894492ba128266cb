// The trace file (`--record`): what a restore faulted on, what was prefetched
// and what the guest removed, in snapshot pages so it means the same on every
// restore of the snapshot. Layout in docs/prefetch.md.
import { readFileSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { TraceError } from '../errors.js';
import { writeFileAtomic, type OutputKind } from '../output-file.js';

export const TRACE_MAGIC = 'SFTRACE1';
/**
 * Version written. Version 1 records held the time as u32 µs, which wraps
 * after 71.6 minutes, while a VM may run for days: version 2 widens it to u64.
 * Version 1 files are still read, their times as they are.
 */
export const TRACE_VERSION = 2;
export const HEADER_BYTES = 64;
/** Where the snapshot's key lies in the header (zero: none). */
const SNAPSHOT_KEY_OFFSET = 44;
export const SNAPSHOT_KEY_BYTES = 16;

/** A snapshot's key as traces hold it: the first 16 bytes of a hex content identity. */
export function snapshotKeyOf(contentIdentity: string | null): Buffer | null {
  return contentIdentity ? Buffer.from(contentIdentity.slice(0, SNAPSHOT_KEY_BYTES * 2), 'hex') : null;
}
/** A record in memory, as in a version 2 file: page, pages, time (u64 µs: low word, high word), kind, source (see SOURCE). */
export const RECORD_WORDS = 6;
export const FIELD = { PAGE: 0, PAGES: 1, TIME_LO: 2, TIME_HI: 3, KIND: 4, SOURCE: 5 } as const;
const RECORD_BYTES = RECORD_WORDS * 4;
const V1_RECORD_BYTES = 16; // page, pages, time (u32 µs), kind
/** Times from 2^53 µs (285 years) on would not be exact as numbers: no recording makes them, so such a record is corrupt. */
const MAX_TIME_HI = 2 ** 21;

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

/**
 * Where a copied page's bytes were when it was installed: the low byte of a
 * record's source word (a word that was zero before sources were recorded, so
 * older version 2 traces read as NONE). Zero pages and removals have none.
 */
export const SOURCE = {
  /** Not recorded: a zero page, a removal, a fault found installed, or a trace from before sources. */
  NONE: 0,
  /** A plain memory file. */
  FILE: 1,
  /** The decoded-chunk cache in memory: the chunk was there already. */
  MEMORY: 2,
  /** A chunk read and decoded from a local file (a compressed snapshot, a store in a folder). */
  LOCAL: 3,
  /** A chunk read and decoded from the disk cache of a store in a bucket. */
  DISK: 4,
  /** A chunk fetched from the bucket for it: the fault waited for the GET (the wait is in the source word), or the prefetch put these pages aside until it landed. */
  BUCKET: 5,
} as const;
export type SourceTier = (typeof SOURCE)[keyof typeof SOURCE];
export const SOURCE_NAMES: readonly string[] = ['none', 'file', 'memory', 'local', 'disk', 'bucket'];
/** A fault's wait for its chunk's GET, in ms, is kept in the source word's upper 24 bits (capped: 4.6 hours). */
const WAIT_SHIFT = 8;
const MAX_WAIT_MS = 2 ** 24 - 1;

/** The source word of a record whose bytes came from `tier`, after `waitMs` waiting for a GET (faults served from the bucket). */
export function sourceWord(tier: SourceTier, waitMs = 0): number {
  return (tier | (Math.min(MAX_WAIT_MS, Math.max(0, Math.round(waitMs))) << WAIT_SHIFT)) >>> 0;
}

export function recordSource(records: Uint32Array, o: number): SourceTier {
  return (records[o + FIELD.SOURCE] & 0xff) as SourceTier;
}

/** ms the fault of the record at `o` waited for its chunk's GET (0: it did not wait for one). */
export function recordFetchWaitMs(records: Uint32Array, o: number): number {
  return records[o + FIELD.SOURCE] >>> WAIT_SHIFT;
}

/** The guest touched these pages: the kinds a working set is made of. */
export const TOUCH_KINDS: ReadonlySet<number> = new Set([RECORD.FAULT_COPY, RECORD.FAULT_ZERO, RECORD.FAULT_LATE]);
export const PREFETCH_KINDS: ReadonlySet<number> = new Set([RECORD.PREFETCH_COPY, RECORD.PREFETCH_ZERO]);

export const TRACE_FLAG_PREFETCHED = 1; // a prefetch policy ran: pages it installed in time never faulted
// (Recording turns compressed fill-around off, so no flag is needed for it.)
/**
 * Written by `trace merge`: the records are a working set in merged order,
 * one kind-1 record per page, every time 0. A merge has no times to keep (it
 * averages positions, not clocks), and showing ranks as times misled. A flag
 * bit, not a new version: readers of versions 1 and 2 read the flags word as it is.
 */
export const TRACE_FLAG_MERGED = 2;

/** True when pages were installed ahead of the guest: then the trace's faults are not its whole working set. */
export function recordedWhilePrefetching(t: { flags: number }): boolean {
  return (t.flags & TRACE_FLAG_PREFETCHED) !== 0;
}

/** True for a `trace merge` output: an order of pages, with no times and no fault kinds. */
export function isMerged(t: { flags: number }): boolean {
  return (t.flags & TRACE_FLAG_MERGED) !== 0;
}

/** The warning every reader of a prefetch-recorded trace gives, followed by what it undercounts there. */
export function prefetchRecordedWarning(path: string): string {
  return `trace ${path} was recorded while pages were installed ahead of the guest, so it holds only the pages that still faulted; record with --prefetch none for the whole working set`;
}

export interface Trace {
  /** Bytes of the snapshot's memory (the original file size for a compressed snapshot). */
  snapshotBytes: bigint;
  /** Unix time of the handshake, ms; 0 for a merged trace (no one handshake). */
  startedMs: number;
  flags: number;
  /**
   * The first 16 bytes of the served snapshot's content identity (a store's
   * snapshot: its manifest's SHA-256), or null when it has none (a file).
   */
  snapshotKey?: Buffer | null;
  /** RECORD_WORDS u32 per record (see FIELD): page, pages, µs since the handshake, kind. */
  records: Uint32Array;
}

export function recordCount(t: Trace): number {
  return t.records.length / RECORD_WORDS;
}

/** The time of the record at word offset `o`: µs since the handshake. */
export function recordTimeUs(records: Uint32Array, o: number): number {
  return records[o + FIELD.TIME_HI] * 2 ** 32 + records[o + FIELD.TIME_LO];
}

/** Writes a record at word offset `o`; `tUs` is a whole number of µs from 0 to 2^53; `source` a sourceWord. */
export function setRecord(records: Uint32Array, o: number, page: number, pages: number, tUs: number, kind: number, source = 0): void {
  records[o + FIELD.PAGE] = page;
  records[o + FIELD.PAGES] = pages;
  records[o + FIELD.TIME_LO] = tUs % 2 ** 32;
  records[o + FIELD.TIME_HI] = Math.floor(tUs / 2 ** 32);
  records[o + FIELD.KIND] = kind;
  records[o + FIELD.SOURCE] = source;
}

/** Offsets of the records in time order (records of different threads interleave; ties keep file order). */
export function recordsByTime(records: Uint32Array): number[] {
  const idx = Array.from({ length: records.length / RECORD_WORDS }, (_, i) => i * RECORD_WORDS);
  return idx.sort((a, b) => recordTimeUs(records, a) - recordTimeUs(records, b) || a - b);
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
  if (t.snapshotKey) t.snapshotKey.copy(b, SNAPSHOT_KEY_OFFSET, 0, SNAPSHOT_KEY_BYTES);
  const view = new Uint32Array(b.buffer, b.byteOffset + HEADER_BYTES, n * RECORD_WORDS);
  view.set(t.records);
  // Little-endian hosts only (x86_64, aarch64): the records are written as they lie in memory.
  return b;
}

/** Writes atomically: a reader never sees half a trace. */
export function writeTrace(path: string, t: Trace, option = '-o'): void {
  writeFileAtomic(path, encodeTrace(t), option);
}

export function decodeTrace(b: Buffer, name: string): Trace {
  if (b.length < HEADER_BYTES || !isTrace(b)) throw new TraceError(notATrace(name));
  const version = b.readUInt32LE(8);
  if (version !== TRACE_VERSION && version !== 1) throw new TraceError(`${name} is a version ${version} trace; this snapfault reads versions 1 and ${TRACE_VERSION}`);
  const recordBytes = version === 1 ? V1_RECORD_BYTES : RECORD_BYTES;
  if (b.readUInt32LE(12) !== recordBytes) throw new TraceError(`${name}: unexpected record size ${b.readUInt32LE(12)}`);
  const n = b.readBigUInt64LE(24);
  if (BigInt(b.length - HEADER_BYTES) !== n * BigInt(recordBytes)) {
    throw new TraceError(`${name} is truncated or has trailing bytes: the header says ${n} records, the file holds ${b.length - HEADER_BYTES} bytes of them`);
  }
  const snapshotBytes = b.readBigUInt64LE(16);
  const records = new Uint32Array(Number(n) * RECORD_WORDS);
  if (version === 1) {
    // Into the version 2 layout, times as they are (they may have wrapped).
    for (let i = 0, at = HEADER_BYTES; i < Number(n); i++, at += V1_RECORD_BYTES) {
      setRecord(records, i * RECORD_WORDS, b.readUInt32LE(at), b.readUInt32LE(at + 4), b.readUInt32LE(at + 8), b.readUInt32LE(at + 12));
    }
  } else {
    new Uint8Array(records.buffer).set(b.subarray(HEADER_BYTES));
  }
  const pages = snapshotBytes / 4096n;
  for (let o = 0; o < records.length; o += RECORD_WORDS) {
    const kind = records[o + FIELD.KIND];
    const first = records[o + FIELD.PAGE];
    const count = records[o + FIELD.PAGES];
    if (kind < RECORD.FAULT_COPY || kind > RECORD.REMOVED || count === 0 || BigInt(first) + BigInt(count) > pages || records[o + FIELD.TIME_HI] >= MAX_TIME_HI
      || recordSource(records, o) > SOURCE.BUCKET) {
      throw new TraceError(`${name}: record ${o / RECORD_WORDS} is corrupt (page ${first}, ${count} pages, kind ${kind}, at ${recordTimeUs(records, o)} µs, source ${records[o + FIELD.SOURCE] & 0xff}); record the trace again`);
    }
  }
  const key = Buffer.from(b.subarray(SNAPSHOT_KEY_OFFSET, SNAPSHOT_KEY_OFFSET + SNAPSHOT_KEY_BYTES));
  const snapshotKey = key.every((x) => x === 0) ? null : key;
  return { snapshotBytes, startedMs: Number(b.readBigUInt64LE(32)), flags: b.readUInt32LE(40), snapshotKey, records };
}

export function readTrace(path: string): Trace {
  let b: Buffer;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new TraceError(`trace ${path} is a folder, not a trace file`);
    if (!st.isFile()) throw new TraceError(`trace ${path} is not a regular file`);
    // The magic first: a memory file given in place of a trace can be many GiB.
    if (!isTrace(firstBytes(path))) throw new TraceError(notATrace(path));
    b = readFileSync(path);
  } catch (e) {
    if (e instanceof TraceError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new TraceError(code === 'ENOENT' ? `trace ${path} does not exist; record one with --record ${path}` : `cannot read the trace ${path}: ${code ?? (e as Error).message}`);
  }
  return decodeTrace(b, path);
}

function isTrace(head: Buffer): boolean {
  return head.length >= 8 && head.toString('latin1', 0, 8) === TRACE_MAGIC;
}

const notATrace = (name: string): string => `${name} is not a snapfault trace (no ${TRACE_MAGIC} header); record one with --record`;

function firstBytes(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(8);
    return b.subarray(0, readSync(fd, b, 0, 8, 0));
  } finally {
    closeSync(fd);
  }
}

/** What --record and trace merge write, for the checks of src/output-file.ts. */
export const TRACE_OUTPUT: OutputKind = { name: 'a snapfault trace', recognise: isTrace, suggestedName: 'restore.trace' };
