// What a trace says about the guest: the pages it touched, in the order it
// first touched them; merging the working sets of several runs; and the
// ranges a replay installs them in.
import { RECORD_WORDS, RECORD, FIELD, TOUCH_KINDS, PREFETCH_KINDS, TRACE_FLAG_MERGED, TRACE_FLAG_PREFETCHED, recordsByTime, setRecord, type Trace } from './trace-file.js';
import { TraceError } from '../errors.js';

/** Pages the guest touched, each once, in first-touch order. */
export function workingSet(t: Trace): Uint32Array {
  const pages = Number(t.snapshotBytes / 4096n);
  const seen = new Uint8Array(pages);
  const out: number[] = [];
  for (const o of recordsByTime(t.records)) {
    if (!TOUCH_KINDS.has(t.records[o + FIELD.KIND])) continue;
    const first = t.records[o + FIELD.PAGE];
    for (let p = first; p < first + t.records[o + FIELD.PAGES]; p++) {
      if (seen[p]) continue;
      seen[p] = 1;
      out.push(p);
    }
  }
  return Uint32Array.from(out);
}

/** Pages the prefetch worker installed. */
export function prefetchedSet(t: Trace): Uint8Array {
  const seen = new Uint8Array(Number(t.snapshotBytes / 4096n));
  for (let o = 0; o < t.records.length; o += RECORD_WORDS) {
    const first = t.records[o + FIELD.PAGE];
    if (PREFETCH_KINDS.has(t.records[o + FIELD.KIND])) seen.fill(1, first, first + t.records[o + FIELD.PAGES]);
  }
  return seen;
}

export interface MergeOptions {
  /** Keep a page touched in at least this many of the traces (1: union; all: intersection). */
  minRuns: number;
}

/**
 * One trace from several runs' working sets: the pages touched in at least
 * `minRuns` runs, ordered by their mean first-touch position. It is flagged
 * merged, and prefetch-recorded if any input was (it undercounts as they do).
 */
export function mergeTraces(traces: readonly Trace[], names: readonly string[], { minRuns }: MergeOptions): Trace {
  if (traces.length === 0) throw new TraceError('trace merge needs at least one trace');
  const bytes = traces[0].snapshotBytes;
  traces.forEach((t, i) => {
    if (t.snapshotBytes !== bytes) {
      throw new TraceError(`${names[i]} was recorded from a ${t.snapshotBytes}-byte snapshot, ${names[0]} from a ${bytes}-byte one: merge traces of one snapshot only`);
    }
  });
  if (minRuns < 1 || minRuns > traces.length) throw new TraceError(`--min-runs ${minRuns}: expected 1 to ${traces.length}`);
  const pages = Number(bytes / 4096n);
  const runs = new Uint16Array(pages);
  const rank = new Float64Array(pages);
  for (const t of traces) {
    const ws = workingSet(t);
    // Position as a fraction of the run, so runs of different lengths weigh alike.
    ws.forEach((p, i) => {
      runs[p]++;
      rank[p] += i / Math.max(1, ws.length);
    });
  }
  const keep: number[] = [];
  for (let p = 0; p < pages; p++) if (runs[p] >= minRuns) keep.push(p);
  keep.sort((a, b) => rank[a] / runs[a] - rank[b] / runs[b] || a - b);
  const records = new Uint32Array(keep.length * RECORD_WORDS);
  // Order, not time: every time is 0 and the file order is the order (time ties keep it).
  keep.forEach((p, i) => setRecord(records, i * RECORD_WORDS, p, 1, 0, RECORD.FAULT_COPY));
  const prefetched = traces.some((t) => (t.flags & TRACE_FLAG_PREFETCHED) !== 0) ? TRACE_FLAG_PREFETCHED : 0;
  // Traces of one snapshot keep its key; of several (a layer and its parent, say), none.
  const key = traces[0].snapshotKey ?? null;
  const snapshotKey = key && traces.every((t) => t.snapshotKey?.equals(key)) ? key : null;
  return { snapshotBytes: bytes, startedMs: 0, flags: TRACE_FLAG_MERGED | prefetched, snapshotKey, records };
}

/** Pages of the first-touch order taken at a time, sorted and joined into ranges. */
export const REPLAY_WINDOW = 512;

/**
 * Ranges (pairs of first page, page count) that install `order` close to its
 * order while joining neighbours into multi-page copies: each window of
 * REPLAY_WINDOW pages is sorted and its consecutive pages coalesced.
 */
export function replayRanges(order: Uint32Array, window = REPLAY_WINDOW): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < order.length; i += window) {
    const w = order.slice(i, i + window).sort();
    let first = w[0];
    let count = 1;
    for (let j = 1; j < w.length; j++) {
      if (w[j] === first + count) {
        count++;
        continue;
      }
      out.push(first, count);
      first = w[j];
      count = 1;
    }
    if (w.length > 0) out.push(first, count);
  }
  return Uint32Array.from(out);
}
