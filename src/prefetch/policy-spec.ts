// `--prefetch POLICY`: parsed on the command line, prepared once at start
// (traces read, modules compiled and checked) so a wrong policy fails before
// any VM connects, then posted to the prefetch worker.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compilePolicy } from './policy-abi.js';
import { readTrace, recordedWhilePrefetching, prefetchRecordedWarning } from '../trace/trace-file.js';
import { workingSet, replayRanges } from '../trace/working-set.js';
import { PolicyError, UsageError, BuildMissingError } from '../errors.js';

export type PrefetchSpec =
  | { kind: 'none' }
  | { kind: 'readahead' }
  | { kind: 'replay'; trace: string }
  | { kind: 'all'; trace: string | null }
  | { kind: 'module'; path: string };

/** What the prefetch worker runs (structured-cloneable). */
export type PreparedPolicy =
  | { kind: 'replay'; name: string; ranges: Uint32Array }
  | { kind: 'all'; name: string; ranges: Uint32Array }
  | { kind: 'wasm'; name: string; module: WebAssembly.Module; reactive: true };

export const PREFETCH_USAGE = 'expected none, readahead, replay:TRACE, all, all:TRACE or a policy module ./NAME.wasm';

export function parsePrefetch(v: string): PrefetchSpec {
  if (v === 'none' || v === 'readahead' || v === 'all') return v === 'all' ? { kind: 'all', trace: null } : { kind: v };
  if (v.startsWith('replay:') && v.length > 7) return { kind: 'replay', trace: v.slice(7) };
  if (v.startsWith('all:') && v.length > 4) return { kind: 'all', trace: v.slice(4) };
  if (v.endsWith('.wasm')) return { kind: 'module', path: v };
  throw new UsageError(`--prefetch ${v}: ${PREFETCH_USAGE}`);
}

const readaheadPath = fileURLToPath(new URL('../../policies/readahead.wasm', import.meta.url));

export interface PreparedPrefetch {
  policy: PreparedPolicy;
  /** Warnings for the log (a trace recorded while prefetching, say). */
  notes: string[];
}

/** Reads and checks what the policy needs; `snapshotBytes` is the served snapshot's memory size. */
export function preparePrefetch(spec: Exclude<PrefetchSpec, { kind: 'none' }>, snapshotBytes: bigint, snapshotKey: Buffer | null = null): PreparedPrefetch {
  const notes: string[] = [];
  const traceRanges = (path: string): Uint32Array => {
    const t = readTrace(path);
    if (t.snapshotBytes !== snapshotBytes) {
      throw new PolicyError(`trace ${path} was recorded from a ${t.snapshotBytes}-byte snapshot but the served one has ${snapshotBytes} bytes: record it again from this snapshot`);
    }
    if (recordedWhilePrefetching(t)) notes.push(prefetchRecordedWarning(path));
    // Another snapshot of the same size (a layer, a later Full one): its working set may still fit, so a warning.
    if (t.snapshotKey && snapshotKey && !t.snapshotKey.equals(snapshotKey)) {
      notes.push(`trace ${path} was recorded from another snapshot (${t.snapshotKey.toString('hex')}…) than the one served (${snapshotKey.toString('hex')}…): its pages may not be the ones this guest needs`);
    }
    const ws = workingSet(t);
    if (ws.length === 0) notes.push(`trace ${path} holds no touched pages: nothing to replay`);
    return replayRanges(ws);
  };
  switch (spec.kind) {
    case 'replay':
      return { policy: { kind: 'replay', name: `replay:${spec.trace}`, ranges: traceRanges(spec.trace) }, notes };
    case 'all':
      return { policy: { kind: 'all', name: spec.trace ? `all:${spec.trace}` : 'all', ranges: spec.trace ? traceRanges(spec.trace) : new Uint32Array(0) }, notes };
    case 'readahead':
      return { policy: { kind: 'wasm', name: 'readahead', module: compilePolicy(readBuiltIn(readaheadPath), 'readahead'), reactive: true }, notes };
    case 'module': {
      let bytes: Uint8Array;
      try {
        bytes = readFileSync(spec.path);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new PolicyError(code === 'ENOENT' ? `prefetch policy ${spec.path} does not exist; build one as docs/prefetch.md shows` : `cannot read the prefetch policy ${spec.path}: ${(e as Error).message}`);
      }
      return { policy: { kind: 'wasm', name: spec.path, module: compilePolicy(bytes, spec.path), reactive: true }, notes };
    }
  }
}

function readBuiltIn(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch {
    throw new BuildMissingError(path);
  }
}
