// What `snapfault trace show` prints: a trace's pages, bytes and time span,
// and, against a trace of what the guest really touched, how well the
// prefetch guessed (hits, waste, coverage).
import {
  RECORD, RECORD_WORDS, FIELD, SOURCE, SOURCE_NAMES, recordTimeUs, recordedWhilePrefetching, isMerged, recordSource, recordFetchWaitMs, type Trace,
} from './trace-file.js';
import { workingSet, prefetchedSet } from './working-set.js';

export interface TraceSummary {
  snapshotBytes: number;
  /** The snapshot's key in hex (a snapshot in a store), or null. */
  snapshotKey: string | null;
  records: number;
  /** Distinct pages the guest touched (faulted on), and their bytes. */
  touchedPages: number;
  touchedBytes: number;
  faults: { copy: number; zero: number; late: number };
  prefetchedPages: number;
  prefetchedZeroPages: number;
  removedPages: number;
  /** ms from the handshake to the last fault, and to the last prefetch; null when there was none, or the trace is merged (it has no times). */
  lastFaultMs: number | null;
  lastPrefetchMs: number | null;
  recordedWhilePrefetching: boolean;
  /** A `trace merge` output: an order of pages, no times, every record kind 1. */
  merged: boolean;
  /** Copied pages by where their bytes came from (file, memory, local, disk, bucket), faults and prefetch apart; `none` counts pages of records without a source (traces from before sources). */
  sources: { faults: SourceCounts; prefetched: SourceCounts };
  /** The faults that waited for their chunk's GET from a bucket, and their waits; null when none did. */
  fetchWaits: FetchWaits | null;
  against?: PrefetchScore;
}

export type SourceCounts = Record<string, number>;

export interface FetchWaits {
  faults: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  totalMs: number;
}

export interface PrefetchScore {
  /** Pages in the reference working set. */
  needed: number;
  /** Prefetched pages the reference touched. */
  hits: number;
  /** Prefetched pages the reference never touched. */
  wasted: number;
  /** hits / prefetched. */
  hitRate: number;
  /** hits / needed. */
  coverage: number;
}

export function summarize(t: Trace, reference?: Trace): TraceSummary {
  const r = t.records;
  const s: TraceSummary = {
    snapshotBytes: Number(t.snapshotBytes), snapshotKey: t.snapshotKey?.toString('hex') ?? null, records: r.length / RECORD_WORDS, touchedPages: 0, touchedBytes: 0,
    faults: { copy: 0, zero: 0, late: 0 }, prefetchedPages: 0, prefetchedZeroPages: 0, removedPages: 0,
    lastFaultMs: null, lastPrefetchMs: null, recordedWhilePrefetching: recordedWhilePrefetching(t), merged: isMerged(t),
    sources: { faults: {}, prefetched: {} }, fetchWaits: null,
  };
  const waits: number[] = [];
  const latest = (a: number | null, ms: number): number | null => (s.merged ? null : Math.max(a ?? 0, ms));
  for (let o = 0; o < r.length; o += RECORD_WORDS) {
    const pages = r[o + FIELD.PAGES];
    const ms = recordTimeUs(r, o) / 1000;
    const kind = r[o + FIELD.KIND];
    switch (kind) {
      case RECORD.FAULT_COPY: s.faults.copy++; break;
      case RECORD.FAULT_ZERO: s.faults.zero++; break;
      case RECORD.FAULT_LATE: s.faults.late++; break;
      case RECORD.PREFETCH_COPY: s.prefetchedPages += pages; break;
      case RECORD.PREFETCH_ZERO: s.prefetchedZeroPages += pages; break;
      case RECORD.REMOVED: s.removedPages += pages; break;
    }
    const source = recordSource(r, o);
    if (kind === RECORD.FAULT_COPY || (kind === RECORD.FAULT_LATE && source !== SOURCE.NONE)) add(s.sources.faults, source, pages);
    if (kind === RECORD.PREFETCH_COPY) add(s.sources.prefetched, source, pages);
    if (source === SOURCE.BUCKET && kind <= RECORD.FAULT_LATE) waits.push(recordFetchWaitMs(r, o));
    if (kind <= RECORD.FAULT_LATE) s.lastFaultMs = latest(s.lastFaultMs, ms);
    if (kind === RECORD.PREFETCH_COPY || kind === RECORD.PREFETCH_ZERO) s.lastPrefetchMs = latest(s.lastPrefetchMs, ms);
  }
  if (waits.length > 0) {
    waits.sort((a, b) => a - b);
    const at = (q: number): number => waits[Math.min(waits.length - 1, Math.floor(q * waits.length))];
    s.fetchWaits = { faults: waits.length, medianMs: at(0.5), p99Ms: at(0.99), maxMs: waits[waits.length - 1], totalMs: waits.reduce((x, y) => x + y, 0) };
  }
  s.touchedPages = workingSet(t).length;
  s.touchedBytes = s.touchedPages * 4096;
  if (reference) s.against = score(t, reference);
  return s;
}

function add(counts: SourceCounts, source: number, pages: number): void {
  const name = SOURCE_NAMES[source];
  counts[name] = (counts[name] ?? 0) + pages;
}

/** How the prefetch of `t` did against the pages `reference` shows the guest touching. */
export function score(t: Trace, reference: Trace): PrefetchScore {
  const needed = workingSet(reference);
  const prefetched = prefetchedSet(t);
  let total = 0;
  for (const v of prefetched) total += v;
  let hits = 0;
  for (const p of needed) if (p < prefetched.length && prefetched[p]) hits++;
  return {
    needed: needed.length, hits, wasted: total - hits,
    hitRate: total ? hits / total : 0, coverage: needed.length ? hits / needed.length : 0,
  };
}
