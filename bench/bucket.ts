// The real Firecracker (the kit) restoring from a bucket (Swift, started by
// scripts/object-store.sh) beside the same restore from a local compressed
// file: stores of 32 KiB chunks (a folder store's default) and 512 KiB ones
// (a bucket store's; BENCH_CHUNK_KIB for others), each through a cold disk
// cache (on demand and --prefetch replay:) and a warm one (replay:); chunks
// of 128 KiB and more also through a proxy adding 20 ms before each request
// (a first byte of S3's order). Rounds rotate through the modes; medians;
// ratios to the compressed file with the same policy, for Firecracker's
// PUT /snapshot/load and for load to the guest's verdict. GETs and bytes
// fetched come from the handler's own end-of-VM line (--log-format json), and
// the bytes are set against the compressed size of the pages the guest
// touched; the store's CPU is its processes' user and system time during
// the restore (/proc). Stores keep their chunks in packs (the default); the
// cold replay also from a store of the same chunks each an object of its
// own (--pack-mib 0), where no GET can bring two chunks.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SNAPFAULT } from '../test/helpers/paths.js';
import { q, sh, kitProblem, KitSnapshot } from '../test/helpers/firecracker.js';
import { ensureObjectStore } from '../test/helpers/object-store.js';
import { CountingProxy } from '../test/helpers/counting-proxy.js';
import { pack } from '../src/compressed/pack.js';
import { S3Store } from '../src/store/s3-store.js';
import { readChainOf, flattenChain } from '../src/store/chain.js';
import { PAGE_IS_ZERO } from '../src/store/manifest.js';
import { storedLength } from '../src/compressed/format.js';
import { readTrace } from '../src/trace/trace-file.js';
import { workingSet } from '../src/trace/working-set.js';
import { median, tmpPath } from './harness.js';

const ROUNDS = Number(process.env.BENCH_FC_ROUNDS ?? 3);
const DELAY_MS = 20;
/** Chunk sizes to compare (BENCH_CHUNK_KIB=32,256 for others). */
const CHUNK_KIB = (process.env.BENCH_CHUNK_KIB ?? '32,512').split(',').map(Number);
// BENCH_BUCKET_MODES=REGEX runs only the bucket rows whose name matches.
const MiB = 1 << 20;

export interface BucketRow {
  mode: string;
  /** Firecracker's PUT /snapshot/load, request to answer. */
  loadMs: number;
  /** Against the local compressed file's load with the same policy. */
  loadVsCompressed: number;
  verifiedMs: number;
  /** Against the local compressed file with the same policy. */
  vsCompressed: number;
  gets: number | null;
  fetchedBytes: number | null;
  /** Bytes fetched over the compressed size of the pages the guest touched (replay rows). */
  fetchedVsTouched: number | null;
  /** CPU the object store's processes used during the restore (ms), or null for a local file. */
  storeCpuMs: number | null;
  /** ms between the handler starting to fetch ahead and Firecracker's handshake (replay rows). */
  headStartMs: number | null;
}

interface Mode {
  name: string;
  /** The handler command; `log` is where it writes its JSON log, or null. */
  handler: (log: string) => string[];
  baseline: 'on demand' | 'replay';
  fetches: boolean;
  touchedBytes?: number;
}

/** The GETs and bytes the handler's end-of-VM line counts (all this handler fetched while the VM was served). */
interface Fetches {
  gets: number;
  bytes: number;
  /** ms from the handler queueing the policy's chunks (having opened the snapshot) to Firecracker's handshake; null when it queued none before. */
  headStartMs: number | null;
}

/** From the handler's JSON log: its VM's GETs and bytes (end line), and how long before the handshake it began fetching ahead. */
function fetchesOf(log: string): Fetches | null {
  if (!existsSync(log)) return null;
  let aheadAt: number | null = null;
  let connectedAt: number | null = null;
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as { event?: string; when?: string; time: string; gets?: number; getBytes?: number };
    if (o.event === 'fetch_ahead' && o.when === 'start') aheadAt = Date.parse(o.time);
    if (o.event === 'vm_connected') connectedAt = Date.parse(o.time);
    if (o.event !== 'vm_end') continue;
    if (typeof o.gets === 'number' && typeof o.getBytes === 'number') {
      return { gets: o.gets, bytes: o.getBytes, headStartMs: aheadAt !== null && connectedAt !== null ? connectedAt - aheadAt : null };
    }
  }
  return null;
}

/** The compressed bytes of the pages in `trace`'s working set: each page's share of its stored chunk. */
async function touchedCompressedBytes(store: string, endpoint: string, trace: string): Promise<number> {
  const s = await S3Store.open(store, { endpoint });
  try {
    const view = flattenChain(await readChainOf(s, 'snap'));
    const ppc = view.chunkBytes / 4096;
    let bytes = 0;
    for (const p of workingSet(readTrace(trace))) {
      const v = view.index[p];
      if (v === PAGE_IS_ZERO) continue;
      bytes += storedLength(view.chunks[Math.floor(v / ppc)].stored) / ppc;
    }
    return bytes;
  } finally {
    await s.close();
  }
}

export async function benchBucket(): Promise<BucketRow[] | null> {
  const problem = kitProblem();
  if (problem) {
    process.stdout.write(`## Real Firecracker from a bucket\n\nskipped: ${problem}\n\n`);
    return null;
  }
  const snap = new KitSnapshot(16, 128);
  await snap.ensure();
  const os = await ensureObjectStore();
  // The bench reads the stores' manifests itself, with the same credentials.
  Object.assign(process.env, os.env);
  const proxy = await CountingProxy.start(os.endpoint);
  proxy.gate = async () => {
    await new Promise((r) => setTimeout(r, DELAY_MS));
    return 'pass';
  };
  try {
    const restore = async (handler: string[], what: string): Promise<void> => {
      const r = await snap.restore(handler, os.env);
      if (!r.pass) throw new Error(`${what} failed:\n${r.output}`);
    };
    const packed = join(snap.dir, '..', 'bench-mem-16-128.sfz');
    if (!existsSync(packed)) await pack(snap.mem, packed);
    const packedTrace = tmpPath('packed.trace');
    await restore(sh(`exec ${q(SNAPFAULT)} "$1" ${q(packed)}`), 'warming the compressed file');
    await restore(sh(`exec ${q(SNAPFAULT)} --record ${q(packedTrace)} "$1" ${q(packed)}`), 'recording the working set (compressed file)');
    const modes: Mode[] = [
      { name: 'local compressed file, on demand', handler: () => sh(`exec ${q(SNAPFAULT)} "$1" ${q(packed)}`), baseline: 'on demand', fetches: false },
      { name: 'local compressed file, `--prefetch replay:`', handler: () => sh(`exec ${q(SNAPFAULT)} --prefetch ${q(`replay:${packedTrace}`)} "$1" ${q(packed)}`), baseline: 'replay', fetches: false },
    ];
    const bucket = await os.newBucket('bench');
    let n = 0;
    for (const kib of CHUNK_KIB) {
      const store = `s3://${bucket}/c${kib}`;
      const loose = `s3://${bucket}/c${kib}-loose`;
      for (const [at, packing] of [[store, []], [loose, ['--pack-mib', '0']]] as const) {
        const put = spawnSync(SNAPFAULT, ['store', 'put', snap.mem, 'snap', '--chunk-kib', String(kib), ...packing, '--store', at, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env: { ...process.env, ...os.env } });
        if (put.status !== 0) throw new Error(`store put failed: ${put.stderr}`);
      }
      const from = (at: string) => (endpoint: string, cache: string | null, extra: string) => (log: string): string[] =>
        sh(`exec ${q(SNAPFAULT)} --store ${q(at)} --s3-endpoint ${q(endpoint)} --cache-dir ${q(cache ?? tmpPath(`cache-${n++}`))} --log-format json ${extra} "$1" snap 2>${q(log)}`);
      const via = from(store);
      // The working set, recorded through this store over a warm cache (which the warm rows then use).
      const warm = tmpPath(`cache-warm-${kib}`);
      const trace = tmpPath(`bucket-${kib}.trace`);
      await restore(via(os.endpoint, warm, '')(tmpPath('warming.log')), `warming the ${kib} KiB cache`);
      await restore(via(os.endpoint, warm, `--record ${q(trace)}`)(tmpPath('recording.log')), `recording the working set (${kib} KiB)`);
      const touchedBytes = await touchedCompressedBytes(store, os.endpoint, trace);
      const replay = `--prefetch ${q(`replay:${trace}`)}`;
      const label = `bucket, ${kib} KiB chunks`;
      modes.push(
        { name: `${label}, cold cache, on demand`, handler: via(os.endpoint, null, ''), baseline: 'on demand', fetches: true },
        { name: `${label}, cold cache, on demand, \`--fetch-readahead 0\``, handler: via(os.endpoint, null, '--fetch-readahead 0'), baseline: 'on demand', fetches: true },
        { name: `${label}, cold cache, \`--prefetch replay:\``, handler: via(os.endpoint, null, replay), baseline: 'replay', fetches: true, touchedBytes },
        { name: `${label} each an object (\`--pack-mib 0\`), cold cache, \`--prefetch replay:\``, handler: from(loose)(os.endpoint, null, replay), baseline: 'replay', fetches: true, touchedBytes },
        { name: `${label}, warm disk cache, \`--prefetch replay:\``, handler: via(os.endpoint, warm, replay), baseline: 'replay', fetches: true },
      );
      if (kib >= 128) {
        modes.push(
          { name: `${label}, +${DELAY_MS} ms a request, cold, on demand`, handler: via(proxy.endpoint, null, ''), baseline: 'on demand', fetches: true },
          { name: `${label}, +${DELAY_MS} ms a request, cold, on demand, \`--fetch-readahead 0\``, handler: via(proxy.endpoint, null, '--fetch-readahead 0'), baseline: 'on demand', fetches: true },
          { name: `${label}, +${DELAY_MS} ms a request, cold, \`--prefetch replay:\``, handler: via(proxy.endpoint, null, replay), baseline: 'replay', fetches: true, touchedBytes },
        );
      }
    }
    // BENCH_BUCKET_MODES=REGEX: only the bucket rows whose name matches (the two local files are the baselines, always run).
    const only = process.env.BENCH_BUCKET_MODES ? new RegExp(process.env.BENCH_BUCKET_MODES) : null;
    if (only) modes.splice(2, modes.length, ...modes.slice(2).filter((m) => only.test(m.name)));
    const samples = modes.map(() => [] as number[]);
    const loads = modes.map(() => [] as number[]);
    const fetched = modes.map(() => [] as Fetches[]);
    const storeCpu = modes.map(() => [] as number[]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < modes.length; k++) {
        const i = (k + round) % modes.length;
        const log = tmpPath(`handler-${i}-${round}.log`);
        const cpuBefore = os.cpuMs();
        const r = await snap.restore(modes[i].handler(log), os.env);
        if (modes[i].fetches) storeCpu[i].push(os.cpuMs() - cpuBefore);
        if (!r.pass) throw new Error(`${modes[i].name}: the restore failed:\n${r.output}\n${existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : ''}`);
        samples[i].push(r.verifiedMs);
        loads[i].push(r.loadMs);
        const f = modes[i].fetches ? fetchesOf(log) : null;
        if (f) fetched[i].push(f);
        rmSync(log, { force: true });
      }
    }
    const baseline = { 'on demand': median(samples[0]), replay: median(samples[1]) };
    const loadBaseline = { 'on demand': median(loads[0]), replay: median(loads[1]) };
    const rows: BucketRow[] = modes.map((m, i) => {
      const gets = fetched[i].length ? median(fetched[i].map((f) => f.gets)) : null;
      const bytes = fetched[i].length ? median(fetched[i].map((f) => f.bytes)) : null;
      return {
        mode: m.name, loadMs: median(loads[i]), loadVsCompressed: median(loads[i]) / loadBaseline[m.baseline], verifiedMs: median(samples[i]), vsCompressed: median(samples[i]) / baseline[m.baseline], gets, fetchedBytes: bytes,
        fetchedVsTouched: m.touchedBytes && bytes !== null ? bytes / m.touchedBytes : null,
        storeCpuMs: storeCpu[i].length ? median(storeCpu[i]) : null,
        headStartMs: fetched[i].some((f) => f.headStartMs !== null) ? median(fetched[i].map((f) => f.headStartMs ?? 0)) : null,
      };
    });
    process.stdout.write(`## Real Firecracker from a bucket (128 MiB VM, 16 MiB guest buffer checked; ${ROUNDS} rounds, medians; unpinned)\n\n`);
    process.stdout.write('| from | PUT /snapshot/load | vs local compressed | load -> guest verified | vs local compressed file, same policy | GETs | fetched | fetched / compressed touched pages | the store\'s CPU | fetching before the handshake |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n');
    for (const r of rows) {
      process.stdout.write(`| ${r.mode} | ${r.loadMs.toFixed(1)} ms | ${r.loadVsCompressed.toFixed(2)}x | ${r.verifiedMs} ms | ${r.vsCompressed.toFixed(2)}x | ${r.gets ?? ''} | ${r.fetchedBytes === null ? '' : `${(r.fetchedBytes / MiB).toFixed(1)} MiB`} | ${r.fetchedVsTouched === null ? '' : `${r.fetchedVsTouched.toFixed(2)}x`} | ${r.storeCpuMs === null ? '' : `${r.storeCpuMs} ms`} | ${r.headStartMs === null ? '' : `${r.headStartMs} ms`} |\n`);
    }
    process.stdout.write('\n');
    return rows;
  } finally {
    await proxy.stop();
    os.release();
  }
}
