// Fetches a store's chunks from its bucket into the disk cache, off the fault
// workers' path: the fault that needs a chunk is parked (src/worker/
// parked-faults.ts) while this runs on the main thread. Concurrent requests
// for one chunk make one GET: in this process through a map of fetches under
// way, across the host's handler processes through a lock file beside the
// cache. A response is checked against the chunk's name (SHA-256) before it
// is cached, so a truncated or wrong object is never kept nor served. A
// failed GET is tried again, with backoff and jitter, until the timeout. A GET
// still unanswered past the recent p99 gets a second one beside it (hedged,
// within a budget), and the first answer wins: one slow or stuck request
// does not hold a vCPU for the whole timeout. Chunks that lie side by side in
// one pack object come in one ranged GET (fetchRun), each checked on its own;
// one that fails is fetched again alone.
import { openSync, closeSync, unlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StoreError } from '../errors.js';
import type { DiskCache } from './disk-cache.js';
import type { ChunkAt } from './store.js';

/** Where the chunks come from: a bucket (S3Store). */
export interface ChunkSource {
  readChunk(at: ChunkAt, signal?: AbortSignal): Promise<Buffer>;
  /** Bytes [offset, offset + length) of a pack, in one ranged GET; `what` names them in errors. */
  readPacked(id: string, offset: number, length: number, signal: AbortSignal | undefined, what: string): Promise<Buffer>;
}

/** What is wrong with a chunk's stored bytes, or null: they are the chunk. */
export type ChunkCheckFn = (at: ChunkAt, stored: Buffer) => string | null;

/** --fetch-hedge: after the recent p99 ('auto'), never, or after a fixed delay (ms). */
export type HedgePolicy = 'auto' | 'off' | number;

/** Why a chunk could not be fetched in time: the last error, one line. */
export class FetchError extends Error {}

/** A GET still running at the deadline: not an error of its own, the one before it (if any) is the one to tell. */
class Deadline extends Error {}

const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;
/** How often a process waiting for a chunk another process is fetching looks again. */
const POLL_MS = 20;
/** Hedging: GETs answered before the recent p99 is trusted; the delay until then; its floor (a hedge sooner than this is noise). */
const HEDGE_MIN_SAMPLES = 20;
const HEDGE_INITIAL_MS = 500;
const HEDGE_FLOOR_MS = 20;
/** At most this many GETs beside the first for one fetch attempt. */
const MAX_HEDGES = 2;
/** The budget: each first GET earns this share of a hedge, up to a burst of HEDGE_BURST (hedges stay near 5% of GETs when the store slows for all). */
const HEDGE_SHARE = 0.05;
const HEDGE_BURST = 5;
/** A ranged GET of several chunks is hedged this much later for each of these bytes it asks for. */
const RUN_HEDGE_UNIT = 512 << 10;
/** Latencies kept for the p99. */
const LATENCY_WINDOW = 256;

/** Upper bounds (s) of the GET latency histogram's buckets: a nearby store answers in ms, S3 in tens of ms, a struggling one in seconds. */
export const GET_LATENCY_BOUNDS_S = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

export interface FetchStats {
  /** GETs answered, their bytes and seconds in all; GETs that failed (or whose answer was not the chunk). */
  gets: number;
  /** Of those, ranged GETs of chunks side by side in a pack, and the chunks they brought. */
  runs: number;
  runChunks: number;
  bytes: number;
  seconds: number;
  failures: number;
  /** Requests answered from the disk cache after all (landed meanwhile, or fetched by another process). */
  cached: number;
  /** Chunks whose faults are waiting now. */
  inFlight: number;
  /** GETs answered, by latency: one count per GET_LATENCY_BOUNDS_S bucket and one past the last (not cumulative). */
  latency: number[];
  /** GETs started beside one still unanswered past the recent p99 (one abandoned when the first answered may never have been sent), and those of them answered first. */
  hedges: number;
  hedgesWon: number;
}

export function noFetches(): FetchStats {
  return { gets: 0, runs: 0, runChunks: 0, bytes: 0, seconds: 0, failures: 0, cached: 0, inFlight: 0, latency: new Array<number>(GET_LATENCY_BOUNDS_S.length + 1).fill(0), hedges: 0, hedgesWon: 0 };
}

/** The latencies of the last LATENCY_WINDOW answered GETs. */
class RecentLatencies {
  private readonly ms = new Float64Array(LATENCY_WINDOW);
  private count = 0;

  add(ms: number): void {
    this.ms[this.count++ % LATENCY_WINDOW] = ms;
  }

  /** Their 99th percentile, or null with too few to say. */
  p99(): number | null {
    const n = Math.min(this.count, LATENCY_WINDOW);
    if (n < HEDGE_MIN_SAMPLES) return null;
    const sorted = this.ms.slice(0, n).sort();
    return sorted[Math.floor(0.99 * (n - 1))];
  }
}

export class ChunkFetcher {
  private readonly underWay = new Map<string, Promise<number>>();
  readonly stats: FetchStats = noFetches();
  private readonly recent = new RecentLatencies();
  private hedgeBudget = HEDGE_BURST;

  constructor(private readonly source: ChunkSource, private readonly cache: DiskCache, private readonly timeoutMs: number, private readonly hedge: HedgePolicy = 'auto') {}

  /**
   * Resolves once the chunk is in the disk cache, with the bytes this call's
   * GET brought (0 when it joined a fetch under way or found the chunk
   * cached); `check` says what is wrong with a response (null: it is the
   * chunk). FetchError after the timeout.
   */
  fetch(at: ChunkAt, check: ChunkCheckFn): Promise<number> {
    const joined = this.underWay.get(at.hex);
    if (joined) return joined.then(() => 0);
    return this.track(at, this.fetchOnce(at, check, Date.now() + this.timeoutMs));
  }

  /** A fetch of this chunk is under way in this process. */
  busy(hex: string): boolean {
    return this.underWay.has(hex);
  }

  /**
   * Chunks stored one right after another in one pack, none under way here:
   * fetched in one ranged GET, each checked and cached on its own (one that
   * fails its check is fetched again alone, as is every one when the GET
   * fails). One promise a chunk, as fetch gives. Fetched one by one when
   * another process is fetching any of them.
   */
  fetchRun(run: ChunkAt[], check: ChunkCheckFn): Array<Promise<number>> {
    const alone = (): Array<Promise<number>> => run.map((at) => this.fetch(at, check));
    if (run.length < 2 || run.some((at) => this.underWay.has(at.hex))) return alone();
    const releases: Array<() => void> = [];
    for (const at of run) {
      const release = this.lock(at.hex);
      if (!release) {
        for (const r of releases) r();
        return alone();
      }
      releases.push(release);
    }
    const deadline = Date.now() + this.timeoutMs;
    const first = run[0];
    const last = run[run.length - 1];
    const length = last.offset + last.length - first.offset;
    const what = `chunks ${first.hex.slice(0, 12)}..${last.hex.slice(0, 12)}`;
    // A run takes longer than one chunk's GET: hedged later in proportion (RUN_HEDGE_UNIT), and kept out of the p99 that hedges single GETs.
    const scale = Math.max(1, length / RUN_HEDGE_UNIT);
    const read = (signal: AbortSignal): Promise<Buffer> => this.source.readPacked(first.pack as string, first.offset, length, signal, what);
    // Each chunk is cached (or not) before the locks go: another process then finds it there, or fetches it. -1: fetch it again alone.
    const landed = beforeDeadline(this.hedgedRead(read, deadline, scale), deadline).then((body) => {
      this.stats.runs++;
      this.stats.runChunks += run.length;
      return run.map((at) => {
        const stored = body.subarray(at.offset - first.offset, at.offset - first.offset + at.length);
        try {
          if (check(at, stored) === null) {
            this.cache.insert(at.hex, stored);
            return stored.length;
          }
        } catch { /* the cache could not take it (a full disk): told by the fetch alone, which tries until the timeout */ }
        this.stats.failures++;
        return -1;
      });
    }, () => {
      this.stats.failures++;
      return run.map(() => -1);
    }).finally(() => {
      for (const r of releases) r();
    });
    return run.map((at, i) => this.track(at, landed.then((sizes) => (sizes[i] >= 0 ? sizes[i] : this.fetchOnce(at, check, deadline)))));
  }

  /** A fetch of `at` under way until `p` settles: others asking for it join it. */
  private track(at: ChunkAt, p: Promise<number>): Promise<number> {
    this.stats.inFlight++;
    const tracked = p.finally(() => {
      this.underWay.delete(at.hex);
      this.stats.inFlight--;
    });
    this.underWay.set(at.hex, tracked);
    return tracked;
  }

  /** The bytes fetched, or 0 when the chunk turned out to be cached (landed meanwhile, or another process fetched it). */
  private async fetchOnce(at: ChunkAt, check: ChunkCheckFn, deadline: number): Promise<number> {
    const hex = at.hex;
    let last = 'no answer in time';
    for (let attempt = 0; ; attempt++) {
      if (this.cache.has(hex)) {
        this.stats.cached++;
        this.cache.touch(hex);
        return 0;
      }
      const release = this.lock(hex);
      if (release) {
        try {
          const stored = await beforeDeadline(this.hedgedRead((signal) => this.source.readChunk(at, signal), deadline), deadline);
          const wrong = check(at, stored);
          if (wrong === null) {
            this.cache.insert(hex, stored);
            return stored.length;
          }
          this.stats.failures++;
          last = wrong;
        } catch (e) {
          this.stats.failures++;
          if (!(e instanceof Deadline)) last = e instanceof StoreError ? e.message.replace(/^store \S+: /, '') : (e as Error).message;
        } finally {
          release();
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new FetchError(last);
      // Another process is fetching it: look again soon. A failure: back off, with jitter, so that many handlers do not retry in step.
      const wait = release ? Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt) * (0.5 + Math.random()) : POLL_MS;
      await new Promise((r) => setTimeout(r, Math.min(left, wait)));
    }
  }

  /**
   * One GET of the chunk, and up to MAX_HEDGES more beside it while none has
   * answered: each after the recent p99 (HEDGE_INITIAL_MS until enough GETs
   * say what it is) or --fetch-hedge's delay, if the budget allows. The first answer wins and the
   * others are abandoned (their sockets and request slots freed, not held until a timeout), as all
   * are at the deadline. Rejects once every GET sent has failed.
   */
  private hedgedRead(read: (signal: AbortSignal) => Promise<Buffer>, deadline: number, scale = 1): Promise<Buffer> {
    this.hedgeBudget = Math.min(HEDGE_BURST, this.hedgeBudget + HEDGE_SHARE);
    return new Promise<Buffer>((resolve, reject) => {
      let pending = 0;
      let sent = 0;
      let settled = false;
      let timer: NodeJS.Timeout | null = null;
      // The GETs still unanswered: abandoning one that has answered could close a socket kept alive for the next.
      const unanswered = new Set<AbortController>();
      const abandonAll = (): void => {
        for (const g of unanswered) g.abort();
      };
      let expired = false;
      const atDeadline = setTimeout(() => {
        expired = true;
        abandonAll();
      }, Math.max(0, deadline - Date.now()));
      const finish = (): void => {
        settled = true;
        if (timer) clearTimeout(timer);
        clearTimeout(atDeadline);
        abandonAll();
      };
      const send = (hedge: boolean): void => {
        pending++;
        sent++;
        const t = performance.now();
        const get = new AbortController();
        unanswered.add(get);
        read(get.signal).finally(() => unanswered.delete(get)).then((stored) => {
          this.answered(stored.length, performance.now() - t, scale === 1);
          if (settled) return;
          finish();
          if (hedge) this.stats.hedgesWon++;
          resolve(stored);
        }, (e: unknown) => {
          if (--pending > 0 || settled) return;
          finish();
          // Abandoned at the deadline: the error to tell is the one before (fetchOnce keeps it), not the abandoning.
          reject(expired ? new Deadline('no answer in time') : e);
        });
      };
      const arm = (): void => {
        timer = setTimeout(() => {
          if (settled || sent > MAX_HEDGES || Date.now() >= deadline) return;
          if (this.hedgeBudget >= 1) {
            this.hedgeBudget--;
            this.stats.hedges++;
            send(true);
          }
          arm();
        }, this.hedgeDelayMs() * scale);
      };
      send(false);
      if (this.hedge !== 'off') arm();
    });
  }

  private hedgeDelayMs(): number {
    return typeof this.hedge === 'number' ? this.hedge : Math.max(HEDGE_FLOOR_MS, this.recent.p99() ?? HEDGE_INITIAL_MS);
  }

  /** An answered GET, counted whether it won or not: its bytes were fetched all the same. */
  private answered(bytes: number, ms: number, single: boolean): void {
    if (single) this.recent.add(ms);
    this.stats.gets++;
    this.stats.bytes += bytes;
    this.stats.seconds += ms / 1000;
    const bucket = GET_LATENCY_BOUNDS_S.findIndex((b) => ms / 1000 <= b);
    this.stats.latency[bucket < 0 ? GET_LATENCY_BOUNDS_S.length : bucket]++;
  }

  /** The host-wide right to fetch this chunk (a file made exclusively), or null while another process holds it. */
  private lock(hex: string): (() => void) | null {
    const path = join(this.cache.dir, 'fetching', hex);
    try {
      closeSync(openSync(path, 'wx'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // One left by a process killed mid-fetch stops counting after a timeout's length.
      try {
        if (Date.now() - statSync(path).mtimeMs > this.timeoutMs) unlinkSync(path);
      } catch { /* released meanwhile */ }
      return null;
    }
    return () => {
      try {
        unlinkSync(path);
      } catch { /* gone */ }
    };
  }
}

/** `p`, or a rejection at the deadline (p goes on, unwatched). */
function beforeDeadline<T>(p: Promise<T>, deadline: number): Promise<T> {
  p.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Deadline('no answer in time')), Math.max(0, deadline - Date.now()));
    p.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}
