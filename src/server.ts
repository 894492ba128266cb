// The handler: accepts Firecracker connections, checks each handshake, builds
// the VM's page table and hands the VM to a fault worker. One VM's failure is
// logged and contained; the others go on.
import { resolve } from 'node:path';
import { rmSync } from 'node:fs';
import { SocketListener } from './socket-listener.js';
import { peerCredentials } from '../native/socket.js';
import { closeFd } from '../native/fd.js';
import { pidfdOpen, pidfdSignal, SIGKILL } from '../native/pidfd.js';
import { mmapAnonymous, munmap, type Mapping } from '../native/mmap.js';
import { compileCore, createSharedMemory, instantiateCore, type Core } from './core/wasm-core.js';
import { Arena } from './core/arena.js';
import { hostPread } from './core/host-pread.js';
import { namedChunkReads } from './core/named-chunks.js';
import { SnapshotCache } from './snapshot/cache.js';
import type { ServedSnapshot } from './snapshot/cache.js';
import { CompressedSnapshot } from './compressed/compressed-snapshot.js';
import { MAX_CHUNK_BYTES, PAGE_BYTES } from './compressed/format.js';
import { receiveHandshake, discardHandshake } from './handshake/receive.js';
import { parseRegions, validateRegions, HUGE_PAGE } from './handshake/regions.js';
import { writeVmTable, readFaultCounts, type FaultCounts } from './vm/vm-table.js';
import { FaultWorkerPool, type WorkerEvent, type WorkerBuffers } from './worker/pool.js';
import { WORKER_STATS_BYTES, WORKER_STAT } from './worker/worker-stats.js';
import type { FatalPolicy, VmStats, EndReason } from './worker/messages.js';
import { HandshakeError, SnapfaultError } from './errors.js';
import type { Logger, LogContext } from './log.js';
import { dupFd } from '../native/fd.js';
import { preparePrefetch, type PrefetchSpec, type PreparedPolicy } from './prefetch/policy-spec.js';
import { Prefetcher } from './prefetch/prefetcher.js';
import { FEED_BYTES, DOORBELL_BYTES } from './prefetch/fault-feed.js';
import { traceOfVm } from './trace/vm-trace.js';
import { writeTrace, recordCount, snapshotKeyOf } from './trace/trace-file.js';
import { epochMs } from './trace/clock.js';
import { fenceWords, leaveCopy } from './vm/fence.js';
import type { GuestRegion } from './handshake/regions.js';
import { StateDir, type StateOwner } from './state/state-dir.js';
import { VmRecord } from './state/vm-record.js';
import { takeUffd } from './state/take-uffd.js';
import { SocketKeeper } from './state/socket-keeper.js';
import { ConnectionVault } from './state/connection-vault.js';
import { standBy } from './state/standby.js';
import { recordVm, mirrorTarget, loadRemoved, wakeAll } from './state/recorded-vm.js';
import { processStartTime, holdsUserfaultfd } from './state/firecracker-process.js';
import { SIGUSR2 } from '../native/pidfd.js';
import { StateError } from './errors.js';
import type { FolderStore } from './store/folder-store.js';
import { storeSnapshotLabel } from './store/store-snapshot.js';
import type { RemoteOptions, RemoteServing, RemoteStats } from './store/remote-serving.js';
import type { FetchStats } from './store/chunk-fetcher.js';
import { PrefetchFetches } from './store/prefetch-fetches.js';
import { prefetchChunkOrder } from './store/prefetch-order.js';
import { DecodeAhead } from './snapshot/decode-ahead.js';

/** A snapshot's identity by content, the same on every host: a store's snapshot has one (its manifest's SHA-256), a file none. */
function contentIdentity(snap: ServedSnapshot): string | null {
  return snap instanceof CompressedSnapshot ? snap.contentIdentity : null;
}

/** The snapshot served, as messages name it. */
function servedLabel(opts: ServerOptions): string {
  if (opts.remote) return `${opts.memPath} in store ${opts.remote.location}`;
  return opts.store ? storeSnapshotLabel(opts.store, opts.memPath) : opts.memPath;
}
import type { ZeroRangeMode } from './worker/zero-ranges.js';

export interface ServerOptions {
  socketPath: string;
  /** The memory file, or with `store` the snapshot's name in it. */
  memPath: string;
  /** Serve snapshots of this store (src/store/): memPath is then a name. */
  store?: FolderStore | null;
  /** Serve the snapshot memPath of a store in a bucket, through a disk cache (src/store/remote-serving.ts). */
  remote?: RemoteOptions | null;
  socketMode: number;
  /** Peer uids allowed besides the handler's own (a jailed Firecracker's uid). */
  allowUids: readonly number[];
  workers: number;
  onFatal: FatalPolicy;
  handshakeTimeoutMs: number;
  zeroScan: boolean;
  /** All-zero ranges of guest memory after the handshake: unregistered from the uffd, mapped as zero pages, or served on demand (src/worker/zero-ranges.ts). */
  zeroRanges: ZeroRangeMode;
  /** Budget of each compressed snapshot's decoded-chunk cache. */
  cacheMiB: number;
  /** Compressed snapshots: install a decoded chunk's other missing pages too. */
  fillAround: boolean;
  /** Serve one Firecracker, then finish (the drop-in form). */
  once: boolean;
  /** Install pages ahead of the guest (docs/prefetch.md). */
  prefetch: PrefetchSpec;
  /** Record each VM's restore to this trace file; `{pid}` becomes Firecracker's pid. */
  record: string | null;
  /** Called with each trace's path before it is written; throws when it must not be (src/output-file.ts checks). */
  checkRecordPath?: (path: string) => void;
  log: Logger;
  /** The prefetch worker's entry module; tests pass one that injects faults (test/helpers/faulty-prefetch-worker.ts). */
  prefetchWorker?: URL;
  /** The fault workers' entry module; tests pass one that injects faults (test/helpers/faulty-fault-worker.ts). */
  faultWorker?: URL;
  /** Record every VM served here, and take over those a handler that is gone recorded (--state-dir). */
  stateDir?: string | null;
  /** With stateDir: ask the handler that owns it to hand its VMs over, and wait for it (--takeover). */
  takeover?: boolean;
  /**
   * With stateDir: when another handler owns it, start completely and wait
   * for that one to exit, then take its VMs over (--standby). Waiting ends
   * (StandbyStopped) when `standbyStop` resolves.
   */
  standby?: boolean;
  standbyStop?: Promise<unknown>;
  /** Called once the standby is ready and waiting (the metrics endpoint says so). */
  onStandingBy?: () => void;
}

/** How a served VM ended, or why its handshake was refused. */
export interface VmOutcome {
  pid: number;
  reason: EndReason | 'refused';
  message: string;
  killed: boolean;
  stats: VmStats | null;
}

/** A VM to serve: its handshake just accepted, or taken over from a handler that is gone. */
interface AdmitVm {
  pid: number;
  pidfd: number;
  uffd: number;
  /** Its connection, or -1 for a VM taken over (its end shows on the pidfd). */
  conn: number;
  regions: readonly GuestRegion[];
  snap: ServedSnapshot;
  t0: number;
  record: VmRecord | null;
  /** Taken over: its removed pages are loaded from its record. */
  adopted: boolean;
}

interface LiveVm {
  pid: number;
  table: number;
  blocks: number[];
  snap: ServedSnapshot;
  regions: readonly GuestRegion[];
  prefetching: boolean;
  t0: number;
  /** Its record in the state directory, or null. */
  record: VmRecord | null;
  /** Served from a bucket: the handler's fetch counts when it connected (its summary gives what was fetched while it was served). */
  fetchesAtStart: FetchStats | null;
  /** Served from a bucket: chunks (and their bytes) fetched because one of its faults asked first. */
  ownChunks: number;
  ownBytes: number;
}

const NO_FAULTS: FaultCounts = {
  copies: 0, zeropages: 0, removedZero: 0, bytes: 0, removeEvents: 0, otherEvents: 0, chunkHits: 0, chunkMisses: 0, filledAround: 0,
  late: 0, prefetched: 0, prefetchedZero: 0, prefetchBytes: 0,
};

/** What the metrics endpoint reports, read from shared memory at scrape time. */
export interface MetricsSnapshot {
  /** Every VM served so far, live ones included. */
  total: FaultCounts;
  live: Array<{ pid: number; counts: FaultCounts }>;
  rejected: ReadonlyMap<string, number>;
  ended: ReadonlyMap<string, number>;
  /** One WORKER_STAT block per fault worker. */
  workers: Float64Array[];
  /** VMs found in the state directory at start, by outcome: taken, gone, refused, failed. */
  takeovers: ReadonlyMap<string, number>;
  /** Serving from a bucket: its fetches and disk cache; null otherwise. */
  fetch: RemoteStats | null;
}

/** ms with µs precision: enough for a log field. */
const ms = (v: number): number => Math.round(v * 1000) / 1000;

/** The fetches counted between two readings of a fetcher's stats. */
function fetchesSince(a: FetchStats, b: FetchStats): Pick<FetchStats, 'gets' | 'runs' | 'runChunks' | 'bytes' | 'seconds' | 'failures' | 'cached' | 'hedges' | 'hedgesWon'> {
  return {
    gets: b.gets - a.gets, runs: b.runs - a.runs, runChunks: b.runChunks - a.runChunks, bytes: b.bytes - a.bytes, seconds: b.seconds - a.seconds, failures: b.failures - a.failures, cached: b.cached - a.cached,
    hedges: b.hedges - a.hedges, hedgesWon: b.hedgesWon - a.hedgesWon,
  };
}

/** A VM's end summary as log fields: the readable line's numbers, for a log pipeline to query. */
function summaryFields(s: VmStats): LogContext {
  return {
    faults: s.copies + s.zeropages + s.removedZero, faultsCopied: s.copies, faultsZero: s.zeropages, faultsRemovedZero: s.removedZero,
    bytesCopied: s.bytes, removeEvents: s.removeEvents, otherEvents: s.otherEvents, eagain: s.eagain, eexist: s.eexist, notRegistered: s.notRegistered, lateFaults: s.late, zeroRanges: s.zeroRanges, zeroRangeBytes: s.zeroRangeBytes,
    prefetchedPages: s.prefetched, prefetchedZeroPages: s.prefetchedZero, prefetchedBytes: s.prefetchBytes,
    chunkHits: s.chunkHits, chunkMisses: s.chunkMisses, filledAroundPages: s.filledAround,
    reads: s.reads, events: s.messages, lastFaultMs: ms(s.lastFaultMs), servedMs: ms(s.servedMs),
    fetchWaits: s.fetchWaits, fetchWaitMs: ms(s.fetchWaitMs), fetchWaitMaxMs: ms(s.fetchWaitMaxMs),
  };
}

/** GETs at once reading ahead on demand (readAhead): a few beside the faults' own (16 at once slowed Firecracker's load here). */
const READAHEAD_GETS = 4;
const MSG_CAPACITY = 64;
/** `1 remove`, `2 removes`: the summary reads as a sentence. */
const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;
/** Sizes in the unit that shows them: 44 KiB, not 0.0 MiB. */
const bytesText = (b: number): string => (b < 1048576 ? `${(b / 1024).toFixed(0)} KiB` : `${(b / 1048576).toFixed(1)} MiB`);

/** Outcomes kept for a library user to look at; the totals in the metrics cover every VM. */
export const RECENT_OUTCOMES = 64;

/** What --on-fatal disconnect leaves behind: said wherever it happens, for an operator to act on. */
function leftRunningText(pid: number): string {
  return `left Firecracker pid ${pid} running, but its guest can no longer fault pages in (stop it, or restore it again)`;
}

export class SnapfaultServer {
  private readonly vms = new Map<number, LiveVm>();
  readonly workerStats: number[] = [];
  private endedTotals: FaultCounts = { ...NO_FAULTS };
  private readonly rejected = new Map<string, number>();
  private readonly endedBy = new Map<string, number>();
  private readonly takeovers = new Map<string, number>();
  /** The state directory, owned while this handler runs (--state-dir). */
  private state: StateDir | null = null;
  private nextId = 1;
  private zeroHugePage: Mapping | null = null;
  private stopped = false;
  /** Drop-in: its one Firecracker has connected and sent its handshake (or had it refused). */
  private claimed = false;
  private resolveOnce: ((o: VmOutcome) => void) | null = null;
  private prefetcher: Prefetcher | null = null;
  /** Created once everything a VM needs is ready (start); none for a drop-in handler that took its VM over. */
  private listener: SocketListener | null = null;
  /** Holds a copy of the listening socket while this handler owns a state directory (src/state/socket-keeper.ts). */
  private keeper: SocketKeeper | null = null;
  /** Keeps each accepted connection until its VM is recorded or refused (src/state/connection-vault.ts). */
  private vault: ConnectionVault | null = null;
  /** The socket is closed; the keeper goes once no handshake is under way. */
  private keeperRetiring = false;
  private handingOver = false;
  private policy: PreparedPolicy | null = null;
  private doorbell = 0;
  /** VMs that ended and wait for the prefetch worker to let go of them. */
  private readonly finishing = new Set<Promise<void>>();
  /** Connections accepted whose handshake is not yet served or refused. */
  private handshaking = 0;
  /** Called once no VM is connected and no handshake is under way (drain). */
  private readonly idleWaiters = new Set<() => void>();
  /** With `once`: resolves when the one VM has ended or was refused. */
  readonly firstOutcome: Promise<VmOutcome>;
  /** Resolves if a fault worker crashed: the handler is then stopping, and its run has failed. */
  readonly crashed: Promise<Error>;
  private resolveCrashed: (e: Error) => void = () => undefined;
  private stopping: Promise<void> | null = null;
  /** The most recent RECENT_OUTCOMES VM outcomes, oldest first: a `serve` running for months keeps no more. */
  readonly outcomes: VmOutcome[] = [];
  /** A store in a bucket being served: its disk cache and fetcher. */
  private remote: RemoteServing | null = null;
  /** Served from a bucket: the chunks --prefetch fetches ahead of the guest; `aheadPlanned`: the snapshots whose policy chunks are queued. */
  private ahead: PrefetchFetches | null = null;
  /** Served from a bucket on demand: the chunks after a fault's, fetched ahead (readAhead). */
  private readahead: PrefetchFetches | null = null;
  /** Until the first VM: the policy's first chunks decoded on this thread (src/snapshot/decode-ahead.ts). */
  private decodeAhead: DecodeAhead | null = null;
  private readonly aheadPlanned = new WeakSet<CompressedSnapshot>();
  /** The fetcher's counts when the chunks were first queued at start: a drop-in VM's end line counts its GETs from there. */
  private fetchesAtOpen: FetchStats | null = null;
  /** Served from a bucket: the timer looking the name up again (--follow). */
  private following: NodeJS.Timeout | null = null;

  private constructor(
    private readonly opts: ServerOptions,
    private readonly core: Core,
    private readonly arena: Arena,
    private readonly cache: SnapshotCache,
    private pool: FaultWorkerPool | null,
  ) {
    this.firstOutcome = new Promise((r) => (this.resolveOnce = r));
    this.crashed = new Promise((r) => (this.resolveCrashed = r));
  }

  static async start(opts: ServerOptions): Promise<SnapfaultServer> {
    // The state directory first: a second handler on it is refused before it does any work.
    const taken = opts.stateDir ? StateDir.take(opts.stateDir) : null;
    if (taken && !(taken instanceof StateDir) && !opts.takeover && !opts.standby) {
      throw new StateError(`state directory ${opts.stateDir} is in use by another snapfault${taken.owner ? ` (pid ${taken.owner.pid})` : ''}: ` +
        'stop it, start this one with --takeover to take its VMs over now, or with --standby to take them over when it exits');
    }
    try {
      return await SnapfaultServer.startOn(opts, taken instanceof StateDir ? taken : null, taken && !(taken instanceof StateDir) ? taken.owner : null);
    } catch (e) {
      if (taken instanceof StateDir) taken.release();
      throw e;
    }
  }

  private static async startOn(opts: ServerOptions, state: StateDir | null, owner: StateOwner | null): Promise<SnapfaultServer> {
    const module = compileCore();
    const memory = createSharedMemory();
    const core = instantiateCore(module, memory, hostPread(memory), namedChunkReads(memory));
    const arena = new Arena(memory);
    // One word the fault workers bump on every batch: background work backs off while it moves.
    const activity = arena.alloc(64);
    // The S3 client is loaded only for a store in a bucket (about 100 ms: docs/store-s3.md).
    const opening = performance.now();
    const remote = opts.remote ? await (await import('./store/remote-serving.js')).RemoteServing.open(opts.remote, opts.memPath, core, arena, opts.cacheMiB * 1024 * 1024) : null;
    if (opts.remote) {
      // Said with its time: opening reads the bucket (store.json, the manifests, the lease) before the socket exists.
      const openMs = performance.now() - opening;
      const line = `opened ${opts.memPath} in store ${opts.remote.location} in ${openMs.toFixed(0)} ms (client, store.json, manifests, lease)`;
      opts.log.info(line, { event: 'store_opened', ms: Math.round(openMs) });
    }
    const cache = new SnapshotCache(core, module, arena, opts.zeroScan, activity, opts.cacheMiB * 1024 * 1024, opts.log, opts.store ?? null, remote);
    // Open the snapshot now so a wrong path fails at start, not at the first VM.
    const first = cache.acquire(opts.memPath);
    cache.release(first);
    let prepared: ReturnType<typeof preparePrefetch> | null = null;
    try {
      prepared = opts.prefetch.kind === 'none' ? null : preparePrefetch(opts.prefetch, first.size, snapshotKeyOf(contentIdentity(first)));
    } catch (e) {
      await cache.close();
      throw e;
    }
    for (const note of prepared?.notes ?? []) opts.log.warn(note, { event: 'prefetch_note' });
    const server = new SnapfaultServer(opts, core, arena, cache, null);
    server.remote = remote;
    server.policy = prepared?.policy ?? null;
    let replay: number[] = [];
    try {
      if (remote && opts.remote) {
        const seams = {
          fetch: (snap: number, run: number[]) => remote.fetchRun(snap, run).map(async (p) => (await p).error),
          extend: (snap: number, run: number[]) => remote.extendRun(snap, run),
          cached: (snap: number, chunk: number) => remote.isCached(snap, chunk),
        };
        server.ahead = new PrefetchFetches(opts.remote.fetchConcurrency, { ...seams, landed: (snap, chunk, error) => server.fetchedAhead(snap, chunk, error) });
        // Read ahead: a few GETs at once, beside the faults' own, each taking its neighbours from the first.
        server.readahead = new PrefetchFetches(READAHEAD_GETS, { ...seams, landed: () => undefined }, 0);
        // The policy's chunks are on their way from now on, while the workers start and Firecracker
        // loads: a drop-in handler is started just before its Firecracker. A standby may never serve.
        if (prepared && !opts.standby && first instanceof CompressedSnapshot) server.planAhead(first, 'start');
      }
      // The policy's first chunks decoded while the workers start and Firecracker starts and loads (a standby may never serve).
      if (prepared && prepared.policy.kind !== 'wasm' && !opts.standby && first instanceof CompressedSnapshot) {
        server.decodeAhead = new DecodeAhead(core, arena, first, prefetchChunkOrder(core, first.descriptor, prepared.policy.ranges, prepared.policy.kind === 'all'));
      }
      // Each worker's own buffers: one stored chunk as read from disk, one 2 MiB page being assembled.
      const scratchBytes = core.fn.lz4Bound(MAX_CHUNK_BYTES);
      const buffers = (): WorkerBuffers => {
        const b = {
          scratch: arena.alloc(scratchBytes, 4096), scratchBytes, staging: arena.alloc(HUGE_PAGE + core.layout.LZ4_DECODE_SLACK, 4096),
          stats: arena.alloc(WORKER_STATS_BYTES),
        };
        server.workerStats.push(b.stats);
        return b;
      };
      server.pool = await FaultWorkerPool.start(opts.workers, module, memory, activity, buffers, (e) => server.onWorkerEvent(e), (e) => server.onWorkerCrash(e), opts.faultWorker);
      cache.onScanned = (bitmap) => server.pool?.zeroesKnown(bitmap);
      if (prepared) {
        server.doorbell = arena.alloc(DOORBELL_BYTES);
        const pb = {
          scratch: arena.alloc(scratchBytes, 4096), scratchBytes, staging: arena.alloc(HUGE_PAGE + core.layout.LZ4_DECODE_SLACK, 4096),
          step: arena.alloc(core.layout.STEP_SIZE), doorbell: server.doorbell,
        };
        server.prefetcher = await Prefetcher.start(module, memory, prepared.policy, pb,
          (id, message) => server.onWorkerEvent({ type: 'warning', id, message }), (e) => server.onPrefetcherCrash(e),
          (snap, chunk) => server.ahead?.want(snap, chunk), opts.prefetchWorker);
      }
      // Everything is ready: only now is a running owner asked to hand over (or, standing by, waited for), so its VMs wait the least.
      server.state = state ?? (opts.standby ? await standingBy(opts) : await handover(opts, owner));
      const kept = server.state ? SocketKeeper.adopt(server.state.path, opts.socketPath) : null;
      const unsettled = kept?.vault?.unsettled() ?? [];
      server.vault = kept?.vault ?? null;
      const adopted = server.state ? server.takeOverRecorded(unsettled) : 0;
      // Ready means serving: the socket appears only now, with the workers
      // started, the core compiled and the snapshot open, so a Firecracker
      // that connects the moment it exists is served at once. A drop-in
      // handler that took its one VM over has no socket to serve.
      if (opts.once && adopted > 0) {
        server.claimed = true;
        // Its one VM is running already: nothing will replay, so the chunks queued at start are not fetched.
        server.ahead?.close();
        server.readahead?.close();
        if (kept) {
          closeFd(kept.fd);
          kept.keeper.stop();
          kept.vault?.close();
          server.vault = null;
        }
        for (const c of unsettled) closeFd(c);
        unsettled.length = 0;
      } else server.listen(kept);
      replay = unsettled;
    } catch (e) {
      server.ahead?.close();
      server.readahead?.close();
      server.decodeAhead?.stop();
      await server.pool?.stop();
      await server.prefetcher?.stop();
      await cache.close();
      if (server.state !== state) server.state?.release();
      throw e;
    }
    server.listener?.start((fd) => void server.onConnection(fd));
    if (opts.remote) server.follow(opts.remote.followMs);
    // Connections the previous handler accepted and never recorded nor refused: served as if just accepted.
    for (const conn of replay) void server.onConnection(conn, false);
    const how = `with ${opts.workers} fault worker(s)` + (prepared ? `, prefetch policy ${prepared.policy.name}` : '') + (opts.record ? `, recording to ${opts.record}` : '');
    if (server.listener) {
      opts.log.info(`listening on ${opts.socketPath}, serving ${servedLabel(opts)} ${how}`,
        { event: 'listening', socket: opts.socketPath, mem: opts.memPath, workers: opts.workers, prefetch: prepared?.policy.name ?? null, record: opts.record });
    } else {
      opts.log.info(`serving the VM taken over ${how}; not listening on ${opts.socketPath}: this drop-in handler's one Firecracker is that VM`,
        { event: 'serving_taken_over', socket: opts.socketPath, workers: opts.workers });
    }
    return server;
  }

  /**
   * Creates the socket, or with a state directory takes back the one a
   * handler that is gone left with its keeper (its queued connections
   * included), and gives it a keeper.
   */
  private listen(kept: ReturnType<typeof SocketKeeper.adopt>): void {
    const { socketPath, socketMode, log } = this.opts;
    if (kept) {
      try {
        this.listener = SocketListener.adopt(socketPath, kept.fd);
        this.keeper = kept.keeper;
        this.vault = kept.vault;
        if (!this.vault) log.warn('the socket keeper left by the previous handler holds no connection vault (an older snapfault): a handshake under way when this handler dies is lost with it', { event: 'socket_keeper' });
        return;
      } catch (e) {
        closeFd(kept.fd);
        kept.keeper.stop();
        kept.vault?.close();
        this.vault = null;
        log.warn(`${(e as Error).message}; creating it anew`, { event: 'socket_keeper' });
      }
    }
    this.listener = SocketListener.create(socketPath, socketMode);
    if (!this.state) return;
    const vault = ConnectionVault.create();
    try {
      this.keeper = SocketKeeper.start(this.state.path, this.listener.fd, vault);
      this.vault = vault;
    } catch (e) {
      vault.close();
      log.warn(`${(e as Error).message}: Firecrackers connecting while this handler dies will be lost with it`, { event: 'socket_keeper' });
    }
  }

  /** Closes the socket for good: its keeper too, or it would keep queueing connections nobody accepts. */
  private closeListener(): void {
    this.listener?.close();
    // The keeper holds the vault: handshakes under way stay protected until they settle (checkIdle lets it go then).
    if (this.handshaking === 0) this.releaseKeeper();
    else this.keeperRetiring = true;
  }

  private releaseKeeper(): void {
    this.keeper?.stop();
    this.keeper = null;
    this.vault?.close();
    this.vault = null;
  }

  /** Stops for a successor started with --takeover: the socket stays bound and kept, every VM recorded. */
  handOver(): Promise<void> {
    this.handingOver = true;
    return this.stop();
  }

  get connectedVms(): number {
    return this.vms.size;
  }

  /** Firecracker pids of the VMs being served now. */
  get connectedPids(): number[] {
    return [...this.vms.values()].map((v) => v.pid);
  }

  /** No VM connected and no handshake under way: nothing depends on this handler. */
  get idle(): boolean {
    return this.vms.size === 0 && this.handshaking === 0;
  }

  /**
   * Stops accepting (the socket is removed: a new Firecracker's connect fails
   * at once, instead of handing its memory to a handler on its way out) and
   * keeps serving the VMs connected, and the handshakes under way. Resolves
   * true once they have all ended, false when `timeoutMs` passes first.
   * stop() releases whatever is left.
   */
  drain(timeoutMs: number): Promise<boolean> {
    this.closeListener();
    if (this.idle) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters.delete(done);
        resolve(false);
      }, timeoutMs);
      this.idleWaiters.add(done);
    });
  }

  private checkIdle(): void {
    // Every connection deposited is settled now: the vault need not keep them.
    if (this.handshaking === 0 && !this.handingOver) {
      this.vault?.empty();
      if (this.keeperRetiring) this.releaseKeeper();
    }
    if (!this.idle) return;
    for (const w of this.idleWaiters) w();
    this.idleWaiters.clear();
  }

  /** Counters for the metrics endpoint: ended VMs' totals plus live VMs' counters, read now. */
  metricsSnapshot(): MetricsSnapshot {
    const live = [...this.vms.values()].map((v) => ({ pid: v.pid, counts: readFaultCounts(this.core, v.table) }));
    const total = { ...this.endedTotals };
    for (const v of live) for (const k of Object.keys(total) as Array<keyof FaultCounts>) total[k] += v.counts[k];
    return {
      total, live, rejected: this.rejected, ended: this.endedBy,
      workers: this.workerStats.map((at) => new Float64Array(this.core.memory.buffer, at, WORKER_STAT.SIZE)),
      takeovers: this.takeovers,
      fetch: this.remote?.stats ?? null,
    };
  }

  /** Bytes of shared WebAssembly memory in use: page tables, bitmaps, buffers. */
  get coreBytesInUse(): number {
    return this.arena.inUse;
  }

  /** `deposit`: put the connection in the vault first (false: it came from the vault, where it still is). */
  private async onConnection(conn: number, deposit = true): Promise<void> {
    // First of all: from here on a successor can serve this connection if this handler dies.
    const kept = this.vault !== null && (!deposit || this.vault.deposit(conn));
    this.handshaking++;
    const pending = { path: null as string | null };
    try {
      await this.serveConnection(conn, pending, kept);
    } finally {
      // Recorded, refused or ignored: either way no longer a handshake a successor would have lost.
      if (pending.path) rmSync(pending.path, { force: true });
      this.handshaking--;
      this.checkIdle();
    }
  }

  private async serveConnection(conn: number, marked: { path: string | null }, kept: boolean): Promise<void> {
    const { log } = this.opts;
    let pid = 0;
    let pidfd = -1;
    let uffd = -1;
    let snap: ServedSnapshot | null = null;
    const blocks: number[] = [];
    let record: VmRecord | null = null;
    // The drop-in form serves exactly one Firecracker: the first connection that sends something. One that sends
    // nothing (another handler's or a script's liveness probe) is not it, so the socket stays open until then.
    let mine = !this.opts.once;
    const claim = (): void => {
      if (mine) return;
      if (this.claimed) throw new HandshakeError('peer', 'this drop-in handler serves one Firecracker and already has it: start one handler per VM, or use snapfault serve');
      this.claimed = mine = true;
      this.closeListener();
    };
    try {
      const cred = peerCredentials(conn);
      pid = cred.pid;
      if (cred.uid !== process.geteuid?.() && !this.opts.allowUids.includes(cred.uid)) {
        claim();
        throw new HandshakeError('uid', `connection from uid ${cred.uid} is not allowed: add --allow-uid ${cred.uid} if that is a jailed Firecracker`);
      }
      let gone = false;
      try {
        pidfd = pidfdOpen(pid);
      } catch {
        gone = true; // a probe that connected and exited; what it sent (if anything) decides
      }
      const startTime = this.state ? processStartTime(pid) : null;
      if (this.state && startTime !== null) marked.path = this.state.markPending(pid, startTime);
      log.debug(`connection from pid ${pid} accepted`, { vm: pid, event: 'accepted' });
      let hs;
      try {
        hs = await receiveHandshake(conn, this.opts.handshakeTimeoutMs, kept);
      } catch (e) {
        if (!(e instanceof HandshakeError && e.silent)) claim();
        throw e;
      }
      uffd = hs.uffd;
      claim();
      if (gone) throw new HandshakeError('peer', `peer pid ${pid} has already exited`);
      if (this.stopped) throw new HandshakeError('peer', 'the handler is shutting down');
      const regions = parseRegions(hs.text, this.core.layout.VM_MAX_REGIONS);
      snap = this.cache.acquire(this.opts.memPath);
      validateRegions(regions, snap.size, servedLabel(this.opts));
      const t0 = epochMs();
      // Recorded before a single fault is served: from here on a successor can take the VM over.
      if (this.state) record = this.recordNew(pid, uffd, regions, snap, t0);
      this.settle(conn, hs.kept);
      this.admit({ pid, pidfd, uffd, conn, regions, snap, t0, record, adopted: false }, blocks);
      const pages = regions.map((r) => `${r.size / BigInt(r.pageSize)}x${r.pageSize === HUGE_PAGE ? '2M' : '4K'}`).join(' + ');
      const bytes = (huge: boolean): number => Number(regions.reduce((n, r) => n + ((r.pageSize === HUGE_PAGE) === huge ? r.size : 0n), 0n));
      log.info(`VM pid ${pid}: serving ${regions.length} region(s), ${pages} pages`, {
        vm: pid, event: 'vm_connected', regions: regions.length, pages4k: bytes(false) / 4096, pages2m: bytes(true) / HUGE_PAGE, guestBytes: bytes(false) + bytes(true),
      });
    } catch (e) {
      if (this.stopped && this.handingOver && record === null) {
        // Left in the vault, unsettled: the successor reads its handshake and serves it.
        log.info(`VM pid ${pid || '?'}: its handshake is left to the next handler`, { ...(pid ? { vm: pid } : {}), event: 'handover' });
        for (const fd of [uffd, conn, pidfd]) closeFd(fd);
        if (snap) this.cache.release(snap);
        for (const b of blocks) this.arena.freeBlock(b);
        return;
      }
      this.settle(conn, true);
      if (e instanceof HandshakeError && e.silent && e.reason === 'closed') {
        // Not a handshake at all: neither refused nor counted.
        log.debug(`connection from pid ${pid || '?'} closed without sending anything: not a Firecracker, ignored`);
        for (const fd of [conn, pidfd]) closeFd(fd);
        return;
      }
      const message = e instanceof SnapfaultError ? e.message : `unexpected error: ${(e as Error).message}`;
      // A VM whose uffd we hold is frozen without us: that is a fatal error for it.
      let killed = false;
      if (uffd >= 0 && this.opts.onFatal === 'kill-peer' && pidfd >= 0) killed = pidfdSignal(pidfd, SIGKILL);
      const leftRunning = uffd >= 0 && !killed && this.opts.onFatal === 'disconnect';
      const fate = killed ? `; killed Firecracker pid ${pid}` : leftRunning ? `; ${leftRunningText(pid)}` : '';
      const reason = e instanceof HandshakeError ? e.reason : 'internal';
      log.error(`VM pid ${pid || '?'}: ${message}${fate}`, { ...(pid ? { vm: pid } : {}), event: 'vm_refused', reason, killed, leftRunning });
      for (const fd of [uffd, conn, pidfd]) closeFd(fd);
      for (const b of blocks) this.arena.freeBlock(b);
      if (snap) this.cache.release(snap);
      record?.close(true);
      this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
      // Drop-in: only its Firecracker's refusal ends it, not a silent connection's timeout nor a second Firecracker's.
      if (mine) this.record({ pid, reason: 'refused', message, killed, stats: null });
    }
  }

  /** The connection's VM is recorded or refused: a successor must not serve it again, and its kept handshake can go. */
  private settle(conn: number, discard: boolean): void {
    this.vault?.settle(conn);
    if (discard) discardHandshake(conn);
  }

  /**
   * Builds a VM's page table and buffers in shared memory and hands it to a
   * fault worker (and the prefetch worker): a VM whose handshake was just
   * accepted, or one taken over (`adopted`: its removed pages come from its
   * record). Every block it allocates is pushed to `blocks`. Returns how many
   * removed pages the record held.
   */
  private admit(v: AdmitVm, blocks: number[]): number {
    const { pid, uffd, regions, snap, t0 } = v;
    this.stopDecodingAhead();
    const zeroSrc = regions.some((r) => r.pageSize === HUGE_PAGE) ? this.hugeZeroPage() : 0;
    // Recording turns fill-around off: every page the guest touches must fault to be recorded.
    const compressed = snap instanceof CompressedSnapshot ? { descriptor: snap.descriptor, fillAround: this.opts.fillAround && !this.opts.record } : null;
    const prefetching = this.prefetcher !== null && this.prefetcher.alive;
    const vmt = writeVmTable(this.core, this.arena, regions, snap, zeroSrc, { compressed, prefetch: prefetching });
    blocks.push(...vmt.blocks);
    const removed = v.adopted && v.record ? loadRemoved(this.core, vmt.table, v.record) : 0;
    let feed = 0;
    if (prefetching && this.policy?.kind === 'wasm') {
      feed = this.arena.alloc(FEED_BYTES);
      blocks.push(feed);
    }
    let fill = 0;
    if (snap instanceof CompressedSnapshot) {
      fill = this.arena.alloc((snap.header.chunkBytes / PAGE_BYTES + 1) * this.core.layout.ACTION_STRIDE);
      blocks.push(fill);
    }
    const msgs = this.arena.alloc(MSG_CAPACITY * this.core.layout.MSG_SIZE);
    blocks.push(msgs);
    const actions = this.arena.alloc(MSG_CAPACITY * this.core.layout.ACTION_STRIDE);
    blocks.push(actions);
    const id = this.nextId++;
    // The prefetch worker gets its own descriptor of the uffd: whichever thread lets go first cannot close it under the other.
    const prefetchUffd = prefetching ? dupFd(uffd) : -1;
    const fetched = this.remote?.serves(snap) ?? false;
    this.vms.set(id, { pid, table: vmt.table, blocks, snap, regions, prefetching, t0, record: v.record, fetchesAtStart: fetched ? (this.opts.once && this.fetchesAtOpen ? this.fetchesAtOpen : this.remote!.stats) : null, ownChunks: 0, ownBytes: 0 });
    this.pool?.assign({
      id, peerPid: pid, uffd, conn: v.conn, pidfd: v.pidfd, table: vmt.table, msgs, actions, capacity: MSG_CAPACITY, onFatal: this.opts.onFatal,
      snap: compressed ? compressed.descriptor : 0, fill, fenced: prefetching, feed, doorbell: this.doorbell, t0, record: this.opts.record !== null,
      mirror: v.record ? mirrorTarget(v.record) : null,
      // A VM taken over had its zero ranges dealt with (or not) by its first handler: they are only marked (src/worker/zero-ranges.ts).
      zeroRanges: v.adopted ? 'known' : this.opts.zeroRanges,
      fetched,
    });
    if (prefetching) this.prefetcher?.add({
      id, peerPid: pid, uffd: prefetchUffd, table: vmt.table, snap: compressed ? compressed.descriptor : 0, feed,
      pages: Number(snap.size / 4096n), t0, record: this.opts.record !== null, fetched,
    });
    if (prefetching && snap instanceof CompressedSnapshot && fetched) this.planAhead(snap, 'first VM');
    return removed;
  }

  /** The record of a VM whose handshake was accepted; a VM that cannot be recorded is served all the same, with a warning. */
  private recordNew(pid: number, uffd: number, regions: readonly GuestRegion[], snap: ServedSnapshot, t0: number): VmRecord | null {
    try {
      // A store's snapshot is found again by its name (in the store the successor is started with), a file by its path.
      const served = this.opts.store || this.opts.remote ? this.opts.memPath : resolve(this.opts.memPath);
      return recordVm(this.state!, pid, uffd, regions, served, snap.identity, t0);
    } catch (e) {
      if (e instanceof HandshakeError) throw e;
      this.opts.log.warn(`VM pid ${pid}: it cannot be recorded in ${this.state!.path} (${(e as Error).message}); it is served, but a handler crash would freeze it`,
        { vm: pid, event: 'vm_warning' });
      return null;
    }
  }

  /**
   * Takes over every VM recorded in the state directory whose Firecracker
   * still runs (src/state/take-uffd.ts), and removes the records of those
   * that have gone. A record that is damaged or from a newer snapfault stops
   * the start before anything is touched. Returns how many were taken.
   */
  private takeOverRecorded(unsettled: number[]): number {
    const state = this.state!;
    const t0 = performance.now();
    const records = state.records().map((path) => VmRecord.open(path));
    const recorded = records.map((r) => r.identity.pid);
    const replayed = this.keepReplayable(unsettled, recorded);
    this.settleLostHandshakes([...recorded, ...replayed]);
    let adopted = 0;
    for (const record of records) {
      const id = record.identity;
      const t = takeUffd(id);
      if (t.kind !== 'taken') {
        const gone = t.kind === 'gone';
        this.opts.log[gone ? 'info' : 'error'](`VM pid ${id.pid}: not taken over: ${t.why}${gone ? '; its record is removed' : `; its record stays in ${state.path}`}`,
          { vm: id.pid, event: 'takeover', outcome: t.kind });
        this.count(this.takeovers, t.kind);
        record.close(gone);
        continue;
      }
      if (this.adopt(record, t.pidfd, t.uffd, t0)) adopted++;
    }
    return adopted;
  }

  /**
   * Of the connections the previous handler left unsettled in the vault,
   * keeps (in `conns`) those to serve again, and returns their pids: a
   * Firecracker that is recorded (it died between the record and the settle)
   * is taken over through its record instead, and one that has exited is
   * dropped.
   */
  private keepReplayable(conns: number[], recorded: number[]): number[] {
    const pids: number[] = [];
    const keep: number[] = [];
    for (const conn of conns) {
      let pid = 0;
      try {
        pid = peerCredentials(conn).pid;
      } catch {
        pid = 0;
      }
      if (pid > 0 && !recorded.includes(pid) && processStartTime(pid) !== null) {
        keep.push(conn);
        pids.push(pid);
        this.count(this.takeovers, 'replayed');
      } else {
        this.vault?.settle(conn);
        closeFd(conn);
      }
    }
    conns.splice(0, conns.length, ...keep);
    if (keep.length > 0) {
      this.opts.log.info(`${keep.length} connection(s) the previous handler accepted and never recorded are served again: pid ${pids.join(', ')}`,
        { event: 'takeover', outcome: 'replayed', vms: pids });
    }
    return pids;
  }

  /**
   * Connections the previous handler accepted and died before recording: the
   * handshake went with it (Firecracker sends it once), so the VM cannot be
   * served. A Firecracker still running with a userfaultfd is frozen for good:
   * it gets the --on-fatal treatment, so its restore fails instead of hanging.
   */
  private settleLostHandshakes(recorded: number[]): void {
    for (const p of this.state!.pending()) {
      rmSync(p.path, { force: true });
      if (recorded.includes(p.pid) || p.startTime === null || processStartTime(p.pid) !== p.startTime || !holdsUserfaultfd(p.pid)) continue;
      let killed = false;
      try {
        const pidfd = pidfdOpen(p.pid);
        if (processStartTime(p.pid) === p.startTime && this.opts.onFatal === 'kill-peer') killed = pidfdSignal(pidfd, SIGKILL);
        closeFd(pidfd);
      } catch {
        continue; // exited meanwhile
      }
      this.opts.log.error(`VM pid ${p.pid}: the previous handler died after accepting its connection and before recording its handshake, ` +
        `which went with it: it cannot be served; ${killed ? `killed Firecracker pid ${p.pid}` : leftRunningText(p.pid)}`,
      { vm: p.pid, event: 'takeover', outcome: 'lost', killed });
      this.count(this.takeovers, 'lost');
    }
  }

  /** Serves a VM whose uffd was just taken; a VM that cannot be served (its snapshot changed, say) gets the --on-fatal treatment. */
  private adopt(record: VmRecord, pidfd: number, uffd: number, t0: number): boolean {
    const id = record.identity;
    const pid = id.pid;
    const blocks: number[] = [];
    let snap: ServedSnapshot | null = null;
    try {
      snap = this.cache.acquire(id.snapshotPath);
      if (snap.identity !== id.snapshotIdentity) {
        throw new StateError(`its snapshot ${id.snapshotPath} was replaced or changed since the VM was restored from it, so its pages cannot be served`);
      }
      validateRegions(id.regions, snap.size, id.snapshotPath);
      const removed = this.admit({ pid, pidfd, uffd, conn: -1, regions: id.regions, snap, t0: id.handshakeMs, record, adopted: true }, blocks);
      // Only once a fault worker watches it: the faults the dead handler had read are raised again now.
      const rc = wakeAll(uffd, id.regions);
      if (rc < 0) this.opts.log.warn(`VM pid ${pid}: waking its threads failed (errno ${-rc})`, { vm: pid, event: 'vm_warning' });
      const ms = performance.now() - t0;
      this.opts.log.info(`VM pid ${pid}: taken over from the previous handler (${removed} removed page(s) honoured, every waiting thread woken) ` +
        `${ms.toFixed(1)} ms after the state directory was taken; serving ${id.regions.length} region(s) from ${id.snapshotPath}`,
      { vm: pid, event: 'takeover', outcome: 'taken', removedPages: removed, ms: Math.round(ms * 1000) / 1000 });
      this.count(this.takeovers, 'taken');
      return true;
    } catch (e) {
      const message = e instanceof SnapfaultError ? e.message : `unexpected error: ${(e as Error).message}`;
      const killed = this.opts.onFatal === 'kill-peer' && pidfdSignal(pidfd, SIGKILL);
      this.opts.log.error(`VM pid ${pid}: cannot be taken over: ${message}; ${killed ? `killed Firecracker pid ${pid}` : leftRunningText(pid)}`,
        { vm: pid, event: 'takeover', outcome: 'failed', killed });
      this.count(this.takeovers, 'failed');
      for (const fd of [uffd, pidfd]) closeFd(fd);
      for (const b of blocks) this.arena.freeBlock(b);
      if (snap) this.cache.release(snap);
      record.close(true);
      return false;
    }
  }

  private count(m: Map<string, number>, key: string): void {
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  private onWorkerEvent(e: WorkerEvent): void {
    const vm = this.vms.get(e.id);
    const who = `VM pid ${vm?.pid ?? '?'}`;
    if (e.type === 'warning') {
      this.opts.log.warn(`${who}: ${e.message}`, { ...(vm ? { vm: vm.pid } : {}), event: 'vm_warning' });
      return;
    }
    if (e.type === 'fetch') return this.fetchChunk(e.id, e.snap, e.chunk, e.discard);
    if (!vm?.prefetching || !this.prefetcher) {
      this.finish(e, vm, null);
      return;
    }
    // The prefetch worker lets go of the VM first: its blocks are freed after.
    const done = this.prefetcher.release(e.id).then((records) => this.finish(e, vm, records));
    this.finishing.add(done);
    void done.finally(() => this.finishing.delete(done));
  }

  /**
   * Prefetching from the bucket: the chunks the policy will read (replay,
   * all) are queued at once, in its order, when the handler has opened the
   * snapshot (`start`) or found its name put again, or else (a standby that
   * took over) at its first VM, so they are on their way while Firecracker
   * still starts and loads.
   * Later VMs' chunks are asked for by the prefetch worker as it meets them
   * ('need'); those cached by then cost nothing.
   */
  private planAhead(snap: CompressedSnapshot, when: 'start' | 'name put again' | 'first VM'): void {
    const policy = this.policy;
    if (this.aheadPlanned.has(snap) || !this.ahead || !policy || policy.kind === 'wasm') return;
    this.aheadPlanned.add(snap);
    if (when === 'start') this.fetchesAtOpen = this.remote?.stats ?? null;
    const chunks = prefetchChunkOrder(this.core, snap.descriptor, policy.ranges, policy.kind === 'all');
    this.ahead.wantAll(snap.descriptor, chunks);
    const from = when === 'start' ? 'from the start on' : when === 'first VM' ? 'from its first VM on' : 'its name was put again';
    this.opts.log.info(`prefetch ${policy.name}: fetching ${count(chunks.length, 'chunk')} from the bucket ahead, ${from}`, { event: 'fetch_ahead', chunks: chunks.length, when });
  }

  /**
   * A store in a bucket: looks the served name up again every `everyMs`
   * (--follow); put again, the VMs that come next get the new snapshot. A
   * failed look is logged and the snapshot served so far stays.
   */
  private follow(everyMs: number): void {
    const remote = this.remote;
    if (!remote || everyMs <= 0) return;
    let looking = false;
    let failedBefore = false;
    this.following = setInterval(() => {
      if (looking) return;
      looking = true;
      void remote.follow().then((next) => {
        if (failedBefore) this.opts.log.info(`${servedLabel(this.opts)}: looked up again`, { event: 'follow', ok: true });
        failedBefore = false;
        if (next === null) return;
        const { identity, snap } = next;
        this.planAhead(snap, 'name put again');
        const kept = remote.vmsOnRetired;
        this.opts.log.info(`${servedLabel(this.opts)} was put again (now ${identity.slice(0, 16)}): the VMs that come next get it` +
          (kept > 0 ? `; the snapshot before stays open for the ${count(kept, 'VM')} on it until they end` : ''), { event: 'follow', ok: true, identity, kept });
      }, (e: Error) => {
        // Said once per run of failures: the store may be down for a while, and the snapshot served so far is still good.
        if (!failedBefore) this.opts.log.warn(`${servedLabel(this.opts)}: cannot look the name up again (${e.message}); serving the snapshot it held`, { event: 'follow', ok: false });
        failedBefore = true;
      }).finally(() => {
        looking = false;
      });
    }, everyMs);
    this.following.unref();
  }

  /** Decoding ahead ends at the first VM: said once, with what it did. */
  private stopDecodingAhead(): void {
    const d = this.decodeAhead;
    if (!d?.active) return;
    d.stop();
    if (d.decoded > 0) {
      this.opts.log.info(`decoded ${count(d.decoded, 'chunk')} of the prefetch policy's ahead, before the first VM (${(d.lastAt - d.firstAt).toFixed(0)} ms from the first to the last)`,
        { event: 'decode_ahead', chunks: d.decoded });
    }
  }

  /** A chunk fetched ahead has landed (or could not be fetched): the prefetch worker installs (or drops) the ranges waiting for it. */
  private fetchedAhead(snap: number, chunk: number, error: string | null): void {
    if (error !== null) this.opts.log.debug(`chunk ${chunk} not fetched ahead: ${error}`, { event: 'chunk_prefetch', chunk, ok: false });
    else this.decodeAhead?.landed(snap, chunk);
    this.prefetcher?.chunkLanded(snap, chunk, error === null);
  }

  /**
   * A fault needs chunk `chunk` from the bucket, and no policy knows what
   * comes next (on demand, or a policy of its own): if the chunk before it is
   * cached or on its way (the guest reads on), the chunks after it, up to
   * --fetch-readahead of memory, are queued to be fetched ahead, side by side
   * in one GET where they lie so in a pack. Its next fault there finds its
   * chunk cached, or on its way. Measured in docs/store-s3.md (Read ahead).
   */
  private readAhead(snap: number, chunk: number): void {
    const bytes = this.opts.remote?.readaheadBytes ?? 0;
    if (!this.readahead || bytes === 0 || (this.policy && this.policy.kind !== 'wasm')) return;
    // Only where the guest reads on: scattered faults (Firecracker's load among them) fetch their own chunk alone.
    if (chunk === 0 || !this.remote!.isCachedOrComing(snap, chunk - 1)) return;
    const L = this.core.layout;
    const dv = new DataView(this.core.memory.buffer);
    const chunks = dv.getUint32(snap + L.SNAP_CHUNKS, true);
    const chunkBytes = dv.getUint32(snap + L.SNAP_PAGES_PER_CHUNK, true) * PAGE_BYTES;
    const last = Math.min(chunks - 1, chunk + Math.max(1, Math.floor(bytes / chunkBytes)));
    const after: number[] = [];
    for (let c = chunk + 1; c <= last; c++) after.push(c);
    this.readahead.wantAll(snap, after);
  }

  /** A fault worker has faults parked on a chunk the disk cache lacks: fetched here, off its path; every worker is told when it lands. */
  private fetchChunk(vmId: number, snap: number, chunk: number, discard: boolean): void {
    const remote = this.remote;
    if (!remote) return;
    // Demand first: a chunk queued to be fetched ahead is fetched now, for the fault.
    this.ahead?.demand(snap, chunk);
    this.readahead?.demand(snap, chunk);
    this.readAhead(snap, chunk);
    const t = performance.now();
    if (discard) this.opts.log.warn(`chunk ${remote.chunkName(snap, chunk)} in the disk cache fails its checks: deleted, fetched again`, { event: 'cache_damaged', chunk });
    void remote.fetch(snap, chunk, discard).then(({ error, bytes }) => {
      // The VM whose fault started this chunk's GET (not one that joined it, or found it cached) is the one it was fetched for.
      const vm = this.vms.get(vmId);
      if (vm?.fetchesAtStart && bytes > 0) {
        vm.ownChunks++;
        vm.ownBytes += bytes;
      }
      this.opts.log.debug(`chunk ${chunk} ${error === null ? 'in the disk cache' : 'not fetched'} after ${(performance.now() - t).toFixed(1)} ms`, { event: 'chunk_fetch', chunk, ok: error === null });
      this.pool?.chunkFetched(snap, chunk, error);
      this.prefetcher?.chunkLanded(snap, chunk, error === null);
    });
  }

  private finish(e: Extract<WorkerEvent, { type: 'ended' }>, vm: LiveVm | undefined, prefetchRecords: Uint32Array | null): void {
    const who = `VM pid ${vm?.pid ?? '?'}`;
    if (vm) {
      if (this.opts.record) this.writeVmTrace(vm, e.records, prefetchRecords);
      // A VM released by a stop keeps its record: the next handler on the state directory takes it over.
      vm.record?.close(e.reason !== 'shutdown');
      this.vms.delete(e.id);
      for (const b of vm.blocks) this.arena.freeBlock(b);
      this.cache.release(vm.snap);
    }
    const s = e.stats;
    for (const k of Object.keys(NO_FAULTS) as Array<keyof FaultCounts>) this.endedTotals[k] += s[k];
    this.endedBy.set(e.reason, (this.endedBy.get(e.reason) ?? 0) + 1);
    const fetches = vm?.fetchesAtStart && this.remote ? fetchesSince(vm.fetchesAtStart, this.remote.stats) : null;
    const summary = `${count(s.copies + s.zeropages + s.removedZero, 'fault')} (${s.copies} copied, ${s.zeropages} zero, ${s.removedZero} removed), ` +
      `${bytesText(s.bytes)} copied, ${count(s.removeEvents, 'remove')}, ${s.eagain} EAGAIN, ${s.eexist} EEXIST, ` +
      (s.notRegistered > 0 ? `${s.notRegistered} on pages no longer registered (woken), ` : '') +
      `last fault at ${s.lastFaultMs.toFixed(1)} ms, served ${s.servedMs.toFixed(1)} ms` +
      (s.zeroRanges > 0 ? `; ${count(s.zeroRanges, 'all-zero range')} (${bytesText(s.zeroRangeBytes)}) ${this.opts.zeroRanges === 'zeropage' ? 'mapped as zero pages after the handshake' : 'left to the kernel'}` : '') +
      (s.chunkMisses + s.chunkHits > 0 ? `; chunks: ${s.chunkMisses} decoded, ${s.chunkHits} from cache, ${s.filledAround} pages filled around` : '') +
      (vm?.prefetching ? `; prefetch: ${s.prefetched} pages copied (${bytesText(s.prefetchBytes)}) and ${s.prefetchedZero} zero pages mapped ahead, ${s.late} faults arrived while their page was going in` : '') +
      (fetches ? `; bucket (all this handler's fetches while the VM was served): ${count(fetches.gets, 'GET')} (${bytesText(fetches.bytes)}` +
        `${fetches.gets > 0 ? `, ${(fetches.seconds * 1000 / fetches.gets).toFixed(1)} ms each on average` : ''}), ` +
        `${fetches.runs > 0 ? `${fetches.runs} of them ranged over ${fetches.runChunks} chunks side by side, ` : ''}${fetches.failures} failed, ` +
        `${fetches.hedges} hedged (${fetches.hedgesWon} answered first), ${fetches.cached} found in the disk cache meanwhile; ` +
        `${count(s.fetchWaits, 'fault')} of this VM waited for a fetch${s.fetchWaits > 0 ? ` (longest ${s.fetchWaitMaxMs.toFixed(1)} ms, ${s.fetchWaitMs.toFixed(1)} ms in all)` : ''}, ` +
        `${count(vm?.ownChunks ?? 0, 'chunk')} (${bytesText(vm?.ownBytes ?? 0)}) fetched because its faults asked first` : '');
    const pid = vm?.pid ?? 0;
    const leftRunning = e.reason === 'fatal' && !e.killed && this.opts.onFatal === 'disconnect';
    const fields: LogContext = {
      ...(vm ? { vm: vm.pid } : {}), event: 'vm_end', reason: e.reason, killed: e.killed, leftRunning, ...summaryFields(s),
      ...(fetches ? { gets: fetches.gets, getRuns: fetches.runs, getRunChunks: fetches.runChunks, getBytes: fetches.bytes, getSeconds: ms(fetches.seconds), getFailures: fetches.failures, getHedges: fetches.hedges, getHedgesWon: fetches.hedgesWon, getsFoundCached: fetches.cached,
        ownChunks: vm?.ownChunks ?? 0, ownBytes: vm?.ownBytes ?? 0 } : {}),
    };
    if (e.reason === 'fatal') {
      // kill-peer that killed nobody: the Firecracker had already exited (ESRCH).
      const action = e.killed ? `killed Firecracker pid ${pid}` : leftRunning ? `disconnected it: ${leftRunningText(pid)}` : `Firecracker pid ${pid} had already exited`;
      this.opts.log.error(`${who}: ${e.message}${vm ? ` (snapshot ${vm.snap.path})` : ''}; ${action} (${summary})`, fields);
    } else {
      const why = this.handingOver && e.reason === 'shutdown' ? 'handed over to the next handler' : e.message;
      this.opts.log.info(`${who} ended: ${why}; ${summary}`, fields);
    }
    this.record({ pid: vm?.pid ?? 0, reason: e.reason, message: e.message, killed: e.killed, stats: s });
    this.checkIdle();
  }

  private writeVmTrace(vm: LiveVm, faults: Uint32Array | null, prefetched: Uint32Array | null): void {
    const path = this.opts.record!.replaceAll('{pid}', String(vm.pid));
    try {
      this.opts.checkRecordPath?.(path);
      const trace = traceOfVm(this.core, vm.table, vm.regions, vm.snap.size, vm.t0, faults, prefetched, vm.prefetching, snapshotKeyOf(contentIdentity(vm.snap)));
      writeTrace(path, trace, '--record');
      this.opts.log.info(`VM pid ${vm.pid}: trace written to ${path}`, { vm: vm.pid, event: 'trace_written', path, records: recordCount(trace) });
    } catch (err) {
      this.opts.log.error(`VM pid ${vm.pid}: ${(err as Error).message}`, { vm: vm.pid, event: 'trace_failed', path });
    }
  }

  /**
   * The prefetch worker is gone (it threw, or a policy call hung and the
   * watchdog ended it). Demand faults never depended on it: open every VM's
   * fence (it may have gone while holding one, and a fault worker would wait
   * for it forever) and go on serving on demand, without prefetch.
   */
  private onPrefetcherCrash(e: Error): void {
    // It may have died holding a fence, or a chunk it was copying from: fault workers would wait on either forever.
    const m = new Int32Array(this.core.memory.buffer);
    for (const vm of this.vms.values()) if (vm.prefetching) leaveCopy(m, fenceWords(this.core.layout, vm.table));
    this.cache.releaseLocks(this.core.layout.OWNER_PREFETCH);
    this.opts.log.error(`the prefetch worker stopped: ${e.message}; prefetching is off for every VM, faults are served on demand`, { event: 'prefetch_stopped' });
  }

  private onWorkerCrash(e: Error): void {
    this.opts.log.error(`a fault worker crashed (${e.message}); its VMs can no longer be served, stopping`, { event: 'worker_crashed' });
    this.resolveCrashed(e);
    void this.stop();
  }

  private record(o: VmOutcome): void {
    this.outcomes.push(o);
    if (this.outcomes.length > RECENT_OUTCOMES) this.outcomes.shift();
    if (this.opts.once) this.resolveOnce?.(o);
  }

  private hugeZeroPage(): number {
    // Never written, so every read of it maps the shared zero page: it costs no memory.
    this.zeroHugePage ??= mmapAnonymous(HUGE_PAGE);
    return this.zeroHugePage.addr;
  }

  /** Stops accepting, releases every VM (their guests can no longer fault in pages), frees all. drain() first to let them finish. */
  stop(): Promise<void> {
    // One stop, however many callers (a crash, a signal, the drop-in's end): each waits for all of it.
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.stopped = true;
    this.decodeAhead?.stop();
    if (this.following) clearInterval(this.following);
    if (this.handingOver) {
      this.listener?.detach();
      this.keeper?.leave();
    } else this.closeListener();
    const left = this.connectedPids;
    if (left.length > 0 && this.state) {
      this.opts.log.info(`stopping with ${left.length} VM(s) still served: pid ${left.join(', ')}; their records stay in ${this.state.path} ` +
        'for the next snapfault started on it to take them over', { event: 'releasing', vms: left, recorded: true });
    } else if (left.length > 0) {
      this.opts.log.warn(`stopping while ${left.length} VM(s) still depend on this handler: pid ${left.join(', ')}; released unfinished, ` +
        'their Firecrackers keep running but their guests can no longer fault pages in', { event: 'releasing', vms: left });
    }
    await this.pool?.stop();
    await Promise.all([...this.finishing]);
    // A handover leaves the keeper and its vault to the successor; else whatever is still under way is let go.
    if (this.handingOver) this.vault?.close();
    else this.releaseKeeper();
    this.vault = null;
    // No thread of this handler touches a VM any more: a successor may take them.
    this.state?.release();
    this.ahead?.close();
    this.readahead?.close();
    await this.prefetcher?.stop();
    await this.cache.close();
    if (this.zeroHugePage) munmap(this.zeroHugePage);
    this.zeroHugePage = null;
    // A drain cut short by stop() must not keep its timer (and the process) alive.
    for (const w of this.idleWaiters) w();
    this.idleWaiters.clear();
  }
}

/** --standby: says so, waits for the owner to exit, and takes the directory. */
async function standingBy(opts: ServerOptions): Promise<StateDir | null> {
  if (!opts.stateDir) return null;
  const since = performance.now();
  const owners: StateOwner[] = [];
  const state = await standBy(opts.stateDir, {
    stop: opts.standbyStop ?? new Promise(() => undefined),
    onOwner: (owner) => {
      if (owners.length === 0) opts.onStandingBy?.();
      owners.push(owner);
      opts.log.info(`standing by: snapfault pid ${owner.pid} owns ${opts.stateDir}; its VMs are taken over the moment it exits`,
        { event: 'standby', owner: owner.pid });
    },
  });
  const gone = owners.at(-1);
  opts.log.info(`${gone ? `snapfault pid ${gone.pid} is gone` : 'the state directory is free'}: taking its VMs over after standing by ${((performance.now() - since) / 1000).toFixed(1)} s`,
    { event: 'standby_taking_over', owner: gone?.pid ?? null });
  return state;
}

/**
 * --takeover: asks the running owner of the state directory to hand its VMs
 * over (SIGUSR2: it stops serving at a clean point, leaves its records, lets
 * go of the directory and exits), then takes the directory. With no owner
 * running, the directory is simply taken (crash recovery).
 */
async function handover(opts: ServerOptions, owner: StateOwner | null): Promise<StateDir | null> {
  if (!opts.stateDir) return null;
  const dir = opts.stateDir;
  if (!owner || processStartTime(owner.pid) !== owner.startTime) return StateDir.takeWhenFree(dir, 5_000);
  // Announced first: a standby seeing the directory free leaves it to this process.
  const withdraw = StateDir.announceSuccessor(dir);
  try {
    return await askOwner(opts, dir, owner);
  } finally {
    withdraw();
  }
}

async function askOwner(opts: ServerOptions, dir: string, owner: StateOwner): Promise<StateDir> {
  let pidfd = -1;
  try {
    pidfd = pidfdOpen(owner.pid);
    if (processStartTime(owner.pid) === owner.startTime) pidfdSignal(pidfd, SIGUSR2);
  } catch {
    /* it exited meanwhile: the directory is free */
  } finally {
    closeFd(pidfd);
  }
  opts.log.info(`asked snapfault pid ${owner.pid} to hand its VMs over`, { event: 'handover_requested', owner: owner.pid });
  return StateDir.takeWhenFree(dir, 30_000);
}
