// `snapfault report`: one self-contained SVG of a recorded restore, for a
// person to open in a browser: a heat map of guest memory (what each part of
// the snapshot became: faulted in, zero, prefetched, removed, untouched) and
// a timeline of faults with the prefetch progress beside it.
import { RECORD, RECORD_WORDS, FIELD, recordTimeUs, type Trace } from './trace-file.js';
import { summarize } from './summary.js';

/** Page states, in the order a cell shows them when several meet in it. */
const STATES = [
  { key: 'removed', label: 'removed by the guest', color: '#6b7280', kinds: [RECORD.REMOVED] },
  { key: 'fault', label: 'faulted in (copied)', color: '#dc2626', kinds: [RECORD.FAULT_COPY] },
  { key: 'late', label: 'faulted while being prefetched', color: '#9333ea', kinds: [RECORD.FAULT_LATE] },
  { key: 'zero', label: 'faulted in (zero page)', color: '#f59e0b', kinds: [RECORD.FAULT_ZERO] },
  { key: 'prefetch', label: 'prefetched (copied)', color: '#2563eb', kinds: [RECORD.PREFETCH_COPY] },
  { key: 'prefetchZero', label: 'prefetched (zero page)', color: '#7dd3fc', kinds: [RECORD.PREFETCH_ZERO] },
] as const;
const UNTOUCHED = '#f3f4f6';

export interface ReportOptions {
  /** Title shown on top (the trace's file name). */
  title: string;
}

const W = 960;
const MAP_COLS = 128;
const MAP_ROWS = 64;
const CELL = 7;
const PAD = 24;

function esc(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The state of every snapshot page (index into STATES, or -1: untouched). */
function pageStates(t: Trace): Int8Array {
  const pages = Number(t.snapshotBytes / 4096n);
  const state = new Int8Array(pages).fill(-1);
  const rank = new Map<number, number>();
  STATES.forEach((s, i) => s.kinds.forEach((k) => rank.set(k, i)));
  for (let o = 0; o < t.records.length; o += RECORD_WORDS) {
    const r = rank.get(t.records[o + FIELD.KIND]);
    if (r === undefined) continue;
    const first = t.records[o + FIELD.PAGE];
    const end = Math.min(pages, first + t.records[o + FIELD.PAGES]);
    for (let p = first; p < end; p++) if (state[p] === -1 || r < state[p]) state[p] = r;
  }
  return state;
}

function heatMap(t: Trace, top: number): { svg: string; height: number } {
  const state = pageStates(t);
  const pages = state.length;
  const cells = MAP_COLS * MAP_ROWS;
  const perCell = Math.max(1, Math.ceil(pages / cells));
  const rows = Math.ceil(Math.ceil(pages / perCell) / MAP_COLS);
  const out: string[] = [];
  const left = PAD;
  for (let row = 0; row < rows; row++) {
    // Neighbouring cells of one colour are drawn as one rectangle.
    let runStart = 0;
    let runFill = '';
    const flush = (end: number): void => {
      if (runFill && runFill !== UNTOUCHED) {
        out.push(`<rect x="${left + runStart * CELL}" y="${top + row * CELL}" width="${(end - runStart) * CELL}" height="${CELL}" fill="${runFill}"/>`);
      }
    };
    for (let col = 0; col <= MAP_COLS; col++) {
      let fill = '';
      if (col < MAP_COLS) {
        const first = (row * MAP_COLS + col) * perCell;
        if (first >= pages) fill = '';
        else {
          const counts = new Array<number>(STATES.length).fill(0);
          let touched = 0;
          const end = Math.min(pages, first + perCell);
          for (let p = first; p < end; p++) if (state[p] >= 0) {
            counts[state[p]]++;
            touched++;
          }
          // The most frequent state of the cell; untouched when none.
          let best = -1;
          counts.forEach((c, i) => {
            if (c > 0 && (best < 0 || c > counts[best])) best = i;
          });
          // Opacity in quarters by the share of the cell's pages touched at all.
          const share = Math.max(1, Math.ceil((4 * touched) / (end - first)));
          fill = best < 0 ? UNTOUCHED : `${STATES[best].color}" fill-opacity="${share / 4}`;
        }
      }
      if (fill !== runFill) {
        flush(col);
        runStart = col;
        runFill = fill;
      }
    }
  }
  const height = rows * CELL;
  const frame = `<rect x="${left}" y="${top}" width="${MAP_COLS * CELL}" height="${height}" fill="${UNTOUCHED}" stroke="#d1d5db"/>`;
  const caption = `<text x="${left}" y="${top - 6}" class="h">Guest memory: ${pages} pages of 4 KiB, ${perCell} page${perCell > 1 ? 's' : ''} a cell, from offset 0; colour: most of a cell's pages, paler: fewer touched</text>`;
  return { svg: [caption, frame, ...out].join('\n'), height };
}

/** Time units for labels, largest first: a trace may span µs or days. */
const UNITS: ReadonlyArray<{ name: string; ms: number }> = [
  { name: 'h', ms: 3_600_000 }, { name: 'min', ms: 60_000 }, { name: 's', ms: 1000 }, { name: 'ms', ms: 1 }, { name: 'µs', ms: 0.001 },
];

/** The unit of a time axis ending at `endMs`: ms up to 10 s, as before, then s, min, h. */
function axisUnit(endMs: number): { name: string; ms: number } {
  return UNITS.find((u) => u.ms <= 1 || endMs >= 10 * u.ms) ?? UNITS[3];
}

function axisLabel(ms: number, unit: { name: string; ms: number }): string {
  const v = ms / unit.ms;
  return `${v.toFixed(v < 10 ? 1 : 0)} ${unit.name}`;
}

/** A span in the largest unit it makes at least 1 of. */
function span(ms: number): string {
  return axisLabel(ms, UNITS.find((u) => ms >= u.ms) ?? UNITS[UNITS.length - 1]);
}

function timeline(t: Trace, top: number): { svg: string; height: number } {
  const h = 220;
  const left = PAD + 56;
  const width = W - left - PAD;
  const faults: Array<[number, number]> = [];
  const prefetch: Array<[number, number]> = [];
  for (let o = 0; o < t.records.length; o += RECORD_WORDS) {
    const kind = t.records[o + FIELD.KIND];
    const ms = recordTimeUs(t.records, o) / 1000;
    if (kind === RECORD.FAULT_COPY || kind === RECORD.FAULT_ZERO || kind === RECORD.FAULT_LATE) faults.push([ms, 1]);
    else if (kind === RECORD.PREFETCH_COPY || kind === RECORD.PREFETCH_ZERO) prefetch.push([ms, t.records[o + FIELD.PAGES]]);
  }
  // A loop, not Math.max(...spread): a VM served for days has more records than arguments fit on the stack.
  let end = 1;
  for (const [ms] of faults) end = Math.max(end, ms);
  for (const [ms] of prefetch) end = Math.max(end, ms);
  const unit = axisUnit(end);
  const cumulative = (xs: Array<[number, number]>): Array<[number, number]> => {
    xs.sort((a, b) => a[0] - b[0]);
    let n = 0;
    return xs.map(([ms, k]) => [ms, (n += k)]);
  };
  const cf = cumulative(faults);
  const cp = cumulative(prefetch);
  const max = Math.max(1, cf.at(-1)?.[1] ?? 0, cp.at(-1)?.[1] ?? 0);
  const x = (ms: number): number => left + (ms / end) * width;
  const y = (n: number): number => top + h - (n / max) * h;
  const path = (pts: Array<[number, number]>): string => {
    if (pts.length === 0) return '';
    // At most ~2000 points: enough for the eye, keeps the file small.
    const step = Math.max(1, Math.floor(pts.length / 2000));
    const d = [`M${x(0).toFixed(1)},${y(0).toFixed(1)}`];
    for (let i = 0; i < pts.length; i += step) d.push(`L${x(pts[i][0]).toFixed(1)},${y(pts[i][1]).toFixed(1)}`);
    const last = pts[pts.length - 1];
    d.push(`L${x(last[0]).toFixed(1)},${y(last[1]).toFixed(1)}`);
    return d.join('');
  };
  // Faults per time bucket, as bars under the curves.
  const buckets = 120;
  const perBucket = new Array<number>(buckets).fill(0);
  for (const [ms] of faults) perBucket[Math.min(buckets - 1, Math.floor((ms / end) * buckets))]++;
  const peak = Math.max(1, ...perBucket);
  const bars = perBucket.map((n, i) => n === 0 ? '' :
    `<rect x="${(left + (i * width) / buckets).toFixed(1)}" y="${(top + h - (n / peak) * h * 0.35).toFixed(1)}" width="${(width / buckets - 1).toFixed(1)}" height="${((n / peak) * h * 0.35).toFixed(1)}" fill="#fecaca"/>`).join('');
  const ticks: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const ms = (end * i) / 5;
    ticks.push(`<line x1="${x(ms)}" y1="${top + h}" x2="${x(ms)}" y2="${top + h + 4}" stroke="#374151"/><text x="${x(ms)}" y="${top + h + 16}" text-anchor="middle">${axisLabel(ms, unit)}</text>`);
    const n = (max * i) / 5;
    ticks.push(`<text x="${left - 6}" y="${y(n) + 4}" text-anchor="end">${Math.round(n)}</text><line x1="${left}" y1="${y(n)}" x2="${left + width}" y2="${y(n)}" stroke="#e5e7eb"/>`);
  }
  const svg = [
    `<text x="${PAD}" y="${top - 10}" class="h">Over time, from the handshake: pages faulted in (red; bars: faults per ${span(end / buckets)}) and pages prefetched (blue), cumulative</text>`,
    ...ticks,
    bars,
    `<line x1="${left}" y1="${top + h}" x2="${left + width}" y2="${top + h}" stroke="#374151"/><line x1="${left}" y1="${top}" x2="${left}" y2="${top + h}" stroke="#374151"/>`,
    cp.length ? `<path d="${path(cp)}" fill="none" stroke="#2563eb" stroke-width="2" class="prefetch-curve"/>` : '',
    cf.length ? `<path d="${path(cf)}" fill="none" stroke="#dc2626" stroke-width="2" class="fault-curve"/>` : '',
  ].join('\n');
  return { svg, height: h + 24 };
}

/** The SVG text of a report on `t`. */
export function renderReport(t: Trace, { title }: ReportOptions): string {
  const s = summarize(t);
  const at = (ms: number | null): string => (ms === null ? '' : `, last at ${ms.toFixed(1)} ms`);
  const prefetched = s.prefetchedPages + s.prefetchedZeroPages;
  // A merged trace is an order of pages: it has no times (so no timeline) and no fault kinds to report.
  const lines = s.merged ? [
    `Merged working set (trace merge): ${s.touchedPages} pages in their mean first-touch order.`,
    'A merge keeps no times: there is no timeline, and every page is drawn as faulted in.',
  ] : [
    `${s.faults.copy + s.faults.zero + s.faults.late} faults (${s.faults.copy} copied, ${s.faults.zero} zero, ${s.faults.late} while being prefetched)${at(s.lastFaultMs)}`,
    `${prefetched === 0 ? 'nothing prefetched' : `${prefetched} pages prefetched (${s.prefetchedPages} copied, ${s.prefetchedZeroPages} zero)${at(s.lastPrefetchMs)}`}; ${s.removedPages} pages removed`,
  ];
  let y = PAD + 8;
  const parts: string[] = [];
  parts.push(`<text x="${PAD}" y="${y}" class="t">snapfault restore: ${esc(title)}</text>`);
  for (const l of lines) parts.push(`<text x="${PAD}" y="${(y += 18)}">${esc(l)}</text>`);
  if (s.recordedWhilePrefetching) parts.push(`<text x="${PAD}" y="${(y += 18)}" fill="#6b7280">Recorded while prefetching: pages installed in time never faulted, so faults undercount what the guest touched.</text>`);
  y += 22;
  STATES.forEach((st, i) => {
    const lx = PAD + (i % 3) * 300;
    const ly = y + Math.floor(i / 3) * 18;
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${st.color}"/><text x="${lx + 18}" y="${ly}">${st.label}</text>`);
  });
  y += 2 * 18 + 30;
  const map = heatMap(t, y);
  parts.push(map.svg);
  y += map.height + 50;
  if (!s.merged) {
    const tl = timeline(t, y);
    parts.push(tl.svg);
    y += tl.height + PAD;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif" font-size="12">`,
    '<style>.t{font-size:18px;font-weight:bold}.h{font-weight:bold}</style>',
    `<rect width="${W}" height="${y}" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
