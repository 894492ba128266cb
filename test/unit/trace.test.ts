// Trace files on their own: the format, working sets, merging, replay ranges,
// and the score of a prefetch against what the guest touched.
import { expect } from 'chai';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeTrace, decodeTrace, readTrace, writeTrace, recordTimeUs, setRecord, RECORD, RECORD_WORDS, FIELD, TRACE_VERSION, TRACE_FLAG_PREFETCHED, TRACE_FLAG_MERGED,
  isMerged, recordedWhilePrefetching, SOURCE, sourceWord, recordSource, recordFetchWaitMs, type Trace, type RecordKind,
} from '../../src/trace/trace-file.js';
import { Recorder } from '../../src/trace/recorder.js';
import { workingSet, mergeTraces, replayRanges } from '../../src/trace/working-set.js';
import { summarize } from '../../src/trace/summary.js';
import { TraceError } from '../../src/errors.js';
import { renderReport } from '../../src/trace/report.js';
import { SNAPFAULT } from '../helpers/paths.js';

const PAGES = 1024;
/** The first time a version 1 trace could not hold: 2^32 µs, 71.6 minutes after the handshake. */
const WRAP = 2 ** 32;

type Rec = [page: number, pages: number, timeUs: number, kind: RecordKind];

function trace(records: Rec[], pages = PAGES): Trace {
  const r = new Uint32Array(records.length * RECORD_WORDS);
  records.forEach(([page, n, t, kind], i) => setRecord(r, i * RECORD_WORDS, page, n, t, kind));
  return { snapshotBytes: BigInt(pages * 4096), startedMs: 1_700_000_000_000, flags: 0, records: r };
}

const fields = (t: Trace): Rec[] => Array.from({ length: t.records.length / RECORD_WORDS }, (_, i) => {
  const o = i * RECORD_WORDS;
  return [t.records[o + FIELD.PAGE], t.records[o + FIELD.PAGES], recordTimeUs(t.records, o), t.records[o + FIELD.KIND] as RecordKind];
});

/** A version 1 file, as snapfault wrote them before: 16-byte records with a u32 time. */
function encodeV1(records: Rec[], pages = PAGES, flags = 0): Buffer {
  const b = Buffer.alloc(64 + 16 * records.length);
  b.write('SFTRACE1', 0, 'latin1');
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(16, 12);
  b.writeBigUInt64LE(BigInt(pages * 4096), 16);
  b.writeBigUInt64LE(BigInt(records.length), 24);
  b.writeBigUInt64LE(1_700_000_000_000n, 32);
  b.writeUInt32LE(flags, 40);
  records.forEach((r, i) => r.forEach((v, k) => b.writeUInt32LE(v, 64 + 16 * i + 4 * k)));
  return b;
}

const touches = (pages: number[]): Trace => trace(pages.map((p, i) => [p, 1, i * 10, RECORD.FAULT_COPY]));

describe('trace files', () => {
  it('round-trip through their bytes', () => {
    const t = trace([[5, 1, 10, RECORD.FAULT_COPY], [7, 512, 20, RECORD.PREFETCH_COPY], [0, 3, 30, RECORD.REMOVED]]);
    const back = decodeTrace(encodeTrace(t), 't');
    expect(back.snapshotBytes).to.equal(t.snapshotBytes);
    expect(back.startedMs).to.equal(t.startedMs);
    expect([...back.records]).to.deep.equal([...t.records]);
    expect(encodeTrace(t).readUInt32LE(8)).to.equal(TRACE_VERSION);
  });

  it('keep times past 2^32 µs (71.6 minutes), through the recorder, the bytes and the file', () => {
    const rec = new Recorder();
    const times = [0, WRAP - 1, WRAP, WRAP + 123, 30 * 86_400e6 + 7]; // the last: 30 days
    times.forEach((t, i) => rec.push(i, 1, t, RECORD.FAULT_COPY));
    rec.push(9, 1, -3, RECORD.FAULT_ZERO); // another thread's clock a hair behind: taken as the handshake
    const t: Trace = { snapshotBytes: BigInt(PAGES * 4096), startedMs: 1_700_000_000_000, flags: 0, records: rec.take() };
    expect(fields(t).map((r) => r[2])).to.deep.equal([...times, 0]);
    const dir = mkdtempSync(join(tmpdir(), 'snapfault-trace-'));
    try {
      writeTrace(join(dir, 'long.trace'), t);
      const back = readTrace(join(dir, 'long.trace'));
      expect(fields(back)).to.deep.equal(fields(t));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('still read version 1 files, their times as they are', () => {
    const recs: Rec[] = [[5, 1, 10, RECORD.FAULT_COPY], [7, 512, WRAP - 1, RECORD.PREFETCH_COPY], [0, 3, 30, RECORD.REMOVED]];
    const v1 = decodeTrace(encodeV1(recs, PAGES, 1), 'old.trace');
    expect(v1.snapshotBytes).to.equal(BigInt(PAGES * 4096));
    expect(v1.startedMs).to.equal(1_700_000_000_000);
    expect(v1.flags).to.equal(1);
    expect(recordedWhilePrefetching(v1)).to.equal(true);
    expect(isMerged(v1)).to.equal(false);
    expect(isMerged(decodeTrace(encodeV1(recs, PAGES, TRACE_FLAG_MERGED), 'old.trace'))).to.equal(true); // the flags word reads as it is
    expect(fields(v1)).to.deep.equal(recs);
    expect([...workingSet(v1)]).to.deep.equal([5]);
    // Written again, it is a version 2 file with the same records.
    const again = encodeTrace(v1);
    expect(again.readUInt32LE(8)).to.equal(2);
    expect(fields(decodeTrace(again, 'new.trace'))).to.deep.equal(recs);
    expect(() => decodeTrace(encodeV1(recs).subarray(0, 64 + 40), 'old.trace')).to.throw(TraceError, /truncated/);
  });

  it('keep where each copied page came from, and a fault\'s wait for its GET; trace show counts them', () => {
    const rec = new Recorder();
    rec.push(1, 1, 10, RECORD.FAULT_COPY, sourceWord(SOURCE.BUCKET, 37.4));
    rec.push(2, 1, 20, RECORD.FAULT_COPY, sourceWord(SOURCE.MEMORY));
    rec.push(3, 1, 30, RECORD.FAULT_COPY, sourceWord(SOURCE.BUCKET, 2 ** 30)); // capped, not wrapped into the tier
    rec.push(4, 1, 40, RECORD.FAULT_ZERO);
    rec.push(8, 16, 50, RECORD.PREFETCH_COPY, sourceWord(SOURCE.DISK));
    rec.push(24, 8, 60, RECORD.PREFETCH_COPY, sourceWord(SOURCE.BUCKET));
    rec.push(5, 1, 70, RECORD.FAULT_COPY); // a trace from before sources: none
    const t: Trace = { snapshotBytes: BigInt(PAGES * 4096), startedMs: 1_700_000_000_000, flags: 0, records: rec.take() };
    const back = decodeTrace(encodeTrace(t), 'sources.trace');
    expect([0, 1, 2, 3].map((i) => recordSource(back.records, i * RECORD_WORDS))).to.deep.equal([SOURCE.BUCKET, SOURCE.MEMORY, SOURCE.BUCKET, SOURCE.NONE]);
    expect(recordFetchWaitMs(back.records, 0)).to.equal(37);
    expect(recordFetchWaitMs(back.records, 2 * RECORD_WORDS)).to.equal(2 ** 24 - 1);
    const s = summarize(back);
    expect(s.sources).to.deep.equal({ faults: { bucket: 2, memory: 1, none: 1 }, prefetched: { disk: 16, bucket: 8 } });
    expect(s.fetchWaits).to.deep.equal({ faults: 2, medianMs: 2 ** 24 - 1, p99Ms: 2 ** 24 - 1, maxMs: 2 ** 24 - 1, totalMs: 37 + 2 ** 24 - 1 });
    const dir = mkdtempSync(join(tmpdir(), 'snapfault-trace-'));
    try {
      writeTrace(join(dir, 'sources.trace'), t);
      const show = spawnSync(SNAPFAULT, ['trace', 'show', join(dir, 'sources.trace')], { encoding: 'utf8' });
      expect(show.status, show.stderr).to.equal(0);
      expect(show.stdout).to.match(/^from: +faults 2 bucket, 1 memory; prefetch 16 disk, 8 bucket$/m);
      expect(show.stdout).to.match(/^fetch waits: 2 faults waited for a GET: median 16777215 ms, p99 16777215 ms, longest 16777215 ms/m);
      // A trace without sources says nothing of them.
      writeTrace(join(dir, 'plain.trace'), touches([1, 2]));
      const plain = spawnSync(SNAPFAULT, ['trace', 'show', join(dir, 'plain.trace')], { encoding: 'utf8' });
      expect(plain.stdout).not.to.match(/^from:|^fetch waits:/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const bad: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['another file', (b) => Buffer.concat([Buffer.from('GARBAGE!'), b.subarray(8)]), /is not a snapfault trace/],
    ['a later version', (b) => (b.writeUInt32LE(3, 8), b), /version 3 trace; this snapfault reads versions 1 and 2/],
    ['a version 1 header on version 2 records', (b) => (b.writeUInt32LE(1, 8), b), /unexpected record size 24/],
    ['a truncated file', (b) => b.subarray(0, b.length - 3), /truncated or has trailing bytes/],
    ['a page past the snapshot', (b) => (b.writeUInt32LE(PAGES, 64), b), /record 0 is corrupt/],
    ['an unknown kind', (b) => (b.writeUInt32LE(99, 64 + 16), b), /record 0 is corrupt/],
    ['a time from 2^53 µs on', (b) => (b.writeUInt32LE(2 ** 21, 64 + 12), b), /record 0 is corrupt/],
    ['an unknown source', (b) => (b.writeUInt32LE(SOURCE.BUCKET + 1, 64 + 20), b), /record 0 is corrupt .*source 6/],
  ];
  for (const [what, damage, message] of bad) {
    it(`refuses ${what} with a TraceError`, () => {
      const b = damage(encodeTrace(touches([1, 2, 3])));
      expect(() => decodeTrace(b, 'x.trace')).to.throw(TraceError, message);
    });
  }

  const fuzzRecords: Rec[] = [[5, 1, 10, RECORD.FAULT_COPY], [100, 512, WRAP + 20, RECORD.PREFETCH_COPY], [0, 3, 30, RECORD.REMOVED]];
  for (const [version, good] of [['2', encodeTrace(trace(fuzzRecords))], ['1', encodeV1(fuzzRecords.map(([p, n, t, k]) => [p, n, t % WRAP, k]))]] as const) {
    it(`fuzz (version ${version}): any damage is refused with a TraceError or decodes to records inside the snapshot, with exact times`, () => {
      fc.assert(fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(good.length), (pokes, cut) => {
        const b = Buffer.from(good.subarray(0, Math.max(cut, 1)));
        for (const [at, v] of pokes) if (at < b.length) b[at] = v;
        try {
          const t = decodeTrace(b, 'fuzz');
          const pages = Number(t.snapshotBytes / 4096n);
          for (let o = 0; o < t.records.length; o += RECORD_WORDS) {
            expect(t.records[o + FIELD.PAGE] + t.records[o + FIELD.PAGES]).to.be.at.most(pages);
            expect(Number.isSafeInteger(recordTimeUs(t.records, o))).to.equal(true);
            expect(recordSource(t.records, o)).to.be.at.most(SOURCE.BUCKET);
          }
        } catch (e) {
          expect(e).to.be.instanceOf(TraceError);
        }
      }), { numRuns: 2000 });
    });
  }
});

describe('working sets', () => {
  it('are the touched pages in first-touch order, once each, whatever order the records are in', () => {
    const t = trace([
      [9, 1, 50, RECORD.FAULT_COPY], [3, 1, 10, RECORD.FAULT_ZERO], [9, 1, 60, RECORD.FAULT_LATE],
      [20, 4, 5, RECORD.PREFETCH_COPY], [7, 1, 30, RECORD.FAULT_LATE], [40, 2, 40, RECORD.FAULT_COPY], [0, 8, 99, RECORD.REMOVED],
    ]);
    expect([...workingSet(t)]).to.deep.equal([3, 7, 40, 41, 9]);
  });

  it('merge: union, intersection and at-least-N runs, ordered by mean first-touch position', () => {
    const a = touches([1, 2, 3, 4]);
    const b = touches([4, 3, 5]);
    const c = touches([3, 6]);
    const pages = (t: Trace): number[] => [...workingSet(t)];
    expect(pages(mergeTraces([a, b, c], ['a', 'b', 'c'], { minRuns: 1 }))).to.have.members([1, 2, 3, 4, 5, 6]);
    expect(pages(mergeTraces([a, b, c], ['a', 'b', 'c'], { minRuns: 3 }))).to.deep.equal([3]);
    // 3: positions 2/4, 1/3, 0/2 -> mean 0.28; 4: 3/4, 0/3 -> 0.375
    expect(pages(mergeTraces([a, b, c], ['a', 'b', 'c'], { minRuns: 2 }))).to.deep.equal([3, 4]);
    expect(() => mergeTraces([a, trace([[1, 1, 0, RECORD.FAULT_COPY]], 2048)], ['a', 'z'], { minRuns: 1 })).to.throw(TraceError, /merge traces of one snapshot only/);
  });

  it('order by the whole time: touches past 2^32 µs come after earlier ones, in working sets, merge, trace merge and trace show', () => {
    // Cut to 32 bits, page 10's time would be 1 and page 30's would come before page 20's.
    const t = trace([
      [10, 1, WRAP + 1, RECORD.FAULT_COPY], [20, 1, 1000, RECORD.FAULT_COPY], [30, 1, WRAP + 5e9, RECORD.FAULT_ZERO],
      [40, 4, WRAP + 2000, RECORD.PREFETCH_COPY], [20, 1, 2000, RECORD.FAULT_LATE],
    ]);
    expect([...workingSet(t)]).to.deep.equal([20, 10, 30]);
    expect([...workingSet(mergeTraces([t], ['t'], { minRuns: 1 }))]).to.deep.equal([20, 10, 30]);
    const s = summarize(t);
    expect(s.lastFaultMs).to.equal((WRAP + 5e9) / 1000);
    expect(s.lastPrefetchMs).to.equal((WRAP + 2000) / 1000);
    const dir = mkdtempSync(join(tmpdir(), 'snapfault-trace-'));
    try {
      const long = join(dir, 'long.trace');
      const merged = join(dir, 'merged.trace');
      writeTrace(long, t);
      const m = spawnSync(SNAPFAULT, ['trace', 'merge', long, long, '-o', merged], { encoding: 'utf8' });
      expect(m.status, m.stderr).to.equal(0);
      expect([...workingSet(readTrace(merged))]).to.deep.equal([20, 10, 30]);
      const json = spawnSync(SNAPFAULT, ['trace', 'show', long, '--json'], { encoding: 'utf8' });
      expect(json.status, json.stderr).to.equal(0);
      expect(JSON.parse(json.stdout)).to.deep.include({ lastFaultMs: (WRAP + 5e9) / 1000, lastPrefetchMs: (WRAP + 2000) / 1000, touchedPages: 3 });
      const text = spawnSync(SNAPFAULT, ['trace', 'show', long], { encoding: 'utf8' });
      expect(text.stdout).to.include('last at 9294967.3 ms');
      expect(text.stdout).to.include('4 pages copied, 0 zero pages mapped; last at 4294969.3 ms');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replay ranges join neighbours within a window and keep the windows in order', () => {
    const order = Uint32Array.from([50, 10, 11, 51, 12, 90, 1, 2]);
    expect([...replayRanges(order, 4)]).to.deep.equal([10, 2, 50, 2, 1, 2, 12, 1, 90, 1]);
    expect([...replayRanges(new Uint32Array(0))]).to.deep.equal([]);
  });

  it('score: hits are prefetched pages the reference touched; the rest is waste', () => {
    const run = trace([[0, 10, 1, RECORD.PREFETCH_COPY], [10, 2, 2, RECORD.PREFETCH_ZERO], [50, 1, 3, RECORD.FAULT_COPY]]);
    const ref = touches([0, 1, 2, 11, 50, 51]);
    const s = summarize(run, ref);
    expect(s.prefetchedPages).to.equal(10);
    expect(s.prefetchedZeroPages).to.equal(2);
    expect(s.against).to.deep.include({ needed: 6, hits: 4, wasted: 8 });
    expect(s.against!.hitRate).to.be.closeTo(4 / 12, 1e-9);
    expect(s.against!.coverage).to.be.closeTo(4 / 6, 1e-9);
  });
});

/** Tags open and close in order (a well-formedness check enough for our own SVG). */
function balanced(xml: string): boolean {
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue;
    if (m[1] === '/') {
      if (stack.pop() !== m[2]) return false;
    } else stack.push(m[2]);
  }
  return stack.length === 0;
}

describe('report', () => {
  it('draws the heat map and the timeline of a restore as one self-contained SVG', () => {
    // 1024 pages, 128 x 64 cells: one page a cell, row by row.
    const t = trace([
      [0, 128, 1000, RECORD.PREFETCH_COPY], // the whole first row
      [128, 1, 2000, RECORD.FAULT_COPY], // first cell of the second row
      [129, 1, 2500, RECORD.FAULT_ZERO],
      [256, 3, 9000, RECORD.REMOVED],
      [130, 1, 3000, RECORD.FAULT_LATE],
    ]);
    const svg = renderReport(t, { title: 'fn <1>.trace' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).to.equal(true);
    expect(svg.trimEnd().endsWith('</svg>')).to.equal(true);
    expect(balanced(svg)).to.equal(true);
    expect(svg).to.not.match(/(href|src)=/); // self-contained
    expect(svg).to.include('fn &#60;1&#62;.trace');
    expect(svg).to.include('3 faults (1 copied, 1 zero, 1 while being prefetched)');
    expect(svg).to.include('128 pages prefetched (128 copied, 0 zero)');
    expect(svg).to.include('3 pages removed');
    // First row: one rectangle of 128 prefetched cells; second row: fault, zero, late; third: 3 removed.
    const full = '" fill-opacity="1"/>';
    const row = new RegExp(`<rect x="24" y="(\\d+)" width="896" height="7" fill="#2563eb${full}`).exec(svg);
    expect(row, svg).to.not.equal(null);
    const firstRowY = Number(row![1]);
    expect(svg).to.include(`<rect x="24" y="${firstRowY + 7}" width="7" height="7" fill="#dc2626${full}`);
    expect(svg).to.include(`<rect x="31" y="${firstRowY + 7}" width="7" height="7" fill="#f59e0b${full}`);
    expect(svg).to.include(`<rect x="38" y="${firstRowY + 7}" width="7" height="7" fill="#9333ea${full}`);
    expect(svg).to.include(`<rect x="24" y="${firstRowY + 14}" width="21" height="7" fill="#6b7280${full}`);
    expect(svg).to.match(/class="prefetch-curve"/);
    expect(svg).to.match(/class="fault-curve"/);
    expect(svg).to.include('>3.0 ms<'); // the time axis ends at the last fault or prefetch
  });

  it('a restore followed for hours, with more faults than fit a call\'s arguments, is drawn on a time axis in minutes', () => {
    const hour = 3_600_000_000; // µs
    const recs: Rec[] = [[1, 1, 1000, RECORD.FAULT_COPY], [2, 1, hour, RECORD.FAULT_COPY], [3, 1, 3 * hour, RECORD.FAULT_ZERO]];
    for (let i = 0; i < 300_000; i++) recs.push([i % PAGES, 1, 2000 + i, RECORD.FAULT_LATE]);
    const svg = renderReport(trace(recs), { title: 'long' });
    expect(svg).to.include('>180 min<');
    expect(svg).to.include('>36 min<');
    expect(svg).to.include('faults per 1.5 min');
    expect(svg).to.include('last at 10800000.0 ms');
    expect(balanced(svg)).to.equal(true);
  });

  it('a big snapshot is drawn with several pages a cell, and stays small', () => {
    const pages = 262144; // 1 GiB
    const recs: Array<[number, number, number, RecordKind]> = [];
    for (let i = 0; i < 20000; i++) recs.push([(i * 7919) % pages, 1, i * 5, i % 3 === 0 ? RECORD.PREFETCH_COPY : RECORD.FAULT_COPY]);
    const svg = renderReport(trace(recs, pages), { title: 'big' });
    expect(svg).to.include('32 pages a cell');
    expect(svg).to.include('fill-opacity="0.25"'); // one page in 32: pale
    expect(balanced(svg)).to.equal(true);
    expect(svg.length).to.be.below(1_500_000);
  });
});

describe('trace tools on prefetch-recorded and merged traces', function () {
  this.timeout(30_000);
  let dir: string;
  const file = (name: string, t: Trace): string => {
    const path = join(dir, name);
    writeTrace(path, t);
    return path;
  };
  const tool = (args: string[]): { status: number | null; stdout: string; stderr: string } => spawnSync(SNAPFAULT, args, { encoding: 'utf8' });
  // The guest touches pages 0-99. Recorded without prefetch: all 100 faulted.
  const full = trace(Array.from({ length: 100 }, (_, p): Rec => [p, 1, 1000 + p * 10, RECORD.FAULT_COPY]));
  // Recorded while replaying: 0-89 went in ahead of the guest, 90-99 still faulted.
  const replayed: Trace = {
    ...trace([[0, 90, 500, RECORD.PREFETCH_COPY], ...Array.from({ length: 10 }, (_, i): Rec => [90 + i, 1, 2000 + i * 10, RECORD.FAULT_COPY])]),
    flags: TRACE_FLAG_PREFETCHED,
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapfault-trace-tools-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('trace merge warns about a prefetch-recorded trace (an intersection with one keeps almost nothing) and its result keeps the mark', () => {
    const a = file('full.trace', full);
    const b = file('replayed.trace', replayed);
    const out = join(dir, 'inter.trace');
    const r = tool(['trace', 'merge', a, b, '--mode', 'intersection', '-o', out]);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.include('10 pages');
    expect(r.stderr).to.equal(`snapfault: warning: trace ${b} was recorded while pages were installed ahead of the guest, so it holds only the pages that still faulted; ` +
      'record with --prefetch none for the whole working set; the merged working set misses the pages prefetched in time (an intersection may keep almost none)\n');
    const m = readTrace(out);
    expect(recordedWhilePrefetching(m)).to.equal(true);
    // Replaying it warns too, as --prefetch replay: of any prefetch-recorded trace does.
    const clean = tool(['trace', 'merge', a, a, '-o', join(dir, 'clean.trace')]);
    expect(clean.stderr).to.equal('');
    expect(recordedWhilePrefetching(readTrace(join(dir, 'clean.trace')))).to.equal(false);
  });

  it('trace show warns about a prefetch-recorded trace, and about one given as --against; report too', () => {
    const a = file('full2.trace', full);
    const b = file('replayed2.trace', replayed);
    const own = tool(['trace', 'show', b, '--json']);
    expect(own.status).to.equal(0);
    expect(own.stderr).to.match(new RegExp(`^snapfault: warning: trace ${b} was recorded while pages were installed ahead of the guest.*; its touched pages are only those\n$`));
    expect(JSON.parse(own.stdout)).to.deep.include({ recordedWhilePrefetching: true, touchedPages: 10 });
    const ref = tool(['trace', 'show', a, '--against', b]);
    expect(ref.status).to.equal(0);
    expect(ref.stderr).to.match(new RegExp(`^snapfault: warning: trace ${b} was recorded .*; the pages needed, the hits and the coverage count only those\n$`));
    expect(tool(['trace', 'show', a, '--against', a]).stderr).to.equal('');
    const rep = tool(['report', b, '-o', join(dir, 'b.svg')]);
    expect(rep.status).to.equal(0);
    expect(rep.stderr).to.match(/^snapfault: warning: trace .* was recorded while pages were installed ahead of the guest.*; the faults it draws are only those\n$/);
  });

  it('a merged trace says it is merged and carries no times: trace show prints none, report says why it has no timeline', () => {
    const a = file('a.trace', full);
    const b = file('b.trace', touches([5, 150, 3]));
    const out = join(dir, 'merged.trace');
    expect(tool(['trace', 'merge', a, b, '-o', out]).status).to.equal(0);
    const m = readTrace(out);
    expect(isMerged(m)).to.equal(true);
    expect(m.flags & TRACE_FLAG_MERGED).to.equal(TRACE_FLAG_MERGED);
    expect(m.startedMs).to.equal(0);
    expect(fields(m).every(([, , t]) => t === 0)).to.equal(true);
    expect(workingSet(m)).to.have.length(101);
    expect(isMerged(readTrace(a))).to.equal(false);
    const text = tool(['trace', 'show', out]);
    expect(text.status).to.equal(0);
    expect(text.stdout).to.include('merged:      a working set from trace merge');
    expect(text.stdout).to.include('touched:     101 pages');
    expect(text.stdout).to.not.match(/ ms\b|last at/);
    expect(JSON.parse(tool(['trace', 'show', out, '--json']).stdout)).to.deep.include({ merged: true, lastFaultMs: null, lastPrefetchMs: null, touchedPages: 101 });
    // A merge of merged traces is merged, its order kept.
    const again = join(dir, 'again.trace');
    expect(tool(['trace', 'merge', out, '-o', again]).status).to.equal(0);
    expect([...workingSet(readTrace(again))]).to.deep.equal([...workingSet(m)]);
    const svg = renderReport(m, { title: 'merged' });
    expect(svg).to.include('Merged working set (trace merge): 101 pages');
    expect(svg).to.include('A merge keeps no times: there is no timeline');
    expect(svg).to.not.match(/fault-curve|last at| ms</);
    expect(balanced(svg)).to.equal(true);
  });

  it('trace show and report print no "last at" for what never happened', () => {
    const a = file('noprefetch.trace', full);
    const text = tool(['trace', 'show', a]);
    expect(text.stdout).to.include('prefetched:  none\n');
    expect(text.stdout).to.include('on pages installed meanwhile); last at 2.0 ms');
    expect(text.stdout).to.not.include('last at 0.0 ms');
    expect(JSON.parse(tool(['trace', 'show', a, '--json']).stdout)).to.deep.include({ lastPrefetchMs: null, lastFaultMs: 1.99 });
    const onlyPrefetch = file('onlyprefetch.trace', trace([[0, 10, 700, RECORD.PREFETCH_COPY]]));
    const p = tool(['trace', 'show', onlyPrefetch]);
    expect(p.stdout).to.include('faults:      0 (0 copied, 0 zero, 0 on pages installed meanwhile)\n');
    expect(p.stdout).to.include('10 pages copied, 0 zero pages mapped; last at 0.7 ms');
    const svg = renderReport(full, { title: 'full' });
    expect(svg).to.include('nothing prefetched; 0 pages removed');
    expect(svg).to.not.include('last at 0.0 ms');
  });
});
