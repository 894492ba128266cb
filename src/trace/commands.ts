// `snapfault trace show` and `snapfault trace merge`.
import { UsageError } from '../errors.js';
import { parseTool, onePositional, stringOption, intOption, choiceOption, nearest } from '../tool-args.js';
import { checkOutput, writeFileAtomic, type OutputKind } from '../output-file.js';
import { readTrace, writeTrace, recordCount, recordedWhilePrefetching, prefetchRecordedWarning, TRACE_OUTPUT, type Trace } from './trace-file.js';
import { mergeTraces } from './working-set.js';
import { summarize, type TraceSummary } from './summary.js';
import { renderReport } from './report.js';
import { basename } from 'node:path';
import type { Tool } from '../compressed/commands.js';

const HELP = `Usage:
  snapfault trace show <trace> [--against <trace>] [--json]
      Pages the guest touched, bytes, demand faults, prefetched and removed
      pages, and when the last fault came. --against a trace recorded with
      --prefetch none of the same workload scores the prefetch: hits (pages
      prefetched that the guest touched), waste, and coverage.
  snapfault trace merge <trace> <trace>... -o <trace> [--mode union|intersection] [--min-runs N] [--force]
      One working set from several recorded runs, for --prefetch replay:<trace>.
      union keeps every page any run touched; intersection only those every run
      touched; --min-runs N those touched in at least N runs (so that one odd
      run does not bloat the set). Pages keep their mean first-touch order.
      The result is flagged merged: it holds an order of pages, no times.
      -o replaces an existing trace or empty file; any other file only with
      --force, and never one of the traces merged.

A trace recorded while prefetching holds only the pages that still faulted:
each of these tools warns when it reads one.`;

const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;

/**
 * Reads a trace, warning on stderr when it was recorded while prefetching:
 * used as a working set it silently undercounts (an intersection with one
 * kept 18 pages of 1,638). `undercounts` says what, here.
 */
function readWarned(path: string, undercounts: string): Trace {
  const t = readTrace(path);
  if (recordedWhilePrefetching(t)) process.stderr.write(`snapfault: warning: ${prefetchRecordedWarning(path)}; ${undercounts}\n`);
  return t;
}

/** Copied pages by source, e.g. "faults 120 bucket, 3400 memory; prefetch 16000 disk", or '' when no record has a source. */
function sourcesLine(sources: TraceSummary['sources']): string {
  const part = (what: string, counts: Record<string, number>): string | null => {
    const known = Object.entries(counts).filter(([name, n]) => name !== 'none' && n > 0);
    return known.length === 0 ? null : `${what} ${known.map(([name, n]) => `${n} ${name}`).join(', ')}`;
  };
  return [part('faults', sources.faults), part('prefetch', sources.prefetched)].filter((x) => x !== null).join('; ');
}

async function show(argv: string[]): Promise<number> {
  const { values, positionals } = parseTool(argv, 'trace show', { json: { type: 'boolean' }, against: { type: 'string', path: true } });
  if (values.help) return help();
  const path = onePositional(positionals, 'trace show', '<trace>');
  const against = stringOption(values.against);
  const t = readWarned(path, 'its touched pages are only those');
  const s = summarize(t, against ? readWarned(against, 'the pages needed, the hits and the coverage count only those') : undefined);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(s)}\n`);
    return 0;
  }
  const at = (ms: number | null): string => (ms === null ? '' : `; last at ${ms.toFixed(1)} ms`);
  const faults = s.faults.copy + s.faults.zero + s.faults.late;
  const lines = [
    `trace:       ${path} (${s.records} records, snapshot of ${mib(s.snapshotBytes)}${s.snapshotKey ? `, key ${s.snapshotKey}` : ''})`,
    `touched:     ${s.touchedPages} pages, ${mib(s.touchedBytes)} (${((100 * s.touchedPages * 4096) / s.snapshotBytes).toFixed(1)}% of memory)`,
  ];
  if (s.merged) {
    // A merge keeps an order of pages: it has no times, fault kinds, prefetches or removals to show.
    lines.push('merged:      a working set from trace merge: pages in their mean first-touch order, with no times or fault kinds');
  } else {
    lines.push(
      `faults:      ${faults} (${s.faults.copy} copied, ${s.faults.zero} zero, ${s.faults.late} on pages installed meanwhile)${at(s.lastFaultMs)}`,
      s.prefetchedPages + s.prefetchedZeroPages === 0 ? 'prefetched:  none'
        : `prefetched:  ${s.prefetchedPages} pages copied, ${s.prefetchedZeroPages} zero pages mapped${at(s.lastPrefetchMs)}`,
      `removed:     ${s.removedPages} pages`,
    );
    const from = sourcesLine(s.sources);
    if (from) lines.push(`from:        ${from}`);
    const w = s.fetchWaits;
    if (w) lines.push(`fetch waits: ${w.faults} faults waited for a GET: median ${w.medianMs} ms, p99 ${w.p99Ms} ms, longest ${w.maxMs} ms, ${w.totalMs} ms in all`);
  }
  if (s.recordedWhilePrefetching) lines.push('note:        recorded while prefetching: pages installed in time never faulted, so "touched" undercounts');
  if (s.against) {
    const a = s.against;
    lines.push(`against:     ${against}: ${a.needed} pages needed; ${a.hits} prefetched pages touched (hit rate ${(100 * a.hitRate).toFixed(1)}%), ` +
      `${a.wasted} wasted, coverage ${(100 * a.coverage).toFixed(1)}%`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function merge(argv: string[]): Promise<number> {
  const { values, positionals } = parseTool(argv, 'trace merge', {
    output: { type: 'string', short: 'o', path: true }, mode: { type: 'string' }, 'min-runs': { type: 'string' }, force: { type: 'boolean' },
  });
  if (values.help) return help();
  const out = values.output;
  if (!out) throw new UsageError('trace merge needs -o <trace>; see snapfault trace --help');
  if (positionals.length < 1) throw new UsageError('trace merge needs at least one trace; see snapfault trace --help');
  const mode = choiceOption(values.mode, '--mode', ['union', 'intersection'], 'union');
  const minRunsText = values['min-runs'];
  if (minRunsText !== undefined && mode === 'intersection') throw new UsageError('--min-runs and --mode intersection contradict each other: give one');
  const minRuns = intOption(minRunsText, '--min-runs', { def: mode === 'union' ? 1 : positionals.length, min: 1, max: positionals.length });
  checkOutput({
    option: '-o', path: out, kind: { ...TRACE_OUTPUT, suggestedName: 'merged.trace' }, force: values.force,
    inputs: positionals.map((p) => ({ path: p, what: 'a trace to merge' })),
  });
  const traces = positionals.map((p) => readWarned(p, 'the merged working set misses the pages prefetched in time (an intersection may keep almost none)'));
  const merged = mergeTraces(traces, positionals, { minRuns });
  writeTrace(out, merged);
  const pages = recordCount(merged);
  process.stdout.write(`${out}: ${pages} pages (${mib(pages * 4096)}) touched in at least ${minRuns} of ${positionals.length} run(s)\n`);
  return 0;
}

function help(): number {
  process.stdout.write(`${HELP}\n`);
  return 0;
}

export const traceTool: Tool = async (argv) => {
  const [sub, ...rest] = argv;
  if (sub === 'show') return show(rest);
  if (sub === 'merge') return merge(rest);
  if (sub === '--help' || sub === '-h') return help();
  if (sub === undefined) throw new UsageError('trace needs a command: show or merge; see snapfault trace --help');
  const near = nearest(sub, ['show', 'merge']);
  throw new UsageError(`unknown command 'trace ${sub}': ${near ? `did you mean trace ${near}?` : 'expected trace show or trace merge; see snapfault trace --help'}`);
};

const REPORT_HELP = `Usage: snapfault report <trace> -o <file.svg> [--force]

Draws a recorded restore (--record) as one self-contained SVG to open in a
browser: a heat map of guest memory (pages faulted in, zero, prefetched,
removed, untouched) and a timeline of faults with the prefetch progress. A
merged trace (trace merge) has no times: its report has the heat map only.
-o replaces an existing SVG file or empty file; any other file only with
--force, and never the trace drawn.`;

/** An SVG file, by its start: what report may replace without --force. */
const svgOutput = (trace: string): OutputKind => ({
  name: 'an SVG file', recognise: (head) => /^\uFEFF?\s*</.test(head.toString('utf8')) && head.toString('utf8').includes('<svg'),
  suggestedName: `${basename(trace).replace(/\.trace$/, '')}.svg`,
});

export const reportTool: Tool = async (argv) => {
  const { values, positionals } = parseTool(argv, 'report', { output: { type: 'string', short: 'o', path: true }, force: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(`${REPORT_HELP}\n`);
    return 0;
  }
  const path = onePositional(positionals, 'report', '<trace>');
  const out = values.output;
  if (!out) throw new UsageError('report needs -o <file.svg>; see snapfault report --help');
  checkOutput({ option: '-o', path: out, kind: svgOutput(path), inputs: [{ path, what: 'the trace to draw' }], force: values.force });
  const svg = renderReport(readWarned(path, 'the faults it draws are only those'), { title: basename(path) });
  writeFileAtomic(out, svg);
  process.stdout.write(`${out}: report of ${path} written (${(svg.length / 1024).toFixed(0)} KiB)\n`);
  return 0;
};
