// `--metrics HOST:PORT`: Prometheus text metrics through prom-client. Every
// value is read from shared memory when scraped (the fault path only bumps
// counters there); per-VM series exist only while the VM is connected, so
// labels stay bounded however many VMs come and go. The process and Node.js
// metrics (CPU, memory, fds, event loop lag, GC) are served beside them.
import { createServer, type Server } from 'node:http';
import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics, type MetricType } from 'prom-client';
import type { SnapfaultServer, MetricsSnapshot } from './server.js';
import type { FaultCounts } from './vm/vm-table.js';
import { WORKER_STAT as S, LATENCY_BOUNDS_S, READ_BOUNDS } from './worker/worker-stats.js';
import { SnapfaultError, UsageError } from './errors.js';
import { GET_LATENCY_BOUNDS_S } from './store/chunk-fetcher.js';

/** Serving from a bucket: the disk cache tier and the fetches behind it (present only then). */
function storeMetrics(registry: Registry, read: () => MetricsSnapshot['fetch']): void {
  const counter = (name: string, help: string, k: 'gets' | 'runs' | 'runChunks' | 'bytes' | 'seconds' | 'failures' | 'cached' | 'hedges' | 'hedgesWon' | 'diskHits' | 'diskMisses'): void => computedCounter(registry, name, help, [], (set) => {
    const f = read();
    if (f) set(f[k]);
  });
  counter('snapfault_store_gets_total', 'Serving from a bucket: chunks fetched (GETs answered).', 'gets');
  counter('snapfault_store_get_bytes_total', 'Serving from a bucket: bytes fetched.', 'bytes');
  counter('snapfault_store_ranged_gets_total', 'Serving from a bucket: GETs of several chunks side by side in a pack (counted in gets_total too).', 'runs');
  counter('snapfault_store_ranged_get_chunks_total', 'Serving from a bucket: chunks those ranged GETs brought.', 'runChunks');
  counter('snapfault_store_get_seconds_total', 'Serving from a bucket: seconds spent in GETs (divide by snapfault_store_gets_total for the mean).', 'seconds');
  counter('snapfault_store_get_failures_total', 'Serving from a bucket: GETs that failed or did not return the chunk (retried until --fetch-timeout).', 'failures');
  counter('snapfault_store_get_hedges_total', 'Serving from a bucket: GETs started beside one still unanswered past the recent p99 (counted in gets_total once answered; one abandoned when the first answered may never have reached the store).', 'hedges');
  counter('snapfault_store_get_hedges_won_total', 'Serving from a bucket: hedged GETs answered before the GET they were sent beside.', 'hedgesWon');
  counter('snapfault_store_disk_cache_hits_total', 'Serving from a bucket: chunks read from the disk cache (by any thread: faults, prefetch, decoding ahead).', 'diskHits');
  counter('snapfault_store_disk_cache_misses_total', 'Serving from a bucket: chunk reads that found the disk cache without the chunk (each then fetched, or joined to a fetch under way).', 'diskMisses');
  counter('snapfault_store_disk_cache_joins_total', 'Serving from a bucket: fetches found in the disk cache after all (landed meanwhile, or fetched by another handler).', 'cached');
  const gauge = (name: string, help: string, k: 'inFlight' | 'cacheBytes'): void => {
    new Gauge({
      name, help, registers: [registry],
      collect() {
        const f = read();
        if (f) this.set(f[k]);
      },
    });
  };
  new ComputedHistogram(registry, 'snapfault_store_get_latency_seconds', 'Serving from a bucket: time each answered GET took, request to last byte.', GET_LATENCY_BOUNDS_S, () => {
    const f = read();
    return { counts: f?.latency ?? [], sum: f?.seconds ?? 0, count: f?.gets ?? 0 };
  });
  gauge('snapfault_store_fetches_in_flight', 'Serving from a bucket: chunks being fetched now, faults parked on them.', 'inFlight');
  gauge('snapfault_store_disk_cache_bytes', 'Serving from a bucket: bytes in the disk cache (as this handler counts them).', 'cacheBytes');
}

export interface MetricsAddress {
  host: string;
  port: number;
}

/** Parses HOST:PORT (IPv6 as [::1]:9100). */
export function parseMetricsAddress(v: string): MetricsAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : -1;
  if (!m || port > 65535) throw new UsageError(`--metrics ${v}: expected HOST:PORT, e.g. 127.0.0.1:9100`);
  return { host: m[1] ?? m[2], port };
}

/** A counter whose value is computed at scrape time (it only ever grows). */
function computedCounter(registry: Registry, name: string, help: string, labelNames: string[], read: (set: (v: number, labels?: Record<string, string>) => void) => void): void {
  new Counter({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      read((v, labels) => (labels ? this.inc(labels, v) : this.inc(v)));
    },
  });
}

type HistogramValues = Awaited<ReturnType<Histogram<string>['get']>>;

/** A histogram's state at scrape time: a count per bucket (the last one past every bound; not cumulative), the sum and count of what it observed. */
interface HistogramState {
  counts: number[];
  sum: number;
  count: number;
}

/** A histogram filled at scrape time from counts kept elsewhere (shared memory, a fetcher), not observed through prom-client. */
class ComputedHistogram extends Histogram<string> {
  constructor(registry: Registry, private readonly metricName: string, private readonly metricHelp: string, private readonly bounds: readonly number[],
    private readonly read: () => HistogramState) {
    super({ name: metricName, help: metricHelp, buckets: [...bounds], registers: [registry] });
  }

  // The registry renders text from getForPromString (and get() builds on it).
  async getForPromString(): Promise<HistogramValues> {
    const { counts, sum, count } = this.read();
    const name = this.metricName;
    let cumulative = 0;
    const values: HistogramValues['values'] = [];
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += counts[i] ?? 0;
      values.push({ labels: { le: i < this.bounds.length ? this.bounds[i] : '+Inf' }, value: cumulative, metricName: `${name}_bucket` });
    }
    values.push({ labels: {}, value: sum, metricName: `${name}_sum` });
    values.push({ labels: {}, value: count, metricName: `${name}_count` });
    // MetricType is declared in the typings but not exported at run time.
    const type = 'histogram' as unknown as MetricType;
    return { name, help: this.metricHelp, type, values, aggregator: 'sum', collect: () => undefined };
  }
}

/** A histogram kept by every fault worker in its WORKER_STAT block: bucket counts from `slot`, its running sum and count in `sum` and `count`. */
function workerHistogram(snapshot: () => MetricsSnapshot, bounds: readonly number[], slot: number, sumSlot: number, countSlot: number): () => HistogramState {
  return () => {
    const state: HistogramState = { counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
    for (const w of snapshot().workers) {
      for (let i = 0; i <= bounds.length; i++) state.counts[i] += w[slot + i];
      state.sum += w[sumSlot];
      state.count += w[countSlot];
    }
    return state;
  };
}

export function buildRegistry(server: SnapfaultServer): Registry {
  const registry = new Registry();
  // One snapshot serves every metric of a scrape (they are read within milliseconds of each other).
  let cached: MetricsSnapshot | null = null;
  let cachedAt = 0;
  const snap = (): MetricsSnapshot => {
    const now = Date.now();
    if (!cached || now - cachedAt > 200) {
      cached = server.metricsSnapshot();
      cachedAt = now;
    }
    return cached;
  };
  const total = (k: keyof FaultCounts) => (set: (v: number, labels?: Record<string, string>) => void): void => set(snap().total[k]);
  computedCounter(registry, 'snapfault_faults_total', 'Faults resolved, by resolution: copy (snapshot bytes), zero (all-zero page), removed_zero (a page the balloon removed).', ['resolution'], (set) => {
    const t = snap().total;
    set(t.copies, { resolution: 'copy' });
    set(t.zeropages, { resolution: 'zero' });
    set(t.removedZero, { resolution: 'removed_zero' });
  });
  computedCounter(registry, 'snapfault_bytes_copied_total', 'Bytes installed with UFFDIO_COPY.', [], total('bytes'));
  computedCounter(registry, 'snapfault_remove_events_total', 'UFFD_EVENT_REMOVE events applied (balloon, hot-unplug).', [], total('removeEvents'));
  computedCounter(registry, 'snapfault_chunk_cache_hits_total', 'Compressed snapshots: faults served from an already decoded chunk.', [], total('chunkHits'));
  computedCounter(registry, 'snapfault_chunk_cache_misses_total', 'Compressed snapshots: chunks read and decoded.', [], total('chunkMisses'));
  computedCounter(registry, 'snapfault_filled_around_pages_total', 'Compressed snapshots: pages installed from a decoded chunk ahead of their fault.', [], total('filledAround'));
  computedCounter(registry, 'snapfault_prefetched_pages_total', 'Pages installed by the prefetch policy ahead of the guest, by kind: copy (snapshot bytes) or zero (zero page mapped).', ['kind'], (set) => {
    const t = snap().total;
    set(t.prefetched, { kind: 'copy' });
    set(t.prefetchedZero, { kind: 'zero' });
  });
  computedCounter(registry, 'snapfault_prefetch_bytes_total', 'Bytes copied by the prefetch policy.', [], total('prefetchBytes'));
  computedCounter(registry, 'snapfault_late_faults_total', 'Faults on a page that was being installed ahead of the guest (prefetch, fill-around): woken only.', [], total('late'));
  const worker = (slot: number) => (set: (v: number) => void): void => set(snap().workers.reduce((s, w) => s + w[slot], 0));
  computedCounter(registry, 'snapfault_eagain_total', 'Resolutions deferred by EAGAIN (a remove in progress).', [], worker(S.EAGAIN));
  computedCounter(registry, 'snapfault_eexist_total', 'Resolutions that found the page already present (woken instead).', [], worker(S.EEXIST));
  computedCounter(registry, 'snapfault_not_registered_faults_total', 'Faults whose page had left the userfaultfd\'s ranges when resolved (ENOENT: an unregister racing the fault): woken, the kernel fills the page.', [], worker(S.NOT_REGISTERED));
  computedCounter(registry, 'snapfault_handshakes_rejected_total', 'Connections refused, by reason.', ['reason'], (set) => {
    for (const [reason, n] of snap().rejected) set(n, { reason });
  });
  computedCounter(registry, 'snapfault_takeovers_total', 'VMs found recorded in the state directory at start, by outcome: taken (served on), gone (Firecracker had exited), refused (its userfaultfd could not be taken), failed (taken but not servable), lost (its handshake died with the previous handler), replayed (a connection the previous handler accepted and never recorded, served again).', ['outcome'], (set) => {
    for (const [outcome, n] of snap().takeovers) set(n, { outcome });
  });
  if (snap().fetch) storeMetrics(registry, () => snap().fetch);
  computedCounter(registry, 'snapfault_vms_ended_total', 'VMs no longer served, by why: exited, fatal, shutdown.', ['reason'], (set) => {
    for (const [reason, n] of snap().ended) set(n, { reason });
  });
  new Gauge({
    name: 'snapfault_vms_connected', help: 'VMs being served now.', registers: [registry],
    collect() {
      this.set(snap().live.length);
    },
  });
  new Gauge({
    name: 'snapfault_vm_faults', help: 'Faults resolved for each connected VM (by Firecracker pid; gone when the VM ends).', labelNames: ['pid'], registers: [registry],
    collect() {
      this.reset();
      for (const v of snap().live) this.set({ pid: String(v.pid) }, v.counts.copies + v.counts.zeropages + v.counts.removedZero);
    },
  });
  new Gauge({
    name: 'snapfault_vm_prefetched_pages', help: 'Pages prefetched into each connected VM (by Firecracker pid; gone when the VM ends).', labelNames: ['pid'], registers: [registry],
    collect() {
      this.reset();
      for (const v of snap().live) this.set({ pid: String(v.pid) }, v.counts.prefetched + v.counts.prefetchedZero);
    },
  });
  new ComputedHistogram(registry, 'snapfault_fault_seconds', 'Time from reading a fault to its page being installed, inside the handler.',
    LATENCY_BOUNDS_S, workerHistogram(snap, LATENCY_BOUNDS_S, S.LATENCY_BUCKETS, S.LATENCY_SUM_S, S.LATENCY_COUNT));
  new ComputedHistogram(registry, 'snapfault_events_per_read', 'uffd_msg events returned by each read() of a userfaultfd.', READ_BOUNDS,
    workerHistogram(snap, READ_BOUNDS, S.READ_BUCKETS, S.MESSAGES, S.READS));
  standbyGauge(registry, 0);
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** 1 while a --standby handler waits for the owner of its state directory, 0 once it serves. */
function standbyGauge(registry: Registry, value: 0 | 1): void {
  new Gauge({ name: 'snapfault_standing_by', help: 'A --standby handler waiting for the owner of its state directory to exit (1), or serving (0).', registers: [registry] }).set(value);
}

export class MetricsEndpoint {
  private registry: Registry | null = null;

  private constructor(private readonly http: Server, readonly url: string) {}

  /** Binds the address first, so a busy port fails before the handler takes its socket. */
  static async listen(address: MetricsAddress): Promise<MetricsEndpoint> {
    let endpoint: MetricsEndpoint | null = null;
    const http = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404).end('not found: metrics are at /metrics\n');
        return;
      }
      const registry = endpoint?.registry;
      if (!registry) {
        res.writeHead(503).end('starting\n');
        return;
      }
      registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': registry.contentType }).end(text);
      }, (e: Error) => res.writeHead(500).end(`${e.message}\n`));
    });
    await new Promise<void>((resolve, reject) => {
      http.once('error', (e: NodeJS.ErrnoException) => reject(new SnapfaultError(`cannot serve metrics on ${address.host}:${address.port} (${e.code ?? e.message}): choose another --metrics address`)));
      http.listen(address.port, address.host, () => resolve());
    });
    const a = http.address();
    const port = typeof a === 'object' && a ? a.port : address.port;
    const host = address.host.includes(':') ? `[${address.host}]` : address.host;
    endpoint = new MetricsEndpoint(http, `http://${host}:${port}/metrics`);
    return endpoint;
  }

  /** A standby, before it serves: the process's own metrics and snapfault_standing_by 1, so a scrape sees the spare alive. */
  standingBy(): void {
    const registry = new Registry();
    standbyGauge(registry, 1);
    collectDefaultMetrics({ register: registry });
    this.registry = registry;
  }

  /** Starts reporting on `server`. */
  attach(server: SnapfaultServer): void {
    this.registry = buildRegistry(server);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.http.close(() => resolve()));
  }
}
