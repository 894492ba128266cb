// Prefetching from a store in a bucket, end to end: a real S3-compatible
// store (Swift with s3api) behind a proxy that counts and can hold GETs, real
// userfaultfd, the Firecracker simulator checking every byte. replay: and all
// over a cold disk cache fetch the chunks ahead of the guest and install them;
// a chunk held back stops neither the other chunks nor a fault on a cached
// one; a fault's chunk goes around a stalled prefetch queue; a removed page is
// never refilled; each chunk is fetched once.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { TempDir } from '../helpers/images.js';
import { runSim, startSim } from '../helpers/processes.js';
import { ensureObjectStore, type ObjectStore } from '../helpers/object-store.js';
import { CountingProxy } from '../helpers/counting-proxy.js';
import { BucketSnapshot, cachedChunks } from '../helpers/bucket-serving.js';
import { readTrace } from '../../src/trace/trace-file.js';
import { summarize } from '../../src/trace/summary.js';

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('prefetching from a store in a bucket (S3 API, on Swift)', function () {
  this.timeout(240_000);
  const tmp = new TempDir();
  let os: ObjectStore;
  let proxy: CountingProxy;
  let snapshot: BucketSnapshot;
  let img: string;
  /** The chunks the snapshot uses. */
  let chunks = 0;

  before(async function () {
    this.timeout(900_000); // a clean machine installs Swift first
    os = await ensureObjectStore();
    proxy = await CountingProxy.start(os.endpoint);
    snapshot = await BucketSnapshot.put(tmp, os, proxy, await os.newBucket('prefetch'), 32, 'serve-s3-prefetch');
    ({ img, chunks } = snapshot);
    expect(chunks, 'enough chunks to see an order').to.be.at.least(8);
  });
  afterEach(async () => snapshot?.stopHandlers());
  after(async () => {
    await proxy?.stop();
    os?.release();
    tmp.remove();
  });

  /** A drop-in restore with every touched page checked, nothing warned; returns the handler's log. */
  async function restore(cache: string, extra: string[], simArgs: string[]): Promise<string> {
    const log = await snapshot.restore(cache, simArgs, extra);
    expect(log).not.to.match(/warn|error/);
    return log;
  }

  const cachedCount = (dir: string): number => cachedChunks(dir).size;
  const faults = (log: string): number => Number(/(\d+) faults? \(/.exec(log)?.[1] ?? NaN);
  const prefetched = (log: string): number => {
    const m = /prefetch: (\d+) pages copied .* and (\d+) zero pages mapped/.exec(log);
    return m ? Number(m[1]) + Number(m[2]) : NaN;
  };

  it('replay: over a cold cache fetches the working set ahead and installs it: few demand faults left, only its chunks fetched, once each', async () => {
    const truth = tmp.file('hot.trace');
    const hot = ['--pattern', 'hot', '--seed', '7'];
    proxy.reset();
    // On demand, no read ahead: each chunk fetched is one the guest touched.
    await restore(tmp.file('cache-record'), ['--record', truth, '--fetch-readahead', '0'], hot);
    const workingSetChunks = new Set(snapshot.chunkGets()).size;
    expect(workingSetChunks).to.be.below(chunks);
    // The trace says where each copied page came from: one vCPU, so one fault waited for each chunk's GET; the rest found its chunk after.
    const cold = summarize(readTrace(truth));
    expect(cold.sources.faults.bucket, 'faults that waited for a GET').to.equal(workingSetChunks);
    expect(cold.fetchWaits?.faults).to.equal(workingSetChunks);
    expect(cold.fetchWaits!.maxMs).to.be.at.least(cold.fetchWaits!.medianMs);
    expect(Object.keys(cold.sources.faults).every((k) => ['bucket', 'disk', 'memory'].includes(k)), JSON.stringify(cold.sources)).to.equal(true);
    expect(Object.values(cold.sources.faults).reduce((a, b) => a + b, 0), 'every copied page has a source').to.equal(cold.faults.copy);

    proxy.reset();
    const out = tmp.file('replayed.trace');
    // The guest idles a moment after the handshake, as a restored one mostly does before its first fault.
    const log = await restore(tmp.file('cache-replay'), ['--prefetch', `replay:${truth}`, '--record', out, '--fetch-hedge', 'off'], [...hot, '--pause-ms', '1500']);
    const gets = snapshot.chunkGets();
    expect(gets.length, 'each chunk once').to.equal(new Set(gets).size);
    expect(gets.length, 'the working set\'s chunks only').to.equal(workingSetChunks);
    const score = summarize(readTrace(out), readTrace(truth)).against!;
    expect(score.hitRate).to.equal(1);
    expect(score.hits + faults(log), log).to.equal(score.needed);
    expect(faults(log), `demand faults left of ${score.needed}:\n${log}`).to.be.at.most(score.needed * 0.05);
    // Fetched from the handler's start on: a chunk that landed before the prefetch reached it was read from the
    // disk cache; one it had to wait for came from the bucket. Every prefetched copy has a source.
    const replayed = summarize(readTrace(out));
    const p = replayed.sources.prefetched;
    expect((p.bucket ?? 0) + (p.disk ?? 0), JSON.stringify(replayed.sources)).to.be.above(0);
    expect(Object.keys(p).every((k) => ['bucket', 'disk', 'memory'].includes(k)), JSON.stringify(replayed.sources)).to.equal(true);

    // Over the disk cache the first restore filled: nothing from the bucket, every chunk read from the disk once.
    proxy.reset();
    const warmTrace = tmp.file('warm.trace');
    await restore(tmp.file('cache-record'), ['--record', warmTrace], hot);
    expect(snapshot.chunkGets()).to.deep.equal([]);
    const warm = summarize(readTrace(warmTrace));
    expect(warm.sources.faults.bucket ?? 0).to.equal(0);
    expect(warm.fetchWaits).to.equal(null);
    expect(warm.sources.faults.disk, JSON.stringify(warm.sources)).to.equal(workingSetChunks);
    expect(warm.sources.faults.disk + warm.sources.faults.memory).to.equal(warm.faults.copy);
  });

  it('replay: from a handler\'s start: the working set is fetched before any VM connects, and the VM that comes finds it cached', async () => {
    // The working set, recorded over a cache of its own.
    const truth = tmp.file('early.trace');
    const hot = ['--pattern', 'hot', '--seed', '9'];
    proxy.reset();
    await restore(tmp.file('cache-early-record'), ['--record', truth, '--fetch-readahead', '0'], hot);
    const workingSet = new Set(snapshot.chunkGets());
    proxy.reset();
    const cache = tmp.file('cache-early');
    const { h, sock } = await snapshot.handler(cache, ['--prefetch', `replay:${truth}`, '--fetch-hedge', 'off'], true);
    await until('the working set\'s chunks cached with no VM connected', () => cachedCount(cache) === workingSet.size, 30_000);
    expect(new Set(snapshot.chunkGets())).to.deep.equal(workingSet);
    expect(h.stderr).to.match(new RegExp(`prefetch replay:\\S+: fetching ${workingSet.size} chunks from the bucket ahead, from the start on`));
    const r = await runSim(['--socket', sock, '--mem', img, '--verify', ...hot]);
    expect(r.code, `${r.stderr}\n${h.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    expect(snapshot.chunkGets().length, 'nothing fetched twice, nothing more').to.equal(workingSet.size);
    // Chunks, as they landed, were also read back, checked and decoded before the VM came (src/snapshot/decode-ahead.ts): how many by the handshake is a race.
    const ahead = /decoded (\d+) chunks? of the prefetch policy's ahead, before the first VM/.exec(h.stderr);
    expect(ahead, h.stderr).not.to.equal(null);
    expect(Number(ahead![1])).to.be.within(1, workingSet.size);
    expect(h.stderr).not.to.match(/warn|error/);
  });

  it('a chunk held back at the store stops neither the prefetch of the others nor a fault on a cached chunk', async () => {
    const cache = tmp.file('cache-held');
    // The first pages' chunks in the cache: the bystander's.
    proxy.reset();
    await restore(cache, [], ['--pattern', 'seq', '--touches', '64']);
    const warm = new Set(snapshot.chunkGets()).size;
    // The first chunk GET the prefetch makes is held.
    const hold = proxy.holdFirstChunkGet();
    proxy.reset();
    // No hedging: the held GET stays the chunk's one GET (hedges have their own test in serve-s3.test.ts).
    const traces = tmp.file('held-{pid}.trace');
    const { h, sock } = await snapshot.handler(cache, ['--prefetch', 'all', '--workers', '1', '--fetch-hedge', 'off', '--record', traces], true);
    const waiting = startSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq']);
    await until('every chunk but the held one cached', () => cachedCount(cache) === chunks - 1, 60_000);
    const bystander = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq', '--touches', '64']);
    expect(bystander.code, `${bystander.stderr}\n${h.stderr}`).to.equal(0);
    expect(bystander.json?.mismatches).to.equal(0);
    expect(waiting.proc.child.exitCode, 'the VM whose chunk is held still waits').to.equal(null);
    hold.release();
    const r = await waiting.result;
    expect(r.code, `${r.stderr}\n${h.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    const gets = snapshot.chunkGets();
    expect(gets.filter((p) => p === hold.path()).length, 'the held chunk fetched once, for the faults and the prefetch').to.equal(1);
    // Its trace: the fault that waited for the held chunk came from the bucket, with its wait.
    const heldTrace = traces.replace('{pid}', String(waiting.proc.child.pid));
    await until('the trace written', () => existsSync(heldTrace), 10_000);
    const held = summarize(readTrace(heldTrace));
    expect(held.sources.faults.bucket, JSON.stringify(held.sources)).to.be.at.least(1);
    expect(held.fetchWaits?.maxMs, JSON.stringify(held.fetchWaits)).to.be.above(0);
    expect(gets.length, 'each chunk not cached fetched once').to.equal(chunks - warm);
    expect(new Set(gets).size).to.equal(chunks - warm);
    expect(h.stderr).not.to.match(/warn|error/);
  });

  it('demand first: with the one prefetch GET held (--fetch-concurrency 1), faults on other chunks are fetched around the queue and served', async () => {
    const cache = tmp.file('cache-demand-first');
    // The first chunk GET is the prefetch's (the guest idles a moment first); it is held, so the queue stands still.
    const hold = proxy.holdFirstChunkGet();
    proxy.reset();
    const { h, sock } = await snapshot.handler(cache, ['--prefetch', 'all', '--fetch-concurrency', '1', '--workers', '1', '--fetch-hedge', 'off'], true);
    const sim = startSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'random', '--touches', '200', '--pause-ms', '300']);
    // Faults get their chunks while the queue's one GET is held (until the guest touches the held chunk, if it does).
    await until('faults served around the held prefetch GET', () => cachedCount(cache) >= 10, 30_000);
    expect(snapshot.chunkGets()[0]).to.equal(hold.path());
    hold.release();
    const r = await sim.result;
    expect(r.code, `${r.stderr}\n${h.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    const gets = snapshot.chunkGets();
    expect(gets.length, 'each chunk once').to.equal(new Set(gets).size);
    expect(h.stderr).not.to.match(/warn|error/);
  });

  for (const mode of ['before', 'concurrent']) {
    it(`a page removed ${mode} the faults is never refilled by the prefetch over a cold cache (all, balloon)`, async () => {
      const log = await restore(tmp.file(`cache-balloon-${mode}`), ['--prefetch', 'all'],
        ['--pattern', 'random', '--balloon', '4M:8M,20M:4M', '--balloon-mode', mode, '--threads', '2']);
      expect(log).to.match(/[1-9]\d* removes?\b/);
    });
  }

  it('readahead over a cold cache: the chunks of its windows asked for as the worker meets them; every byte right', async () => {
    proxy.reset();
    const log = await restore(tmp.file('cache-readahead'), ['--prefetch', 'readahead', '--fetch-hedge', 'off'], ['--pattern', 'seq']);
    const gets = snapshot.chunkGets();
    expect(gets.length, 'each chunk once').to.equal(new Set(gets).size);
    expect(prefetched(log), log).to.be.above(0);
  });

  it('all over a cold cache fetches each chunk once, whether a fault or the prefetch asks first', async () => {
    const cache = tmp.file('cache-all');
    proxy.reset();
    const log = await restore(cache, ['--prefetch', 'all', '--fetch-concurrency', '4', '--fetch-hedge', 'off'], ['--pattern', 'random', '--threads', '2']);
    const gets = snapshot.chunkGets();
    expect(new Set(gets).size, 'every chunk fetched').to.equal(chunks);
    expect(gets.length, 'none twice').to.equal(chunks);
    expect(cachedCount(cache)).to.equal(chunks);
    expect(prefetched(log), log).to.be.above(0);
    // Chunks side by side in a pack that the prefetch wants come in one ranged GET (up to 2 MiB): far fewer GETs than chunks.
    const requests = snapshot.chunkRequests();
    expect(requests.length, 'GETs').to.be.at.most(chunks / 4);
    const m = /(\d+) GETs \([\d.]+ MiB, [\d.]+ ms each on average\), (\d+) of them ranged over (\d+) chunks side by side/.exec(log);
    expect(m, log).not.to.equal(null);
    expect(Number(m![1])).to.equal(requests.length);
    expect(Number(m![1]) - Number(m![2]) + Number(m![3]), 'single GETs and the chunks of ranged ones').to.equal(chunks);
  });
});
